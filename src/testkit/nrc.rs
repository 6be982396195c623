//! An NRC stand-in that behaves like Open Notificaties where it matters: it checks the ZGW JWT
//! (signature, claims, `iat` neither in its future nor over an hour old; 403 on failure, never
//! 401), requires `kenmerken` with string values whose keys are among the kanaal's filters,
//! refuses an `aanmaakdatum` in its future and a kanaal it does not have (400 with
//! `invalidParams`, as Open Notificaties words them), answers 201, and serves the kanaal API:
//! creating a kanaal fetches its `documentatieLink` and refuses the kanaal (400, `bad-url`)
//! unless that answers 200.
//!
//! For tests of retries and pacing it can be told to fail or hang; to serve at most K requests
//! at once with a fixed service time, queueing the others (so latency grows with load) and
//! answering 503 beyond the queue, with K changeable mid-run ([`Capacity`]); to go down (its
//! port closed) and come up again; to refuse signrelay's credentials (a rotated secret); and to
//! lose its kanaal.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{DateTime, Utc};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::zgw::jwt::ZgwClaims;

/// How the stand-in answers `POST /notificaties`.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    Accept,
    /// Answer this status (with `Retry-After` when given) to every notification.
    Fail {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Never answer (until the client times out).
    Hang,
}

/// A stand-in of limited capacity: `slots` requests are served at once, each for `latency`;
/// up to `queue` more wait their turn (first come, first served), and any beyond answer 503.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    pub slots: usize,
    pub latency: Duration,
    pub queue: usize,
}

impl Capacity {
    /// Notifications per second it can take.
    pub fn rate(&self) -> f64 {
        self.slots as f64 / self.latency.as_secs_f64()
    }
}

/// What the capacity-limited stand-in did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CapacityStats {
    /// Requests that got a slot.
    pub served: u64,
    /// Requests answered 503: the queue was full.
    pub overflowed: u64,
    /// Requests the client gave up on (timed out) while queued or served.
    pub abandoned: u64,
    /// The longest queue seen.
    pub max_queued: usize,
}

#[derive(Default)]
struct Slots {
    capacity: Option<Capacity>,
    busy: usize,
    queued: VecDeque<oneshot::Sender<()>>,
    stats: CapacityStats,
}

impl Slots {
    /// Hands free slots to the requests waiting, first come first served.
    fn hand_out(&mut self) {
        let slots = self.capacity.map_or(usize::MAX, |c| c.slots);
        while self.busy < slots {
            let Some(next) = self.queued.pop_front() else {
                return;
            };
            if next.send(()).is_ok() {
                self.busy += 1;
            }
        }
    }
}

/// A slot held by a request being served.
struct Slot {
    slots: Arc<Mutex<Slots>>,
    finished: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !self.finished {
            s.stats.abandoned += 1;
        }
        s.busy = s.busy.saturating_sub(1);
        s.hand_out();
    }
}

/// A request waiting for a slot; a slot handed to it after it gave up is passed on.
struct Waiting {
    rx: Option<oneshot::Receiver<()>>,
    slots: Arc<Mutex<Slots>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            let handed = rx.try_recv().is_ok();
            let mut s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            s.stats.abandoned += 1;
            if handed {
                s.busy = s.busy.saturating_sub(1);
                s.hand_out();
            }
        }
    }
}

/// Waits for a slot when the stand-in's capacity is limited. `Err` when the queue is full.
async fn take_slot(slots: &Arc<Mutex<Slots>>) -> Result<Option<Slot>, ()> {
    let rx = {
        let mut s = slots.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = s.capacity else {
            return Ok(None);
        };
        if s.busy < c.slots && s.queued.is_empty() {
            s.busy += 1;
            s.stats.served += 1;
            None
        } else if s.queued.len() >= c.queue {
            s.stats.overflowed += 1;
            return Err(());
        } else {
            let (tx, rx) = oneshot::channel();
            s.queued.push_back(tx);
            s.stats.max_queued = s.stats.max_queued.max(s.queued.len());
            Some(rx)
        }
    };
    if let Some(rx) = rx {
        let mut waiting = Waiting {
            rx: Some(rx),
            slots: slots.clone(),
        };
        let handed = waiting.rx.as_mut().expect("waiting").await.is_ok();
        waiting.rx = None;
        if !handed {
            // The capacity was lifted: served without a slot.
            return Ok(None);
        }
        slots.lock().unwrap_or_else(|p| p.into_inner()).stats.served += 1;
    }
    Ok(Some(Slot {
        slots: slots.clone(),
        finished: false,
    }))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub body: Value,
    pub claims: ZgwClaims,
    pub at: DateTime<Utc>,
}

