//! Log scan: secrets and personal data seeded into requests on every surface never appear in
//! signrelay's logs. A test binary of its own, so that the capturing subscriber it installs is
//! the process's global one (signrelay logs through `tracing`; `telemetry::init_logging` is
//! never called in tests). Everything is captured at DEBUG, every target (signrelay, actix,
//! sled through `log`, the test's own HTTP client), in the JSON shape production uses, with
//! the current span and all parent spans.

#[path = "api/helpers.rs"]
mod helpers;

/// The log scan runs on the embedded store.
pub const BACKEND: signrelay::config::Backend = signrelay::config::Backend::Sled;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use helpers::*;
use serde_json::{json, Value};
use signrelay::auth::jwt::JwtProviderConfig;
use signrelay::auth::AuthConfig;
use signrelay::config::Secret;
use signrelay::testkit::nrc::Behaviour;
use signrelay::vendors::gosign::config::WorkabilityPolicy;
use tracing_subscriber::fmt::MakeWriter;

// The markers: each unique to this test, so that a hit can only come from what it seeded.
const BSN: &str = "999993653";
const EIGENAAR: &str = "logscan.eigenaar.q7x@breda.example";
const SIGNER_EMAIL: &str = "logscan.signer.q7x@some.example";
const PHONE: &str = "+31612349753";
const VOORNAAM: &str = "Logscanvoornaamq7x";
const ACHTERNAAM: &str = "Logscanachternaamq7x";
const NOTE: &str = "LOGSCAN-NOTE-q7x: te duur, bel mij";
const SOAP_NOTE: &str = "LOGSCAN-SOAPNOTE-q7x";
const MGR_NAME: &str = "Logscanmgrq7x";
const USER_EXT_ID: &str = "logscan-user-q7x";
const DOC_MARKER: &str = "LOGSCAN-DOCUMENT-q7x";
const ADMIN_SECRET: &str = "logscan-admin-key-q7x-0123456789";
const WRONG_ADMIN_KEY: &str = "logscan-wrong-admin-key-q7x-000";
const BASIC_USER: &str = "gosign";
const BASIC_SECRET: &str = "logscan-basic-password-q7x";
const WRONG_BASIC: &str = "logscan-wrong-password-q7x";
const SOAP_SECRET: &str = "logscan-soap-key-q7x-0123456789";
const WRONG_SOAP_KEY: &str = "logscan-wrong-soap-key-q7x-0000";
const BEARER_MARKER: &str = "logscan-bearer-q7x";
const QUERY_SECRET: &str = "logscan-query-token-q7x";
const LEGALBUS_MESSAGE: &str = "LOGSCAN-LEGALBUS-q7x";
const PKI_KEY: &str = "logscan-pki-authkey-q7x";
const PKI_PATH_TOKEN: &str = "logscan-pki-path-token-q7x-0123456789";
const PKI_CLIENT_SECRET: &str = "logscan-pki-client-secret-q7x";
const PKI_REASON: &str = "LOGSCAN-PKI-REASON-q7x";
const POSTEN_TOKEN: &str = "sqt-logscan-posten-token-q7x";
const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const WKNOTIF: &str = "http://www.infocert.it/smartsign/schema/wknotif";

/// The log lines, shared with the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

