//! A DRC (Documenten API) and ZRC (`zaakinformatieobjecten`) stand-in that behaves like Open
//! Zaak as observed (`zgw-facts.md`): ZGW JWTs checked with Open Zaak's 403 codes and scopes
//! per operation; `lock` answers a 32-hex id or 400 `existing-lock`; every PATCH under the
//! lock is a new version (also an identical repeat), refused with `missing-lock-id`,
//! `incorrect-lock-id` or `unlocked`; `integriteit` stored verbatim (carried over when left
//! out); `bestandsomvang` checked against the content; `inhoud: null` with a size makes
//! `bestandsdelen` of the configured chunk size, each PUT as multipart with the lock and the
//! exact size; unlock refuses an incomplete upload; a new document needs Open Zaak's required
//! fields and a unique `identificatie`; a zaak–document pair links once (400 `unique`).
//!
//! It records every call, can be down, slow or refusing, can hold a lock as another client,
//! can edit a document as someone else, and can apply an operation and then never answer (a
//! crash of signrelay in that window is the test).

// A refusal here is the HTTP answer itself, carried back to the handler as it is.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// How the stand-in answers.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Behaviour {
    #[default]
    Normal,
    /// Every request gets this status (with `Retry-After` when given).
    Fail {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Every request is answered after this delay.
    Slow(Duration),
}

/// An operation, to make the stand-in apply it and then never answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Lock,
    Patch,
    Part,
    Unlock,
    Create,
    Link,
}

/// One request as it reached the stand-in.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub at: DateTime<Utc>,
}

