use crate::helpers::*;

// The GoSign REST surface (integration methodology ch. 8), black-box over HTTP: the exact
// answers GoSign gets, what is recorded, and what the NRC stand-in receives.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use signrelay::auth::AuthConfig;
use signrelay::config::Secret;

const WAIT: Duration = Duration::from_secs(5);
const VOLTOOID: &str = "OndertekenenVoltooid";
const AFGEBROKEN: &str = "OndertekenenAfgebroken";
const RETRY_MESSAGE: &str = "the callback cannot be recorded now; please retry";

/// The WorkNotification example of the GoSign integration methodology, 8.3.1, verbatim.
const SEED_WORK: &str = r#"{
"envelopeExternalId": "string",
"notificationType": "SIGN_PROCESS_ENDED",
"note": "string",
"documents": [
{
"docExternalId": "string",
"content": {
"mimeType": "string",
"data": "string"
}
}
],
"liveStatus": [
{
"mgrExternalId": "string",
"fromMgrExternalId": "string",
"mgrName": "string",
"mgrSurname": "string",
"status": "string",
"startedAt": "2019-09-06T11:04:48.141Z",
"endedAt": "2019-09-06T11:04:48.141Z",
"assignedTo": "string",
"stepNumber": 0,
"actionResume": {
"actions": 0,
"signActions": 0,
"approveActions": 0,
"viewActions": 0,
"approvedActions": 0,
"initialsActions": 0,
"initialedActions": 0,
"signedActions": 0,
"confirmedActions": 0,
"graphometricActions": 0,
"filledGraphometricActions": 0
}
}
]
}"#;

/// The Extended-format example of the methodology, 8.3.2, verbatim (its `externalId` is
/// `ABCDE-123456-DEFR`; tests swap it for their own envelope id).
const SEED_EXTENDED: &str = r#"{
"externalId": "ABCDE-123456-DEFR",
"code": "TT0RJ62Y5",
"subject": "Invio sharepoint",
"status": "WKD",
"previousStatus": "PGS",
"starred": false,
"createdAt": 1573837182000,
"completedAt": 1573837225000,
"loadedByExtId": "mrossi",
"loadedByName":
{
"surname": "Rossi",
"name": "Mario",
"email": "mario.rossi@example.com",
"organizationUnit": null,
"title": null,
"timezone": "Europe/Rome",
"company": null,
"externalId": "mrossi"
},
"docClass":
{
"name": "CL02",
"label": "Classe 02",
"fields": [
{
"name": "FLD02_01",
"label": "Campo 02/01",
"type": "T",
"textValue": "cmp02",
"fieldOrder": 1
},
{
"name": "FLD02_02",
"label": "Campo 02/02",
"type": "D",
"dateValue": 1574722800000,
"fieldOrder": 2
},
{
"name": "FLD02_03",
"label": "Campo 02/03",
"type": "N",
"numericValue": 123.28,
"fieldOrder": 3
},
{
"name": "FLD02_04",
"label": "Campo 02/04",
"type": "L",
"textValue": "Opzione 02",
"fieldOrder": 4
},
{
"name": "FLD02_05",
"label": "Campo 02/05",
"type": "L",
"textValue": "Opzione multi 02|Opzione multi 03",
"fieldOrder": 5
}]
},
"process":
{
"status": "C",
"startedAt": 1573837214000,
"finishedAt": 1573837225000,
"liveStatus": [
{
"mgrExternalId": "abianchi",
"fromMgrExternalId": null,
"mgrName": "Anna",
"mgrSurname": "Bianchi",
"status": "WKD",
"startedAt": 1573837214000,
"endedAt": 1573837225000,
"assignedTo": "Bianchi Anna (abianchi)",
"stepNumber": 1,
"actionsResume":
{
"actions": 1,
"signActions": 0,
"signedActions": 0,
"approveActions": 1,
"approvedActions": 1,
"viewActions": 0,
"viewedActions": 0,
"batchSignedActions": 0,
"initialsActions": 0,
"initialedActions": 0,
"confirmedActions": 1,
"registerActions": 0,
"registeredActions": 0,
"filledFreeTextActions": 0,
"freeTextActions": 0,
"graphometricActions": 0,
"filledGraphometricActions": 0
}
}]
},
"type": "STD",
"expiresAt": 1577746800000,
"expiresAtTimezoneID": "Europe/Rome",
"note": null,
"corporateUseType": "C",
"sendingMode": "DRF",
"documents": [
{
"bytes": "JVBERi0xLjMK....TIKJSVFT0YK",
"title": "test3pagine",
"createdAt": 1573837209000,
"mimeType": "application/pdf",
"originalFname": "test3pagine.pdf",
"externalId": "BGTF-9876-KIDHS",
"docType": "D",
"docOrder": 0
}],
"commonMessage":
{
"subject": "Invio sharepoint",
"text": "Anna Bianchi sent you a new dossier"
},
"messages": [
{
"usrExtId": "abianchi",
"text": "Specific message to Anna"
}],
"usersInCC": [
{
"externalId": "lverdi",
"surname": "Verdi",
"name": "Luigi",
"email": "lverdi@example.com"
}],
"sysGenerator": "TST",
"trustLevelId": 3,
"notes": [
{
"text": "Example note",
"createdAt": 1574777671000,
"name": "Anna",
"surname": "Bianchi"
},
{
"text": "Mr. Verdi note",
"createdAt": 1574778076000,
"name": "Luigi",
"surname": "Verdi"
}]
}"#;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A SIGN_PROCESS_ENDED WorkNotification carrying the given documents inline.
fn completed_with_documents(envelope: &str, docs: &[(&str, &str, &[u8])]) -> String {
    let mut v = work(envelope, "SIGN_PROCESS_ENDED");
    v["documents"] = docs
        .iter()
        .map(|(id, mime, bytes)| {
            json!({"docExternalId": id, "content": {"mimeType": mime, "data": b64(bytes)}})
        })
        .collect();
    v.to_string()
}

