use crate::helpers::*;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use signrelay::testkit::nrc::{Behaviour, NrcStandIn};

/// The transaction id of the seed's NRC example.
const SEED_TX: &str = "2opbDxqSB8BX3137ulqdw2q9_Mw=";

const WAIT: Duration = Duration::from_secs(5);
/// How long a test looks for a notification that must not come.
const QUIET: Duration = Duration::from_millis(400);

/// A GoSign notify that must be accepted as recorded (or a duplicate).
async fn notify_ok(app: &TestApp, envelope: &str, body: &Value) {
    let (status, answer) = app.notify(envelope, body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"outcome": "succeeded"}));
}

async fn register_ok(app: &TestApp, tx: &str, zaak: &str) {
    let r = app.register(tx, zaak).await;
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
}

fn rejected(envelope: &str, note: &str) -> Value {
    let mut v = work(envelope, "ENVELOPE_REJECTED");
    v["note"] = json!(note);
    v
}

/// The single event of `tx` once its relay state is `state`.
async fn event_in_state(app: &TestApp, tx: &str, state: &str) -> Value {
    let ev = app
        .wait_events(tx, WAIT, |ev| {
            ev.len() == 1 && ev[0]["relay"]["state"] == state
        })
        .await;
    ev[0].clone()
}

/// Polls `/metrics` until `pred` holds (or the timeout passes); returns the last text.
async fn wait_metrics(app: &TestApp, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = app.metrics().await;
        if pred(&m) || tokio::time::Instant::now() >= deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kenmerken(r: &Value) -> Value {
    r["kenmerken"].clone()
}

#[tokio::test]
async fn completed_signing_is_notified_with_the_pattern_fields_and_a_zgw_jwt() {
    let app = spawn_app().await;
    let started = Utc::now();
    register_ok(&app, SEED_TX, "zaak-1").await;
    notify_ok(&app, SEED_TX, &work(SEED_TX, "SIGN_PROCESS_ENDED")).await;

    let got = app.nrc.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "one notification expected");
    let n = &got[0];
    let zaak = zaak_url("zaak-1");
    let aanmaakdatum = n.body["aanmaakdatum"].as_str().expect("aanmaakdatum");
    assert_eq!(
        n.body,
        json!({
            "kanaal": "documentacties",
            "hoofdObject": zaak,
            "resource": "zaak",
            "resourceUrl": zaak,
            "actie": "OndertekenenVoltooid",
            "aanmaakdatum": aanmaakdatum,
            "kenmerken": {"transaction_id": SEED_TX},
        })
    );
    let at: DateTime<Utc> = DateTime::parse_from_rfc3339(aanmaakdatum)
        .expect("RFC 3339")
        .into();
    assert!(at <= n.at, "aanmaakdatum {at} after arrival {}", n.at);
    assert!(
        at >= started - chrono::Duration::seconds(5),
        "aanmaakdatum {at} is stale"
    );

    let c = &n.claims;
    assert_eq!(c.iss, NRC_CLIENT);
    assert_eq!(c.client_id, NRC_CLIENT);
    assert_eq!(c.user_id, "signrelay");
    assert!(!c.user_representation.is_empty());
    assert!(c.iat <= n.at.timestamp(), "iat in the future");
    assert!(c.iat >= started.timestamp() - 5, "iat {} is stale", c.iat);
    assert!(app.nrc.refused().is_empty(), "{:?}", app.nrc.refused());

    let e = event_in_state(&app, SEED_TX, "delivered").await;
    assert_eq!(e["relay"]["attempts"], 1);
    assert_eq!(e["outcome"], json!({"kind": "completed"}));
    assert_eq!(app.nrc.attempts(), 1);
}