/// A version of a document as the stand-in keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub versie: u32,
    pub bestandsnaam: String,
    pub formaat: String,
    pub bestandsomvang: Option<u64>,
    pub integriteit: Option<Value>,
    /// `None` while parts are pending.
    pub content: Option<Vec<u8>>,
    pub titel: String,
    pub begin_registratie: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Part {
    uuid: String,
    volgnummer: u32,
    omvang: u64,
    data: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Doc {
    identificatie: String,
    bronorganisatie: String,
    informatieobjecttype: String,
    vertrouwelijkheidaanduiding: String,
    versions: Vec<Version>,
    /// Empty when unlocked.
    lock: String,
    parts: Vec<Part>,
}

/// A newly created document, as tests read it.
#[derive(Debug, Clone)]
pub struct Created {
    pub uuid: String,
    pub url: String,
    pub identificatie: String,
    pub informatieobjecttype: String,
    pub version: Version,
}

struct Client {
    secret: String,
    scopes: HashSet<String>,
    /// The highest `vertrouwelijkheidaanduiding` it may see.
    max_vertrouwelijkheid: String,
}

/// The `vertrouwelijkheidaanduiding` levels, lowest first.
const LEVELS: [&str; 8] = [
    "openbaar",
    "beperkt_openbaar",
    "intern",
    "zaakvertrouwelijk",
    "vertrouwelijk",
    "confidentieel",
    "geheim",
    "zeer_geheim",
];

fn level(v: &str) -> usize {
    LEVELS.iter().position(|l| *l == v).unwrap_or(0)
}

#[derive(Default)]
struct State {
    behaviour: Behaviour,
    docs: BTreeMap<String, Doc>,
    clients: BTreeMap<String, Client>,
    calls: Vec<Call>,
    links: Vec<(String, String)>,
    hang_after: HashSet<Op>,
    created: Vec<String>,
    seq: u64,
}

struct Shared {
    state: Arc<Mutex<State>>,
    base: String,
    chunk_size: u64,
    /// Print each new version and unlock (the demo).
    print: bool,
}

pub struct DrcStandIn {
    /// The Documenten API's root, `…/documenten/api/v1`.
    pub documenten: String,
    /// The Zaken API's root, `…/zaken/api/v1`.
    pub zaken: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

/// Every scope the documents step needs.
pub const SCOPES: [&str; 6] = [
    "documenten.lezen",
    "documenten.bijwerken",
    "documenten.lock",
    "documenten.aanmaken",
    "zaken.lezen",
    "zaken.bijwerken",
];

impl DrcStandIn {
    /// Starts on a random loopback port, knowing one client with every scope the documents
    /// step needs. Parts are `chunk_size` bytes (Open Zaak's `DOCUMENTEN_UPLOAD_CHUNK_SIZE`).
    pub async fn start(client_id: &str, secret: &str, chunk_size: u64) -> std::io::Result<Self> {
        Self::start_inner(client_id, secret, chunk_size, false).await
    }

    /// As `start`, printing each new version and unlock (for the demo).
    pub async fn start_printing(client_id: &str, secret: &str) -> std::io::Result<Self> {
        Self::start_inner(client_id, secret, 4 << 30, true).await
    }

    async fn start_inner(
        client_id: &str,
        secret: &str,
        chunk_size: u64,
        print: bool,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(State::default()));
        state.lock().unwrap().clients.insert(
            client_id.to_string(),
            Client {
                secret: secret.to_string(),
                scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
                max_vertrouwelijkheid: "zeer_geheim".into(),
            },
        );
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let base = format!("http://127.0.0.1:{port}");
        let shared = web::Data::new(Shared {
            state: state.clone(),
            base: base.clone(),
            chunk_size: chunk_size.max(1),
            print,
        });
        let eio = "/documenten/api/v1/enkelvoudiginformatieobjecten";
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::PayloadConfig::new(512 * 1024 * 1024))
                .app_data(web::JsonConfig::default().limit(512 * 1024 * 1024))
                .route(eio, web::get().to(list))
                .route(eio, web::post().to(create))
                .route(&format!("{eio}/{{uuid}}"), web::get().to(get))
                .route(&format!("{eio}/{{uuid}}"), web::patch().to(patch))
                .route(&format!("{eio}/{{uuid}}/lock"), web::post().to(lock))
                .route(&format!("{eio}/{{uuid}}/unlock"), web::post().to(unlock))
                .route(&format!("{eio}/{{uuid}}/download"), web::get().to(download))
                .route(
                    "/documenten/api/v1/bestandsdelen/{uuid}",
                    web::put().to(put_part),
                )
                .route("/zaken/api/v1/zaakinformatieobjecten", web::post().to(link))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(DrcStandIn {
            documenten: format!("{base}/documenten/api/v1"),
            zaken: format!("{base}/zaken/api/v1"),
            state,
            handle,
        })
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A document in version 1 (as a case application created it): its uuid and URL.
    pub fn add_document(&self, bestandsnaam: &str, content: &[u8]) -> (String, String) {
        let uuid = uuid::Uuid::new_v4().to_string();
        let mut st = self.lock_state();
        st.seq += 1;
        let doc = Doc {
            identificatie: format!("DOCUMENT-2026-{:010}", st.seq),
            bronorganisatie: "000000000".into(),
            informatieobjecttype: "http://catalogi.example/iot/1".into(),
            vertrouwelijkheidaanduiding: "openbaar".into(),
            versions: vec![Version {
                versie: 1,
                bestandsnaam: bestandsnaam.into(),
                formaat: "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
                    .into(),
                bestandsomvang: Some(content.len() as u64),
                integriteit: None,
                content: Some(content.to_vec()),
                titel: bestandsnaam.into(),
                begin_registratie: Utc::now(),
            }],
            lock: String::new(),
            parts: Vec::new(),
        };
        st.docs.insert(uuid.clone(), doc);
        let url = format!("{}/enkelvoudiginformatieobjecten/{uuid}", self.documenten);
        (uuid, url)
    }

    /// Every version of a document, oldest first.
    pub fn versions(&self, uuid: &str) -> Vec<Version> {
        self.lock_state()
            .docs
            .get(uuid)
            .map(|d| d.versions.clone())
            .unwrap_or_default()
    }

    pub fn is_locked(&self, uuid: &str) -> bool {
        self.lock_state()
            .docs
            .get(uuid)
            .is_some_and(|d| !d.lock.is_empty())
    }

    /// Another client locks the document; returns its lock id.
    pub fn lock_as_other(&self, uuid: &str) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        if let Some(d) = self.lock_state().docs.get_mut(uuid) {
            d.lock = id.clone();
        }
        id
    }

    /// The other client's unlock (or a forced one).
    pub fn force_unlock(&self, uuid: &str) {
        if let Some(d) = self.lock_state().docs.get_mut(uuid) {
            d.lock.clear();
        }
    }

    /// Someone edits the document: a new version.
    pub fn edit(&self, uuid: &str, content: &[u8]) {
        if let Some(d) = self.lock_state().docs.get_mut(uuid) {
            let mut v = d.versions.last().cloned().expect("a version");
            v.versie += 1;
            v.content = Some(content.to_vec());
            v.bestandsomvang = Some(content.len() as u64);
            v.begin_registratie = Utc::now();
            d.versions.push(v);
        }
    }

    /// Documents created through the API (evidence), oldest first.
    pub fn created(&self) -> Vec<Created> {
        let st = self.lock_state();
        st.created
            .iter()
            .filter_map(|uuid| {
                let d = st.docs.get(uuid)?;
                Some(Created {
                    uuid: uuid.clone(),
                    url: format!("{}/enkelvoudiginformatieobjecten/{uuid}", self.documenten),
                    identificatie: d.identificatie.clone(),
                    informatieobjecttype: d.informatieobjecttype.clone(),
                    version: d.versions.last()?.clone(),
                })
            })
            .collect()
    }

    /// Zaak–document links made: (zaak, informatieobject).
    pub fn links(&self) -> Vec<(String, String)> {
        self.lock_state().links.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock_state().calls.clone()
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        self.lock_state().behaviour = b;
    }

    /// Takes a scope from the client (its calls that need it get 403).
    pub fn revoke_scope(&self, client_id: &str, scope: &str) {
        if let Some(c) = self.lock_state().clients.get_mut(client_id) {
            c.scopes.remove(scope);
        }
    }

    /// Gives the client every scope the documents step needs, and every document.
    pub fn grant_all(&self, client_id: &str) {
        if let Some(c) = self.lock_state().clients.get_mut(client_id) {
            c.scopes = SCOPES.iter().map(|s| s.to_string()).collect();
            c.max_vertrouwelijkheid = "zeer_geheim".into();
        }
    }

    /// The client may see documents up to `level` only (others: 403, as Open Zaak).
    pub fn limit_client(&self, client_id: &str, max: &str) {
        if let Some(c) = self.lock_state().clients.get_mut(client_id) {
            c.max_vertrouwelijkheid = max.into();
        }
    }

    pub fn set_vertrouwelijkheid(&self, uuid: &str, v: &str) {
        if let Some(d) = self.lock_state().docs.get_mut(uuid) {
            d.vertrouwelijkheidaanduiding = v.into();
        }
    }

    /// Applies `op` as usual, then never answers it (until `answer_again`).
    pub fn hang_after(&self, op: Op) {
        self.lock_state().hang_after.insert(op);
    }

    pub fn answer_again(&self) {
        self.lock_state().hang_after.clear();
    }

    /// Waits until a call matching `pred` reached the stand-in, or `timeout` passes.
    pub async fn wait_for_call(
        &self,
        pred: impl Fn(&Call) -> bool,
        timeout: Duration,
    ) -> Option<Call> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(c) = self.calls().into_iter().find(|c| pred(c)) {
                return Some(c);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn problem(status: u16, code: &str, detail: &str, param: Option<(&str, &str)>) -> HttpResponse {
    let top = if status == 400 { "invalid" } else { code };
    let mut body = json!({
        "type": format!("https://drc.example/ref/fouten/{top}/"),
        "code": top,
        "title": detail,
        "status": status,
        "detail": detail,
        "instance": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
    });
    if status == 400 {
        let (name, reason) = param.unwrap_or(("nonFieldErrors", detail));
        body["invalidParams"] = json!([{"name": name, "code": code, "reason": reason}]);
    }
    HttpResponse::build(StatusCode::from_u16(status).expect("a status"))
        .content_type("application/problem+json")
        .json(body)
}

fn header<'r>(req: &'r HttpRequest, name: &str) -> &'r str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn invalid(code: &str, reason: &str) -> HttpResponse {
    problem(400, code, reason, None)
}