/// The seed's Extended example with its envelope id replaced.
fn seed_extended(envelope: &str) -> String {
    let from = r#""externalId": "ABCDE-123456-DEFR""#;
    assert_eq!(SEED_EXTENDED.matches(from).count(), 1);
    SEED_EXTENDED.replacen(from, &format!(r#""externalId": "{envelope}""#), 1)
}

fn discard(message: &str) -> Value {
    json!({"outcome": "failed_please_discard", "message": message})
}

/// Posts a notification and asserts the exact answer `200 {"outcome":"succeeded"}`.
async fn notify_ok(app: &TestApp, envelope: &str, body: impl Into<reqwest::Body>) {
    let answer = app.notify(envelope, body).await;
    assert_eq!(
        answer,
        (200, json!({"outcome": "succeeded"})),
        "envelope {envelope}"
    );
}

/// The raw payload kept for an event or a quarantine entry.
async fn stored_payload(app: &TestApp, id: &str) -> Vec<u8> {
    let r = app
        .client
        .get(app.url(&format!("/api/v1/events/{id}/payload")))
        .header("X-Api-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.bytes().await.unwrap().to_vec()
}

/// `GET /api/v1/events/{id}/documents/{index}`: status, headers, body.
async fn document(app: &TestApp, event_id: &Value, index: usize) -> (u16, HeaderMap, Vec<u8>) {
    let id = event_id.as_str().unwrap();
    let r = app
        .client
        .get(app.url(&format!("/api/v1/events/{id}/documents/{index}")))
        .header("X-Api-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

/// A request to the GoSign surface with extra headers: status, headers, JSON body.
async fn gosign_call(
    app: &TestApp,
    route: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, HeaderMap, Value) {
    let url = app.url(&format!("/gosign/rest{route}"));
    let mut req = match body {
        Some(b) => app
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .body(b.to_string()),
        None => app.client.get(url),
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, h, v)
}

/// A POST over a bare TCP connection, with the request target exactly as given.
async fn raw_post(app: &TestApp, target: &str, body: &str) -> (u16, Value) {
    let (status, _, json) = raw_call(app, "POST", target, Some(body)).await;
    (status, json)
}

/// A request over a bare TCP connection, with the method and request target exactly as
/// given: status, headers (lower-cased names), JSON body (`Null` if none).
async fn raw_call(
    app: &TestApp,
    method: &str,
    target: &str,
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, Value) {
    raw_call_with(app, method, target, None, body).await
}

/// As `raw_call`, with this `Authorization` (if any).
async fn raw_call_with(
    app: &TestApp,
    method: &str,
    target: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.address.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut content = match body {
        Some(b) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ),
        None => String::new(),
    };
    if let Some(a) = authorization {
        content.push_str(&format!("Authorization: {a}\r\n"));
    }
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\n{content}Connection: close\r\n\r\n{}",
        body.unwrap_or_default()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut resp))
        .await
        .expect("answer in time")
        .unwrap();
    let resp = String::from_utf8(resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let (head, json) = resp.split_once("\r\n\r\n").unwrap();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (
        status,
        headers,
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

/// Decodes `%XX` escapes (the test's own, to know what id the server should see).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

// ---------------------------------------------------------------------------------------------
// WorkNotification format (8.3.1)

#[tokio::test]
async fn seed_work_notification_example_is_relayed_once_as_voltooid() {
    let app = spawn_app().await;
    let zaak = register_tx(&app, "gosign", "string").await;

    notify_ok(&app, "string", SEED_WORK).await;

    let e = delivered_event(&app, "string").await;
    assert_eq!(e["vendor"], "gosign");
    assert_eq!(e["surface"], "gosign.rest");
    assert_eq!(e["transaction_id"], "string");
    assert_eq!(e["outcome"], json!({"kind": "completed"}));
    assert_eq!(e["occurred_at"], "2019-09-06T11:04:48.141Z");
    // "string" is valid (unpadded) base64 of four bytes.
    assert_eq!(
        e["documents"],
        json!([{"external_id": "string", "mime_type": "string", "size": 4}])
    );
    assert_eq!(e["caller"], json!({"method": "none", "principal": null}));
    assert_notified(&app, "string", &zaak, VOLTOOID, None);
    assert_eq!(app.nrc.attempts(), 1);
    // The raw payload is kept byte for byte.
    let raw = stored_payload(&app, e["id"].as_str().unwrap()).await;
    assert_eq!(raw, SEED_WORK.as_bytes());
}

#[tokio::test]
async fn sign_and_va_process_ended_each_relay_one_voltooid() {
    let app = spawn_app().await;
    for (tx, kind) in [
        ("ENV-SIGN", "SIGN_PROCESS_ENDED"),
        ("ENV-VA", "VA_PROCESS_ENDED"),
    ] {
        let zaak = register_tx(&app, "gosign", tx).await;
        notify_ok(&app, tx, work(tx, kind).to_string()).await;
        let e = delivered_event(&app, tx).await;
        assert_eq!(e["outcome"], json!({"kind": "completed"}), "{kind}");
        assert_eq!(e["occurred_at"], "2026-11-20T10:05:00Z", "{kind}");
        assert_notified(&app, tx, &zaak, VOLTOOID, None);
    }
    assert_eq!(app.nrc.received().len(), 2);
    assert_eq!(app.nrc.attempts(), 2);
}

#[tokio::test]
async fn step_closed_is_recorded_as_progress_and_never_relayed() {
    let app = spawn_app().await;
    let tx = "ENV-STEP";
    let zaak = register_tx(&app, "gosign", tx).await;
    let mut body = work(tx, "STEP_CLOSED");
    body["liveStatus"].as_array_mut().unwrap().push(json!({
        "mgrExternalId": "lverdi", "mgrName": "Luigi", "mgrSurname": "Verdi", "status": "PGS",
        "startedAt": "2026-11-20T10:05:00Z", "assignedTo": "Verdi Luigi (lverdi)", "stepNumber": 2,
        "actionResume": {"actions": 1, "signActions": 1}
    }));

    notify_ok(&app, tx, body.to_string()).await;

    // `succeeded` means durable: the event is there at once.
    let ev = app.events(&format!("transaction_id={tx}")).await;
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(
        ev[0]["outcome"],
        json!({"kind": "progress", "detail": "stap afgerond (1/2)"})
    );
    assert_eq!(
        ev[0]["relay"],
        json!({"state": "not_relayed", "why": "progress"})
    );

    // The terminal report that follows is the only thing the NRC ever hears.
    notify_ok(&app, tx, work(tx, "SIGN_PROCESS_ENDED").to_string()).await;
    let ev = app
        .wait_events(tx, WAIT, |ev| {
            ev.iter().any(|e| e["relay"]["state"] == "delivered")
        })
        .await;
    assert_eq!(ev.len(), 2);
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
    assert_eq!(app.nrc.attempts(), 1);
}

#[tokio::test]
async fn envelope_rejected_relays_afgebroken_with_the_signers_note() {
    let app = spawn_app().await;
    let cases = [
        (
            "ENV-REJ",
            Some("Bedrag op pagina 2 klopt niet"),
            "geweigerd door ondertekenaar: Bedrag op pagina 2 klopt niet",
        ),
        ("ENV-REJ-BLANK", Some("   "), "geweigerd door ondertekenaar"),
        ("ENV-REJ-NONE", None, "geweigerd door ondertekenaar"),
    ];
    for (tx, note, reden) in cases {
        let zaak = register_tx(&app, "gosign", tx).await;
        let mut body = work(tx, "ENVELOPE_REJECTED");
        if let Some(n) = note {
            body["note"] = json!(n);
        }
        notify_ok(&app, tx, body.to_string()).await;
        let e = delivered_event(&app, tx).await;
        assert_eq!(e["outcome"], json!({"kind": "aborted", "reason": reden}));
        assert_notified(&app, tx, &zaak, AFGEBROKEN, Some(reden));
    }
    assert_eq!(app.nrc.received().len(), 3);
}

#[tokio::test]
async fn process_cancelled_relays_afgebroken_ingetrokken() {
    let app = spawn_app().await;
    let tx = "ENV-CANCEL";
    let zaak = register_tx(&app, "gosign", tx).await;
    let mut body = work(tx, "PROCESS_CANCELLED");
    // A note on a cancellation does not change the reason.
    body["note"] = json!("door het secretariaat");

    notify_ok(&app, tx, body.to_string()).await;

    let e = delivered_event(&app, tx).await;
    assert_eq!(
        e["outcome"],
        json!({"kind": "aborted", "reason": "ingetrokken"})
    );
    assert_notified(&app, tx, &zaak, AFGEBROKEN, Some("ingetrokken"));
    assert_eq!(app.nrc.attempts(), 1);
}

// ---------------------------------------------------------------------------------------------
// Extended format (8.3.2)

#[tokio::test]
async fn seed_extended_example_is_relayed_once_as_voltooid() {
    let app = spawn_app().await;
    let tx = "ENV-EXT-SEED";
    let zaak = register_tx(&app, "gosign", tx).await;

    notify_ok(&app, tx, seed_extended(tx)).await;

    let e = delivered_event(&app, tx).await;
    assert_eq!(e["outcome"], json!({"kind": "completed"}));
    // completedAt 1573837225000 (epoch ms).
    assert_eq!(e["occurred_at"], "2019-11-15T17:00:25Z");
    let docs = e["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["external_id"], "BGTF-9876-KIDHS");
    assert_eq!(docs[0]["mime_type"], "application/pdf");
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
    assert_eq!(app.nrc.attempts(), 1);
}

#[tokio::test]
async fn extended_closing_statuses_map_to_their_acties() {
    let app = spawn_app().await;
    let reject = "geweigerd door ondertekenaar: Niet akkoord";
    let cases = [
        ("X-WKD", "WKD", Some("PGS"), VOLTOOID, None),
        ("X-REJ", "REJ", Some("PGS"), AFGEBROKEN, Some(reject)),
        ("X-STP", "STP", None, AFGEBROKEN, Some("ingetrokken")),
        ("X-STO-WKD", "STO", Some("WKD"), VOLTOOID, None),
        ("X-STO-REJ", "STO", Some("REJ"), AFGEBROKEN, Some(reject)),
        (
            "X-STO-STP",
            "STO",
            Some("STP"),
            AFGEBROKEN,
            Some("ingetrokken"),
        ),
    ];
    let mut zaken = Vec::new();
    for (tx, status, previous, _, _) in cases {
        zaken.push(register_tx(&app, "gosign", tx).await);
        let mut body = extended(tx, status, previous);
        body["note"] = json!("Niet akkoord");
        notify_ok(&app, tx, body.to_string()).await;
    }
    app.nrc.wait_for(cases.len(), WAIT).await;
    for ((tx, status, previous, actie, reden), zaak) in cases.into_iter().zip(&zaken) {
        let e = delivered_event(&app, tx).await;
        assert_eq!(e["occurred_at"], "2019-11-15T17:00:25Z", "{tx}");
        let want = match reden {
            None => json!({"kind": "completed"}),
            Some(r) => json!({"kind": "aborted", "reason": r}),
        };
        assert_eq!(e["outcome"], want, "{status}/{previous:?}");
        assert_notified(&app, tx, zaak, actie, reden);
    }
    assert_eq!(app.nrc.received().len(), cases.len());
}

/// The seed's Extended example as a rejection: `status`/`previousStatus` as given, the notes'
/// texts replaced (Anna Bianchi's note first and older, Luigi Verdi's later), and
/// `rejected_by` (a step's mgrName) marked as the step that rejected.
fn seed_extended_rejected(
    envelope: &str,
    status: &str,
    previous: &str,
    rejected_by: Option<&str>,
) -> String {
    let mut v: Value = serde_json::from_str(&seed_extended(envelope)).unwrap();
    v["status"] = json!(status);
    v["previousStatus"] = json!(previous);
    v["notes"][0]["text"] = json!("Bedrag op pagina 2 klopt niet");
    v["notes"][1]["text"] = json!("Graag eerst de bijlage aanvullen");
    let steps = v["process"]["liveStatus"].as_array_mut().unwrap();
    assert_eq!(steps[0]["mgrName"], "Anna");
    let mut luigi = steps[0].clone();
    luigi["mgrName"] = json!("Luigi");
    luigi["mgrSurname"] = json!("Verdi");
    luigi["stepNumber"] = json!(2);
    steps.push(luigi);
    for step in steps.iter_mut() {
        if Some(step["mgrName"].as_str().unwrap()) == rejected_by {
            step["status"] = json!("REJ");
        }
    }
    v.to_string()
}

#[tokio::test]
async fn extended_rejection_relays_the_rejecting_note_from_notes() {
    let app = spawn_app().await;
    let anna = "geweigerd door ondertekenaar: Bedrag op pagina 2 klopt niet";
    let latest = "geweigerd door ondertekenaar: Graag eerst de bijlage aanvullen";
    // (envelope, status, previousStatus, the step that rejected, reden)
    let cases = [
        // The rejecter's own note, though another recipient wrote one later.
        ("X-NOTES-REJ", "REJ", "PGS", Some("Anna"), anna),
        ("X-NOTES-STO", "STO", "REJ", Some("Anna"), anna),
        // Who rejected cannot be told from the steps: the latest note.
        ("X-NOTES-LATEST", "REJ", "PGS", None, latest),
    ];
    let mut zaken = Vec::new();
    for (tx, status, previous, by, _) in cases {
        zaken.push(register_tx(&app, "gosign", tx).await);
        let body = seed_extended_rejected(tx, status, previous, by);
        assert!(
            body.contains(r#""note":null"#),
            "the only text is in notes[]"
        );
        notify_ok(&app, tx, body).await;
    }
    app.nrc.wait_for(cases.len(), WAIT).await;
    for ((tx, _, _, _, reden), zaak) in cases.into_iter().zip(&zaken) {
        let e = delivered_event(&app, tx).await;
        assert_eq!(
            e["outcome"],
            json!({"kind": "aborted", "reason": reden}),
            "{tx}"
        );
        assert_notified(&app, tx, zaak, AFGEBROKEN, Some(reden));
    }
    // The notes' writers and the payload's e-mail addresses never reach the NRC.
    for r in app.nrc.received() {
        let sent = r.body.to_string();
        for person in ["Anna", "Bianchi", "Luigi", "Verdi", "Mario", "@example.com"] {
            assert!(!sent.contains(person), "{person} in {sent}");
        }
    }
}

#[tokio::test]
async fn extended_sto_without_a_closing_previous_status_is_discarded() {
    let app = spawn_app().await;
    let tx = "X-STO";
    register_tx(&app, "gosign", tx).await;
    let message = "unknown status, or STO without a closing previousStatus";
    let bodies = [
        extended(tx, "STO", None).to_string(),
        extended(tx, "STO", Some("PGS")).to_string(),
        extended(tx, "not a status", None).to_string(),
    ];
    for body in &bodies {
        assert_eq!(
            app.notify(tx, body.clone()).await,
            (200, discard(message)),
            "{body}"
        );
    }
    let q = quarantine(&app).await;
    assert_eq!(q.len(), bodies.len(), "{q:#?}");
    for (entry, body) in q.iter().zip(&bodies) {
        assert_eq!(entry["reason"], message);
        assert_eq!(entry["vendor"], "gosign");
        assert_eq!(entry["surface"], "gosign.rest");
        let raw = stored_payload(&app, entry["id"].as_str().unwrap()).await;
        assert_eq!(raw, body.as_bytes());
    }
    assert!(app.events(&format!("transaction_id={tx}")).await.is_empty());
    assert!(app
        .nrc
        .wait_for(1, Duration::from_millis(300))
        .await
        .is_empty());
}

#[tokio::test]
async fn extended_non_closing_status_is_progress_and_not_relayed() {
    let app = spawn_app().await;
    let tx = "X-PGS";
    let zaak = register_tx(&app, "gosign", tx).await;

    notify_ok(&app, tx, extended(tx, "PGS", Some("DRF")).to_string()).await;

    let ev = app.events(&format!("transaction_id={tx}")).await;
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(
        ev[0]["outcome"],
        json!({"kind": "progress", "detail": "status PGS"})
    );
    assert_eq!(
        ev[0]["relay"],
        json!({"state": "not_relayed", "why": "progress"})
    );
    // Closing afterwards: only the closing status reaches the NRC.
    notify_ok(&app, tx, extended(tx, "WKD", Some("PGS")).to_string()).await;
    app.wait_events(tx, WAIT, |ev| {
        ev.iter().any(|e| e["relay"]["state"] == "delivered")
    })
    .await;
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
    assert_eq!(app.nrc.attempts(), 1);
}

// ---------------------------------------------------------------------------------------------
// The outcome contract

#[tokio::test]
async fn duplicate_deliveries_succeed_and_are_recorded_and_relayed_once() {
    let app = spawn_app().await;
    let tx = "ENV-DUP";
    let zaak = register_tx(&app, "gosign", tx).await;
    let body = work(tx, "SIGN_PROCESS_ENDED").to_string();

    // GoSign retrying while the first delivery is still in flight...
    let answers =
        futures_util::future::join_all((0..4).map(|_| app.notify(tx, body.clone()))).await;
    for a in answers {
        assert_eq!(a, (200, json!({"outcome": "succeeded"})));
    }
    // ...and again later, in either format.
    notify_ok(&app, tx, body.clone()).await;
    notify_ok(&app, tx, extended(tx, "STO", Some("WKD")).to_string()).await;

    let e = delivered_event(&app, tx).await;
    assert_eq!(e["outcome"], json!({"kind": "completed"}));
    notify_ok(&app, tx, body).await;
    assert_eq!(app.events(&format!("transaction_id={tx}")).await.len(), 1);
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
    assert_eq!(app.nrc.attempts(), 1);
    assert!(quarantine(&app).await.is_empty());
}

#[tokio::test]
async fn unprocessable_payloads_are_discarded_quarantined_and_never_relayed() {
    let app = spawn_app().await;
    let tx = "ENV-BAD";
    let zaak = register_tx(&app, "gosign", tx).await;
    let mismatch = "envelope id in the body differs from the one in the path";
    let mut no_steps = work(tx, "SIGN_PROCESS_ENDED");
    no_steps.as_object_mut().unwrap().remove("liveStatus");
    // (body, the exact message: categories and positions, never payload values)
    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            br#"{"envelopeExternalId": "ENV-BAD", notificationType: "SIGN_PROCESS_ENDED"}"#
                .to_vec(),
            "malformed JSON (syntax error at line 1 column 35)".into(),
        ),
        (
            br#"{"envelopeExternalId": "ENV-BAD", "notificationType": "SIGN_PRO"#.to_vec(),
            "malformed JSON (truncated at line 1 column 63)".into(),
        ),
        (
            format!("[{}]", work(tx, "SIGN_PROCESS_ENDED")).into_bytes(),
            "malformed JSON (unexpected type at line 1 column 1)".into(),
        ),
        (
            b"42".to_vec(),
            "malformed JSON (unexpected type at line 1 column 2)".into(),
        ),
        (
            Vec::new(),
            "malformed JSON (truncated at line 1 column 0)".into(),
        ),
        (
            b"{\"note\": \"\xff\xfe\"}".to_vec(),
            "malformed JSON (syntax error at line 1 column 11)".into(),
        ),
        (
            b"{}".to_vec(),
            "neither a WorkNotification (notificationType) nor an Extended (status) payload".into(),
        ),
        (
            work(tx, "ENVELOPE_EXPLODED").to_string().into_bytes(),
            "unknown notificationType".into(),
        ),
        (
            no_steps.to_string().into_bytes(),
            "missing field liveStatus".into(),
        ),
        (
            work("ENV-OTHER", "SIGN_PROCESS_ENDED")
                .to_string()
                .into_bytes(),
            mismatch.into(),
        ),
        (
            extended("ENV-OTHER", "WKD", None).to_string().into_bytes(),
            mismatch.into(),
        ),
    ];
    let mut wrong = Vec::new();
    for (body, message) in &cases {
        let (status, answer) = app.notify(tx, body.clone()).await;
        if (status, &answer) != (200, &discard(message)) {
            wrong.push(format!(
                "{}\n  got HTTP {status} {answer}\n  want {message:?}",
                String::from_utf8_lossy(body)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    let q = quarantine(&app).await;
    assert_eq!(q.len(), cases.len(), "{q:#?}");
    for entry in &q {
        assert_eq!(entry["vendor"], "gosign");
        assert_eq!(entry["surface"], "gosign.rest");
        assert_eq!(entry["caller"]["method"], "none");
    }
    for (body, message) in &cases {
        let mut found = false;
        for entry in q.iter().filter(|e| e["reason"] == message.as_str()) {
            if stored_payload(&app, entry["id"].as_str().unwrap()).await == *body {
                found = true;
            }
        }
        assert!(found, "not quarantined: {}", String::from_utf8_lossy(body));
    }
    assert!(app.events(&format!("transaction_id={tx}")).await.is_empty());
    assert!(app.events("").await.is_empty());

    // A valid notification afterwards is the only one the NRC receives.
    notify_ok(&app, tx, work(tx, "SIGN_PROCESS_ENDED").to_string()).await;
    delivered_event(&app, tx).await;
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
    assert_eq!(app.nrc.attempts(), 1);
}

/// The store cannot be written: GoSign hears `failed_please_retry`, never `succeeded` (nor
/// `failed_please_discard`, which would lose the callback).
///
/// Read-only permissions do not stop root, so the test breaks the store another way: payloads
/// over 64 KiB (inline documents) are archived as files under `<store>/payloads/`; with that
/// directory replaced by a plain file every archive write fails with ENOTDIR, for root too.
/// Small payloads go to sled's already-open files and cannot be made to fail from here.
#[tokio::test]
async fn unwritable_store_answers_retry_until_it_is_writable_again() {
    // sled's payload files; PostgreSQL's outage has its own test (tests/api_pg/outage.rs).
    if !only_on(Backend::Sled) {
        return;
    }
    let app = spawn_app().await;
    let tx = "ENV-DISK";
    let zaak = register_tx(&app, "gosign", tx).await;
    let payloads = app.store_path.join("payloads");
    assert!(payloads.is_dir(), "store layout changed: {payloads:?}");
    std::fs::remove_dir_all(&payloads).unwrap();
    std::fs::write(&payloads, b"not a directory").unwrap();

    let pdf = pdf_bytes(200 * 1024);
    let body = completed_with_documents(tx, &[("DOC-1", "application/pdf", pdf.as_slice())]);
    for _ in 0..3 {
        let answer = app.notify(tx, body.clone()).await;
        assert_eq!(
            answer,
            (
                200,
                json!({"outcome": "failed_please_retry", "message": RETRY_MESSAGE})
            )
        );
    }
    // An unprocessable payload that cannot be quarantined is not discarded either.
    let junk = format!(r#"{{"junk": "{}""#, "x".repeat(100 * 1024));
    assert_eq!(
        app.notify(tx, junk).await,
        (
            200,
            json!({"outcome": "failed_please_retry", "message": "the callback cannot be recorded now"})
        )
    );
    assert!(app.events(&format!("transaction_id={tx}")).await.is_empty());
    assert!(quarantine(&app).await.is_empty());
    assert!(app
        .nrc
        .wait_for(1, Duration::from_millis(200))
        .await
        .is_empty());

    // Writable again: GoSign's next retry succeeds, once.
    std::fs::remove_file(&payloads).unwrap();
    std::fs::create_dir(&payloads).unwrap();
    notify_ok(&app, tx, body.clone()).await;
    notify_ok(&app, tx, body).await;
    let e = delivered_event(&app, tx).await;
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
    let (status, _, bytes) = document(&app, &e["id"], 0).await;
    assert_eq!(status, 200);
    assert!(bytes == pdf, "document differs");
}

// ---------------------------------------------------------------------------------------------
// Inline documents and the body limit

#[tokio::test]
async fn inline_documents_are_listed_and_downloadable_intact() {
    let app = spawn_app().await;
    let tx = "ENV-DOCS";
    let zaak = register_tx(&app, "gosign", tx).await;
    let pdf = pdf_bytes(10_001);
    let xml = b"<?xml version=\"1.0\"?><bewijs>ondertekend</bewijs>\n".to_vec();
    let body = completed_with_documents(
        tx,
        &[
            ("BGTF-9876-KIDHS", "application/pdf", pdf.as_slice()),
            ("BGTF-9876-XML", "application/xml", xml.as_slice()),
        ],
    );

    notify_ok(&app, tx, body).await;

    let e = delivered_event(&app, tx).await;
    assert_eq!(
        e["documents"],
        json!([
            {"external_id": "BGTF-9876-KIDHS", "mime_type": "application/pdf", "size": pdf.len()},
            {"external_id": "BGTF-9876-XML", "mime_type": "application/xml", "size": xml.len()},
        ])
    );
    let (status, h, bytes) = document(&app, &e["id"], 0).await;
    assert_eq!(status, 200);
    assert_eq!(header_of(&h, "content-type"), "application/pdf");
    assert_eq!(header_of(&h, "x-document-id"), "BGTF-9876-KIDHS");
    assert_eq!(
        header_of(&h, "content-disposition"),
        "attachment; filename=\"document-0\""
    );
    assert!(bytes == pdf, "document 0 differs ({} bytes)", bytes.len());
    let (status, h, bytes) = document(&app, &e["id"], 1).await;
    assert_eq!(status, 200);
    assert_eq!(header_of(&h, "content-type"), "application/xml");
    assert_eq!(bytes, xml);
    let (status, _, _) = document(&app, &e["id"], 2).await;
    assert_eq!(status, 404);
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
}

#[tokio::test]
async fn document_near_the_body_limit_is_kept_and_one_over_it_gets_413() {
    let app = spawn_app_with(|c| c.vendors.gosign.rest.body_limit_mib = 2).await;
    const MIB: usize = 1024 * 1024;

    // ~1.9 MiB of JSON: a 1.42 MiB document, base64-encoded.
    let tx = "ENV-BIG";
    let zaak = register_tx(&app, "gosign", tx).await;
    let pdf = pdf_bytes(MIB * 19 / 10 * 3 / 4 - 1024);
    let body = completed_with_documents(tx, &[("BIG-1", "application/pdf", pdf.as_slice())]);
    assert!(
        body.len() > MIB * 18 / 10 && body.len() < 2 * MIB,
        "{}",
        body.len()
    );
    notify_ok(&app, tx, body).await;
    let e = delivered_event(&app, tx).await;
    assert_eq!(
        e["documents"],
        json!([{"external_id": "BIG-1", "mime_type": "application/pdf", "size": pdf.len()}])
    );
    let (status, h, bytes) = document(&app, &e["id"], 0).await;
    assert_eq!(status, 200);
    assert_eq!(header_of(&h, "content-type"), "application/pdf");
    assert_eq!(bytes.len(), pdf.len());
    assert!(bytes == pdf, "large document differs");
    assert_notified(&app, tx, &zaak, VOLTOOID, None);

    // 2.5 MiB: refused with a non-2xx status so that GoSign keeps the notification and retries.
    let tx = "ENV-HUGE";
    register_tx(&app, "gosign", tx).await;
    let pdf = pdf_bytes(MIB * 5 / 2 * 3 / 4);
    let body = completed_with_documents(tx, &[("HUGE-1", "application/pdf", pdf.as_slice())]);
    assert!(body.len() > MIB * 5 / 2, "{}", body.len());
    assert_eq!(
        app.notify(tx, body).await,
        (
            413,
            json!({"outcome": "failed_please_retry", "message": "body exceeds the limit of 2 MiB"})
        )
    );
    assert!(app.events(&format!("transaction_id={tx}")).await.is_empty());
    assert!(quarantine(&app).await.is_empty());
    assert_eq!(app.events("").await.len(), 1);
    assert_eq!(app.nrc.attempts(), 1);
}

// ---------------------------------------------------------------------------------------------
// Authentication (8.1)

/// Every refused variant on both routes: 401, the challenge, `{error, detail}`; nothing kept.
async fn assert_refused(
    app: &TestApp,
    tx: &str,
    challenge: &str,
    cases: &[(Vec<(&str, &str)>, &str)],
) {
    let body = work(tx, "SIGN_PROCESS_ENDED").to_string();
    let notify = format!("/envelopes/{tx}/notify");
    for (headers, code) in cases {
        let detail = match *code {
            "credentials_missing" => "no credentials were presented",
            "credentials_malformed" => "the credentials could not be parsed",
            "credentials_invalid" => "the credentials are not valid",
            other => panic!("{other}"),
        };
        for (route, body) in [("/status", None), (notify.as_str(), Some(body.as_str()))] {
            let (status, h, answer) = gosign_call(app, route, headers, body).await;
            assert_eq!(status, 401, "{route} {headers:?}: {answer}");
            assert_eq!(header_of(&h, "www-authenticate"), challenge);
            assert_eq!(
                answer,
                json!({"error": code, "detail": detail}),
                "{route} {headers:?}"
            );
        }
    }
    assert!(app.events(&format!("transaction_id={tx}")).await.is_empty());
    assert!(quarantine(app).await.is_empty());
}

/// GoSign's Basic credentials as the tests configure them.
fn gosign_basic() -> AuthConfig {
    AuthConfig::Basic {
        username: "gosign".into(),
        password: Secret::Inline("s3cret-Pa55word".into()),
    }
}

#[tokio::test]
async fn basic_auth_guards_status_and_notify() {
    let app = spawn_app_with(|c| c.vendors.gosign.rest.auth = Some(gosign_basic())).await;
    let tx = "ENV-BASIC";
    let zaak = register_tx(&app, "gosign", tx).await;
    let wrong_pass = basic("gosign", "s3cret-Pa55wor");
    let wrong_user = basic("GoSign", "s3cret-Pa55word");
    let longer = basic("gosign", "s3cret-Pa55word ");
    let no_colon = format!("Basic {}", b64(b"gosign"));
    let good = basic("gosign", "s3cret-Pa55word");
    let cases = vec![
        (vec![], "credentials_missing"),
        (vec![("X-Api-Key", ADMIN_KEY)], "credentials_missing"),
        (
            vec![("Authorization", "Bearer abc.def.ghi")],
            "credentials_missing",
        ),
        (
            vec![("Authorization", wrong_pass.as_str())],
            "credentials_invalid",
        ),
        (
            vec![("Authorization", wrong_user.as_str())],
            "credentials_invalid",
        ),
        (
            vec![("Authorization", longer.as_str())],
            "credentials_invalid",
        ),
        (
            vec![("Authorization", "Basic %%%")],
            "credentials_malformed",
        ),
        (
            vec![("Authorization", no_colon.as_str())],
            "credentials_malformed",
        ),
    ];
    assert_refused(
        &app,
        tx,
        r#"Basic realm="signrelay", charset="UTF-8""#,
        &cases,
    )
    .await;

    let auth = [("Authorization", good.as_str())];
    let (status, _, answer) = gosign_call(&app, "/status", &auth, None).await;
    assert_eq!((status, answer), (200, json!({"online": true})));
    let body = work(tx, "SIGN_PROCESS_ENDED").to_string();
    let (status, _, answer) =
        gosign_call(&app, &format!("/envelopes/{tx}/notify"), &auth, Some(&body)).await;
    assert_eq!((status, answer), (200, json!({"outcome": "succeeded"})));
    let e = delivered_event(&app, tx).await;
    assert_eq!(
        e["caller"],
        json!({"method": "basic", "principal": "gosign"})
    );
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
}

#[tokio::test]
async fn api_key_auth_guards_status_and_notify() {
    let key = "gosign-key-0123456789abcdef";
    let app = spawn_app_with(|c| {
        c.vendors.gosign.rest.auth = Some(AuthConfig::ApiKey {
            header: "X-GoSign-Key".into(),
            key: Secret::Inline(key.into()),
        })
    })
    .await;
    let tx = "ENV-KEY";
    let zaak = register_tx(&app, "gosign", tx).await;
    let longer = format!("{key}0");
    let basic_key = basic("gosign", key);
    let cases = vec![
        (vec![], "credentials_missing"),
        // The key in another header (the admin API's) is no key.
        (vec![("X-Api-Key", key)], "credentials_missing"),
        (
            vec![("Authorization", basic_key.as_str())],
            "credentials_missing",
        ),
        (vec![("X-GoSign-Key", "")], "credentials_invalid"),
        (
            vec![("X-GoSign-Key", &key[..key.len() - 1])],
            "credentials_invalid",
        ),
        (
            vec![("X-GoSign-Key", longer.as_str())],
            "credentials_invalid",
        ),
        (vec![("X-GoSign-Key", ADMIN_KEY)], "credentials_invalid"),
    ];
    assert_refused(&app, tx, r#"ApiKey realm="signrelay""#, &cases).await;

    // Header names are case-insensitive.
    let auth = [("x-gosign-key", key)];
    let (status, _, answer) = gosign_call(&app, "/status", &auth, None).await;
    assert_eq!((status, answer), (200, json!({"online": true})));
    let body = work(tx, "SIGN_PROCESS_ENDED").to_string();
    let (status, _, answer) =
        gosign_call(&app, &format!("/envelopes/{tx}/notify"), &auth, Some(&body)).await;
    assert_eq!((status, answer), (200, json!({"outcome": "succeeded"})));
    let e = delivered_event(&app, tx).await;
    assert_eq!(
        e["caller"],
        json!({"method": "api-key", "principal": "x-gosign-key"})
    );
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
}

// ---------------------------------------------------------------------------------------------
// Ping (8.2) and hostile paths

#[tokio::test]
async fn status_answers_online() {
    let app = spawn_app().await;
    let (status, h, answer) = gosign_call(&app, "/status", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"online": true}));
    assert!(header_of(&h, "content-type").starts_with("application/json"));
    assert!(!h.contains_key("www-authenticate"));
}

#[tokio::test]
async fn percent_encoded_envelope_id_is_decoded_before_matching() {
    let app = spawn_app().await;
    let tx = "2opbDxqSB8BX3137ulqdw2q9_Mw=";
    let zaak = register_tx(&app, "gosign", tx).await;

    notify_ok(
        &app,
        "2opbDxqSB8BX3137ulqdw2q9_Mw%3D",
        work(tx, "SIGN_PROCESS_ENDED").to_string(),
    )
    .await;

    let e = delivered_event(&app, "2opbDxqSB8BX3137ulqdw2q9_Mw%3D").await;
    assert_eq!(e["transaction_id"], tx);
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
}

#[tokio::test]
async fn hostile_envelope_ids_are_never_accepted() {
    let app = spawn_app().await;
    let bad_id = "envelope id is empty, too long or has control characters";
    let too_long = "E".repeat(257);
    let ids = [
        "..%2F..%2Fetc",
        "..%2F..%2Fetc%2Fpasswd",
        "%2F",
        "a%2Fb",
        "a%5Cb",
        "%5C..%5C..%5Cwindows",
        "%2E%2E",
        "..",
        "a%0Ab",
        "%0A",
        "%0D%0ASet-Cookie:%20x=1",
        "a%00b",
        "%09",
        "a%7Fb",
        "%C2%85",
        too_long.as_str(),
    ];
    // Decoded ids answered with a discard (the same id and body are quarantined once).
    let mut discarded = std::collections::BTreeSet::new();
    for id in ids {
        let decoded = percent_decode(id);
        // The body names the same id, so only the id itself can be the problem.
        let body = work(&decoded, "SIGN_PROCESS_ENDED").to_string();
        let (status, answer) = app.notify(id, body).await;
        assert_eq!(answer["outcome"], "failed_please_discard", "{id}: {answer}");
        match status {
            200 => {
                assert_eq!(answer["message"], bad_id, "{id}");
                discarded.insert(decoded);
            }
            // Routing never got to a notify (e.g. the client normalized "..").
            404 => assert_eq!(answer["message"], "no such GoSign route", "{id}"),
            other => panic!("{id}: HTTP {other} {answer}"),
        }
    }
    // reqwest normalizes "." and ".." segments away; send them as they are.
    for id in ["..", "%2E%2E", ".%2e", "."] {
        let body = work(&percent_decode(id), "SIGN_PROCESS_ENDED").to_string();
        let (status, answer) =
            raw_post(&app, &format!("/gosign/rest/envelopes/{id}/notify"), &body).await;
        assert_eq!((status, answer), (200, discard(bad_id)), "raw {id}");
        discarded.insert(percent_decode(id));
    }
    assert!(discarded.contains(".."), "{discarded:?}");
    assert!(discarded.contains("."), "{discarded:?}");
    // Every id but the two that reqwest normalized away, plus "." and "..", sent raw.
    assert_eq!(discarded.len(), (ids.len() - 2) + 2, "{discarded:?}");
    let q = quarantine(&app).await;
    assert_eq!(q.len(), discarded.len());
    assert!(q.iter().all(|e| e["reason"] == bad_id), "{q:#?}");
    assert!(app.events("").await.is_empty());
    // Still serving.
    let (status, _, answer) = gosign_call(&app, "/status", &[], None).await;
    assert_eq!((status, answer), (200, json!({"online": true})));
    notify_ok(&app, "E-OK", work("E-OK", "SIGN_PROCESS_ENDED").to_string()).await;
}

#[tokio::test]
async fn workability_refuses_the_ids_notify_refuses() {
    // The defaults: every envelope workable, unknown ones too; only the id can say no.
    let app = spawn_app().await;
    let invalid = json!({"workable": false, "reason": "ongeldige envelop- of gebruikers-id", "action": "NOP"});
    let workable = json!({"workable": true, "action": "NOP"});
    let too_long = "A".repeat(300);
    let longest = "A".repeat(256);
    let bad = [
        too_long.as_str(),
        "%2E%2E",
        "..",
        ".",
        "a%2Fb",
        "a%5Cb",
        "a%00b",
        "%0D%0ASet-Cookie:%20x=1",
        "%FF%FE",
    ];
    for id in bad {
        for target in [
            format!("/gosign/rest/envelopes/{id}/managers/u/status"),
            format!("/gosign/rest/envelopes/E-1/managers/{id}/status"),
            format!("/gosign/rest/envelopes/{id}/managers/u/for/o/status"),
            format!("/gosign/rest/envelopes/E-1/managers/u/for/{id}/status"),
        ] {
            let (status, _, answer) = raw_call(&app, "GET", &target, None).await;
            assert_eq!((status, &answer), (200, &invalid), "{target}");
        }
    }
    // The same ids are discarded by notify (`hostile_envelope_ids_are_never_accepted`); the
    // longest valid id and ordinary ones are answered by the policy.
    for id in [
        longest.as_str(),
        "E-1",
        "2opbDxqSB8BX3137ulqdw2q9_Mw%3D",
        "a%20b",
    ] {
        for target in [
            format!("/gosign/rest/envelopes/{id}/managers/{id}/status"),
            format!("/gosign/rest/envelopes/{id}/managers/{id}/for/{id}/status"),
        ] {
            let (status, _, answer) = raw_call(&app, "GET", &target, None).await;
            assert_eq!((status, &answer), (200, &workable), "{target}");
        }
    }
    let m = app.metrics().await;
    let refused = metric(
        &m,
        "signrelay_workability_decisions_total",
        &[("policy", "always"), ("result", "invalid_id")],
    );
    assert_eq!(refused, Some((bad.len() * 4) as f64), "{m}");
}

#[tokio::test]
async fn wrong_methods_answer_405_with_allow_with_or_without_credentials() {
    let app = spawn_app_with(|c| {
        c.vendors.gosign.rest.auth = Some(gosign_basic());
        c.vendors.gosign.soap.enabled = true;
        c.vendors.gosign.soap.auth = Some(AuthConfig::None);
    })
    .await;
    let body = work("E-1", "SIGN_PROCESS_ENDED").to_string();
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["TRACE", "POST", "DELETE", "PUT", "PATCH"],
            "/gosign/rest/status",
            "GET",
        ),
        (
            &["GET", "PUT", "DELETE", "TRACE"],
            "/gosign/rest/envelopes/E-1/notify",
            "POST",
        ),
        (
            &["POST", "DELETE"],
            "/gosign/rest/envelopes/E-1/managers/u/status",
            "GET",
        ),
        (
            &["POST", "PUT"],
            "/gosign/rest/envelopes/E-1/managers/u/for/o/status",
            "GET",
        ),
        (&["PUT", "DELETE"], "/gosign/soap", "GET, POST"),
        (&["PATCH"], "/gosign/soap/events", "GET, POST"),
    ];
    for (methods, target, allow) in cases {
        for method in *methods {
            for auth in [None, Some(basic("gosign", "wrong"))] {
                let with_body = (*method != "GET" && *method != "TRACE").then_some(body.as_str());
                let (status, headers, answer) =
                    raw_call_with(&app, method, target, auth.as_deref(), with_body).await;
                let what = format!("{method} {target} {auth:?}");
                assert_eq!(status, 405, "{what}: {answer}");
                let allowed: Vec<&str> = headers
                    .iter()
                    .filter(|(k, _)| k == "allow")
                    .map(|(_, v)| v.as_str())
                    .collect();
                assert_eq!(allowed, [*allow], "{what}");
                assert_eq!(answer["error"], "method_not_allowed", "{what}");
                assert!(
                    !headers.iter().any(|(k, _)| k == "www-authenticate"),
                    "{what}"
                );
            }
        }
    }
    // Nothing was taken for a callback; unknown routes stay 404 in GoSign's shape.
    assert!(quarantine(&app).await.is_empty());
    assert!(app.events("").await.is_empty());
    let (status, _, answer) = raw_call(&app, "GET", "/gosign/rest/nothing", None).await;
    assert_eq!((status, answer), (404, discard("no such GoSign route")));
}
