//! A Posten signering API stand-in over real TLS that requires a client certificate, as
//! Posten's API does: the direct flow's status (with a `status_query_token`, Posten's error
//! answers included), confirmations, and polling of the portal and direct status queues with
//! `X-Next-permitted-poll-time` (a poll before it is counted and answered 429; an unconfirmed
//! change comes back after a while). It records every call, can be slow, down or hang, and
//! makes the certificates for itself and its clients (a CA, a server certificate, an
//! organisation certificate, and a stranger's that its CA did not issue).

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::Utc;

pub const NS: &str = "http://signering.posten.no/schema/v1";

/// Certificates made for one run.
pub struct Certificates {
    pub ca_pem: String,
    server_cert_der: rustls::pki_types::CertificateDer<'static>,
    server_key_der: Vec<u8>,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    client_cert_der: Vec<u8>,
    client_key_der: Vec<u8>,
    /// A certificate and key from another CA: refused by the stand-in.
    pub stranger_cert_pem: String,
    pub stranger_key_pem: String,
}

/// Where `Certificates::write` put them.
pub struct CertificateFiles {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub client_p12: PathBuf,
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

/// The PKCS#12 password `Certificates::write` uses.
pub const P12_PASSWORD: &str = "posten-test-p12";

fn ca(name: &str) -> anyhow::Result<(rcgen::Certificate, rcgen::KeyPair)> {
    let key = rcgen::KeyPair::generate()?;
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    Ok((p.self_signed(&key)?, key))
}

fn leaf(
    names: Vec<String>,
    cn: &str,
    usage: rcgen::ExtendedKeyUsagePurpose,
    issuer: &rcgen::Certificate,
    issuer_key: &rcgen::KeyPair,
) -> anyhow::Result<(rcgen::Certificate, rcgen::KeyPair)> {
    let key = rcgen::KeyPair::generate()?;
    let mut p = rcgen::CertificateParams::new(names)?;
    p.distinguished_name
        .push(rcgen::DnType::CommonName, cn.to_string());
    p.extended_key_usages = vec![usage];
    Ok((p.signed_by(&key, issuer, issuer_key)?, key))
}

impl Certificates {
    pub fn generate() -> anyhow::Result<Certificates> {
        let (ca_cert, ca_key) = ca("Posten stand-in CA")?;
        let (server, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "api.signering.stand-in",
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            &ca_cert,
            &ca_key,
        )?;
        let (client, client_key) = leaf(
            vec![],
            "Gemeente Voorbeeld (organisatiecertificaat)",
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            &ca_cert,
            &ca_key,
        )?;
        let (other_ca, other_key) = ca("Someone else's CA")?;
        let (stranger, stranger_key) = leaf(
            vec![],
            "Stranger",
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            &other_ca,
            &other_key,
        )?;
        Ok(Certificates {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            server_cert_der: server.der().clone(),
            server_key_der: server_key.serialize_der(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
            client_cert_der: client.der().to_vec(),
            client_key_der: client_key.serialize_der(),
            stranger_cert_pem: stranger.pem(),
            stranger_key_pem: stranger_key.serialize_pem(),
        })
    }

    /// The organisation certificate (with the CA) as PKCS#12.
    pub fn client_pkcs12(&self, password: &str) -> anyhow::Result<Vec<u8>> {
        use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
        let chain = PrivateKeyChain::new(
            b"org".as_slice(),
            PrivateKey::from_der(&self.client_key_der)?,
            [
                Certificate::from_der(&self.client_cert_der)?,
                Certificate::from_der(&self.ca_der)?,
            ],
        );
        let mut ks = KeyStore::new();
        ks.add_entry("organisation", KeyStoreEntry::PrivateKeyChain(chain));
        Ok(ks.writer(password).write()?)
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<CertificateFiles> {
        let f = CertificateFiles {
            ca: dir.join("posten-ca.pem"),
            client_cert: dir.join("org.pem"),
            client_key: dir.join("org.key"),
            client_p12: dir.join("org.p12"),
            stranger_cert: dir.join("stranger.pem"),
            stranger_key: dir.join("stranger.key"),
        };
        std::fs::write(&f.ca, &self.ca_pem)?;
        std::fs::write(&f.client_cert, &self.client_cert_pem)?;
        std::fs::write(&f.client_key, &self.client_key_pem)?;
        std::fs::write(&f.client_p12, self.client_pkcs12(P12_PASSWORD)?)?;
        std::fs::write(&f.stranger_cert, &self.stranger_cert_pem)?;
        std::fs::write(&f.stranger_key, &self.stranger_key_pem)?;
        Ok(f)
    }

    fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build()?;
        Ok(rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.server_cert_der.clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(self.server_key_der.clone().into()),
            )?)
    }
}

/// How a signer finished a direct job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Signed,
    Rejected,
    Expired,
    Failed,
}

