//! Posten's status messages (`direct.xsd`, `portal.xsd`): the direct job's
//! `direct-signature-job-status-response` and the portal's
//! `portal-signature-job-status-change-response`, normalized into one job status.
//!
//! The job status decides the outcome (COMPLETED_SUCCESSFULLY, FAILED, IN_PROGRESS); a failed
//! job's `reden` summarizes its signers' statuses in Dutch. Signers' statuses Posten adds later
//! are tolerated, as its schema asks.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::event::Outcome;

/// Posten's answers are small; anything larger is not one.
pub const MAX_BYTES: usize = 256 * 1024;

#[derive(Debug, Deserialize)]
struct SignerStatus {
    #[serde(rename = "@since", default)]
    since: Option<String>,
    #[serde(rename = "$text", default)]
    value: String,
}

#[derive(Debug, Deserialize)]
struct SignerUrl {
    #[serde(rename = "$text", default)]
    url: String,
}

#[derive(Debug, Deserialize)]
struct DirectStatus {
    #[serde(default)]
    reference: Option<String>,
    #[serde(rename = "signature-job-id")]
    signature_job_id: String,
    #[serde(rename = "signature-job-status")]
    signature_job_status: String,
    #[serde(default)]
    status: Vec<SignerStatus>,
    #[serde(rename = "confirmation-url", default)]
    confirmation_url: Option<String>,
    #[serde(rename = "xades-url", default)]
    xades_url: Vec<SignerUrl>,
    #[serde(rename = "pades-url", default)]
    pades_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PortalSignature {
    status: SignerStatus,
    #[serde(rename = "xades-url", default)]
    xades_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PortalSignatures {
    #[serde(default)]
    signature: Vec<PortalSignature>,
    #[serde(rename = "pades-url", default)]
    pades_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PortalChange {
    #[serde(default)]
    reference: Option<String>,
    #[serde(rename = "signature-job-id")]
    signature_job_id: String,
    status: String,
    #[serde(rename = "confirmation-url")]
    confirmation_url: String,
    signatures: PortalSignatures,
}

/// Which flow a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Direct,
    Portal,
}

/// A job's status, whichever message carried it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    pub flow: Flow,
    pub job_id: String,
    /// The sender's reference, when the job was created with one.
    pub reference: Option<String>,
    /// COMPLETED_SUCCESSFULLY, FAILED, IN_PROGRESS, …
    pub job_status: String,
    pub signer_statuses: Vec<String>,
    pub outcome: Outcome,
    pub occurred_at: Option<DateTime<Utc>>,
    /// POST here (empty) once the status is durable.
    pub confirmation_url: Option<String>,
    /// The signed documents: PAdES (all documents, one PDF) and each signer's XAdES.
    pub pades_url: Option<String>,
    pub xades_urls: Vec<String>,
}

/// A signer's status in Dutch, for a failed job's `reden`; `None` for statuses that are not
/// the cause of a failure (signed, waiting, not applicable).
pub fn signer_reason(status: &str) -> Option<&'static str> {
    match status {
        "REJECTED" => Some("geweigerd door ondertekenaar"),
        "CANCELLED" => Some("ingetrokken"),
        "EXPIRED" => Some("verlopen"),
        "RESERVED" => Some("ondertekenaar ontvangt geen digitale post"),
        "BLOCKED" | "CONTACT_INFORMATION_MISSING" | "FAILED" | "SIGNERS_NAME_NOT_AVAILABLE" => {
            Some("technische fout")
        }
        _ => None,
    }
}

/// One `reden` for several signers: their distinct reasons, in the order they appear.
pub fn summarize(statuses: &[String]) -> String {
    let mut reasons: Vec<&str> = Vec::new();
    for r in statuses.iter().filter_map(|s| signer_reason(s.trim())) {
        if !reasons.contains(&r) {
            reasons.push(r);
        }
    }
    if reasons.is_empty() {
        "technische fout".into()
    } else {
        reasons.join("; ")
    }
}

