//! GoSign SOAP surface (integration methodology ch. 7): `workNotification` and
//! `getEnvelopeExternalStatus` on one endpoint, described by `wsdl/WorkNotificationsService.wsdl`.
//! The XML maps onto the same GoSign model as REST; only the transport differs.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use yaserde::YaSerialize;

use super::model::{self, Notification, Rejection, StepStatus};
use super::workability::{combine, Workability};
use crate::auth::AuthFailure;
use crate::event::DocumentRef;
use crate::vendors::receive::{Answers, Callback, Inlet, Parsed, Surface};
use crate::vendors::soap::{self, Element, FaultCode, SoapVersion};

pub const SURFACE: &str = "gosign.soap";
pub const NAMESPACE: &str = "http://www.infocert.it/smartsign/schema/wknotif";

/// `workNotificationResponse`: success only once the notification is durable.
#[derive(Debug, Default, YaSerialize)]
#[yaserde(
    rename = "workNotificationResponse",
    prefix = "ns2",
    namespaces = { "ns2" = "http://www.infocert.it/smartsign/schema/wknotif" }
)]
pub struct WorkNotificationResponse {
    #[yaserde(rename = "success")]
    pub success: bool,
    #[yaserde(rename = "errors")]
    pub errors: Vec<ResponseError>,
}

#[derive(Debug, Default, YaSerialize)]
pub struct ResponseError {
    #[yaserde(rename = "code")]
    pub code: String,
    #[yaserde(rename = "message")]
    pub message: String,
}

/// A step as far as the outcome cares: has it ended?
struct XmlStep(bool);

impl StepStatus for XmlStep {
    fn ended(&self) -> bool {
        self.0
    }
}