fn b64(s: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn b64url(s: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", b64(format!("{user}:{pass}")))
}

/// A JWT-shaped token carrying personal data and a marker (its signature is junk).
fn bearer_token() -> String {
    let header = b64url(json!({"alg": "RS256", "typ": "JWT", "kid": BEARER_MARKER}).to_string());
    let claims = b64url(
        json!({
            "iss": "http://127.0.0.1:9/logscan-idp",
            "sub": BEARER_MARKER,
            "email": SIGNER_EMAIL,
            "aud": "api://signrelay",
            "exp": 4_102_444_800u64,
            "nbf": 1_600_000_000u64,
        })
        .to_string(),
    );
    format!("{header}.{claims}.{}", b64url(BEARER_MARKER))
}

/// The trigger message with personal data everywhere it may carry some.
fn personal_trigger(zaak: &str) -> Value {
    let mut t = trigger(zaak);
    t["eigenaar"] = json!(EIGENAAR);
    t["ondertekenaars"] = json!([{
        "e-mail": SIGNER_EMAIL, "voornaam": VOORNAAM, "achternaam": ACHTERNAAM,
        "identificatie": BSN, "volgorde": 1,
        "authenticatie": {"methode": "sms", "waarde": PHONE}
    }]);
    t["vendor"] = json!({"bsn": BSN, "telefoon": PHONE});
    t
}

fn document_pdf() -> Vec<u8> {
    format!("%PDF-1.7\n{DOC_MARKER} {BSN}\n%%EOF\n").into_bytes()
}

fn soap_work(tx: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Body><ns2:workNotification xmlns:ns2="{WKNOTIF}"><envelopeExternalId>{tx}</envelopeExternalId><notificationType>ENVELOPE_REJECTED</notificationType><note>{SOAP_NOTE} {EIGENAAR} {PHONE}</note><documents><document><docExternalId>DOC-1</docExternalId><content><mime-type>application/pdf</mime-type><data>{doc}</data></content></document></documents><liveStatus><stepEvent><mgrExternalId>{USER_EXT_ID}</mgrExternalId><mgrName>{MGR_NAME}</mgrName><mgrSurname>{ACHTERNAAM}</mgrSurname><status>REJ</status><startedAt>2026-11-20T10:00:00Z</startedAt><endedAt>2026-11-20T10:05:00Z</endedAt><assignedTo>{VOORNAAM} ({USER_EXT_ID})</assignedTo><stepNumber>1</stepNumber></stepEvent></liveStatus></ns2:workNotification></soapenv:Body></soapenv:Envelope>"#,
        doc = b64(document_pdf())
    )
}

