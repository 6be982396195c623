//! Logs and metrics. Logs are JSON in production and human-readable in a terminal; they carry
//! ids and outcomes, never payloads, reasons typed by people, or secrets.

use std::io::IsTerminal;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tracing_subscriber::EnvFilter;

use crate::jobs::pace::PaceGauges;
use crate::jobs::Party;
use crate::store::writer::CommitObserver;
use crate::store::Depths;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `auto` (pretty in a terminal, JSON otherwise), `json` or `pretty`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `signrelay=debug,info`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".into(),
        }
    }
}

/// Installs the global subscriber once; later calls (tests) are ignored.
pub fn init_logging(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_env("SIGNRELAY_LOG")
        .unwrap_or_else(|_| EnvFilter::new(cfg.level.clone()));
    let json = match cfg.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

/// What one request did, logged once on its `request done` line: one line per request keeps
/// the log (written synchronously, on the store's disk) from costing more than the work.
#[derive(Debug, Default)]
pub struct RequestNote {
    /// `recorded`, `duplicate`, `quarantined`, `registered`, `withdrawn`, `workability`,
    /// `exit` (a signer's browser back at an exit URL).
    pub result: Option<&'static str>,
    pub event_id: Option<uuid::Uuid>,
    pub vendor: Option<&'static str>,
    pub transaction_id: Option<String>,
    pub outcome: Option<&'static str>,
    pub relay: Option<&'static str>,
    pub released: Option<usize>,
    /// A decision a query returned (e.g. `workable`).
    pub verdict: Option<&'static str>,
}

tokio::task_local! {
    static REQUEST_NOTE: std::cell::RefCell<RequestNote>;
}

/// Adds to the current request's log line; outside a request (relay, CLI) it does nothing.
pub fn note(f: impl FnOnce(&mut RequestNote)) {
    let _ = REQUEST_NOTE.try_with(|n| f(&mut n.borrow_mut()));
}

/// Runs one request's handling with a fresh [`RequestNote`] and returns what was noted.
pub async fn with_request_note<F: std::future::Future>(fut: F) -> (F::Output, RequestNote) {
    REQUEST_NOTE
        .scope(std::cell::RefCell::new(RequestNote::default()), async {
            let out = fut.await;
            (out, REQUEST_NOTE.with(|n| n.take()))
        })
        .await
}

pub struct Metrics {
    registry: Registry,
    pub callbacks: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub delivery_seconds: HistogramVec,
    pub commits: IntCounterVec,
    pub commit_seconds: Histogram,
    pub commit_jobs: Histogram,
    pub outbox: IntGauge,
    pub parked: IntGauge,
    pub dead_letters: IntGauge,
    pub quarantine: IntGauge,
    pub kanaal_ready: IntGauge,
    pub kanaal_failures: IntCounterVec,
    pub jobs: IntCounterVec,
    pub party_window: IntGaugeVec,
    pub party_in_flight: IntGaugeVec,
    pub party_rtt: GaugeVec,
    pub party_circuit_open: IntGaugeVec,
    pub party_circuit_opened: IntCounterVec,
    pub auth_successes: IntCounterVec,
    pub jwks_fetches: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("signrelay".into()), None).expect("registry");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("metric");
            registry.register(Box::new(h.clone())).expect("register");
            h
        };
        let plain_histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("metric");
            registry.register(Box::new(h.clone())).expect("register");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("metric");
            registry.register(Box::new(g.clone())).expect("register");
            g
        };
        let per_party = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["party"]).expect("metric");
            registry.register(Box::new(g.clone())).expect("register");
            g
        };
        let secs = vec![
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        Metrics {
            callbacks: counter(
                "callbacks_total",
                "Vendor callbacks by vendor, surface and result \
                 (recorded, duplicate, discarded, retry_later, unauthorized, too_large)",
                &["vendor", "surface", "result"],
            ),
            auth_failures: counter(
                "auth_failures_total",
                "Refused callers by surface and reason",
                &["surface", "reason"],
            ),
            deliveries: counter(
                "relay_deliveries_total",
                "NRC delivery attempts by result (delivered, retry, dead_letter, parked)",
                &["result"],
            ),
            delivery_seconds: histogram(
                "relay_delivery_seconds",
                "NRC request latency",
                &["result"],
                secs.clone(),
            ),
            commits: counter(
                "store_commits_total",
                "Group commits by result",
                &["result"],
            ),
            commit_seconds: plain_histogram(
                "store_commit_seconds",
                "Time from a group's first job to its fdatasync",
                secs,
            ),
            commit_jobs: plain_histogram(
                "store_commit_jobs",
                "Writes sharing one flush",
                vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ],
            ),
            outbox: gauge("outbox_depth", "Outcomes waiting for delivery to the NRC"),
            parked: gauge(
                "parked_events",
                "Outcomes waiting for their transaction's registration",
            ),
            dead_letters: gauge("dead_letters", "Outcomes the relay gave up on"),
            quarantine: gauge(
                "quarantined_callbacks",
                "Callbacks that could not be processed",
            ),
            kanaal_ready: gauge(
                "nrc_kanaal_ready",
                "1 while the kanaal is known to exist; 0 before, and while it is being made again",
            ),
            kanaal_failures: counter(
                "nrc_kanaal_failures_total",
                "Failed kanaal checks and creations by the NRC's HTTP status (or unreachable)",
                &["status"],
            ),
            party_window: per_party(
                "party_window",
                "Requests the adaptive window allows in flight towards the party",
            ),
            party_in_flight: per_party("party_in_flight", "Requests in flight towards the party"),
            party_rtt: {
                let g = GaugeVec::new(
                    Opts::new(
                        "party_rtt_seconds",
                        "The party's round-trip time as the window's baseline (moving average)",
                    ),
                    &["party"],
                )
                .expect("metric");
                registry.register(Box::new(g.clone())).expect("register");
                g
            },
            party_circuit_open: per_party(
                "party_circuit_open",
                "1 while the party's circuit is open (down or refusing signrelay): only probes go",
            ),
            party_circuit_opened: counter(
                "party_circuit_opened_total",
                "Times the party's circuit opened (an outage or a refusal counts once)",
                &["party"],
            ),
            auth_successes: counter(
                "auth_successes_total",
                "Authenticated callers by surface and method",
                &["surface", "method"],
            ),
            jwks_fetches: counter(
                "jwks_fetches_total",
                "Identity provider key fetches by issuer and result (ok, error)",
                &["issuer", "result"],
            ),
            jobs: counter(
                "jobs_total",
                "Job attempts by remote party and result (done, retry, dead_letter, parked, again)",
                &["party", "result"],
            ),
            registry,
        }
    }

    /// A counter of a part that owns its own figures (a vendor), in the same exposition.
    /// A party's lane figures (window, requests in flight, RTT, circuit), labelled by party.
    pub fn pace_gauges(&self, party: Party) -> PaceGauges {
        let p = [party.as_str()];
        PaceGauges {
            window: self.party_window.with_label_values(&p),
            in_flight: self.party_in_flight.with_label_values(&p),
            rtt: self.party_rtt.with_label_values(&p),
            circuit_open: self.party_circuit_open.with_label_values(&p),
            circuit_opened: self.party_circuit_opened.with_label_values(&p),
        }
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
        self.registry
            .register(Box::new(c.clone()))
            .expect("each metric is registered once");
        c
    }

    pub fn callback(&self, vendor: &str, surface: &str, result: &str) {
        self.callbacks
            .with_label_values(&[vendor, surface, result])
            .inc();
    }

    /// The Prometheus text exposition, with the store's depths as of now.
    pub fn render(&self, depths: Depths) -> String {
        self.outbox.set(depths.outbox);
        self.parked.set(depths.parked);
        self.dead_letters.set(depths.dead_letters);
        self.quarantine.set(depths.quarantine);
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).expect("utf-8 metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl CommitObserver for Metrics {
    fn committed(&self, jobs: usize, seconds: f64, ok: bool) {
        self.commits
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        if ok {
            self.commit_seconds.observe(seconds);
            self.commit_jobs.observe(jobs as f64);
        }
    }
}