fn field_invalid(name: &str, code: &str, reason: &str) -> HttpResponse {
    problem(400, code, reason, Some((name, reason)))
}

fn forbidden(code: &str, detail: &str) -> HttpResponse {
    problem(403, code, detail, None)
}

fn not_found() -> HttpResponse {
    problem(404, "not_found", "Niet gevonden.", None)
}

/// The ZGW JWT as Open Zaak checks it, then the scope.
fn authorize(req: &HttpRequest, st: &State, scope: &str) -> Result<String, HttpResponse> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let Some(token) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return Err(forbidden(
            "permission_denied",
            "Je hebt geen toestemming om deze actie uit te voeren.",
        ));
    };
    let decode_error = || {
        forbidden(
            "jwt-decode-error",
            "Het JWT kon niet gedecodeerd worden. Mogelijk is de JWT uit een andere bron.",
        )
    };
    let header = jsonwebtoken::decode_header(token).map_err(|_| decode_error())?;
    if header.alg != Algorithm::HS256 {
        return Err(forbidden("jwt-invalidalgorithmerror", "JWT is niet valide"));
    }
    let claims: Value =
        jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| decode_error())?;
    let Some(client_id) = claims["client_id"].as_str() else {
        return Err(forbidden(
            "missing-client-identifier",
            "Client identifier is niet aanwezig in JWT",
        ));
    };
    let Some(client) = st.clients.get(client_id) else {
        return Err(forbidden(
            "invalid-client-identifier",
            "Client identifier bestaat niet",
        ));
    };
    let mut v = Validation::new(Algorithm::HS256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(client.secret.as_bytes()),
        &v,
    )
    .map_err(|_| {
        forbidden(
            "invalid-jwt-signature",
            "Client credentials zijn niet geldig",
        )
    })?;
    let Some(iat) = claims["iat"].as_i64() else {
        return Err(forbidden(
            "jwt-missing-iat-claim",
            "Missing required iat claim",
        ));
    };
    if Utc::now().timestamp() - iat > 3600 {
        return Err(forbidden(
            "jwt-expired",
            "De JWT die gebruikt is voor dit verzoek is verlopen",
        ));
    }
    if !client.scopes.contains(scope) {
        return Err(forbidden(
            "permission_denied",
            "Je hebt geen toestemming om deze actie uit te voeren.",
        ));
    }
    Ok(client_id.to_string())
}

