use crate::helpers::*;
use crate::openapi_check::{assert_answer_documented, base, load};

// PKIsigning's webhook and the verification of each terminal status with a real HTTP
// PKIsigning stand-in (OAuth2 token endpoint, the request API with callback keys, the
// platform's call limit), up to what the NRC stand-in receives.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use signrelay::auth::AuthConfig;
use signrelay::config::{Config, Secret};
use signrelay::testkit::pkisigning::{Behaviour, PkisigningStandIn};

const WAIT: Duration = Duration::from_secs(10);
pub const CLIENT: &str = "signrelay-pki";
pub const CLIENT_SECRET: &str = "pki-client-secret-value";
const TERMINAL: [&str; 7] = [
    "Completed",
    "Declined",
    "Withdrawn",
    "Expired",
    "InvitationExpired",
    "Elapsed",
    "Error",
];

pub async fn pki_app(pki: &PkisigningStandIn, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let (api, token) = (pki.api_url.clone(), pki.token_url.clone());
    spawn_app_with(move |c| {
        let p = &mut c.vendors.pkisigning;
        p.enabled = true;
        p.auth = Some(AuthConfig::None);
        p.api_url = api;
        p.token_url = token;
        // The stand-in serves plain HTTP on loopback.
        p.allow_insecure_http = true;
        p.client_id = Some(CLIENT.into());
        p.client_secret = Some(Secret::Inline(CLIENT_SECRET.into()));
        p.backoff_initial_ms = 20;
        p.backoff_max_secs = 1;
        p.timeout_secs = 2;
        p.verify_settle_secs = 0;
        adjust(c);
    })
    .await
}

