//! `signrelay-bench`: the whole service under load, on one machine, in one run.
//!
//! It starts signrelay (the `signrelay` binary next to this one, `serve` on a temporary store)
//! and a no-op actix-web endpoint as child processes, runs the NRC stand-in in this process,
//! and drives both servers over loopback with the same load generator: keep-alive HTTP/1.1
//! connections, closed loop (for the maximum rate) and open loop at fixed rates (latency at
//! rate, RSS, callback-ack → NRC receipt). Then it records a backlog during an NRC outage and
//! times its drain, and drains another into an NRC of limited capacity (at most K requests at
//! once), which changes mid-drain: the rate as a share of the capacity, and the errors caused.
//! Last it fills the store (`--fill`, a million callbacks by default) and measures the maximum
//! rate, the CPU per callback and RSS at both ends of the fill. Every phase's CPU is also shown
//! per acknowledged callback.
//! It prints one table with each figure, its target and pass/fail, and exits
//! 0 whatever the figures are (it is a measurement); it exits non-zero only when it could not
//! run, or when an acknowledged outcome never reached the NRC.
//!
//! `cargo build --release --bins && ./target/release/signrelay-bench [--quick] [--duration S]
//! [--connections N] [--backlog N]`

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use base64::Engine;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use signrelay::testkit::gosign::{soap_status_request, soap_work_notification, work_notification};
use signrelay::testkit::nrc::{Behaviour, Capacity, NrcStandIn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NRC_CLIENT: &str = "signrelay-bench";
const NRC_SECRET: &str = "bench-nrc-secret";
const ADMIN_KEY: &str = "bench-admin-key-0123456789";
const GOSIGN_USER: &str = "gosign";
const GOSIGN_PASSWORD: &str = "bench-gosign-password";
/// A duplicate re-sends the body of the envelope this many envelopes back.
const DUP_DISTANCE: u64 = 200;
/// Size of the signed document inline in some completions.
const DOC_BYTES: usize = 16 * 1024;

#[derive(Parser)]
#[command(
    name = "signrelay-bench",
    about = "Benchmarks signrelay against a no-op actix-web endpoint on this machine"
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Seconds of the closed-loop phases (no-op, maximum rate) and of the half-rate phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Outcomes recorded during the NRC outage, then drained.
    #[arg(long, default_value_t = 100_000)]
    backlog: u64,
    /// Small numbers, for a smoke run (about 10 s).
    #[arg(long)]
    quick: bool,
    /// HTTP workers of signrelay and of the no-op endpoint (0: one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// signrelay's `relay.concurrency` (the adaptive window's maximum) for the run.
    #[arg(long, default_value_t = 32)]
    relay_concurrency: usize,
    /// signrelay's log level.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Where signrelay's JSON log goes (default: a file in the temporary directory, next to
    /// the store, as a service logging to its disk would).
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// The fixed rate of the RSS and ack → NRC phase, callbacks/s.
    #[arg(long, default_value_t = 1000.0)]
    fixed_rate: f64,
    /// Seconds of the fixed-rate phase (long enough to see whether RSS levels off).
    #[arg(long, default_value_t = 30.0)]
    fixed_duration: f64,
    /// The signrelay binary (default: `signrelay` next to this one).
    #[arg(long)]
    signrelay: Option<PathBuf>,
    /// Keep the temporary directory (store and log) and print where it is.
    #[arg(long)]
    keep: bool,
    /// Override a key of signrelay's config for the run, e.g. `--set store.max_group=64`
    /// (passed as SIGNRELAY__STORE__MAX_GROUP); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// signrelay instances on one PostgreSQL store (with `--set store.backend=postgres`; a
    /// database of its own on SIGNRELAY_TEST_POSTGRES, by default the local server, made and
    /// dropped by the run); the load's connections are spread over them.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Callbacks the store holds at the end of the fill phase (the store's size measured at
    /// both ends: maximum rate, CPU per callback, RSS at the fixed rate); 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    fill: u64,
}

#[derive(Subcommand)]
enum Mode {
    /// The no-op endpoint: answers every request with signrelay's `{"outcome":"succeeded"}`.
    #[command(hide = true)]
    NoopServer {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        workers: usize,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match cli.mode {
        Some(Mode::NoopServer { port, workers }) => rt.block_on(noop_server(port, workers)),
        None => rt.block_on(run(cli)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signrelay-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The no-op endpoint: actix-web as signrelay configures it, reading the body and answering
/// with the same small JSON body signrelay answers a recorded callback with.
async fn noop_server(port: u16, workers: usize) -> anyhow::Result<()> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|_body: web::Bytes| async {
            HttpResponse::Ok().json(serde_json::json!({"outcome": "succeeded"}))
        }))
    })
    .keep_alive(Duration::from_secs(75))
    .max_connections(10_000)
    .workers(workers)
    .bind(("127.0.0.1", port))?
    .run();
    server.await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A minimal keep-alive HTTP/1.1 client: the load generator must cost as little CPU as it can,
// since it shares the machine with the servers it measures.

struct Resp {
    status: u16,
    body: Vec<u8>,
}

struct HttpConn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    rbuf: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

async fn read_more(stream: &mut TcpStream, rbuf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut tmp = [0u8; 16 * 1024];
    let n = stream.read(&mut tmp).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed by the server",
        ));
    }
    rbuf.extend_from_slice(&tmp[..n]);
    Ok(())
}

impl HttpConn {
    fn new(addr: SocketAddr) -> HttpConn {
        HttpConn {
            addr,
            stream: None,
            rbuf: Vec::with_capacity(16 * 1024),
        }
    }

    async fn connect(&mut self) -> std::io::Result<()> {
        let s = TcpStream::connect(self.addr).await?;
        s.set_nodelay(true)?;
        self.stream = Some(s);
        self.rbuf.clear();
        Ok(())
    }

    fn reset(&mut self) {
        self.stream = None;
        self.rbuf.clear();
    }

    async fn send(&mut self, req: &[u8]) -> std::io::Result<Resp> {
        if self.stream.is_none() {
            self.connect().await?;
        }
        let r = self.exchange(req).await;
        if r.is_err() {
            self.reset();
        }
        r
    }

    async fn exchange(&mut self, req: &[u8]) -> std::io::Result<Resp> {
        let HttpConn { stream, rbuf, .. } = self;
        let stream = stream.as_mut().expect("connected");
        stream.write_all(req).await?;
        let head_end = loop {
            if let Some(p) = find(rbuf, b"\r\n\r\n") {
                break p + 4;
            }
            read_more(stream, rbuf).await?;
        };
        let head = std::str::from_utf8(&rbuf[..head_end]).map_err(|_| bad("response head"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("status line"))?;
        let (mut len, mut chunked, mut close) = (0usize, false, false);
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.parse().map_err(|_| bad("content-length"))?;
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.eq_ignore_ascii_case("chunked");
                } else if k.eq_ignore_ascii_case("connection") {
                    close = v.eq_ignore_ascii_case("close");
                }
            }
        }
        let body = if chunked {
            let mut body = Vec::new();
            let mut pos = head_end;
            loop {
                let line_end = loop {
                    if let Some(p) = find(&rbuf[pos..], b"\r\n") {
                        break pos + p;
                    }
                    read_more(stream, rbuf).await?;
                };
                let size_text = std::str::from_utf8(&rbuf[pos..line_end])
                    .map_err(|_| bad("chunk size"))?
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let size = usize::from_str_radix(&size_text, 16).map_err(|_| bad("chunk size"))?;
                let data = line_end + 2;
                while rbuf.len() < data + size + 2 {
                    read_more(stream, rbuf).await?;
                }
                body.extend_from_slice(&rbuf[data..data + size]);
                pos = data + size + 2;
                if size == 0 {
                    break;
                }
            }
            rbuf.drain(..pos);
            body
        } else {
            while rbuf.len() < head_end + len {
                read_more(stream, rbuf).await?;
            }
            let body = rbuf[head_end..head_end + len].to_vec();
            rbuf.drain(..head_end + len);
            body
        };
        if close {
            self.reset();
        }
        Ok(Resp { status, body })
    }
}

fn http_request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut b = r.into_bytes();
    b.extend_from_slice(body);
    b
}

async fn get(addr: SocketAddr, path: &str) -> std::io::Result<Resp> {
    let mut c = HttpConn::new(addr);
    c.send(&http_request("GET", path, &addr.to_string(), &[], b""))
        .await
}

// ---------------------------------------------------------------------------------------------
// The callbacks: what GoSign sends, as `signrelay demo` builds it.

/// What kind of callback an envelope gets; a function of its number, so a duplicate can
/// rebuild the same body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    RestDone,
    RestDoneDoc,
    RestRejected,
    RestCancelled,
    Extended,
    Soap,
    Progress,
}

