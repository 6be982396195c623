use crate::helpers::*;

// The fault suite: the NRC down under load, the store's disk full, slow and idle clients.
//
// What "memory stays bounded" means here, honestly: the outbox lives on disk (sled keys
// ordered by due time), so the relay holds only the deliveries in flight. The outage test
// runs the real `signrelay serve` binary as its own process, so that what it measures is
// that process alone: (1) its resident set (VmRSS in /proc/<pid>/status) while the backlog
// grows by a few hundred outcomes stays under a generous bound, which catches per-outcome
// buffering but is no proof of flatness; (2) the requests the relay has open at the NRC at
// once never exceed `relay.concurrency`, measured at the stand-in while it hangs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use signrelay::auth::AuthConfig;
use signrelay::testkit::nrc::{Behaviour, NrcStandIn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);
const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const WKNOTIF: &str = "http://www.infocert.it/smartsign/schema/wknotif";

/// A SOAP 1.1 workNotification for `tx`, optionally with an inline document.
fn soap_work(tx: &str, document: Option<&str>) -> String {
    let docs = document
        .map(|b64| {
            format!(
                "<documents><document><docExternalId>DOC-1</docExternalId><content><mime-type>application/pdf</mime-type><data>{b64}</data></content></document></documents>"
            )
        })
        .unwrap_or_default();
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Body><ns2:workNotification xmlns:ns2="{WKNOTIF}"><envelopeExternalId>{tx}</envelopeExternalId><notificationType>SIGN_PROCESS_ENDED</notificationType>{docs}<liveStatus><stepEvent><mgrName>Anna</mgrName><mgrSurname>Bianchi</mgrSurname><status>WKD</status><startedAt>2026-11-20T10:00:00Z</startedAt><endedAt>2026-11-20T10:05:00Z</endedAt><stepNumber>1</stepNumber></stepEvent></liveStatus></ns2:workNotification></soapenv:Body></soapenv:Envelope>"#
    )
}

// ---------------------------------------------------------------------------------------------
// NRC outage under load, against the real binary

/// Deliveries the relay may have open at the NRC at once.
const RELAY_CONCURRENCY: usize = 4;

/// `signrelay serve` as a subprocess on a port of its own choosing (read from its log), so
/// its memory can be measured alone. Dropping it kills it.
struct Serve {
    child: Mutex<Child>,
    base: String,
    client: reqwest::Client,
    log: PathBuf,
}