/// How the stand-in answers status requests and polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// Answer after this long.
    Slow(Duration),
    /// 503 to everything.
    Down,
    /// Never answer.
    Hang,
}

/// One call as received.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub method: String,
    /// Without the query.
    pub path: String,
    pub status: u16,
}

/// A change in a status queue.
#[derive(Debug, Clone)]
struct Change {
    job_id: u64,
    xml: String,
}

#[derive(Debug, Clone)]
struct DirectJob {
    reference: String,
    /// The signers' statuses (by signer id).
    signers: Vec<(String, String)>,
    job_status: &'static str,
    token: Option<String>,
}

struct Queue {
    waiting: VecDeque<Change>,
    /// Handed out, not confirmed: back in the queue after `requeue_after`.
    unconfirmed: Vec<(Instant, Change)>,
    /// None until the queue is first polled: then at once.
    next_permitted: Option<Instant>,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            waiting: VecDeque::new(),
            unconfirmed: Vec::new(),
            next_permitted: None,
        }
    }
}

struct State {
    org: String,
    base: String,
    next_id: u64,
    jobs: HashMap<u64, DirectJob>,
    behaviour: Behaviour,
    calls: Vec<Call>,
    confirmed: Vec<(Instant, u64)>,
    queues: HashMap<String, Queue>,
    /// An empty queue may be polled again after this long.
    poll_interval: Duration,
    requeue_after: Duration,
    early_polls: usize,
    /// Confirmations wait while this is set.
    hold_confirmations: bool,
    /// A job's signed PAdES, when a test set one (else a small PDF naming the job).
    pades: HashMap<u64, Vec<u8>>,
}