fn kind_of(j: u64) -> Kind {
    match j % 20 {
        0 => Kind::Progress,
        1 | 2 => Kind::Extended,
        3..=5 => Kind::Soap,
        6 => Kind::RestRejected,
        7 => Kind::RestCancelled,
        8 => Kind::RestDoneDoc,
        _ => Kind::RestDone,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// Callbacks on new envelopes, duplicates and workability checks.
    Full,
    /// Only terminal callbacks on new envelopes (the backlog).
    Terminal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    New,
    Duplicate,
    WorkRest,
    WorkSoap,
}

/// Share of the full mix's requests that are callbacks (the rest are workability checks).
const CALLBACK_SHARE: f64 = 0.9;

/// The request mix: 5 % REST workability checks, 5 % SOAP getEnvelopeExternalStatus, 7 %
/// duplicates, 83 % callbacks on new envelopes.
fn slot(i: u64) -> Slot {
    match (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 100 {
        0..=4 => Slot::WorkRest,
        5..=9 => Slot::WorkSoap,
        10..=16 => Slot::Duplicate,
        _ => Slot::New,
    }
}

fn tx(j: u64) -> String {
    format!("BENCH-{j:08}")
}

fn extended_json(envelope: &str) -> String {
    serde_json::json!({"externalId": envelope, "status": "STO", "previousStatus": "WKD", "completedAt": 1_763_888_400_000i64}).to_string()
}

fn registration_json(j: u64) -> String {
    serde_json::json!({
        "naam": format!("Ondertekening {}", tx(j)),
        "eigenaar": "behandelaar@gemeente.example",
        "zaak": {"uuid": uuid::Uuid::new_v4(), "url": format!("https://zaken.gemeente.example/api/v1/zaken/Z-{j}")},
        "documenten": [{"uuid": uuid::Uuid::new_v4(), "url": "https://drc.gemeente.example/api/v1/enkelvoudiginformatieobjecten/1", "titel": "Besluit", "versie": 1, "bestandsnaam": "besluit.docx"}],
        "ondertekenaars": [{"e-mail": "ondertekenaar@example.org", "voornaam": "Jan", "achternaam": "Jansen", "volgorde": 1, "authenticatie": null}]
    })
    .to_string()
}

/// What a request was, for counting its answer.
#[derive(Debug, Clone, Copy)]
enum What {
    New { j: u64, terminal: bool },
    Dup { j: u64, terminal: bool },
    Work,
}

struct Gen {
    host: String,
    basic: String,
    doc_b64: String,
    /// The next envelope number; continuous over the whole run.
    next_env: AtomicU64,
}

impl Gen {
    fn new(addr: SocketAddr, first_env: u64) -> Gen {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut doc = b"%PDF-1.4 signed by the benchmark\n".to_vec();
        doc.resize(DOC_BYTES, b'x');
        Gen {
            host: addr.to_string(),
            basic: format!(
                "Basic {}",
                b64.encode(format!("{GOSIGN_USER}:{GOSIGN_PASSWORD}"))
            ),
            doc_b64: b64.encode(doc),
            next_env: AtomicU64::new(first_env),
        }
    }

    fn notify(&self, envelope: &str, body: &str) -> Vec<u8> {
        http_request(
            "POST",
            &format!("/gosign/rest/envelopes/{envelope}/notify"),
            &self.host,
            &[
                ("Authorization", &self.basic),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    }

    fn soap(&self, body: &str) -> Vec<u8> {
        http_request(
            "POST",
            "/gosign/soap",
            &self.host,
            &[
                ("Authorization", &self.basic),
                ("Content-Type", "text/xml; charset=utf-8"),
                ("SOAPAction", "\"\""),
            ],
            body.as_bytes(),
        )
    }

    /// The callback of envelope `j`, and whether it is a terminal outcome (relayed).
    fn envelope(&self, j: u64, mix: Mix) -> (Vec<u8>, bool) {
        let id = tx(j);
        let kind = match (kind_of(j), mix) {
            (Kind::Progress, Mix::Terminal) => Kind::RestDone,
            (k, _) => k,
        };
        match kind {
            Kind::Soap => (
                self.soap(&soap_work_notification(&id, "SIGN_PROCESS_ENDED", None)),
                true,
            ),
            Kind::Extended => (self.notify(&id, &extended_json(&id)), true),
            Kind::Progress => (
                self.notify(&id, &work_notification(&id, "STEP_CLOSED", None, None)),
                false,
            ),
            Kind::RestRejected => (
                self.notify(
                    &id,
                    &work_notification(&id, "ENVELOPE_REJECTED", Some("bedrag klopt niet"), None),
                ),
                true,
            ),
            Kind::RestCancelled => (
                self.notify(
                    &id,
                    &work_notification(&id, "PROCESS_CANCELLED", None, None),
                ),
                true,
            ),
            Kind::RestDoneDoc => (
                self.notify(
                    &id,
                    &work_notification(&id, "SIGN_PROCESS_ENDED", None, Some(&self.doc_b64)),
                ),
                true,
            ),
            Kind::RestDone => (
                self.notify(
                    &id,
                    &work_notification(&id, "SIGN_PROCESS_ENDED", None, None),
                ),
                true,
            ),
        }
    }

    fn request(&self, i: u64, mix: Mix, first_env: u64) -> (Vec<u8>, What) {
        let slot = if mix == Mix::Terminal {
            Slot::New
        } else {
            slot(i)
        };
        let current = self.next_env.load(Relaxed);
        let recent = |back: u64| current.saturating_sub(back).max(first_env);
        match slot {
            Slot::WorkRest => {
                let path = format!(
                    "/gosign/rest/envelopes/{}/managers/jjansen/status",
                    tx(recent(10))
                );
                let r = http_request(
                    "GET",
                    &path,
                    &self.host,
                    &[("Authorization", &self.basic)],
                    b"",
                );
                (r, What::Work)
            }
            Slot::WorkSoap => {
                let ids: Vec<String> = (1..=3).map(|k| tx(recent(k * 7))).collect();
                (self.soap(&soap_status_request(&ids)), What::Work)
            }
            Slot::Duplicate if current >= first_env + DUP_DISTANCE => {
                let j = current - DUP_DISTANCE;
                let (r, terminal) = self.envelope(j, mix);
                (r, What::Dup { j, terminal })
            }
            _ => {
                let j = self.next_env.fetch_add(1, Relaxed);
                let (r, terminal) = self.envelope(j, mix);
                (r, What::New { j, terminal })
            }
        }
    }
}

fn acknowledged(r: &Resp) -> bool {
    r.status == 200
        && (find(&r.body, br#""outcome":"succeeded""#).is_some()
            || find(&r.body, b"<success>true</success>").is_some())
}

// ---------------------------------------------------------------------------------------------
// Load phases.

#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Every connection sends its next request as soon as the last one was answered.
    Closed(Duration),
    /// Requests at a fixed rate (requests per second) for a duration; latency counts from the
    /// moment a request was due, so a slow answer delays (and is charged for) the ones after it.
    Open(f64, Duration),
    /// Closed loop until this many requests were sent.
    Count(u64),
}

#[derive(Default)]
struct Stats {
    /// Latency of acknowledged callbacks, µs.
    cb_lat: Vec<u32>,
    /// Latency of answered workability checks, µs.
    work_lat: Vec<u32>,
    acked: u64,
    acked_new: u64,
    acked_dup: u64,
    not_acked: u64,
    io_errors: u64,
    work_ok: u64,
    work_bad: u64,
    /// New terminal outcomes acknowledged: envelope and when.
    terminal_acks: Vec<(u64, DateTime<Utc>)>,
    /// Terminal envelopes acknowledged through a duplicate.
    dup_terminal: Vec<u64>,
    first_failure: Option<String>,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.cb_lat.extend(o.cb_lat);
        self.work_lat.extend(o.work_lat);
        self.acked += o.acked;
        self.acked_new += o.acked_new;
        self.acked_dup += o.acked_dup;
        self.not_acked += o.not_acked;
        self.io_errors += o.io_errors;
        self.work_ok += o.work_ok;
        self.work_bad += o.work_bad;
        self.terminal_acks.extend(o.terminal_acks);
        self.dup_terminal.extend(o.dup_terminal);
        if self.first_failure.is_none() {
            self.first_failure = o.first_failure;
        }
    }
}

struct PhaseOut {
    elapsed: Duration,
    stats: Stats,
}

impl PhaseOut {
    fn rate(&self) -> f64 {
        self.stats.acked as f64 / self.elapsed.as_secs_f64()
    }
}

async fn run_load(
    addr: SocketAddr,
    gen: Arc<Gen>,
    pace: Pace,
    mix: Mix,
    connections: usize,
) -> anyhow::Result<PhaseOut> {
    let mut conns = Vec::with_capacity(connections);
    for i in 0..connections {
        let mut c = HttpConn::new(spread(addr, i));
        c.connect().await.context("load generator connects")?;
        conns.push(c);
    }
    let seq = Arc::new(AtomicU64::new(0));
    let first_env = gen.next_env.load(Relaxed);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (seq, gen) = (seq.clone(), gen.clone());
        tasks.push(tokio::spawn(async move {
            let mut st = Stats::default();
            loop {
                let i = seq.fetch_add(1, Relaxed);
                let start = match pace {
                    Pace::Closed(d) => {
                        let now = Instant::now();
                        if now >= t0 + d {
                            break;
                        }
                        now
                    }
                    Pace::Count(n) => {
                        if i >= n {
                            break;
                        }
                        Instant::now()
                    }
                    Pace::Open(rate, d) => {
                        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                        if due >= t0 + d {
                            break;
                        }
                        if due > Instant::now() {
                            // On time: the timer's lag is not the server's.
                            tokio::time::sleep_until(due.into()).await;
                            Instant::now()
                        } else {
                            due
                        }
                    }
                };
                let (req, what) = gen.request(i, mix, first_env);
                let res = conn.send(&req).await;
                let micros = start.elapsed().as_micros().min(u32::MAX as u128) as u32;
                match res {
                    Err(e) => {
                        st.io_errors += 1;
                        st.first_failure.get_or_insert_with(|| format!("i/o: {e}"));
                    }
                    Ok(r) => match what {
                        What::Work if r.status == 200 => {
                            st.work_ok += 1;
                            st.work_lat.push(micros);
                        }
                        What::Work => {
                            st.work_bad += 1;
                            st.first_failure.get_or_insert_with(|| {
                                format!("workability {}: {}", r.status, preview(&r.body))
                            });
                        }
                        What::New { j, terminal } | What::Dup { j, terminal }
                            if acknowledged(&r) =>
                        {
                            st.acked += 1;
                            st.cb_lat.push(micros);
                            match what {
                                What::New { .. } => {
                                    st.acked_new += 1;
                                    if terminal {
                                        st.terminal_acks.push((j, Utc::now()));
                                    }
                                }
                                _ => {
                                    st.acked_dup += 1;
                                    if terminal {
                                        st.dup_terminal.push(j);
                                    }
                                }
                            }
                        }
                        _ => {
                            st.not_acked += 1;
                            st.first_failure.get_or_insert_with(|| {
                                format!("callback {}: {}", r.status, preview(&r.body))
                            });
                        }
                    },
                }
            }
            st
        }));
    }
    let mut stats = Stats::default();
    for t in tasks {
        stats.merge(t.await?);
    }
    Ok(PhaseOut {
        elapsed: t0.elapsed(),
        stats,
    })
}

/// Progress on stderr, so that stdout holds the results only.
fn progress(what: &str) {
    eprintln!("  … {what}");
}

fn preview(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned()
}

/// Registers transactions `from..to` as a case application does (`PUT` with the trigger
/// message), over `connections` connections.
async fn register(
    addr: SocketAddr,
    from: u64,
    to: u64,
    connections: usize,
) -> anyhow::Result<Duration> {
    if to <= from {
        return Ok(Duration::ZERO);
    }
    let next = Arc::new(AtomicU64::new(from));
    let failures = Arc::new(AtomicU64::new(0));
    let host = addr.to_string();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..connections.min((to - from) as usize) {
        let (next, failures, host) = (next.clone(), failures.clone(), host.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = HttpConn::new(spread(addr, i));
            let mut first = None;
            loop {
                let j = next.fetch_add(1, Relaxed);
                if j >= to {
                    break;
                }
                let req = http_request(
                    "PUT",
                    &format!("/api/v1/transactions/gosign/{}", tx(j)),
                    &host,
                    &[
                        ("X-Api-Key", ADMIN_KEY),
                        ("Content-Type", "application/json"),
                    ],
                    registration_json(j).as_bytes(),
                );
                match c.send(&req).await {
                    Ok(r) if r.status == 200 || r.status == 201 => {}
                    Ok(r) => {
                        failures.fetch_add(1, Relaxed);
                        first.get_or_insert_with(|| format!("{} {}", r.status, preview(&r.body)));
                    }
                    Err(e) => {
                        failures.fetch_add(1, Relaxed);
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            first
        }));
    }
    let mut first = None;
    for t in tasks {
        if let Some(f) = t.await? {
            first.get_or_insert(f);
        }
    }
    let failed = failures.load(Relaxed);
    if failed > 0 {
        bail!(
            "{failed} registrations failed, first: {}",
            first.unwrap_or_default()
        );
    }
    Ok(started.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Processes: children, RSS and CPU from /proc.

struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User + system CPU seconds of a process (all its threads); USER_HZ is 100 on Linux.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Samples a process's resident set every 50 ms.
struct RssWatch {
    max_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let max_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (max_kib.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Relaxed) {
                if let Some(kib) = proc_status_kib(pid, "VmRSS:") {
                    m.fetch_max(kib, Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssWatch { max_kib, stop }
    }

    /// The largest RSS since the last reset, MiB.
    fn take_max_mib(&self) -> f64 {
        self.max_kib.swap(0, Relaxed) as f64 / 1024.0
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// Busy CPU seconds of the whole machine (all cores) outside niced processes, from /proc/stat.
fn machine_busy_secs() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(cpu) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user). Niced
    // processes (background builds, fuzzers) yield to the run and are left out.
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    let busy: u64 = f.iter().take(8).sum::<u64>() - at(1) - at(3) - at(4);
    busy as f64 / 100.0
}

/// CPU used by the processes of the run, and by the machine as a whole, during a phase.
struct CpuMeter {
    pids: Vec<u32>,
    at: Vec<f64>,
    machine_at: f64,
    started: Instant,
}

impl CpuMeter {
    fn start(pids: &[u32]) -> CpuMeter {
        CpuMeter {
            pids: pids.to_vec(),
            at: pids.iter().map(|p| cpu_secs(*p)).collect(),
            machine_at: machine_busy_secs(),
            started: Instant::now(),
        }
    }

    /// Cores used by each process since `start` (1.0 = one core busy), then by the rest of the
    /// machine (other processes, interrupts).
    fn cores(&self) -> Vec<f64> {
        let wall = self.started.elapsed().as_secs_f64();
        let mut v: Vec<f64> = self
            .pids
            .iter()
            .zip(&self.at)
            .map(|(p, a)| (cpu_secs(*p) - a) / wall)
            .collect();
        let machine = (machine_busy_secs() - self.machine_at) / wall;
        v.push((machine - v.iter().sum::<f64>()).max(0.0));
        v
    }
}

// ---------------------------------------------------------------------------------------------
// signrelay's /metrics.

/// signrelay's process id, once started: scrapes also read what it wrote to the disk.
static SIGNRELAY_PID: AtomicU64 = AtomicU64::new(0);

/// The signrelay instances the load is spread over (the first is the one measured).
static INSTANCES: std::sync::OnceLock<Vec<SocketAddr>> = std::sync::OnceLock::new();

/// Where the `i`th connection to `addr` goes: when `addr` is the first signrelay instance,
/// the instances in turn (as a load balancer would); otherwise `addr` itself.
fn spread(addr: SocketAddr, i: usize) -> SocketAddr {
    match INSTANCES.get() {
        Some(all) if all.first() == Some(&addr) => all[i % all.len()],
        _ => addr,
    }
}

/// Bytes a process caused to be written to storage (`write_bytes` of /proc/<pid>/io): what
/// reaches the disk, after the page cache, including rewrites of the same pages.
fn disk_write_bytes(pid: u64) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

/// signrelay's `/metrics` text and its disk writes so far, at one moment.
struct Scrape {
    text: String,
    disk_written: f64,
}

impl Scrape {
    async fn take(addr: SocketAddr) -> Scrape {
        let disk_written = disk_write_bytes(SIGNRELAY_PID.load(Relaxed));
        let text = match get(addr, "/metrics").await {
            Ok(r) => String::from_utf8_lossy(&r.body).into_owned(),
            Err(_) => String::new(),
        };
        Scrape { text, disk_written }
    }

    /// Sum of the samples of `name` whose labels contain `label` (empty: all).
    fn get(&self, name: &str, label: &str) -> f64 {
        self.text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .filter(|l| l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Group commit figures between two scrapes.
fn commit_summary(before: &Scrape, after: &Scrape, secs: f64) -> String {
    let d = |n: &str| after.get(n, "") - before.get(n, "");
    let commits = d("signrelay_store_commit_jobs_count");
    let jobs = d("signrelay_store_commit_jobs_sum");
    let commit_secs = d("signrelay_store_commit_seconds_sum");
    if commits <= 0.0 {
        return "no group commits".into();
    }
    let recorded = after.get("signrelay_callbacks_total", "result=\"recorded\"")
        - before.get("signrelay_callbacks_total", "result=\"recorded\"");
    let written = after.disk_written - before.disk_written;
    let per_callback = if recorded > 0.0 {
        format!(
            ", {:.1} KiB per recorded callback",
            written / recorded / 1024.0
        )
    } else {
        String::new()
    };
    format!(
        "{:.0} group commits/s, {:.1} writes per commit, {:.2} ms per commit (first job → fdatasync); \
         disk writes {:.1} MB/s{per_callback}",
        commits / secs,
        jobs / commits,
        commit_secs / commits * 1e3,
        written / secs / 1e6,
    )
}

/// One signrelay phase with what it cost: the CPU (signrelay, the bench, the rest) and the
/// `/metrics` and disk writes before and after.
struct Measured {
    out: PhaseOut,
    cores: Vec<f64>,
    before: Scrape,
    after: Scrape,
    /// The server's (first pid's) CPU seconds when the phase started.
    server_cpu_at: f64,
    server_pid: u32,
}

impl Measured {
    async fn run(
        addr: SocketAddr,
        pids: &[u32],
        what: &str,
        gen: Arc<Gen>,
        pace: Pace,
        mix: Mix,
        connections: usize,
    ) -> anyhow::Result<Measured> {
        let before = Scrape::take(addr).await;
        let cpu = CpuMeter::start(pids);
        progress(what);
        let out = run_load(addr, gen, pace, mix, connections).await?;
        let cores = cpu.cores();
        let after = Scrape::take(addr).await;
        Ok(Measured {
            out,
            cores,
            before,
            after,
            server_cpu_at: cpu.at[0],
            server_pid: pids[0],
        })
    }

    /// What `RelayedCpu::us` needs, kept past the phase's figures.
    fn relayed(&self) -> RelayedCpu {
        RelayedCpu {
            pid: self.server_pid,
            at: self.server_cpu_at,
            acked: self.out.stats.acked,
        }
    }

    /// The phase's line and its group commit line.
    fn print(&self, name: &str, extra: &str) {
        phase_line(name, &self.out, &self.cores, extra);
        println!(
            "    {}",
            commit_summary(&self.before, &self.after, self.out.elapsed.as_secs_f64())
        );
    }
}

/// The server's CPU from a phase's start, per callback the phase acknowledged.
struct RelayedCpu {
    pid: u32,
    at: f64,
    acked: u64,
}

impl RelayedCpu {
    /// CPU µs per acknowledged callback from the phase's start until now: asked once what the
    /// phase queued is relayed, the cost of an acknowledged, relayed callback.
    fn us(&self) -> f64 {
        (cpu_secs(self.pid) - self.at) / self.acked.max(1) as f64 * 1e6
    }
}

async fn wait_drained(addr: SocketAddr, timeout: Duration) -> (f64, f64) {
    let deadline = Instant::now() + timeout;
    loop {
        let m = Scrape::take(addr).await;
        let (outbox, parked) = (
            m.get("signrelay_outbox_depth", ""),
            m.get("signrelay_parked_events", ""),
        );
        if (outbox == 0.0 && parked == 0.0) || Instant::now() >= deadline {
            return (outbox, parked);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Figures.

fn pct<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let idx = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[idx.clamp(1, sorted.len()) - 1]
}

fn ms(us: u32) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn lat3(v: &mut [u32]) -> (u32, u32, u32) {
    v.sort_unstable();
    (pct(v, 50.0), pct(v, 99.0), pct(v, 99.9))
}

fn fmt_rate(r: f64) -> String {
    let n = r.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (k, c) in s.chars().enumerate() {
        if k > 0 && (s.len() - k) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// 4 KiB appended and `fdatasync`ed, `n` times, in `dir`: (p50, p99) µs.
fn flush_latency(dir: &Path, n: usize) -> anyhow::Result<(u32, u32)> {
    use std::io::Write;
    let path = dir.join("flush-probe");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let block = vec![0x5a_u8; 4096];
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        v.push(t.elapsed().as_micros() as u32);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    v.sort_unstable();
    Ok((pct(&v, 50.0), pct(&v, 99.0)))
}

struct Row {
    figure: String,
    measured: String,
    target: String,
    pass: Option<bool>,
}

fn row(figure: impl Into<String>, measured: impl Into<String>) -> Row {
    Row {
        figure: figure.into(),
        measured: measured.into(),
        target: String::new(),
        pass: None,
    }
}

fn target(figure: impl Into<String>, measured: impl Into<String>, t: String, pass: bool) -> Row {
    Row {
        figure: figure.into(),
        measured: measured.into(),
        target: t,
        pass: Some(pass),
    }
}

fn print_table(rows: &[Row]) {
    let w0 = rows
        .iter()
        .map(|r| r.figure.chars().count())
        .max()
        .unwrap_or(0);
    let w1 = rows
        .iter()
        .map(|r| r.measured.chars().count())
        .max()
        .unwrap_or(0);
    let w2 = rows
        .iter()
        .map(|r| r.target.chars().count())
        .max()
        .unwrap_or(0);
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
    println!(
        "| {} | {} | {} | result |",
        pad("figure", w0),
        pad("measured", w1),
        pad("target", w2)
    );
    println!(
        "|{}|{}|{}|--------|",
        "-".repeat(w0 + 2),
        "-".repeat(w1 + 2),
        "-".repeat(w2 + 2)
    );
    for r in rows {
        let verdict = match r.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "",
        };
        println!(
            "| {} | {} | {} | {} |",
            pad(&r.figure, w0),
            pad(&r.measured, w1),
            pad(&r.target, w2),
            pad(verdict, 6)
        );
    }
}

/// Phases during which other processes used a noticeable share of the machine.
static DISTURBED: std::sync::Mutex<Vec<(String, f64)>> = std::sync::Mutex::new(Vec::new());

/// Notes a phase as disturbed when the rest of the machine used over a quarter of a core.
fn note_disturbance(name: &str, rest: f64) {
    if rest > 0.25 {
        DISTURBED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), rest));
    }
}

/// CPU µs a process spent per acknowledged callback of a phase, from the cores it used.
fn cpu_us_per_callback(cores: f64, p: &PhaseOut) -> f64 {
    cores * p.elapsed.as_secs_f64() / p.stats.acked.max(1) as f64 * 1e6
}

fn phase_line(name: &str, p: &PhaseOut, cores: &[f64], extra: &str) {
    note_disturbance(name, cores.get(2).copied().unwrap_or(0.0));
    let mut lat = p.stats.cb_lat.clone();
    let (p50, p99, p999) = lat3(&mut lat);
    println!(
        "  {name}: {} acknowledged callbacks/s ({} new, {} duplicates, {} workability checks) \
         in {:.1} s; latency p50 {} / p99 {} / p99.9 {} ms; CPU cores used: server {:.2} \
         ({:.0} µs per acknowledged callback), bench {:.2}, rest of the machine {:.2}{extra}",
        fmt_rate(p.rate()),
        p.stats.acked_new,
        p.stats.acked_dup,
        p.stats.work_ok,
        p.elapsed.as_secs_f64(),
        ms(p50),
        ms(p99),
        ms(p999),
        cores.first().copied().unwrap_or(0.0),
        cpu_us_per_callback(cores.first().copied().unwrap_or(0.0), p),
        cores.get(1).copied().unwrap_or(0.0),
        cores.get(2).copied().unwrap_or(0.0),
    );
    let s = &p.stats;
    if s.not_acked + s.io_errors + s.work_bad > 0 {
        println!(
            "    not acknowledged: {}, i/o errors: {}, workability failures: {}; first: {}",
            s.not_acked,
            s.io_errors,
            s.work_bad,
            s.first_failure.as_deref().unwrap_or("")
        );
    }
}

/// Newest modification time of the crate's sources (the bench itself excluded), to warn when
/// the `signrelay` binary is older than what it is built from.
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            newest_source(&p)
        } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("bin/signrelay-bench.rs")
        {
            e.metadata().ok().and_then(|m| m.modified().ok())
        } else {
            None
        };
        newest = newest.max(t);
    }
    newest
}

// ---------------------------------------------------------------------------------------------
// The run.

struct Settings {
    duration: Duration,
    fixed_duration: Duration,
    warmup: Duration,
    connections: usize,
    backlog: u64,
    workers: usize,
    fixed_rate: f64,
    fill: u64,
}

async fn wait_ready(addr: SocketAddr, path: &str, child: &mut ChildGuard) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.exited() {
            bail!("the server exited before it was ready ({status})");
        }
        if let Ok(r) = get(addr, path).await {
            if r.status == 200 {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!("the server at {addr} was not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let s = Settings {
        duration: Duration::from_secs_f64(if cli.quick { 0.7 } else { cli.duration }),
        fixed_duration: Duration::from_secs_f64(if cli.quick { 0.7 } else { cli.fixed_duration }),
        warmup: Duration::from_secs_f64(if cli.quick { 0.3 } else { 2.0 }),
        connections: if cli.quick { 16 } else { cli.connections },
        backlog: if cli.quick { 500 } else { cli.backlog },
        workers: if cli.workers == 0 { cores } else { cli.workers },
        fixed_rate: cli.fixed_rate,
        fill: if cli.quick {
            cli.fill.min(3_000)
        } else {
            cli.fill
        },
    };
    let signrelay_bin = match &cli.signrelay {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("signrelay"),
    };
    if !signrelay_bin.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release --bins`",
            signrelay_bin.display()
        );
    }
    let bin_time = std::fs::metadata(&signrelay_bin)?.modified()?;
    if newest_source(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .is_some_and(|t| t > bin_time)
    {
        println!(
            "WARNING: {} is older than the sources; run `cargo build --release --bins` first",
            signrelay_bin.display()
        );
    }

    let dir = tempfile::Builder::new()
        .prefix("signrelay-bench-")
        .tempdir()
        .context("temporary directory")?;
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store)?;
    let log_path = cli
        .log_file
        .clone()
        .unwrap_or_else(|| dir.path().join("signrelay.log"));

    println!("signrelay-bench");
    println!(
        "  machine: {cores} cores ({}), {}; temporary store {} on {}",
        cpu_model(),
        mem_total(),
        store.display(),
        filesystem_of(&store)
    );
    println!(
        "  load: {} keep-alive connections; phases of {:.1} s (fixed rate: {:.1} s); mix per \
         request: 83 % callbacks on new envelopes (of these 55 % REST SIGN_PROCESS_ENDED, 5 % the \
         same with a {} KiB signed PDF inline, 5 % ENVELOPE_REJECTED, 5 % PROCESS_CANCELLED, \
         10 % Extended format, 15 % SOAP workNotification, 5 % STEP_CLOSED progress), \
         7 % duplicates (the same body again), 5 % REST workability checks, 5 % SOAP \
         getEnvelopeExternalStatus",
        s.connections,
        s.duration.as_secs_f64(),
        s.fixed_duration.as_secs_f64(),
        DOC_BYTES / 1024
    );

    // 1. The disk.
    let (flush_p50, flush_p99) = flush_latency(&store, 200)?;
    println!(
        "\n[flush] 4 KiB append + fdatasync in the store's directory, 200 times: p50 {} ms, p99 {} ms",
        ms(flush_p50),
        ms(flush_p99)
    );

    let bench_pid = std::process::id();

    // 2. The no-op endpoint.
    let noop_port = free_port()?;
    let noop_addr: SocketAddr = ([127, 0, 0, 1], noop_port).into();
    let mut noop = ChildGuard {
        child: Command::new(std::env::current_exe()?)
            .args([
                "noop-server",
                "--port",
                &noop_port.to_string(),
                "--workers",
                &s.workers.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the no-op endpoint")?,
    };
    wait_ready(noop_addr, "/", &mut noop).await?;
    let noop_gen = Arc::new(Gen::new(noop_addr, 0));
    progress("no-op: warm-up, then closed loop");
    run_load(
        noop_addr,
        noop_gen.clone(),
        Pace::Closed(s.warmup),
        Mix::Full,
        s.connections,
    )
    .await?;
    let cpu = CpuMeter::start(&[noop.pid(), bench_pid]);
    let noop_run = run_load(
        noop_addr,
        noop_gen,
        Pace::Closed(s.duration),
        Mix::Full,
        s.connections,
    )
    .await?;
    println!("\n[no-op] actix-web, {} workers, same load:", s.workers);
    let noop_cores = cpu.cores();
    phase_line("no-op closed loop", &noop_run, &noop_cores, "");
    let noop_us = cpu_us_per_callback(noop_cores[0], &noop_run);
    drop(noop);

    // 3. signrelay and the NRC stand-in.
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true).await?;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let relay = RelayCfg {
        concurrency: cli.relay_concurrency,
        backoff_initial_ms: 100,
        backoff_max_secs: 1,
        probe_interval_max_secs: 1,
        timeout_secs: 5,
    };
    let config = signrelay_config(port, s.workers, &store, &nrc.url, &cli.log_level, &relay);
    let config_path = dir.path().join("signrelay.toml");
    std::fs::write(&config_path, &config)?;
    println!(
        "\n[signrelay] {} serve; server.workers = {}, server.keep_alive_secs = 75, \
         store.max_group = 1024 (default), \
         relay.concurrency = {}, relay.backoff_initial_ms = {}, relay.backoff_max_secs = {}, \
         relay.probe_interval_max_secs = {}, relay.timeout_secs = {}, gosign.workability.policy = registry, auth basic (REST, SOAP), \
         log.level = {} (JSON to {})",
        signrelay_bin.display(),
        s.workers,
        relay.concurrency,
        relay.backoff_initial_ms,
        relay.backoff_max_secs,
        relay.probe_interval_max_secs,
        relay.timeout_secs,
        cli.log_level,
        log_path.display()
    );
    let mut env = Vec::new();
    for o in &cli.overrides {
        let Some((key, value)) = o.split_once('=') else {
            bail!("--set takes KEY=VALUE, e.g. store.max_group=64");
        };
        let var = format!(
            "SIGNRELAY__{}",
            key.trim().replace('.', "__").to_ascii_uppercase()
        );
        println!("  override: {var}={value}");
        env.push((var, value.to_string()));
    }
    let postgres = env
        .iter()
        .any(|(k, v)| k == "SIGNRELAY__STORE__BACKEND" && v == "postgres");
    if cli.instances > 1 && !postgres {
        bail!(
            "--instances {} needs --set store.backend=postgres",
            cli.instances
        );
    }
    // A database of its own for the run, dropped at its end.
    let _database = if postgres {
        let db = signrelay::testkit::postgres::TestDb::create().await;
        println!(
            "  store: PostgreSQL database {} on {} ({} instance(s); the load's connections in turn)",
            db.name,
            signrelay::testkit::postgres::server(),
            cli.instances
        );
        env.push(("SIGNRELAY__STORE__POSTGRES__URL".into(), db.url.clone()));
        Some(db)
    } else {
        None
    };
    let spawn = |config_path: &Path, log: &Path| -> anyhow::Result<ChildGuard> {
        let mut cmd = Command::new(&signrelay_bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(log)?));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SIGNRELAY") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        Ok(ChildGuard {
            child: cmd.spawn().context("starting signrelay")?,
        })
    };
    let mut sr = spawn(&config_path, &log_path)?;
    if let Err(e) = wait_ready(addr, "/readyz", &mut sr).await {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        bail!("{e}\nsignrelay's log:\n{log}");
    }
    // Further instances on the same database: their own port, scratch directory and log.
    let mut others = Vec::new();
    let mut addrs = vec![addr];
    for i in 1..cli.instances.max(1) {
        let port = free_port()?;
        let other: SocketAddr = ([127, 0, 0, 1], port).into();
        let scratch = dir.path().join(format!("store-{i}"));
        std::fs::create_dir_all(&scratch)?;
        let config = signrelay_config(port, s.workers, &scratch, &nrc.url, &cli.log_level, &relay);
        let path = dir.path().join(format!("signrelay-{i}.toml"));
        std::fs::write(&path, &config)?;
        let log = dir.path().join(format!("signrelay-{i}.log"));
        let mut child = spawn(&path, &log)?;
        wait_ready(other, "/readyz", &mut child).await?;
        others.push(child);
        addrs.push(other);
    }
    let _ = INSTANCES.set(addrs);
    if cli.instances > 1 {
        println!(
            "  {} instances; CPU and RSS below are the first instance's",
            cli.instances
        );
    }
    let sr_pid = sr.pid();
    SIGNRELAY_PID.store(sr_pid as u64, Relaxed);
    let rss = RssWatch::start(sr_pid);
    let rss_now = || proc_status_kib(sr_pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0;
    println!("  RSS after start, idle: {:.1} MiB", rss_now());
    let gen = Arc::new(Gen::new(addr, 0));
    let mut registered_to = 0u64;
    let mut all = Stats::default();

    // 4. Fixed rate: RSS and callback-ack → NRC receipt.
    let need = (s.fixed_rate * s.fixed_duration.as_secs_f64()) as u64 + 64;
    register(addr, registered_to, registered_to + need, s.connections).await?;
    registered_to += need;
    wait_drained(addr, Duration::from_secs(60)).await;
    rss.take_max_mib();
    let rss_before = rss_now();
    let fixed_phase = Measured::run(
        addr,
        &[sr_pid, bench_pid],
        "signrelay: open loop at the fixed rate",
        gen.clone(),
        Pace::Open(s.fixed_rate / CALLBACK_SHARE, s.fixed_duration),
        Mix::Full,
        s.connections,
    )
    .await?;
    let rss_after = rss_now();
    let rss_fixed = rss.take_max_mib().max(rss_after);
    println!("\n[signrelay] phases:");
    fixed_phase.print(
        &format!(
            "open loop at {} callbacks/s (+ {} workability checks/s)",
            fmt_rate(s.fixed_rate),
            fmt_rate(s.fixed_rate / CALLBACK_SHARE - s.fixed_rate)
        ),
        &format!(
            "; RSS {rss_before:.1} MiB before, {rss_after:.1} MiB after (max {rss_fixed:.1}): \
             {:+.1} MiB per 10 000 callbacks",
            (rss_after - rss_before) / fixed_phase.out.stats.acked.max(1) as f64 * 10_000.0
        ),
    );
    let fixed_cpu = fixed_phase.relayed();
    let fixed = fixed_phase.out;
    let used = gen.next_env.load(Relaxed);
    if used > registered_to {
        register(addr, registered_to, used, s.connections).await?;
        registered_to = used;
    }
    let wanted: Vec<u64> = fixed.stats.terminal_acks.iter().map(|(j, _)| *j).collect();
    let received = wait_received(&nrc, &wanted, Duration::from_secs(60)).await;
    let mut ack_nrc: Vec<i64> = fixed
        .stats
        .terminal_acks
        .iter()
        .filter_map(|(j, acked)| {
            let at = received.get(&tx(*j))?;
            Some((*at - *acked).num_microseconds().unwrap_or(i64::MAX))
        })
        .collect();
    ack_nrc.sort_unstable();
    let ack_nrc_missing = wanted.len() - ack_nrc.len();
    println!(
        "    callback ack → NRC receipt over {} outcomes: min {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms (negative: the NRC had it before the vendor had its answer){}",
        ack_nrc.len(),
        ack_nrc.first().copied().unwrap_or(0) as f64 / 1e3,
        pct(&ack_nrc, 50.0) as f64 / 1e3,
        pct(&ack_nrc, 99.0) as f64 / 1e3,
        ack_nrc.last().copied().unwrap_or(0) as f64 / 1e3,
        if ack_nrc_missing > 0 {
            format!(" ({ack_nrc_missing} not received within 60 s)")
        } else {
            String::new()
        }
    );
    let fixed_acked = fixed.stats.acked;
    all.merge(fixed.stats);
    wait_drained(addr, Duration::from_secs(60)).await;
    let fixed_us = fixed_cpu.us();

    // 5. Warm-up, which also estimates the maximum rate. Envelopes beyond the registered pool
    // arrive before their registration (parked) and are registered (released) after.
    progress("signrelay: warm-up");
    let warm = run_load(
        addr,
        gen.clone(),
        Pace::Closed(s.warmup),
        Mix::Full,
        s.connections,
    )
    .await?;
    let estimate = warm.rate();
    all.merge(warm.stats);
    let used = gen.next_env.load(Relaxed);
    if used > registered_to {
        register(addr, registered_to, used, s.connections).await?;
        registered_to = used;
    }
    wait_drained(addr, Duration::from_secs(60)).await;

    // 6. Closed loop: the maximum rate.
    let need = (estimate * s.duration.as_secs_f64() * 1.2) as u64 + 64;
    register(addr, registered_to, registered_to + need, s.connections).await?;
    registered_to += need;
    wait_drained(addr, Duration::from_secs(120)).await;
    let max_phase = Measured::run(
        addr,
        &[sr_pid, bench_pid],
        "signrelay: closed loop (maximum rate)",
        gen.clone(),
        Pace::Closed(s.duration),
        Mix::Full,
        s.connections,
    )
    .await?;
    max_phase.print(
        "closed loop (maximum rate)",
        &format!(
            "; outbox at the end {:.0}",
            max_phase.after.get("signrelay_outbox_depth", "")
        ),
    );
    let max_cpu = max_phase.relayed();
    let max_us_acked = cpu_us_per_callback(max_phase.cores[0], &max_phase.out);
    let max = max_phase.out;
    let max_rate = max.rate();
    let used = gen.next_env.load(Relaxed);
    let beyond = used.saturating_sub(registered_to);
    if beyond > 0 {
        println!("    ({beyond} envelopes beyond the registered pool: parked, registered now)");
        register(addr, registered_to, used, s.connections).await?;
        registered_to = used;
    }
    let mut max_lat = max.stats.cb_lat.clone();
    let max_l = lat3(&mut max_lat);
    all.merge(max.stats);
    wait_drained(addr, Duration::from_secs(120)).await;
    let max_us = max_cpu.us();
    println!(
        "    CPU per acknowledged callback, relayed: {max_us:.0} µs (until the outbox was empty)"
    );

    // 7. Open loop at half the maximum rate.
    let half = (max_rate / 2.0).max(1.0);
    let need = (half * s.duration.as_secs_f64()) as u64 + 64;
    register(addr, registered_to, registered_to + need, s.connections).await?;
    registered_to += need;
    wait_drained(addr, Duration::from_secs(120)).await;
    let half_phase = Measured::run(
        addr,
        &[sr_pid, bench_pid],
        "signrelay: open loop at half the maximum",
        gen.clone(),
        Pace::Open(half / CALLBACK_SHARE, s.duration),
        Mix::Full,
        s.connections,
    )
    .await?;
    half_phase.print(
        &format!(
            "open loop at half the maximum ({} callbacks/s + workability checks)",
            fmt_rate(half)
        ),
        "",
    );
    let half_cpu = half_phase.relayed();
    let half_run = half_phase.out;
    let mut half_lat = half_run.stats.cb_lat.clone();
    let half_l = lat3(&mut half_lat);
    all.merge(half_run.stats);
    let used = gen.next_env.load(Relaxed);
    if used > registered_to {
        register(addr, registered_to, used, s.connections).await?;
        registered_to = used;
    }
    let (outbox, parked) = wait_drained(addr, Duration::from_secs(120)).await;
    if outbox + parked > 0.0 {
        println!("    (outbox {outbox}, parked {parked} still not empty after 120 s)");
    }
    let half_us = half_cpu.us();

    // 8. Backlog: record during an NRC outage, then time the drain.
    nrc.set_behaviour(Behaviour::Fail {
        status: 503,
        retry_after: None,
    });
    // Every envelope handed out so far is registered (registered_to >= next_env).
    let first_backlog = registered_to;
    let reg_time = register(
        addr,
        first_backlog,
        first_backlog + s.backlog,
        s.connections,
    )
    .await?;
    gen.next_env.store(first_backlog, Relaxed);
    // Past the backlog: later phases must not send its envelopes again (duplicates, which
    // the NRC never hears of).
    registered_to = first_backlog + s.backlog;
    println!(
        "  NRC outage (503): registered {} transactions in {:.1} s ({}/s)",
        s.backlog,
        reg_time.as_secs_f64(),
        fmt_rate(s.backlog as f64 / reg_time.as_secs_f64().max(1e-9))
    );
    rss.take_max_mib();
    let rec_phase = Measured::run(
        addr,
        &[sr_pid, bench_pid],
        "signrelay: recording the backlog during the NRC outage",
        gen.clone(),
        Pace::Count(s.backlog),
        Mix::Terminal,
        s.connections,
    )
    .await?;
    rec_phase.print("recording the backlog (terminal callbacks only)", "");
    let (rec, m1) = (rec_phase.out, rec_phase.after);
    let backlog_ids: Vec<u64> = rec.stats.terminal_acks.iter().map(|(j, _)| *j).collect();
    all.merge(rec.stats);
    let outbox = m1.get("signrelay_outbox_depth", "");
    let retries_outage = m1.get("signrelay_relay_deliveries_total", "\"retry\"");
    let switch_at = Utc::now();
    let attempts_before = nrc.attempts();
    let cpu = CpuMeter::start(&[sr_pid, bench_pid]);
    progress("signrelay: NRC back, draining the backlog");
    nrc.set_behaviour(Behaviour::Accept);
    let n = backlog_ids.len();
    let deadline = Instant::now() + Duration::from_secs(60 + s.backlog / 500);
    // The NRC lane's window, sampled while it drains.
    let mut windows = Vec::new();
    let mut sampled = Instant::now();
    while nrc.attempts() < attempts_before + n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if sampled.elapsed() >= Duration::from_millis(250) {
            sampled = Instant::now();
            let m = Scrape::take(addr).await;
            windows.push((
                m.get("signrelay_party_window", "\"nrc\""),
                m.get("signrelay_party_rtt_seconds", "\"nrc\"") * 1000.0,
            ));
        }
    }
    let drain_window = windows.iter().map(|w| w.0).sum::<f64>() / windows.len().max(1) as f64;
    let drain_rtt = windows.iter().map(|w| w.1).sum::<f64>() / windows.len().max(1) as f64;
    let drain_cores = cpu.cores();
    note_disturbance("backlog drain", drain_cores[2]);
    let received = wait_received(&nrc, &backlog_ids, Duration::from_secs(60)).await;
    let times: Vec<DateTime<Utc>> = backlog_ids
        .iter()
        .filter_map(|j| received.get(&tx(*j)).copied())
        .collect();
    let rss_drain = rss.take_max_mib();
    let (drain_total, drain_steady, reopen_ms) = match (times.iter().min(), times.iter().max()) {
        (Some(first), Some(last)) => {
            let total = (*last - switch_at).num_microseconds().unwrap_or(1).max(1) as f64 / 1e6;
            let steady = (*last - *first).num_microseconds().unwrap_or(1).max(1) as f64 / 1e6;
            (
                times.len() as f64 / total,
                times.len() as f64 / steady,
                (*first - switch_at).num_milliseconds(),
            )
        }
        _ => (0.0, 0.0, 0),
    };
    println!(
        "  backlog of {} outcomes (outbox {:.0}, {:.0} failed attempts during the outage); NRC back: \
         first delivery after {} ms, all {} delivered at {}/s from the switch ({}/s from the first \
         delivery); NRC window {:.1} on average, RTT {:.2} ms; CPU cores used: signrelay {:.2}, \
         bench (NRC stand-in) {:.2}, rest of the machine {:.2}; max RSS {:.1} MiB",
        n,
        outbox,
        retries_outage,
        reopen_ms,
        times.len(),
        fmt_rate(drain_total),
        fmt_rate(drain_steady),
        drain_window,
        drain_rtt,
        drain_cores[0],
        drain_cores[1],
        drain_cores[2],
        rss_drain
    );

    // 9. A limited NRC: it serves at most K notifications at once, queues 100 more (as
    // uWSGI's listen queue in front of Open Notificaties) and answers 503 beyond; first at the
    // capacity Open Notificaties has on 2 cores, then, mid-drain and with nothing changed at
    // signrelay, at eight times that.
    let limited = [
        Capacity {
            slots: 4,
            latency: Duration::from_millis(80),
            queue: 100,
        },
        Capacity {
            slots: 16,
            latency: Duration::from_millis(40),
            queue: 100,
        },
    ];
    let (settle, span) = if cli.quick {
        (Duration::from_secs(1), Duration::from_secs(2))
    } else {
        (Duration::from_secs(5), Duration::from_secs(15))
    };
    let need = limited
        .iter()
        .map(|c| c.rate() * (settle + span).as_secs_f64() * 1.3)
        .sum::<f64>() as u64
        + 200;
    // Envelopes of their own: past every one handed out so far.
    let first_limited = registered_to.max(gen.next_env.load(Relaxed));
    register(addr, first_limited, first_limited + need, s.connections).await?;
    registered_to = first_limited + need;
    gen.next_env.store(first_limited, Relaxed);
    nrc.set_capacity(Some(limited[0]));
    let (attempts_before, m_before) = (nrc.attempts(), Scrape::take(addr).await);
    let received_before = nrc.received().len();
    let rec = Measured::run(
        addr,
        &[sr_pid, bench_pid],
        "signrelay: outcomes for the limited NRC",
        gen.clone(),
        Pace::Count(need),
        Mix::Terminal,
        s.connections,
    )
    .await?;
    let limited_ids: Vec<u64> = rec
        .out
        .stats
        .terminal_acks
        .iter()
        .map(|(j, _)| *j)
        .collect();
    all.merge(rec.out.stats);
    println!(
        "\n[limited NRC] at most K notificaties at once, each taking L, 100 more queued, 503 beyond; \
         {} outcomes queued, drain measured over {:.0} s after {:.0} s to settle:",
        limited_ids.len(),
        span.as_secs_f64(),
        settle.as_secs_f64()
    );
    let mut limited_rates = Vec::new();
    for (i, c) in limited.iter().enumerate() {
        if i > 0 {
            nrc.set_capacity(Some(*c));
        }
        progress(&format!(
            "limited NRC: {} at once × {} ms",
            c.slots,
            c.latency.as_millis()
        ));
        tokio::time::sleep(settle).await;
        let from = Utc::now();
        tokio::time::sleep(span).await;
        let to = Utc::now();
        let got = nrc
            .received()
            .iter()
            .filter(|r| r.at >= from && r.at < to)
            .count();
        let rate = got as f64 / span.as_secs_f64();
        let m = Scrape::take(addr).await;
        println!(
            "  K = {}, L = {} ms (capacity {}/s): {}/s ({:.0} %); window {:.0}, RTT {:.0} ms",
            c.slots,
            c.latency.as_millis(),
            fmt_rate(c.rate()),
            fmt_rate(rate),
            rate / c.rate() * 100.0,
            m.get("signrelay_party_window", "\"nrc\""),
            m.get("signrelay_party_rtt_seconds", "\"nrc\"") * 1000.0
        );
        limited_rates.push(rate);
    }
    let received_then = nrc.received().len();
    nrc.set_capacity(None);
    let received = wait_received(&nrc, &limited_ids, Duration::from_secs(60)).await;
    let stats = nrc.capacity_stats();
    let retries = Scrape::take(addr)
        .await
        .get("signrelay_relay_deliveries_total", "\"retry\"")
        - m_before.get("signrelay_relay_deliveries_total", "\"retry\"");
    let limited_errors = stats.overflowed + stats.abandoned + retries.max(0.0) as u64;
    let limited_missing = limited_ids
        .iter()
        .filter(|j| !received.contains_key(&tx(**j)))
        .count();
    println!(
        "  {} requests to the limited NRC: {} answered 503 (queue full), {} given up by signrelay \
         (timeouts), {:.0} retries; longest queue {}; backlog left when measured: {}; missing: {}",
        nrc.attempts() - attempts_before,
        stats.overflowed,
        stats.abandoned,
        retries,
        stats.max_queued,
        limited_ids
            .len()
            .saturating_sub(received_then - received_before),
        limited_missing
    );

    // 10. The store filled to `fill` callbacks, measured at both ends of the fill.
    let fill = if s.fill > 0 {
        let mut f = Fill {
            addr,
            pids: [sr_pid, bench_pid],
            gen: gen.clone(),
            s: &s,
            store: &store,
            rss: &rss,
            registered_to,
            stored: all.acked_new,
            estimate: max_rate,
            terminal: Vec::new(),
        };
        let report = f.run(&nrc).await?;
        registered_to = f.registered_to;
        Some(report)
    } else {
        None
    };
    let _ = registered_to;

    // 11. Everything acknowledged reached the NRC?
    let mut acked: HashSet<u64> = all.terminal_acks.iter().map(|(j, _)| *j).collect();
    acked.extend(all.dup_terminal.iter().copied());
    let acked: Vec<u64> = acked.into_iter().collect();
    let received = wait_received(&nrc, &acked, Duration::from_secs(60)).await;
    let missing = acked
        .iter()
        .filter(|j| !received.contains_key(&tx(**j)))
        .count();
    let all_received = nrc.received();
    let unique: HashSet<&str> = all_received
        .iter()
        .filter_map(|r| r.body["kenmerken"]["transaction_id"].as_str())
        .collect();
    let nrc_dupes = all_received.len() - unique.len();
    let refused = nrc.refused().len();
    let peak_rss = proc_status_kib(sr_pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    let sr_cpu = cpu_secs(sr_pid);
    drop(rss);
    drop(sr);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let (errors, warnings) = (
        log.matches(r#""level":"ERROR""#).count(),
        log.matches(r#""level":"WARN""#).count(),
    );
    println!(
        "\n  acknowledged terminal outcomes: {}; received by the NRC: {}; missing at the NRC: {missing}; \
         NRC notifications {} ({} repeated, {} refused); signrelay CPU {:.1} s; log {} lines \
         ({} errors, {} warnings)",
        acked.len(),
        acked.len() - missing,
        all_received.len(),
        nrc_dupes,
        refused,
        sr_cpu,
        log.lines().count(),
        errors,
        warnings
    );
    println!(
        "  every acknowledged outcome reached the NRC: {}",
        if missing == 0 { "yes" } else { "NO" }
    );

    // 12. The table.
    let noop_rate = noop_run.rate();
    let ratio = max_rate / noop_rate.max(1e-9);
    let mut noop_lat = noop_run.stats.cb_lat.clone();
    let noop_l = lat3(&mut noop_lat);
    let p99_bound = 2 * flush_p99 + 5000;
    let ack_p50 = pct(&ack_nrc, 50.0);
    let limited_rows = limited
        .iter()
        .zip(&limited_rates)
        .enumerate()
        .map(|(i, (c, rate))| {
            let what = if i == 0 {
                "drain at a limited NRC:"
            } else {
                "… its capacity changed mid-drain:"
            };
            target(
                format!(
                    "{what} {} at once × {} ms = {}/s",
                    c.slots,
                    c.latency.as_millis(),
                    fmt_rate(c.rate())
                ),
                format!(
                    "{}/s = {:.0} % of capacity",
                    fmt_rate(*rate),
                    rate / c.rate() * 100.0
                ),
                "≥ 90 %".into(),
                *rate >= 0.9 * c.rate(),
            )
        });
    let mut rows = vec![
        row(
            "acknowledged callbacks/s (closed loop, durable)",
            format!("{}/s", fmt_rate(max_rate)),
        ),
        row(
            "no-op actix-web endpoint, same load",
            format!("{}/s", fmt_rate(noop_rate)),
        ),
        target(
            "CPU per acknowledged, relayed callback at max / half max / fixed rate",
            format!(
                "{max_us:.0} / {half_us:.0} / {fixed_us:.0} µs ({max_us_acked:.0} µs while loaded)"
            ),
            "at max ≤ 150 µs (goal 100)".into(),
            max_us <= 150.0,
        ),
        row(
            "no-op CPU per answered callback",
            format!("{noop_us:.1} µs"),
        ),
        target(
            "signrelay / no-op",
            format!("{:.0} %", ratio * 100.0),
            "≥ 50 %".into(),
            ratio >= 0.5,
        ),
        row(
            "intake latency at max p50 / p99 / p99.9",
            format!("{} / {} / {} ms", ms(max_l.0), ms(max_l.1), ms(max_l.2)),
        ),
        row(
            "no-op latency at max p50 / p99 / p99.9",
            format!("{} / {} / {} ms", ms(noop_l.0), ms(noop_l.1), ms(noop_l.2)),
        ),
        row(
            "disk flush (4 KiB + fdatasync) p50 / p99",
            format!("{} / {} ms", ms(flush_p50), ms(flush_p99)),
        ),
        target(
            format!(
                "intake latency at {} callbacks/s (half max) p50 / p99 / p99.9",
                fmt_rate(half)
            ),
            format!("{} / {} / {} ms", ms(half_l.0), ms(half_l.1), ms(half_l.2)),
            format!("p99 ≤ 2 × flush p99 + 5 = {} ms", ms(p99_bound)),
            half_l.1 <= p99_bound,
        ),
        target(
            format!(
                "callback ack → NRC receipt p50 / p99 (at {} callbacks/s)",
                fmt_rate(s.fixed_rate)
            ),
            format!(
                "{:.2} / {:.2} ms",
                ack_p50 as f64 / 1e3,
                pct(&ack_nrc, 99.0) as f64 / 1e3
            ),
            "p50 ≤ 20 ms".into(),
            ack_p50 <= 20_000 && ack_nrc_missing == 0,
        ),
        target(
            format!(
                "backlog drain ({} outcomes) after NRC outage",
                fmt_rate(n as f64)
            ),
            format!(
                "{}/s ({}/s after the first delivery)",
                fmt_rate(drain_total),
                fmt_rate(drain_steady)
            ),
            "≥ 5 000/s".into(),
            drain_total >= 5000.0,
        ),
        target(
            "errors caused at the limited NRC (503s, timeouts, retries)",
            format!("{limited_errors}"),
            "0".into(),
            limited_errors == 0,
        ),
        target(
            format!(
                "RSS at {} callbacks/s (max sampled over the phase)",
                fmt_rate(s.fixed_rate)
            ),
            format!(
                "{rss_fixed:.1} MiB ({:+.1} MiB per 10 000 callbacks)",
                (rss_after - rss_before) / fixed_acked.max(1) as f64 * 10_000.0
            ),
            "≤ 64 MiB".into(),
            rss_fixed <= 64.0,
        ),
        row("peak RSS, whole run (VmHWM)", format!("{peak_rss:.1} MiB")),
    ];
    // The limited NRC's rates, before the errors they caused.
    let at = rows
        .iter()
        .position(|r| r.figure.starts_with("errors caused at the limited NRC"))
        .unwrap_or(rows.len());
    rows.splice(at..at, limited_rows);
    if let Some(f) = &fill {
        rows.extend(f.rows(s.fixed_rate));
    }
    rows.push(row(
        "acknowledged outcomes missing at the NRC",
        format!("{missing} of {}", fmt_rate(acked.len() as f64)),
    ));
    println!("\nResults");
    print_table(&rows);
    let disturbed = DISTURBED.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if !disturbed.is_empty() {
        println!(
            "\nNOTE: other processes used this machine during the run; these figures are disturbed:"
        );
        for (phase, rest) in disturbed {
            println!("  {phase}: {rest:.2} cores used by the rest of the machine");
        }
    }
    if cli.keep {
        let kept = dir.keep();
        println!("\nkept: {}", kept.display());
    }
    if missing > 0 {
        bail!("{missing} acknowledged outcomes never reached the NRC");
    }
    if let Some(f) = fill.filter(|f| f.missing > 0) {
        bail!(
            "{} acknowledged outcomes of the fill never reached the NRC",
            f.missing
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The fill: whether throughput, CPU and RSS stay flat as the store grows.

/// The figures at one end of the fill.
struct FillEnd {
    /// Callbacks recorded in the store (each with its transaction's registration).
    stored: u64,
    /// Largest RSS at the fixed rate, MiB.
    rss_fixed: f64,
    max_rate: f64,
    /// CPU µs per acknowledged callback at the maximum rate, until relayed.
    cpu_us: f64,
    /// Largest RSS at the maximum rate, MiB.
    rss_max: f64,
}

struct FillReport {
    start: FillEnd,
    end: FillEnd,
    /// Callbacks per second while filling (their registrations included in the time).
    fill_rate: f64,
    fill_cpu_us: f64,
    store_bytes: u64,
    missing: usize,
    terminal: usize,
}

struct Fill<'a> {
    addr: SocketAddr,
    pids: [u32; 2],
    gen: Arc<Gen>,
    s: &'a Settings,
    store: &'a Path,
    rss: &'a RssWatch,
    registered_to: u64,
    /// Callbacks recorded so far (the run's earlier phases included).
    stored: u64,
    /// Maximum rate last seen: how many transactions a closed loop needs registered.
    estimate: f64,
    /// Terminal outcomes acknowledged during the fill, checked at the NRC at its end.
    terminal: Vec<u64>,
}

impl Fill<'_> {
    /// Both ends and the fill between them; the NRC stand-in keeps only transaction ids
    /// meanwhile (a million notifications would not fit).
    async fn run(&mut self, nrc: &NrcStandIn) -> anyhow::Result<FillReport> {
        println!(
            "\n[fill] filling the store to {} callbacks (at least 1 000 more), both ends measured:",
            fmt_rate(self.s.fill as f64)
        );
        nrc.set_light(true);
        let start = self.end("start of the fill").await?;
        // Always some fill, so that the two ends differ.
        let target = self.s.fill.max(self.stored + 1_000);
        let t0 = Instant::now();
        let cpu_at = cpu_secs(self.pids[0]);
        let acked_at = self.stored;
        while self.stored < target {
            let chunk = (target - self.stored).min(50_000);
            // 83 % of the requests are callbacks on new envelopes.
            let requests = (chunk as f64 / 0.83) as u64 + 1;
            self.load(Pace::Count(requests), Mix::Full, "filling")
                .await?;
            progress(&format!(
                "filled to {} callbacks, {:.0} s, RSS {:.1} MiB",
                self.stored,
                t0.elapsed().as_secs_f64(),
                self.rss.take_max_mib()
            ));
        }
        let filled = self.stored - acked_at;
        let fill_secs = t0.elapsed().as_secs_f64();
        let fill_cpu_us = (cpu_secs(self.pids[0]) - cpu_at) / filled.max(1) as f64 * 1e6;
        let fill_rate = filled as f64 / fill_secs;
        println!(
            "  filled: {filled} callbacks in {fill_secs:.0} s, {}/s (registrations included); \
             CPU {fill_cpu_us:.0} µs per callback",
            fmt_rate(fill_rate)
        );
        let end = self.end("end of the fill").await?;
        // The relay may still be catching up with the last loads (their wait is bounded).
        let deadline = Instant::now() + Duration::from_secs(120);
        let missing = loop {
            let ids: HashSet<String> = nrc.light_received();
            let missing = self
                .terminal
                .iter()
                .filter(|j| !ids.contains(&tx(**j)))
                .count();
            if missing == 0 || Instant::now() >= deadline {
                break missing;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        nrc.set_light(false);
        let store_bytes = dir_bytes(self.store);
        println!(
            "  store on disk: {:.2} GB; terminal outcomes of the fill missing at the NRC: {missing} of {}",
            store_bytes as f64 / 1e9,
            self.terminal.len()
        );
        Ok(FillReport {
            terminal: self.terminal.len(),
            start,
            end,
            fill_rate,
            fill_cpu_us,
            store_bytes,
            missing,
        })
    }

    /// The fixed rate (RSS), then the closed loop (maximum rate, CPU until relayed, RSS).
    async fn end(&mut self, name: &str) -> anyhow::Result<FillEnd> {
        let stored = self.stored;
        self.rss.take_max_mib();
        let fixed = self
            .load(
                Pace::Open(self.s.fixed_rate / CALLBACK_SHARE, self.s.duration),
                Mix::Full,
                name,
            )
            .await?;
        let rss_fixed = self.rss.take_max_mib();
        fixed.0.print(
            &format!("{name}, {} stored: fixed rate", fmt_rate(stored as f64)),
            &format!("; max RSS {rss_fixed:.1} MiB"),
        );
        let (max, cpu_us) = self
            .load(Pace::Closed(self.s.duration), Mix::Full, name)
            .await?;
        let rss_max = self.rss.take_max_mib();
        max.print(
            &format!("{name}: closed loop"),
            &format!("; max RSS {rss_max:.1} MiB; relayed: {cpu_us:.0} µs per callback"),
        );
        self.estimate = max.out.rate();
        Ok(FillEnd {
            stored,
            rss_fixed,
            max_rate: max.out.rate(),
            cpu_us,
            rss_max,
        })
    }

    /// One load with its transactions registered (before it, and after it those it went
    /// beyond), until what it queued is relayed; returns it with the server's CPU µs per
    /// acknowledged callback until then.
    async fn load(&mut self, pace: Pace, mix: Mix, what: &str) -> anyhow::Result<(Measured, f64)> {
        let need = match pace {
            Pace::Closed(d) => self.estimate * d.as_secs_f64() * 1.2,
            Pace::Open(rate, d) => rate * d.as_secs_f64(),
            Pace::Count(n) => n as f64,
        } as u64
            + 64;
        let c = self.s.connections;
        register(self.addr, self.registered_to, self.registered_to + need, c).await?;
        self.registered_to += need;
        wait_drained(self.addr, Duration::from_secs(120)).await;
        let m = Measured::run(self.addr, &self.pids, what, self.gen.clone(), pace, mix, c).await?;
        let used = self.gen.next_env.load(Relaxed);
        if used > self.registered_to {
            register(self.addr, self.registered_to, used, c).await?;
            self.registered_to = used;
        }
        wait_drained(self.addr, Duration::from_secs(120)).await;
        let cpu_us = m.relayed().us();
        let st = &m.out.stats;
        self.stored += st.acked_new;
        self.terminal
            .extend(st.terminal_acks.iter().map(|(j, _)| *j));
        // Duplicates are left out: one may repeat an outcome relayed before the fill.
        Ok((m, cpu_us))
    }
}

impl FillReport {
    fn rows(&self, fixed_rate: f64) -> Vec<Row> {
        let (a, b) = (&self.start, &self.end);
        let within = |x: f64, y: f64| (y - x).abs() <= 0.1 * x;
        vec![
            row(
                format!(
                    "fill: {} → {} callbacks stored",
                    fmt_rate(a.stored as f64),
                    fmt_rate(b.stored as f64)
                ),
                format!(
                    "{}/s, {:.0} µs CPU per callback; store {:.2} GB",
                    fmt_rate(self.fill_rate),
                    self.fill_cpu_us,
                    self.store_bytes as f64 / 1e9
                ),
            ),
            target(
                "fill: maximum rate at its start / end",
                format!("{}/s / {}/s", fmt_rate(a.max_rate), fmt_rate(b.max_rate)),
                "within 10 %".into(),
                within(a.max_rate, b.max_rate),
            ),
            row(
                "fill: CPU per acknowledged, relayed callback at max, start / end",
                format!("{:.0} / {:.0} µs", a.cpu_us, b.cpu_us),
            ),
            target(
                "fill: RSS at the maximum rate, start / end",
                format!("{:.1} / {:.1} MiB", a.rss_max, b.rss_max),
                "within 10 %".into(),
                within(a.rss_max, b.rss_max),
            ),
            target(
                format!(
                    "fill: RSS at {} callbacks/s, start / end",
                    fmt_rate(fixed_rate)
                ),
                format!("{:.1} / {:.1} MiB", a.rss_fixed, b.rss_fixed),
                "≤ 64 MiB at both".into(),
                a.rss_fixed <= 64.0 && b.rss_fixed <= 64.0,
            ),
            target(
                "fill: acknowledged outcomes missing at the NRC",
                format!("{} of {}", self.missing, fmt_rate(self.terminal as f64)),
                "0".into(),
                self.missing == 0,
            ),
        ]
    }
}

/// Bytes of the files under `dir` (the store's size on disk).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Polls the stand-in until every envelope in `wanted` was received (or `timeout`); returns
/// transaction id → first receipt.
async fn wait_received(
    nrc: &NrcStandIn,
    wanted: &[u64],
    timeout: Duration,
) -> HashMap<String, DateTime<Utc>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut map: HashMap<String, DateTime<Utc>> = HashMap::new();
        for r in nrc.received() {
            if let Some(t) = r.body["kenmerken"]["transaction_id"].as_str() {
                map.entry(t.to_string())
                    .and_modify(|at| *at = (*at).min(r.at))
                    .or_insert(r.at);
            }
        }
        let done = wanted.iter().all(|j| map.contains_key(&tx(*j)));
        if done || Instant::now() >= deadline {
            return map;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct RelayCfg {
    concurrency: usize,
    backoff_initial_ms: u64,
    backoff_max_secs: u64,
    probe_interval_max_secs: u64,
    timeout_secs: u64,
}

fn signrelay_config(
    port: u16,
    workers: usize,
    store: &Path,
    nrc_url: &str,
    log_level: &str,
    relay: &RelayCfg,
) -> String {
    let store = store.display().to_string().replace('\\', "\\\\");
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
workers = {workers}
# The load generator keeps its connections alive, as it does with the no-op endpoint.
keep_alive_secs = 75
public_url = "http://127.0.0.1:{port}"

[log]
format = "json"
level = "{log_level}"

[store]
path = "{store}"

[relay]
concurrency = {concurrency}
backoff_initial_ms = {backoff_initial_ms}
backoff_max_secs = {backoff_max_secs}
probe_interval_max_secs = {probe_interval_max_secs}
timeout_secs = {timeout_secs}

[nrc]
url = "{nrc_url}"
client_id = "{NRC_CLIENT}"
secret = "{NRC_SECRET}"

[admin.auth]
method = "api-key"
header = "X-Api-Key"
key = "{ADMIN_KEY}"

[gosign.rest.auth]
method = "basic"
username = "{GOSIGN_USER}"
password = "{GOSIGN_PASSWORD}"

[gosign.soap]
enabled = true

[gosign.soap.auth]
method = "basic"
username = "{GOSIGN_USER}"
password = "{GOSIGN_PASSWORD}"

[gosign.workability]
policy = "registry"
"#,
        concurrency = relay.concurrency,
        backoff_initial_ms = relay.backoff_initial_ms,
        backoff_max_secs = relay.backoff_max_secs,
        probe_interval_max_secs = relay.probe_interval_max_secs,
        timeout_secs = relay.timeout_secs,
    )
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn mem_total() -> String {
    proc_meminfo_kib("MemTotal:")
        .map(|k| format!("{:.1} GiB memory", k as f64 / 1024.0 / 1024.0))
        .unwrap_or_default()
}

fn proc_meminfo_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The device and filesystem type of the mount holding `path` (longest matching mount point).
fn filesystem_of(path: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown filesystem".into();
    };
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1])).then(|| (f[1].len(), f[0], f[2]))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, dev, fs)| format!("{fs} on {dev}"))
        .unwrap_or_else(|| "unknown filesystem".into())
}
