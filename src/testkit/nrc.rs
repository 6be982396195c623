//! An NRC stand-in that behaves like Open Notificaties where it matters: it checks the ZGW JWT
//! (signature, claims, `iat` neither in its future nor over an hour old; 403 on failure),
//! requires `kenmerken` with string values whose keys are among the kanaal's filters, refuses
//! an `aanmaakdatum` in its future, answers 201, and serves the kanaal API. Its behaviour can be
//! switched to fail or hang, to test retries.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{DateTime, Utc};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

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
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
    print: bool,
}

struct Shared {
    state: Arc<Mutex<State>>,
    secret: String,
    client_id: String,
    print: bool,
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
            state: state.clone(),
            secret: secret.into(),
            client_id: client_id.into(),
            print,
        });
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
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
        Ok(NrcStandIn {
            url: format!("http://127.0.0.1:{port}/api/v1"),
            client_id: client_id.into(),
            state,
            handle,
            print,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        let _ = self.print;
        self.handle.stop(false).await;
    }
}

fn problem(status: StatusCode, code: &str, detail: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(json!({"type": format!("urn:nrc:{code}"), "code": code, "title": code, "status": status.as_u16(), "detail": detail}))
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
    let data = decode::<ZgwClaims>(token, &DecodingKey::from_secret(s.secret.as_bytes()), &v)
        .map_err(|e| format!("invalid JWT: {e}"))?;
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

fn validate(body: &Value, kanalen: &BTreeMap<String, Vec<String>>) -> Result<(), String> {
    let s = |k: &str| body.get(k).and_then(Value::as_str);
    let kanaal = s("kanaal").ok_or("kanaal missing")?;
    let filters = kanalen.get(kanaal).ok_or("kanaal does not exist")?;
    for k in ["hoofdObject", "resourceUrl"] {
        let u = s(k).ok_or(format!("{k} missing"))?;
        url::Url::parse(u).map_err(|_| format!("{k} is not a URL"))?;
    }
    if s("hoofdObject") != s("resourceUrl") {
        return Err("hoofdObject and resourceUrl differ (resource is the zaak)".into());
    }
    if s("resource") != Some("zaak") {
        return Err("resource must be zaak".into());
    }
    let actie = s("actie").ok_or("actie missing")?;
    if actie != "OndertekenenVoltooid" && actie != "OndertekenenAfgebroken" {
        return Err(format!("unexpected actie {actie}"));
    }
    let at = s("aanmaakdatum").ok_or("aanmaakdatum missing")?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| "aanmaakdatum is not RFC 3339")?;
    if at.with_timezone(&Utc) > Utc::now() {
        return Err("aanmaakdatum is in the future".into());
    }
    let kenmerken = body
        .get("kenmerken")
        .and_then(Value::as_object)
        .ok_or("kenmerken missing")?;
    for (k, v) in kenmerken {
        if !v.is_string() {
            return Err(format!("kenmerk {k} is not a string"));
        }
        if !filters.contains(k) {
            return Err(format!("kenmerk {k} is not a filter of the kanaal"));
        }
    }
    if !kenmerken.contains_key("transaction_id") {
        return Err("kenmerk transaction_id missing".into());
    }
    if (actie == "OndertekenenAfgebroken") != kenmerken.contains_key("reden") {
        return Err("reden is required for OndertekenenAfgebroken only".into());
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
    let claims = match check_jwt(&req, &s) {
        Ok(c) => c,
        Err(e) => {
            s.state.lock().unwrap().refused.push((403, e.clone()));
            return problem(StatusCode::FORBIDDEN, "permission_denied", e);
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
            Err("transaction refused by the stand-in (poisoned)".to_string())
        } else {
            Ok(())
        }
    });
    if let Err(e) = verdict {
        st.refused.push((400, e.clone()));
        return problem(StatusCode::BAD_REQUEST, "invalid", e);
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
        return problem(StatusCode::FORBIDDEN, "permission_denied", e);
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
        return problem(StatusCode::FORBIDDEN, "permission_denied", e);
    }
    let Some(naam) = body.get("naam").and_then(Value::as_str) else {
        return problem(StatusCode::BAD_REQUEST, "invalid", "naam missing".into());
    };
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
        return HttpResponse::BadRequest().json(json!({"invalidParams": [{"name": "naam", "code": "unique", "reason": "kanaal met deze naam bestaat al"}]}));
    }
    st.kanalen.insert(naam.to_string(), filters);
    st.kanaal_creations += 1;
    HttpResponse::Created().json(body.into_inner())
}
