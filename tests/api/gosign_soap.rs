use crate::helpers::*;

// The GoSign SOAP surface (integration methodology ch. 7) and LegalBus OperationDone (ch. 11),
// black-box over HTTP: the exact SOAP answers GoSign gets, what is recorded, what the NRC
// stand-in receives, the workability policies against stand-in ZRC and case application, the
// served WSDLs, and a real SOAP toolkit (zeep) calling every operation.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, HttpRequest, HttpResponse};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use signrelay::auth::AuthConfig;
use signrelay::config::Secret;
use signrelay::vendors::gosign::config::{OnError, WorkabilityPolicy};
use signrelay::vendors::gosign::workability::Action;
use signrelay::zgw::jwt::ZgwClaims;

const WAIT: Duration = Duration::from_secs(5);
const VOLTOOID: &str = "OndertekenenVoltooid";
const AFGEBROKEN: &str = "OndertekenenAfgebroken";

const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const S12: &str = "http://www.w3.org/2003/05/soap-envelope";
const WKNOTIF: &str = "http://www.infocert.it/smartsign/schema/wknotif";
const EVENTS_NS: &str = "http://www.infocert.it/legalbus/schema/evelopeevent";
const CT11: &str = "text/xml; charset=utf-8";
const CT12: &str = "application/soap+xml; charset=utf-8";

const SOAP: &str = "/gosign/soap";
const EVENTS: &str = "/gosign/soap/events";

/// The getEnvelopeExternalStatus request example of the methodology, 7.2, verbatim (with its
/// `envelopeExtId-List` start tag closed by `</envelopeExtIdList>`).
const SEED_STATUS_REQUEST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
<soap:Body>
<ns2:getEnvelopeExternalStatusRequest xmlns:ns2="http://www.infocert.it/smartsign/schema/wknotif">
<userExtId>userExtID</userExtId>
<envelopeExtIdList>extEnve1</envelopeExtIdList>
<envelopeExtIdList>extEnve2</envelopeExtIdList>
<envelopeExtIdList>extEnve3</envelopeExtIdList>
<envelopeExtId-List fromUserExtId="userExtIDSubstituted">extEnve4</envelopeExtIdList>
</ns2:getEnvelopeExternalStatusRequest>
</soap:Body>
</soap:Envelope>"#;

/// The inline document zeep_check.py sends.
const ZEEP_DOCUMENT: &[u8] = b"%PDF-1.7\nzeep check \x00\x01\x02\xff\n%%EOF\n";

// ---------------------------------------------------------------------------------------------
// Spawning and calling

/// signrelay with the SOAP surface on (no authentication), then `adjust`.
async fn soap_app(adjust: impl FnOnce(&mut signrelay::config::Config)) -> TestApp {
    spawn_app_with(|c| {
        c.vendors.gosign.soap.enabled = true;
        c.vendors.gosign.soap.auth = Some(AuthConfig::None);
        adjust(c);
    })
    .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    S11,
    S12,
}

/// How a sender writes its envelope: the prefixes and namespace declarations vary, the
/// meaning does not.
#[derive(Debug, Clone, Copy)]
enum Style {
    /// JAX-WS: `soapenv:` envelope, `ns2:` operation, unprefixed children.
    JaxWs11,
    /// WCF: `s:` envelope, operation in a default namespace, children reset with `xmlns=""`.
    Wcf11,
    /// SOAP 1.2 with `env:` and `wk:` prefixes.
    Prefixed12,
    /// SOAP 1.2 envelope in the default namespace; the operation undeclares it for its children.
    Default12,
}

impl Style {
    fn version(self) -> V {
        match self {
            Style::JaxWs11 | Style::Wcf11 => V::S11,
            Style::Prefixed12 | Style::Default12 => V::S12,
        }
    }
}

/// A SOAP message: operation `op` in `ns`, with unqualified `children` (name, inner XML).
fn message(style: Style, ns: &str, op: &str, children: &[(&str, String)]) -> String {
    let reset = matches!(style, Style::Wcf11);
    let inner: String = children
        .iter()
        .map(|(name, xml)| {
            let x = if reset { r#" xmlns="""# } else { "" };
            format!("<{name}{x}>{xml}</{name}>")
        })
        .collect();
    match style {
        Style::JaxWs11 => format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Header/><soapenv:Body><ns2:{op} xmlns:ns2="{ns}">{inner}</ns2:{op}></soapenv:Body></soapenv:Envelope>"#
        ),
        Style::Wcf11 => format!(
            r#"<s:Envelope xmlns:s="{S11}"><s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"><{op} xmlns="{ns}">{inner}</{op}></s:Body></s:Envelope>"#
        ),
        Style::Prefixed12 => format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<env:Envelope xmlns:env="{S12}">
  <env:Header/>
  <env:Body>
    <wk:{op} xmlns:wk="{ns}">{inner}</wk:{op}>
  </env:Body>
</env:Envelope>"#
        ),
        Style::Default12 => format!(
            r#"<Envelope xmlns="{S12}"><Header/><Body><ns2:{op} xmlns:ns2="{ns}" xmlns="">{inner}</ns2:{op}></Body></Envelope>"#
        ),
    }
}

fn content_type(v: V, action: &str) -> String {
    match v {
        V::S11 => CT11.to_string(),
        V::S12 => format!(r#"{CT12}; action="{action}""#),
    }
}

/// POSTs a SOAP message: status, headers, body text.
async fn post(
    app: &TestApp,
    path: &str,
    ct: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let mut req = app
        .client
        .post(app.url(path))
        .header("Content-Type", ct)
        .body(body);
    if ct.starts_with("text/xml") {
        req = req.header("SOAPAction", "\"\"");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.text().await.unwrap())
}

// ---------------------------------------------------------------------------------------------
// Reading answers (an XML reader of the test's own, namespace-aware)

#[derive(Debug, Clone, Default)]
struct Node {
    ns: Option<String>,
    name: String,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> &Node {
        self.children
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no <{name}> in <{}>: {self:#?}", self.name))
    }

    fn names(&self) -> Vec<&str> {
        self.children.iter().map(|c| c.name.as_str()).collect()
    }
}

fn parse_xml(xml: &str) -> Node {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    let mut r = quick_xml::NsReader::from_str(xml);
    r.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Node> = Vec::new();
    loop {
        let (ns, ev) = r
            .read_resolved_event()
            .unwrap_or_else(|e| panic!("not well-formed XML ({e}): {xml}"));
        match ev {
            Event::Start(s) => {
                let ns = match ns {
                    ResolveResult::Bound(n) => {
                        Some(String::from_utf8(n.as_ref().to_vec()).unwrap())
                    }
                    ResolveResult::Unbound => None,
                    ResolveResult::Unknown(p) => panic!("undeclared prefix {p:?} in {xml}"),
                };
                stack.push(Node {
                    ns,
                    name: String::from_utf8(s.local_name().as_ref().to_vec()).unwrap(),
                    ..Node::default()
                });
            }
            Event::End(_) => {
                let done = stack.pop().unwrap();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return done,
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.decode().unwrap());
                }
            }
            Event::GeneralRef(g) => {
                let c = match g.resolve_char_ref().unwrap() {
                    Some(c) => c,
                    None => match g.decode().unwrap().as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "apos" => '\'',
                        "quot" => '"',
                        other => panic!("entity {other} in an answer"),
                    },
                };
                stack.last_mut().unwrap().text.push(c);
            }
            Event::Eof => panic!("truncated XML: {xml}"),
            _ => {}
        }
    }
}

/// The operation element of a SOAP answer in version `v`.
fn body_of(v: V, xml: &str) -> Node {
    let root = parse_xml(xml);
    let ns = match v {
        V::S11 => S11,
        V::S12 => S12,
    };
    assert_eq!(
        (root.name.as_str(), root.ns.as_deref()),
        ("Envelope", Some(ns)),
        "{xml}"
    );
    let body = root.child("Body");
    assert_eq!(body.ns.as_deref(), Some(ns), "{xml}");
    assert_eq!(body.children.len(), 1, "{xml}");
    body.children[0].clone()
}

/// A SOAP Fault: (code, reason), e.g. ("soap:Client", "...") or ("env:Sender", "...").
fn fault_of(v: V, xml: &str) -> (String, String) {
    let f = body_of(v, xml);
    assert_eq!(f.name, "Fault", "{xml}");
    match v {
        V::S11 => (
            f.child("faultcode").text.clone(),
            f.child("faultstring").text.clone(),
        ),
        V::S12 => (
            f.child("Code").child("Value").text.clone(),
            f.child("Reason").child("Text").text.clone(),
        ),
    }
}

