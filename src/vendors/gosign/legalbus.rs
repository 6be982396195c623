//! LegalBus `OperationDone` (ch. 11): GoSign, behind LegalBus, reports the end of an
//! asynchronous operation. An `insertEnvelope` that failed means the signing transaction never
//! started: that is an Aborted outcome. Success is recorded as progress.

use actix_web::{web, HttpRequest, HttpResponse};

use super::model::{self, Rejection};
use super::soap::{receive, Received};
use super::GosignSoap;
use crate::event::{dedup_key, NewEvent, Outcome, Vendor};
use crate::store::RawPayload;
use crate::vendors::soap::{self, Element, FaultCode};

pub const SURFACE: &str = "gosign.legalbus";

/// The fields of an `OperationDoneEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationDone {
    pub id: String,
    pub command: String,
    pub ext_id: String,
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
    let ext_id = text("extId")?;
    model::check_envelope_id(&ext_id)?;
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

/// `POST {events_path}`: the EvelopeEventService.
pub async fn endpoint(
    req: HttpRequest,
    payload: web::Payload,
    gs: web::Data<GosignSoap>,
) -> HttpResponse {
    let Received {
        version,
        caller,
        body,
        content_type,
    } = match receive(&req, payload, &gs, SURFACE).await {
        Ok(r) => r,
        Err(fault) => return fault,
    };
    let parsed = match soap::parse(&body.bytes) {
        Ok(p) => p,
        Err(e) => return soap::fault_for(version, FaultCode::Client, &e.0),
    };
    let version = parsed.version;
    if !parsed.operation.name.eq_ignore_ascii_case("OperationDone") {
        return soap::fault_for(version, FaultCode::Client, "unknown operation");
    }
    let raw = RawPayload {
        content_type,
        bytes: body.bytes.clone(),
    };
    let done = match parse(&parsed.operation) {
        Ok(d) => d,
        Err(rejection) => {
            let reason = rejection.to_string();
            let key = dedup_key(&[SURFACE.as_bytes(), &raw.bytes]);
            return match gs
                .intake
                .quarantine(Vendor::Gosign, SURFACE, reason.clone(), caller, raw, key)
                .await
            {
                Ok(_) => soap::fault_for(version, FaultCode::Client, &reason),
                Err(_) => soap::fault_for(version, FaultCode::Server, "cannot be recorded now"),
            };
        }
    };
    let outcome = outcome(&done);
    let event = NewEvent {
        vendor: Vendor::Gosign,
        dedup_key: dedup_key(&[
            SURFACE.as_bytes(),
            done.ext_id.as_bytes(),
            done.id.as_bytes(),
            done.command.as_bytes(),
            done.code.as_bytes(),
        ]),
        transaction_id: done.ext_id,
        outcome,
        occurred_at: None,
        surface: SURFACE,
        documents: Vec::new(),
        caller,
    };
    match gs.intake.record(event, raw).await {
        Ok(_) => soap::respond(
            version,
            r#"<ns2:OperationDoneResponse xmlns:ns2="http://www.infocert.it/legalbus/schema/evelopeevent"/>"#,
        ),
        // A Server fault: LegalBus redelivers.
        Err(_) => soap::fault_for(
            version,
            FaultCode::Server,
            "the event cannot be recorded now; please retry",
        ),
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