#[tokio::test]
async fn aborted_signing_is_notified_with_a_reden() {
    let app = spawn_app().await;
    register_ok(&app, "env-rej", "zaak-rej").await;
    register_ok(&app, "env-cancel", "zaak-cancel").await;
    notify_ok(&app, "env-rej", &rejected("env-rej", "te duur")).await;
    notify_ok(&app, "env-cancel", &work("env-cancel", "PROCESS_CANCELLED")).await;

    let got = app.nrc.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    let by_tx = |tx: &str| {
        got.iter()
            .find(|r| r.body["kenmerken"]["transaction_id"] == tx)
            .unwrap_or_else(|| panic!("no notification for {tx}"))
            .body
            .clone()
    };
    let rej = by_tx("env-rej");
    assert_eq!(rej["actie"], "OndertekenenAfgebroken");
    assert_eq!(rej["resourceUrl"], zaak_url("zaak-rej"));
    assert_eq!(rej["hoofdObject"], zaak_url("zaak-rej"));
    assert_eq!(
        kenmerken(&rej),
        json!({"transaction_id": "env-rej", "reden": "geweigerd door ondertekenaar: te duur"})
    );
    let cancel = by_tx("env-cancel");
    assert_eq!(cancel["actie"], "OndertekenenAfgebroken");
    assert_eq!(cancel["resourceUrl"], zaak_url("zaak-cancel"));
    assert_eq!(
        kenmerken(&cancel),
        json!({"transaction_id": "env-cancel", "reden": "ingetrokken"})
    );
}

#[tokio::test]
async fn nrc_down_then_up_delivers_exactly_once() {
    let app = spawn_app().await;
    app.nrc.set_behaviour(Behaviour::Fail {
        status: 503,
        retry_after: None,
    });
    register_ok(&app, "env-503", "zaak-503").await;
    notify_ok(&app, "env-503", &work("env-503", "SIGN_PROCESS_ENDED")).await;

    let retried = eventually(WAIT, || (app.nrc.attempts() >= 3).then_some(())).await;
    assert!(
        retried.is_some(),
        "only {} attempts while the NRC was down",
        app.nrc.attempts()
    );
    assert!(app.nrc.received().is_empty());
    let e = event_in_state(&app, "env-503", "pending").await;
    assert_eq!(e["relay"], json!({"state": "pending"}));
    assert!(
        app.admin_get("/api/v1/dead-letters").await.1["dead_letters"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    app.nrc.set_behaviour(Behaviour::Accept);
    assert_eq!(app.nrc.wait_for(1, WAIT).await.len(), 1);
    assert_eq!(app.nrc.wait_for(2, QUIET).await.len(), 1, "delivered twice");
    let e = event_in_state(&app, "env-503", "delivered").await;
    // Every attempt reached the stand-in: the recorded count matches what it saw.
    assert_eq!(e["relay"]["attempts"], app.nrc.attempts() as u64);
    assert!(app.nrc.attempts() >= 4);
}

#[tokio::test]
async fn retry_after_of_a_429_pauses_the_relay() {
    let app = spawn_app().await;
    app.nrc.set_behaviour(Behaviour::Fail {
        status: 429,
        retry_after: Some(1),
    });
    register_ok(&app, "env-429", "zaak-429").await;
    notify_ok(&app, "env-429", &work("env-429", "SIGN_PROCESS_ENDED")).await;

    assert!(eventually(WAIT, || (app.nrc.attempts() >= 1).then_some(()))
        .await
        .is_some());
    let first = Instant::now();
    // With the 20 ms test backoff, an ignored Retry-After would mean several attempts here.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.nrc.attempts(), 1, "retried within Retry-After");
    assert!(eventually(WAIT, || (app.nrc.attempts() >= 2).then_some(()))
        .await
        .is_some());
    let gap = first.elapsed();
    assert!(
        gap >= Duration::from_millis(700),
        "second attempt after {gap:?}"
    );

    app.nrc.set_behaviour(Behaviour::Accept);
    let got = app.nrc.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["kenmerken"]["transaction_id"], "env-429");
    assert_eq!(app.nrc.wait_for(2, QUIET).await.len(), 1);
}

#[tokio::test]
async fn hanging_nrc_times_out_and_is_retried() {
    let app = spawn_app_with(|c| c.relay.timeout_secs = 1).await;
    app.nrc.set_behaviour(Behaviour::Hang);
    register_ok(&app, "env-hang", "zaak-hang").await;
    notify_ok(&app, "env-hang", &work("env-hang", "SIGN_PROCESS_ENDED")).await;

    let retried = eventually(WAIT, || (app.nrc.attempts() >= 2).then_some(())).await;
    assert!(retried.is_some(), "no retry after a timeout");
    assert!(app.nrc.received().is_empty());
    let e = event_in_state(&app, "env-hang", "pending").await;
    assert_eq!(e["relay"], json!({"state": "pending"}));

    app.nrc.set_behaviour(Behaviour::Accept);
    let got = app.nrc.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["kenmerken"]["transaction_id"], "env-hang");
    let e = event_in_state(&app, "env-hang", "delivered").await;
    assert!(e["relay"]["attempts"].as_u64().unwrap() >= 3, "{e}");
    assert_eq!(app.nrc.received().len(), 1);
}

