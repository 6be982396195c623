use crate::helpers::*;

// Pacing towards the NRC: the adaptive window against a stand-in of limited capacity, the
// circuit breaker across an outage, and an NRC that refuses signrelay's credentials for a
// minute. Speed is the benchmark's to measure; these assert what users rely on: the backlog
// drains near what the NRC can take without overloading it, deliveries resume promptly after
// an outage, and nothing is lost, doubled or dead-lettered for a fault of the connection.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use signrelay::testkit::nrc::{Capacity, NrcStandIn};

use crate::crash::Instance;

/// Registers each transaction and posts its completion, 16 at a time.
async fn record(app: &TestApp, txs: &[String]) {
    stream::iter(txs)
        .for_each_concurrent(16, |tx| async move {
            let r = app.register(tx, &format!("zaak-{tx}")).await;
            assert_eq!(r.status().as_u16(), 201, "register {tx}");
            let (status, answer) = app
                .notify(tx, work(tx, "SIGN_PROCESS_ENDED").to_string())
                .await;
            assert_eq!(status, 200, "{tx}: {answer}");
        })
        .await;
}

fn txs(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// How often each transaction reached the NRC.
fn per_tx(nrc: &NrcStandIn) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in nrc.received() {
        let tx = r.body["kenmerken"]["transaction_id"].as_str().unwrap();
        *m.entry(tx.to_string()).or_insert(0) += 1;
    }
    m
}

/// Notifications the NRC accepted per second in [from, to).
fn rate(nrc: &NrcStandIn, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let n = nrc
        .received()
        .iter()
        .filter(|r| r.at >= from && r.at < to)
        .count();
    n as f64 / (to - from).to_std().unwrap().as_secs_f64()
}

fn nrc_metric(m: &str, name: &str) -> f64 {
    metric(m, name, &[("party", "nrc")]).unwrap_or(0.0)
}

/// Measures the NRC's intake for `span` after `settle`.
async fn measure(app: &TestApp, settle: Duration, span: Duration) -> (f64, String) {
    tokio::time::sleep(settle).await;
    let from = Utc::now();
    tokio::time::sleep(span).await;
    let to = Utc::now();
    let m = app.metrics().await;
    let window = format!(
        "window {}, rtt {:.0} ms",
        nrc_metric(&m, "signrelay_party_window"),
        nrc_metric(&m, "signrelay_party_rtt_seconds") * 1000.0
    );
    (rate(&app.nrc, from, to), window)
}

/// A stand-in that serves 3 notifications at once, 40 ms each (75/s), with 64 more queued and
/// 503 beyond: the drain settles near 75/s. Mid-run it serves 10 at once (250/s), nothing
/// changed at signrelay: the drain follows. Fewer than 1 % of the requests meet a 503 or a
/// timeout, although signrelay may have up to 128 in flight; every outcome arrives once.
#[tokio::test]
async fn the_drain_settles_near_the_nrc_capacity_as_it_changes() {
    const N: usize = 3200;
    let app = spawn_app_with(|c| c.relay.concurrency = 128).await;
    let latency = Duration::from_millis(40);
    let small = Capacity {
        slots: 3,
        latency,
        queue: 64,
    };
    let large = Capacity { slots: 10, ..small };
    app.nrc.set_capacity(Some(small));
    let all = txs("PACE", N);
    record(&app, &all).await;
    assert!(
        eventually(WAIT, || (!app.nrc.received().is_empty()).then_some(()))
            .await
            .is_some(),
        "nothing delivered"
    );

    let (at_small, w_small) = measure(&app, SETTLE, SPAN).await;
    app.nrc.set_capacity(Some(large));
    let (at_large, w_large) = measure(&app, SETTLE, SPAN).await;
    let left = N - app.nrc.received().len();
    eprintln!(
        "pacing: {at_small:.0}/s of {:.0}/s ({w_small}); then {at_large:.0}/s of {:.0}/s \
         ({w_large}); {left} left",
        small.rate(),
        large.rate()
    );
    assert!(left > 0, "the backlog ran out while measuring");
    assert!(
        at_small >= 0.8 * small.rate(),
        "{at_small:.0}/s at a capacity of {:.0}/s ({w_small})",
        small.rate()
    );
    assert!(
        at_large >= 0.8 * large.rate(),
        "{at_large:.0}/s at a capacity of {:.0}/s ({w_large})",
        large.rate()
    );

    assert_eq!(app.nrc.wait_for(N, Duration::from_secs(60)).await.len(), N);
    tokio::time::sleep(QUIET).await;
    let once = per_tx(&app.nrc);
    assert_eq!(once.len(), N, "every outcome delivered");
    assert!(once.values().all(|n| *n == 1), "delivered twice");
    let stats = app.nrc.capacity_stats();
    let m = app.metrics().await;
    let retries = metric(
        &m,
        "signrelay_relay_deliveries_total",
        &[("result", "retry")],
    )
    .unwrap_or(0.0) as u64;
    let errors = stats.overflowed + stats.abandoned + retries;
    let requests = app.nrc.attempts() as u64;
    eprintln!("pacing: {requests} requests, {stats:?}, {retries} retries");
    assert!(
        errors * 100 <= requests,
        "{errors} of {requests} requests met a 503 or a timeout: {stats:?}, {retries} retries"
    );
}