/// Records the call, applies the behaviour and the JWT check; the handler's answer follows.
async fn gate(req: &HttpRequest, s: &Shared, scope: &str) -> Result<String, HttpResponse> {
    let behaviour = s.state.lock().unwrap().behaviour.clone();
    match behaviour {
        Behaviour::Normal => {}
        Behaviour::Slow(d) => tokio::time::sleep(d).await,
        Behaviour::Fail {
            status,
            retry_after,
        } => {
            record(s, req, status);
            let mut r = HttpResponse::build(StatusCode::from_u16(status).expect("a status"));
            if let Some(secs) = retry_after {
                r.insert_header(("Retry-After", secs.to_string()));
            }
            return Err(r.json(json!({"detail": "stand-in told to fail"})));
        }
    }
    let st = s.state.lock().unwrap();
    let verdict = authorize(req, &st, scope);
    drop(st);
    if let Err(r) = &verdict {
        record(s, req, r.status().as_u16());
    }
    verdict
}

/// A document the client may not see (its vertrouwelijkheid is above the client's): 403.
fn hidden(st: &State, client: &str, d: &Doc) -> bool {
    st.clients
        .get(client)
        .is_none_or(|c| level(&d.vertrouwelijkheidaanduiding) > level(&c.max_vertrouwelijkheid))
}

fn denied() -> HttpResponse {
    forbidden(
        "permission_denied",
        "Je hebt geen toestemming om deze actie uit te voeren.",
    )
}

fn record(s: &Shared, req: &HttpRequest, status: u16) {
    s.state.lock().unwrap().calls.push(Call {
        method: req.method().to_string(),
        path: req.path().to_string(),
        status,
        at: Utc::now(),
    });
}