/// A short, printable form of a vendor status for a progress detail.
fn short(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

fn outcome(job_status: &str, signers: &[String]) -> Outcome {
    match job_status {
        "COMPLETED_SUCCESSFULLY" => Outcome::Completed,
        "FAILED" => Outcome::Aborted {
            reason: summarize(signers),
        },
        other => Outcome::Progress {
            detail: short(other),
        },
    }
}

fn latest(since: impl Iterator<Item = Option<String>>) -> Option<DateTime<Utc>> {
    since
        .flatten()
        .filter_map(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
        .max()
}

/// Refuses what cannot be a Posten message before it is parsed.
fn bounded(xml: &[u8]) -> Result<&str, String> {
    if xml.len() > MAX_BYTES {
        return Err(format!("larger than {} KiB", MAX_BYTES / 1024));
    }
    let text = std::str::from_utf8(xml).map_err(|_| "not UTF-8".to_string())?;
    if text.contains("<!DOCTYPE") || text.contains("<!ENTITY") {
        return Err("a DOCTYPE is not allowed".into());
    }
    Ok(text)
}

/// The local name of the root element.
fn root(text: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                return String::from_utf8(e.local_name().as_ref().to_vec()).ok();
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

/// A `direct-signature-job-status-response` or `portal-signature-job-status-change-response`.
pub fn parse(xml: &[u8]) -> Result<JobStatus, String> {
    let text = bounded(xml)?;
    let what = |e: quick_xml::DeError| format!("not a Posten status message ({e})");
    match root(text).as_deref() {
        Some("direct-signature-job-status-response") => {
            let d: DirectStatus = quick_xml::de::from_str(text).map_err(what)?;
            let signers: Vec<String> = d
                .status
                .iter()
                .map(|s| s.value.trim().to_string())
                .collect();
            Ok(JobStatus {
                flow: Flow::Direct,
                outcome: outcome(d.signature_job_status.trim(), &signers),
                occurred_at: latest(d.status.into_iter().map(|s| s.since)),
                job_id: d.signature_job_id.trim().to_string(),
                reference: d
                    .reference
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty()),
                job_status: d.signature_job_status.trim().to_string(),
                signer_statuses: signers,
                confirmation_url: d.confirmation_url.map(|u| u.trim().to_string()),
                pades_url: d.pades_url.map(|u| u.trim().to_string()),
                xades_urls: d
                    .xades_url
                    .into_iter()
                    .map(|u| u.url.trim().to_string())
                    .collect(),
            })
        }
        Some("portal-signature-job-status-change-response") => {
            let p: PortalChange = quick_xml::de::from_str(text).map_err(what)?;
            let signers: Vec<String> = p
                .signatures
                .signature
                .iter()
                .map(|s| s.status.value.trim().to_string())
                .collect();
            Ok(JobStatus {
                flow: Flow::Portal,
                outcome: outcome(p.status.trim(), &signers),
                occurred_at: latest(
                    p.signatures
                        .signature
                        .iter()
                        .map(|s| s.status.since.clone()),
                ),
                job_id: p.signature_job_id.trim().to_string(),
                reference: p
                    .reference
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty()),
                job_status: p.status.trim().to_string(),
                signer_statuses: signers,
                confirmation_url: Some(p.confirmation_url.trim().to_string()),
                pades_url: p.signatures.pades_url.map(|u| u.trim().to_string()),
                xades_urls: p
                    .signatures
                    .signature
                    .into_iter()
                    .filter_map(|s| s.xades_url.map(|u| u.trim().to_string()))
                    .collect(),
            })
        }
        _ => Err("not a Posten status message".into()),
    }
}

/// Posten's `<error>`: its code, for deciding what to do.
#[derive(Debug, Deserialize)]
struct ErrorMessage {
    #[serde(rename = "error-code", default)]
    code: String,
}

/// The `error-code` of an `<error>` answer, if the body is one.
pub fn error_code(xml: &[u8]) -> Option<String> {
    let text = bounded(xml).ok()?;
    if root(text)? != "error" {
        return None;
    }
    let e: ErrorMessage = quick_xml::de::from_str(text).ok()?;
    Some(short(&e.code)).filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Posten's own example messages, kept with its schemas in the test fixtures.
    fn example(path: &str) -> Vec<u8> {
        let at = format!(
            "{}/tests/fixtures/posten/examples/{path}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&at).unwrap_or_else(|e| panic!("{at}: {e}"))
    }

    #[test]
    fn posten_s_own_examples_are_read() {
        let d = parse(&example("direct/multiple_signers/status-response.xml")).unwrap();
        assert_eq!((d.flow, d.job_id.as_str()), (Flow::Direct, "1"));
        assert_eq!(d.outcome, Outcome::Completed);
        assert_eq!(d.signer_statuses, ["SIGNED", "SIGNED"]);
        assert_eq!(d.xades_urls.len(), 2);
        assert!(d.pades_url.as_deref().unwrap().ends_with("/pades"));
        assert!(d
            .confirmation_url
            .as_deref()
            .unwrap()
            .ends_with("/complete"));
        let portal = parse(&example("portal/status-change-response.xml")).unwrap();
        assert_eq!(
            (portal.flow, portal.outcome.clone()),
            (Flow::Portal, Outcome::Completed)
        );
        assert!(portal.pades_url.is_some());
        assert_eq!(
            portal.occurred_at.map(|t| t.to_rfc3339()),
            Some("2017-01-23T11:51:43+00:00".into())
        );
    }

    #[test]
    fn a_failed_job_summarizes_its_signers_in_dutch() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            summarize(&s(&["REJECTED", "NOT_APPLICABLE"])),
            "geweigerd door ondertekenaar"
        );
        assert_eq!(summarize(&s(&["SIGNED", "EXPIRED", "EXPIRED"])), "verlopen");
        assert_eq!(
            summarize(&s(&["BLOCKED", "REJECTED", "CONTACT_INFORMATION_MISSING"])),
            "technische fout; geweigerd door ondertekenaar"
        );
        assert_eq!(summarize(&s(&["CANCELLED"])), "ingetrokken");
        assert_eq!(summarize(&s(&["SOMETHING_NEW"])), "technische fout");
        assert_eq!(
            outcome("IN_PROGRESS", &s(&["WAITING"])),
            Outcome::Progress {
                detail: "IN_PROGRESS".into()
            }
        );
    }

    #[test]
    fn what_is_not_a_status_message_is_refused() {
        assert!(parse(b"<html/>").is_err());
        assert!(
            parse(b"<!DOCTYPE x [<!ENTITY a 'b'>]><direct-signature-job-status-response/>")
                .is_err()
        );
        assert!(parse(&vec![b' '; MAX_BYTES + 1]).is_err());
        assert!(parse(b"<direct-signature-job-status-response xmlns=\"http://signering.posten.no/schema/v1\"><signature-job-id>1</signature-job-id></direct-signature-job-status-response>").is_err());
        assert_eq!(
            error_code(b"<error xmlns=\"http://signering.posten.no/schema/v1\"><error-code>INVALID_STATUS_QUERY_TOKEN</error-code><error-message>x</error-message><error-type>CLIENT</error-type></error>"),
            Some("INVALID_STATUS_QUERY_TOKEN".into())
        );
    }
}
