//! A PKIsigning platform stand-in, as strict as signrelay needs the real one to be: an OAuth2
//! token endpoint (client credentials, tokens that expire), `GET /requests/{id}` that wants a
//! valid bearer token and the dossier's callback key, `GET /Organisations/current`,
//! `POST /organisations/{id}/webhooks`, and the platform's limit of calls per window (beyond
//! it: 429 with `Retry-After`, and the violation is counted). It records every call, can fail
//! (an HTTP status), hang, or answer 429 on purpose, and can post webhooks as PKIsigning does.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;
use serde_json::{json, Value};

/// How the stand-in answers `GET /requests/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// This status, every time.
    Fail(u16),
    /// 429 with this `Retry-After`, every time.
    TooMany {
        retry_after_secs: u64,
    },
    /// Never answer.
    Hang,
}

/// One call as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    /// `token`, `request`, `organisations`, `webhooks`.
    pub kind: &'static str,
    pub status: u16,
}

struct Dossier {
    status: String,
    key: String,
    /// What `Download` zips: (file name, bytes).
    files: Vec<(String, Vec<u8>)>,
}

struct State {
    client_id: String,
    client_secret: String,
    token_life: Duration,
    tokens: HashMap<String, Instant>,
    dossiers: HashMap<String, Dossier>,
    behaviour: Behaviour,
    limit: (usize, Duration),
    arrivals: Vec<Instant>,
    calls: Vec<Call>,
    over_limit: usize,
    webhooks: Vec<Value>,
    organisation: (String, String),
}

