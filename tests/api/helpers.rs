//! Spawning signrelay and its NRC stand-in for a test (zero2prod style).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use serde_json::{json, Value};
use signrelay::app::Application;
use signrelay::auth::AuthConfig;
pub use signrelay::config::Backend;
use signrelay::config::{Config, Secret};
use signrelay::testkit::nrc::{NrcStandIn, Received};
use signrelay::testkit::postgres::TestDb;

/// The store the suite runs on: each test binary that includes these modules says which
/// (`tests/api`: sled; `tests/api_pg`: PostgreSQL, a database of its own per test).
pub const BACKEND: Backend = crate::BACKEND;

/// The test databases of running apps, by their store path (the path a restart reuses).
static DATABASES: std::sync::Mutex<Vec<(PathBuf, std::sync::Arc<TestDb>)>> =
    std::sync::Mutex::new(Vec::new());

/// The database of the app whose store (scratch) path is `store`, created on first use.
fn database_for(store: &Path) -> std::sync::Arc<TestDb> {
    let mut dbs = DATABASES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, db)) = dbs.iter().find(|(p, _)| p == store) {
        return db.clone();
    }
    // test_config is not async: the database is made on a thread with its own runtime.
    let db = std::thread::spawn(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(TestDb::create())
    })
    .join()
    .expect("a test database");
    let db = std::sync::Arc::new(db);
    dbs.push((store.to_path_buf(), db.clone()));
    db
}

/// The PostgreSQL database of `app`, when the suite runs on PostgreSQL.
pub fn database_of(app: &TestApp) -> Option<std::sync::Arc<TestDb>> {
    let dbs = DATABASES.lock().unwrap_or_else(|p| p.into_inner());
    dbs.iter()
        .find(|(p, _)| *p == app.store_path)
        .map(|(_, db)| db.clone())
}

/// Drops an app's test database with the app, unless the app was stopped to be restarted on
/// the same store (`TestApp::stop`).
struct DatabaseGuard(PathBuf);

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        let gone = {
            let mut dbs = DATABASES.lock().unwrap_or_else(|p| p.into_inner());
            let at = dbs.iter().position(|(p, _)| *p == self.0);
            at.map(|i| dbs.remove(i))
        };
        drop(gone);
    }
}

/// Whether a test runs on the configured backend; a test of one backend's own mechanics
/// (sled's payload files, the offline CLI on a stopped instance's directory) says so here.
pub fn only_on(backend: Backend) -> bool {
    BACKEND == backend
}

pub const NRC_CLIENT: &str = "signrelay-test";
pub const NRC_SECRET: &str = "nrc-test-secret";
pub const ADMIN_KEY: &str = "admin-test-key-0123456789";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub nrc: NrcStandIn,
    pub store_path: PathBuf,
    /// Keeps the temporary store alive for the test.
    pub dir: Option<tempfile::TempDir>,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    database: Option<DatabaseGuard>,
}

/// The configuration a test starts from: random port, the stand-in NRC, fast retries,
/// GoSign REST without authentication.
pub fn test_config(store: &Path, nrc_url: &str) -> Config {
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.server.workers = 2;
    cfg.server.shutdown_timeout_secs = 2;
    cfg.store.path = store.to_path_buf();
    // Tests that fill a disk set their own floor.
    cfg.store.min_free_mib = 0;
    if BACKEND == Backend::Postgres {
        cfg.store.backend = Backend::Postgres;
        cfg.store.postgres = database_for(store).config();
    }
    cfg.nrc.url = nrc_url.to_string();
    cfg.nrc.client_id = NRC_CLIENT.into();
    cfg.nrc.secret = Secret::Inline(NRC_SECRET.into());
    cfg.relay.backoff_initial_ms = 20;
    cfg.relay.backoff_max_secs = 1;
    cfg.relay.probe_interval_max_secs = 1;
    cfg.relay.timeout_secs = 2;
    cfg.admin.auth = AuthConfig::ApiKey {
        header: "X-Api-Key".into(),
        key: Secret::Inline(ADMIN_KEY.into()),
    };
    cfg.vendors.gosign.rest.auth = Some(AuthConfig::None);
    cfg
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns with a fresh store and NRC stand-in (kanaal already present); `adjust` edits the
/// config first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut cfg = test_config(&store, &nrc.url);
    adjust(&mut cfg);
    let mut app = spawn_on(cfg, nrc).await;
    app.dir = Some(dir);
    app
}

/// Spawns signrelay with `cfg` against an existing stand-in (e.g. to restart on a store).
pub async fn spawn_on(cfg: Config, nrc: NrcStandIn) -> TestApp {
    cfg.validate().expect("valid test config");
    let store_path = cfg.store.path.clone();
    let database =
        (cfg.store.backend == Backend::Postgres).then(|| DatabaseGuard(store_path.clone()));
    let app = Application::build(cfg).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let task = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        nrc,
        store_path,
        dir: None,
        handle,
        task,
        database,
    }
}