/// Records the answer; an operation told to hang is applied and then never answered.
async fn answer(s: &Shared, req: &HttpRequest, op: Option<Op>, r: HttpResponse) -> HttpResponse {
    record(s, req, r.status().as_u16());
    let hang = op.is_some_and(|op| s.state.lock().unwrap().hang_after.contains(&op));
    if hang && r.status().is_success() {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    r
}

fn eio_json(s: &Shared, uuid: &str, d: &Doc, v: &Version) -> Value {
    let url = format!(
        "{}/documenten/api/v1/enkelvoudiginformatieobjecten/{uuid}",
        s.base
    );
    let current = d.versions.last().is_some_and(|c| c.versie == v.versie);
    let parts: Vec<Value> = if current {
        d.parts
            .iter()
            .map(|p| {
                json!({
                    "url": format!("{}/documenten/api/v1/bestandsdelen/{}", s.base, p.uuid),
                    "volgnummer": p.volgnummer,
                    "omvang": p.omvang,
                    "voltooid": p.data.is_some(),
                    "lock": d.lock,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    json!({
        "url": url,
        "identificatie": d.identificatie,
        "bronorganisatie": d.bronorganisatie,
        "creatiedatum": "2026-11-30",
        "titel": v.titel,
        "vertrouwelijkheidaanduiding": d.vertrouwelijkheidaanduiding,
        "auteur": "stand-in",
        "taal": "nld",
        "versie": v.versie,
        "beginRegistratie": v.begin_registratie.to_rfc3339(),
        "bestandsnaam": v.bestandsnaam,
        "formaat": v.formaat,
        "bestandsomvang": v.bestandsomvang,
        "inhoud": v.content.as_ref().map(|_| format!("{url}/download?versie={}", v.versie)),
        "integriteit": v.integriteit.clone().unwrap_or(Value::Null),
        "informatieobjecttype": d.informatieobjecttype,
        "locked": !d.lock.is_empty(),
        "bestandsdelen": parts,
    })
}

#[derive(serde::Deserialize)]
struct VersieQuery {
    versie: Option<u32>,
}

async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<VersieQuery>,
    s: web::Data<Shared>,
) -> HttpResponse {
    let client = match gate(&req, &s, "documenten.lezen").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r = {
        let st = s.state.lock().unwrap();
        match st.docs.get(path.as_str()) {
            None => not_found(),
            Some(d) if hidden(&st, &client, d) => denied(),
            Some(d) => {
                let v = match q.versie {
                    Some(n) => d.versions.iter().find(|v| v.versie == n),
                    None => d.versions.last(),
                };
                match v {
                    None => not_found(),
                    Some(v) => {
                        let mut body = eio_json(&s, &path, d, v);
                        body["_expand"] = json!({});
                        HttpResponse::Ok()
                            .insert_header(("ETag", format!("\"{}-{}\"", path, v.versie)))
                            .json(body)
                    }
                }
            }
        }
    };
    answer(&s, &req, None, r).await
}

#[derive(serde::Deserialize)]
struct ListQuery {
    bronorganisatie: Option<String>,
    identificatie: Option<String>,
}

async fn list(req: HttpRequest, q: web::Query<ListQuery>, s: web::Data<Shared>) -> HttpResponse {
    if let Err(r) = gate(&req, &s, "documenten.lezen").await {
        return r;
    }
    let results: Vec<Value> = {
        let st = s.state.lock().unwrap();
        st.docs
            .iter()
            .filter(|(_, d)| {
                q.bronorganisatie
                    .as_deref()
                    .is_none_or(|b| b == d.bronorganisatie)
                    && q.identificatie
                        .as_deref()
                        .is_none_or(|i| i == d.identificatie)
            })
            .map(|(u, d)| eio_json(&s, u, d, d.versions.last().expect("a version")))
            .collect()
    };
    let r = HttpResponse::Ok().json(json!({
        "count": results.len(), "next": null, "previous": null, "results": results
    }));
    answer(&s, &req, None, r).await
}

async fn download(
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<VersieQuery>,
    s: web::Data<Shared>,
) -> HttpResponse {
    if let Err(r) = gate(&req, &s, "documenten.lezen").await {
        return r;
    }
    let accept = header(&req, "accept");
    let r = if !(accept.contains("*/*") || accept.contains("application/octet-stream")) {
        problem(
            406,
            "not_acceptable",
            "Kon niet voldoen aan de opgegeven Accept header.",
            None,
        )
    } else {
        let st = s.state.lock().unwrap();
        match st.docs.get(path.as_str()).and_then(|d| match q.versie {
            Some(n) => d.versions.iter().find(|v| v.versie == n),
            None => d.versions.last(),
        }) {
            None => not_found(),
            Some(Version { content: None, .. }) => HttpResponse::NoContent().finish(),
            Some(Version {
                content: Some(c), ..
            }) => HttpResponse::Ok()
                .content_type("application/octet-stream")
                .insert_header((
                    "Content-Disposition",
                    format!("attachment; filename=\"{}.bin\"", uuid::Uuid::new_v4()),
                ))
                .body(c.clone()),
        }
    };
    answer(&s, &req, None, r).await
}

async fn lock(req: HttpRequest, path: web::Path<String>, s: web::Data<Shared>) -> HttpResponse {
    let client = match gate(&req, &s, "documenten.lock").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r = {
        let mut st = s.state.lock().unwrap();
        let hide = st
            .docs
            .get(path.as_str())
            .is_some_and(|d| hidden(&st, &client, d));
        match st.docs.get_mut(path.as_str()) {
            None => not_found(),
            Some(_) if hide => denied(),
            Some(d) if !d.lock.is_empty() => {
                invalid("existing-lock", "Het document is al geblokkeerd")
            }
            Some(d) => {
                d.lock = uuid::Uuid::new_v4().simple().to_string();
                HttpResponse::Ok().json(json!({ "lock": d.lock }))
            }
        }
    };
    answer(&s, &req, Some(Op::Lock), r).await
}

async fn unlock(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    s: web::Data<Shared>,
) -> HttpResponse {
    let client = match gate(&req, &s, "documenten.lock").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let given: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let given = given["lock"].as_str().unwrap_or("").to_string();
    let r = {
        let mut st = s.state.lock().unwrap();
        let hide = st
            .docs
            .get(path.as_str())
            .is_some_and(|d| hidden(&st, &client, d));
        match st.docs.get_mut(path.as_str()) {
            None => not_found(),
            Some(_) if hide => denied(),
            Some(d) if d.lock.is_empty() || d.lock != given => {
                invalid("incorrect-lock-id", "Het lock ID is niet geldig")
            }
            Some(d) if d.parts.iter().all(|p| p.data.is_none()) && !d.parts.is_empty() => invalid(
                "file-size",
                "Je moet een bestand uploaden of de bestandsomvang op 0 zetten",
            ),
            Some(d) if d.parts.iter().any(|p| p.data.is_none()) => invalid(
                "incomplete-upload",
                "Nog niet alle bestandsdelen zijn volledig geüpload",
            ),
            Some(d) => {
                if !d.parts.is_empty() {
                    let mut content = Vec::new();
                    for p in d.parts.drain(..) {
                        content.extend(p.data.expect("complete"));
                    }
                    let v = d.versions.last_mut().expect("a version");
                    v.content = Some(content);
                    v.begin_registratie = Utc::now();
                }
                d.lock.clear();
                HttpResponse::NoContent().finish()
            }
        }
    };
    if s.print && r.status().is_success() {
        println!(
            "  DRC  <- unlock …/enkelvoudiginformatieobjecten/{}",
            &path[..8.min(path.len())]
        );
    }
    answer(&s, &req, Some(Op::Unlock), r).await
}

/// Checks and takes the content fields of a create or PATCH: the version's content (`None`
/// for parts), its size, and the parts to make.
/// `inhoud` as given: absent, `null` (parts follow), or the bytes.
type Inhoud = Option<Option<Vec<u8>>>;

fn content_of(body: &Value) -> Result<(Inhoud, Option<u64>), HttpResponse> {
    let size = body.get("bestandsomvang").and_then(Value::as_u64);
    match body.get("inhoud") {
        None => Ok((None, size)),
        Some(Value::Null) => Ok((Some(None), size)),
        Some(Value::String(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| field_invalid("inhoud", "invalid", "Ongeldige base64"))?;
            if size.is_some_and(|n| n != bytes.len() as u64) {
                return Err(invalid(
                    "file-size",
                    "De bestandsomvang van de upload moet overeenkomen met het 'bestandsomvang'-veld",
                ));
            }
            let n = bytes.len() as u64;
            Ok((Some(Some(bytes)), Some(n)))
        }
        Some(_) => Err(field_invalid(
            "inhoud",
            "invalid",
            "inhoud moet base64 zijn",
        )),
    }
}

fn check_integriteit(body: &Value) -> Result<(), HttpResponse> {
    let Some(i) = body.get("integriteit") else {
        return Ok(());
    };
    if i.get("datum").is_none_or(Value::is_null) {
        return Err(field_invalid(
            "integriteit.datum",
            "required",
            "Dit veld is vereist.",
        ));
    }
    let alg = i["algoritme"].as_str().unwrap_or("");
    let known = [
        "crc_16",
        "crc_32",
        "crc_64",
        "fletcher_4",
        "fletcher_8",
        "fletcher_16",
        "fletcher_32",
        "hmac",
        "md5",
        "sha_1",
        "sha_256",
        "sha_512",
        "sha_3",
    ];
    if !known.contains(&alg) {
        return Err(field_invalid(
            "integriteit.algoritme",
            "invalid_choice",
            "Ongeldige keuze.",
        ));
    }
    Ok(())
}

fn make_parts(size: u64, chunk: u64) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut left = size;
    let mut n = 1;
    while left > 0 {
        let omvang = left.min(chunk);
        parts.push(Part {
            uuid: uuid::Uuid::new_v4().to_string(),
            volgnummer: n,
            omvang,
            data: None,
        });
        left -= omvang;
        n += 1;
    }
    parts
}

async fn patch(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    s: web::Data<Shared>,
) -> HttpResponse {
    let client = match gate(&req, &s, "documenten.bijwerken").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r = patch_doc(&s, &client, &path, &body);
    if s.print && r.status().is_success() {
        let st = s.state.lock().unwrap();
        if let Some(v) = st.docs.get(path.as_str()).and_then(|d| d.versions.last()) {
            println!(
                "  DRC  <- PATCH …/enkelvoudiginformatieobjecten/{}  versie {}: {} ({} bytes, integriteit sha_256 {}…)",
                &path[..8.min(path.len())],
                v.versie,
                v.bestandsnaam,
                v.bestandsomvang.unwrap_or(0),
                v.integriteit.as_ref().and_then(|i| i["waarde"].as_str()).map(|w| &w[..w.len().min(12)]).unwrap_or("")
            );
        }
    }
    answer(&s, &req, Some(Op::Patch), r).await
}

fn patch_doc(s: &Shared, client: &str, uuid: &str, body: &[u8]) -> HttpResponse {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return problem(400, "parse_error", "JSON parse error", None);
    };
    let mut st = s.state.lock().unwrap();
    if st.docs.get(uuid).is_some_and(|d| hidden(&st, client, d)) {
        return denied();
    }
    let Some(d) = st.docs.get_mut(uuid) else {
        return not_found();
    };
    if d.lock.is_empty() {
        return invalid(
            "unlocked",
            "Een geblokkeerd document kan niet gewijzigd worden",
        );
    }
    match body.get("lock").and_then(Value::as_str) {
        None => return invalid("missing-lock-id", "Je moet het lock ID meegeven"),
        Some(l) if l != d.lock => {
            return invalid("incorrect-lock-id", "Het lock ID is niet geldig")
        }
        Some(_) => {}
    }
    if let Err(r) = check_integriteit(&body) {
        return r;
    }
    let (content, size) = match content_of(&body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut v = d.versions.last().cloned().expect("a version");
    v.versie += 1;
    v.begin_registratie = Utc::now();
    if let Some(n) = body.get("bestandsnaam").and_then(Value::as_str) {
        v.bestandsnaam = n.into();
    }
    if let Some(f) = body.get("formaat").and_then(Value::as_str) {
        v.formaat = f.into();
    }
    if let Some(t) = body.get("titel").and_then(Value::as_str) {
        v.titel = t.into();
    }
    // Stored as sent; carried over when left out.
    if let Some(i) = body.get("integriteit") {
        v.integriteit = Some(i.clone());
    }
    d.parts.clear();
    match content {
        None => {}
        Some(Some(bytes)) => {
            v.bestandsomvang = Some(bytes.len() as u64);
            v.content = Some(bytes);
        }
        Some(None) => {
            let size = size.unwrap_or(0);
            v.bestandsomvang = Some(size);
            if size == 0 {
                v.content = Some(Vec::new());
            } else {
                v.content = None;
                d.parts = make_parts(size, s.chunk_size);
            }
        }
    }
    d.versions.push(v.clone());
    // A PATCH answer has neither `lock` nor `_expand`.
    HttpResponse::Ok().json(eio_json(s, uuid, d, &v))
}

async fn put_part(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    s: web::Data<Shared>,
) -> HttpResponse {
    if let Err(r) = gate(&req, &s, "documenten.bijwerken").await {
        return r;
    }
    let ct = header(&req, "content-type");
    let r = if !ct.starts_with("multipart/form-data") {
        problem(415, "unsupported_media_type", "Ongeldige media type", None)
    } else {
        let mut mp = actix_multipart::Multipart::new(req.headers(), payload);
        let (mut file, mut lock_given) = (None::<Vec<u8>>, None::<String>);
        let mut broken = false;
        while let Some(field) = mp.next().await {
            let Ok(mut field) = field else {
                broken = true;
                break;
            };
            let name = field.name().unwrap_or("").to_string();
            let is_file = field
                .content_disposition()
                .and_then(|cd| cd.get_filename())
                .is_some();
            let mut data = Vec::new();
            while let Some(chunk) = field.next().await {
                match chunk {
                    Ok(c) => data.extend_from_slice(&c),
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            match name.as_str() {
                "inhoud" if is_file => file = Some(data),
                "lock" => lock_given = Some(String::from_utf8_lossy(&data).into_owned()),
                _ => {}
            }
        }
        if broken {
            problem(400, "parse_error", "Multipart parse error", None)
        } else {
            put_part_data(&s, &path, file, lock_given)
        }
    };
    answer(&s, &req, Some(Op::Part), r).await
}

fn put_part_data(
    s: &Shared,
    part_uuid: &str,
    file: Option<Vec<u8>>,
    lock_given: Option<String>,
) -> HttpResponse {
    let mut st = s.state.lock().unwrap();
    let Some(d) = st
        .docs
        .values_mut()
        .find(|d| d.parts.iter().any(|p| p.uuid == part_uuid))
    else {
        return not_found();
    };
    if lock_given.as_deref() != Some(d.lock.as_str()) || d.lock.is_empty() {
        return invalid("incorrect-lock-id", "Het lock ID is niet geldig");
    }
    let lock = d.lock.clone();
    let part = d
        .parts
        .iter_mut()
        .find(|p| p.uuid == part_uuid)
        .expect("found above");
    if let Some(bytes) = file {
        if bytes.len() as u64 != part.omvang {
            return invalid(
                "file-size",
                &format!(
                    "Het aangeleverde bestand heeft een afwijkende bestandsgrootte (volgens het \
                     `omvang`-veld).Verwachting: {}b, ontvangen: {}b",
                    part.omvang,
                    bytes.len()
                ),
            );
        }
        part.data = Some(bytes);
    }
    HttpResponse::Ok().json(json!({
        "url": format!("{}/documenten/api/v1/bestandsdelen/{}", s.base, part.uuid),
        "volgnummer": part.volgnummer,
        "omvang": part.omvang,
        "voltooid": part.data.is_some(),
        "lock": lock,
    }))
}

async fn create(req: HttpRequest, body: web::Bytes, s: web::Data<Shared>) -> HttpResponse {
    if let Err(r) = gate(&req, &s, "documenten.aanmaken").await {
        return r;
    }
    let r = create_doc(&s, &body);
    answer(&s, &req, Some(Op::Create), r).await
}

fn create_doc(s: &Shared, body: &[u8]) -> HttpResponse {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return problem(400, "parse_error", "JSON parse error", None);
    };
    for f in [
        "bronorganisatie",
        "creatiedatum",
        "titel",
        "auteur",
        "taal",
        "informatieobjecttype",
    ] {
        if body
            .get(f)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return field_invalid(f, "required", "Dit veld is vereist.");
        }
    }
    if let Err(r) = check_integriteit(&body) {
        return r;
    }
    let (content, size) = match content_of(&body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut st = s.state.lock().unwrap();
    st.seq += 1;
    let identificatie = match text("identificatie") {
        i if i.is_empty() => format!("DOCUMENT-2026-{:010}", st.seq),
        i => i,
    };
    let bron = text("bronorganisatie");
    if st
        .docs
        .values()
        .any(|d| d.identificatie == identificatie && d.bronorganisatie == bron)
    {
        return field_invalid(
            "identificatie",
            "identificatie-niet-uniek",
            "Deze identificatie bestaat al voor deze bronorganisatie",
        );
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    let (content, parts, lock) = match content {
        Some(Some(bytes)) => (Some(bytes), Vec::new(), String::new()),
        Some(None) if size.unwrap_or(0) > 0 => (
            None,
            make_parts(size.unwrap_or(0), s.chunk_size),
            uuid::Uuid::new_v4().simple().to_string(),
        ),
        _ => (None, Vec::new(), String::new()),
    };
    let v = Version {
        versie: 1,
        bestandsnaam: text("bestandsnaam"),
        formaat: text("formaat"),
        bestandsomvang: content.as_ref().map(|c| c.len() as u64).or(size),
        integriteit: body.get("integriteit").cloned(),
        content,
        titel: text("titel"),
        begin_registratie: Utc::now(),
    };
    let vertrouwelijk = match text("vertrouwelijkheidaanduiding") {
        v if v.is_empty() => "openbaar".to_string(),
        v => v,
    };
    let d = Doc {
        identificatie,
        bronorganisatie: bron,
        informatieobjecttype: text("informatieobjecttype"),
        vertrouwelijkheidaanduiding: vertrouwelijk,
        versions: vec![v.clone()],
        lock: lock.clone(),
        parts,
    };
    let mut out = eio_json(s, &uuid, &d, &v);
    out["lock"] = json!(lock);
    st.docs.insert(uuid.clone(), d);
    st.created.push(uuid);
    HttpResponse::Created().json(out)
}

async fn link(req: HttpRequest, body: web::Bytes, s: web::Data<Shared>) -> HttpResponse {
    if let Err(r) = gate(&req, &s, "zaken.bijwerken").await {
        return r;
    }
    let r = {
        let body: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
        let zaak = body["zaak"].as_str().unwrap_or("").to_string();
        let io = body["informatieobject"].as_str().unwrap_or("").to_string();
        let mut st = s.state.lock().unwrap();
        if zaak.is_empty() {
            field_invalid(
                "zaak",
                "required",
                "zaak is een verplicht veld voor permissies",
            )
        } else if io.is_empty() {
            field_invalid("informatieobject", "required", "Dit veld is vereist.")
        } else if st.links.iter().any(|(z, i)| *z == zaak && *i == io) {
            invalid(
                "unique",
                "De velden zaak, informatieobject moeten een unieke set zijn.",
            )
        } else {
            st.links.push((zaak.clone(), io.clone()));
            let id = uuid::Uuid::new_v4();
            HttpResponse::Created().json(json!({
                "url": format!("{}/zaken/api/v1/zaakinformatieobjecten/{id}", s.base),
                "uuid": id,
                "informatieobject": io,
                "zaak": zaak,
                "aardRelatieWeergave": "Hoort bij, omgekeerd: kent",
                "titel": body["titel"],
                "beschrijving": "",
                "registratiedatum": Utc::now().to_rfc3339(),
                "vernietigingsdatum": null,
                "status": null,
            }))
        }
    };
    answer(&s, &req, Some(Op::Link), r).await
}