#[tokio::test]
async fn refused_notification_is_dead_lettered_and_can_be_replayed() {
    let app = spawn_app().await;
    app.nrc.poison("env-bad");
    register_ok(&app, "env-bad", "zaak-bad").await;
    register_ok(&app, "env-good", "zaak-good").await;
    notify_ok(&app, "env-bad", &work("env-bad", "SIGN_PROCESS_ENDED")).await;
    notify_ok(&app, "env-good", &work("env-good", "SIGN_PROCESS_ENDED")).await;

    let bad = event_in_state(&app, "env-bad", "dead_lettered").await;
    let bad_id = bad["id"].as_str().unwrap().to_string();
    assert_eq!(bad["relay"]["reason"], "NRC weigerde de notificatie (400)");
    let got = app.nrc.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["kenmerken"]["transaction_id"], "env-good");
    event_in_state(&app, "env-good", "delivered").await;
    // A 400 is final: no retries.
    assert_eq!(app.nrc.attempts(), 2);
    let refused = app.nrc.refused();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, 400);

    let (status, dl) = app.admin_get("/api/v1/dead-letters").await;
    assert_eq!(status, 200);
    let list = dl["dead_letters"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{dl}");
    let d = &list[0];
    assert_eq!(d["event_id"], bad_id.as_str());
    assert_eq!(d["vendor"], "gosign");
    assert_eq!(d["transaction_id"], "env-bad");
    assert_eq!(d["nrc_status"], 400);
    assert_eq!(d["attempts"], 1);
    let body: Value =
        serde_json::from_str(d["nrc_body"].as_str().expect("nrc_body")).expect("NRC's JSON");
    assert_eq!(body["code"], "invalid");
    assert_eq!(body["detail"], refused[0].1.as_str());
    assert!(body["detail"].as_str().unwrap().contains("poisoned"));

    app.nrc.cure("env-bad");
    let (status, answer) = app
        .admin_post(&format!("/api/v1/dead-letters/{bad_id}/replay"))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer, json!({"event_id": bad_id, "relay": "pending"}));
    let got = app.nrc.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].body["kenmerken"]["transaction_id"], "env-bad");
    assert_eq!(got[1].body["resourceUrl"], zaak_url("zaak-bad"));
    assert_eq!(
        app.nrc.wait_for(3, QUIET).await.len(),
        2,
        "replay sent twice"
    );
    let e = event_in_state(&app, "env-bad", "delivered").await;
    assert_eq!(e["relay"]["attempts"], 1);
    let (_, dl) = app.admin_get("/api/v1/dead-letters").await;
    assert_eq!(dl, json!({"dead_letters": []}));

    // Replaying it again, or an unknown id: not a dead letter.
    for id in [bad_id.clone(), uuid::Uuid::new_v4().to_string()] {
        let r = app
            .client
            .post(app.url(&format!("/api/v1/dead-letters/{id}/replay")))
            .header("X-Api-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["status"], 404);
        assert_eq!(p["type"], "urn:signrelay:problem:not-found");
    }
    let (status, p) = app
        .admin_post("/api/v1/dead-letters/not-a-uuid/replay")
        .await;
    assert_eq!(status, 400, "{p}");
    assert_eq!(app.nrc.received().len(), 2);
}