impl Serve {
    async fn start(dir: &Path, store: &Path, nrc_url: &str) -> Serve {
        let config = dir.join("serve.toml");
        std::fs::write(
            &config,
            serve_toml("127.0.0.1:0", store, nrc_url, 1, RELAY_CONCURRENCY),
        )
        .unwrap();
        let log = dir.join("serve.log");
        let mut serve = Serve {
            child: Mutex::new(spawn_serve(&config, &log)),
            base: String::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            log,
        };
        // The port it bound is in its "listening" log line.
        let deadline = Instant::now() + Duration::from_secs(15);
        let port = loop {
            let text = std::fs::read_to_string(&serve.log).unwrap_or_default();
            let port = text.lines().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["message"] == "signrelay listening").then(|| v["port"].as_u64())?
            });
            if let Some(p) = port {
                break p;
            }
            let exited = serve.child.lock().unwrap().try_wait().unwrap();
            assert!(exited.is_none(), "signrelay exited: {exited:?}\n{text}");
            assert!(
                Instant::now() < deadline,
                "signrelay did not start:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        serve.base = format!("http://127.0.0.1:{port}");
        serve
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// The process's resident set, KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Registers `tx` and posts its completion; panics unless both are acknowledged.
    async fn callback(&self, tx: &str) {
        let r = self
            .client
            .put(self.url(&format!("/api/v1/transactions/gosign/{tx}")))
            .header("X-Api-Key", ADMIN_KEY)
            .json(&trigger(&format!("zaak-{tx}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "register {tx}");
        let r = self
            .client
            .post(self.url(&format!("/gosign/rest/envelopes/{tx}/notify")))
            .json(&work(tx, "SIGN_PROCESS_ENDED"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v, json!({"outcome": "succeeded"}), "notify {tx}");
    }

    /// Acknowledged callbacks for all of `txs`, 16 at a time.
    async fn callbacks(&self, txs: &[String]) {
        stream::iter(txs)
            .for_each_concurrent(16, |tx| self.callback(tx))
            .await;
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn readyz(&self) -> (u16, Value) {
        let (s, t) = self.get("/readyz").await;
        (s, serde_json::from_str(&t).unwrap())
    }

    async fn wait_outbox(&self, n: i64, bound: Duration) -> Value {
        let deadline = Instant::now() + bound;
        loop {
            let (_, v) = self.readyz().await;
            if v["backlog"]["outbox"].as_i64() == Some(n) {
                return v;
            }
            assert!(Instant::now() < deadline, "outbox never reached {n}: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- signrelay log (tail) ---\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

/// Most new NRC requests in any window shorter than the relay's NRC timeout: each of them
/// holds a permit until it times out, so this is how many were open at once.
fn max_started_within(samples: &[(Instant, usize)], window: Duration) -> usize {
    let mut max = 0;
    for (i, (t0, a0)) in samples.iter().enumerate() {
        for (t1, a1) in &samples[i..] {
            if t1.duration_since(*t0) <= window {
                max = max.max(a1 - a0);
            }
        }
    }
    max
}

/// A few hundred callbacks while the NRC refuses (503) and then hangs: every one is
/// acknowledged, the backlog shows in `/readyz` and `/metrics`, retries are paced rather than
/// hammered, the relay never has more than `relay.concurrency` requests open, the process's
/// memory stays within a generous bound; once the NRC accepts, every outcome arrives exactly
/// once and the backlog drains.
#[tokio::test]
async fn nrc_outage_under_load_backlog_shows_and_drains_exactly_once() {
    const WARM: usize = 50;
    const LOAD: usize = 300;
    let total = WARM + LOAD;
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    nrc.set_behaviour(Behaviour::Fail {
        status: 503,
        retry_after: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &dir.path().join("store"), &nrc.url).await;
    let txs: Vec<String> = (0..total).map(|i| format!("OUTAGE-{i:04}")).collect();

    // Warm up (allocator, sled cache, connections) with the NRC already down, so that the
    // pacer has seen failures in a row before anything is measured.
    serve.callbacks(&txs[..WARM]).await;
    serve.wait_outbox(WARM as i64, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = serve.rss_kib();

    // Half the load while the NRC answers 503 at once: retries are paced (backoff with
    // jitter and a shared gate), not a hot loop of thousands of requests a second.
    let (started, attempts_before) = (Instant::now(), nrc.attempts());
    serve.callbacks(&txs[WARM..WARM + LOAD / 2]).await;
    let min_window = Duration::from_secs(1);
    if started.elapsed() < min_window {
        tokio::time::sleep(min_window - started.elapsed()).await;
    }
    let failing_for = started.elapsed();
    let failing_attempts = nrc.attempts() - attempts_before;
    let rate = failing_attempts as f64 / failing_for.as_secs_f64();
    assert!(failing_attempts > 0, "no delivery attempts while failing");
    assert!(
        rate < 50.0,
        "{failing_attempts} attempts in {failing_for:?} while the NRC answered 503"
    );

    // The other half while the NRC hangs (each request times out after 1 s).
    nrc.set_behaviour(Behaviour::Hang);
    let sampler = async {
        let mut samples = Vec::new();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            samples.push((Instant::now(), nrc.attempts()));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        samples
    };
    let (samples, ()) = tokio::join!(sampler, serve.callbacks(&txs[WARM + LOAD / 2..]));
    let open_at_once = max_started_within(&samples, Duration::from_millis(900));
    assert!(
        (1..=RELAY_CONCURRENCY).contains(&open_at_once),
        "{open_at_once} NRC requests started within 900 ms while each hangs for 1 s \
         (relay.concurrency = {RELAY_CONCURRENCY})"
    );

    // The backlog is visible: readiness (still ready: the store and the relay are fine) and
    // metrics.
    let ready = serve.wait_outbox(total as i64, WAIT).await;
    let (status, _) = serve.readyz().await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        ready["backlog"],
        json!({"outbox": total, "parked": 0, "dead_letters": 0, "quarantine": 0})
    );
    let (_, m) = serve.get("/metrics").await;
    assert_eq!(
        metric(&m, "signrelay_outbox_depth", &[]),
        Some(total as f64)
    );
    assert_eq!(
        metric(
            &m,
            "signrelay_callbacks_total",
            &[("surface", "gosign.rest"), ("result", "recorded")]
        ),
        Some(total as f64)
    );
    assert!(
        metric(
            &m,
            "signrelay_relay_deliveries_total",
            &[("result", "retry")]
        )
        .is_some_and(|v| v >= 1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "signrelay_relay_deliveries_total",
            &[("result", "delivered")]
        ),
        None
    );
    let rss_after = serve.rss_kib();
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!(
        "outage: VmRSS {rss_before} KiB -> {rss_after} KiB (+{growth} KiB) while the outbox \
         grew by {LOAD}; {failing_attempts} attempts in {failing_for:?} at 503; at most \
         {open_at_once} NRC requests open at once"
    );
    assert!(
        growth < 64 * 1024,
        "VmRSS grew by {growth} KiB while the outbox grew by {LOAD}"
    );
    assert!(nrc.received().is_empty());

    // The NRC is back: everything is delivered, once, and the backlog drains.
    nrc.set_behaviour(Behaviour::Accept);
    let got = nrc.wait_for(total, Duration::from_secs(60)).await;
    assert_eq!(got.len(), total, "delivered after the outage");
    serve.wait_outbox(0, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut per_tx: BTreeMap<String, usize> = BTreeMap::new();
    for r in nrc.received() {
        let tx = r.body["kenmerken"]["transaction_id"].as_str().unwrap();
        *per_tx.entry(tx.to_string()).or_default() += 1;
    }
    let twice: Vec<_> = per_tx.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(
        per_tx.keys().cloned().collect::<Vec<_>>(),
        txs,
        "every outcome delivered"
    );
    let (status, ready) = serve.readyz().await;
    assert_eq!(status, 200);
    assert_eq!(ready["backlog"]["outbox"], 0);
    let (_, m) = serve.get("/metrics").await;
    assert_eq!(metric(&m, "signrelay_outbox_depth", &[]), Some(0.0));
    assert_eq!(
        metric(
            &m,
            "signrelay_relay_deliveries_total",
            &[("result", "delivered")]
        ),
        Some(total as f64)
    );
    nrc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The store's disk is full

/// A tmpfs mounted for one test; unmounted (lazily, so open files cannot block it) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "8m"), or explains why not: tests run as root in CI.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("signrelay-faults")
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs { dir })
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with `filler` until the kernel says ENOSPC; returns the bytes
    /// written.
    fn fill(&self) -> u64 {
        let mut f = File::create(self.path().join("filler")).unwrap();
        let mut written = 0u64;
        for chunk in [1 << 20, 4096, 1] {
            let buf = vec![0x5au8; chunk];
            loop {
                match f.write(&buf) {
                    Ok(n) if n == buf.len() => written += n as u64,
                    Ok(n) => {
                        written += n as u64;
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("filling the tmpfs: {e}"),
                }
            }
        }
        let _ = f.sync_all();
        written
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A small tmpfs as the store's disk, mounted when the test may (root); skipped with a note
/// otherwise, unless `SIGNRELAY_REQUIRE_FAULTS=1` makes that a failure.
fn small_disk(size: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(size) {
        Ok(t) => Some(t),
        Err(why) => {
            assert!(
                std::env::var("SIGNRELAY_REQUIRE_FAULTS").as_deref() != Ok("1"),
                "SIGNRELAY_REQUIRE_FAULTS=1 but a tmpfs cannot be mounted: {why}"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs ({why}); run as root to test a full disk");
            None
        }
    }
}

/// The disk under the store fills up: GoSign REST hears `failed_please_retry`, SOAP
/// `success=false`, the registry a 503 problem; never a success, nothing recorded, and
/// `/readyz` turns 503. Space freed, the callbacks GoSign retries are recorded and relayed.
#[tokio::test]
async fn full_disk_answers_retry_later_on_every_surface() {
    let Some(disk) = small_disk("16m") else {
        return;
    };
    let store = disk.path().join("store");
    let app = spawn_app_with(|c| {
        c.store.path = store.clone();
        c.vendors.gosign.soap.enabled = true;
        c.vendors.gosign.soap.auth = Some(AuthConfig::None);
    })
    .await;
    let (rest_tx, soap_tx, late_tx) = ("DISK-REST", "DISK-SOAP", "DISK-LATE");
    for tx in [rest_tx, soap_tx] {
        assert_eq!(app.register(tx, &format!("zaak-{tx}")).await.status(), 201);
    }
    let (s, ready) = app.admin_get("/readyz").await;
    assert_eq!((s, &ready["status"]), (200, &json!("ready")));

    let filled = disk.fill();
    assert!(filled > 0);
    // Bodies of ~40 KiB: archived inside sled (under the 64 KiB file threshold), so it is
    // sled's own write that meets the full disk.
    let pdf = base64_of(&vec![0x25u8; 30 * 1024]);
    let mut rest_body = work(rest_tx, "SIGN_PROCESS_ENDED");
    rest_body["documents"] = json!([{"docExternalId": "DOC-1",
        "content": {"mimeType": "application/pdf", "data": pdf}}]);
    let soap_body = soap_work(soap_tx, Some(&pdf));
    // Every surface says "later", however often it is asked (a retry of a callback whose
    // write failed must not be taken for a duplicate of it).
    for attempt in 0..3 {
        refused_everywhere(&app, &rest_body, &soap_body, late_tx, attempt).await;
    }
    // Not ready. (The 5 s probe alone may not notice a full disk: its few bytes fit in
    // blocks the store already has. A failed write reports at once.)
    wait_ready(&app, 503, Duration::from_secs(1)).await;
    // Liveness asks for the restart that alone makes the store usable again.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "restart_required");
    let (_, status_ping) = app.admin_get("/gosign/rest/status").await;
    assert_eq!(
        status_ping["services"]["workNotification"]["available"], false,
        "{status_ping}"
    );
    assert!(app.nrc.received().is_empty());

    // Space again. sled cannot go on after an I/O error (it keeps refusing writes until it
    // is reopened), so the running instance keeps answering "later" rather than trusting
    // what it holds in memory...
    disk.free();
    refused_everywhere(&app, &rest_body, &soap_body, late_tx, 3).await;
    let (s, problem) = app.admin_get("/api/v1/events").await;
    assert_eq!(
        (s, &problem["type"]),
        (503, &json!("urn:signrelay:problem:store-unavailable"))
    );
    assert!(app.nrc.received().is_empty());

    // ...and after a restart on the same store GoSign's next retries are recorded and
    // relayed, once; what was registered before the disk filled up is still there.
    let (nrc, _, _) = app.stop().await;
    let mut cfg = test_config(&store, &nrc.url);
    cfg.vendors.gosign.soap.enabled = true;
    cfg.vendors.gosign.soap.auth = Some(AuthConfig::None);
    let app = spawn_on(cfg, nrc).await;
    wait_ready(&app, 200, Duration::from_secs(7)).await;
    assert!(app.events("").await.is_empty(), "a failed write survived");
    let (status, answer) = app.notify(rest_tx, rest_body.to_string()).await;
    assert_eq!((status, answer), (200, json!({"outcome": "succeeded"})));
    let (status, text) = soap_post(&app, &soap_body).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("<success>true</success>"), "{text}");
    assert_eq!(app.register(late_tx, "zaak-late").await.status(), 201);
    let got = app.nrc.wait_for(2, WAIT).await;
    let mut txs: Vec<&str> = got
        .iter()
        .map(|r| r.body["kenmerken"]["transaction_id"].as_str().unwrap())
        .collect();
    txs.sort();
    assert_eq!(txs, [rest_tx, soap_tx]);
    assert_eq!(
        app.nrc.wait_for(3, Duration::from_millis(300)).await.len(),
        2
    );
    app.stop().await;
    drop(disk);
}

#[tokio::test]
async fn low_disk_space_is_refused_before_any_write_fails() {
    let Some(disk) = small_disk("64m") else {
        return;
    };
    let app = on_low_disk(&disk, true).await;
    let tx = "LOW-1";
    assert_eq!(app.register(tx, "zaak-low").await.status(), 201);
    // Leave about 20 MiB free: under the floor, far from full.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 40 << 20]).unwrap();
    let body = work(tx, "SIGN_PROCESS_ENDED").to_string();
    for _ in 0..2 {
        let (status, answer) = app.notify(tx, body.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(answer["outcome"], "failed_please_retry", "{answer}");
    }
    let (status, text) = soap_post(&app, &soap_work(tx, None)).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("<success>false</success>"), "{text}");
    wait_ready(&app, 503, Duration::from_secs(7)).await;
    // Nothing failed half-way: the process stays live and recovers by itself.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(app.events(&format!("transaction_id={tx}")).await.is_empty());

    std::fs::remove_file(&filler).unwrap();
    let (status, answer) = app.notify(tx, body).await;
    assert_eq!((status, answer), (200, json!({"outcome": "succeeded"})));
    wait_ready(&app, 200, Duration::from_secs(7)).await;
    let got = app.nrc.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    app.stop().await;
    drop(disk);
}

/// `/readyz` and GoSign's status ping ask the file system for free space on every call: a
/// disk that fills up between two store probes (every 5 s) shows at the very next request,
/// and so does the space freed again.
#[tokio::test]
async fn readiness_follows_a_filling_disk_at_once() {
    let Some(disk) = small_disk("64m") else {
        return;
    };
    let app = on_low_disk(&disk, false).await;
    wait_ready(&app, 200, Duration::from_secs(7)).await;
    let filler = disk.path().join("filler");
    for round in 0..3 {
        std::fs::write(&filler, vec![0u8; 40 << 20]).unwrap();
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 503, "round {round}: {v}");
        assert_eq!(v["checks"]["store_writable"], false, "{v}");
        let (_, ping) = app.admin_get("/gosign/rest/status").await;
        assert_eq!(
            ping["services"]["workNotification"]["available"], false,
            "{ping}"
        );
        std::fs::remove_file(&filler).unwrap();
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "round {round}, space freed");
        let (_, ping) = app.admin_get("/gosign/rest/status").await;
        assert_eq!(ping, json!({"online": true}));
    }
    app.stop().await;
    drop(disk);
}

/// signrelay on `disk` with a free-space floor of 40 MiB (SOAP too, when `soap`).
async fn on_low_disk(disk: &Tmpfs, soap: bool) -> TestApp {
    let store = disk.path().join("store");
    spawn_app_with(|c| {
        c.store.path = store;
        c.store.min_free_mib = 40;
        if soap {
            c.vendors.gosign.soap.enabled = true;
            c.vendors.gosign.soap.auth = Some(AuthConfig::None);
        }
    })
    .await
}

/// Polls `/readyz` until it answers `status`.
async fn wait_ready(app: &TestApp, status: u16, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        let got = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        if got == status {
            assert_eq!(v["checks"]["store_writable"], status == 200, "{v}");
            return;
        }
        assert!(Instant::now() < deadline, "readyz stayed {got}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn soap_post(app: &TestApp, body: &str) -> (u16, String) {
    let r = app
        .client
        .post(app.url("/gosign/soap"))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// GoSign REST `failed_please_retry`, SOAP `success=false`, the registry a 503 problem.
async fn refused_everywhere(
    app: &TestApp,
    rest_body: &Value,
    soap_body: &str,
    register_tx: &str,
    attempt: usize,
) {
    let (status, answer) = app
        .notify(
            rest_body["envelopeExternalId"].as_str().unwrap(),
            rest_body.to_string(),
        )
        .await;
    assert_eq!(status, 200, "REST attempt {attempt}: {answer}");
    assert_eq!(
        answer["outcome"], "failed_please_retry",
        "REST attempt {attempt}"
    );
    let (status, text) = soap_post(app, soap_body).await;
    assert_eq!(status, 200, "SOAP attempt {attempt}: {text}");
    assert!(
        text.contains("<success>false</success>") && text.contains("STORE_UNAVAILABLE"),
        "SOAP attempt {attempt}: {text}"
    );
    let r = app.register(register_tx, "zaak-late").await;
    let status = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let problem: Value = r.json().await.unwrap();
    assert_eq!(status, 503, "registry attempt {attempt}: {problem}");
    assert_eq!(ct, "application/problem+json");
    assert_eq!(problem["type"], "urn:signrelay:problem:store-unavailable");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// Slow and idle clients

fn socket_addr(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_string()
}

/// What a raw client saw: the server's bytes, and when the connection ended.
#[derive(Debug)]
struct Seen {
    text: String,
    /// From connecting until the server answered or closed.
    after: Duration,
    /// The server closed the connection (EOF or reset), at once or within 7 s of answering.
    closed: bool,
}

impl Seen {
    fn status(&self) -> Option<u16> {
        self.text.get(9..12)?.parse().ok()
    }
}

/// Connects, sends `head`, then `trickle` one byte per `every`, while reading. Returns once
/// the server has sent a whole response or closed, or after `bound`.
async fn trickle(
    addr: &str,
    head: &[u8],
    trickle: &[u8],
    every: Duration,
    bound: Duration,
) -> Seen {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = head.to_vec();
    let trickle = trickle.to_vec();
    let writer = tokio::spawn(async move {
        if wr.write_all(&head).await.is_err() {
            return;
        }
        for b in trickle {
            tokio::time::sleep(every).await;
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
        }
        // Keep the write side open: a silent client, not a finished one.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let mut buf = Vec::new();
    let mut closed = false;
    let _ = tokio::time::timeout(bound, async {
        let mut chunk = [0u8; 4096];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    closed = true;
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if complete_response(&buf) {
                return;
            }
        }
    })
    .await;
    let after = started.elapsed();
    if !closed && complete_response(&buf) {
        // Answered: does the server then close, or keep reading the trickle? (It drains an
        // unread body for at most its 5 s disconnect timeout.)
        let mut rest = Vec::new();
        closed = tokio::time::timeout(Duration::from_secs(7), rd.read_to_end(&mut rest))
            .await
            .is_ok();
    }
    writer.abort();
    Seen {
        text: String::from_utf8_lossy(&buf).into_owned(),
        after,
        closed,
    }
}

/// Has `buf` a full HTTP/1.1 response (head and a Content-Length body)?
fn complete_response(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    body.len() >= len
}

/// A callback body that trickles in at one byte per 200 ms is cut off on every surface
/// (`server.client_timeout_secs = 1`: headers within 1 s, a body within 4 s), each with its
/// own "not received" answer and nothing recorded.
#[tokio::test]
async fn trickled_bodies_are_cut_off_on_every_surface() {
    let app = spawn_app_with(|c| {
        c.server.client_timeout_secs = 1;
        c.vendors.gosign.soap.enabled = true;
        c.vendors.gosign.soap.auth = Some(AuthConfig::None);
    })
    .await;
    let addr = socket_addr(&app);
    let body = work("SLOW-1", "SIGN_PROCESS_ENDED").to_string();
    let request = |method: &str, path: &str, ct: &str, extra: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: signrelay\r\nContent-Type: {ct}\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes()
    };
    let every = Duration::from_millis(200);
    let bound = Duration::from_secs(8);
    let rest_head = request(
        "POST",
        "/gosign/rest/envelopes/SLOW-1/notify",
        "application/json",
        "",
    );
    let soap_head = request(
        "POST",
        "/gosign/soap",
        "text/xml; charset=utf-8",
        "SOAPAction: \"\"\r\n",
    );
    let registry_head = request(
        "PUT",
        "/api/v1/transactions/gosign/SLOW-1",
        "application/json",
        &format!("X-Api-Key: {ADMIN_KEY}\r\n"),
    );
    let (rest, soap, registry) = tokio::join!(
        trickle(&addr, &rest_head, body.as_bytes(), every, bound),
        trickle(&addr, &soap_head, body.as_bytes(), every, bound),
        trickle(&addr, &registry_head, body.as_bytes(), every, bound),
    );
    for (name, seen) in [("rest", &rest), ("soap", &soap), ("registry", &registry)] {
        eprintln!(
            "{name}: after {:?}, closed {}: {:?}",
            seen.after,
            seen.closed,
            seen.text.lines().next()
        );
        assert!(
            seen.after < Duration::from_secs(6),
            "{name} not cut off: {seen:?}"
        );
        // Not the timeout of a fast reply: the body timeout is 4 × client_timeout_secs.
        assert!(seen.after >= Duration::from_secs(3), "{name}: {seen:?}");
        assert!(seen.closed, "{name}: the connection stayed open: {seen:?}");
    }
    assert_eq!(rest.status(), Some(200), "{rest:?}");
    assert!(
        rest.text.ends_with(
            r#"{"outcome":"failed_please_retry","message":"body was not received completely"}"#
        ),
        "{rest:?}"
    );
    assert_eq!(soap.status(), Some(500), "{soap:?}");
    assert!(
        soap.text.contains("<faultcode>soap:Client</faultcode>")
            && soap.text.contains("body was not received completely"),
        "{soap:?}"
    );
    assert_eq!(registry.status(), Some(400), "{registry:?}");
    assert!(
        registry.text.contains("application/problem+json")
            && registry
                .text
                .contains("urn:signrelay:problem:incomplete-body"),
        "{registry:?}"
    );
    assert!(app.events("").await.is_empty());
    let (_, reg) = app.admin_get("/api/v1/transactions/gosign/SLOW-1").await;
    assert_eq!(reg["status"], 404, "{reg}");
}

/// Request headers that trickle in are cut off by `server.client_timeout_secs` with a 408,
/// on a fresh connection and on a kept-alive one after a first, complete request.
#[tokio::test]
async fn trickled_headers_are_cut_off() {
    let app = spawn_app_with(|c| c.server.client_timeout_secs = 1).await;
    let addr = socket_addr(&app);
    let every = Duration::from_millis(200);
    let bound = Duration::from_secs(5);
    let slow = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let fresh = trickle(
        &addr,
        b"GET /healthz HTTP/1.1\r\nHost: signrelay\r\n",
        slow,
        every,
        bound,
    )
    .await;
    eprintln!("fresh: {fresh:?}");
    assert!(fresh.after < Duration::from_secs(3), "{fresh:?}");
    assert!(fresh.after >= Duration::from_millis(900), "{fresh:?}");
    assert!(
        fresh.status() == Some(408) || (fresh.text.is_empty() && fresh.closed),
        "{fresh:?}"
    );

    // A first request answered at once, then the next one's headers trickle on the same
    // connection. (actix times out only a connection's first request head, so the server
    // keeps no connection alive: each request is a first one.)
    let stream = TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(b"GET /healthz HTTP/1.1\r\nHost: signrelay\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !complete_response(&buf) {
        let n = rd.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the first answer");
        buf.extend_from_slice(&chunk[..n]);
    }
    let first = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(first.starts_with("http/1.1 200"), "{first}");
    assert!(first.contains("connection: close\r\n"), "{first}");
    let answered = Instant::now();
    let writer = tokio::spawn(async move {
        let _ = wr
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: signrelay\r\n")
            .await;
        for b in slow.iter().cycle().take(100) {
            tokio::time::sleep(every).await;
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
        }
    });
    let mut second = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => second.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    writer.abort();
    let second = String::from_utf8_lossy(&second).into_owned();
    assert!(
        ended.is_ok(),
        "a connection trickling its second request's headers was not cut off within 3 s \
         (got {second:?})"
    );
    assert!(
        second.is_empty() || second.starts_with("HTTP/1.1 408"),
        "{second:?}"
    );
    assert!(answered.elapsed() < Duration::from_millis(1500));
}

/// Hundreds of connections that send nothing, or half a request, do not keep a callback
/// from being answered quickly; the server closes them after `server.client_timeout_secs`.
#[tokio::test]
async fn many_idle_connections_do_not_starve_callbacks() {
    const IDLE: usize = 500;
    let app = spawn_app_with(|c| c.server.client_timeout_secs = 2).await;
    let addr = socket_addr(&app);
    let tx = "IDLE-1";
    assert_eq!(app.register(tx, "zaak-idle").await.status(), 201);
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"POST /gosign/rest/envelopes/IDLE-1/notify HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(s);
    }
    // A fresh client (no pooled connection) gets through at once.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let r = client
        .post(app.url(&format!("/gosign/rest/envelopes/{tx}/notify")))
        .json(&work(tx, "SIGN_PROCESS_ENDED"))
        .send()
        .await
        .unwrap();
    let answer: Value = r.json().await.unwrap();
    let took = started.elapsed();
    assert_eq!(answer, json!({"outcome": "succeeded"}));
    assert!(
        took < Duration::from_secs(2),
        "a callback took {took:?} beside {IDLE} idle connections"
    );
    let r = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // The idle ones are closed by the server (a 408 first, for those that began a request).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    let closed = stream::iter(idle.iter_mut())
        .map(|s| async move {
            let mut buf = Vec::new();
            tokio::time::timeout_at(deadline, s.read_to_end(&mut buf))
                .await
                .is_ok()
        })
        .buffer_unordered(IDLE)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    assert_eq!(closed, IDLE, "idle connections left open");
    app.nrc.wait_for(1, WAIT).await;
    assert_eq!(app.nrc.received().len(), 1);
}