/// Time for the window to find the capacity, and the span it is measured over.
const SETTLE: Duration = Duration::from_secs(2);
const SPAN: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(400);

/// The NRC goes down (its port closed) for 30 s in the middle of a drain, with the default
/// probe bound: deliveries resume within 10 s of its return; the outage opened the circuit
/// once; callbacks keep being acknowledged meanwhile; nothing is lost, and nothing arrives
/// twice but what the counted retries allow.
#[tokio::test]
async fn after_an_outage_mid_drain_deliveries_resume_within_seconds() {
    const N: usize = 1200;
    const DURING: usize = 100;
    let app = spawn_app_with(|c| {
        c.relay.probe_interval_max_secs = signrelay::config::Config::default()
            .relay
            .probe_interval_max_secs
    })
    .await;
    // 200/s: the drain lasts beyond the outage.
    app.nrc.set_capacity(Some(Capacity {
        slots: 4,
        latency: Duration::from_millis(20),
        queue: 64,
    }));
    let before = txs("OUT", N);
    record(&app, &before).await;
    assert!(
        eventually(WAIT, || (app.nrc.received().len() >= 200).then_some(()))
            .await
            .is_some(),
        "the drain did not start"
    );

    app.nrc.go_down().await;
    let down_at = Instant::now();
    let delivered_before = app.nrc.received().len();
    assert!(delivered_before < N, "drained before the outage");
    // Callbacks are acknowledged while the NRC is down.
    let during = txs("DURING", DURING);
    record(&app, &during).await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down_at.elapsed())).await;
    let m = app.metrics().await;
    assert_eq!(nrc_metric(&m, "signrelay_party_circuit_open"), 1.0, "{m}");
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "an outage is not signrelay's fault"
    );

    app.nrc.come_up().await.unwrap();
    let up_at = Utc::now();
    let resumed = eventually(Duration::from_secs(20), || {
        app.nrc
            .received()
            .iter()
            .map(|r| r.at)
            .filter(|at| *at >= up_at)
            .min()
    })
    .await
    .expect("no delivery after the NRC came back");
    let after = (resumed - up_at).to_std().unwrap();
    eprintln!("outage: first delivery {after:?} after the NRC came back");
    assert!(after <= Duration::from_secs(10), "resumed {after:?} after");

    let total = N + DURING;
    let got = app.nrc.wait_for(total, Duration::from_secs(60)).await.len();
    assert!(got >= total, "{got} of {total} delivered");
    tokio::time::sleep(QUIET).await;
    let once = per_tx(&app.nrc);
    let missing: Vec<&String> = before
        .iter()
        .chain(&during)
        .filter(|t| !once.contains_key(*t))
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let m = app.metrics().await;
    let retries = metric(
        &m,
        "signrelay_relay_deliveries_total",
        &[("result", "retry")],
    )
    .unwrap_or(0.0) as usize;
    let twice: usize = once.values().map(|n| n - 1).sum();
    assert!(twice <= retries, "{twice} duplicates, {retries} retries");
    assert_eq!(
        nrc_metric(&m, "signrelay_party_circuit_opened_total"),
        1.0,
        "the outage counts once: {m}"
    );
    assert_eq!(nrc_metric(&m, "signrelay_party_circuit_open"), 0.0);
    let (_, dl) = app.admin_get("/api/v1/dead-letters").await;
    assert_eq!(dl["dead_letters"].as_array().unwrap().len(), 0, "{dl}");
}

