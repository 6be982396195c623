use crate::helpers::*;

// Hostile input on every surface: malformed and truncated JSON and XML, wrong types, huge
// numbers, deep nesting, bodies over the limit, DOCTYPEs with external entities and billion
// laughs, bytes that are not UTF-8, wrong content types, and path ids with traversal or control
// characters. Each request is sent as raw HTTP/1.1 (so that nothing is normalized on the way)
// and must get its surface's own clear error within a time bound; the server stays up and no
// input is recorded as a valid event.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use signrelay::auth::AuthConfig;
use signrelay::vendors::gosign::config::WorkabilityPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Time bound for each hostile request, from connecting to the whole answer.
const BOUND: Duration = Duration::from_secs(2);
const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const S12: &str = "http://www.w3.org/2003/05/soap-envelope";
const WKNOTIF: &str = "http://www.infocert.it/smartsign/schema/wknotif";
const EVENTS_NS: &str = "http://www.infocert.it/legalbus/schema/evelopeevent";
const CT11: &str = "text/xml; charset=utf-8";
const CT12: &str = "application/soap+xml; charset=utf-8";
const REST_TX: &str = "HOSTILE-1";

/// signrelay with every surface on: GoSign REST (1 MiB bodies), SOAP and LegalBus (1 MiB),
/// the registry and admin API, and the registry workability policy.
async fn hostile_app() -> TestApp {
    spawn_app_with(|c| {
        c.vendors.gosign.rest.body_limit_mib = 1;
        c.vendors.gosign.soap.enabled = true;
        c.vendors.gosign.soap.auth = Some(AuthConfig::None);
        c.vendors.gosign.soap.body_limit_mib = 1;
        c.vendors.gosign.workability.policy = WorkabilityPolicy::Registry;
        // Unknown envelopes not workable: no hostile id may hit a registered transaction.
        c.vendors.gosign.workability.unknown_envelopes_workable = false;
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client

enum Body {
    None,
    /// Sent with its Content-Length.
    Fixed(Vec<u8>),
    /// Sent chunked, so the server learns the size only while reading.
    Chunked(Vec<u8>),
}

#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends one request exactly as given and reads the answer (the server closes the connection
/// after it). Writing and reading run together: a server may answer before the body is in.
async fn raw(
    app: &TestApp,
    method: &str,
    target: &[u8],
    headers: &[(&str, &str)],
    body: Body,
) -> Result<Answer, String> {
    let addr = app.address.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = stream.into_split();
    let mut head = Vec::new();
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(target);
    head.extend_from_slice(b" HTTP/1.1\r\nHost: signrelay\r\n");
    for (k, v) in headers {
        head.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    let payload = match body {
        Body::None => Vec::new(),
        Body::Fixed(b) => {
            head.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
            b
        }
        Body::Chunked(b) => {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            let mut out = Vec::new();
            for chunk in b.chunks(64 * 1024) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        }
    };
    head.extend_from_slice(b"\r\n");
    let writer = tokio::spawn(async move {
        // The server may stop reading (and close) once it has answered: not an error here.
        let _ = wr.write_all(&head).await;
        let _ = wr.write_all(&payload).await;
        wr
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let parsed = loop {
        if let Some(a) = parse_answer(&buf, false) {
            break Some(a);
        }
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break parse_answer(&buf, true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    writer.abort();
    parsed.ok_or_else(|| {
        format!(
            "no complete answer; got {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(300)])
        )
    })
}

/// A whole response in `buf`, if there is one: its head and a Content-Length body, or with
/// no Content-Length, what came until the server closed (`eof`).
fn parse_answer(buf: &[u8], eof: bool) -> Option<Answer> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let body = &buf[end + 4..];
    let status = head.get(9..12)?.parse().ok()?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let len: usize = match header("content-length") {
        Some(l) => l.parse().ok()?,
        None if eof || status == 204 => body.len(),
        None => return None,
    };
    (body.len() >= len).then(|| Answer {
        status,
        content_type: header("content-type").unwrap_or_default(),
        body: String::from_utf8_lossy(&body[..len]).into_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// Cases and what each surface answers

/// What a surface must answer.
#[derive(Debug, Clone)]
enum Expect {
    /// GoSign REST: 200 `failed_please_discard` with a message starting so.
    Discard(&'static str),
    /// GoSign REST: 413 `failed_please_retry` (GoSign retries while the limit is raised).
    RestTooLarge,
    /// A SOAP Client fault in the version of the content type, its reason starting so:
    /// 500 with `soap:Client` (1.1), 400 with `env:Sender` (1.2).
    SoapClient(&'static str),
    /// A SOAP Server fault with 413.
    SoapTooLarge,
    /// `application/problem+json` with this status and problem type.
    Problem(u16, &'static str),
    /// An admin query that filters on a free text: a 200 with no events.
    NoEvents,
    /// A GoSign workability answer: not workable (the envelope cannot have been registered).
    NotWorkable,
    /// No GoSign route matched: 404 in GoSign's own shape.
    NoGosignRoute,
    /// The HTTP layer refuses the request itself with this status.
    Http(u16),
}

struct Case {
    name: String,
    method: &'static str,
    target: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    body: Body,
    expect: Expect,
}

impl Case {
    fn new(name: impl Into<String>, method: &'static str, target: impl AsRef<[u8]>) -> Case {
        Case {
            name: name.into(),
            method,
            target: target.as_ref().to_vec(),
            headers: Vec::new(),
            body: Body::None,
            expect: Expect::Http(400),
        }
    }

    fn header(mut self, k: &'static str, v: impl Into<String>) -> Case {
        self.headers.push((k, v.into()));
        self
    }

    fn body(mut self, b: impl AsRef<[u8]>) -> Case {
        self.body = Body::Fixed(b.as_ref().to_vec());
        self
    }

    fn chunked(mut self, b: impl AsRef<[u8]>) -> Case {
        self.body = Body::Chunked(b.as_ref().to_vec());
        self
    }

    fn expect(mut self, e: Expect) -> Case {
        self.expect = e;
        self
    }
}

/// Checks one answer against what its surface must say; `None` when it does.
fn verdict(case: &Case, a: &Answer) -> Option<String> {
    let ct = a.content_type.as_str();
    let v = a.json();
    let soap_ct = case
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    let v12 = soap_ct.starts_with("application/soap+xml");
    let ok = match &case.expect {
        Expect::Discard(prefix) => {
            a.status == 200
                && ct == "application/json"
                && v["outcome"] == "failed_please_discard"
                && v["message"].as_str().is_some_and(|m| m.starts_with(prefix))
        }
        Expect::RestTooLarge => {
            a.status == 413
                && v["outcome"] == "failed_please_retry"
                && v["message"] == "body exceeds the limit of 1 MiB"
        }
        Expect::SoapClient(prefix) => {
            let (status, code, want_ct) = if v12 {
                (400, "<env:Value>env:Sender</env:Value>", CT12)
            } else {
                (500, "<faultcode>soap:Client</faultcode>", CT11)
            };
            let reason = if v12 {
                a.body
                    .split_once("xml:lang=\"en\">")
                    .map(|(_, r)| r)
                    .unwrap_or("")
            } else {
                a.body
                    .split_once("<faultstring>")
                    .map(|(_, r)| r)
                    .unwrap_or("")
            };
            a.status == status
                && ct == want_ct
                && a.body.contains(code)
                && reason.starts_with(prefix)
        }
        Expect::SoapTooLarge => {
            a.status == 413
                && a.body.contains("body exceeds the limit of 1 MiB")
                && (a.body.contains("<faultcode>soap:Server</faultcode>")
                    || a.body.contains("<env:Value>env:Receiver</env:Value>"))
        }
        Expect::Problem(status, kind) => {
            a.status == *status
                && ct == "application/problem+json"
                && v["type"] == format!("urn:signrelay:problem:{kind}").as_str()
                && v["status"] == *status
        }
        Expect::NoEvents => {
            a.status == 200 && v["events"] == json!([]) && v["next_after"].is_null()
        }
        Expect::NotWorkable => a.status == 200 && v["workable"] == false && v["action"].is_string(),
        Expect::NoGosignRoute => {
            a.status == 404
                && v == json!({"outcome": "failed_please_discard", "message": "no such GoSign route"})
        }
        Expect::Http(status) => a.status == *status,
    };
    (!ok).then(|| {
        format!(
            "{}: want {:?}, got HTTP {} {ct} {}",
            case.name,
            case.expect,
            a.status,
            &a.body[..a.body.len().min(400)]
        )
    })
}

/// Runs every case, each within `BOUND`; returns the failures (and the slowest case).
async fn run(app: &TestApp, cases: Vec<Case>) -> (Vec<String>, Duration) {
    let mut wrong = Vec::new();
    let mut slowest = Duration::ZERO;
    for case in cases {
        let headers: Vec<(&str, &str)> =
            case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = match &case.body {
            Body::None => Body::None,
            Body::Fixed(b) => Body::Fixed(b.clone()),
            Body::Chunked(b) => Body::Chunked(b.clone()),
        };
        let started = Instant::now();
        let answer =
            tokio::time::timeout(BOUND, raw(app, case.method, &case.target, &headers, body)).await;
        slowest = slowest.max(started.elapsed());
        match answer {
            Err(_) => wrong.push(format!("{}: no answer within {BOUND:?}", case.name)),
            Ok(Err(e)) => wrong.push(format!("{}: {e}", case.name)),
            Ok(Ok(a)) => wrong.extend(verdict(&case, &a)),
        }
    }
    (wrong, slowest)
}

/// After the corpus: still serving, and nothing recorded as a valid event.
async fn still_serving_and_nothing_recorded(app: &TestApp) {
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let events = app.events("limit=1000").await;
    assert!(events.is_empty(), "recorded as valid: {events:#?}");
    assert!(app.nrc.received().is_empty());
    // A valid callback still goes all the way.
    assert_eq!(app.register(REST_TX, "zaak-hostile").await.status(), 201);
    let (status, answer) = app
        .notify(REST_TX, work(REST_TX, "SIGN_PROCESS_ENDED").to_string())
        .await;
    assert_eq!((status, answer), (200, json!({"outcome": "succeeded"})));
    assert_eq!(app.nrc.wait_for(1, Duration::from_secs(5)).await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Inputs

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_objects(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

fn nested_xml(depth: usize) -> String {
    format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth))
}

/// 10^9 "lol"s from a few hundred bytes, in a SOAP envelope.
fn billion_laughs(body: &str) -> String {
    let entities: String = (1..10)
        .map(|i| {
            let prev = if i == 1 {
                "&lol;".to_string()
            } else {
                format!("&lol{};", i - 1)
            };
            format!(r#"<!ENTITY lol{i} "{}">"#, prev.repeat(10))
        })
        .collect();
    format!(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">{entities}]><soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
    )
}

fn utf16le(s: &str) -> Vec<u8> {
    let mut out = vec![0xff, 0xfe];
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

fn envelope(ns: &str, body: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="{ns}"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
    )
}

fn work_xml(tx: &str) -> String {
    format!(
        r#"<ns2:workNotification xmlns:ns2="{WKNOTIF}"><envelopeExternalId>{tx}</envelopeExternalId><notificationType>SIGN_PROCESS_ENDED</notificationType><liveStatus><stepEvent><mgrName>Anna</mgrName><mgrSurname>Bianchi</mgrSurname><status>WKD</status><startedAt>2026-11-20T10:00:00Z</startedAt><stepNumber>1</stepNumber></stepEvent></liveStatus></ns2:workNotification>"#
    )
}

fn operation_done_xml(ext_id: &str) -> String {
    format!(
        r#"<e:OperationDone xmlns:e="{EVENTS_NS}"><OperationDoneEvent><ID>42</ID><command>insertEnvelope</command><extId>{ext_id}</extId><returnStatus><code>KO</code><message>m</message></returnStatus></OperationDoneEvent></e:OperationDone>"#
    )
}

/// The XML corpus for one SOAP endpoint: `op` is a valid operation element for it.
fn xml_corpus(surface: &str, path: &'static str, op: &str) -> Vec<Case> {
    let good = envelope(S11, op);
    let mut cases: Vec<(String, Vec<u8>, Expect)> = vec![
        (
            "10 000-deep XML in the Body".into(),
            envelope(S11, &nested_xml(10_000)).into_bytes(),
            Expect::SoapClient("XML nested too deeply"),
        ),
        (
            "10 000-deep XML as the document".into(),
            nested_xml(10_000).into_bytes(),
            Expect::SoapClient("XML nested too deeply"),
        ),
        (
            "200 000 sibling elements".into(),
            envelope(S11, &format!("<a>{}</a>", "<b/>".repeat(200_000))).into_bytes(),
            Expect::SoapClient("too many XML elements"),
        ),
        (
            "billion laughs".into(),
            billion_laughs("<lolz>&lol9;</lolz>").into_bytes(),
            Expect::SoapClient("DOCTYPE is not allowed"),
        ),
        (
            "external entity (file)".into(),
            format!(
                r#"<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>{}"#,
                envelope(S11, &op.replacen("KO", "&xxe;", 1))
            )
            .into_bytes(),
            Expect::SoapClient("DOCTYPE is not allowed"),
        ),
        (
            "external parameter entity (network)".into(),
            format!(
                r#"<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>{good}"#
            )
            .into_bytes(),
            Expect::SoapClient("DOCTYPE is not allowed"),
        ),
        (
            "undefined entity".into(),
            good.replacen("<soapenv:Body>", "<soapenv:Body>&secret;", 1)
                .into_bytes(),
            Expect::SoapClient("undefined entity reference"),
        ),
        (
            "UTF-16 with a byte-order mark".into(),
            utf16le(&good),
            Expect::SoapClient("body is not UTF-8"),
        ),
        (
            "\\xff\\xfe inside a text".into(),
            good.replacen("<soapenv:Body>", "<soapenv:Body>\u{1}", 1)
                .into_bytes()
                .into_iter()
                .flat_map(|b| if b == 1 { vec![0xff, 0xfe] } else { vec![b] })
                .collect(),
            Expect::SoapClient("body is not UTF-8"),
        ),
        (
            "truncated".into(),
            good.as_bytes()[..good.len() / 2].to_vec(),
            Expect::SoapClient(""),
        ),
        (
            "empty body".into(),
            Vec::new(),
            Expect::SoapClient("no XML document element"),
        ),
        (
            "JSON".into(),
            work(REST_TX, "SIGN_PROCESS_ENDED").to_string().into_bytes(),
            Expect::SoapClient("text outside the document element"),
        ),
        (
            "processing instruction".into(),
            good.replacen("<soapenv:Body>", "<soapenv:Body><?php system('id'); ?>", 1)
                .into_bytes(),
            Expect::SoapClient("processing instructions are not allowed"),
        ),
        (
            "undeclared prefix".into(),
            good.replace("xmlns:soapenv", "xmlns:other").into_bytes(),
            Expect::SoapClient("undeclared namespace prefix"),
        ),
        (
            "not a SOAP envelope".into(),
            op.as_bytes().to_vec(),
            Expect::SoapClient("not a SOAP envelope"),
        ),
    ];
    // Ids with traversal and control characters, written as character references.
    for (what, id) in [
        ("traversal", "..&#47;..&#47;etc&#47;passwd"),
        ("a newline", "ENV&#10;Set-Cookie: x=1"),
        ("a NUL", "ENV&#0;"),
        ("a backslash", "..&#92;..&#92;windows"),
    ] {
        let id_op = if surface == "legalbus" {
            operation_done_xml(id)
        } else {
            work_xml(id)
        };
        let expect = if id.contains("&#0;") {
            Expect::SoapClient("invalid character reference")
        } else {
            Expect::SoapClient("envelope id is empty, too long or has control characters")
        };
        cases.push((
            format!("envelope id with {what}"),
            envelope(S11, &id_op).into_bytes(),
            expect,
        ));
    }
    let mut out = Vec::new();
    for (name, body, expect) in cases {
        // The same body as SOAP 1.1 and (with the 1.2 namespace) as SOAP 1.2.
        let v12 = String::from_utf8(body.clone())
            .map(|s| s.replace(S11, S12).into_bytes())
            .unwrap_or_else(|_| body.clone());
        out.push(
            Case::new(format!("{surface} 1.1 {name}"), "POST", path)
                .header("Content-Type", CT11)
                .header("SOAPAction", "\"\"")
                .body(body)
                .expect(expect.clone()),
        );
        out.push(
            Case::new(format!("{surface} 1.2 {name}"), "POST", path)
                .header("Content-Type", CT12)
                .body(v12)
                .expect(expect),
        );
    }
    // Wrong content types with bodies that are not SOAP either.
    for (ct, body, reason) in [
        (
            "text/plain",
            "SIGN_PROCESS_ENDED please".to_string(),
            "text outside the document element",
        ),
        (
            "application/x-www-form-urlencoded",
            "envelopeExternalId=ENV-1&notificationType=SIGN_PROCESS_ENDED".to_string(),
            "text outside the document element",
        ),
        (
            "application/json",
            "{\"a\": 1}".to_string(),
            "text outside the document element",
        ),
    ] {
        out.push(
            Case::new(format!("{surface} as {ct}"), "POST", path)
                .header("Content-Type", ct)
                .body(body)
                .expect(Expect::SoapClient(reason)),
        );
    }
    // Over the limit, declared and chunked.
    let big = envelope(S11, &format!("<a>{}</a>", "x".repeat(1024 * 1024 + 1)));
    out.push(
        Case::new(format!("{surface} over the limit"), "POST", path)
            .header("Content-Type", CT11)
            .body(&big)
            .expect(Expect::SoapTooLarge),
    );
    out.push(
        Case::new(format!("{surface} over the limit, chunked"), "POST", path)
            .header("Content-Type", CT12)
            .chunked(&big)
            .expect(Expect::SoapTooLarge),
    );
    out
}

// ---------------------------------------------------------------------------------------------
// The tests, one per surface

#[tokio::test]
async fn gosign_rest_notify_refuses_hostile_bodies() {
    let app = hostile_app().await;
    let target = format!("/gosign/rest/envelopes/{REST_TX}/notify");
    let valid = work(REST_TX, "SIGN_PROCESS_ENDED");
    let with = |field: &str, raw_value: &str| {
        // `valid` with one field replaced by raw JSON text.
        let mut v = valid.clone();
        v[field] = json!("\u{1}");
        v.to_string().replace("\"\\u0001\"", raw_value)
    };
    let with_step = |field: &str, raw_value: &str| {
        let mut v = valid.clone();
        v["liveStatus"][0][field] = json!("\u{1}");
        v.to_string().replace("\"\\u0001\"", raw_value)
    };
    let extended_completed =
        |raw: &str| format!(r#"{{"externalId":"{REST_TX}","status":"WKD","completedAt":{raw}}}"#);
    let valid_text = valid.to_string();
    let body_cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "100 000-deep arrays",
            nested_arrays(100_000).into_bytes(),
            Expect::Discard("malformed JSON (unexpected type"),
        ),
        (
            // Unknown keys are skipped (iteratively: no recursion to exhaust).
            "100 000-deep objects",
            nested_objects(100_000).into_bytes(),
            Expect::Discard("neither a WorkNotification (notificationType) nor an Extended"),
        ),
        (
            "100 000-deep arrays as the liveStatus",
            with("liveStatus", &nested_arrays(100_000)).into_bytes(),
            Expect::Discard("malformed JSON"),
        ),
        (
            "completedAt 1e999999",
            extended_completed("1e999999").into_bytes(),
            Expect::Discard("malformed JSON (syntax error"),
        ),
        (
            "completedAt 18446744073709551616",
            extended_completed("18446744073709551616").into_bytes(),
            Expect::Discard("malformed JSON (unexpected type"),
        ),
        (
            "completedAt -9223372036854775809",
            extended_completed("-9223372036854775809").into_bytes(),
            Expect::Discard("malformed JSON (unexpected type"),
        ),
        (
            "endedAt 1e999999",
            with_step("endedAt", "1e999999").into_bytes(),
            Expect::Discard("malformed JSON (syntax error"),
        ),
        (
            "endedAt 18446744073709551616",
            with_step("endedAt", "18446744073709551616").into_bytes(),
            Expect::Discard("malformed JSON (unexpected type"),
        ),
        (
            "notificationType a number",
            with("notificationType", "42").into_bytes(),
            Expect::Discard("malformed JSON (unexpected type"),
        ),
        (
            "liveStatus a string",
            with("liveStatus", "\"all done\"").into_bytes(),
            Expect::Discard("malformed JSON (unexpected type"),
        ),
        (
            "envelopeExternalId an object",
            with("envelopeExternalId", "{}").into_bytes(),
            Expect::Discard("malformed JSON (unexpected type"),
        ),
        (
            "documents an object",
            with("documents", "{\"data\": \"QUJD\"}").into_bytes(),
            Expect::Discard("malformed JSON (unexpected type"),
        ),
        (
            "a duplicate notificationType",
            valid_text
                .replacen('{', r#"{"notificationType":"PROCESS_CANCELLED","#, 1)
                .into_bytes(),
            Expect::Discard("malformed JSON (unexpected type"),
        ),
        (
            "truncated",
            valid_text.as_bytes()[..valid_text.len() / 2].to_vec(),
            Expect::Discard("malformed JSON (truncated"),
        ),
        (
            "UTF-16 with a byte-order mark",
            utf16le(&valid_text),
            Expect::Discard("malformed JSON (syntax error"),
        ),
        (
            "\\xff\\xfe in a string",
            with("note", "\"\u{1}\"")
                .into_bytes()
                .into_iter()
                .flat_map(|b| if b == 1 { vec![0xff, 0xfe] } else { vec![b] })
                .collect(),
            Expect::Discard("malformed JSON (syntax error"),
        ),
        (
            "an envelope id of 500 000 characters",
            work(&"E".repeat(500_000), "SIGN_PROCESS_ENDED")
                .to_string()
                .into_bytes(),
            Expect::Discard("envelope id in the body differs"),
        ),
        (
            "a SOAP envelope",
            envelope(S11, &work_xml(REST_TX)).into_bytes(),
            Expect::Discard("malformed JSON (syntax error"),
        ),
    ];
    let mut cases: Vec<Case> = body_cases
        .into_iter()
        .map(|(name, body, expect)| {
            Case::new(format!("rest {name}"), "POST", &target)
                .header("Content-Type", "application/json")
                .body(body)
                .expect(expect)
        })
        .collect();
    for (ct, body) in [
        ("text/plain", "SIGN_PROCESS_ENDED".to_string()),
        (
            "application/x-www-form-urlencoded",
            format!("envelopeExternalId={REST_TX}&notificationType=SIGN_PROCESS_ENDED"),
        ),
        ("application/xml", envelope(S11, &work_xml(REST_TX))),
    ] {
        cases.push(
            Case::new(format!("rest as {ct}"), "POST", &target)
                .header("Content-Type", ct)
                .body(body)
                .expect(Expect::Discard("malformed JSON (syntax error")),
        );
    }
    let big = with("note", &format!("\"{}\"", "x".repeat(1024 * 1024)));
    cases.push(
        Case::new("rest over the limit", "POST", &target)
            .header("Content-Type", "application/json")
            .body(&big)
            .expect(Expect::RestTooLarge),
    );
    cases.push(
        Case::new("rest over the limit, chunked", "POST", &target)
            .header("Content-Type", "application/json")
            .chunked(&big)
            .expect(Expect::RestTooLarge),
    );
    // Requests the HTTP layer refuses before any handler.
    cases.push(
        Case::new("rest Content-Length 2^64", "POST", &target)
            .header("Content-Type", "application/json")
            .header("Content-Length", "18446744073709551616")
            .expect(Expect::Http(400)),
    );
    cases.push(
        Case::new("rest two Content-Lengths", "POST", &target)
            .header("Content-Type", "application/json")
            .header("Content-Length", "2")
            .header("Content-Length", "3")
            .expect(Expect::Http(400)),
    );
    // Traversal outside the envelope segment: no GoSign route.
    cases.push(
        Case::new(
            "rest raw traversal",
            "POST",
            "/gosign/rest/envelopes/../../../api/v1/events/notify",
        )
        .header("Content-Type", "application/json")
        .body(&valid_text)
        .expect(Expect::NoGosignRoute),
    );
    let (wrong, slowest) = run(&app, cases).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    eprintln!("rest: slowest hostile request took {slowest:?}");
    still_serving_and_nothing_recorded(&app).await;

    // Deep nesting in a field GoSign's model ignores (the Extended format has many) is
    // skipped without recursion: the notification itself is valid and is recorded.
    let deep = "HOSTILE-DEEP";
    let mut v = work(deep, "SIGN_PROCESS_ENDED");
    v["extra"] = json!("\u{1}");
    let body = v
        .to_string()
        .replace("\"\\u0001\"", &nested_arrays(100_000));
    let answer = tokio::time::timeout(BOUND, app.notify(deep, body)).await;
    assert_eq!(
        answer.expect("answered within the bound"),
        (200, json!({"outcome": "succeeded"}))
    );
    assert_eq!(app.events(&format!("transaction_id={deep}")).await.len(), 1);
}

#[tokio::test]
async fn gosign_soap_refuses_hostile_envelopes() {
    let app = hostile_app().await;
    let (wrong, slowest) = run(&app, xml_corpus("soap", "/gosign/soap", &work_xml("ENV-X"))).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    eprintln!("soap: slowest hostile request took {slowest:?}");
    still_serving_and_nothing_recorded(&app).await;
}

#[tokio::test]
async fn legalbus_refuses_hostile_envelopes() {
    let app = hostile_app().await;
    let (wrong, slowest) = run(
        &app,
        xml_corpus(
            "legalbus",
            "/gosign/soap/events",
            &operation_done_xml("ENV-X"),
        ),
    )
    .await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    eprintln!("legalbus: slowest hostile request took {slowest:?}");
    still_serving_and_nothing_recorded(&app).await;
}

#[tokio::test]
async fn registry_put_refuses_hostile_trigger_messages_and_ids() {
    let app = hostile_app().await;
    let target = "/api/v1/transactions/gosign/HOSTILE-REG";
    let valid = trigger("zaak-hostile");
    let with = |pointer: &str, raw_value: &str| {
        let mut v = valid.clone();
        *v.pointer_mut(pointer).unwrap() = json!("\u{1}");
        v.to_string().replace("\"\\u0001\"", raw_value)
    };
    let valid_text = valid.to_string();
    let invalid_json = Expect::Problem(400, "invalid-json");
    let body_cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        // 100 000 levels take 200 KB, over the registry's 100 KiB.
        (
            "100 000-deep arrays",
            nested_arrays(100_000).into_bytes(),
            Expect::Problem(413, "too-large"),
        ),
        (
            "100 000-deep objects",
            nested_objects(100_000).into_bytes(),
            Expect::Problem(413, "too-large"),
        ),
        (
            "40 000-deep arrays",
            nested_arrays(40_000).into_bytes(),
            invalid_json.clone(),
        ),
        (
            "15 000-deep objects",
            nested_objects(15_000).into_bytes(),
            invalid_json.clone(),
        ),
        (
            // `vendor` is free JSON: serde_json's recursion limit (128) stops it.
            "40 000-deep vendor field",
            valid_text
                .replacen(
                    '{',
                    &format!(r#"{{"vendor":{{"x":{}}},"#, nested_arrays(40_000)),
                    1,
                )
                .into_bytes(),
            invalid_json.clone(),
        ),
        (
            "versie 1e999999",
            with("/documenten/0/versie", "1e999999").into_bytes(),
            invalid_json.clone(),
        ),
        (
            "versie 18446744073709551616",
            with("/documenten/0/versie", "18446744073709551616").into_bytes(),
            invalid_json.clone(),
        ),
        (
            "versie -1",
            with("/documenten/0/versie", "-1").into_bytes(),
            invalid_json.clone(),
        ),
        (
            "naam a number",
            with("/naam", "42").into_bytes(),
            invalid_json.clone(),
        ),
        (
            "ondertekenaars an object",
            with("/ondertekenaars", "{}").into_bytes(),
            invalid_json.clone(),
        ),
        (
            "truncated",
            valid_text.as_bytes()[..valid_text.len() / 2].to_vec(),
            invalid_json.clone(),
        ),
        (
            "UTF-16 with a byte-order mark",
            utf16le(&valid_text),
            invalid_json.clone(),
        ),
        (
            "\\xff\\xfe in a string",
            with("/naam", "\"\u{1}\"")
                .into_bytes()
                .into_iter()
                .flat_map(|b| if b == 1 { vec![0xff, 0xfe] } else { vec![b] })
                .collect(),
            invalid_json.clone(),
        ),
        ("empty", Vec::new(), invalid_json.clone()),
        (
            "zaak.url file:///etc/passwd",
            with("/zaak/url", "\"file:///etc/passwd\"").into_bytes(),
            Expect::Problem(400, "validation-error"),
        ),
    ];
    let mut cases: Vec<Case> = body_cases
        .into_iter()
        .map(|(name, body, expect)| {
            Case::new(format!("registry {name}"), "PUT", target)
                .header("Content-Type", "application/json")
                .header("X-Api-Key", ADMIN_KEY)
                .body(body)
                .expect(expect)
        })
        .collect();
    for (ct, body) in [
        ("text/plain", "naam=Besluit".to_string()),
        (
            "application/x-www-form-urlencoded",
            "naam=Besluit&eigenaar=x%40y.nl".to_string(),
        ),
        (
            "application/xml",
            "<trigger><naam>Besluit</naam></trigger>".to_string(),
        ),
    ] {
        cases.push(
            Case::new(format!("registry as {ct}"), "PUT", target)
                .header("Content-Type", ct)
                .header("X-Api-Key", ADMIN_KEY)
                .body(body)
                .expect(invalid_json.clone()),
        );
    }
    let big = with("/naam", &format!("\"{}\"", "x".repeat(200 * 1024)));
    cases.push(
        Case::new("registry over the limit, chunked", "PUT", target)
            .header("Content-Type", "application/json")
            .header("X-Api-Key", ADMIN_KEY)
            .chunked(&big)
            .expect(Expect::Problem(413, "too-large")),
    );
    // Hostile ids and vendors in the path, for PUT, GET and DELETE.
    let bad_id = Expect::Problem(400, "invalid-transaction-id");
    for (what, id, expect) in [
        (
            "encoded traversal",
            "..%2F..%2Fetc%2Fpasswd",
            bad_id.clone(),
        ),
        ("encoded dot-dot", "%2E%2E", bad_id.clone()),
        ("a NUL", "a%00b", bad_id.clone()),
        ("a newline", "a%0Ab", bad_id.clone()),
        ("CRLF", "%0D%0ASet-Cookie:%20x=1", bad_id.clone()),
        ("a backslash", "..%5C..%5Cwindows", bad_id.clone()),
        ("DEL", "a%7F", bad_id.clone()),
        ("overlong UTF-8 dot-dot", "%C0%AE%C0%AE", bad_id.clone()),
        ("not UTF-8", "%FF%FE", bad_id.clone()),
        (
            "raw traversal",
            "../../../../etc/passwd",
            Expect::Problem(404, "not-found"),
        ),
    ] {
        for method in ["PUT", "GET", "DELETE"] {
            let mut c = Case::new(
                format!("registry {method} id with {what}"),
                method,
                format!("/api/v1/transactions/gosign/{id}"),
            )
            .header("X-Api-Key", ADMIN_KEY)
            .expect(expect.clone());
            if method == "PUT" {
                c = c
                    .header("Content-Type", "application/json")
                    .body(&valid_text);
            }
            cases.push(c);
        }
    }
    for vendor in ["..%2F..", "gosign%00", "%0A"] {
        cases.push(
            Case::new(
                format!("registry vendor {vendor}"),
                "PUT",
                format!("/api/v1/transactions/{vendor}/T-1"),
            )
            .header("Content-Type", "application/json")
            .header("X-Api-Key", ADMIN_KEY)
            .body(&valid_text)
            .expect(Expect::Problem(404, "unknown-vendor")),
        );
    }
    let (wrong, slowest) = run(&app, cases).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    eprintln!("registry: slowest hostile request took {slowest:?}");
    let (s, _) = app.admin_get(target).await;
    assert_eq!(s, 404, "a hostile trigger message was registered");
    still_serving_and_nothing_recorded(&app).await;
}

#[tokio::test]
async fn admin_queries_refuse_hostile_parameters_and_ids() {
    let app = hostile_app().await;
    let invalid_query = Expect::Problem(400, "invalid-query");
    let invalid_id = Expect::Problem(400, "invalid-id");
    let id = "0190c8a2-6f1e-7a3b-8c4d-5e6f7a8b9c0d";
    let mut cases = Vec::new();
    for (q, expect) in [
        ("limit=1e999999", invalid_query.clone()),
        ("limit=18446744073709551616", invalid_query.clone()),
        ("limit=-1", invalid_query.clone()),
        ("limit=1&limit=2", invalid_query.clone()),
        ("after=..%2F..%2Fetc", invalid_query.clone()),
        ("after=%00", invalid_query.clone()),
        (
            "after=0190c8a2-6f1e-7a3b-8c4d-5e6f7a8b9c0d%0A",
            invalid_query.clone(),
        ),
        ("vendor=..%2F", Expect::Problem(400, "unknown-vendor")),
        ("vendor=gosign%00", Expect::Problem(400, "unknown-vendor")),
        ("transaction_id=..%2F..%2Fetc", Expect::NoEvents),
        ("transaction_id=%00%0A%0D", Expect::NoEvents),
        ("state=%FF%FE", Expect::NoEvents),
        ("state=..%2F", Expect::NoEvents),
    ] {
        cases.push(
            Case::new(format!("events?{q}"), "GET", format!("/api/v1/events?{q}"))
                .header("X-Api-Key", ADMIN_KEY)
                .expect(expect),
        );
    }
    for (path, expect) in [
        (
            "/api/v1/events/..%2F..%2Fetc".to_string(),
            invalid_id.clone(),
        ),
        ("/api/v1/events/%00".to_string(), invalid_id.clone()),
        (format!("/api/v1/events/{id}%0A"), invalid_id.clone()),
        (
            "/api/v1/events/%2E%2E/payload".to_string(),
            invalid_id.clone(),
        ),
        (
            "/api/v1/events/%00/documents/0".to_string(),
            invalid_id.clone(),
        ),
        (
            format!("/api/v1/events/{id}/documents/18446744073709551616"),
            Expect::Problem(404, "not-found"),
        ),
        (
            format!("/api/v1/events/{id}/documents/-1"),
            Expect::Problem(404, "not-found"),
        ),
        (
            format!("/api/v1/events/{id}/documents/%00"),
            Expect::Problem(404, "not-found"),
        ),
        (
            "/api/v1/events/../../../etc/passwd".to_string(),
            Expect::Problem(404, "not-found"),
        ),
    ] {
        cases.push(
            Case::new(format!("GET {path}"), "GET", &path)
                .header("X-Api-Key", ADMIN_KEY)
                .expect(expect),
        );
    }
    for path in [
        "/api/v1/dead-letters/..%2F..%2Fetc/replay",
        "/api/v1/dead-letters/%00/replay",
    ] {
        cases.push(
            Case::new(format!("POST {path}"), "POST", path)
                .header("X-Api-Key", ADMIN_KEY)
                .expect(invalid_id.clone()),
        );
    }
    let (wrong, slowest) = run(&app, cases).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    eprintln!("admin: slowest hostile request took {slowest:?}");
    still_serving_and_nothing_recorded(&app).await;
}

#[tokio::test]
async fn workability_checks_of_hostile_ids_are_never_workable() {
    let app = hostile_app().await;
    let mut cases = Vec::new();
    let ids = [
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E",
        "a%00b",
        "a%0Ab",
        "%0D%0ASet-Cookie:%20x=1",
        "%1B%5B31mred",
        "%C0%AE%C0%AE",
        "%FF%FE",
    ];
    for id in ids {
        for user in ["abianchi", id] {
            for target in [
                format!("/gosign/rest/envelopes/{id}/managers/{user}/status"),
                format!("/gosign/rest/envelopes/{id}/managers/{user}/for/{user}/status"),
            ] {
                cases.push(
                    Case::new(format!("GET {target}"), "GET", &target).expect(Expect::NotWorkable),
                );
            }
        }
    }
    cases.push(
        Case::new(
            "raw traversal",
            "GET",
            "/gosign/rest/envelopes/../../../etc/managers/x/status",
        )
        .expect(Expect::NoGosignRoute),
    );
    // SOAP getEnvelopeExternalStatus with the same ids as character references.
    let list: String = ["..&#47;..&#47;etc", "a&#10;b", "&#27;[31mred", "..&#92;.."]
        .iter()
        .map(|id| format!("<envelopeExtIdList>{id}</envelopeExtIdList>"))
        .collect();
    let status_request = envelope(
        S11,
        &format!(
            r#"<ns2:getEnvelopeExternalStatusRequest xmlns:ns2="{WKNOTIF}"><userExtId>a&#10;b</userExtId>{list}</ns2:getEnvelopeExternalStatusRequest>"#
        ),
    );
    let (wrong, slowest) = run(&app, cases).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    eprintln!("workability: slowest hostile request took {slowest:?}");
    let r = app
        .client
        .post(app.url("/gosign/soap"))
        .header("Content-Type", CT11)
        .body(status_request)
        .timeout(BOUND)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    // All four unknown: the user may not work on them (one global verdict, ch. 7.2).
    assert!(
        text.contains("<userAllowedToWork>false</userAllowedToWork>"),
        "{text}"
    );
    assert!(
        text.contains("<globalEnvelopeAction>NOP</globalEnvelopeAction>"),
        "{text}"
    );
    assert!(!text.contains("<workable>true</workable>"), "{text}");
    still_serving_and_nothing_recorded(&app).await;
}
