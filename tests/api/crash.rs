use crate::helpers::*;

// "Nothing lost" across SIGKILL: the real `signrelay serve` binary as a subprocess, killed
// with SIGKILL (no graceful shutdown, no last flush) and restarted on the same store.
//
// The guarantee under test: a callback answered `succeeded` is durable, so its outcome
// reaches the NRC after a restart, at least once. Duplicates at the NRC are only those an
// at-least-once relay must allow: a notification the NRC accepted just before the kill,
// before its result was recorded, is sent again after the restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use signrelay::testkit::nrc::{Behaviour, NrcStandIn};
use signrelay::testkit::pkisigning::{Behaviour as PkiBehaviour, PkisigningStandIn};
use signrelay::testkit::posten::{
    Behaviour as PostenBehaviour, Certificates, Finish, PostenStandIn,
};

/// Deliveries the relay has in flight at once (`relay.concurrency`).
const RELAY_CONCURRENCY: usize = 4;

/// Bound on a (re)start: process spawn, sled recovery, listening.
const START_BOUND: Duration = Duration::from_secs(15);

/// A `signrelay serve` process. Dropping it SIGKILLs it, whatever the test did, and a failing
/// test gets the tail of its log.
pub struct Instance {
    child: Mutex<Child>,
    pub base: String,
    pub client: reqwest::Client,
    log: PathBuf,
}

impl Instance {
    /// Starts `signrelay serve` on `store` against `nrc_url` and waits until `/healthz`
    /// answers. The store is opened before the port is bound, so "up" also means the store
    /// reopened. A free port is picked per start; if another process grabs it meanwhile, the
    /// start is retried on a new one.
    async fn start(dir: &Path, store: &Path, nrc_url: &str, label: &str) -> Instance {
        Instance::start_with(dir, store, nrc_url, label, "").await
    }

    /// As `start`, with more TOML (e.g. a vendor's section) after the test's own.
    pub async fn start_with(
        dir: &Path,
        store: &Path,
        nrc_url: &str,
        label: &str,
        more_toml: &str,
    ) -> Instance {
        Instance::start_config(dir, label, |port| {
            format!("{}\n{more_toml}", Instance::toml(port, store, nrc_url))
        })
        .await
    }

    /// As `start`, with the test's config changed by `edit` (keys of sections it has).
    pub async fn start_edited(
        dir: &Path,
        store: &Path,
        nrc_url: &str,
        label: &str,
        edit: impl Fn(&mut toml::Table),
    ) -> Instance {
        Instance::start_config(dir, label, |port| {
            let mut t: toml::Table = Instance::toml(port, store, nrc_url).parse().unwrap();
            edit(&mut t);
            t.to_string()
        })
        .await
    }

    /// The tests' config of an instance on `port`.
    fn toml(port: u16, store: &Path, nrc_url: &str) -> String {
        serve_toml(
            &format!("127.0.0.1:{port}"),
            store,
            nrc_url,
            2,
            RELAY_CONCURRENCY,
        )
    }

    /// Starts with the config `config(port)` on a free port.
    async fn start_config(dir: &Path, label: &str, config: impl Fn(u16) -> String) -> Instance {
        let mut tries = 0;
        loop {
            tries += 1;
            let port = free_port();
            let path = dir.join(format!("{label}.toml"));
            std::fs::write(&path, config(port)).unwrap();
            let log = dir.join(format!("{label}.log"));
            let instance = Instance {
                child: Mutex::new(spawn_serve(&path, &log)),
                base: format!("http://127.0.0.1:{port}"),
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap(),
                log,
            };
            match instance.wait_up().await {
                Ok(()) => return instance,
                Err(log) if tries < 3 && log.contains("Address already in use") => {
                    eprintln!("{label}: port {port} was taken; retrying on another");
                }
                Err(log) => panic!("{label} did not come up within {START_BOUND:?}:\n{log}"),
            }
        }
    }