fn guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Posts a webhook body; the status and the JSON answer.
async fn webhook(app: &TestApp, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(app: &TestApp, body: &Value) -> (u16, Value) {
    webhook(app, "/pkisigning/webhook", body.to_string()).await
}

async fn post_recorded(app: &TestApp, body: &Value) {
    assert_eq!(
        post(app, body).await,
        (200, json!({"result": "recorded"})),
        "{body}"
    );
}

/// A dossier at the stand-in, registered at signrelay; its zaak url.
async fn dossier(app: &TestApp, pki: &PkisigningStandIn, id: &str, status: &str) -> String {
    pki.dossier(id, status, &format!("key-{id}"));
    register_tx(app, "pkisigning", id).await
}

fn api_calls(pki: &PkisigningStandIn) -> usize {
    pki.calls().iter().filter(|c| c.kind == "request").count()
}

#[tokio::test]
async fn every_dossier_status_is_recorded_and_terminal_ones_are_relayed_once_verified() {
    let pki = PkisigningStandIn::start(CLIENT, CLIENT_SECRET)
        .await
        .unwrap();
    let app = pki_app(&pki, |_| {}).await;
    let mut statuses: Vec<&str> = signrelay::vendors::pkisigning::webhook::KNOWN_STATUSES.to_vec();
    statuses.extend(["Elapsed", "Frobnicated"]);
    let mut expected = Vec::new();
    for status in &statuses {
        let id = guid();
        let zaak = dossier(&app, &pki, &id, status).await;
        post_recorded(&app, &pki.webhook_body(&id, status, "bedrag klopt niet")).await;
        expected.push((id, zaak, *status));
    }
    for (id, zaak, status) in &expected {
        let reden = |base: &str| format!("{base}: bedrag klopt niet");
        let relayed = match *status {
            "Completed" => Some(("OndertekenenVoltooid", None)),
            "Declined" => Some((
                "OndertekenenAfgebroken",
                Some(reden("geweigerd door ondertekenaar")),
            )),
            "Withdrawn" => Some(("OndertekenenAfgebroken", Some(reden("ingetrokken")))),
            "Expired" | "InvitationExpired" | "Elapsed" => {
                Some(("OndertekenenAfgebroken", Some(reden("verlopen"))))
            }
            "Error" => Some(("OndertekenenAfgebroken", Some(reden("technische fout")))),
            _ => None,
        };
        match relayed {
            Some((actie, r)) => {
                delivered_event(&app, id).await;
                assert_notified(&app, id, zaak, actie, r.as_deref());
            }
            None => {
                let ev = app.wait_events(id, WAIT, |ev| ev.len() == 1).await;
                assert_eq!(
                    ev[0]["relay"],
                    json!({"state": "not_relayed", "why": "progress"}),
                    "{status}"
                );
                assert_eq!(ev[0]["outcome"]["kind"], "progress");
            }
        }
    }
    // Only the terminal ones were verified; nothing else reached the NRC.
    assert_eq!(api_calls(&pki), TERMINAL.len());
    assert_eq!(app.nrc.received().len(), TERMINAL.len());
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "signrelay_pkisigning_unknown_statuses_total",
            &[("status", "Frobnicated")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "signrelay_callbacks_total",
            &[("vendor", "pkisigning"), ("result", "recorded")]
        ),
        Some(statuses.len() as f64)
    );
    // The key is a credential: the archived payload does not hold it.
    let first = &app
        .events(&format!("transaction_id={}", expected[0].0))
        .await[0];
    let r = app
        .client
        .get(app.url(&format!(
            "/api/v1/events/{}/payload",
            first["id"].as_str().unwrap()
        )))
        .header("X-Api-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let archived: Value = r.json().await.unwrap();
    assert_eq!(archived["AuthenticationKey"], "***");
    assert_eq!(archived["PkisId"], expected[0].0);
}

#[tokio::test]
async fn hostile_payloads_are_discarded_once_and_an_oversized_one_is_retried() {
    let pki = PkisigningStandIn::start(CLIENT, CLIENT_SECRET)
        .await
        .unwrap();
    let app = pki_app(&pki, |_| {}).await;
    let id = guid();
    pki.dossier(&id, "Completed", "k");
    let ok = json!({"PkisId": id, "DossierStatus": "Active", "Reason": null, "AuthenticationKey": "k", "Extra": {"nested": [1, 2]}, "dossierName": "x"});
    post_recorded(&app, &ok).await;
    let discarded = |reason: &str| (200, json!({"result": "discarded", "reason": reason}));
    for (body, expect) in [
        (json!({"DossierStatus": "Completed", "AuthenticationKey": "k"}).to_string(), discarded("missing field PkisId")),
        (json!({"pkisId": id, "dossierStatus": "Completed", "authenticationKey": "k"}).to_string(), discarded("missing field PkisId")),
        (json!({"PkisId": id, "dossierstatus": "Completed"}).to_string(), discarded("missing field DossierStatus")),
        (json!({"PkisId": "ENV-1; drop", "DossierStatus": "Completed", "AuthenticationKey": "k"}).to_string(), discarded("PkisId is not a GUID")),
        (json!({"PkisId": id, "DossierStatus": "Completed"}).to_string(), discarded("missing field AuthenticationKey (a terminal status is verified with it)")),
        (json!({"PkisId": id, "DossierStatus": ""}).to_string(), discarded("DossierStatus is empty")),
    ] {
        assert_eq!(webhook(&app, "/pkisigning/webhook", body.clone()).await, expect, "{body}");
        // Sent again (the vendor retrying): answered alike, kept once.
        assert_eq!(webhook(&app, "/pkisigning/webhook", body.clone()).await, expect, "{body}");
    }
    let (s, v) = webhook(&app, "/pkisigning/webhook", "{\"PkisId\": ").await;
    assert_eq!((s, v["result"].as_str()), (200, Some("discarded")));
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("not a WebhookContentModel"),
        "{v}"
    );
    let q = quarantine(&app).await;
    assert_eq!(q.len(), 7, "{q:#?}");
    assert!(q
        .iter()
        .all(|e| e["vendor"] == "pkisigning" && e["surface"] == "pkisigning.webhook"));
    let big = format!(
        r#"{{"PkisId": "{id}", "DossierStatus": "Active", "Reason": "{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let (s, v) = webhook(&app, "/pkisigning/webhook", big).await;
    assert_eq!((s, v["result"].as_str()), (413, Some("retry")));
    // Only the valid one was recorded; nothing reached the API or the NRC.
    assert_eq!(app.events("vendor=pkisigning").await.len(), 1);
    assert_eq!(api_calls(&pki), 0);
    assert!(app.nrc.received().is_empty());
}

#[tokio::test]
async fn the_secret_path_segment_is_required_and_compared() {
    let pki = PkisigningStandIn::start(CLIENT, CLIENT_SECRET)
        .await
        .unwrap();
    let token = "t0ken-0123456789abcdefghijklmnopqrstuv";
    let app = pki_app(&pki, |c| {
        c.vendors.pkisigning.path_token = Some(Secret::Inline(token.into()));
    })
    .await;
    let id = guid();
    let zaak = dossier(&app, &pki, &id, "Completed").await;
    let body = pki.webhook_body(&id, "Completed", "");
    let (s, v) = webhook(
        &app,
        "/pkisigning/webhook/t0ken-0123456789abcdefghijklmnopqrstuX",
        body.to_string(),
    )
    .await;
    assert_eq!((s, v["result"].as_str()), (401, Some("unauthorized")));
    let (s, _) = webhook(&app, "/pkisigning/webhook", body.to_string()).await;
    assert_eq!(s, 404);
    assert!(app.events("vendor=pkisigning").await.is_empty());
    let (s, v) = webhook(
        &app,
        &format!("/pkisigning/webhook/{token}"),
        body.to_string(),
    )
    .await;
    assert_eq!((s, v), (200, json!({"result": "recorded"})));
    delivered_event(&app, &id).await;
    assert_notified(&app, &id, &zaak, "OndertekenenVoltooid", None);
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "signrelay_auth_failures_total",
            &[
                ("surface", "pkisigning.webhook"),
                ("reason", "path_token_invalid")
            ]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_contradicted_callback_is_quarantined_and_the_real_status_flows_afterwards() {
    let pki = PkisigningStandIn::start(CLIENT, CLIENT_SECRET)
        .await
        .unwrap();
    let app = pki_app(&pki, |_| {}).await;
    // The platform shows Declined; a (forged or mistaken) callback says Completed.
    let id = guid();
    let zaak = dossier(&app, &pki, &id, "Declined").await;
    post_recorded(&app, &pki.webhook_body(&id, "Completed", "")).await;
    let ev = app
        .wait_events(&id, WAIT, |ev| {
            ev.iter().any(|e| e["relay"]["state"] == "not_relayed")
        })
        .await;
    assert_eq!(
        ev[0]["relay"],
        json!({"state": "not_relayed", "why": "contradicted"})
    );
    let q = quarantine(&app).await;
    assert_eq!(q.len(), 1);
    assert_eq!(
        q[0]["reason"],
        "PKIsigning toont status Declined, de callback meldde Completed"
    );
    assert_eq!(q[0]["archive_id"], ev[0]["archive_id"]);
    assert!(app.nrc.received().is_empty());
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "signrelay_jobs_total",
            &[("party", "pkisigning"), ("result", "contradicted")]
        ),
        Some(1.0)
    );
    // The vendor's callback for the real status flows normally.
    post_recorded(&app, &pki.webhook_body(&id, "Declined", "")).await;
    let ev = app
        .wait_events(&id, WAIT, |ev| {
            ev.iter().any(|e| e["relay"]["state"] == "delivered")
        })
        .await;
    assert_eq!(ev.len(), 2);
    assert_notified(
        &app,
        &id,
        &zaak,
        "OndertekenenAfgebroken",
        Some("geweigerd door ondertekenaar"),
    );
    // A callback for a dossier the platform does not know (or with another key) is forged.
    let forged = guid();
    register_tx(&app, "pkisigning", &forged).await;
    post_recorded(
        &app,
        &json!({"PkisId": forged, "DossierStatus": "Completed", "AuthenticationKey": "guess"}),
    )
    .await;
    app.wait_events(&forged, WAIT, |ev| ev[0]["relay"]["state"] == "not_relayed")
        .await;
    assert!(quarantine(&app)
        .await
        .iter()
        .any(|e| e["reason"] == "PKIsigning kent het dossier niet (de callback meldde Completed)"));
    assert_eq!(received_for(&app, &forged).len(), 0);
}