impl TestApp {
    /// Stops gracefully and hands back the stand-in and the store for a restart.
    pub async fn stop(self) -> (NrcStandIn, Option<tempfile::TempDir>, PathBuf) {
        self.handle.stop(true).await;
        self.task.await.unwrap().unwrap();
        // The database stays for a restart on the same store; the restarted app drops it.
        std::mem::forget(self.database);
        (self.nrc, self.dir, self.store_path)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn register(&self, tx: &str, zaak: &str) -> reqwest::Response {
        self.register_at("gosign", tx, zaak).await
    }

    /// Registers a transaction of `vendor` with the trigger message of `zaak`.
    pub async fn register_at(&self, vendor: &str, tx: &str, zaak: &str) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/api/v1/transactions/{vendor}/{tx}")))
            .header("X-Api-Key", ADMIN_KEY)
            .json(&trigger(zaak))
            .send()
            .await
            .unwrap()
    }

    /// Posts a GoSign REST notification; returns the status and the JSON answer.
    pub async fn notify(&self, envelope: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(&format!("/gosign/rest/envelopes/{envelope}/notify")))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .header("X-Api-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin_post(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .header("X-Api-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn events(&self, query: &str) -> Vec<Value> {
        let (s, v) = self.admin_get(&format!("/api/v1/events?{query}")).await;
        assert_eq!(s, 200, "{v}");
        v["events"].as_array().cloned().unwrap_or_default()
    }

    /// Polls the events of a transaction until `pred` holds for them, or panics after `timeout`.
    pub async fn wait_events(
        &self,
        tx: &str,
        timeout: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ev = self.events(&format!("transaction_id={tx}")).await;
            if pred(&ev) {
                return ev;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("events of {tx} never matched: {ev:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

pub fn zaak_url(zaak: &str) -> String {
    format!("https://zaken.example.nl/api/v1/zaken/{zaak}")
}

/// The trigger message of the ZGW signing pattern (seed 000).
pub fn trigger(zaak: &str) -> Value {
    json!({
        "naam": "Ondertekening besluit",
        "eigenaar": "lisa@breda.dev",
        "zaak": {"uuid": "2cc803a9-7404-4289-8f3d-f2300f666eac", "url": zaak_url(zaak)},
        "bewijs_informatieobjecttype": "https://catalogi.example.nl/api/v1/informatieobjecttypen/1",
        "documenten": [{"uuid": "f491249e-0651-4d22-a8a8-bb35885e9245", "url": "https://drc.example.nl/api/v1/enkelvoudiginformatieobjecten/1", "titel": "Some document", "versie": 1, "bestandsnaam": "some file.docx"}],
        "ondertekenaars": [{"e-mail": "john.doe@some.domain", "voornaam": "John", "achternaam": "Doe", "identificatie": "Signer1", "volgorde": 1, "authenticatie": {"methode": "sms", "waarde": "+31655555555"}}]
    })
}

/// A WorkNotification-format body (ch. 8.3.1).
pub fn work(envelope: &str, kind: &str) -> Value {
    json!({
        "envelopeExternalId": envelope,
        "notificationType": kind,
        "liveStatus": [{
            "mgrExternalId": "abianchi", "mgrName": "Anna", "mgrSurname": "Bianchi",
            "status": "WKD", "startedAt": "2026-11-20T10:00:00Z", "endedAt": "2026-11-20T10:05:00Z",
            "assignedTo": "Bianchi Anna (abianchi)", "stepNumber": 1,
            "actionResume": {"actions": 1, "signActions": 1, "approveActions": 0, "viewActions": 0,
                "approvedActions": 0, "initialsActions": 0, "initialedActions": 0, "signedActions": 1,
                "confirmedActions": 1, "graphometricActions": 0, "filledGraphometricActions": 0}
        }]
    })
}

/// An Extended-format body (ch. 8.3.2).
pub fn extended(envelope: &str, status: &str, previous: Option<&str>) -> Value {
    let mut v = json!({
        "externalId": envelope, "code": "TT0RJ62Y5", "subject": "Besluit", "status": status,
        "createdAt": 1573837182000i64, "completedAt": 1573837225000i64, "type": "STD"
    });
    if let Some(p) = previous {
        v["previousStatus"] = json!(p);
    }
    v
}

/// Waits for a condition on the NRC stand-in's received notifications.
pub async fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TOML config for running the real binary (`signrelay serve`) against the NRC stand-in:
/// fast retries, GoSign REST without authentication, JSON logs.
pub fn serve_toml(
    listen: &str,
    store: &Path,
    nrc_url: &str,
    relay_timeout_secs: u64,
    relay_concurrency: usize,
) -> String {
    let s = |v: &str| toml::Value::String(v.to_string()).to_string();
    format!(
        r#"[server]
listen = "{listen}"
workers = 2

[store]
path = {store}
min_free_mib = 0

[nrc]
url = {nrc_url}
client_id = {client}
secret = {secret}

[relay]
backoff_initial_ms = 20
backoff_max_secs = 1
probe_interval_max_secs = 1
timeout_secs = {relay_timeout_secs}
concurrency = {relay_concurrency}

[admin.auth]
method = "api-key"
header = "X-Api-Key"
key = {admin}

[gosign.rest.auth]
method = "none"

[log]
format = "json"
level = "info"
"#,
        store = s(&store.to_string_lossy()),
        nrc_url = s(nrc_url),
        client = s(NRC_CLIENT),
        secret = s(NRC_SECRET),
        admin = s(ADMIN_KEY),
    )
}

/// The value of one sample of the Prometheus text exposition.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, lbls) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let pairs: Vec<(&str, &str)> = lbls
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        if labels.iter().all(|l| pairs.contains(l)) {
            return value.parse().ok();
        }
    }
    None
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A response header's value; the test fails when it is missing.
pub fn header_of<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name} header in {h:?}"))
}

/// Starts the real binary (`signrelay serve --config config`) with stdout and stderr going to
/// `log`, and with the test's own config only: no `SIGNRELAY…` overrides from the environment.
pub fn spawn_serve(config: &Path, log: &Path) -> std::process::Child {
    let stderr = std::fs::File::create(log).unwrap();
    let stdout = stderr.try_clone().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_signrelay"));
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SIGNRELAY") {
            cmd.env_remove(k);
        }
    }
    cmd.spawn().expect("spawn signrelay")
}