#[derive(Default)]
struct State {
    behaviour: Option<Behaviour>,
    received: Vec<Received>,
    /// Set: accepted notifications keep their transaction id only (a million of them fit).
    light: bool,
    light_received: HashSet<String>,
    refused: Vec<(u16, String)>,
    /// kanaal naam → filters
    kanalen: BTreeMap<String, Vec<String>>,
    kanaal_creations: usize,
    /// Transaction ids whose notifications are refused with 400 (a "bad" one).
    poison: Vec<String>,
    attempts: usize,
}

pub struct NrcStandIn {
    pub url: String,
    pub client_id: String,
    shared: web::Data<Shared>,
    port: u16,
    /// The running server; `None` while it is down.
    handle: Mutex<Option<ServerHandle>>,
}

struct Shared {
    state: Arc<Mutex<State>>,
    slots: Arc<Mutex<Slots>>,
    secret: Mutex<String>,
    client_id: String,
    print: bool,
    /// Fetches a kanaal's `documentatieLink`.
    http: reqwest::Client,
}

/// Serves the stand-in's routes on `listener`.
fn serve(listener: TcpListener, shared: web::Data<Shared>) -> std::io::Result<ServerHandle> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .route("/api/v1/notificaties", web::post().to(notificaties))
            .route("/api/v1/kanaal", web::get().to(kanaal_list))
            .route("/api/v1/kanaal", web::post().to(kanaal_create))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

impl NrcStandIn {
    /// Starts on a random loopback port. `kanaal_exists` seeds the kanaal `documentacties`.
    pub async fn start(
        client_id: &str,
        secret: &str,
        kanaal_exists: bool,
    ) -> std::io::Result<NrcStandIn> {
        Self::start_inner(client_id, secret, kanaal_exists, false).await
    }

    /// As `start`, printing each received notification (for the demo).
    pub async fn start_printing(client_id: &str, secret: &str) -> std::io::Result<NrcStandIn> {
        Self::start_inner(client_id, secret, false, true).await
    }