#[tokio::test]
async fn a_status_the_api_does_not_show_yet_is_asked_again_until_it_does() {
    let pki = PkisigningStandIn::start(CLIENT, CLIENT_SECRET)
        .await
        .unwrap();
    let app = pki_app(&pki, |c| c.vendors.pkisigning.verify_settle_secs = 60).await;
    let id = guid();
    let zaak = dossier(&app, &pki, &id, "PendingSignature").await;
    let mut body = pki.webhook_body(&id, "Completed", "");
    body["AuthenticationKey"] = json!(format!("key-{id}"));
    post_recorded(&app, &body).await;
    let asked = eventually(WAIT, || (api_calls(&pki) >= 2).then_some(())).await;
    assert!(asked.is_some(), "{} calls", api_calls(&pki));
    assert!(app.nrc.received().is_empty());
    pki.dossier(&id, "Completed", &format!("key-{id}"));
    delivered_event(&app, &id).await;
    assert_notified(&app, &id, &zaak, "OndertekenenVoltooid", None);
    assert!(quarantine(&app).await.is_empty());
}

#[tokio::test]
async fn verification_survives_failures_429_and_hangs_of_the_api() {
    let pki = PkisigningStandIn::start(CLIENT, CLIENT_SECRET)
        .await
        .unwrap();
    let app = pki_app(&pki, |_| {}).await;
    for (n, behaviour) in [
        Behaviour::Fail(500),
        Behaviour::Fail(503),
        Behaviour::TooMany {
            retry_after_secs: 1,
        },
        Behaviour::Hang,
    ]
    .into_iter()
    .enumerate()
    {
        pki.behave(behaviour);
        let id = guid();
        let zaak = dossier(&app, &pki, &id, "Completed").await;
        let before = api_calls(&pki);
        post_recorded(&app, &pki.webhook_body(&id, "Completed", "")).await;
        let tried = eventually(WAIT, || (api_calls(&pki) > before).then_some(())).await;
        assert!(tried.is_some(), "{behaviour:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(received_for(&app, &id).is_empty(), "{behaviour:?}");
        let asked_at = Instant::now();
        pki.behave(Behaviour::Normal);
        delivered_event_within(&app, &id, Duration::from_secs(15)).await;
        assert_notified(&app, &id, &zaak, "OndertekenenVoltooid", None);
        if let Behaviour::TooMany { retry_after_secs } = behaviour {
            // Retry-After is honoured: no call came before it ran out.
            let calls = pki.calls();
            let last_429 = calls.iter().rev().find(|c| c.status == 429).unwrap().at;
            let next = calls
                .iter()
                .find(|c| c.at > last_429 && c.kind == "request")
                .unwrap()
                .at;
            assert!(
                next.duration_since(last_429)
                    >= Duration::from_millis(retry_after_secs * 1000 - 50),
                "asked again {:?} after a 429",
                next.duration_since(last_429)
            );
        }
        assert_eq!(
            app.nrc.received().len(),
            n + 1,
            "{behaviour:?} after {:?}",
            asked_at.elapsed()
        );
    }
    assert_eq!(pki.over_limit(), 0);
    assert!(dead_letters(&app).await.is_empty());
}

#[tokio::test]
async fn every_call_to_the_platform_stays_within_its_limit() {
    let pki = PkisigningStandIn::start(CLIENT, CLIENT_SECRET)
        .await
        .unwrap();
    // The platform's 100 per 60 s, scaled down so that the test takes seconds: 8 per 2 s.
    let window = Duration::from_secs(2);
    pki.limit(8, window);
    let app = pki_app(&pki, |c| {
        c.vendors.pkisigning.rate_limit_calls = 8;
        c.vendors.pkisigning.rate_limit_window_secs = 2;
        c.vendors.pkisigning.concurrency = 8;
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..24 {
        let id = guid();
        dossier(&app, &pki, &id, "Completed").await;
        post_recorded(&app, &pki.webhook_body(&id, "Completed", "")).await;
        ids.push(id);
    }
    for id in &ids {
        delivered_event_within(&app, id, Duration::from_secs(30)).await;
    }
    assert_eq!(app.nrc.received().len(), ids.len());
    assert_eq!(pki.over_limit(), 0, "the platform had to refuse calls");
    let most = pki.most_in_window(window);
    assert!(most <= 8, "{most} calls within one window");
    // 24 verifications and a token: at least three windows' worth.
    assert!(pki.calls().len() >= 25);
}

#[tokio::test]
async fn register_webhook_registers_the_public_url_and_prints_the_answer_without_the_token() {
    let pki = PkisigningStandIn::start(CLIENT, CLIENT_SECRET)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("signrelay.toml");
    let token = "t0ken-0123456789abcdefghijklmnopqrstuv";
    std::fs::write(
        &config,
        format!(
            r#"[server]
public_url = "https://signrelay.gemeente.example"

[pkisigning]
enabled = true
path_token = "{token}"
api_url = "{}"
token_url = "{}"
allow_insecure_http = true
client_id = "{CLIENT}"
client_secret = "{CLIENT_SECRET}"

[pkisigning.auth]
method = "none"
"#,
            pki.api_url, pki.token_url
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_signrelay"))
        .args(["pkisigning", "register-webhook", "--config"])
        .arg(&config)
        .env_remove("SIGNRELAY_CONFIG")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let hooks = pki.webhooks();
    assert_eq!(hooks.len(), 1);
    assert_eq!(
        hooks[0]["Config"]["url"],
        format!("https://signrelay.gemeente.example/pkisigning/webhook/{token}")
    );
    let printed: Value = serde_json::from_str(&stdout).expect("PKIsigning's answer as JSON");
    assert_eq!(
        printed["config"]["url"],
        "https://signrelay.gemeente.example/pkisigning/webhook/***"
    );
    assert!(!stdout.contains(token) && !stderr.contains(token));
    assert!(stderr.contains(&pki.organisation_id()), "{stderr}");
}

async fn dead_letters(app: &TestApp) -> Vec<Value> {
    let (s, v) = app.admin_get("/api/v1/dead-letters").await;
    assert_eq!(s, 200, "{v}");
    v["dead_letters"].as_array().cloned().unwrap()
}

/// Waits until `tx` has a delivered event (exactly one event); returns it.
async fn delivered_event_within(app: &TestApp, tx: &str, timeout: Duration) -> Value {
    let ev = app
        .wait_events(tx, timeout, |ev| {
            ev.iter().any(|e| e["relay"]["state"] == "delivered")
        })
        .await;
    assert_eq!(ev.len(), 1, "{ev:#?}");
    ev[0].clone()
}

#[tokio::test]
async fn the_webhook_document_describes_every_answer_the_server_gives() {
    let doc = load("pkisigning-webhook.yaml");
    assert_eq!(doc["openapi"], "3.0.3");
    let pki = PkisigningStandIn::start(CLIENT, CLIENT_SECRET)
        .await
        .unwrap();
    let app = pki_app(&pki, |c| c.vendors.pkisigning.body_limit_kib = 1).await;
    assert_eq!(base(&doc), "/pkisigning");
    let id = guid();
    pki.dossier(&id, "Completed", "k");
    let examples =
        &doc["paths"]["/webhook"]["post"]["requestBody"]["content"]["application/json"]["examples"];
    let mut bodies: Vec<(&str, String)> = examples
        .as_object()
        .unwrap()
        .values()
        .map(|e| ("documented example", e["value"].to_string()))
        .collect();
    bodies.push((
        "progress",
        json!({"PkisId": id, "DossierStatus": "Active"}).to_string(),
    ));
    bodies.push(("malformed", "{".into()));
    bodies.push(("too large", format!("{{\"x\": \"{}\"}}", "x".repeat(2048))));
    let mut statuses = std::collections::BTreeSet::new();
    for (what, body) in bodies {
        let r = app
            .client
            .post(app.url("/pkisigning/webhook"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let ct = header_of(r.headers(), "content-type").to_string();
        let bytes = r.bytes().await.unwrap();
        assert_answer_documented(&doc, ("/webhook", "post"), status, &ct, &bytes, what);
        statuses.insert(status);
    }
    // Unwritable store: payloads over 64 KiB are archived as files (see gosign_rest.rs);
    // sled's files only: PostgreSQL's outage has its own test (tests/api_pg/outage.rs).
    if !only_on(Backend::Sled) {
        assert_eq!(statuses, [200, 413].into_iter().collect());
        return;
    }
    let app2 = pki_app(&pki, |c| c.vendors.pkisigning.body_limit_kib = 128).await;
    let payloads = app2.store_path.join("payloads");
    std::fs::remove_dir_all(&payloads).unwrap();
    std::fs::write(&payloads, b"not a directory").unwrap();
    let big = json!({"PkisId": id, "DossierStatus": "Active", "Reason": "x".repeat(60 * 1024), "Padding": "y".repeat(8 * 1024)});
    let r = app2
        .client
        .post(app2.url("/pkisigning/webhook"))
        .header("Content-Type", "application/json")
        .body(big.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(header_of(r.headers(), "retry-after"), "30");
    let ct = header_of(r.headers(), "content-type").to_string();
    let bytes = r.bytes().await.unwrap();
    assert_answer_documented(
        &doc,
        ("/webhook", "post"),
        status,
        &ct,
        &bytes,
        "store unwritable",
    );
    statuses.insert(status);
    assert_eq!(statuses, [200, 413, 503].into_iter().collect());
    std::fs::remove_file(&payloads).unwrap();
    std::fs::create_dir(&payloads).unwrap();
}

#[tokio::test]
async fn a_callback_before_its_registration_is_verified_then_waits_for_it() {
    let pki = PkisigningStandIn::start(CLIENT, CLIENT_SECRET)
        .await
        .unwrap();
    let app = pki_app(&pki, |_| {}).await;
    let id = guid();
    pki.dossier(&id, "Withdrawn", "k");
    // Registered in another spelling of the same GUID, after the callback.
    post_recorded(&app, &pki.webhook_body(&id.to_uppercase(), "Withdrawn", "")).await;
    let ev = app
        .wait_events(&id, WAIT, |ev| {
            ev.iter().any(|e| e["relay"]["state"] == "parked")
        })
        .await;
    assert_eq!(ev.len(), 1);
    assert_eq!(api_calls(&pki), 1, "verified before the registration");
    let zaak = register_tx(&app, "pkisigning", &format!("{{{}}}", id.to_uppercase())).await;
    delivered_event(&app, &id).await;
    assert_notified(
        &app,
        &id,
        &zaak,
        "OndertekenenAfgebroken",
        Some("ingetrokken"),
    );
    // An id that is no GUID cannot be a PKIsigning transaction.
    let r = app.register_at("pkisigning", "ENV-1", "zaak-x").await;
    assert_eq!(r.status().as_u16(), 400);
}