pub struct PostenStandIn {
    /// The API base (`posten.api_url`).
    pub api_url: String,
    pub organization_number: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

type Shared = web::Data<Arc<Mutex<State>>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn iso(t: Instant) -> String {
    let ahead = t.saturating_duration_since(Instant::now());
    let at = Utc::now() + chrono::Duration::from_std(ahead).unwrap_or_default();
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `direct-signature-job-status-response` as Posten writes it (valid per `direct.xsd`).
pub fn direct_status_xml(
    job_id: u64,
    reference: Option<&str>,
    job_status: &str,
    signers: &[(String, String)],
    base: &str,
) -> String {
    let reference = reference
        .map(|r| format!("<reference>{r}</reference>"))
        .unwrap_or_default();
    let statuses: String = signers
        .iter()
        .map(|(signer, s)| {
            format!("<status signer=\"{signer}\" since=\"2026-11-30T10:00:00+01:00\">{s}</status>")
        })
        .collect();
    let mut urls = format!(
        "<confirmation-url>{base}/direct/signature-jobs/{job_id}/complete</confirmation-url>"
    );
    if job_status == "COMPLETED_SUCCESSFULLY" {
        for (i, (signer, _)) in signers.iter().enumerate() {
            urls.push_str(&format!(
                "<xades-url signer=\"{signer}\">{base}/direct/signature-jobs/{job_id}/xades/{}</xades-url>",
                i + 1
            ));
        }
        urls.push_str(&format!(
            "<pades-url>{base}/direct/signature-jobs/{job_id}/pades</pades-url>"
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<direct-signature-job-status-response xmlns=\"{NS}\">{reference}<signature-job-id>{job_id}</signature-job-id><signature-job-status>{job_status}</signature-job-status>{statuses}{urls}</direct-signature-job-status-response>"
    )
}

/// `portal-signature-job-status-change-response` (valid per `portal.xsd`).
pub fn portal_change_xml(
    job_id: u64,
    reference: Option<&str>,
    job_status: &str,
    signers: &[&str],
    base: &str,
) -> String {
    let reference = reference
        .map(|r| format!("<reference>{r}</reference>"))
        .unwrap_or_default();
    let signatures: String = signers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let xades = if *s == "SIGNED" {
                format!("<xades-url>{base}/portal/signature-jobs/{job_id}/xades/{}</xades-url>", i + 1)
            } else {
                String::new()
            };
            format!(
                "<signature><status since=\"2026-11-30T10:00:00+01:00\">{s}</status><personal-identification-number>0101010101{}</personal-identification-number>{xades}</signature>",
                i % 10
            )
        })
        .collect();
    let pades = if job_status == "COMPLETED_SUCCESSFULLY" {
        format!("<pades-url>{base}/portal/signature-jobs/{job_id}/pades</pades-url>")
    } else {
        String::new()
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<portal-signature-job-status-change-response xmlns=\"{NS}\">{reference}<signature-job-id>{job_id}</signature-job-id><status>{job_status}</status><confirmation-url>{base}/portal/signature-jobs/{job_id}/complete</confirmation-url><signatures>{signatures}{pades}</signatures></portal-signature-job-status-change-response>"
    )
}

/// Posten's `<error>` (valid per `common.xsd`).
pub fn error_xml(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<error xmlns=\"{NS}\"><error-code>{code}</error-code><error-message>{message}</error-message><error-type>CLIENT</error-type></error>"
    )
}

fn xml(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/xml")
        .body(body)
}

/// Applies the behaviour; `Some` answer when it replaces the normal one.
async fn behave(s: &Shared) -> Option<HttpResponse> {
    let b = lock(s).behaviour;
    match b {
        Behaviour::Normal => None,
        Behaviour::Slow(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Behaviour::Down => Some(xml(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            error_xml("SERVICE_UNAVAILABLE", "down"),
        )),
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            None
        }
    }
}

fn record(s: &Shared, req: &HttpRequest, status: u16) {
    lock(s).calls.push(Call {
        at: Instant::now(),
        method: req.method().to_string(),
        path: req.path().to_string(),
        status,
    });
}

#[derive(serde::Deserialize)]
struct StatusQuery {
    status_query_token: Option<String>,
}

async fn direct_status(
    req: HttpRequest,
    path: web::Path<(String, u64)>,
    q: web::Query<StatusQuery>,
    s: Shared,
) -> HttpResponse {
    if let Some(r) = behave(&s).await {
        record(&s, &req, r.status().as_u16());
        return r;
    }
    let (org, id) = path.into_inner();
    let st = lock(&s);
    let answer = match st.jobs.get(&id).filter(|_| org == st.org) {
        Some(job) if job.token.is_some() && job.token == q.status_query_token => xml(
            actix_web::http::StatusCode::OK,
            direct_status_xml(
                id,
                Some(&job.reference),
                job.job_status,
                &job.signers,
                &st.base,
            ),
        ),
        Some(job) if job.token.is_none() && q.status_query_token.is_some() => xml(
            actix_web::http::StatusCode::NOT_FOUND,
            error_xml(
                "SIGNING_CEREMONY_NOT_COMPLETED",
                "The signing ceremony is not completed",
            ),
        ),
        _ => xml(
            actix_web::http::StatusCode::FORBIDDEN,
            error_xml("INVALID_STATUS_QUERY_TOKEN", "Invalid status query token"),
        ),
    };
    drop(st);
    record(&s, &req, answer.status().as_u16());
    answer
}

async fn confirm(
    req: HttpRequest,
    path: web::Path<(String, String, u64)>,
    s: Shared,
) -> HttpResponse {
    if let Some(r) = behave(&s).await {
        record(&s, &req, r.status().as_u16());
        return r;
    }
    let (_, flow, id) = path.into_inner();
    while lock(&s).hold_confirmations {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut st = lock(&s);
    st.confirmed.push((Instant::now(), id));
    for (_, q) in st
        .queues
        .iter_mut()
        .filter(|(k, _)| k.starts_with(&format!("{flow}/")))
    {
        q.unconfirmed.retain(|(_, c)| c.job_id != id);
    }
    drop(st);
    record(&s, &req, 200);
    HttpResponse::Ok().finish()
}

/// The signed PAdES of a job (all its documents, one PDF).
pub fn default_pades(job: u64) -> Vec<u8> {
    format!("%PDF-1.7\n% PAdES of Posten signature job {job}\n%%EOF\n").into_bytes()
}

/// A signer's XAdES.
pub fn default_xades(job: u64, n: u32) -> Vec<u8> {
    format!("<?xml version=\"1.0\"?><XAdESSignatures job=\"{job}\" signer=\"{n}\"/>").into_bytes()
}

async fn pades(
    req: HttpRequest,
    path: web::Path<(String, String, u64)>,
    s: Shared,
) -> HttpResponse {
    if let Some(r) = behave(&s).await {
        record(&s, &req, r.status().as_u16());
        return r;
    }
    let id = path.into_inner().2;
    let bytes = lock(&s)
        .pades
        .get(&id)
        .cloned()
        .unwrap_or_else(|| default_pades(id));
    record(&s, &req, 200);
    HttpResponse::Ok()
        .content_type("application/pdf")
        .body(bytes)
}

async fn xades(
    req: HttpRequest,
    path: web::Path<(String, String, u64, u32)>,
    s: Shared,
) -> HttpResponse {
    if let Some(r) = behave(&s).await {
        record(&s, &req, r.status().as_u16());
        return r;
    }
    let (_, _, id, n) = path.into_inner();
    record(&s, &req, 200);
    HttpResponse::Ok()
        .content_type("application/xml")
        .body(default_xades(id, n))
}

#[derive(serde::Deserialize)]
struct PollQuery {
    polling_queue: Option<String>,
}

async fn poll(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    q: web::Query<PollQuery>,
    s: Shared,
) -> HttpResponse {
    if let Some(r) = behave(&s).await {
        record(&s, &req, r.status().as_u16());
        return r;
    }
    let (_, flow) = path.into_inner();
    let key = format!("{flow}/{}", q.polling_queue.as_deref().unwrap_or(""));
    let mut st = lock(&s);
    let (interval, requeue) = (st.poll_interval, st.requeue_after);
    let now = Instant::now();
    let queue = st.queues.entry(key).or_insert_with(Queue::new);
    if let Some(next) = queue.next_permitted.filter(|t| now < *t) {
        st.early_polls += 1;
        drop(st);
        record(&s, &req, 429);
        return HttpResponse::TooManyRequests()
            .insert_header(("X-Next-permitted-poll-time", iso(next)))
            .content_type("application/xml")
            .body(error_xml("TOO_EARLY_POLL", "Polling too early"));
    }
    // Changes handed out long ago and never confirmed come back.
    let (back, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut queue.unconfirmed)
        .into_iter()
        .partition(|(at, _)| now.duration_since(*at) >= requeue);
    queue.unconfirmed = kept;
    queue.waiting.extend(back.into_iter().map(|(_, c)| c));
    let answer = match queue.waiting.pop_front() {
        Some(change) => {
            queue.unconfirmed.push((now, change.clone()));
            queue.next_permitted = Some(now);
            HttpResponse::Ok()
                .insert_header(("X-Next-permitted-poll-time", iso(now)))
                .content_type("application/xml")
                .body(change.xml)
        }
        None => {
            queue.next_permitted = Some(now + interval);
            HttpResponse::NoContent()
                .insert_header(("X-Next-permitted-poll-time", iso(now + interval)))
                .finish()
        }
    };
    drop(st);
    record(&s, &req, answer.status().as_u16());
    answer
}

impl PostenStandIn {
    pub async fn start(certs: &Certificates, org: &str) -> anyhow::Result<PostenStandIn> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let api_url = format!("https://127.0.0.1:{port}/api");
        let state = Arc::new(Mutex::new(State {
            org: org.into(),
            base: format!("{api_url}/{org}"),
            next_id: 1000,
            jobs: HashMap::new(),
            behaviour: Behaviour::Normal,
            calls: Vec::new(),
            confirmed: Vec::new(),
            queues: HashMap::new(),
            poll_interval: Duration::from_secs(600),
            requeue_after: Duration::from_secs(600),
            early_polls: 0,
            hold_confirmations: false,
            pades: HashMap::new(),
        }));
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route(
                    "/api/{org}/direct/signature-jobs/{id}/status",
                    web::get().to(direct_status),
                )
                .route(
                    "/api/{org}/{flow}/signature-jobs/{id}/complete",
                    web::post().to(confirm),
                )
                .route("/api/{org}/{flow}/signature-jobs", web::get().to(poll))
                .route(
                    "/api/{org}/{flow}/signature-jobs/{id}/pades",
                    web::get().to(pades),
                )
                .route(
                    "/api/{org}/{flow}/signature-jobs/{id}/xades/{n}",
                    web::get().to(xades),
                )
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen_rustls_0_23(listener, certs.server_config()?)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(PostenStandIn {
            api_url,
            organization_number: org.into(),
            state,
            handle,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The PAdES `GET {pades-url}` serves for `job`.
    pub fn set_pades(&self, job: u64, bytes: Vec<u8>) {
        self.lock().pades.insert(job, bytes);
    }

    /// A new direct job with one signer per `signers`; its id and status URL.
    pub fn direct_job(&self, reference: &str, signers: usize) -> (u64, String) {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        st.jobs.insert(
            id,
            DirectJob {
                reference: reference.into(),
                signers: (0..signers)
                    .map(|i| (format!("signer-{}", i + 1), "WAITING".into()))
                    .collect(),
                job_status: "IN_PROGRESS",
                token: None,
            },
        );
        (id, format!("{}/direct/signature-jobs/{id}/status", st.base))
    }

    /// The signer finished: the job's status is final and the browser carries this token.
    pub fn finish_direct(&self, id: u64, how: Finish) -> String {
        let mut st = self.lock();
        let job = st.jobs.get_mut(&id).expect("a job of this stand-in");
        let (first, rest, job_status) = match how {
            Finish::Signed => ("SIGNED", "SIGNED", "COMPLETED_SUCCESSFULLY"),
            Finish::Rejected => ("REJECTED", "NOT_APPLICABLE", "FAILED"),
            Finish::Expired => ("EXPIRED", "NOT_APPLICABLE", "FAILED"),
            Finish::Failed => ("FAILED", "NOT_APPLICABLE", "FAILED"),
        };
        for (i, (_, s)) in job.signers.iter_mut().enumerate() {
            *s = if i == 0 { first } else { rest }.into();
        }
        job.job_status = job_status;
        let token = format!("sqt-{}", uuid::Uuid::new_v4().simple());
        job.token = Some(token.clone());
        token
    }

    /// A token the signer's browser brings before the ceremony is complete.
    pub fn early_token(&self) -> String {
        format!("sqt-{}", uuid::Uuid::new_v4().simple())
    }

    /// A portal job's status change, queued for polling (`polling_queue` or the default).
    pub fn queue_portal_change(
        &self,
        reference: Option<&str>,
        job_status: &str,
        signers: &[&str],
        queue: Option<&str>,
    ) -> u64 {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        let xml = portal_change_xml(id, reference, job_status, signers, &st.base);
        st.queues
            .entry(format!("portal/{}", queue.unwrap_or("")))
            .or_insert_with(Queue::new)
            .waiting
            .push_back(Change { job_id: id, xml });
        id
    }

    /// A direct job (created with POLLING) whose status changed, queued for polling.
    pub fn queue_direct_change(&self, id: u64, queue: Option<&str>) {
        let mut st = self.lock();
        let job = st.jobs.get(&id).expect("a job of this stand-in").clone();
        let xml = direct_status_xml(
            id,
            Some(&job.reference),
            job.job_status,
            &job.signers,
            &st.base,
        );
        st.queues
            .entry(format!("direct/{}", queue.unwrap_or("")))
            .or_insert_with(Queue::new)
            .waiting
            .push_back(Change { job_id: id, xml });
    }

    pub fn behave(&self, b: Behaviour) {
        self.lock().behaviour = b;
    }

    /// How long an empty queue makes the poller wait, and after how long an unconfirmed
    /// change is handed out again (Posten: 10 minutes each in production).
    pub fn pacing(&self, poll_interval: Duration, requeue_after: Duration) {
        let mut st = self.lock();
        st.poll_interval = poll_interval;
        st.requeue_after = requeue_after;
    }

    /// While held, confirmations are not answered.
    pub fn hold_confirmations(&self, hold: bool) {
        self.lock().hold_confirmations = hold;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Confirmations received, with when, by job id.
    pub fn confirmed(&self) -> Vec<(Instant, u64)> {
        self.lock().confirmed.clone()
    }

    /// Polls that came before the permitted time.
    pub fn early_polls(&self) -> usize {
        self.lock().early_polls
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}
