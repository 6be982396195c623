//! `signrelay demo`: the main job end to end on embedded defaults. A temporary store, an NRC
//! stand-in that prints what it receives, a PKIsigning platform stand-in, and scripted vendor
//! callbacks (GoSign: a duplicate, an early callback before its registration, a malformed one,
//! a conflicting report; PKIsigning: a completion and a refusal verified with its API, and a
//! callback its API contradicts), then a summary of what reached the NRC, checked against
//! signrelay's own records. GoSign's completions put their signed PDF into a DRC stand-in (a new
//! version of the trigger's document) before the NRC hears of them.

use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use crate::app::Application;
use crate::auth::AuthConfig;
use crate::config::{Config, Secret};
use crate::telemetry::LogFormat;
use crate::testkit::drc::DrcStandIn;
use crate::testkit::gosign::{soap_status_request, soap_work_notification, work_notification};
use crate::testkit::nrc::NrcStandIn;
use crate::testkit::pkisigning::PkisigningStandIn;
use crate::testkit::posten::{Certificates, Finish, PostenStandIn};

const NRC_SECRET: &str = "demo-nrc-secret";
const ADMIN_KEY: &str = "demo-admin-key-0123456789";
const GOSIGN_USER: &str = "gosign";
const GOSIGN_PASSWORD: &str = "demo-gosign-password";
const PKI_CLIENT: &str = "signrelay-demo";
const PKI_SECRET: &str = "demo-pkisigning-client-secret";
const PKI_PATH_TOKEN: &str = "demo-path-token-0123456789abcdefghij";
/// "%PDF-1.4 demo" in base64: the signed document GoSign sends inline.
const DEMO_PDF: &str = "JVBERi0xLjQgZGVtbw==";

struct Demo {
    http: reqwest::Client,
    base: String,
    drc: std::sync::Arc<DrcStandIn>,
    /// The DRC document of each transaction.
    documents: std::sync::Mutex<Vec<(String, String)>>,
}

impl Demo {
    async fn register(&self, tx: &str, zaak: &str) -> anyhow::Result<u16> {
        self.register_at("gosign", tx, zaak).await
    }

    async fn register_at(&self, vendor: &str, tx: &str, zaak: &str) -> anyhow::Result<u16> {
        let body = self.trigger(tx, zaak);
        let r = self
            .http
            .put(format!("{}/api/v1/transactions/{vendor}/{tx}", self.base))
            .header("X-Api-Key", ADMIN_KEY)
            .json(&body)
            .send()
            .await?;
        Ok(r.status().as_u16())
    }

