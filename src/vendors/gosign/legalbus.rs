//! LegalBus `OperationDone` (ch. 11): GoSign, behind LegalBus, reports the end of an
//! asynchronous operation. An `insertEnvelope` that failed means the signing transaction never
//! started: that is an Aborted outcome. Success is recorded as progress.

use actix_web::HttpRequest;
use bytes::Bytes;

use super::model::{self, Rejection};
use super::soap::{Service, SoapAnswers};
use crate::event::{dedup_key, Outcome, TransactionId};
use crate::vendors::receive::{Callback, Inlet, Parsed, Surface};
use crate::vendors::soap::{self, Element, FaultCode};

pub const SURFACE: &str = "gosign.legalbus";

/// The fields of an `OperationDoneEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationDone {
    pub id: String,
    pub command: String,
    pub ext_id: TransactionId,
    pub code: String,
}

/// Reads `OperationDone`, whether the fields sit in an `OperationDoneEvent` wrapper or not.
pub fn parse(op: &Element<'_>) -> Result<OperationDone, Rejection> {
    let ev = op
        .child("OperationDoneEvent")
        .or_else(|| op.child("operationDoneEvent"))
        .unwrap_or(op);
    let text = |name: &'static str| {
        ev.child_text(name)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or(Rejection::Missing(name))
    };
    let ext_id = model::check_envelope_id(&text("extId")?)?;
    let code = ev
        .child("returnStatus")
        .and_then(|r| r.child_text("code"))
        .filter(|c| !c.is_empty())
        .ok_or(Rejection::Missing("returnStatus.code"))?
        .to_string();
    Ok(OperationDone {
        id: ev.child_text("ID").unwrap_or("").to_string(),
        command: text("command")?,
        ext_id,
        code,
    })
}

/// The outcome: a failed insertion aborts the transaction; anything else is progress.
pub fn outcome(done: &OperationDone) -> Outcome {
    let ok = done.code.eq_ignore_ascii_case("OK");
    if done.command == "insertEnvelope" && !ok {
        Outcome::Aborted {
            reason: format!(
                "technische fout: envelop niet aangemaakt ({})",
                short(&done.code)
            ),
        }
    } else {
        Outcome::Progress {
            detail: format!("{}: {}", short(&done.command), short(&done.code)),
        }
    }
}

/// Vendor codes are short identifiers; keep what is relayed bounded and printable.
fn short(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect()
}

/// What the EvelopeEventService shares.
pub struct LegalBus {
    pub inlet: Inlet,
    /// The WSDL with its service address set to the public URL.
    pub wsdl: String,
}

/// `POST {events_path}`: `OperationDone`.
impl Surface for LegalBus {
    type Answers = SoapAnswers;
    const CONTENT_TYPE: &'static str = "text/xml";

    fn inlet(&self) -> &Inlet {
        &self.inlet
    }

    fn answers(&self, req: &HttpRequest) -> SoapAnswers {
        SoapAnswers::for_request(req, Service::Events)
    }

    async fn parse(&self, _req: &HttpRequest, body: &Bytes, answers: &mut SoapAnswers) -> Parsed {
        let parsed = match soap::parse(body) {
            Ok(p) => p,
            Err(e) => {
                return Parsed::Answer(soap::fault_for(answers.version, FaultCode::Client, &e.0))
            }
        };
        answers.version = parsed.version;
        if !parsed.operation.name.eq_ignore_ascii_case("OperationDone") {
            return Parsed::Answer(soap::fault_for(
                answers.version,
                FaultCode::Client,
                "unknown operation",
            ));
        }
        let done = match parse(&parsed.operation) {
            Ok(d) => d,
            Err(rejection) => return Parsed::Unprocessable(rejection.to_string()),
        };
        Parsed::Callback(Callback {
            dedup_key: dedup_key(&[
                SURFACE.as_bytes(),
                done.ext_id.as_bytes(),
                done.id.as_bytes(),
                done.command.as_bytes(),
                done.code.as_bytes(),
            ]),
            outcome: outcome(&done),
            transaction_id: done.ext_id,
            occurred_at: None,
            documents: Vec::new(),
            follow_up: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(code: &str, command: &str) -> String {
        format!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><e:OperationDone xmlns:e="urn:x"><OperationDoneEvent><ID>42</ID><command>{command}</command><extId>ENV-1</extId><details/><returnStatus><code>{code}</code><message>m</message></returnStatus></OperationDoneEvent></e:OperationDone></s:Body></s:Envelope>"#
        )
    }

    #[test]
    fn failed_insert_aborts_with_a_dutch_reason() {
        let body = op("return_status_envelope_already_exists", "insertEnvelope");
        let req = soap::parse(body.as_bytes()).unwrap();
        let done = parse(&req.operation).unwrap();
        assert_eq!(done.ext_id, "ENV-1");
        assert_eq!(
            outcome(&done),
            Outcome::Aborted {
                reason: "technische fout: envelop niet aangemaakt (return_status_envelope_already_exists)".into()
            }
        );
    }

    #[test]
    fn ok_insert_is_progress() {
        let body = op("OK", "insertEnvelope");
        let req = soap::parse(body.as_bytes()).unwrap();
        assert!(matches!(
            outcome(&parse(&req.operation).unwrap()),
            Outcome::Progress { .. }
        ));
    }
}