#[tokio::test]
async fn secrets_and_personal_data_never_reach_the_logs() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .try_init()
        .expect("the only subscriber in this test binary");

    let app = spawn_app_with(|c| {
        c.admin.auth = AuthConfig::ApiKey {
            header: "X-Api-Key".into(),
            key: Secret::Inline(ADMIN_SECRET.into()),
        };
        c.vendors.gosign.rest.auth = Some(AuthConfig::Basic {
            username: BASIC_USER.into(),
            password: Secret::Inline(BASIC_SECRET.into()),
        });
        c.vendors.gosign.soap.enabled = true;
        c.vendors.gosign.soap.auth = Some(AuthConfig::ApiKey {
            header: "X-GoSign-Key".into(),
            key: Secret::Inline(SOAP_SECRET.into()),
        });
        c.vendors.gosign.workability.policy = WorkabilityPolicy::Registry;
    })
    .await;
    let http = &app.client;
    let (rejected_tx, completed_tx, soap_tx) = ("LOGSCAN-REJ", "LOGSCAN-DONE", "LOGSCAN-SOAP");

    // The registry: valid, with a wrong key, with a bearer token only, invalid bodies.
    for tx in [rejected_tx, completed_tx, soap_tx] {
        let r = http
            .put(app.url(&format!("/api/v1/transactions/gosign/{tx}")))
            .header("X-Api-Key", ADMIN_SECRET)
            .json(&personal_trigger(&format!("zaak-{tx}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    let r = http
        .put(app.url("/api/v1/transactions/gosign/LOGSCAN-X"))
        .header("X-Api-Key", WRONG_ADMIN_KEY)
        .json(&personal_trigger("zaak-x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .get(app.url("/api/v1/events"))
        .header("Authorization", format!("Bearer {}", bearer_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let mut invalid = personal_trigger("zaak-x");
    invalid["zaak"]["url"] = json!(format!("mailto:{EIGENAAR}"));
    invalid["documenten"][0]["versie"] = json!(BSN.parse::<u64>().unwrap() * 100);
    let mut missing = personal_trigger("zaak-x");
    missing.as_object_mut().unwrap().remove("naam");
    let mut bad_url = personal_trigger("zaak-x");
    bad_url["zaak"]["url"] = json!(format!("mailto:{EIGENAAR}?bsn={BSN}"));
    for body in [
        invalid.to_string(),
        missing.to_string(),
        bad_url.to_string(),
        format!(r#"{{"eigenaar": "{EIGENAAR}", "naam": {BSN}"#),
    ] {
        let r = http
            .put(app.url("/api/v1/transactions/gosign/LOGSCAN-X"))
            .header("X-Api-Key", ADMIN_SECRET)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
    }

    // GoSign REST: a rejection with a note, a completion with a document, a malformed body,
    // wrong and missing credentials, a token in the query string.
    let notify = |tx: &str, body: String, auth: String| {
        http.post(app.url(&format!("/gosign/rest/envelopes/{tx}/notify")))
            .header("Authorization", auth)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let mut rejection = work(rejected_tx, "ENVELOPE_REJECTED");
    rejection["note"] = json!(format!("{NOTE} {SIGNER_EMAIL} {PHONE} {BSN}"));
    rejection["liveStatus"][0]["mgrName"] = json!(MGR_NAME);
    rejection["liveStatus"][0]["mgrExternalId"] = json!(USER_EXT_ID);
    let mut completion = work(completed_tx, "SIGN_PROCESS_ENDED");
    completion["documents"] = json!([{"docExternalId": "DOC-1",
        "content": {"mimeType": "application/pdf", "data": b64(document_pdf())}}]);
    for (tx, body) in [(rejected_tx, &rejection), (completed_tx, &completion)] {
        let r = notify(tx, body.to_string(), basic(BASIC_USER, BASIC_SECRET))
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["outcome"], "succeeded", "{v}");
        let r = notify(tx, body.to_string(), basic(BASIC_USER, WRONG_BASIC))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let r = notify(tx, body.to_string(), format!("Bearer {}", bearer_token()))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    let malformed = format!(r#"{{"envelopeExternalId": "{rejected_tx}", "note": "{NOTE} {BSN}", "#);
    let r = notify(rejected_tx, malformed, basic(BASIC_USER, BASIC_SECRET))
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["outcome"], "failed_please_discard");
    let wrong_type = format!(
        r#"{{"envelopeExternalId": "{rejected_tx}", "notificationType": {BSN}, "liveStatus": []}}"#
    );
    let r = notify(rejected_tx, wrong_type, basic(BASIC_USER, BASIC_SECRET))
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["outcome"], "failed_please_discard");
    let r = http
        .get(app.url(&format!(
            "/gosign/rest/status?access_token={QUERY_SECRET}&bsn={BSN}"
        )))
        .header("Authorization", basic(BASIC_USER, BASIC_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // GoSign SOAP and LegalBus: personal data in the envelope, right and wrong keys; a status
    // request naming a user.
    let soap = |path: &str, body: String, key: &str| {
        http.post(app.url(path))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"\"")
            .header("X-GoSign-Key", key)
            .body(body)
            .send()
    };
    let r = soap("/gosign/soap", soap_work(soap_tx), SOAP_SECRET)
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("<success>true</success>"));
    let r = soap("/gosign/soap", soap_work(soap_tx), WRONG_SOAP_KEY)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let unknown_type = soap_work(soap_tx).replace("ENVELOPE_REJECTED", "LOGSCAN_TYPE");
    let r = soap("/gosign/soap", unknown_type, SOAP_SECRET)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let status_request = format!(
        r#"<soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Body><ns2:getEnvelopeExternalStatusRequest xmlns:ns2="{WKNOTIF}"><userExtId>{USER_EXT_ID}</userExtId><envelopeExtIdList fromUserExtId="{SIGNER_EMAIL}">{soap_tx}</envelopeExtIdList></ns2:getEnvelopeExternalStatusRequest></soapenv:Body></soapenv:Envelope>"#
    );
    let r = soap("/gosign/soap", status_request, SOAP_SECRET)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let operation_done = format!(
        r#"<soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Body><e:OperationDone xmlns:e="http://www.infocert.it/legalbus/schema/evelopeevent"><OperationDoneEvent><ID>42</ID><command>insertEnvelope</command><extId>{soap_tx}</extId><details>{EIGENAAR} {BSN}</details><returnStatus><code>OK</code><message>{LEGALBUS_MESSAGE} {PHONE}</message></returnStatus></OperationDoneEvent></e:OperationDone></soapenv:Body></soapenv:Envelope>"#
    );
    let r = soap("/gosign/soap/events", operation_done, SOAP_SECRET)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // A workability check over REST names the user in its path.
    let r = http
        .get(app.url(&format!(
            "/gosign/rest/envelopes/{soap_tx}/managers/{USER_EXT_ID}/for/{SIGNER_EMAIL}/status"
        )))
        .header("Authorization", basic(BASIC_USER, BASIC_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Paths that match no route, or match one only as sent (a trailing slash), or are
    // malformed: what they carry (an e-mail address, a user id, a newline) never reaches the
    // log, on the request line nor on any other.
    let email_nl = format!("{SIGNER_EMAIL}%0A{USER_EXT_ID}");
    for path in [
        format!("/gosign/rest/envelopes/{soap_tx}/managers/{SIGNER_EMAIL}/status/"),
        format!(
            "/gosign/rest/envelopes/{soap_tx}/managers/{USER_EXT_ID}/for/{SIGNER_EMAIL}/status/"
        ),
        format!("/gosign/rest/envelopes/{soap_tx}/managers/{SIGNER_EMAIL}"),
        format!("/gosign/rest/{SIGNER_EMAIL}"),
        format!("/{SIGNER_EMAIL}/{BSN}"),
        format!("/api/v1/transactions/gosign/{SIGNER_EMAIL}/{BSN}"),
        format!("/api/v1/events/{SIGNER_EMAIL}"),
        format!("/api/v1/%ZZ{SIGNER_EMAIL}%"),
        format!("/gosign/soap/{SIGNER_EMAIL}"),
        format!("//gosign/rest/envelopes/{email_nl}/notify"),
        format!("/gosign/rest/envelopes/{soap_tx};{SIGNER_EMAIL}/notify"),
        format!("/openapi/{SIGNER_EMAIL}"),
    ] {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let r = http
                .request(method, app.url(&path))
                .header("Authorization", basic(BASIC_USER, BASIC_SECRET))
                .header("X-Api-Key", ADMIN_SECRET)
                .header("Content-Type", "application/json")
                .body(work(soap_tx, "SIGN_PROCESS_ENDED").to_string())
                .send()
                .await
                .unwrap();
            assert!(
                r.status().as_u16() < 500 || r.status().as_u16() == 503,
                "{path}"
            );
        }
    }
    // An envelope id that is not one (an e-mail address and a newline in it) on a route that
    // matches: quarantined, and neither the request line nor the quarantine line shows it.
    let bad_id = format!("{SIGNER_EMAIL}%0A{PHONE}");
    let mut body = work(soap_tx, "SIGN_PROCESS_ENDED");
    body["envelopeExternalId"] = json!(format!("{SIGNER_EMAIL}\n{PHONE}"));
    let r = notify(&bad_id, body.to_string(), basic(BASIC_USER, BASIC_SECRET))
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["outcome"], "failed_please_discard", "{v}");
    let r = soap(
        "/gosign/soap",
        soap_work(&format!("{SIGNER_EMAIL}&#10;{PHONE}")),
        SOAP_SECRET,
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 500);

    // The relay: a retry while the NRC fails, then the deliveries (the rejection's reden
    // carries the note to the NRC, as it must; the logs must not).
    app.nrc.set_behaviour(Behaviour::Fail {
        status: 503,
        retry_after: None,
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.nrc.set_behaviour(Behaviour::Accept);
    let got = app.nrc.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3, "deliveries");
    assert!(
        got.iter().any(|r| r.body["kenmerken"]["reden"]
            .as_str()
            .is_some_and(|s| s.contains(NOTE))),
        "the NRC gets the note"
    );

    // Operators read everything back (their answers carry the data; the logs must not).
    let events = {
        let r = http
            .get(app.url("/api/v1/events"))
            .header("X-Api-Key", ADMIN_SECRET)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["events"]
            .as_array()
            .cloned()
            .unwrap()
    };
    assert!(events.len() >= 4, "{events:#?}");
    for e in &events {
        let id = e["id"].as_str().unwrap();
        for path in [
            format!("/api/v1/events/{id}"),
            format!("/api/v1/events/{id}/payload"),
            format!("/api/v1/events/{id}/documents/0"),
        ] {
            http.get(app.url(&path))
                .header("X-Api-Key", ADMIN_SECRET)
                .send()
                .await
                .unwrap();
        }
    }
    for path in ["/api/v1/quarantine", "/api/v1/dead-letters"] {
        let r = http
            .get(app.url(path))
            .header("X-Api-Key", ADMIN_SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let r = http
        .get(app.url(&format!("/api/v1/transactions/gosign/{rejected_tx}")))
        .header("X-Api-Key", ADMIN_SECRET)
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains(EIGENAAR));
    app.stop().await;

    // GoSign REST behind bearer JWTs: a token with personal data in its claims, refused
    // (the identity provider is unreachable, so no key is ever trusted).
    let jwt_app = spawn_app_with(|c| {
        c.vendors.gosign.rest.auth = Some(AuthConfig::Jwt {
            providers: vec![JwtProviderConfig {
                issuer: "http://127.0.0.1:9/logscan-idp".into(),
                audiences: vec!["api://signrelay".into()],
                algorithms: vec!["RS256".into()],
                tenants: vec![],
                apps: vec![],
                roles: vec![],
                leeway_secs: 60,
                refresh_secs: 3600,
                unknown_kid_refetch_secs: 1,
                max_token_bytes: 8192,
                allow_insecure_http: true,
            }],
        });
    })
    .await;
    for auth in [
        format!("Bearer {}", bearer_token()),
        format!("Bearer {BEARER_MARKER}.{}", b64url(EIGENAAR)),
        format!("bearer   {}", bearer_token()),
        basic(BASIC_USER, BASIC_SECRET),
    ] {
        let r = jwt_app
            .client
            .post(jwt_app.url(&format!("/gosign/rest/envelopes/{completed_tx}/notify")))
            .header("Authorization", auth)
            .json(&completion)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    jwt_app.stop().await;

    // PKIsigning: webhooks whose key, reason and path token must stay out of the logs,
    // verified with the platform (token, client secret), one contradicted.
    let pki =
        signrelay::testkit::pkisigning::PkisigningStandIn::start("logscan", PKI_CLIENT_SECRET)
            .await
            .unwrap();
    let (api, token_url) = (pki.api_url.clone(), pki.token_url.clone());
    let pki_app = spawn_app_with(move |c| {
        let p = &mut c.vendors.pkisigning;
        p.enabled = true;
        p.auth = Some(AuthConfig::None);
        p.path_token = Some(Secret::Inline(PKI_PATH_TOKEN.into()));
        p.api_url = api;
        p.token_url = token_url;
        // The stand-in serves plain HTTP on loopback.
        p.allow_insecure_http = true;
        p.client_id = Some("logscan".into());
        p.client_secret = Some(Secret::Inline(PKI_CLIENT_SECRET.into()));
        p.verify_settle_secs = 0;
    })
    .await;
    let (pki_done, pki_forged) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    pki.dossier(&pki_done, "Declined", PKI_KEY);
    pki.dossier(&pki_forged, "Active", PKI_KEY);
    for tx in [&pki_done, &pki_forged] {
        let r = pki_app
            .client
            .put(pki_app.url(&format!("/api/v1/transactions/pkisigning/{tx}")))
            .header("X-Api-Key", ADMIN_KEY)
            .json(&personal_trigger("zaak-pki"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    let reason = format!("{PKI_REASON} {EIGENAAR} {PHONE}");
    for (tx, path) in [
        (&pki_done, format!("/pkisigning/webhook/{PKI_PATH_TOKEN}")),
        (&pki_forged, format!("/pkisigning/webhook/{PKI_PATH_TOKEN}")),
        (&pki_done, format!("/pkisigning/webhook/{PKI_PATH_TOKEN}x")),
    ] {
        let status = if tx == &pki_done {
            "Declined"
        } else {
            "Completed"
        };
        pki_app
            .client
            .post(pki_app.url(&path))
            .json(&json!({"PkisId": tx, "DossierStatus": status, "Reason": reason, "AuthenticationKey": PKI_KEY}))
            .send()
            .await
            .unwrap();
    }
    let got = pki_app.nrc.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "the verified refusal reaches the NRC");
    assert!(got[0].body["kenmerken"]["reden"]
        .as_str()
        .unwrap()
        .contains(PKI_REASON));
    pki_app
        .wait_events(&pki_forged, Duration::from_secs(10), |ev| {
            ev.iter().any(|e| e["relay"]["state"] == "not_relayed")
        })
        .await;
    pki_app.stop().await;
    pki.stop().await;

    // Posten: exit URLs carry status query tokens (one Posten issued, one forged); the fetch,
    // the confirmation and the pages must not log them.
    let posten_dir = tempfile::tempdir().unwrap();
    let certs = signrelay::testkit::posten::Certificates::generate().unwrap();
    let files = certs.write(posten_dir.path()).unwrap();
    let posten = signrelay::testkit::posten::PostenStandIn::start(&certs, "123456789")
        .await
        .unwrap();
    let (api, ca, cert, key) = (
        posten.api_url.clone(),
        files.ca.clone(),
        files.client_cert.clone(),
        files.client_key.clone(),
    );
    let posten_app = spawn_app_with(move |c| {
        let s = &mut c.vendors.posten;
        s.enabled = true;
        s.api_url = api;
        s.organization_number = "123456789".into();
        s.ca_certificate_pem = Some(ca);
        s.client_certificate_pem = Some(cert);
        s.client_key_pem = Some(key);
        s.redirect_wait_ms = 1000;
    })
    .await;
    let (job, status_url) = posten.direct_job("LOGSCAN-POSTEN", 1);
    let mut t = personal_trigger("zaak-posten");
    t["vendor"] = json!({"status_url": status_url});
    let r = posten_app
        .client
        .put(posten_app.url("/api/v1/transactions/posten/LOGSCAN-POSTEN"))
        .header("X-Api-Key", ADMIN_KEY)
        .json(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let issued = posten.finish_direct(job, signrelay::testkit::posten::Finish::Signed);
    for token in [issued.as_str(), POSTEN_TOKEN] {
        let r = posten_app
            .client
            .get(posten_app.url(&format!(
                "/posten/direct/LOGSCAN-POSTEN/completion?status_query_token={token}"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    assert_eq!(
        posten_app
            .nrc
            .wait_for(1, Duration::from_secs(10))
            .await
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    posten_app.stop().await;
    posten.stop().await;

    // The documents step: a signed PDF holding a BSN goes into a DRC stand-in for a trigger
    // full of personal data (a BSN in the file name too); then a DRC that refuses (its answer
    // goes to the dead letter, never to the log).
    let drc = signrelay::testkit::drc::DrcStandIn::start(NRC_CLIENT, NRC_SECRET, 4 << 20)
        .await
        .unwrap();
    let docs_app = spawn_app_with(|c| {
        c.vendors.gosign.documents = signrelay::documents::DocumentsMode::Upload;
        c.drc.backoff_initial_ms = 20;
        c.drc.backoff_max_secs = 1;
    })
    .await;
    for (tx, refused) in [("LOGSCAN-DRC", false), ("LOGSCAN-DRC-403", true)] {
        let (uuid, url) = drc.add_document(&format!("{BSN} {ACHTERNAAM}.docx"), b"unsigned");
        if refused {
            drc.set_vertrouwelijkheid(&uuid, "geheim");
            drc.limit_client(NRC_CLIENT, "openbaar");
        }
        let mut t = personal_trigger(&format!("zaak-{tx}"));
        t["documenten"] = json!([{"uuid": uuid, "url": url, "titel": format!("{VOORNAAM} {BSN}"),
            "versie": 1, "bestandsnaam": format!("{BSN} {ACHTERNAAM}.docx")}]);
        let r = docs_app
            .client
            .put(docs_app.url(&format!("/api/v1/transactions/gosign/{tx}")))
            .header("X-Api-Key", ADMIN_KEY)
            .json(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let mut done = work(tx, "SIGN_PROCESS_ENDED");
        done["documents"] = json!([{"docExternalId": uuid,
            "content": {"mimeType": "application/pdf", "data": b64(document_pdf())}}]);
        let (status, _) = docs_app.notify(tx, done.to_string()).await;
        assert_eq!(status, 200);
        let ev = docs_app
            .wait_events(tx, Duration::from_secs(10), |ev| {
                ev.iter().any(|e| {
                    e["relay"]["state"] == "delivered" || e["relay"]["state"] == "dead_lettered"
                })
            })
            .await;
        let want = if refused {
            "dead_lettered"
        } else {
            "delivered"
        };
        assert_eq!(ev[0]["relay"]["state"], want);
    }
    docs_app.stop().await;
    drc.stop().await;

    let text = logs.text();
    // The capture works: request lines and the app's own records are there.
    for expected in [
        "\"request done\"",
        "\"result\":\"recorded\"",
        "\"callback quarantined\"",
        "\"result\":\"registered\"",
        "\"caller refused\"",
        "\"result\":\"workability\"",
        "\"delivered to the NRC\"",
        "\"party\":\"drc\"",
        rejected_tx,
    ] {
        assert!(
            text.contains(expected),
            "no {expected} in the captured logs"
        );
    }
    let lines = text.lines().count();
    assert!(lines > 50, "only {lines} log lines captured");
    // Every request line names its path as a route template, or as no route at all.
    let paths: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request done")
        .map(|v| v["span"]["path"].as_str().unwrap_or("?").to_string())
        .collect();
    eprintln!("logged paths: {paths:#?}");
    for p in &paths {
        assert!(
            p == "(no route)" || p.split('/').all(|seg| !seg.contains(['@', '%', ';', '\n'])),
            "a path as sent: {p}"
        );
    }
    assert!(paths.contains("(no route)"), "{paths:?}");
    // A recorded callback is one line, the request's own, naming what operators look for.
    let recorded: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request done" && v["result"] == "recorded")
        .collect();
    assert!(!recorded.is_empty());
    for v in &recorded {
        for field in [
            "event_id",
            "vendor",
            "transaction_id",
            "outcome",
            "relay",
            "status",
        ] {
            assert!(!v[field].is_null(), "no {field} on {v}");
        }
    }

    let token = bearer_token();
    let issued_token = issued.clone();
    let markers: Vec<(&str, String)> = vec![
        ("Posten's status query token", issued_token),
        ("a forged status query token", POSTEN_TOKEN.into()),
        ("BSN", BSN.into()),
        ("eigenaar e-mail", EIGENAAR.into()),
        ("signer e-mail", SIGNER_EMAIL.into()),
        ("phone number", PHONE.into()),
        (
            "phone number (digits)",
            PHONE.trim_start_matches('+').into(),
        ),
        ("first name", VOORNAAM.into()),
        ("last name", ACHTERNAAM.into()),
        ("rejection note", "LOGSCAN-NOTE-q7x".into()),
        ("SOAP note", SOAP_NOTE.into()),
        ("manager name", MGR_NAME.into()),
        ("GoSign user id", USER_EXT_ID.into()),
        ("document bytes", DOC_MARKER.into()),
        ("document base64", b64(document_pdf())),
        ("LegalBus message", LEGALBUS_MESSAGE.into()),
        ("admin api-key", ADMIN_SECRET.into()),
        ("wrong admin api-key", WRONG_ADMIN_KEY.into()),
        ("basic password", BASIC_SECRET.into()),
        ("wrong basic password", WRONG_BASIC.into()),
        ("basic header", basic(BASIC_USER, BASIC_SECRET)),
        ("basic header (wrong)", basic(BASIC_USER, WRONG_BASIC)),
        ("soap api-key", SOAP_SECRET.into()),
        ("wrong soap api-key", WRONG_SOAP_KEY.into()),
        ("bearer token", token.clone()),
        (
            "bearer claims",
            token.split('.').nth(1).unwrap().to_string(),
        ),
        ("bearer marker", BEARER_MARKER.into()),
        ("query token", QUERY_SECRET.into()),
        ("NRC secret", NRC_SECRET.into()),
        ("PKIsigning AuthenticationKey", PKI_KEY.into()),
        ("PKIsigning path token", PKI_PATH_TOKEN.into()),
        ("PKIsigning client secret", PKI_CLIENT_SECRET.into()),
        ("PKIsigning reason", PKI_REASON.into()),
    ];
    let mut leaks = Vec::new();
    for (what, marker) in &markers {
        for line in text.lines().filter(|l| l.contains(marker.as_str())) {
            leaks.push(format!(
                "{what} ({marker}) in: {}",
                &line[..line.len().min(600)]
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} log lines leak seeded data:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    eprintln!(
        "log scan: {lines} lines, none with any of {} markers",
        markers.len()
    );
}