#[tokio::test]
async fn missing_kanaal_is_created_before_the_first_delivery() {
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, false)
        .await
        .unwrap();
    assert!(nrc.kanalen().is_empty());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&dir.path().join("store"), &nrc.url);
    // The NRC fetches the kanaal's documentation page from signrelay.
    let port = free_port();
    cfg.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.server.public_url = format!("http://127.0.0.1:{port}");
    let mut app = spawn_on(cfg, nrc).await;
    app.dir = Some(dir);

    register_ok(&app, "env-k", "zaak-k").await;
    // An Afgebroken: the stand-in checks `reden` against the created kanaal's filters.
    notify_ok(&app, "env-k", &rejected("env-k", "")).await;
    let got = app.nrc.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        kenmerken(&got[0].body),
        json!({"transaction_id": "env-k", "reden": "geweigerd door ondertekenaar"})
    );
    assert_eq!(app.nrc.kanaal_creations(), 1);
    assert_eq!(app.nrc.kanalen(), vec!["documentacties".to_string()]);
    // Nothing was sent before the kanaal existed (the stand-in refuses that with a 400).
    assert!(app.nrc.refused().is_empty(), "{:?}", app.nrc.refused());
    assert_eq!(app.nrc.attempts(), 1);
    let m = app.metrics().await;
    assert_eq!(metric(&m, "signrelay_nrc_kanaal_ready", &[]), Some(1.0));
}

#[tokio::test]
async fn existing_kanaal_is_not_created_again() {
    let app = spawn_app().await;
    register_ok(&app, "env-k2", "zaak-k2").await;
    notify_ok(&app, "env-k2", &work("env-k2", "SIGN_PROCESS_ENDED")).await;
    assert_eq!(app.nrc.wait_for(1, WAIT).await.len(), 1);
    assert_eq!(app.nrc.kanaal_creations(), 0);
    assert_eq!(app.nrc.kanalen(), vec!["documentacties".to_string()]);
}

