use crate::helpers::*;

// The kanaal: signrelay's page describing it (the default documentatieLink, which Open
// Notificaties fetches when the kanaal is created), a refused kanaal saying why, and a kanaal
// the NRC lost made again instead of dead-lettering what meets its absence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use serde_json::Value;
use signrelay::testkit::nrc::NrcStandIn;

use crate::crash::Instance;

const WAIT: Duration = Duration::from_secs(10);
const KANAAL: &str = "documentacties";

/// Spawns the app on a port known before start, so that the NRC stand-in can fetch the
/// kanaal's page from `server.public_url`.
async fn spawn_reachable(
    nrc: NrcStandIn,
    adjust: impl FnOnce(&mut signrelay::config::Config),
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&dir.path().join("store"), &nrc.url);
    let port = free_port();
    cfg.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.server.public_url = format!("http://127.0.0.1:{port}");
    adjust(&mut cfg);
    let mut app = spawn_on(cfg, nrc).await;
    app.dir = Some(dir);
    app
}

async fn deliver(app: &TestApp, txs: &[String]) {
    for tx in txs {
        let r = app.register(tx, &format!("zaak-{tx}")).await;
        assert_eq!(r.status().as_u16(), 201);
        let (s, v) = app
            .notify(tx, work(tx, "SIGN_PROCESS_ENDED").to_string())
            .await;
        assert_eq!(s, 200, "{v}");
    }
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn signrelay_serves_the_page_describing_its_kanaal() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url(&format!("/kanalen/{KANAAL}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    let page = r.text().await.unwrap();
    for what in [
        "<code>documentacties</code>",
        "OndertekenenVoltooid",
        "OndertekenenAfgebroken",
        "<code>zaak</code>",
        "<code>transaction_id</code>",
        "<code>reden</code>",
        "<code>transactionId</code>",
    ] {
        assert!(page.contains(what), "no {what} in:\n{page}");
    }
    let r = app
        .client
        .get(app.url("/kanalen/zaken"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

/// The kanaal's documentatieLink answers 404, so the NRC refuses the kanaal (400 with a
/// problem body, as Open Notificaties does): the NRC's answer is in `/readyz`, in the log once
/// (not at every retry), and in the metrics; retries back off. Once the link answers, the
/// kanaal is made and what waited is delivered.
#[tokio::test]
async fn a_refused_kanaal_says_why_and_recovers_once_fixed() {
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, false)
        .await
        .unwrap();
    let up = Arc::new(AtomicBool::new(false));
    let docs = up.clone();
    let (docs_url, _docs) = stand_in(move |c: &mut web::ServiceConfig| {
        let up = docs.clone();
        c.route(
            "/kanaal",
            web::get().to(move || {
                let up = up.load(Ordering::SeqCst);
                async move {
                    if up {
                        HttpResponse::Ok().body("documentacties")
                    } else {
                        HttpResponse::NotFound().finish()
                    }
                }
            }),
        );
    });
    let dir = tempfile::tempdir().unwrap();
    let link = format!("{docs_url}/kanaal");
    let serve = Instance::start_edited(
        dir.path(),
        &dir.path().join("store"),
        &nrc.url,
        "kanaal",
        |t| {
            let nrc = t["nrc"].as_table_mut().unwrap();
            nrc.insert("kanaal_documentatie_link".into(), link.clone().into());
        },
    )
    .await;
    assert_eq!(serve.register("KANAAL-1").await.unwrap(), 201);
    assert_eq!(serve.notify("KANAAL-1").await.unwrap().0, 200);

    let deadline = Instant::now() + WAIT;
    let ready = loop {
        let ready = serve.readyz().await;
        let why = ready["reasons"]["kanaal_ready"].as_str().unwrap_or("");
        if why.contains("bad-url") {
            break ready;
        }
        assert!(Instant::now() < deadline, "no reason in readyz: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ready["status"], "not_ready");
    assert_eq!(ready["checks"]["kanaal_ready"], false);
    let why = ready["reasons"]["kanaal_ready"].as_str().unwrap();
    assert!(why.contains("400"), "{why}");
    assert!(why.contains("documentatieLink"), "{why}");
    // Retries go on, backing off up to the probe bound (1 s in the tests).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = reqwest::get(serve.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&m, "signrelay_nrc_kanaal_ready", &[]), Some(0.0));
    let failures = metric(
        &m,
        "signrelay_nrc_kanaal_failures_total",
        &[("status", "400")],
    )
    .unwrap_or(0.0);
    assert!(
        (2.0..=15.0).contains(&failures),
        "{failures} failed creations in ~3 s"
    );
    let lines = serve.log_lines();
    let said: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "kanaal bootstrap failed; retrying")
        .collect();
    assert_eq!(said.len(), 1, "the same answer logged again: {said:#?}");
    let answer = said[0]["answer"].as_str().unwrap();
    assert!(
        answer.contains("bad-url") && answer.contains("documentatieLink"),
        "{answer}"
    );
    assert!(nrc.received().is_empty());

    // Fixed: the link answers. The kanaal is made and the waiting outcome delivered.
    up.store(true, Ordering::SeqCst);
    assert_eq!(nrc.wait_for(1, WAIT).await.len(), 1);
    assert_eq!(nrc.kanalen(), vec![KANAAL.to_string()]);
    let ready = serve.wait_drained(WAIT).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["reasons"], serde_json::json!({}));
}

/// The NRC loses the kanaal (a database restored without it): what meets its absence is not
/// dead-lettered; the kanaal is made again (the NRC fetching signrelay's own page) and every
/// outcome is delivered.
#[tokio::test]
async fn a_kanaal_the_nrc_lost_is_made_again() {
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    let app = spawn_reachable(nrc, |_| {}).await;
    deliver(&app, &["LOST-0".to_string()]).await;
    assert_eq!(app.nrc.wait_for(1, WAIT).await.len(), 1);
    assert_eq!(app.nrc.kanaal_creations(), 0);

    app.nrc.remove_kanaal(KANAAL);
    let txs: Vec<String> = (1..=20).map(|i| format!("LOST-{i}")).collect();
    deliver(&app, &txs).await;
    assert_eq!(app.nrc.wait_for(21, WAIT).await.len(), 21);
    assert_eq!(app.nrc.kanaal_creations(), 1);
    let refused = app.nrc.refused();
    assert!(
        refused
            .iter()
            .all(|(s, why)| *s == 400 && why.contains("bestaat niet")),
        "{refused:?}"
    );
    let (_, dl) = app.admin_get("/api/v1/dead-letters").await;
    assert_eq!(dl["dead_letters"].as_array().unwrap().len(), 0, "{dl}");
    let m = app.metrics().await;
    assert_eq!(metric(&m, "signrelay_nrc_kanaal_ready", &[]), Some(1.0));
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 200, "{ready}");
}

/// With `nrc.ensure_kanaal` off signrelay cannot make the kanaal again: what meets its
/// absence waits (not dead-lettered) and `/readyz` names the NRC's answer, until an
/// administrator makes the kanaal.
#[tokio::test]
async fn without_ensure_kanaal_a_lost_kanaal_holds_the_queue() {
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    nrc.remove_kanaal(KANAAL);
    let app = spawn_reachable(nrc, |c| c.nrc.ensure_kanaal = false).await;
    let txs: Vec<String> = (1..=5).map(|i| format!("HELD-{i}")).collect();
    deliver(&app, &txs).await;
    let deadline = Instant::now() + WAIT;
    let ready = loop {
        let (status, ready) = readyz(&app).await;
        if status == 503 {
            break ready;
        }
        assert!(Instant::now() < deadline, "{ready}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let why = ready["reasons"]["parties_accept"]["nrc"].as_str().unwrap();
    assert!(
        why.contains("kanaal") && why.contains("message_kanaal"),
        "{why}"
    );
    // Intake stays ready (what a load balancer routes by): callbacks are still taken.
    let r = app
        .client
        .get(app.url("/readyz/intake"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let later = vec!["HELD-6".to_string()];
    deliver(&app, &later).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, dl) = app.admin_get("/api/v1/dead-letters").await;
    assert_eq!(dl["dead_letters"].as_array().unwrap().len(), 0, "{dl}");

    app.nrc.add_kanaal(KANAAL, &["transaction_id", "reden"]);
    assert_eq!(app.nrc.wait_for(6, WAIT).await.len(), 6);
    assert_eq!(app.nrc.kanaal_creations(), 0);
    let deadline = Instant::now() + WAIT;
    while readyz(&app).await.0 != 200 {
        assert!(Instant::now() < deadline, "still not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