/// Asserts a workNotificationResponse in the wknotif namespace with unqualified children;
/// returns (success, [(code, message)]).
fn work_answer(v: V, xml: &str) -> (bool, Vec<(String, String)>) {
    let op = body_of(v, xml);
    assert_eq!(op.name, "workNotificationResponse", "{xml}");
    assert_eq!(op.ns.as_deref(), Some(WKNOTIF), "{xml}");
    assert!(op.children.iter().all(|c| c.ns.is_none()), "{xml}");
    assert_eq!(op.children[0].name, "success", "{xml}");
    let success = match op.children[0].text.as_str() {
        "true" => true,
        "false" => false,
        other => panic!("success={other}"),
    };
    let errors = op.children[1..]
        .iter()
        .map(|e| {
            assert_eq!(e.name, "errors", "{xml}");
            assert_eq!(e.names(), ["code", "message"], "{xml}");
            (
                e.child("code").text.clone(),
                e.child("message").text.clone(),
            )
        })
        .collect();
    (success, errors)
}

/// A getEnvelopeExternalStatusResponse as JSON (values as their XML text), after checking
/// namespaces and that elements come in the WSDL's sequence order.
fn statuses_answer(v: V, xml: &str) -> Value {
    let op = body_of(v, xml);
    assert_eq!(op.name, "getEnvelopeExternalStatusResponse", "{xml}");
    assert_eq!(op.ns.as_deref(), Some(WKNOTIF), "{xml}");
    assert_eq!(op.names(), ["envelopeStatuses"], "{xml}");
    let outer = &op.children[0];
    fn ordered(n: &Node, order: &[&str], xml: &str) {
        let pos: Vec<usize> = n
            .children
            .iter()
            .map(|c| {
                assert!(c.ns.is_none(), "qualified <{}> in {xml}", c.name);
                order
                    .iter()
                    .position(|o| *o == c.name)
                    .unwrap_or_else(|| panic!("unexpected <{}> in {xml}", c.name))
            })
            .collect();
        assert!(pos.windows(2).all(|w| w[0] <= w[1]), "order {xml}");
    }
    ordered(
        outer,
        &[
            "userExtId",
            "userAllowedToWork",
            "userReason",
            "globalEnvelopeAction",
            "envelopeStatuses",
        ],
        xml,
    );
    let mut out = serde_json::Map::new();
    let mut list = Vec::new();
    for c in &outer.children {
        if c.name == "envelopeStatuses" {
            ordered(c, &["extId", "workable", "reason", "action"], xml);
            let mut e = serde_json::Map::new();
            for f in &c.children {
                e.insert(f.name.clone(), json!(f.text));
            }
            list.push(Value::Object(e));
        } else {
            assert!(c.children.is_empty(), "{xml}");
            out.insert(c.name.clone(), json!(c.text));
        }
    }
    if !list.is_empty() {
        out.insert("envelopeStatuses".into(), Value::Array(list));
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Building requests

const ACTIONS_RESUME: &str = "<actions>1</actions><signActions>1</signActions><approveActions>0</approveActions><viewActions>0</viewActions><viewedActions>0</viewedActions><approvedActions>0</approvedActions><initialsActions>0</initialsActions><initialedActions>0</initialedActions><signedActions>1</signedActions><confirmedActions>1</confirmedActions><graphometricActions>0</graphometricActions><filledGraphometricActions>0</filledGraphometricActions>";

/// The children of a workNotification (every field of 7.1): a finished first step and an
/// open second one; `documents` are (docExternalId, mime-type, base64 text).
fn work_children(
    tx: &str,
    kind: &str,
    note: Option<&str>,
    documents: &[(&str, &str, String)],
) -> Vec<(&'static str, String)> {
    let mut c = vec![
        ("envelopeExternalId", tx.to_string()),
        ("notificationType", kind.to_string()),
    ];
    if let Some(n) = note {
        c.push(("note", n.to_string()));
    }
    if !documents.is_empty() {
        let docs: String = documents
            .iter()
            .map(|(id, mime, data)| {
                format!("<document><docExternalId>{id}</docExternalId><content><mime-type>{mime}</mime-type><data>{data}</data></content></document>")
            })
            .collect();
        c.push(("documents", docs));
    }
    c.push((
        "liveStatus",
        format!(
            "<stepEvent><mgrExternalId>abianchi</mgrExternalId><mgrName>Anna</mgrName><mgrSurname>Bianchi</mgrSurname><status>WKD</status><startedAt>2026-11-20T10:00:00Z</startedAt><endedAt>2026-11-20T10:05:00Z</endedAt><assignedTo>Bianchi Anna (abianchi)</assignedTo><stepNumber>1</stepNumber><actionsResume>{ACTIONS_RESUME}</actionsResume></stepEvent>\
             <stepEvent><mgrExternalId>lverdi</mgrExternalId><fromMgrExternalId>mrossi</fromMgrExternalId><mgrName>Luigi</mgrName><mgrSurname>Verdi</mgrSurname><status>PGS</status><startedAt>2026-11-20T10:05:00.000+01:00</startedAt><assignedTo>Verdi Luigi (lverdi)</assignedTo><stepNumber>2</stepNumber><actionsResume>{ACTIONS_RESUME}</actionsResume></stepEvent>"
        ),
    ));
    c
}

/// A workNotification in `style`.
fn work_soap(style: Style, tx: &str, kind: &str, note: Option<&str>) -> String {
    message(
        style,
        WKNOTIF,
        "workNotification",
        &work_children(tx, kind, note, &[]),
    )
}

/// A getEnvelopeExternalStatusRequest (SOAP 1.1, JAX-WS style).
fn status_soap(user: &str, envelopes: &[(&str, Option<&str>)]) -> String {
    let list: String = envelopes
        .iter()
        .map(|(e, from)| match from {
            Some(f) => format!(r#"<envelopeExtIdList fromUserExtId="{f}">{e}</envelopeExtIdList>"#),
            None => format!("<envelopeExtIdList>{e}</envelopeExtIdList>"),
        })
        .collect();
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Body><ns2:getEnvelopeExternalStatusRequest xmlns:ns2="{WKNOTIF}"><userExtId>{user}</userExtId>{list}</ns2:getEnvelopeExternalStatusRequest></soapenv:Body></soapenv:Envelope>"#
    )
}

/// A LegalBus OperationDone (SOAP 1.1).
fn operation_done(id: &str, command: &str, ext_id: &str, code: &str) -> String {
    message(
        Style::JaxWs11,
        EVENTS_NS,
        "OperationDone",
        &[(
            "OperationDoneEvent",
            format!("<ID>{id}</ID><command>{command}</command><extId>{ext_id}</extId><details></details><returnStatus><code>{code}</code><message>see code</message></returnStatus>"),
        )],
    )
}

/// Posts a workNotification and asserts the exact success answer in the sender's version.
async fn work_ok(app: &TestApp, style: Style, body: String) {
    let v = style.version();
    let (status, h, text) = post(app, SOAP, &content_type(v, "workNotification"), body, &[]).await;
    assert_eq!(status, 200, "{style:?}: {text}");
    let ct = match v {
        V::S11 => CT11,
        V::S12 => CT12,
    };
    assert_eq!(header_of(&h, "content-type"), ct);
    assert_eq!(work_answer(v, &text), (true, vec![]), "{style:?}: {text}");
}

/// Asks getEnvelopeExternalStatus over SOAP 1.1; the answer as JSON.
async fn soap_statuses(app: &TestApp, user: &str, envelopes: &[(&str, Option<&str>)]) -> Value {
    let (status, _, text) = post(app, SOAP, CT11, status_soap(user, envelopes), &[]).await;
    assert_eq!(status, 200, "{text}");
    statuses_answer(V::S11, &text)
}

/// The REST workability check (8.4), with `/for/{original}` when given.
async fn rest_verdict(app: &TestApp, envelope: &str, user: &str, original: Option<&str>) -> Value {
    let path = match original {
        Some(o) => format!("/gosign/rest/envelopes/{envelope}/managers/{user}/for/{o}/status"),
        None => format!("/gosign/rest/envelopes/{envelope}/managers/{user}/status"),
    };
    let r = app.client.get(app.url(&path)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

async fn rest_status(app: &TestApp) -> Value {
    let r = app
        .client
        .get(app.url("/gosign/rest/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

/// Registers `tx` with exactly this zaak URL.
async fn register_at(app: &TestApp, tx: &str, zaak: &str) {
    let mut t = trigger("unused");
    t["zaak"]["url"] = json!(zaak);
    let r = app
        .client
        .put(app.url(&format!("/api/v1/transactions/gosign/{tx}")))
        .header("X-Api-Key", ADMIN_KEY)
        .json(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
}

async fn withdraw(app: &TestApp, tx: &str) {
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/transactions/gosign/{tx}")))
        .header("X-Api-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

async fn admin_bytes(app: &TestApp, path: &str) -> (u16, HeaderMap, Vec<u8>) {
    let r = app
        .client
        .get(app.url(path))
        .header("X-Api-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.bytes().await.unwrap().to_vec())
}

// ---------------------------------------------------------------------------------------------
// getEnvelopeExternalStatus (7.2)

#[tokio::test]
async fn seed_status_request_lists_every_envelope() {
    let app = soap_app(|_| {}).await;

    let (status, h, text) = post(&app, SOAP, CT11, SEED_STATUS_REQUEST, &[]).await;

    assert_eq!(status, 200, "{text}");
    assert_eq!(header_of(&h, "content-type"), CT11);
    // The wire format, pinned once.
    let item = |e: &str| {
        format!("<envelopeStatuses><extId>{e}</extId><workable>true</workable></envelopeStatuses>")
    };
    assert_eq!(
        text,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{S11}"><soap:Body><ns2:getEnvelopeExternalStatusResponse xmlns:ns2="{WKNOTIF}"><envelopeStatuses><userExtId>userExtID</userExtId><userAllowedToWork>true</userAllowedToWork><globalEnvelopeAction>NOP</globalEnvelopeAction>{}{}{}{}</envelopeStatuses></ns2:getEnvelopeExternalStatusResponse></soap:Body></soap:Envelope>"#,
            item("extEnve1"),
            item("extEnve2"),
            item("extEnve3"),
            item("extEnve4")
        )
    );
    assert_eq!(
        statuses_answer(V::S11, &text),
        json!({
            "userExtId": "userExtID", "userAllowedToWork": "true", "globalEnvelopeAction": "NOP",
            "envelopeStatuses": [
                {"extId": "extEnve1", "workable": "true"},
                {"extId": "extEnve2", "workable": "true"},
                {"extId": "extEnve3", "workable": "true"},
                {"extId": "extEnve4", "workable": "true"},
            ]
        })
    );
    // Asked over SOAP 1.2, answered in 1.2.
    let body = SEED_STATUS_REQUEST.replace(S11, S12);
    let (status, h, text) = post(&app, SOAP, CT12, body, &[]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(header_of(&h, "content-type"), CT12);
    assert_eq!(
        statuses_answer(V::S12, &text)["envelopeStatuses"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // A question records nothing.
    assert!(app.events("").await.is_empty());
    assert!(quarantine(&app).await.is_empty());
}

#[tokio::test]
async fn status_request_without_user_is_a_client_fault() {
    let app = soap_app(|_| {}).await;
    let body = status_soap("", &[("E1", None)]);
    let (status, _, text) = post(&app, SOAP, CT11, body, &[]).await;
    assert_eq!(status, 500);
    assert_eq!(
        fault_of(V::S11, &text),
        ("soap:Client".into(), "missing userExtId".into())
    );
}

// ---------------------------------------------------------------------------------------------
// workNotification (7.1)

/// The NRC actie and reden an outcome is relayed with.
type Relayed = (&'static str, Option<&'static str>);

#[tokio::test]
async fn every_notification_type_over_soap_1_1_and_1_2_is_recorded_and_relayed_once() {
    let app = soap_app(|_| {}).await;
    let note = "Bedrag klopt niet &amp; datum &lt;ontbreekt&gt;";
    let rejected = "geweigerd door ondertekenaar: Bedrag klopt niet & datum <ontbreekt>";
    // (type, NRC actie and reden; None: progress, never relayed)
    let kinds: [(&str, Option<Relayed>); 5] = [
        ("SIGN_PROCESS_ENDED", Some((VOLTOOID, None))),
        ("VA_PROCESS_ENDED", Some((VOLTOOID, None))),
        ("ENVELOPE_REJECTED", Some((AFGEBROKEN, Some(rejected)))),
        ("PROCESS_CANCELLED", Some((AFGEBROKEN, Some("ingetrokken")))),
        ("STEP_CLOSED", None),
    ];
    let styles11 = [Style::JaxWs11, Style::Wcf11];
    let styles12 = [Style::Prefixed12, Style::Default12];
    let mut cases = Vec::new();
    for (i, (kind, relay)) in kinds.iter().enumerate() {
        for style in [styles11[i % 2], styles12[i % 2]] {
            let tx = format!("ENV-{kind}-{:?}", style.version());
            let zaak = register_tx(&app, "gosign", &tx).await;
            // The note rides along on every type; only a rejection relays it.
            let body = work_soap(style, &tx, kind, Some(note));
            work_ok(&app, style, body.clone()).await;
            // success=true means durable: the event is there already, raw payload and all.
            let ev = app.events(&format!("transaction_id={tx}")).await;
            assert_eq!(ev.len(), 1, "{tx}: {ev:#?}");
            assert_eq!(ev[0]["surface"], "gosign.soap");
            assert_eq!(ev[0]["vendor"], "gosign");
            assert_eq!(ev[0]["occurred_at"], "2026-11-20T10:05:00Z", "{tx}");
            assert_eq!(
                ev[0]["caller"],
                json!({"method": "none", "principal": null})
            );
            let id = ev[0]["id"].as_str().unwrap();
            let (s, h, raw) = admin_bytes(&app, &format!("/api/v1/events/{id}/payload")).await;
            assert_eq!(s, 200);
            assert_eq!(raw, body.as_bytes(), "{tx}");
            assert!(
                header_of(&h, "content-type").starts_with(match style.version() {
                    V::S11 => "text/xml",
                    V::S12 => "application/soap+xml",
                }),
                "{h:?}"
            );
            cases.push((tx, zaak, *kind, *relay));
        }
    }
    app.nrc.wait_for(8, WAIT).await;
    for (tx, zaak, kind, relay) in &cases {
        match relay {
            Some((actie, reden)) => {
                let e = delivered_event(&app, tx).await;
                let want = match reden {
                    None => json!({"kind": "completed"}),
                    Some(r) => json!({"kind": "aborted", "reason": r}),
                };
                assert_eq!(e["outcome"], want, "{kind}");
                assert_notified(&app, tx, zaak, actie, *reden);
            }
            None => {
                let ev = app.events(&format!("transaction_id={tx}")).await;
                assert_eq!(
                    ev[0]["outcome"],
                    json!({"kind": "progress", "detail": "stap afgerond (1/2)"})
                );
                assert_eq!(
                    ev[0]["relay"],
                    json!({"state": "not_relayed", "why": "progress"})
                );
                assert!(received_for(&app, tx).is_empty());
            }
        }
    }
    assert_eq!(app.nrc.received().len(), 8);
    assert_eq!(app.nrc.attempts(), 8);
    assert!(quarantine(&app).await.is_empty());
}

#[tokio::test]
async fn an_outcome_reported_over_soap_and_rest_is_relayed_once() {
    let app = soap_app(|_| {}).await;
    let tx = "ENV-BOTH";
    let zaak = register_tx(&app, "gosign", tx).await;

    work_ok(
        &app,
        Style::JaxWs11,
        work_soap(Style::JaxWs11, tx, "SIGN_PROCESS_ENDED", None),
    )
    .await;
    // The same outcome over REST, in both formats, and over SOAP again (a GoSign retry).
    for body in [
        work(tx, "SIGN_PROCESS_ENDED"),
        extended(tx, "STO", Some("WKD")),
    ] {
        assert_eq!(
            app.notify(tx, body.to_string()).await,
            (200, json!({"outcome": "succeeded"}))
        );
    }
    work_ok(
        &app,
        Style::Prefixed12,
        work_soap(Style::Prefixed12, tx, "SIGN_PROCESS_ENDED", None),
    )
    .await;

    let e = delivered_event(&app, tx).await;
    assert_eq!(e["surface"], "gosign.soap");
    assert_eq!(e["outcome"], json!({"kind": "completed"}));
    assert_notified(&app, tx, &zaak, VOLTOOID, None);

    // A contradicting report afterwards is kept and flagged, never relayed.
    work_ok(
        &app,
        Style::Wcf11,
        work_soap(Style::Wcf11, tx, "PROCESS_CANCELLED", None),
    )
    .await;
    let ev = app.events(&format!("transaction_id={tx}")).await;
    assert_eq!(ev.len(), 2, "{ev:#?}");
    assert_eq!(
        ev[1]["relay"],
        json!({"state": "not_relayed", "why": "conflicting_outcome"})
    );
    assert_eq!(
        app.nrc.wait_for(2, Duration::from_millis(300)).await.len(),
        1
    );
    assert_eq!(app.nrc.attempts(), 1);
}

#[tokio::test]
async fn notification_for_an_unregistered_envelope_is_parked_until_registration() {
    let app = soap_app(|_| {}).await;
    let tx = "ENV-LATE";
    work_ok(
        &app,
        Style::Default12,
        work_soap(Style::Default12, tx, "VA_PROCESS_ENDED", None),
    )
    .await;
    let ev = app.events(&format!("transaction_id={tx}")).await;
    assert_eq!(ev[0]["relay"], json!({"state": "parked"}));
    assert!(app.nrc.received().is_empty());

    let zaak = register_tx(&app, "gosign", tx).await;
    delivered_event(&app, tx).await;
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
}

#[tokio::test]
async fn large_base64_document_is_kept_intact_and_one_over_the_limit_is_refused() {
    const MIB: usize = 1024 * 1024;
    let app = soap_app(|c| c.vendors.gosign.soap.body_limit_mib = 6).await;
    let tx = "ENV-BIG";
    let zaak = register_tx(&app, "gosign", tx).await;
    let pdf = pdf_bytes(4 * MIB + 3);
    let small = b"<?xml version=\"1.0\"?><bewijs>ondertekend</bewijs>\n".repeat(20);
    // Java toolkits may wrap base64 (MIME style, 76 columns, CRLF).
    let wrapped: String = b64(&small)
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n");
    let children = work_children(
        tx,
        "SIGN_PROCESS_ENDED",
        None,
        &[
            ("BIG-1", "application/pdf", b64(&pdf)),
            ("XML-2", "application/xml", wrapped),
        ],
    );
    let body = message(Style::JaxWs11, WKNOTIF, "workNotification", &children);
    assert!(
        body.len() > 5 * MIB && body.len() < 6 * MIB,
        "{}",
        body.len()
    );

    work_ok(&app, Style::JaxWs11, body).await;

    let e = delivered_event(&app, tx).await;
    assert_eq!(
        e["documents"],
        json!([
            {"external_id": "BIG-1", "mime_type": "application/pdf", "size": pdf.len()},
            {"external_id": "XML-2", "mime_type": "application/xml", "size": small.len()},
        ])
    );
    let id = e["id"].as_str().unwrap();
    let (status, h, bytes) = admin_bytes(&app, &format!("/api/v1/events/{id}/documents/0")).await;
    assert_eq!(status, 200);
    assert_eq!(header_of(&h, "content-type"), "application/pdf");
    assert_eq!(header_of(&h, "x-document-id"), "BIG-1");
    assert_eq!(bytes.len(), pdf.len());
    assert!(bytes == pdf, "large document differs");
    let (status, h, bytes) = admin_bytes(&app, &format!("/api/v1/events/{id}/documents/1")).await;
    assert_eq!(status, 200);
    assert_eq!(header_of(&h, "content-type"), "application/xml");
    assert_eq!(bytes, small);
    assert_notified(&app, tx, &zaak, VOLTOOID, None);

    // Over the limit: a Server fault (GoSign retries), nothing recorded.
    let tx = "ENV-HUGE";
    register_tx(&app, "gosign", tx).await;
    let pdf = pdf_bytes(5 * MIB);
    let children = work_children(
        tx,
        "SIGN_PROCESS_ENDED",
        None,
        &[("HUGE-1", "application/pdf", b64(&pdf))],
    );
    let body = message(Style::JaxWs11, WKNOTIF, "workNotification", &children);
    assert!(body.len() > 6 * MIB);
    let (status, _, text) = post(&app, SOAP, CT11, body, &[]).await;
    assert_eq!(status, 413);
    assert_eq!(
        fault_of(V::S11, &text),
        (
            "soap:Server".into(),
            "body exceeds the limit of 6 MiB".into()
        )
    );
    assert!(app.events(&format!("transaction_id={tx}")).await.is_empty());
    assert!(quarantine(&app).await.is_empty());
    assert_eq!(app.nrc.attempts(), 1);
}

/// The store cannot write: success=false with an error (GoSign retries), never success=true.
/// As in the REST tests, payloads over 64 KiB go to files under `<store>/payloads/`; with that
/// directory replaced by a plain file every archive write fails.
#[tokio::test]
async fn success_is_true_only_once_the_notification_is_durable() {
    // sled's payload files; PostgreSQL's outage has its own test (tests/api_pg/outage.rs).
    if !only_on(Backend::Sled) {
        return;
    }
    let app = soap_app(|_| {}).await;
    let tx = "ENV-DISK";
    let zaak = register_tx(&app, "gosign", tx).await;
    let payloads = app.store_path.join("payloads");
    assert!(payloads.is_dir(), "store layout changed: {payloads:?}");
    std::fs::remove_dir_all(&payloads).unwrap();
    std::fs::write(&payloads, b"not a directory").unwrap();
    let pdf = pdf_bytes(200 * 1024);
    let children = work_children(
        tx,
        "SIGN_PROCESS_ENDED",
        None,
        &[("DOC-1", "application/pdf", b64(&pdf))],
    );
    let body = message(Style::Prefixed12, WKNOTIF, "workNotification", &children);

    for _ in 0..2 {
        let (status, _, text) = post(&app, SOAP, CT12, body.clone(), &[]).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            work_answer(V::S12, &text),
            (
                false,
                vec![(
                    "STORE_UNAVAILABLE".into(),
                    "the notification cannot be recorded now; please retry".into()
                )]
            )
        );
    }
    assert!(app.events(&format!("transaction_id={tx}")).await.is_empty());
    assert!(app
        .nrc
        .wait_for(1, Duration::from_millis(200))
        .await
        .is_empty());

    std::fs::remove_file(&payloads).unwrap();
    std::fs::create_dir(&payloads).unwrap();
    work_ok(&app, Style::Prefixed12, body).await;
    let e = delivered_event(&app, tx).await;
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
    let id = e["id"].as_str().unwrap();
    let (status, _, bytes) = admin_bytes(&app, &format!("/api/v1/events/{id}/documents/0")).await;
    assert_eq!(status, 200);
    assert!(bytes == pdf, "document differs");
}

// ---------------------------------------------------------------------------------------------
// Hostile and broken messages

/// `haystack` with every `from` replaced by `to`, byte-wise (for non-UTF-8 bodies).
fn replace_bytes(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[tokio::test]
async fn broken_and_hostile_messages_get_a_client_fault_and_nothing_is_recorded() {
    let app = soap_app(|_| {}).await;
    let tx = "ENV-HOSTILE";
    register_tx(&app, "gosign", tx).await;
    let good = work_soap(Style::JaxWs11, tx, "SIGN_PROCESS_ENDED", None);
    // The classic billion laughs: 10^9 "lol"s from a few hundred bytes.
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
    let laughs = format!(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">{entities}]><soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Body><lolz>&lol9;</lolz></soapenv:Body></soapenv:Envelope>"#
    );
    let xxe = format!(
        r#"<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Body><ns2:workNotification xmlns:ns2="{WKNOTIF}"><envelopeExternalId>&xxe;</envelopeExternalId></ns2:workNotification></soapenv:Body></soapenv:Envelope>"#
    );
    // "Anna" with a Latin-1 a-grave: not UTF-8.
    let latin1 = replace_bytes(
        good.replace("UTF-8", "ISO-8859-1").as_bytes(),
        b"<mgrName>Anna<",
        b"<mgrName>Ann\xE0<",
    );
    let end_of_steps = good.find("</liveStatus>").unwrap();
    let in_a_tag = good.find("<liveStatus>").unwrap() + 5;
    let deep = format!(
        r#"<soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Body>{}{}</soapenv:Body></soapenv:Envelope>"#,
        "<a>".repeat(200),
        "</a>".repeat(200)
    );
    let not_soap = good
        .replace(S11, "urn:not-soap")
        .replace("soapenv:", "x:")
        .replace("xmlns:soapenv", "xmlns:x");
    // (body, start of the fault reason)
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            good.replace("<liveStatus>", "<liveStatus><!-- never closed")
                .into_bytes(),
            "malformed XML",
        ),
        (
            good.replace("<envelopeExternalId>", "<envelopeExternalId kind=x>")
                .into_bytes(),
            "malformed attribute",
        ),
        (good.as_bytes()[..end_of_steps].to_vec(), "truncated XML"),
        (good.as_bytes()[..in_a_tag].to_vec(), "malformed XML"),
        (Vec::new(), "no XML document element"),
        (
            b"this is not XML".to_vec(),
            "text outside the document element",
        ),
        (
            laughs.into_bytes(),
            "DOCTYPE is not allowed in SOAP messages",
        ),
        (xxe.into_bytes(), "DOCTYPE is not allowed in SOAP messages"),
        (latin1, "body is not UTF-8"),
        (
            good.replace("<mgrName>", "<mgrName>&undefined;")
                .into_bytes(),
            "undefined entity reference",
        ),
        (
            message(Style::JaxWs11, WKNOTIF, "deleteAllEnvelopes", &[]).into_bytes(),
            "unknown operation",
        ),
        (
            good.replace(WKNOTIF, "urn:somebody-else").into_bytes(),
            "operation element is not in the wknotif namespace",
        ),
        (
            not_soap.into_bytes(),
            "not a SOAP envelope (expected soap:Envelope)",
        ),
        (deep.into_bytes(), "XML nested too deeply"),
        (
            format!(
                r#"<soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Body/></soapenv:Envelope>"#
            )
            .into_bytes(),
            "SOAP Body is empty",
        ),
    ];
    let mut wrong = Vec::new();
    for (v, ct) in [(V::S11, CT11), (V::S12, CT12)] {
        let (want_status, want_code) = match v {
            V::S11 => (500, "soap:Client"),
            V::S12 => (400, "env:Sender"),
        };
        for (body, reason) in &cases {
            // Unparsable bodies are answered in the version the Content-Type names.
            let body = match v {
                V::S11 => body.clone(),
                V::S12 => replace_bytes(body, S11.as_bytes(), S12.as_bytes()),
            };
            let (status, h, text) = post(&app, SOAP, ct, body.clone(), &[]).await;
            let (code, got) = fault_of(v, &text);
            if status != want_status
                || code != want_code
                || !got.starts_with(reason)
                || header_of(&h, "content-type") != ct
            {
                wrong.push(format!(
                    "{v:?} {}\n  got HTTP {status} {code} {got:?}\n  want {want_status} {want_code} {reason:?}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                ));
            }
            // Nothing leaks back: no file contents, no expansion.
            assert!(!text.contains("root:"), "{text}");
            assert!(!text.contains("lollol"), "{text}");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(app.events("").await.is_empty());
    assert!(quarantine(&app).await.is_empty());
    assert!(app.nrc.received().is_empty());

    // Still serving.
    work_ok(&app, Style::JaxWs11, good).await;
}

#[tokio::test]
async fn unknown_notification_type_is_a_client_fault_quarantined_once() {
    let app = soap_app(|_| {}).await;
    let tx = "ENV-NEWTYPE";
    register_tx(&app, "gosign", tx).await;
    let body = work_soap(Style::JaxWs11, tx, "ENVELOPE_EXPLODED", None);
    for _ in 0..2 {
        let (status, _, text) = post(&app, SOAP, CT11, body.clone(), &[]).await;
        assert_eq!(status, 500);
        assert_eq!(
            fault_of(V::S11, &text),
            ("soap:Client".into(), "unknown notificationType".into())
        );
    }
    let q = quarantine(&app).await;
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!(q[0]["reason"], "unknown notificationType");
    assert_eq!(q[0]["vendor"], "gosign");
    assert_eq!(q[0]["surface"], "gosign.soap");
    let id = q[0]["id"].as_str().unwrap();
    let (s, _, raw) = admin_bytes(&app, &format!("/api/v1/events/{id}/payload")).await;
    assert_eq!(s, 200);
    assert_eq!(raw, body.as_bytes());
    // A missing mandatory field is the same kind of refusal, in SOAP 1.2 terms.
    let mut children = work_children(tx, "SIGN_PROCESS_ENDED", None, &[]);
    children.retain(|(n, _)| *n != "liveStatus");
    let body = message(Style::Prefixed12, WKNOTIF, "workNotification", &children);
    let (status, _, text) = post(&app, SOAP, CT12, body, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(
        fault_of(V::S12, &text),
        ("env:Sender".into(), "missing field liveStatus".into())
    );
    assert_eq!(quarantine(&app).await.len(), 2);
    assert!(app.events("").await.is_empty());
    assert!(app
        .nrc
        .wait_for(1, Duration::from_millis(200))
        .await
        .is_empty());
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// Refused callers on both SOAP endpoints, in both versions: 401, the challenge, a Client
/// (Sender) fault; nothing recorded.
async fn assert_refused(app: &TestApp, challenge: &str, cases: &[(Vec<(&str, &str)>, &str)]) {
    let notification = work_soap(Style::JaxWs11, "ENV-AUTH", "SIGN_PROCESS_ENDED", None);
    let done = operation_done("1", "insertEnvelope", "ENV-AUTH", "OK");
    for (headers, detail) in cases {
        for (path, body) in [(SOAP, &notification), (EVENTS, &done)] {
            for (v, ct, code) in [(V::S11, CT11, "soap:Client"), (V::S12, CT12, "env:Sender")] {
                let body = if v == V::S12 {
                    body.replace(S11, S12)
                } else {
                    body.clone()
                };
                let (status, h, text) = post(app, path, ct, body, headers).await;
                assert_eq!(status, 401, "{path} {headers:?}: {text}");
                assert_eq!(header_of(&h, "www-authenticate"), challenge);
                assert_eq!(
                    fault_of(v, &text),
                    (code.into(), format!("authentication failed: {detail}")),
                    "{path} {headers:?}"
                );
            }
        }
    }
    assert!(app.events("").await.is_empty());
    assert!(quarantine(app).await.is_empty());
}

#[tokio::test]
async fn basic_auth_guards_both_soap_endpoints() {
    let app = soap_app(|c| {
        c.vendors.gosign.soap.auth = Some(AuthConfig::Basic {
            username: "gosign".into(),
            password: Secret::Inline("s3cret-Pa55word".into()),
        })
    })
    .await;
    let basic = |u: &str, p: &str| format!("Basic {}", b64(format!("{u}:{p}").as_bytes()));
    let wrong = basic("gosign", "s3cret-Pa55wor");
    let good = basic("gosign", "s3cret-Pa55word");
    let missing = "no credentials were presented";
    let invalid = "the credentials are not valid";
    assert_refused(
        &app,
        r#"Basic realm="signrelay", charset="UTF-8""#,
        &[
            (vec![], missing),
            (vec![("X-Api-Key", ADMIN_KEY)], missing),
            (vec![("Authorization", wrong.as_str())], invalid),
        ],
    )
    .await;

    let tx = "ENV-AUTH";
    let zaak = register_tx(&app, "gosign", tx).await;
    let auth = [("Authorization", good.as_str())];
    let body = work_soap(Style::JaxWs11, tx, "SIGN_PROCESS_ENDED", None);
    let (status, _, text) = post(&app, SOAP, CT11, body, &auth).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(work_answer(V::S11, &text), (true, vec![]));
    let e = delivered_event(&app, tx).await;
    assert_eq!(
        e["caller"],
        json!({"method": "basic", "principal": "gosign"})
    );
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
    let (status, _, text) = post(
        &app,
        EVENTS,
        CT11,
        operation_done("7", "insertEnvelope", tx, "OK"),
        &auth,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(body_of(V::S11, &text).name, "OperationDoneResponse");
}

#[tokio::test]
async fn api_key_auth_guards_both_soap_endpoints() {
    let key = "gosign-soap-key-0123456789";
    let app = soap_app(|c| {
        c.vendors.gosign.soap.auth = Some(AuthConfig::ApiKey {
            header: "X-GoSign-Key".into(),
            key: Secret::Inline(key.into()),
        })
    })
    .await;
    let longer = format!("{key}0");
    let missing = "no credentials were presented";
    let invalid = "the credentials are not valid";
    assert_refused(
        &app,
        r#"ApiKey realm="signrelay""#,
        &[
            (vec![], missing),
            (vec![("X-Api-Key", key)], missing),
            (vec![("X-GoSign-Key", &key[..key.len() - 1])], invalid),
            (vec![("X-GoSign-Key", longer.as_str())], invalid),
        ],
    )
    .await;

    let tx = "ENV-AUTH";
    let zaak = register_tx(&app, "gosign", tx).await;
    let auth = [("x-gosign-key", key)];
    let body = work_soap(Style::Prefixed12, tx, "SIGN_PROCESS_ENDED", None);
    let (status, _, text) = post(&app, SOAP, CT12, body, &auth).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(work_answer(V::S12, &text), (true, vec![]));
    let e = delivered_event(&app, tx).await;
    assert_eq!(
        e["caller"],
        json!({"method": "api-key", "principal": "x-gosign-key"})
    );
    assert_notified(&app, tx, &zaak, VOLTOOID, None);
    let (status, _, text) = post(&app, SOAP, CT11, status_soap("u", &[("E", None)]), &auth).await;
    assert_eq!(status, 200, "{text}");
}

// ---------------------------------------------------------------------------------------------
// LegalBus OperationDone (ch. 11)

#[tokio::test]
async fn failed_insert_envelope_relays_afgebroken_and_ok_is_progress() {
    let app = soap_app(|_| {}).await;
    let response = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{S11}"><soap:Body><ns2:OperationDoneResponse xmlns:ns2="{EVENTS_NS}"/></soap:Body></soap:Envelope>"#
    );

    let tx = "ENV-EXISTS";
    let zaak = register_tx(&app, "gosign", tx).await;
    let body = operation_done(
        "bd5b0b2e",
        "insertEnvelope",
        tx,
        "return_status_envelope_already_exists",
    );
    for _ in 0..2 {
        let (status, h, text) = post(&app, EVENTS, CT11, body.clone(), &[]).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(header_of(&h, "content-type"), CT11);
        assert_eq!(text, response);
    }
    let reden = "technische fout: envelop niet aangemaakt (return_status_envelope_already_exists)";
    let e = delivered_event(&app, tx).await;
    assert_eq!(e["surface"], "gosign.legalbus");
    assert_eq!(e["outcome"], json!({"kind": "aborted", "reason": reden}));
    assert_notified(&app, tx, &zaak, AFGEBROKEN, Some(reden));

    // OK: the envelope exists; progress, nothing relayed. Over SOAP 1.2 this time.
    let tx = "ENV-INSERTED";
    register_tx(&app, "gosign", tx).await;
    let body = message(
        Style::Default12,
        EVENTS_NS,
        "OperationDone",
        &[(
            "OperationDoneEvent",
            format!("<ID>c0ffee</ID><command>insertEnvelope</command><extId>{tx}</extId><details/><returnStatus><code>OK</code></returnStatus>"),
        )],
    );
    let (status, h, text) = post(&app, EVENTS, CT12, body, &[]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(header_of(&h, "content-type"), CT12);
    let op = body_of(V::S12, &text);
    assert_eq!(
        (op.name.as_str(), op.ns.as_deref()),
        ("OperationDoneResponse", Some(EVENTS_NS))
    );
    assert!(op.children.is_empty());
    let ev = app.events(&format!("transaction_id={tx}")).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0]["outcome"],
        json!({"kind": "progress", "detail": "insertEnvelope: OK"})
    );
    assert_eq!(
        ev[0]["relay"],
        json!({"state": "not_relayed", "why": "progress"})
    );

    // Missing fields: a Client fault, quarantined; an unknown operation: a Client fault.
    let body = message(
        Style::JaxWs11,
        EVENTS_NS,
        "OperationDone",
        &[(
            "OperationDoneEvent",
            "<ID>1</ID><command>insertEnvelope</command><extId>E</extId>".into(),
        )],
    );
    let (status, _, text) = post(&app, EVENTS, CT11, body, &[]).await;
    assert_eq!(status, 500);
    assert_eq!(
        fault_of(V::S11, &text),
        (
            "soap:Client".into(),
            "missing field returnStatus.code".into()
        )
    );
    let body = message(Style::JaxWs11, EVENTS_NS, "OperationStarted", &[]);
    let (status, _, text) = post(&app, EVENTS, CT11, body, &[]).await;
    assert_eq!(status, 500);
    assert_eq!(
        fault_of(V::S11, &text),
        ("soap:Client".into(), "unknown operation".into())
    );
    assert_eq!(quarantine(&app).await.len(), 1);
    assert_eq!(
        app.nrc.wait_for(2, Duration::from_millis(300)).await.len(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Workability (7.2, 8.4)

#[tokio::test]
async fn registry_policy_follows_registration_withdrawal_and_outcome() {
    let app = soap_app(|c| {
        c.vendors.gosign.workability.policy = WorkabilityPolicy::Registry;
        c.vendors.gosign.workability.cache_secs = 0;
    })
    .await;
    let workable = json!({"workable": true, "action": "NOP"});
    let (a, b, c) = ("ENV-REG-A", "ENV-REG-B", "ENV-REG-C");
    for tx in [a, b, c] {
        register_tx(&app, "gosign", tx).await;
    }
    assert_eq!(rest_verdict(&app, a, "mrossi", None).await, workable);
    assert_eq!(
        rest_verdict(&app, a, "mrossi", Some("abianchi")).await,
        workable
    );
    assert_eq!(
        soap_statuses(&app, "mrossi", &[(a, None), (b, Some("abianchi"))]).await,
        json!({"userExtId": "mrossi", "userAllowedToWork": "true", "globalEnvelopeAction": "NOP",
               "envelopeStatuses": [{"extId": a, "workable": "true"}, {"extId": b, "workable": "true"}]})
    );

    // Withdrawn by the case application.
    withdraw(&app, b).await;
    let withdrawn = "ondertekening ingetrokken door de zaakbehandelaar";
    assert_eq!(
        rest_verdict(&app, b, "mrossi", None).await,
        json!({"workable": false, "reason": withdrawn, "action": "NOP"})
    );
    // Finished: a terminal outcome was recorded.
    work_ok(
        &app,
        Style::JaxWs11,
        work_soap(Style::JaxWs11, c, "SIGN_PROCESS_ENDED", None),
    )
    .await;
    let finished = "ondertekening is al afgerond";
    assert_eq!(
        rest_verdict(&app, c, "mrossi", Some("abianchi")).await,
        json!({"workable": false, "reason": finished, "action": "NOP"})
    );
    // Unknown envelopes are workable by default.
    assert_eq!(
        rest_verdict(&app, "ENV-NEVER", "mrossi", None).await,
        workable
    );

    // Mixed: the user may work; each envelope carries its own verdict.
    assert_eq!(
        soap_statuses(
            &app,
            "mrossi",
            &[(a, None), (b, None), (c, None), ("ENV-NEVER", None)]
        )
        .await,
        json!({"userExtId": "mrossi", "userAllowedToWork": "true", "globalEnvelopeAction": "NOP",
        "envelopeStatuses": [
            {"extId": a, "workable": "true"},
            {"extId": b, "workable": "false", "reason": withdrawn, "action": "NOP"},
            {"extId": c, "workable": "false", "reason": finished, "action": "NOP"},
            {"extId": "ENV-NEVER", "workable": "true"},
        ]})
    );
    // None workable, one action: the user is not allowed; the global action applies to all.
    assert_eq!(
        soap_statuses(&app, "mrossi", &[(b, None), (c, None)]).await,
        json!({"userExtId": "mrossi", "userAllowedToWork": "false", "userReason": withdrawn,
               "globalEnvelopeAction": "NOP"})
    );
    assert_eq!(rest_status(&app).await, json!({"online": true}));
}

#[tokio::test]
async fn registry_policy_with_unknown_envelopes_not_workable_and_delete() {
    let app = soap_app(|c| {
        c.vendors.gosign.workability.policy = WorkabilityPolicy::Registry;
        c.vendors.gosign.workability.unknown_envelopes_workable = false;
        c.vendors.gosign.workability.action = Action::Delete;
        c.vendors.gosign.workability.cache_secs = 0;
    })
    .await;
    let unknown = "envelop onbekend bij de zaakbehandeling";
    register_tx(&app, "gosign", "ENV-KNOWN").await;
    assert_eq!(
        rest_verdict(&app, "ENV-X", "DOUGLAS", None).await,
        json!({"workable": false, "reason": unknown, "action": "DELETE"})
    );
    // All not workable alike: userAllowedToWork=false, globalEnvelopeAction=DELETE.
    assert_eq!(
        soap_statuses(
            &app,
            "DOUGLAS",
            &[("ENV-X", None), ("ENV-Y", Some("ROSSI"))]
        )
        .await,
        json!({"userExtId": "DOUGLAS", "userAllowedToWork": "false", "userReason": unknown,
               "globalEnvelopeAction": "DELETE"})
    );
    // Mixed: per envelope, the refused one with its own action.
    assert_eq!(
        soap_statuses(&app, "DOUGLAS", &[("ENV-KNOWN", None), ("ENV-X", None)]).await,
        json!({"userExtId": "DOUGLAS", "userAllowedToWork": "true", "globalEnvelopeAction": "NOP",
        "envelopeStatuses": [
            {"extId": "ENV-KNOWN", "workable": "true"},
            {"extId": "ENV-X", "workable": "false", "reason": unknown, "action": "DELETE"},
        ]})
    );
    // No envelopes asked: nothing to refuse.
    assert_eq!(
        soap_statuses(&app, "DOUGLAS", &[]).await,
        json!({"userExtId": "DOUGLAS", "userAllowedToWork": "true", "globalEnvelopeAction": "NOP"})
    );
}

/// A ZRC stand-in: `GET /zaken/{id}` checks the ZGW JWT (HS256 over NRC_SECRET, our client
/// id) and `Accept-Crs`, and serves a zaak, closed (with `einddatum`) when its id is in
/// `closed`; `hang` makes it answer only after 5 s.
#[derive(Default)]
struct ZrcState {
    closed: HashSet<String>,
    hang: bool,
    served: usize,
    refused: Vec<String>,
}

struct Zrc {
    url: String,
    state: Arc<Mutex<ZrcState>>,
    handle: ServerHandle,
}

impl Zrc {
    async fn start() -> Zrc {
        let state = Arc::new(Mutex::new(ZrcState::default()));
        let data = web::Data::new(state.clone());
        let (base, handle) = stand_in(move |c| {
            c.app_data(data.clone())
                .route("/zaken/api/v1/zaken/{id}", web::get().to(zrc_zaak));
        });
        Zrc {
            url: format!("{base}/zaken/api/v1/zaken"),
            state,
            handle,
        }
    }

    fn zaak(&self, id: &str) -> String {
        format!("{}/{id}", self.url)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ZrcState> {
        self.state.lock().unwrap()
    }
}

fn check_zgw_jwt(req: &HttpRequest) -> Result<(), String> {
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or("no Bearer token")?;
    let mut v = Validation::new(Algorithm::HS256);
    v.required_spec_claims = ["iss".to_string()].into_iter().collect();
    v.validate_exp = false;
    let claims = decode::<ZgwClaims>(token, &DecodingKey::from_secret(NRC_SECRET.as_bytes()), &v)
        .map_err(|e| format!("invalid JWT: {e}"))?
        .claims;
    if claims.client_id != NRC_CLIENT || claims.iss != NRC_CLIENT {
        return Err(format!("unknown client {}", claims.client_id));
    }
    Ok(())
}

async fn zrc_zaak(
    req: HttpRequest,
    path: web::Path<String>,
    st: web::Data<Arc<Mutex<ZrcState>>>,
) -> HttpResponse {
    if let Err(e) = check_zgw_jwt(&req) {
        st.lock().unwrap().refused.push(e.clone());
        return HttpResponse::Forbidden().json(json!({"code": "permission_denied", "detail": e}));
    }
    if !req.headers().contains_key("accept-crs") {
        st.lock().unwrap().refused.push("no Accept-Crs".into());
        return HttpResponse::PreconditionFailed()
            .json(json!({"code": "missing-crs-headers", "detail": "Accept-Crs ontbreekt"}));
    }
    let (hang, closed) = {
        let mut s = st.lock().unwrap();
        s.served += 1;
        (s.hang, s.closed.contains(path.as_str()))
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let id = path.into_inner();
    HttpResponse::Ok()
        .insert_header(("Content-Crs", "EPSG:4326"))
        .json(json!({
            "url": format!("http://{}{}", req.connection_info().host(), req.path()),
            "uuid": id,
            "identificatie": format!("ZAAK-{id}"),
            "startdatum": "2026-11-01",
            "einddatum": if closed { json!("2026-11-21") } else { Value::Null },
        }))
}

async fn zaak_open_app(on_error: OnError) -> TestApp {
    soap_app(|c| {
        c.vendors.gosign.workability.policy = WorkabilityPolicy::ZaakOpen;
        c.vendors.gosign.workability.cache_secs = 0;
        c.vendors.gosign.workability.timeout_ms = 400;
        c.vendors.gosign.workability.on_error = on_error;
    })
    .await
}

#[tokio::test]
async fn zaak_open_policy_asks_the_zrc_and_fails_closed_within_the_timeout() {
    let zrc = Zrc::start().await;
    let app = zaak_open_app(OnError::FailClosed).await;
    register_at(&app, "ENV-OPEN", &zrc.zaak("open-1")).await;
    register_at(&app, "ENV-CLOSED", &zrc.zaak("closed-1")).await;
    zrc.lock().closed.insert("closed-1".into());

    let workable = json!({"workable": true, "action": "NOP"});
    let closed = "de zaak is afgesloten";
    assert_eq!(
        rest_verdict(&app, "ENV-OPEN", "mrossi", None).await,
        workable
    );
    assert_eq!(
        rest_verdict(&app, "ENV-CLOSED", "mrossi", Some("abianchi")).await,
        json!({"workable": false, "reason": closed, "action": "NOP"})
    );
    assert_eq!(
        soap_statuses(&app, "mrossi", &[("ENV-OPEN", None), ("ENV-CLOSED", None)]).await,
        json!({"userExtId": "mrossi", "userAllowedToWork": "true", "globalEnvelopeAction": "NOP",
        "envelopeStatuses": [
            {"extId": "ENV-OPEN", "workable": "true"},
            {"extId": "ENV-CLOSED", "workable": "false", "reason": closed, "action": "NOP"},
        ]})
    );
    {
        let z = zrc.lock();
        assert!(z.refused.is_empty(), "{:?}", z.refused);
        assert_eq!(z.served, 4);
    }
    assert_eq!(rest_status(&app).await, json!({"online": true}));
    // Unknown envelopes never reach the ZRC.
    assert_eq!(
        rest_verdict(&app, "ENV-NONE", "mrossi", None).await,
        workable
    );
    assert_eq!(zrc.lock().served, 4);

    // The ZRC hangs: not workable (fail-closed) once the 400 ms timeout passes.
    zrc.lock().hang = true;
    let started = Instant::now();
    let unavailable = "controle tijdelijk niet mogelijk; probeer het later opnieuw";
    assert_eq!(
        rest_verdict(&app, "ENV-OPEN", "mrossi", None).await,
        json!({"workable": false, "reason": unavailable, "action": "NOP"})
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        soap_statuses(&app, "mrossi", &[("ENV-OPEN", None)]).await,
        json!({"userExtId": "mrossi", "userAllowedToWork": "false", "userReason": unavailable,
               "globalEnvelopeAction": "NOP"})
    );
    assert_eq!(
        rest_status(&app).await,
        json!({"online": true, "services": {"getStatus": {"online": true, "available": false}}})
    );
    // Back: available again after the next good check.
    zrc.lock().hang = false;
    assert_eq!(
        rest_verdict(&app, "ENV-OPEN", "mrossi", None).await,
        workable
    );
    assert_eq!(rest_status(&app).await, json!({"online": true}));
    zrc.handle.stop(false).await;
}

#[tokio::test]
async fn zaak_open_policy_fails_open_when_the_zrc_is_down() {
    let port = free_port();
    let app = zaak_open_app(OnError::FailOpen).await;
    register_at(
        &app,
        "ENV-DOWN",
        &format!("http://127.0.0.1:{port}/zaken/api/v1/zaken/z-1"),
    )
    .await;
    let started = Instant::now();
    assert_eq!(
        rest_verdict(&app, "ENV-DOWN", "mrossi", None).await,
        json!({"workable": true, "action": "NOP"})
    );
    assert_eq!(
        soap_statuses(&app, "mrossi", &[("ENV-DOWN", None)]).await,
        json!({"userExtId": "mrossi", "userAllowedToWork": "true", "globalEnvelopeAction": "NOP",
               "envelopeStatuses": [{"extId": "ENV-DOWN", "workable": "true"}]})
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        rest_status(&app).await,
        json!({"online": true, "services": {"getStatus": {"online": true, "available": false}}})
    );
}

/// A case application that answers the workability question itself (policy `forward`):
/// `/werk/envelopes/{e}/managers/{u}[/for/{o}]/status`, with a bearer token.
struct CaseApp {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    handle: ServerHandle,
}

async fn case_app_answer(
    req: HttpRequest,
    seen: web::Data<Arc<Mutex<Vec<String>>>>,
) -> HttpResponse {
    seen.lock().unwrap().push(req.path().to_string());
    if req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        != Some("Bearer case-token")
    {
        return HttpResponse::Unauthorized().finish();
    }
    let segs: Vec<&str> = req.path().split('/').collect();
    let envelope = segs.get(3).copied().unwrap_or("");
    if envelope.starts_with("FAIL") {
        return HttpResponse::InternalServerError().finish();
    }
    if envelope.starts_with("HOLD") {
        return HttpResponse::Ok().json(json!({"workable": false, "reason": "Pratica in sospeso, permesso non accordato", "action": "NOP"}));
    }
    if envelope.starts_with("GONE") {
        return HttpResponse::Ok()
            .json(json!({"workable": false, "reason": "zaak vervallen", "action": "DELETE"}));
    }
    HttpResponse::Ok().json(json!({"workable": true, "action": "NOP"}))
}

impl CaseApp {
    async fn start() -> CaseApp {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let data = web::Data::new(seen.clone());
        let (base, handle) = stand_in(move |c| {
            c.app_data(data.clone())
                .default_service(web::get().to(case_app_answer));
        });
        CaseApp {
            url: format!("{base}/werk"),
            seen,
            handle,
        }
    }
}

#[tokio::test]
async fn forward_policy_asks_the_case_application() {
    let case = CaseApp::start().await;
    let url = case.url.clone();
    let app = soap_app(move |c| {
        c.vendors.gosign.workability.policy = WorkabilityPolicy::Forward;
        c.vendors.gosign.workability.forward_url = Some(url);
        c.vendors.gosign.workability.forward_bearer = Some(Secret::Inline("case-token".into()));
        c.vendors.gosign.workability.cache_secs = 0;
        c.vendors.gosign.workability.on_error = OnError::FailClosed;
    })
    .await;
    let hold = "Pratica in sospeso, permesso non accordato";

    assert_eq!(
        rest_verdict(&app, "HOLD-1", "DOUGLAS", Some("ROSSI")).await,
        json!({"workable": false, "reason": hold, "action": "NOP"})
    );
    // The seed's request: the substitution reaches the case application as /for/{original}.
    let (status, _, text) = post(&app, SOAP, CT11, SEED_STATUS_REQUEST, &[]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(statuses_answer(V::S11, &text)["userAllowedToWork"], "true");
    let mut seen = case.seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            "/werk/envelopes/HOLD-1/managers/DOUGLAS/for/ROSSI/status",
            "/werk/envelopes/extEnve1/managers/userExtID/status",
            "/werk/envelopes/extEnve2/managers/userExtID/status",
            "/werk/envelopes/extEnve3/managers/userExtID/status",
            "/werk/envelopes/extEnve4/managers/userExtID/for/userExtIDSubstituted/status",
        ]
    );

    // All held alike: not allowed, the case application's reason and action.
    assert_eq!(
        soap_statuses(&app, "DOUGLAS", &[("HOLD-1", None), ("HOLD-2", None)]).await,
        json!({"userExtId": "DOUGLAS", "userAllowedToWork": "false", "userReason": hold,
               "globalEnvelopeAction": "NOP"})
    );
    // Not workable with different actions, and one workable: per envelope.
    assert_eq!(
        soap_statuses(
            &app,
            "DOUGLAS",
            &[("OK-1", None), ("HOLD-1", None), ("GONE-1", None)]
        )
        .await,
        json!({"userExtId": "DOUGLAS", "userAllowedToWork": "true", "globalEnvelopeAction": "NOP",
        "envelopeStatuses": [
            {"extId": "OK-1", "workable": "true"},
            {"extId": "HOLD-1", "workable": "false", "reason": hold, "action": "NOP"},
            {"extId": "GONE-1", "workable": "false", "reason": "zaak vervallen", "action": "DELETE"},
        ]})
    );
    assert_eq!(rest_status(&app).await, json!({"online": true}));
    // The case application fails: fail-closed, and the ping reports it.
    assert_eq!(
        rest_verdict(&app, "FAIL-1", "DOUGLAS", None).await,
        json!({"workable": false, "reason": "controle tijdelijk niet mogelijk; probeer het later opnieuw", "action": "NOP"})
    );
    assert_eq!(
        rest_status(&app).await,
        json!({"online": true, "services": {"getStatus": {"online": true, "available": false}}})
    );
    case.handle.stop(false).await;
}

// ---------------------------------------------------------------------------------------------
// WSDLs

#[tokio::test]
async fn wsdls_are_served_with_the_public_address() {
    let app = soap_app(|c| c.server.public_url = "https://signrelay.example.nl/".into()).await;
    for (path, file, location) in [
        (
            SOAP,
            include_str!("../../wsdl/WorkNotificationsService.wsdl"),
            "https://signrelay.example.nl/gosign/soap",
        ),
        (
            EVENTS,
            include_str!("../../wsdl/EvelopeEventService.wsdl"),
            "https://signrelay.example.nl/gosign/soap/events",
        ),
    ] {
        for query in ["?wsdl", "?WSDL"] {
            let r = app
                .client
                .get(app.url(&format!("{path}{query}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            assert_eq!(r.headers()["content-type"], CT11);
            let text = r.text().await.unwrap();
            assert!(!text.contains("localhost:8080"), "{text}");
            assert_eq!(
                text,
                file.replace("http://localhost:8080", "https://signrelay.example.nl")
            );
            // One SOAP 1.1 and one SOAP 1.2 port, both at the public address.
            assert_eq!(
                text.matches(&format!(r#"location="{location}""#)).count(),
                2,
                "{path}"
            );
            let root = parse_xml(&text);
            assert_eq!(root.name, "definitions");
        }
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 405);
        assert_eq!(r.headers()["allow"], "POST");
    }
}

// ---------------------------------------------------------------------------------------------
// A mainstream SOAP toolkit

#[tokio::test]
async fn zeep_loads_the_wsdls_and_calls_every_operation() {
    let have_zeep = std::process::Command::new("python3")
        .args(["-c", "import zeep"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_zeep {
        if std::env::var("SIGNRELAY_REQUIRE_SOAP_TOOLKIT").as_deref() == Ok("1") {
            panic!("SIGNRELAY_REQUIRE_SOAP_TOOLKIT=1 but python3 cannot import zeep (pip install zeep)");
        }
        eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !! SKIPPED zeep_loads_the_wsdls_and_calls_every_operation: python3 cannot\n\
             !! import zeep. Install it with `pip install zeep`, or set\n\
             !! SIGNRELAY_REQUIRE_SOAP_TOOLKIT=1 to make this a failure.\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
        return;
    }
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let public = base.clone();
    let app = soap_app(move |c| {
        c.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.server.public_url = public;
        // What the script expects of getEnvelopeExternalStatus.
        c.vendors.gosign.workability.policy = WorkabilityPolicy::Registry;
        c.vendors.gosign.workability.unknown_envelopes_workable = false;
        c.vendors.gosign.workability.action = Action::Delete;
    })
    .await;
    assert_eq!(app.address, base);
    let zaken: Vec<(&str, String)> = {
        let mut z = Vec::new();
        for tx in ["ZEEP-11", "ZEEP-12", "ZEEP-LB-11", "ZEEP-LB-12", "ZEEP-A"] {
            z.push((tx, register_tx(&app, "gosign", tx).await));
        }
        z
    };

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/soap_toolkit/zeep_check.py"
    );
    let run = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&base)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("zeep check finishes within 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "zeep check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("all operations answered as expected"),
        "{stdout}"
    );

    // What zeep sent was understood: completed with the document intact, and the failed
    // insertions as aborted.
    app.nrc.wait_for(4, WAIT).await;
    for ((tx, zaak), ct) in zaken[..2].iter().zip(["text/xml", "application/soap+xml"]) {
        let e = delivered_event(&app, tx).await;
        assert_eq!(e["surface"], "gosign.soap");
        assert_eq!(e["outcome"], json!({"kind": "completed"}));
        assert_eq!(e["occurred_at"], "2026-11-20T10:05:00Z");
        assert_eq!(
            e["documents"],
            json!([{"external_id": format!("DOC-{tx}"), "mime_type": "application/pdf", "size": ZEEP_DOCUMENT.len()}])
        );
        let id = e["id"].as_str().unwrap();
        let (status, _, bytes) =
            admin_bytes(&app, &format!("/api/v1/events/{id}/documents/0")).await;
        assert_eq!(status, 200);
        assert_eq!(bytes, ZEEP_DOCUMENT);
        // One call per port: SOAP 1.1, then SOAP 1.2.
        let (_, h, _) = admin_bytes(&app, &format!("/api/v1/events/{id}/payload")).await;
        assert!(header_of(&h, "content-type").starts_with(ct), "{tx}: {h:?}");
        assert_notified(&app, tx, zaak, VOLTOOID, None);
    }
    let reden = "technische fout: envelop niet aangemaakt (return_status_envelope_already_exists)";
    for (tx, zaak) in &zaken[2..4] {
        let e = delivered_event(&app, tx).await;
        assert_eq!(e["surface"], "gosign.legalbus");
        assert_notified(&app, tx, zaak, AFGEBROKEN, Some(reden));
    }
    assert_eq!(app.nrc.received().len(), 4);
}