    async fn start_inner(
        client_id: &str,
        secret: &str,
        kanaal_exists: bool,
        print: bool,
    ) -> std::io::Result<NrcStandIn> {
        let state = Arc::new(Mutex::new(State::default()));
        if kanaal_exists {
            state.lock().unwrap().kanalen.insert(
                "documentacties".into(),
                vec!["transaction_id".into(), "reden".into()],
            );
        }
        let shared = web::Data::new(Shared {
            state,
            slots: Arc::default(),
            secret: Mutex::new(secret.into()),
            client_id: client_id.into(),
            print,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(std::io::Error::other)?,
        });
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let handle = serve(listener, shared.clone())?;
        Ok(NrcStandIn {
            url: format!("http://127.0.0.1:{port}/api/v1"),
            client_id: client_id.into(),
            shared,
            port,
            handle: Mutex::new(Some(handle)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.shared.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Limits the stand-in's capacity (`None`: unlimited), at once: requests waiting get the
    /// slots a larger capacity frees.
    pub fn set_capacity(&self, capacity: Option<Capacity>) {
        let mut s = self.slots();
        s.capacity = capacity;
        if capacity.is_none() {
            // Everything waiting goes on.
            s.queued.clear();
        }
        s.hand_out();
    }

    /// What the capacity-limited stand-in did so far.
    pub fn capacity_stats(&self) -> CapacityStats {
        self.slots().stats
    }

    /// Goes down: the port is closed, open connections are dropped.
    pub async fn go_down(&self) {
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            h.stop(false).await;
        }
    }

    /// Comes up again on the same port.
    pub async fn come_up(&self) -> std::io::Result<()> {
        let addr = ("127.0.0.1", self.port);
        // The old socket may linger for a moment.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let handle = serve(listener, self.shared.clone())?;
        *self.handle.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(())
    }

    /// Checks JWTs against this secret from now on: signrelay's (an old one) is refused with
    /// 403, as after a rotation at the NRC.
    pub fn set_secret(&self, secret: &str) {
        *self.shared.secret.lock().unwrap_or_else(|p| p.into_inner()) = secret.into();
    }

    /// Loses a kanaal (as a database restored without it would).
    pub fn remove_kanaal(&self, naam: &str) {
        self.lock().kanalen.remove(naam);
    }

    /// Has a kanaal made (by an administrator, not through the API).
    pub fn add_kanaal(&self, naam: &str, filters: &[&str]) {
        self.lock()
            .kanalen
            .insert(naam.into(), filters.iter().map(|f| f.to_string()).collect());
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        self.lock().behaviour = Some(b);
    }

    /// Refuse (400) notifications for this transaction until `cure` is called.
    pub fn poison(&self, transaction_id: &str) {
        self.lock().poison.push(transaction_id.into());
    }

    pub fn cure(&self, transaction_id: &str) {
        self.lock().poison.retain(|t| t != transaction_id);
    }

    /// Accepted notifications, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Keep only the transaction ids of what is accepted from now on (`light_received`), not
    /// whole notifications: a benchmark filling a store sends millions.
    pub fn set_light(&self, light: bool) {
        self.lock().light = light;
    }

    /// Transaction ids of the notifications accepted while light.
    pub fn light_received(&self) -> HashSet<String> {
        self.lock().light_received.clone()
    }

    /// Refused notifications: (status, reason).
    pub fn refused(&self) -> Vec<(u16, String)> {
        self.lock().refused.clone()
    }

    /// All `POST /notificaties` requests that reached the stand-in.
    pub fn attempts(&self) -> usize {
        self.lock().attempts
    }

    pub fn kanaal_creations(&self) -> usize {
        self.lock().kanaal_creations
    }

    pub fn kanalen(&self) -> Vec<String> {
        self.lock().kanalen.keys().cloned().collect()
    }

    /// Waits until at least `n` notifications were accepted, or `timeout` passes.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(self) {
        self.go_down().await;
    }
}

fn problem(status: StatusCode, code: &str, detail: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(json!({"type": format!("urn:nrc:{code}"), "code": code, "title": code, "status": status.as_u16(), "detail": detail, "instance": format!("urn:uuid:{}", uuid::Uuid::new_v4())}))
}

/// A 400 as Open Notificaties words it: `invalid`, with the field's own code in
/// `invalidParams`.
fn invalid(name: &str, code: &str, reason: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("application/problem+json")
        .json(json!({
            "type": "https://nrc.example/ref/fouten/ValidationError/",
            "code": "invalid",
            "title": "Ongeldige invoer.",
            "status": 400,
            "detail": reason,
            "instance": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            "invalidParams": [{"name": name, "code": code, "reason": reason}],
        }))
}

/// A refused token: Open Notificaties answers 403 for every auth problem.
fn forbidden(why: &str) -> HttpResponse {
    let code = if why.contains("InvalidSignature") {
        "invalid-jwt-signature"
    } else {
        "permission_denied"
    };
    problem(StatusCode::FORBIDDEN, code, why.to_string())
}

fn check_jwt(req: &HttpRequest, s: &Shared) -> Result<ZgwClaims, String> {
    let h = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization header")?;
    let token = h.strip_prefix("Bearer ").ok_or("not a Bearer token")?;
    let mut v = Validation::new(Algorithm::HS256);
    v.required_spec_claims = ["iss"].into_iter().map(String::from).collect();
    v.validate_exp = false;
    let secret = s.secret.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let data = decode::<ZgwClaims>(token, &DecodingKey::from_secret(secret.as_bytes()), &v)
        .map_err(|e| format!("invalid JWT: {e:?}"))?;
    let c = data.claims;
    if c.client_id != s.client_id || c.iss != s.client_id {
        return Err("unknown client_id".into());
    }
    if c.user_id.is_empty() || c.user_representation.is_empty() {
        return Err("user_id and user_representation are required".into());
    }
    let now = Utc::now().timestamp();
    if c.iat > now {
        return Err("iat is in the future".into());
    }
    if now - c.iat > 3600 {
        return Err("token expired (iat older than an hour)".into());
    }
    Ok(c)
}

/// A refused field: (name, code, reason).
type Refusal = (&'static str, &'static str, String);

fn validate(body: &Value, kanalen: &BTreeMap<String, Vec<String>>) -> Result<(), Refusal> {
    let bad = |name, code, reason: &str| (name, code, reason.to_string());
    let s = |k: &str| body.get(k).and_then(Value::as_str);
    let kanaal = s("kanaal").ok_or(bad("kanaal", "required", "kanaal missing"))?;
    let filters = kanalen.get(kanaal).ok_or(bad(
        "kanaal",
        "message_kanaal",
        "Kanaal met deze naam bestaat niet.",
    ))?;
    for k in ["hoofdObject", "resourceUrl"] {
        let u = s(k).ok_or((k, "required", format!("{k} missing")))?;
        url::Url::parse(u).map_err(|_| (k, "invalid", format!("{k} is not a URL")))?;
    }
    if s("hoofdObject") != s("resourceUrl") {
        return Err(bad(
            "resourceUrl",
            "invalid",
            "hoofdObject and resourceUrl differ (resource is the zaak)",
        ));
    }
    if s("resource") != Some("zaak") {
        return Err(bad("resource", "invalid", "resource must be zaak"));
    }
    let actie = s("actie").ok_or(bad("actie", "required", "actie missing"))?;
    if actie != "OndertekenenVoltooid" && actie != "OndertekenenAfgebroken" {
        return Err(("actie", "invalid", format!("unexpected actie {actie}")));
    }
    let at = s("aanmaakdatum").ok_or(bad("aanmaakdatum", "required", "aanmaakdatum missing"))?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| bad("aanmaakdatum", "invalid", "aanmaakdatum is not RFC 3339"))?;
    if at.with_timezone(&Utc) > Utc::now() {
        return Err(bad(
            "aanmaakdatum",
            "future_not_allowed",
            "aanmaakdatum is in the future",
        ));
    }
    let kenmerken = body.get("kenmerken").and_then(Value::as_object).ok_or(bad(
        "kenmerken",
        "required",
        "kenmerken missing",
    ))?;
    for (k, v) in kenmerken {
        if !v.is_string() {
            return Err((
                "kenmerken",
                "invalid",
                format!("kenmerk {k} is not a string"),
            ));
        }
        if !filters.contains(k) {
            return Err((
                "kenmerken",
                "kenmerken_inconsistent",
                format!("kenmerk {k} is not a filter of the kanaal"),
            ));
        }
    }
    if !kenmerken.contains_key("transaction_id") {
        return Err(bad(
            "kenmerken",
            "invalid",
            "kenmerk transaction_id missing",
        ));
    }
    if (actie == "OndertekenenAfgebroken") != kenmerken.contains_key("reden") {
        return Err(bad(
            "kenmerken",
            "invalid",
            "reden is required for OndertekenenAfgebroken only",
        ));
    }
    Ok(())
}

async fn notificaties(req: HttpRequest, body: web::Bytes, s: web::Data<Shared>) -> HttpResponse {
    let behaviour = {
        let mut st = s.state.lock().unwrap_or_else(|p| p.into_inner());
        st.attempts += 1;
        st.behaviour.clone().unwrap_or(Behaviour::Accept)
    };
    match behaviour {
        Behaviour::Accept => {}
        Behaviour::Fail {
            status,
            retry_after,
        } => {
            let mut r = HttpResponse::build(StatusCode::from_u16(status).unwrap());
            if let Some(secs) = retry_after {
                r.insert_header(("Retry-After", secs.to_string()));
            }
            return r.json(json!({"detail": "stand-in told to fail"}));
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    let mut slot = match take_slot(&s.slots).await {
        Ok(slot) => slot,
        Err(()) => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "queue full".into(),
            )
        }
    };
    if let Some(slot) = slot.as_mut() {
        let capacity = s.slots.lock().unwrap_or_else(|p| p.into_inner()).capacity;
        if let Some(c) = capacity {
            tokio::time::sleep(c.latency).await;
        }
        slot.finished = true;
    }
    let claims = match check_jwt(&req, &s) {
        Ok(c) => c,
        Err(e) => {
            s.state.lock().unwrap().refused.push((403, e.clone()));
            return forbidden(&e);
        }
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "parse_error", e.to_string()),
    };
    let mut st = s.state.lock().unwrap_or_else(|p| p.into_inner());
    let verdict = validate(&value, &st.kanalen).and_then(|()| {
        let tx = value["kenmerken"]["transaction_id"].as_str().unwrap_or("");
        if st.poison.iter().any(|p| p == tx) {
            Err((
                "kenmerken",
                "invalid",
                "transaction refused by the stand-in (poisoned)".to_string(),
            ))
        } else {
            Ok(())
        }
    });
    if let Err((name, code, reason)) = verdict {
        st.refused.push((400, reason.clone()));
        return invalid(name, code, &reason);
    }
    if s.print {
        println!(
            "  NRC  <- {} {} transaction_id={}{}",
            value["actie"].as_str().unwrap_or(""),
            value["resourceUrl"].as_str().unwrap_or(""),
            value["kenmerken"]["transaction_id"].as_str().unwrap_or(""),
            value["kenmerken"]["reden"]
                .as_str()
                .map(|r| format!(" reden=\"{r}\""))
                .unwrap_or_default()
        );
    }
    if st.light {
        let tx = value["kenmerken"]["transaction_id"].as_str().unwrap_or("");
        st.light_received.insert(tx.to_string());
        return HttpResponse::Created().json(value);
    }
    st.received.push(Received {
        body: value.clone(),
        claims,
        at: Utc::now(),
    });
    HttpResponse::Created().json(value)
}