    /// The process's JSON log lines so far.
    pub fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Polls `/healthz` until it answers 200; on failure returns the process log.
    async fn wait_up(&self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + START_BOUND;
        loop {
            let exited = self.child.lock().unwrap().try_wait();
            if let Ok(Some(status)) = exited {
                return Err(format!("exited with {status}:\n{}", self.log_tail()));
            }
            let probe = self
                .client
                .get(self.url("/healthz"))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if matches!(probe, Ok(r) if r.status().as_u16() == 200) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                self.kill();
                return Err(format!("no healthz:\n{}", self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap, so the store lock is free.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).id()
    }

    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub async fn register(&self, tx: &str) -> Result<u16, reqwest::Error> {
        let r = self
            .client
            .put(self.url(&format!("/api/v1/transactions/gosign/{tx}")))
            .header("X-Api-Key", ADMIN_KEY)
            .json(&trigger(&format!("zaak-{tx}")))
            .send()
            .await?;
        Ok(r.status().as_u16())
    }

    /// Posts a terminal GoSign callback; `Ok` with GoSign's `outcome` when answered.
    pub async fn notify(&self, tx: &str) -> Result<(u16, String), reqwest::Error> {
        let r = self
            .client
            .post(self.url(&format!("/gosign/rest/envelopes/{tx}/notify")))
            .json(&work(tx, "SIGN_PROCESS_ENDED"))
            .send()
            .await?;
        let status = r.status().as_u16();
        let v: Value = r.json().await?;
        Ok((
            status,
            v["outcome"].as_str().unwrap_or_default().to_string(),
        ))
    }

    async fn register_at(&self, vendor: &str, tx: &str) -> Result<u16, reqwest::Error> {
        let r = self
            .client
            .put(self.url(&format!("/api/v1/transactions/{vendor}/{tx}")))
            .header("X-Api-Key", ADMIN_KEY)
            .json(&trigger(&format!("zaak-{tx}")))
            .send()
            .await?;
        Ok(r.status().as_u16())
    }

    /// Registers a Posten job's reference with its status URL.
    async fn register_posten(&self, reference: &str, status_url: &str) -> u16 {
        let mut t = trigger(&format!("zaak-{reference}"));
        t["vendor"] = serde_json::json!({"status_url": status_url});
        let r = self
            .client
            .put(self.url(&format!("/api/v1/transactions/posten/{reference}")))
            .header("X-Api-Key", ADMIN_KEY)
            .json(&t)
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    }

    /// The signer's browser at an exit URL (redirects followed); the final status.
    async fn exit(&self, reference: &str, token: &str) -> u16 {
        let r = self
            .client
            .get(self.url(&format!(
                "/posten/direct/{reference}/completion?status_query_token={token}"
            )))
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    }

    /// Posts a PKIsigning webhook; the status and its `result`.
    async fn pkisigning(&self, body: &Value) -> Result<(u16, String), reqwest::Error> {
        let r = self
            .client
            .post(self.url("/pkisigning/webhook"))
            .json(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let v: Value = r.json().await?;
        Ok((status, v["result"].as_str().unwrap_or_default().to_string()))
    }

    /// `GET /readyz` (200 or 503; both carry the backlog).
    pub async fn readyz(&self) -> Value {
        let r = self.client.get(self.url("/readyz")).send().await.unwrap();
        r.json().await.unwrap()
    }

    /// Waits until the outbox is empty: every outcome's delivery result is recorded.
    pub async fn wait_drained(&self, bound: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let ready = self.readyz().await;
            if ready["backlog"]["outbox"].as_i64() == Some(0) {
                return ready;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("outbox not drained within {bound:?}: {ready}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.log.display(), self.log_tail());
        }
    }
}

/// Accepted notifications per transaction id.
fn received_per_tx(nrc: &NrcStandIn) -> BTreeMap<String, usize> {
    let mut per_tx = BTreeMap::new();
    for r in nrc.received() {
        let tx = r.body["kenmerken"]["transaction_id"]
            .as_str()
            .expect("kenmerk transaction_id")
            .to_string();
        *per_tx.entry(tx).or_insert(0) += 1;
    }
    per_tx
}

/// Event ids a process logged as delivered to the NRC (its JSON log; the line is written
/// when the NRC has answered, before the result is recorded), with how often.
fn delivered_in_log(log: &Path) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap().lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue; // the line a SIGKILL cut short
        };
        if v["message"] == "delivered to the NRC" {
            let id = v["event_id"].as_str().unwrap_or_default().to_string();
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

/// Acknowledged while the NRC is down, SIGKILLed, restarted with the NRC up: every outcome
/// arrives, exactly once (the NRC accepted nothing before the kill, so nothing may double).
#[tokio::test]
async fn acknowledged_callbacks_survive_sigkill() {
    const N: usize = 40;
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    nrc.set_behaviour(Behaviour::Fail {
        status: 503,
        retry_after: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let txs: Vec<String> = (0..N).map(|i| format!("crash-{i:03}")).collect();

    let first = Instance::start(dir.path(), &store, &nrc.url, "first").await;
    for tx in &txs {
        let status = first.register(tx).await.unwrap();
        assert_eq!(status, 201, "registration of {tx}");
    }
    for tx in &txs {
        let (status, outcome) = first.notify(tx).await.unwrap();
        assert_eq!(
            (status, outcome.as_str()),
            (200, "succeeded"),
            "callback {tx}"
        );
    }
    // The relay is trying (and failing): the outcomes sit in the outbox, due for a retry.
    let tried = eventually(Duration::from_secs(10), || {
        (nrc.attempts() > 0).then_some(())
    })
    .await;
    assert!(tried.is_some(), "the relay never tried the NRC");
    first.kill();
    assert!(
        nrc.received().is_empty(),
        "the NRC accepted nothing before the kill"
    );
    let refused_before = nrc.attempts();

    nrc.set_behaviour(Behaviour::Accept);
    let second = Instance::start(dir.path(), &store, &nrc.url, "second").await;
    let all = eventually(Duration::from_secs(20), || {
        let per_tx = received_per_tx(&nrc);
        txs.iter().all(|t| per_tx.contains_key(t)).then_some(())
    })
    .await;
    let per_tx = received_per_tx(&nrc);
    let missing: Vec<&String> = txs.iter().filter(|t| !per_tx.contains_key(*t)).collect();
    assert!(
        all.is_some(),
        "after the restart the NRC lacks {} of {N}: {missing:?}",
        missing.len()
    );
    // Every result recorded: no delivery still in flight that could add a late duplicate.
    let ready = second.wait_drained(Duration::from_secs(10)).await;
    let per_tx = received_per_tx(&nrc);
    let doubled: Vec<(&String, &usize)> = per_tx.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "not exactly once: {doubled:?}");
    assert_eq!(per_tx.len(), N, "unexpected transactions: {per_tx:?}");
    assert!(nrc.refused().is_empty(), "refused: {:?}", nrc.refused());
    assert_eq!(ready["backlog"]["dead_letters"], 0, "{ready}");
    assert_eq!(ready["backlog"]["parked"], 0, "{ready}");
    println!(
        "crash: {N} acknowledged while the NRC failed ({refused_before} refused attempts), \
         SIGKILL, restart: {N} delivered exactly once"
    );
}

/// One task's load: register + callback pairs at one instance until it dies; transactions
/// whose callback was answered `succeeded` go to `acked`.
async fn fire(instance: Arc<Instance>, prefix: String, acked: Arc<Mutex<Vec<String>>>) {
    for i in 0..100_000 {
        let tx = format!("{prefix}-{i:05}");
        match instance.register(&tx).await {
            Ok(201) => {}
            _ => return,
        }
        match instance.notify(&tx).await {
            Ok((200, outcome)) if outcome == "succeeded" => acked.lock().unwrap().push(tx),
            _ => return,
        }
    }
}

/// Repeated SIGKILLs under load: every acknowledged callback reaches the NRC at least once,
/// none more than twice, and the store reopens after every kill.
#[tokio::test]
async fn repeated_sigkill_under_load_loses_nothing() {
    const ROUNDS: usize = 20;
    const TASKS: usize = 6;
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut kills_at = Vec::new();
    let mut logs = Vec::new();

    for round in 0..ROUNDS {
        let instance =
            Instance::start(dir.path(), &store, &nrc.url, &format!("round-{round}")).await;
        logs.push(instance.log.clone());
        // What the previous kill left unrecorded is redelivered at start; let that finish
        // first, so a transaction is in the kill window at most once (hence at most 2).
        instance.wait_drained(Duration::from_secs(15)).await;
        let instance = Arc::new(instance);
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                tokio::spawn(fire(
                    instance.clone(),
                    format!("r{round}-t{t}"),
                    acked.clone(),
                ))
            })
            .collect();
        let delay = rand::rng().random_range(0..=150u64);
        kills_at.push(delay);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        // SIGKILL while registrations, callbacks and deliveries are in flight.
        instance.kill();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("firing task ends after the kill")
                .unwrap();
        }
    }

    let last = Instance::start(dir.path(), &store, &nrc.url, "final").await;
    logs.push(last.log.clone());
    let acked: Vec<String> = acked.lock().unwrap().clone();
    let all = eventually(Duration::from_secs(20), || {
        let per_tx = received_per_tx(&nrc);
        acked.iter().all(|t| per_tx.contains_key(t)).then_some(())
    })
    .await;
    let ready = last.wait_drained(Duration::from_secs(20)).await;
    let per_tx = received_per_tx(&nrc);
    let missing: Vec<&String> = acked.iter().filter(|t| !per_tx.contains_key(*t)).collect();
    assert!(
        all.is_some() && missing.is_empty(),
        "acknowledged but never delivered ({} of {}): {missing:?}",
        missing.len(),
        acked.len()
    );
    let acked_set: BTreeSet<&String> = acked.iter().collect();
    assert_eq!(acked_set.len(), acked.len(), "a transaction acked twice");
    let tripled: Vec<(&String, &usize)> = per_tx.iter().filter(|(_, n)| **n > 2).collect();
    assert!(
        tripled.is_empty(),
        "more than the at-least-once window allows: {tripled:?}"
    );
    // A duplicate is an at-least-once retry: accepted by the NRC just before a kill, its
    // result unrecorded, sent again by the next process. So (a) no process delivers an
    // outcome twice (its own log says so), and (b) a kill leaves at most as many
    // unrecorded deliveries as the relay has in flight.
    let mut logged = 0;
    for log in &logs {
        let delivered = delivered_in_log(log);
        logged += delivered.len();
        let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{} delivered these twice: {twice:?}",
            log.display()
        );
    }
    assert!(logged > 0, "no process logged a delivery");
    let duplicates: usize = per_tx.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= ROUNDS * RELAY_CONCURRENCY,
        "{duplicates} duplicates after {ROUNDS} kills with {RELAY_CONCURRENCY} deliveries in flight"
    );
    assert!(nrc.refused().is_empty(), "refused: {:?}", nrc.refused());
    assert_eq!(ready["backlog"]["dead_letters"], 0, "{ready}");
    assert_eq!(ready["backlog"]["parked"], 0, "{ready}");
    let doubled = per_tx.values().filter(|n| **n == 2).count();
    let unacked_arrived = per_tx.keys().filter(|t| !acked_set.contains(t)).count();
    assert!(
        !acked.is_empty(),
        "no callback was acknowledged in {ROUNDS} rounds"
    );
    println!(
        "crash: {ROUNDS} SIGKILLs (after {kills_at:?} ms of load), {} callbacks acknowledged, \
         {} transactions at the NRC ({unacked_arrived} unacknowledged ones among them), \
         {duplicates} duplicate notification(s) over {doubled} transaction(s)",
        acked.len(),
        per_tx.len()
    );
}

