//! `signrelay demo`: the main job end to end on embedded defaults. A temporary store, an NRC
//! stand-in that prints what it receives, and scripted vendor callbacks (a duplicate, an early
//! callback before its registration, a malformed one, a conflicting report), then a summary of
//! what reached the NRC, checked against signrelay's own records.

use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use crate::app::Application;
use crate::auth::AuthConfig;
use crate::config::{Config, Secret};
use crate::telemetry::LogFormat;
use crate::testkit::gosign::{soap_status_request, soap_work_notification, work_notification};
use crate::testkit::nrc::NrcStandIn;

const NRC_SECRET: &str = "demo-nrc-secret";
const ADMIN_KEY: &str = "demo-admin-key-0123456789";
const GOSIGN_USER: &str = "gosign";
const GOSIGN_PASSWORD: &str = "demo-gosign-password";
/// "%PDF-1.4 demo" in base64: the signed document GoSign sends inline.
const DEMO_PDF: &str = "JVBERi0xLjQgZGVtbw==";

struct Demo {
    http: reqwest::Client,
    base: String,
}

impl Demo {
    async fn register(&self, tx: &str, zaak: &str) -> anyhow::Result<u16> {
        let body = json!({
            "naam": format!("Ondertekening {tx}"),
            "eigenaar": "behandelaar@gemeente.example",
            "zaak": {"uuid": uuid::Uuid::new_v4(), "url": format!("https://zaken.gemeente.example/api/v1/zaken/{zaak}")},
            "documenten": [{"uuid": uuid::Uuid::new_v4(), "url": "https://drc.gemeente.example/api/v1/enkelvoudiginformatieobjecten/1", "titel": "Besluit", "versie": 1, "bestandsnaam": "besluit.docx"}],
            "ondertekenaars": [{"e-mail": "ondertekenaar@example.org", "voornaam": "Jan", "achternaam": "Jansen", "volgorde": 1, "authenticatie": null}]
        });
        let r = self
            .http
            .put(format!("{}/api/v1/transactions/gosign/{tx}", self.base))
            .header("X-Api-Key", ADMIN_KEY)
            .json(&body)
            .send()
            .await?;
        Ok(r.status().as_u16())
    }

    /// Posts a SOAP envelope; answers `success=…` or the fault.
    async fn soap(&self, body: String) -> anyhow::Result<String> {
        let r = self
            .http
            .post(format!("{}/gosign/soap", self.base))
            .basic_auth(GOSIGN_USER, Some(GOSIGN_PASSWORD))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"\"")
            .body(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        let tag = |t: &str| {
            text.split(&format!("<{t}>"))
                .nth(1)
                .and_then(|rest| rest.split(&format!("</{t}>")).next())
                .unwrap_or("")
                .to_string()
        };
        Ok(if text.contains("Fault") {
            format!("{status} fault: {}", tag("faultstring"))
        } else if text.contains("workNotificationResponse") {
            format!("{status} success={}", tag("success"))
        } else {
            format!(
                "{status} userAllowedToWork={} {}",
                tag("userAllowedToWork"),
                tag("userReason")
            )
        })
    }

    async fn workable(&self, envelope: &str) -> anyhow::Result<String> {
        let v: Value = self
            .http
            .get(format!(
                "{}/gosign/rest/envelopes/{envelope}/managers/jjansen/status",
                self.base
            ))
            .basic_auth(GOSIGN_USER, Some(GOSIGN_PASSWORD))
            .send()
            .await?
            .json()
            .await?;
        Ok(format!(
            "workable={} {}",
            v["workable"],
            v["reason"].as_str().unwrap_or("")
        ))
    }

    async fn notify(&self, envelope: &str, body: &str) -> anyhow::Result<String> {
        let r = self
            .http
            .post(format!(
                "{}/gosign/rest/envelopes/{envelope}/notify",
                self.base
            ))
            .basic_auth(GOSIGN_USER, Some(GOSIGN_PASSWORD))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        Ok(format!("{status} {}", v["outcome"].as_str().unwrap_or("?")))
    }
}

pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary store")?;
    let nrc = NrcStandIn::start_printing("signrelay", NRC_SECRET).await?;
    let mut cfg = Config::default();
    cfg.log.format = LogFormat::Pretty;
    cfg.log.level = "error".into();
    cfg.server.listen = "127.0.0.1:0".parse()?;
    cfg.store.path = dir.path().join("store");
    cfg.nrc.url = nrc.url.clone();
    cfg.nrc.secret = Secret::Inline(NRC_SECRET.into());
    cfg.relay.backoff_initial_ms = 50;
    cfg.admin.auth = AuthConfig::ApiKey {
        header: "X-Api-Key".into(),
        key: Secret::Inline(ADMIN_KEY.into()),
    };
    let gosign_auth = AuthConfig::Basic {
        username: GOSIGN_USER.into(),
        password: Secret::Inline(GOSIGN_PASSWORD.into()),
    };
    cfg.vendors.gosign.rest.auth = Some(gosign_auth.clone());
    cfg.vendors.gosign.soap.enabled = true;
    cfg.vendors.gosign.soap.auth = Some(gosign_auth);
    cfg.vendors.gosign.workability.policy =
        crate::vendors::gosign::config::WorkabilityPolicy::Registry;
    cfg.validate()?;
    crate::telemetry::init_logging(&cfg.log);

    println!("signrelay demo");
    println!("  store:       {} (temporary)", cfg.store.path.display());
    println!("  NRC stand-in: {}", nrc.url);
    let app = Application::build(cfg).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    println!("  signrelay:   {base}\n");
    let handle = app.handle();
    let running = tokio::spawn(app.run_until_stopped());
    let d = Demo {
        http: reqwest::Client::new(),
        base: base.clone(),
    };

    println!("Case application registers transactions:");
    for (tx, zaak) in [
        ("ENV-1001", "Z-1"),
        ("ENV-1002", "Z-2"),
        ("ENV-1003", "Z-3"),
        ("ENV-2001", "Z-5"),
    ] {
        println!(
            "  PUT  /api/v1/transactions/gosign/{tx} -> {}",
            d.register(tx, zaak).await?
        );
    }

    println!("\nGoSign calls back (REST):");
    let steps: Vec<(&str, &str, String)> = vec![
        ("ENV-1001", "STEP_CLOSED (progress)", work_notification("ENV-1001", "STEP_CLOSED", None, None)),
        ("ENV-1001", "SIGN_PROCESS_ENDED + signed PDF", work_notification("ENV-1001", "SIGN_PROCESS_ENDED", None, Some(DEMO_PDF))),
        ("ENV-1001", "SIGN_PROCESS_ENDED again (duplicate)", work_notification("ENV-1001", "SIGN_PROCESS_ENDED", None, Some(DEMO_PDF))),
        ("ENV-1002", "ENVELOPE_REJECTED", work_notification("ENV-1002", "ENVELOPE_REJECTED", Some("bedrag klopt niet"), None)),
        ("ENV-1003", "Extended: STO after STP", json!({"externalId": "ENV-1003", "status": "STO", "previousStatus": "STP", "completedAt": 1_763_888_400_000i64}).to_string()),
        ("ENV-1004", "SIGN_PROCESS_ENDED before registration", work_notification("ENV-1004", "SIGN_PROCESS_ENDED", None, None)),
        ("ENV-1002", "SIGN_PROCESS_ENDED after rejection (conflict)", work_notification("ENV-1002", "SIGN_PROCESS_ENDED", None, None)),
        ("ENV-1005", "malformed JSON", "{\"envelopeExternalId\": \"ENV-1005\", ".to_string()),
    ];
    for (env, what, body) in &steps {
        let answer = d.notify(env, body).await?;
        println!("  POST /gosign/rest/envelopes/{env}/notify  {what:<46} -> {answer}");
    }

    println!("\nGoSign calls back (SOAP, ch. 7):");
    println!(
        "  POST /gosign/soap  workNotification ENV-2001 SIGN_PROCESS_ENDED          -> {}",
        d.soap(soap_work_notification(
            "ENV-2001",
            "SIGN_PROCESS_ENDED",
            None
        ))
        .await?
    );
    println!(
        "  POST /gosign/soap  workNotification ENV-1001 SIGN_PROCESS_ENDED (also REST) -> {}",
        d.soap(soap_work_notification(
            "ENV-1001",
            "SIGN_PROCESS_ENDED",
            None
        ))
        .await?
    );
    println!(
        "  POST /gosign/soap  workNotification ENV-2002 NEW_TYPE (unknown)          -> {}",
        d.soap(soap_work_notification("ENV-2002", "NEW_TYPE", None))
            .await?
    );

    println!("\nGoSign asks whether envelopes are still workable (policy: registry):");
    println!(
        "  GET  /gosign/rest/envelopes/ENV-1003/managers/jjansen/status -> {}",
        d.workable("ENV-1003").await?
    );
    d.register("ENV-3001", "Z-6").await?;
    println!(
        "  GET  /gosign/rest/envelopes/ENV-3001/managers/jjansen/status -> {}",
        d.workable("ENV-3001").await?
    );
    let withdrawn = d
        .http
        .delete(format!("{base}/api/v1/transactions/gosign/ENV-3001"))
        .header("X-Api-Key", ADMIN_KEY)
        .send()
        .await?
        .status();
    anyhow::ensure!(withdrawn.as_u16() == 204, "withdrawal answered {withdrawn}");
    println!("  (case application withdraws ENV-3001)");
    println!(
        "  POST /gosign/soap  getEnvelopeExternalStatus ENV-3001 -> {}",
        d.soap(soap_status_request(&["ENV-3001"])).await?
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("\nLate registration releases the parked callback:");
    println!(
        "  PUT  /api/v1/transactions/gosign/ENV-1004 -> {}",
        d.register("ENV-1004", "Z-4").await?
    );

    let expected = 5;
    println!("\nNRC stand-in receives:");
    let got = nrc.wait_for(expected, Duration::from_secs(20)).await;
    println!(
        "  ({} notifications; kanaal created by signrelay: {})",
        got.len(),
        nrc.kanaal_creations() == 1
    );

    // signrelay records a delivery's result just after the NRC's answer (sharing the next
    // write's commit, a few ms later): wait until nothing is still pending.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let events: Value = loop {
        let events: Value = d
            .http
            .get(format!("{base}/api/v1/events?limit=1000"))
            .header("X-Api-Key", ADMIN_KEY)
            .send()
            .await?
            .json()
            .await?;
        let pending = events["events"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["relay"]["state"] == "pending"));
        if !pending || tokio::time::Instant::now() >= deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("\nSummary (signrelay's records):");
    println!(
        "  {:<10} {:<10} {:<34} {:<24} reden",
        "envelope", "outcome", "relay", "NRC actie"
    );
    let mut delivered = 0;
    let mut mismatches = 0;
    for e in events["events"].as_array().cloned().unwrap_or_default() {
        let tx = e["transaction_id"].as_str().unwrap_or("");
        let state = e["relay"]["state"].as_str().unwrap_or("");
        let relay = match e["relay"]["why"].as_str() {
            Some(why) => format!("{state} ({why})"),
            None => state.to_string(),
        };
        let at_nrc = got
            .iter()
            .find(|r| r.body["kenmerken"]["transaction_id"] == tx && state == "delivered");
        if state == "delivered" {
            delivered += 1;
            if at_nrc.is_none() {
                mismatches += 1;
            }
        }
        println!(
            "  {:<10} {:<10} {:<34} {:<24} {}",
            tx,
            e["outcome"]["kind"].as_str().unwrap_or(""),
            relay,
            at_nrc.and_then(|r| r.body["actie"].as_str()).unwrap_or("-"),
            at_nrc
                .and_then(|r| r.body["kenmerken"]["reden"].as_str())
                .unwrap_or("")
        );
    }
    let quarantine: Value = d
        .http
        .get(format!("{base}/api/v1/quarantine"))
        .header("X-Api-Key", ADMIN_KEY)
        .send()
        .await?
        .json()
        .await?;
    let quarantined = quarantine["quarantine"].as_array().map_or(0, Vec::len);
    println!(
        "\n  delivered: {delivered}, received by the NRC: {}, quarantined: {quarantined}",
        got.len()
    );
    handle.stop(true).await;
    running.await??;
    nrc.stop().await;
    if got.len() != expected || delivered != expected || mismatches > 0 {
        anyhow::bail!(
            "demo mismatch: expected {expected} notifications, NRC got {}, signrelay delivered {delivered}",
            got.len()
        );
    }
    println!("  summary matches what the NRC stand-in received: yes");
    Ok(())
}