#[derive(serde::Deserialize)]
struct KanaalQuery {
    naam: Option<String>,
}

async fn kanaal_list(
    req: HttpRequest,
    q: web::Query<KanaalQuery>,
    s: web::Data<Shared>,
) -> HttpResponse {
    if let Err(e) = check_jwt(&req, &s) {
        return forbidden(&e);
    }
    let st = s.state.lock().unwrap_or_else(|p| p.into_inner());
    let list: Vec<Value> = st
        .kanalen
        .iter()
        .filter(|(n, _)| q.naam.as_deref().is_none_or(|want| want == n.as_str()))
        .map(|(n, f)| json!({"url": format!("http://nrc/kanaal/{n}"), "naam": n, "documentatieLink": "", "filters": f}))
        .collect();
    HttpResponse::Ok().json(list)
}

async fn kanaal_create(
    req: HttpRequest,
    body: web::Json<Value>,
    s: web::Data<Shared>,
) -> HttpResponse {
    if let Err(e) = check_jwt(&req, &s) {
        return forbidden(&e);
    }
    let Some(naam) = body.get("naam").and_then(Value::as_str) else {
        return invalid("naam", "required", "naam missing");
    };
    // As Open Notificaties: the documentatieLink must answer 200 before the kanaal is made.
    if let Some(link) = body
        .get("documentatieLink")
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty())
    {
        let status = match s.http.get(link).send().await {
            Ok(r) => r.status().as_u16().to_string(),
            Err(e) => format!(
                "no answer ({})",
                if e.is_timeout() {
                    "timeout"
                } else {
                    "connection failed"
                }
            ),
        };
        if status != "200" {
            return invalid(
                "documentatieLink",
                "bad-url",
                &format!("De URL {link} resulteerde in een ongeldige status: {status}."),
            );
        }
    }
    let filters: Vec<String> = body
        .get("filters")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut st = s.state.lock().unwrap_or_else(|p| p.into_inner());
    if st.kanalen.contains_key(naam) {
        return invalid("naam", "unique", "Er bestaat al een kanaal met deze naam.");
    }
    st.kanalen.insert(naam.to_string(), filters);
    st.kanaal_creations += 1;
    HttpResponse::Created().json(body.into_inner())
}