pub struct PkisigningStandIn {
    /// The API base (`pkisigning.api_url`).
    pub api_url: String,
    /// The token endpoint (`pkisigning.token_url`).
    pub token_url: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

type Shared = web::Data<Arc<Mutex<State>>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts the call against the platform's limit; `Some(answer)` when it is over it.
fn admit(s: &Shared, kind: &'static str) -> Option<HttpResponse> {
    let mut st = lock(s);
    let now = Instant::now();
    let (calls, window) = st.limit;
    st.arrivals.push(now);
    let recent: Vec<Instant> = st
        .arrivals
        .iter()
        .copied()
        .filter(|t| now.duration_since(*t) < window)
        .collect();
    if recent.len() > calls {
        st.over_limit += 1;
        let wait = window
            .saturating_sub(now.duration_since(recent[0]))
            .as_secs()
            + 1;
        st.calls.push(Call {
            at: now,
            kind,
            status: 429,
        });
        return Some(
            HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", wait.to_string()))
                .json(json!({"message": "Rate limit exceeded"})),
        );
    }
    None
}

fn record(s: &Shared, kind: &'static str, status: u16) {
    lock(s).calls.push(Call {
        at: Instant::now(),
        kind,
        status,
    });
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: String,
    client_secret: String,
    #[serde(default)]
    scope: String,
}

async fn token(form: web::Form<TokenForm>, s: Shared) -> HttpResponse {
    if let Some(r) = admit(&s, "token") {
        return r;
    }
    let mut st = lock(&s);
    let ok = form.grant_type == "client_credentials"
        && form.client_id == st.client_id
        && form.client_secret == st.client_secret
        && form.scope.split(' ').any(|sc| sc == "pkisigning.platform");
    if !ok {
        drop(st);
        record(&s, "token", 400);
        return HttpResponse::BadRequest().json(json!({"error": "invalid_client"}));
    }
    let t = format!("tok-{}", uuid::Uuid::new_v4().simple());
    let life = st.token_life;
    st.tokens.insert(t.clone(), Instant::now() + life);
    drop(st);
    record(&s, "token", 200);
    HttpResponse::Ok().json(json!({
        "access_token": t, "token_type": "Bearer", "expires_in": life.as_secs(), "scope": "pkisigning.platform"
    }))
}

/// A valid, unexpired bearer token?
fn authorized(req: &HttpRequest, s: &Shared) -> bool {
    let Some(t) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    lock(s)
        .tokens
        .get(t)
        .is_some_and(|until| Instant::now() < *until)
}

#[derive(Deserialize)]
struct KeyQuery {
    #[serde(rename = "callbackAuthenticationKey")]
    key: Option<String>,
}

async fn request(
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<KeyQuery>,
    s: Shared,
) -> HttpResponse {
    if let Some(r) = admit(&s, "request") {
        return r;
    }
    let behaviour = lock(&s).behaviour;
    match behaviour {
        Behaviour::Normal => {}
        Behaviour::Fail(code) => {
            record(&s, "request", code);
            return HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                .json(json!({"message": "failure"}));
        }
        Behaviour::TooMany { retry_after_secs } => {
            record(&s, "request", 429);
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", retry_after_secs.to_string()))
                .finish();
        }
        Behaviour::Hang => {
            record(&s, "request", 0);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return HttpResponse::GatewayTimeout().finish();
        }
    }
    if !authorized(&req, &s) {
        record(&s, "request", 401);
        return HttpResponse::Unauthorized().finish();
    }
    let id = path.into_inner().to_ascii_lowercase();
    let st = lock(&s);
    let found = st
        .dossiers
        .get(&id)
        .filter(|d| q.key.as_deref() == Some(d.key.as_str()))
        .map(|d| d.status.clone());
    drop(st);
    match found {
        Some(status) => {
            record(&s, "request", 200);
            HttpResponse::Ok().json(json!({
                "id": id, "dossierName": "Dossier", "status": status, "signed": status == "Completed",
                "dossierType": "PDF", "myDossier": true, "clearancelevel": "Normal", "documents": []
            }))
        }
        // Unknown dossier, or a key that is not its: the platform tells nothing either way.
        None => {
            record(&s, "request", 404);
            HttpResponse::NotFound().finish()
        }
    }
}

/// `GET /requests/{id}/Download`: the dossier's files as a zip (deflated).
async fn download(req: HttpRequest, path: web::Path<String>, s: Shared) -> HttpResponse {
    if let Some(r) = admit(&s, "download") {
        return r;
    }
    if let Behaviour::Fail(code) = lock(&s).behaviour {
        record(&s, "download", code);
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
            .json(json!({"message": "failure"}));
    }
    if !authorized(&req, &s) {
        record(&s, "download", 401);
        return HttpResponse::Unauthorized().finish();
    }
    let files = lock(&s)
        .dossiers
        .get(&path.to_ascii_lowercase())
        .map(|d| d.files.clone())
        .filter(|f| !f.is_empty());
    let Some(files) = files else {
        record(&s, "download", 404);
        return HttpResponse::NotFound().finish();
    };
    let zipped = web::block(move || {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in files {
            w.start_file(name, opts)?;
            w.write_all(&bytes)?;
        }
        Ok::<_, zip::result::ZipError>(w.finish()?.into_inner())
    })
    .await;
    match zipped {
        Ok(Ok(bytes)) => {
            record(&s, "download", 200);
            HttpResponse::Ok()
                .content_type("application/zip")
                .insert_header((
                    "Content-Disposition",
                    "attachment; filename=\"dossier.zip\"",
                ))
                .body(bytes)
        }
        _ => HttpResponse::InternalServerError().finish(),
    }
}

async fn organisations(req: HttpRequest, s: Shared) -> HttpResponse {
    if let Some(r) = admit(&s, "organisations") {
        return r;
    }
    if !authorized(&req, &s) {
        record(&s, "organisations", 401);
        return HttpResponse::Unauthorized().finish();
    }
    record(&s, "organisations", 200);
    let (id, name) = lock(&s).organisation.clone();
    HttpResponse::Ok().json(json!([{"id": id, "name": name}]))
}

async fn webhooks(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<Value>,
    s: Shared,
) -> HttpResponse {
    if let Some(r) = admit(&s, "webhooks") {
        return r;
    }
    if !authorized(&req, &s) {
        record(&s, "webhooks", 401);
        return HttpResponse::Unauthorized().finish();
    }
    let org = lock(&s).organisation.0.clone();
    let b = body.into_inner();
    let valid = path.as_str() == org
        && b["Events"] == json!(["status"])
        && b["Active"] == json!(true)
        && b["Config"]["url"].as_str().is_some_and(|u| !u.is_empty());
    if !valid {
        record(&s, "webhooks", 400);
        return HttpResponse::BadRequest().json(json!({"message": "invalid webhook"}));
    }
    record(&s, "webhooks", 200);
    lock(&s).webhooks.push(b.clone());
    let now = chrono::Utc::now().to_rfc3339();
    HttpResponse::Ok().json(json!({
        "events": b["Events"], "config": b["Config"], "active": true,
        "id": uuid::Uuid::new_v4(), "created": now, "lastUpdate": now
    }))
}

impl PkisigningStandIn {
    pub async fn start(client_id: &str, client_secret: &str) -> std::io::Result<PkisigningStandIn> {
        let state = Arc::new(Mutex::new(State {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            token_life: Duration::from_secs(3600),
            tokens: HashMap::new(),
            dossiers: HashMap::new(),
            behaviour: Behaviour::Normal,
            limit: (100, Duration::from_secs(60)),
            arrivals: Vec::new(),
            calls: Vec::new(),
            over_limit: 0,
            webhooks: Vec::new(),
            organisation: (
                uuid::Uuid::new_v4().to_string(),
                "Gemeente Voorbeeld".into(),
            ),
        }));
        let data = web::Data::new(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/connect/token", web::post().to(token))
                .route("/api/requests/{id}", web::get().to(request))
                .route("/api/requests/{id}/Download", web::get().to(download))
                .route("/api/Organisations/current", web::get().to(organisations))
                .route(
                    "/api/organisations/{org}/webhooks",
                    web::post().to(webhooks),
                )
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(PkisigningStandIn {
            api_url: format!("http://127.0.0.1:{port}/api"),
            token_url: format!("http://127.0.0.1:{port}/connect/token"),
            state,
            handle,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A dossier with its status and callback key.
    pub fn dossier(&self, id: &str, status: &str, key: &str) {
        self.lock().dossiers.insert(
            id.to_ascii_lowercase(),
            Dossier {
                status: status.into(),
                key: key.into(),
                files: Vec::new(),
            },
        );
    }

    /// The files of a dossier's `Download` zip: (name, bytes).
    pub fn dossier_files(&self, id: &str, files: Vec<(String, Vec<u8>)>) {
        if let Some(d) = self.lock().dossiers.get_mut(&id.to_ascii_lowercase()) {
            d.files = files;
        }
    }

    pub fn behave(&self, b: Behaviour) {
        self.lock().behaviour = b;
    }

    /// The platform's limit: at most `calls` in any `window`.
    pub fn limit(&self, calls: usize, window: Duration) {
        self.lock().limit = (calls, window);
    }

    pub fn token_life(&self, life: Duration) {
        self.lock().token_life = life;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Calls answered 429 because the platform's limit was exceeded.
    pub fn over_limit(&self) -> usize {
        self.lock().over_limit
    }

    /// The most calls that arrived within any `window`.
    pub fn most_in_window(&self, window: Duration) -> usize {
        let at = self.lock().arrivals.clone();
        (0..at.len())
            .map(|i| {
                at[i..]
                    .iter()
                    .take_while(|t| t.duration_since(at[i]) < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    pub fn webhooks(&self) -> Vec<Value> {
        self.lock().webhooks.clone()
    }

    pub fn organisation_id(&self) -> String {
        self.lock().organisation.0.clone()
    }

    /// The webhook body PKIsigning posts for a dossier's status.
    pub fn webhook_body(&self, id: &str, status: &str, reason: &str) -> Value {
        let key = self
            .lock()
            .dossiers
            .get(&id.to_ascii_lowercase())
            .map(|d| d.key.clone())
            .unwrap_or_default();
        json!({"PkisId": id, "DossierStatus": status, "Reason": reason, "AuthenticationKey": key})
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}