    /// The trigger message the case application registers a transaction with: its document
    /// is in the DRC stand-in, in version 1.
    fn trigger(&self, tx: &str, zaak: &str) -> Value {
        let (doc, url) = self
            .drc
            .add_document("besluit.docx", b"PK unsigned besluit");
        self.documents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((tx.to_string(), doc.clone()));
        json!({
            "naam": format!("Ondertekening {tx}"),
            "eigenaar": "behandelaar@gemeente.example",
            "zaak": {"uuid": uuid::Uuid::new_v4(), "url": format!("https://zaken.gemeente.example/api/v1/zaken/{zaak}")},
            "documenten": [{"uuid": doc, "url": url, "titel": "Besluit", "versie": 1, "bestandsnaam": "besluit.docx"}],
            "ondertekenaars": [{"e-mail": "ondertekenaar@example.org", "voornaam": "Jan", "achternaam": "Jansen", "volgorde": 1, "authenticatie": null}]
        })
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

    /// Posts a webhook as PKIsigning does; answers the status and `result`.
    async fn pkisigning(&self, body: &Value) -> anyhow::Result<String> {
        let r = self
            .http
            .post(format!("{}/pkisigning/webhook/{PKI_PATH_TOKEN}", self.base))
            .json(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        Ok(format!("{status} {}", v["result"].as_str().unwrap_or("?")))
    }

    async fn register_posten(&self, tx: &str, zaak: &str, vendor: Value) -> anyhow::Result<u16> {
        let mut body = self.trigger(tx, zaak);
        body["vendor"] = vendor;
        let r = self
            .http
            .put(format!("{}/api/v1/transactions/posten/{tx}", self.base))
            .header("X-Api-Key", ADMIN_KEY)
            .json(&body)
            .send()
            .await?;
        Ok(r.status().as_u16())
    }

    /// Follows a browser's redirects; the chain of statuses and the final page's heading.
    async fn follow(&self, url: &str) -> anyhow::Result<(String, String)> {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mut url = url.to_string();
        let mut chain = Vec::new();
        for _ in 0..5 {
            let r = browser.get(&url).send().await?;
            chain.push(r.status().as_u16().to_string());
            match r.headers().get("location").and_then(|l| l.to_str().ok()) {
                Some(to) if r.status().is_redirection() => {
                    chain.push(to.to_string());
                    url = format!("{}{to}", self.base);
                }
                _ => {
                    let text = r.text().await?;
                    let h1 = text
                        .split("<h1>")
                        .nth(1)
                        .and_then(|t| t.split("</h1>").next())
                        .unwrap_or("")
                        .to_string();
                    return Ok((chain.join(" -> "), h1));
                }
            }
        }
        anyhow::bail!("too many redirects")
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
    // The DRC knows signrelay by the NRC's client id and secret (the default).
    let drc = std::sync::Arc::new(DrcStandIn::start_printing("signrelay", NRC_SECRET).await?);
    let pki = PkisigningStandIn::start(PKI_CLIENT, PKI_SECRET).await?;
    // Posten requires the organisation certificate: made here, with Posten's own CA.
    let certs = Certificates::generate()?;
    let cert_files = certs.write(dir.path())?;
    let posten = PostenStandIn::start(&certs, "123456789").await?;
    posten.pacing(Duration::from_millis(300), Duration::from_secs(600));
    let mut cfg = Config::default();
    cfg.log.format = LogFormat::Pretty;
    cfg.log.level = "error".into();
    // A port known before start: the NRC stand-in fetches the kanaal's page from signrelay's
    // public URL when the kanaal is created, as Open Notificaties does.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    cfg.server.listen = ([127, 0, 0, 1], port).into();
    cfg.server.public_url = format!("http://127.0.0.1:{port}");
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
    // GoSign's signed documents become new versions in the DRC before the NRC is notified.
    cfg.vendors.gosign.documents = crate::documents::DocumentsMode::Upload;
    cfg.drc.backoff_initial_ms = 50;
    let p = &mut cfg.vendors.pkisigning;
    p.enabled = true;
    p.auth = Some(AuthConfig::None);
    p.path_token = Some(Secret::Inline(PKI_PATH_TOKEN.into()));
    p.api_url = pki.api_url.clone();
    p.token_url = pki.token_url.clone();
    // The stand-in serves plain HTTP on loopback.
    p.allow_insecure_http = true;
    p.client_id = Some(PKI_CLIENT.into());
    p.client_secret = Some(Secret::Inline(PKI_SECRET.into()));
    p.backoff_initial_ms = 50;
    // A status the API does not show is contradicted at once (in service: after a while).
    p.verify_settle_secs = 0;
    let pn = &mut cfg.vendors.posten;
    pn.enabled = true;
    pn.api_url = posten.api_url.clone();
    pn.organization_number = posten.organization_number.clone();
    pn.client_certificate_pem = Some(cert_files.client_cert.clone());
    pn.client_key_pem = Some(cert_files.client_key.clone());
    pn.ca_certificate_pem = Some(cert_files.ca.clone());
    pn.poll_portal = true;
    pn.backoff_initial_ms = 50;
    cfg.validate()?;
    crate::telemetry::init_logging(&cfg.log);

    println!("signrelay demo");
    println!("  store:       {} (temporary)", cfg.store.path.display());
    println!("  NRC stand-in: {}", nrc.url);
    println!("  DRC stand-in: {}", drc.documenten);
    println!("  PKIsigning stand-in: {}", pki.api_url);
    println!("  Posten stand-in: {} (mutual TLS)", posten.api_url);
    let app = Application::build(cfg).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    println!("  signrelay:   {base}\n");
    let handle = app.handle();
    let running = tokio::spawn(app.run_until_stopped());
    let d = Demo {
        http: reqwest::Client::new(),
        base: base.clone(),
        drc: drc.clone(),
        documents: Default::default(),
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
        ("ENV-1004", "SIGN_PROCESS_ENDED + PDF, before registration", work_notification("ENV-1004", "SIGN_PROCESS_ENDED", None, Some(DEMO_PDF))),
        ("ENV-1002", "SIGN_PROCESS_ENDED after rejection (conflict)", work_notification("ENV-1002", "SIGN_PROCESS_ENDED", None, None)),
        ("ENV-1005", "malformed JSON", "{\"envelopeExternalId\": \"ENV-1005\", ".to_string()),
    ];
    for (env, what, body) in &steps {
        let answer = d.notify(env, body).await?;
        println!("  POST /gosign/rest/envelopes/{env}/notify  {what:<46} -> {answer}");
    }

    println!("\nGoSign calls back (SOAP, ch. 7):");
    println!(
        "  POST /gosign/soap  workNotification ENV-2001 SIGN_PROCESS_ENDED + PDF    -> {}",
        d.soap(soap_work_notification(
            "ENV-2001",
            "SIGN_PROCESS_ENDED",
            Some(DEMO_PDF)
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

    println!("\nPKIsigning posts its webhook (terminal statuses are checked with its API first):");
    let (done, declined, forged) = (
        "7d3f6a2e-1b4c-4e5f-9a8b-0c1d2e3f4a5b",
        "0b9e3c1a-5d7f-4a2b-8c6e-1f3a5b7c9d0e",
        "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
    );
    pki.dossier(done, "Completed", "key-completed");
    pki.dossier(declined, "Declined", "key-declined");
    pki.dossier(forged, "Active", "key-forged");
    for (tx, zaak) in [(done, "Z-7"), (declined, "Z-8"), (forged, "Z-9")] {
        println!(
            "  PUT  /api/v1/transactions/pkisigning/{tx} -> {}",
            d.register_at("pkisigning", tx, zaak).await?
        );
    }
    for (what, body) in [
        ("Completed", pki.webhook_body(done, "Completed", "")),
        (
            "Declined",
            pki.webhook_body(declined, "Declined", "bedrag klopt niet"),
        ),
        (
            "Completed, but PKIsigning shows Active",
            pki.webhook_body(forged, "Completed", ""),
        ),
    ] {
        println!(
            "  POST /pkisigning/webhook/***  {what:<40} -> {}",
            d.pkisigning(&body).await?
        );
    }

    println!("\nPosten: a signer comes back from a direct job; a portal job is polled:");
    let (job, status_url) = posten.direct_job("POSTEN-DIRECT-1", 1);
    println!(
        "  PUT  /api/v1/transactions/posten/POSTEN-DIRECT-1 -> {}",
        d.register_posten("POSTEN-DIRECT-1", "Z-10", json!({"status_url": status_url}))
            .await?
    );
    let token = posten.finish_direct(job, Finish::Signed);
    let (chain, page) = d
        .follow(&format!(
            "{base}/posten/direct/POSTEN-DIRECT-1/completion?status_query_token={token}"
        ))
        .await?;
    println!("  GET  /posten/direct/POSTEN-DIRECT-1/completion?status_query_token=*** -> {chain}");
    println!("       the browser shows: {page}");
    println!(
        "  PUT  /api/v1/transactions/posten/POSTEN-PORTAL-1 -> {}",
        d.register_at("posten", "POSTEN-PORTAL-1", "Z-11").await?
    );
    posten.queue_portal_change(
        Some("POSTEN-PORTAL-1"),
        "FAILED",
        &["SIGNED", "REJECTED"],
        None,
    );
    println!("  (Posten queues a change for POSTEN-PORTAL-1; signrelay polls, records, confirms)");

    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("\nLate registration releases the parked callback:");
    println!(
        "  PUT  /api/v1/transactions/gosign/ENV-1004 -> {}",
        d.register("ENV-1004", "Z-4").await?
    );

    let expected = 9;
    println!("\nNRC stand-in receives:");
    let got = nrc.wait_for(expected, Duration::from_secs(20)).await;
    println!(
        "  ({} notifications; kanaal created by signrelay: {})",
        got.len(),
        nrc.kanaal_creations() == 1
    );

    // signrelay records a job's result just after the party's answer (sharing the next
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
        "  {:<36} {:<10} {:<34} {:<24} reden",
        "transaction", "outcome", "relay", "NRC actie"
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
            "  {:<36} {:<10} {:<34} {:<24} {}",
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
    // Posten is told once a status is durable: the last confirmation follows the summary's
    // records by a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while posten.confirmed().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each GoSign completion's document holds its signed version, written before the NRC
    // heard of the completion.
    let mut signed_first = 0;
    let documents = d
        .documents
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (tx, doc) in &documents {
        let at_nrc = got.iter().find(|r| {
            r.body["kenmerken"]["transaction_id"] == tx.as_str()
                && r.body["actie"] == "OndertekenenVoltooid"
        });
        let versions = drc.versions(doc);
        if let (Some(n), Some(v)) = (at_nrc, versions.get(1)) {
            if tx.starts_with("ENV-") && versions.len() == 2 && v.begin_registratie < n.at {
                signed_first += 1;
            }
        }
    }
    println!("  signed versions in the DRC before the NRC heard of the completion: {signed_first}");
    handle.stop(true).await;
    running.await??;
    nrc.stop().await;
    pki.stop().await;
    let confirmed = posten.confirmed().len();
    posten.stop().await;
    anyhow::ensure!(
        confirmed >= 2,
        "Posten got {confirmed} confirmations, expected 2"
    );
    // ENV-1001 (REST), ENV-2001 (SOAP), ENV-1004 (released by its late registration).
    anyhow::ensure!(
        signed_first == 3,
        "{signed_first} of 3 GoSign completions had their signed version in the DRC first"
    );
    if got.len() != expected || delivered != expected || mismatches > 0 {
        anyhow::bail!(
            "demo mismatch: expected {expected} notifications, NRC got {}, signrelay delivered {delivered}",
            got.len()
        );
    }
    println!("  summary matches what the NRC stand-in received: yes");
    Ok(())
}