const PKI_CLIENT: &str = "signrelay-crash";
const PKI_SECRET: &str = "crash-pki-client-secret";

/// The `[pkisigning]` section for the PKIsigning stand-in: fast retries, verification on,
/// the platform's call limit as the stand-in enforces it. (Each process has its own budget, so
/// restarts within a minute can exceed the platform's 100 per minute; the platform's 429 then
/// pauses the calls. The tests that kill repeatedly raise the limit on both sides.)
fn pkisigning_toml(pki: &PkisigningStandIn, calls_per_minute: usize) -> String {
    pki.limit(calls_per_minute, Duration::from_secs(60));
    format!(
        r#"[pkisigning]
enabled = true
rate_limit_calls = {calls_per_minute}
api_url = "{}"
token_url = "{}"
allow_insecure_http = true
client_id = "{PKI_CLIENT}"
client_secret = "{PKI_SECRET}"
backoff_initial_ms = 20
backoff_max_secs = 1
timeout_secs = 2
verify_settle_secs = 0

[pkisigning.auth]
method = "none"
"#,
        pki.api_url, pki.token_url
    )
}

/// Acknowledged PKIsigning callbacks whose verification is pending (the platform answers
/// 503), SIGKILL, restart with the platform up: every verified outcome is relayed, once.
#[tokio::test]
async fn pending_verifications_survive_sigkill() {
    const N: usize = 30;
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    let pki = PkisigningStandIn::start(PKI_CLIENT, PKI_SECRET)
        .await
        .unwrap();
    pki.behave(PkiBehaviour::Fail(503));
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let extra = pkisigning_toml(&pki, 100_000);
    let ids: Vec<String> = (0..N).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let first = Instance::start_with(dir.path(), &store, &nrc.url, "first", &extra).await;
    for (i, id) in ids.iter().enumerate() {
        let status = if i % 3 == 0 { "Declined" } else { "Completed" };
        pki.dossier(id, status, &format!("key-{i}"));
        assert_eq!(first.register_at("pkisigning", id).await.unwrap(), 201);
        let (s, result) = first
            .pkisigning(&pki.webhook_body(id, status, ""))
            .await
            .unwrap();
        assert_eq!((s, result.as_str()), (200, "recorded"), "{id}");
    }
    // The platform is down: after a few failures in a row its circuit opens and only probes
    // go, so not every verification is tried before the kill.
    let asked = eventually(Duration::from_secs(10), || {
        (pki.calls().iter().filter(|c| c.kind == "request").count() >= 3).then_some(())
    })
    .await;
    assert!(asked.is_some(), "verifications were not attempted");
    first.kill();
    assert!(
        nrc.received().is_empty(),
        "nothing was verified, so nothing relayed"
    );

    pki.behave(PkiBehaviour::Normal);
    let second = Instance::start_with(dir.path(), &store, &nrc.url, "second", &extra).await;
    let all = eventually(Duration::from_secs(30), || {
        let per_tx = received_per_tx(&nrc);
        ids.iter().all(|t| per_tx.contains_key(t)).then_some(())
    })
    .await;
    let per_tx = received_per_tx(&nrc);
    let missing: Vec<&String> = ids.iter().filter(|t| !per_tx.contains_key(*t)).collect();
    assert!(all.is_some(), "lost after the restart: {missing:?}");
    let ready = second.wait_drained(Duration::from_secs(10)).await;
    let per_tx = received_per_tx(&nrc);
    let doubled: Vec<(&String, &usize)> = per_tx.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "not exactly once: {doubled:?}");
    for (i, r) in ids.iter().map(|id| received_for_tx(&nrc, id)).enumerate() {
        let actie = if i % 3 == 0 {
            "OndertekenenAfgebroken"
        } else {
            "OndertekenenVoltooid"
        };
        assert_eq!(r["actie"], actie);
    }
    assert_eq!(ready["backlog"]["dead_letters"], 0, "{ready}");
    assert_eq!(ready["backlog"]["quarantine"], 0, "{ready}");
    println!("crash: {N} PKIsigning callbacks pending verification, SIGKILL, restart: {N} relayed exactly once");
}