/// Registers `tx` of `vendor` with a zaak of its own; returns the zaak url.
pub async fn register_tx(app: &TestApp, vendor: &str, tx: &str) -> String {
    let zaak = format!("zaak-{tx}");
    let r = app.register_at(vendor, tx, &zaak).await;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    zaak_url(&zaak)
}

/// What the NRC stand-in received for transaction `tx`.
pub fn received_for(app: &TestApp, tx: &str) -> Vec<Received> {
    app.nrc
        .received()
        .into_iter()
        .filter(|r| r.body["kenmerken"]["transaction_id"] == tx)
        .collect()
}

/// Asserts that the NRC received exactly one notification for `tx`, about its zaak, with this
/// actie and exactly these kenmerken, signed as signrelay's Applicatie.
pub fn assert_notified(app: &TestApp, tx: &str, zaak: &str, actie: &str, reden: Option<&str>) {
    let got = received_for(app, tx);
    assert_eq!(got.len(), 1, "notifications for {tx}: {got:#?}");
    let b = &got[0].body;
    assert_eq!(b["kanaal"], "documentacties", "{b}");
    assert_eq!(b["actie"], actie, "{b}");
    assert_eq!(b["resource"], "zaak", "{b}");
    assert_eq!(b["resourceUrl"], zaak, "{b}");
    assert_eq!(b["hoofdObject"], zaak, "{b}");
    let mut kenmerken = json!({"transaction_id": tx});
    if let Some(r) = reden {
        kenmerken["reden"] = json!(r);
    }
    assert_eq!(b["kenmerken"], kenmerken, "{b}");
    assert_eq!(got[0].claims.client_id, NRC_CLIENT);
}

/// The quarantine as the admin API lists it.
pub async fn quarantine(app: &TestApp) -> Vec<Value> {
    let (s, v) = app.admin_get("/api/v1/quarantine").await;
    assert_eq!(s, 200, "{v}");
    v["quarantine"].as_array().cloned().unwrap()
}

/// Waits until `tx` has exactly one event and it is delivered; returns it.
pub async fn delivered_event(app: &TestApp, tx: &str) -> Value {
    let ev = app
        .wait_events(tx, Duration::from_secs(5), |ev| {
            ev.iter().any(|e| e["relay"]["state"] == "delivered")
        })
        .await;
    assert_eq!(ev.len(), 1, "{ev:#?}");
    ev[0].clone()
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `len` bytes that look like a PDF: a PDF header and trailer around pseudo-random binary
/// (deterministic, every byte value).
pub fn pdf_bytes(len: usize) -> Vec<u8> {
    let head = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n";
    let tail = b"\n%%EOF\n";
    assert!(len >= head.len() + tail.len());
    let mut v = head.to_vec();
    let mut x: u32 = 0x1234_5678;
    while v.len() < len - tail.len() {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        v.push((x >> 24) as u8);
    }
    v.extend_from_slice(tail);
    v
}

/// An HTTP Basic `Authorization` value.
pub fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", b64(format!("{user}:{pass}").as_bytes()))
}

/// A process's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Starts a stand-in for a remote party: a real HTTP server on a free loopback port with the
/// routes `configure` mounts, one worker. Returns its base URL (`http://127.0.0.1:port`) and
/// its handle.
pub fn stand_in<F>(configure: F) -> (String, ServerHandle)
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server =
        actix_web::HttpServer::new(move || actix_web::App::new().configure(configure.clone()))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .listen(listener)
            .unwrap()
            .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), handle)
}
