//! Several instances on one PostgreSQL database: three real `signrelay serve` processes, the
//! callbacks spread over them as a load balancer would, one instance SIGKILLed again and again
//! under load and restarted. Every acknowledged outcome must reach the NRC stand-in; none more
//! than once, except where an instance took a job over after its holder's lease ran out (the
//! instances log each take-over). The test prints the counts.

#[path = "api/helpers.rs"]
mod helpers;

/// The instances share a PostgreSQL store.
pub const BACKEND: signrelay::config::Backend = signrelay::config::Backend::Postgres;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use helpers::*;
use signrelay::testkit::nrc::NrcStandIn;
use signrelay::testkit::postgres::TestDb;

/// Callbacks in flight at once, spread over the instances.
const SENDERS: usize = 12;
/// Times the victim is SIGKILLed (and restarted) under load.
const KILLS: usize = 5;
/// The lease: a killed instance's jobs are taken over after this.
const LEASE_SECS: u64 = 2;

/// One `signrelay serve` process on a fixed port; its log is appended across restarts.
struct Instance {
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<std::process::Child>,
}

impl Instance {
    fn new(dir: &Path, name: &str, db: &TestDb, nrc_url: &str) -> Instance {
        let port = free_port();
        let scratch = dir.join(format!("{name}-scratch"));
        let toml = serve_toml(&format!("127.0.0.1:{port}"), &scratch, nrc_url, 2, 4).replace(
            "[store]\n",
            "[store]\nbackend = \"postgres\"\npurge_interval_secs = 1\n",
        ) + &format!(
            "\n[store.postgres]\nurl = {}\npool_size = 4\nlease_secs = {LEASE_SECS}\n",
            toml::Value::String(db.url.clone())
        );
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, toml).unwrap();
        Instance {
            port,
            config,
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Starts the process, its output appended to the log, and waits until it is ready.
    async fn start(&mut self, client: &reqwest::Client) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_signrelay"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SIGNRELAY") {
                cmd.env_remove(k);
            }
        }
        self.child = Some(cmd.spawn().expect("spawn signrelay"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(self.url("/readyz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "instance on {} never became ready:\n{}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Lines of its log that say a job was taken over.
    fn takeovers(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("job taken over"))
            .count()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Registers `tx` with the instance at `base`; true once it is (201, or 200 when a retry
/// finds it registered).
async fn registered(client: &reqwest::Client, base: &str, tx: &str) -> bool {
    client
        .put(format!("{base}/api/v1/transactions/gosign/{tx}"))
        .header("X-Api-Key", ADMIN_KEY)
        .json(&trigger(&format!("zaak-{tx}")))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Posts one GoSign completion to `url`; true when GoSign would hear `succeeded`.
async fn complete(client: &reqwest::Client, base: &str, tx: &str) -> bool {
    let r = client
        .post(format!("{base}/gosign/rest/envelopes/{tx}/notify"))
        .header("Content-Type", "application/json")
        .body(work(tx, "SIGN_PROCESS_ENDED").to_string())
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => r
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|v| v["outcome"] == "succeeded"),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_one_killed_repeatedly_deliver_every_acknowledged_outcome() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut instances: Vec<Instance> = (0..3)
        .map(|i| Instance::new(dir.path(), &format!("instance{i}"), &db, &nrc.url))
        .collect();
    for i in instances.iter_mut() {
        i.start(&client).await;
    }
    let bases: Vec<String> = instances.iter().map(|i| i.url("")).collect();

    // The load: each sender takes the next transaction, registers it with one instance and
    // sends its completion to another (a third of them the completion first: parked until the
    // registration reaches some instance), each retried on the next instance until it is
    // acknowledged, as the case application and GoSign retry. Meanwhile instance 0 is killed
    // and restarted again and again; the load goes on until the last restart.
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (client, bases, next, stop, acked, refused) = (
                client.clone(),
                bases.clone(),
                next.clone(),
                stop.clone(),
                acknowledged.clone(),
                refused.clone(),
            );
            tokio::spawn(async move {
                let mut turn = s;
                while !stop.load(Relaxed) {
                    let n = next.fetch_add(1, Relaxed);
                    let tx = format!("MI-{n:05}");
                    let steps: [bool; 2] = if n % 3 == 0 {
                        [false, true]
                    } else {
                        [true, false]
                    };
                    for register in steps {
                        let deadline = Instant::now() + Duration::from_secs(60);
                        loop {
                            turn += 1;
                            let base = &bases[turn % bases.len()];
                            let ok = if register {
                                registered(&client, base, &tx).await
                            } else {
                                complete(&client, base, &tx).await
                            };
                            if ok {
                                break;
                            }
                            refused.fetch_add(1, Relaxed);
                            assert!(Instant::now() < deadline, "{tx} never acknowledged");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        if !register {
                            acked.lock().unwrap().push(tx.clone());
                        }
                    }
                }
            })
        })
        .collect();
    let mut kills = 0;
    while kills < KILLS {
        tokio::time::sleep(Duration::from_millis(900)).await;
        instances[0].kill();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        instances[0].start(&client).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 200,
        "too little load: {}",
        acknowledged.len()
    );

    // Every acknowledged outcome reaches the NRC (a killed instance's claims are taken over
    // once their lease runs out).
    let per_tx = |nrc: &NrcStandIn| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for r in nrc.received() {
            let tx = r.body["kenmerken"]["transaction_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            *m.entry(tx).or_default() += 1;
        }
        m
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let received = loop {
        let m = per_tx(&nrc);
        if acknowledged.iter().all(|tx| m.contains_key(tx)) || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|tx| !received.contains_key(*tx))
        .collect();
    let duplicates: usize = received.values().map(|n| n - 1).sum();
    let takeovers: usize = instances.iter().map(Instance::takeovers).sum();
    println!(
        "instances: 3 on one PostgreSQL database, instance 0 SIGKILLed {kills} times under load; \
         {} outcomes acknowledged ({} refusals or lost connections retried), {} reached the NRC, \
         {} missing, {duplicates} delivered twice, {takeovers} lease take-overs",
        acknowledged.len(),
        refused.load(Relaxed),
        received.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged but never notified: {missing:?}"
    );
    assert!(
        duplicates <= takeovers,
        "{duplicates} outcomes notified twice, but only {takeovers} jobs were taken over"
    );
    assert!(
        kills >= 2,
        "the load ended before the instance was killed twice"
    );
}