/// The NRC refuses signrelay's credentials for a minute (its secret rotated, as Open
/// Notificaties answers: 403): nothing is dead-lettered, `/readyz` says why, the log says it
/// once, the NRC is probed at a bounded interval; once it accepts, everything is delivered.
#[tokio::test]
async fn credentials_refused_for_a_minute_hold_the_queue() {
    const N: usize = 200;
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let serve = Instance::start_edited(dir.path(), &store, &nrc.url, "refused", |t| {
        t["relay"]["concurrency"] = 32.into();
    })
    .await;
    // The kanaal is checked first; then the NRC's secret is rotated under signrelay.
    wait_ready(&serve, "ready").await;
    nrc.set_secret("rotated-at-the-nrc");
    let all = txs("AUTH", N);
    stream::iter(&all)
        .for_each_concurrent(16, |tx| async {
            assert_eq!(serve.register(tx).await.unwrap(), 201);
            assert_eq!(serve.notify(tx).await.unwrap().0, 200);
        })
        .await;

    let refused_at = Instant::now();
    let ready = wait_ready(&serve, "not_ready").await;
    let why = ready["reasons"]["parties_accept"]["nrc"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason: {ready}"));
    assert!(why.contains("403"), "{why}");
    assert!(
        why.contains("invalid-jwt-signature"),
        "the NRC's answer: {why}"
    );
    assert_eq!(ready["checks"]["parties_accept"], false);
    let attempts_then = nrc.attempts();

    // A minute of refusals, checked every few seconds.
    while refused_at.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let ready = serve.readyz().await;
        assert_eq!(ready["status"], "not_ready", "{ready}");
        assert_eq!(ready["backlog"]["dead_letters"], 0, "{ready}");
    }
    assert!(nrc.received().is_empty());
    // Probes, one at a time, at most a second apart (the test's bound), not a hammering.
    let probes = nrc.attempts() - attempts_then;
    assert!(
        (20..=130).contains(&probes),
        "{probes} requests in the minute of refusals"
    );

    nrc.set_secret(NRC_SECRET);
    let got = nrc.wait_for(N, Duration::from_secs(30)).await;
    assert_eq!(got.len(), N, "delivered once the NRC accepts");
    let ready = serve.wait_drained(Duration::from_secs(10)).await;
    assert_eq!(ready["backlog"]["dead_letters"], 0, "{ready}");
    let ready = wait_ready(&serve, "ready").await;
    assert_eq!(ready["checks"]["parties_accept"], true);
    tokio::time::sleep(QUIET).await;
    let once = per_tx(&nrc);
    assert_eq!(once.len(), N);
    assert!(once.values().all(|n| *n == 1), "delivered twice");

    // The log says it once per change, with the NRC's answer and without secrets.
    let lines = serve.log_lines();
    let said =
        |msg: &str| -> Vec<&Value> { lines.iter().filter(|l| l["message"] == msg).collect() };
    let refusals = said("the party refuses signrelay; its jobs wait, probing until it accepts");
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    let answer = refusals[0]["answer"].as_str().unwrap();
    assert!(answer.contains("invalid-jwt-signature"), "{answer}");
    assert_eq!(said("party answers again; resuming").len(), 1);
    let text = std::fs::read_to_string(dir.path().join("refused.log")).unwrap();
    assert!(!text.contains(NRC_SECRET), "a secret in the log");
    assert!(!text.contains("Bearer "), "a token in the log");
}

/// Polls `/readyz` until its status is `status`.
async fn wait_ready(serve: &Instance, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let ready = serve.readyz().await;
        if ready["status"] == status {
            return ready;
        }
        assert!(Instant::now() < deadline, "readyz stayed: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