/// Children of a list wrapper (`<liveStatus><stepEvent/>…`), or the repeated elements
/// themselves when a toolkit flattens the list.
fn list<'e, 'a>(op: &'e Element<'a>, wrapper: &'e str, item: &'e str) -> Vec<&'e Element<'a>> {
    let wrappers: Vec<&Element<'a>> = op.children_named(wrapper).collect();
    let nested: Vec<&Element<'a>> = wrappers
        .iter()
        .flat_map(|w| w.children_named(item))
        .collect();
    if nested.is_empty() {
        wrappers
            .into_iter()
            .filter(|w| !w.children.is_empty())
            .collect()
    } else {
        nested
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn base64_of<'e>(doc: &'e Element<'_>) -> Option<&'e str> {
    doc.child("content")?.child("data").map(|d| d.text.as_ref())
}

fn mime_of<'e>(doc: &'e Element<'_>) -> Option<&'e str> {
    let c = doc.child("content")?;
    c.child_text("mime-type")
        .or_else(|| c.child_text("mimeType"))
}

/// `workNotification` → the shared GoSign model.
pub fn notification(op: &Element<'_>) -> Result<Notification, Rejection> {
    let envelope = op
        .child_text("envelopeExternalId")
        .filter(|s| !s.is_empty())
        .ok_or(Rejection::Missing("envelopeExternalId"))?;
    let envelope_id = model::check_envelope_id(envelope)?;
    let kind = op
        .child_text("notificationType")
        .ok_or(Rejection::Missing("notificationType"))?;
    if op.child("liveStatus").is_none() {
        return Err(Rejection::Missing("liveStatus"));
    }
    let steps = list(op, "liveStatus", "stepEvent");
    let ended: Vec<XmlStep> = steps
        .iter()
        .map(|s| XmlStep(s.child("endedAt").is_some() || s.child_text("status") == Some("WKD")))
        .collect();
    let outcome = model::work_notification_outcome(kind, op.child_text("note"), &ended)?;
    let documents = list(op, "documents", "document")
        .into_iter()
        .map(|d| DocumentRef {
            external_id: d.child_text("docExternalId").unwrap_or("").to_string(),
            mime_type: mime_of(d).map(str::to_string),
            size: base64_of(d).map(model::decoded_len_spaced).unwrap_or(0),
            url: None,
        })
        .collect();
    Ok(Notification {
        envelope_id,
        outcome,
        occurred_at: steps
            .iter()
            .filter_map(|s| parse_time(s.child_text("endedAt")?))
            .max(),
        documents,
    })
}

/// The `index`-th inline document of a stored SOAP workNotification, decoded.
pub fn xml_document(body: &[u8], index: usize) -> Option<(Option<String>, Vec<u8>)> {
    use base64::Engine;
    xml_document_with(body, index, |mime, text| {
        let compact: String = text.split_ascii_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .ok()?;
        Some((mime.map(str::to_string), bytes))
    })?
}

/// Hands the `index`-th inline document's mime type and base64 text (borrowed from `body`
/// where it has no entities) to `f`.
pub fn xml_document_with<R>(
    body: &[u8],
    index: usize,
    f: impl FnOnce(Option<&str>, &str) -> R,
) -> Option<R> {
    let req = soap::parse(body).ok()?;
    let docs = list(&req.operation, "documents", "document");
    let d = docs.get(index)?;
    Some(f(mime_of(d), base64_of(d)?))
}

fn work_notification_response(success: bool, error: Option<(&str, &str)>) -> String {
    to_xml(&WorkNotificationResponse {
        success,
        errors: error
            .map(|(code, message)| ResponseError {
                code: code.into(),
                message: message.into(),
            })
            .into_iter()
            .collect(),
    })
}

/// What the WorkNotificationsService shares.
pub struct SoapSurface {
    pub inlet: Inlet,
    pub workability: Arc<Workability>,
    /// The WSDL with its service address set to the public URL.
    pub wsdl: String,
}

/// Which SOAP service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    WorkNotifications,
    /// LegalBus's EvelopeEventService.
    Events,
}

/// SOAP's answers, in the request's SOAP version. GoSign retries anything but
/// `success=true`; LegalBus redelivers on a Server fault.
pub struct SoapAnswers {
    pub version: SoapVersion,
    pub service: Service,
}

impl SoapAnswers {
    /// The version as the content type declares it; the parsed envelope has the final word.
    pub fn for_request(req: &HttpRequest, service: Service) -> SoapAnswers {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        SoapAnswers {
            version: soap::version_from_content_type(ct),
            service,
        }
    }
}

impl Answers for SoapAnswers {
    /// A Client fault with HTTP 401 and the challenge.
    fn unauthorized(&self, f: AuthFailure, challenge: Option<String>) -> HttpResponse {
        let mut resp = soap::fault(
            self.version,
            FaultCode::Client,
            &format!("authentication failed: {}", f.detail()),
            StatusCode::UNAUTHORIZED,
        );
        if let Some(v) = challenge.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }

    fn too_large(&self, limit_bytes: usize) -> HttpResponse {
        // Not a success: GoSign retries, so nothing is lost while the limit is raised.
        soap::fault(
            self.version,
            FaultCode::Server,
            &format!(
                "body exceeds the limit of {} MiB",
                limit_bytes / (1024 * 1024)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
    }

    fn incomplete(&self) -> HttpResponse {
        client_fault(self.version, "body was not received completely")
    }

    fn recorded(&self) -> HttpResponse {
        match self.service {
            Service::WorkNotifications => {
                soap::respond(self.version, &work_notification_response(true, None))
            }
            Service::Events => soap::respond(
                self.version,
                r#"<ns2:OperationDoneResponse xmlns:ns2="http://www.infocert.it/legalbus/schema/evelopeevent"/>"#,
            ),
        }
    }

    /// GoSign retries anything but success=true, so say so with a fault; one copy is kept.
    fn discarded(&self, reason: &str) -> HttpResponse {
        client_fault(self.version, reason)
    }

    fn not_recorded(&self) -> HttpResponse {
        match self.service {
            Service::WorkNotifications => soap::respond(
                self.version,
                &work_notification_response(
                    false,
                    Some((
                        "STORE_UNAVAILABLE",
                        "the notification cannot be recorded now; please retry",
                    )),
                ),
            ),
            // A Server fault: LegalBus redelivers.
            Service::Events => soap::fault_for(
                self.version,
                FaultCode::Server,
                "the event cannot be recorded now; please retry",
            ),
        }
    }

    fn not_quarantined(&self) -> HttpResponse {
        match self.service {
            Service::WorkNotifications => soap::respond(
                self.version,
                &work_notification_response(
                    false,
                    Some(("STORE_UNAVAILABLE", "cannot be recorded now")),
                ),
            ),
            Service::Events => {
                soap::fault_for(self.version, FaultCode::Server, "cannot be recorded now")
            }
        }
    }
}

/// `POST {soap base}`: `workNotification` is a callback; `getEnvelopeExternalStatus` is a
/// question answered from the workability policy.
impl Surface for SoapSurface {
    type Answers = SoapAnswers;
    const CONTENT_TYPE: &'static str = "text/xml";

    fn inlet(&self) -> &Inlet {
        &self.inlet
    }

    fn answers(&self, req: &HttpRequest) -> SoapAnswers {
        SoapAnswers::for_request(req, Service::WorkNotifications)
    }

    async fn parse(&self, _req: &HttpRequest, body: &Bytes, answers: &mut SoapAnswers) -> Parsed {
        let parsed = match soap::parse(body) {
            Ok(p) => p,
            Err(e) => return Parsed::Answer(client_fault(answers.version, &e.0)),
        };
        answers.version = parsed.version;
        let op = &parsed.operation;
        if op.ns.as_deref().is_some_and(|ns| ns != NAMESPACE) {
            return Parsed::Answer(client_fault(
                answers.version,
                "operation element is not in the wknotif namespace",
            ));
        }
        match op.name.as_str() {
            "workNotification" | "workNotificationRequest" => match notification(op) {
                Ok(n) => Parsed::Callback(Callback {
                    dedup_key: n.dedup_key(),
                    transaction_id: n.envelope_id,
                    outcome: n.outcome,
                    occurred_at: n.occurred_at,
                    documents: n.documents,
                    follow_up: None,
                }),
                Err(rejection) => Parsed::Unprocessable(rejection.to_string()),
            },
            "getEnvelopeExternalStatusRequest" | "getEnvelopeExternalStatus" => Parsed::Answer(
                envelope_external_status(&self.workability, answers.version, op).await,
            ),
            _ => Parsed::Answer(client_fault(answers.version, "unknown operation")),
        }
    }
}

pub(super) fn client_fault(version: SoapVersion, reason: &str) -> HttpResponse {
    soap::fault_for(version, FaultCode::Client, reason)
}

/// Most envelopes one `getEnvelopeExternalStatus` may ask about.
const MAX_ENVELOPES: usize = 1000;

#[derive(Debug, Default, YaSerialize)]
#[yaserde(
    rename = "getEnvelopeExternalStatusResponse",
    prefix = "ns2",
    namespaces = { "ns2" = "http://www.infocert.it/smartsign/schema/wknotif" }
)]
pub struct EnvelopeExternalStatusResponse {
    #[yaserde(rename = "envelopeStatuses")]
    pub statuses: EnvelopeStatusesXml,
}

#[derive(Debug, Default, YaSerialize)]
pub struct EnvelopeStatusesXml {
    #[yaserde(rename = "userExtId")]
    pub user_ext_id: Option<String>,
    #[yaserde(rename = "userAllowedToWork")]
    pub user_allowed_to_work: Option<bool>,
    #[yaserde(rename = "userReason")]
    pub user_reason: Option<String>,
    #[yaserde(rename = "globalEnvelopeAction")]
    pub global_envelope_action: Option<String>,
    #[yaserde(rename = "envelopeStatuses")]
    pub envelopes: Vec<EnvelopeStatusXml>,
}

#[derive(Debug, Default, YaSerialize)]
pub struct EnvelopeStatusXml {
    #[yaserde(rename = "extId")]
    pub ext_id: String,
    #[yaserde(rename = "workable")]
    pub workable: bool,
    #[yaserde(rename = "reason")]
    pub reason: Option<String>,
    #[yaserde(rename = "action")]
    pub action: Option<String>,
}

fn to_xml<T: YaSerialize>(v: &T) -> String {
    yaserde::ser::to_string_with_config(
        v,
        &yaserde::ser::Config {
            perform_indent: false,
            write_document_declaration: false,
            indent_string: None,
        },
    )
    .expect("response serializes")
}

/// `getEnvelopeExternalStatus` (ch. 7.2): one verdict per envelope from the workability
/// policy, combined per the seed's rules.
async fn envelope_external_status(
    workability: &Workability,
    version: SoapVersion,
    op: &Element<'_>,
) -> HttpResponse {
    let Some(user) = op.child_text("userExtId").filter(|u| !u.is_empty()) else {
        return client_fault(version, "missing userExtId");
    };
    // GoSign's own example spells one element `envelopeExtId-List`: match the stem.
    let asked: Vec<(&str, Option<&str>)> = op
        .children
        .iter()
        .filter(|c| c.name.starts_with("envelopeExtId"))
        .map(|c| (c.text.trim(), c.attr("fromUserExtId")))
        .filter(|(id, _)| !id.is_empty())
        .collect();
    if asked.len() > MAX_ENVELOPES {
        return client_fault(version, "too many envelopes in one request");
    }
    let verdicts = futures_util::future::join_all(
        asked
            .iter()
            .map(|(id, from)| workability.check(id, user, *from)),
    )
    .await;
    let combined = combine(
        asked
            .iter()
            .map(|(id, _)| id.to_string())
            .zip(verdicts)
            .collect(),
    );
    let response = EnvelopeExternalStatusResponse {
        statuses: EnvelopeStatusesXml {
            user_ext_id: Some(user.to_string()),
            user_allowed_to_work: Some(combined.user_allowed_to_work),
            user_reason: combined.user_reason,
            global_envelope_action: Some(combined.global_action.as_str().to_string()),
            envelopes: combined
                .envelopes
                .into_iter()
                .map(|(id, v)| EnvelopeStatusXml {
                    ext_id: id,
                    workable: v.workable,
                    action: (!v.workable).then(|| v.action.as_str().to_string()),
                    reason: v.reason,
                })
                .collect(),
        },
    };
    soap::respond(version, &to_xml(&response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_is_namespaced_with_unqualified_children() {
        let xml = work_notification_response(false, Some(("E1", "m")));
        assert_eq!(
            xml,
            r#"<ns2:workNotificationResponse xmlns:ns2="http://www.infocert.it/smartsign/schema/wknotif"><success>false</success><errors><code>E1</code><message>m</message></errors></ns2:workNotificationResponse>"#
        );
    }
}