#[tokio::test]
async fn early_callback_is_parked_until_the_transaction_is_registered() {
    let app = spawn_app().await;
    notify_ok(&app, "env-early", &work("env-early", "SIGN_PROCESS_ENDED")).await;
    let e = event_in_state(&app, "env-early", "parked").await;
    assert_eq!(e["relay"], json!({"state": "parked"}));
    let m = wait_metrics(&app, |m| {
        metric(m, "signrelay_parked_events", &[]) == Some(1.0)
    })
    .await;
    assert_eq!(metric(&m, "signrelay_parked_events", &[]), Some(1.0));
    assert_eq!(metric(&m, "signrelay_outbox_depth", &[]), Some(0.0));
    tokio::time::sleep(QUIET).await;
    assert_eq!(app.nrc.attempts(), 0, "sent without a registration");

    let r = app.register("env-early", "zaak-early").await;
    assert_eq!(r.status().as_u16(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["released_events"], 1);

    let got = app.nrc.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["resourceUrl"], zaak_url("zaak-early"));
    assert_eq!(
        kenmerken(&got[0].body),
        json!({"transaction_id": "env-early"})
    );
    event_in_state(&app, "env-early", "delivered").await;
    let m = wait_metrics(&app, |m| {
        metric(m, "signrelay_parked_events", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(metric(&m, "signrelay_parked_events", &[]), Some(0.0));

    // Registering again releases nothing more.
    let r = app.register("env-early", "zaak-early").await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["released_events"], 0);
    assert_eq!(app.nrc.wait_for(2, QUIET).await.len(), 1);
}

#[tokio::test]
async fn the_same_terminal_callback_twice_is_notified_once() {
    let app = spawn_app().await;
    register_ok(&app, "env-dup", "zaak-dup").await;
    let body = work("env-dup", "SIGN_PROCESS_ENDED");
    notify_ok(&app, "env-dup", &body).await;
    notify_ok(&app, "env-dup", &body).await;

    assert_eq!(app.nrc.wait_for(1, WAIT).await.len(), 1);
    assert_eq!(
        app.nrc.wait_for(2, QUIET).await.len(),
        1,
        "duplicate relayed"
    );
    let ev = app.events("transaction_id=env-dup").await;
    assert_eq!(ev.len(), 1, "{ev:#?}");
    let m = app.metrics().await;
    let labels = |result| {
        [
            ("vendor", "gosign"),
            ("surface", "gosign.rest"),
            ("result", result),
        ]
    };
    assert_eq!(
        metric(&m, "signrelay_callbacks_total", &labels("recorded")),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "signrelay_callbacks_total", &labels("duplicate")),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_conflicting_later_outcome_is_flagged_not_relayed() {
    let app = spawn_app().await;
    register_ok(&app, "env-conf", "zaak-conf").await;
    notify_ok(&app, "env-conf", &rejected("env-conf", "onjuist adres")).await;
    notify_ok(&app, "env-conf", &work("env-conf", "SIGN_PROCESS_ENDED")).await;

    let got = app.nrc.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["actie"], "OndertekenenAfgebroken");
    assert_eq!(
        got[0].body["kenmerken"]["reden"],
        "geweigerd door ondertekenaar: onjuist adres"
    );
    assert_eq!(app.nrc.wait_for(2, QUIET).await.len(), 1);

    let ev = app
        .wait_events("env-conf", WAIT, |ev| {
            ev.len() == 2 && ev.iter().any(|e| e["relay"]["state"] == "delivered")
        })
        .await;
    let aborted = ev
        .iter()
        .find(|e| e["outcome"]["kind"] == "aborted")
        .unwrap();
    let completed = ev
        .iter()
        .find(|e| e["outcome"]["kind"] == "completed")
        .unwrap();
    assert_eq!(aborted["relay"]["state"], "delivered");
    assert_eq!(
        completed["relay"],
        json!({"state": "not_relayed", "why": "conflicting_outcome"})
    );
}

#[tokio::test]
async fn extended_format_repeating_a_completion_is_not_notified_again() {
    let app = spawn_app().await;
    register_ok(&app, "env-ext", "zaak-ext").await;
    notify_ok(&app, "env-ext", &work("env-ext", "SIGN_PROCESS_ENDED")).await;
    assert_eq!(app.nrc.wait_for(1, WAIT).await.len(), 1);
    notify_ok(&app, "env-ext", &extended("env-ext", "STO", Some("WKD"))).await;
    notify_ok(&app, "env-ext", &extended("env-ext", "WKD", None)).await;

    assert_eq!(app.nrc.wait_for(2, QUIET).await.len(), 1, "relayed twice");
    // The same envelope, outcome and step: one delivery, whichever format carried it.
    let ev = app.events("transaction_id=env-ext").await;
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0]["relay"]["state"], "delivered");
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "signrelay_callbacks_total",
            &[
                ("vendor", "gosign"),
                ("surface", "gosign.rest"),
                ("result", "duplicate")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(app.nrc.received()[0].body["actie"], "OndertekenenVoltooid");
}

#[tokio::test]
async fn a_restart_resumes_the_outbox() {
    let app = spawn_app().await;
    app.nrc.set_behaviour(Behaviour::Fail {
        status: 503,
        retry_after: None,
    });
    register_ok(&app, "env-restart", "zaak-restart").await;
    notify_ok(
        &app,
        "env-restart",
        &work("env-restart", "SIGN_PROCESS_ENDED"),
    )
    .await;
    assert!(eventually(WAIT, || (app.nrc.attempts() >= 1).then_some(()))
        .await
        .is_some());

    let (nrc, dir, store_path) = app.stop().await;
    assert!(nrc.received().is_empty());
    let before = nrc.attempts();
    nrc.set_behaviour(Behaviour::Accept);
    let mut app = spawn_on(test_config(&store_path, &nrc.url), nrc).await;
    app.dir = dir;

    let got = app.nrc.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["kenmerken"]["transaction_id"], "env-restart");
    assert_eq!(got[0].body["resourceUrl"], zaak_url("zaak-restart"));
    assert_eq!(app.nrc.wait_for(2, QUIET).await.len(), 1);
    let e = event_in_state(&app, "env-restart", "delivered").await;
    assert_eq!(e["relay"]["attempts"], (before + 1) as u64);
}