fn received_for_tx(nrc: &NrcStandIn, tx: &str) -> Value {
    nrc.received()
        .into_iter()
        .find(|r| r.body["kenmerken"]["transaction_id"] == tx)
        .map(|r| r.body)
        .unwrap()
}

/// Repeated SIGKILLs while PKIsigning callbacks are acknowledged, verified and relayed: every
/// acknowledged one reaches the NRC, none more than the at-least-once window allows.
#[tokio::test]
async fn sigkills_during_verification_lose_nothing() {
    const ROUNDS: usize = 6;
    const TASKS: usize = 4;
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    let pki = Arc::new(
        PkisigningStandIn::start(PKI_CLIENT, PKI_SECRET)
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let extra = pkisigning_toml(&pki, 100_000);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    for round in 0..ROUNDS {
        let label = format!("pki-round-{round}");
        let instance = Instance::start_with(dir.path(), &store, &nrc.url, &label, &extra).await;
        instance.wait_drained(Duration::from_secs(15)).await;
        let instance = Arc::new(instance);
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (instance, pki, acked) = (instance.clone(), pki.clone(), acked.clone());
                tokio::spawn(async move {
                    loop {
                        let id = uuid::Uuid::new_v4().to_string();
                        pki.dossier(&id, "Completed", "k");
                        if instance.register_at("pkisigning", &id).await.ok() != Some(201) {
                            return;
                        }
                        match instance
                            .pkisigning(&pki.webhook_body(&id, "Completed", ""))
                            .await
                        {
                            Ok((200, r)) if r == "recorded" => acked.lock().unwrap().push(id),
                            _ => return,
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(50..=300u64))).await;
        instance.kill();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("firing task ends after the kill")
                .unwrap();
        }
    }
    let last = Instance::start_with(dir.path(), &store, &nrc.url, "pki-final", &extra).await;
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "nothing acknowledged");
    let all = eventually(Duration::from_secs(30), || {
        let per_tx = received_per_tx(&nrc);
        acked.iter().all(|t| per_tx.contains_key(t)).then_some(())
    })
    .await;
    let ready = last.wait_drained(Duration::from_secs(20)).await;
    let per_tx = received_per_tx(&nrc);
    let missing: Vec<&String> = acked.iter().filter(|t| !per_tx.contains_key(*t)).collect();
    assert!(all.is_some() && missing.is_empty(), "lost: {missing:?}");
    let duplicates: usize = per_tx.values().map(|n| n - 1).sum();
    assert!(per_tx.values().all(|n| *n <= 2), "{per_tx:?}");
    assert!(
        duplicates <= ROUNDS * RELAY_CONCURRENCY,
        "{duplicates} duplicates after {ROUNDS} kills"
    );
    assert_eq!(ready["backlog"]["dead_letters"], 0, "{ready}");
    println!(
        "crash: {ROUNDS} SIGKILLs during PKIsigning verification, {} acknowledged, all relayed, {duplicates} duplicate(s)",
        acked.len()
    );
}

/// The `[posten]` section for the Posten stand-in (mutual TLS with the organisation
/// certificate), and a browser that waits little.
fn posten_toml(p: &PostenStandIn, dir: &Path) -> String {
    let s = |v: &Path| toml::Value::String(v.to_string_lossy().into_owned()).to_string();
    format!(
        r#"[posten]
enabled = true
api_url = "{}"
organization_number = "{}"
client_certificate_pem = {}
client_key_pem = {}
ca_certificate_pem = {}
redirect_wait_ms = 200
backoff_initial_ms = 20
backoff_max_secs = 1
timeout_secs = 2
"#,
        p.api_url,
        p.organization_number,
        s(&dir.join("org.pem")),
        s(&dir.join("org.key")),
        s(&dir.join("posten-ca.pem")),
    )
}

/// SIGKILL while exit URLs' tokens wait for their status fetch (Posten down), and again while
/// fetched statuses wait for their confirmation: after the restarts every outcome reaches the
/// NRC and every status is confirmed, none confirmed before it was recorded.
#[tokio::test]
async fn sigkill_between_token_fetch_and_confirmation_loses_nothing() {
    const N: usize = 10;
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let certs = Certificates::generate().unwrap();
    certs.write(dir.path()).unwrap();
    let posten = PostenStandIn::start(&certs, "123456789").await.unwrap();
    let store = dir.path().join("store");
    let extra = posten_toml(&posten, dir.path());

    // 1. Tokens recorded, Posten down: the fetches wait.
    posten.behave(PostenBehaviour::Down);
    let first = Instance::start_with(dir.path(), &store, &nrc.url, "posten-1", &extra).await;
    let mut jobs = Vec::new();
    for i in 0..N {
        let reference = format!("POSTEN-CRASH-{i}");
        let (id, status_url) = posten.direct_job(&reference, 1);
        assert_eq!(first.register_posten(&reference, &status_url).await, 201);
        let token = posten.finish_direct(id, Finish::Signed);
        assert_eq!(first.exit(&reference, &token).await, 200, "{reference}");
        jobs.push((reference, id));
    }
    let tried = eventually(Duration::from_secs(10), || {
        (posten.calls().iter().filter(|c| c.status == 503).count() >= N).then_some(())
    })
    .await;
    assert!(tried.is_some(), "the fetches were not tried");
    first.kill();
    assert!(nrc.received().is_empty());

    // 2. Posten up, confirmations held: statuses fetched and recorded, then SIGKILL.
    posten.behave(PostenBehaviour::Normal);
    posten.hold_confirmations(true);
    let second = Instance::start_with(dir.path(), &store, &nrc.url, "posten-2", &extra).await;
    let all = eventually(Duration::from_secs(20), || {
        let per_tx = received_per_tx(&nrc);
        jobs.iter()
            .all(|(r, _)| per_tx.contains_key(r))
            .then_some(())
    })
    .await;
    assert!(
        all.is_some(),
        "not every fetched status reached the NRC: {:?}",
        received_per_tx(&nrc)
    );
    second.kill();
    assert!(posten.confirmed().is_empty(), "confirmed while held");

    // 3. Confirmations answered: every status is confirmed after the restart.
    posten.hold_confirmations(false);
    let third = Instance::start_with(dir.path(), &store, &nrc.url, "posten-3", &extra).await;
    let confirmed = eventually(Duration::from_secs(20), || {
        let c = posten.confirmed();
        jobs.iter()
            .all(|(_, id)| c.iter().any(|(_, j)| j == id))
            .then_some(())
    })
    .await;
    assert!(
        confirmed.is_some(),
        "not every status confirmed: {:?}",
        posten.confirmed()
    );
    let ready = third.wait_drained(Duration::from_secs(10)).await;
    let per_tx = received_per_tx(&nrc);
    assert!(per_tx.values().all(|n| *n <= 2), "{per_tx:?}");
    assert_eq!(per_tx.len(), N);
    assert_eq!(ready["backlog"]["dead_letters"], 0, "{ready}");
    let duplicates: usize = per_tx.values().map(|n| n - 1).sum();
    println!(
        "crash: {N} Posten exits, SIGKILL before their fetch and again before their confirmation: \
         all relayed ({duplicates} duplicate(s)), all confirmed"
    );
}
