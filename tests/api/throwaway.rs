use crate::helpers::*;

// The vendor seam, proven by a vendor written against it alone (src/vendors/throwaway/, the
// `throwaway-vendor` feature): one callback route and one follow-up job. Its job is retried,
// dead-lettered with the party's answer and replayed by the shared machinery, and the outcome
// then goes on to the NRC like any other.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};
use signrelay::auth::AuthConfig;

const WAIT: Duration = Duration::from_secs(10);

/// How the party the throwaway vendor's job calls answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Unavailable,
    Refuse,
    Accept,
}

/// What the party answers, and the bodies it received.
type Shared = (Arc<Mutex<Answer>>, Arc<Mutex<Vec<Value>>>);

struct Party {
    url: String,
    answer: Arc<Mutex<Answer>>,
    calls: Arc<Mutex<Vec<Value>>>,
    handle: ServerHandle,
}

async fn ping(body: web::Json<Value>, p: web::Data<Shared>) -> HttpResponse {
    p.1.lock().unwrap().push(body.into_inner());
    match *p.0.lock().unwrap() {
        Answer::Unavailable => HttpResponse::ServiceUnavailable().finish(),
        Answer::Refuse => HttpResponse::BadRequest().json(json!({"error": "unknown id"})),
        Answer::Accept => HttpResponse::Ok().finish(),
    }
}

impl Party {
    async fn start(answer: Answer) -> Party {
        let answer = Arc::new(Mutex::new(answer));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let data = web::Data::new((answer.clone(), calls.clone()));
        let (base, handle) = stand_in(move |c| {
            c.app_data(data.clone())
                .route("/ping", web::post().to(ping));
        });
        Party {
            url: format!("{base}/ping"),
            answer,
            calls,
            handle,
        }
    }

    fn answer(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

async fn throwaway_app(party: &Party) -> TestApp {
    let url = party.url.clone();
    spawn_app_with(move |c| {
        c.vendors.throwaway.enabled = true;
        c.vendors.throwaway.auth = Some(AuthConfig::None);
        c.vendors.throwaway.ping_url = url;
    })
    .await
}

async fn callback(app: &TestApp, id: &str, status: &str) {
    let r = app
        .client
        .post(app.url("/throwaway/callbacks"))
        .json(&json!({"id": id, "status": status}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
}

async fn dead_letters(app: &TestApp) -> Vec<Value> {
    let (s, v) = app.admin_get("/api/v1/dead-letters").await;
    assert_eq!(s, 200, "{v}");
    v["dead_letters"].as_array().cloned().unwrap()
}

#[tokio::test]
async fn a_vendor_job_is_retried_dead_lettered_and_replayed_by_the_shared_machinery() {
    let party = Party::start(Answer::Unavailable).await;
    let app = throwaway_app(&party).await;
    let zaak = register_tx(&app, "throwaway", "thr-1").await;
    callback(&app, "thr-1", "done").await;

    // The event waits on its vendor step while the party is unavailable: retried, with backoff.
    let retried = eventually(WAIT, || (party.calls() >= 3).then_some(())).await;
    assert!(retried.is_some(), "{} calls", party.calls());
    let ev = app.events("transaction_id=thr-1").await;
    assert_eq!(
        ev[0]["relay"],
        json!({"state": "pending", "step": "vendor"})
    );
    assert!(app.nrc.received().is_empty());
    let m = app.metrics().await;
    assert!(
        metric(
            &m,
            "signrelay_jobs_total",
            &[("party", "throwaway"), ("result", "retry")]
        )
        .is_some_and(|n| n >= 2.0),
        "{m}"
    );
    assert_eq!(party.calls.lock().unwrap()[0], json!({"id": "thr-1"}));

    // A refusal: a dead letter with the party's answer; the event shows it.
    party.answer(Answer::Refuse);
    let dl = loop {
        let dl = dead_letters(&app).await;
        if !dl.is_empty() {
            break dl;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dl.len(), 1, "{dl:#?}");
    let d = &dl[0];
    let event_id = ev[0]["id"].as_str().unwrap();
    assert_eq!(d["id"], event_id);
    assert_eq!(d["event_id"], event_id);
    assert_eq!(
        (d["party"].as_str(), d["task"].as_str()),
        (Some("throwaway"), Some("throwaway.ping"))
    );
    assert_eq!(d["status"], 400);
    assert_eq!(
        serde_json::from_str::<Value>(d["body"].as_str().unwrap()).unwrap(),
        json!({"error": "unknown id"})
    );
    assert!(
        d.get("nrc_status").is_none() && d.get("job").is_none(),
        "{d}"
    );
    app.wait_events("thr-1", WAIT, |ev| {
        ev[0]["relay"]["state"] == "dead_lettered"
    })
    .await;
    let calls_at_dead_letter = party.calls();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        party.calls(),
        calls_at_dead_letter,
        "a dead letter is not retried"
    );

    // Replayed once the party accepts: the vendor step is done, then the NRC hears of it.
    party.answer(Answer::Accept);
    let (s, v) = app
        .admin_post(&format!("/api/v1/dead-letters/{event_id}/replay"))
        .await;
    assert_eq!(s, 202, "{v}");
    let delivered = delivered_event(&app, "thr-1").await;
    assert_eq!(delivered["id"], event_id);
    assert_notified(&app, "thr-1", &zaak, "OndertekenenVoltooid", None);
    assert_eq!(party.calls(), calls_at_dead_letter + 1);
    assert!(dead_letters(&app).await.is_empty());
    party.handle.stop(false).await;
}

#[tokio::test]
async fn a_vendor_step_runs_before_the_registration_and_the_outcome_parks_after_it() {
    let party = Party::start(Answer::Accept).await;
    let app = throwaway_app(&party).await;
    callback(&app, "thr-2", "failed").await;
    // The vendor step needs no zaak; the NRC step does.
    app.wait_events("thr-2", WAIT, |ev| ev[0]["relay"]["state"] == "parked")
        .await;
    assert_eq!(party.calls(), 1);
    let zaak = register_tx(&app, "throwaway", "thr-2").await;
    delivered_event(&app, "thr-2").await;
    assert_notified(
        &app,
        "thr-2",
        &zaak,
        "OndertekenenAfgebroken",
        Some("technische fout"),
    );
    // A redelivery of the same callback is one delivery: no second job, no second call.
    callback(&app, "thr-2", "failed").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(party.calls(), 1);
    assert_eq!(app.events("transaction_id=thr-2").await.len(), 1);
    party.handle.stop(false).await;
}