#[tokio::test]
async fn metrics_match_the_scenario() {
    let app = spawn_app().await;
    app.nrc.poison("env-m-bad");
    register_ok(&app, "env-m-ok", "zaak-m").await;
    register_ok(&app, "env-m-bad", "zaak-m").await;
    notify_ok(&app, "env-m-ok", &work("env-m-ok", "SIGN_PROCESS_ENDED")).await;
    notify_ok(&app, "env-m-ok", &work("env-m-ok", "SIGN_PROCESS_ENDED")).await;
    notify_ok(&app, "env-m-bad", &work("env-m-bad", "SIGN_PROCESS_ENDED")).await;
    notify_ok(
        &app,
        "env-m-early",
        &work("env-m-early", "SIGN_PROCESS_ENDED"),
    )
    .await;

    event_in_state(&app, "env-m-ok", "delivered").await;
    event_in_state(&app, "env-m-bad", "dead_lettered").await;
    event_in_state(&app, "env-m-early", "parked").await;
    let delivered = [("result", "delivered")];
    let m = wait_metrics(&app, |m| {
        metric(m, "signrelay_outbox_depth", &[]) == Some(0.0)
            && metric(m, "signrelay_dead_letters", &[]) == Some(1.0)
            && metric(m, "signrelay_relay_deliveries_total", &delivered) == Some(1.0)
    })
    .await;
    let cb = |result| {
        metric(
            &m,
            "signrelay_callbacks_total",
            &[
                ("vendor", "gosign"),
                ("surface", "gosign.rest"),
                ("result", result),
            ],
        )
    };
    assert_eq!(cb("recorded"), Some(3.0), "{m}");
    assert_eq!(cb("duplicate"), Some(1.0), "{m}");
    assert_eq!(
        metric(&m, "signrelay_relay_deliveries_total", &delivered),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "signrelay_relay_deliveries_total",
            &[("result", "dead_letter")]
        ),
        Some(1.0)
    );
    assert_eq!(metric(&m, "signrelay_outbox_depth", &[]), Some(0.0));
    assert_eq!(metric(&m, "signrelay_dead_letters", &[]), Some(1.0));
    assert_eq!(metric(&m, "signrelay_parked_events", &[]), Some(1.0));
    assert_eq!(metric(&m, "signrelay_nrc_kanaal_ready", &[]), Some(1.0));
    assert_eq!(app.nrc.received().len(), 1);
}

#[tokio::test]
async fn outbox_depth_counts_undelivered_outcomes() {
    let app = spawn_app().await;
    app.nrc.set_behaviour(Behaviour::Fail {
        status: 503,
        retry_after: None,
    });
    for tx in ["env-o1", "env-o2"] {
        register_ok(&app, tx, "zaak-o").await;
        notify_ok(&app, tx, &work(tx, "SIGN_PROCESS_ENDED")).await;
    }
    let m = wait_metrics(&app, |m| {
        metric(m, "signrelay_outbox_depth", &[]) == Some(2.0)
            && metric(
                m,
                "signrelay_relay_deliveries_total",
                &[("result", "retry")],
            )
            .is_some_and(|v| v >= 2.0)
    })
    .await;
    assert_eq!(metric(&m, "signrelay_outbox_depth", &[]), Some(2.0), "{m}");
    assert!(
        metric(
            &m,
            "signrelay_relay_deliveries_total",
            &[("result", "retry")]
        )
        .is_some_and(|v| v >= 2.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "signrelay_relay_deliveries_total",
            &[("result", "delivered")]
        ),
        None
    );

    app.nrc.set_behaviour(Behaviour::Accept);
    assert_eq!(app.nrc.wait_for(2, WAIT).await.len(), 2);
    let m = wait_metrics(&app, |m| {
        metric(m, "signrelay_outbox_depth", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(metric(&m, "signrelay_outbox_depth", &[]), Some(0.0), "{m}");
    assert_eq!(
        metric(
            &m,
            "signrelay_relay_deliveries_total",
            &[("result", "delivered")]
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    // Ready once the kanaal is known to exist.
    let deadline = Instant::now() + WAIT;
    let v: Value = loop {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        if status == 200 || Instant::now() > deadline {
            assert_eq!(status, 200, "{v}");
            break v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(v["status"], "ready");
    assert_eq!(
        v["checks"],
        json!({"store_writable": true, "relay_alive": true, "kanaal_ready": true, "parties_accept": true})
    );
    assert_eq!(v["reasons"], json!({}));
    assert_eq!(
        v["backlog"],
        json!({"outbox": 0, "parked": 0, "dead_letters": 0, "quarantine": 0})
    );
}
