//! GoSign's notification payloads (integration methodology ch. 8.3) and their normalization.
//! One model for both transports: REST carries it as JSON, SOAP (ch. 7) as XML.
//!
//! Two JSON formats arrive on the same route, told apart by content: the WorkNotification
//! format has `notificationType`; the Extended format has `status`/`previousStatus`.

use std::borrow::Cow;

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;

use crate::event::{dedup_key, DocumentRef, Outcome, TransactionId, Vendor};

/// A GoSign notification, normalized: what happened to which envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub envelope_id: TransactionId,
    pub outcome: Outcome,
    pub occurred_at: Option<DateTime<Utc>>,
    pub documents: Vec<DocumentRef>,
}

impl Notification {
    /// Delivery dedup: the same envelope, outcome and step, whichever format or transport
    /// carried it.
    pub fn dedup_key(&self) -> String {
        let detail = match &self.outcome {
            Outcome::Completed => "",
            Outcome::Aborted { reason } => reason,
            Outcome::Progress { detail } => detail,
        };
        dedup_key(&[
            Vendor::Gosign.as_str().as_bytes(),
            self.envelope_id.as_bytes(),
            self.outcome.label().as_bytes(),
            detail.as_bytes(),
        ])
    }
}

/// Why a payload can never be processed. Messages name fields, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed JSON ({0})")]
    Malformed(String),
    #[error("neither a WorkNotification (notificationType) nor an Extended (status) payload")]
    UnknownFormat,
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("unknown notificationType")]
    UnknownType,
    #[error("unknown status, or STO without a closing previousStatus")]
    UnknownStatus,
    #[error("envelope id in the body differs from the one in the path")]
    EnvelopeMismatch,
    #[error("envelope id is empty, too long or has control characters")]
    BadEnvelopeId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    // WorkNotification format
    #[serde(borrow)]
    envelope_external_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    notification_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    live_status: Option<Vec<StepEvent<'a>>>,
    // Extended format
    #[serde(borrow)]
    external_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    previous_status: Option<Cow<'a, str>>,
    completed_at: Option<i64>,
    #[serde(borrow)]
    process: Option<Process<'a>>,
    /// The recipients' notes (Extended format), where a rejecting recipient's text is.
    #[serde(borrow)]
    notes: Option<Vec<EnvelopeNote<'a>>>,
    // Both
    #[serde(borrow)]
    note: Option<Cow<'a, str>>,
    #[serde(borrow)]
    documents: Option<Vec<Document<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Process<'a> {
    #[serde(borrow)]
    live_status: Option<Vec<StepEvent<'a>>>,
}

/// A process step; timestamps are ISO strings (WorkNotification) or epoch millis (Extended).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StepEvent<'a> {
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ended_at: Option<Timestamp<'a>>,
    #[serde(borrow)]
    mgr_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    mgr_surname: Option<Cow<'a, str>>,
}

/// A recipient's note on the envelope (Extended format): `{text, createdAt, name, surname}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeNote<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    created_at: Option<Timestamp<'a>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    surname: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Timestamp<'a> {
    Millis(i64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

impl Timestamp<'_> {
    fn parse(&self) -> Option<DateTime<Utc>> {
        match self {
            Timestamp::Millis(ms) => Utc.timestamp_millis_opt(*ms).single(),
            Timestamp::Text(s) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

/// A document: `{docExternalId, content{mimeType, data}}` (WorkNotification) or
/// `{externalId, mimeType, bytes}` (Extended). The base64 text is borrowed, not copied.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    #[serde(borrow)]
    doc_external_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    external_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Content<'a>>,
    #[serde(borrow)]
    mime_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    bytes: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Content<'a> {
    #[serde(borrow)]
    mime_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    data: Option<Cow<'a, str>>,
}

/// An optional string borrowed from the body when it has no escapes. serde borrows a field
/// typed `Cow<'a, str>` but copies one typed `Option<Cow<'a, str>>` (Cow's own impl always
/// owns): a document's base64 text, tens of MiB, goes through this.
fn borrowed<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text<'a>>::deserialize(d)?.map(|t| t.0))
}

impl<'a> Document<'a> {
    fn id(&self) -> String {
        self.doc_external_id
            .as_deref()
            .or(self.external_id.as_deref())
            .unwrap_or("")
            .to_string()
    }

    fn mime(&self) -> Option<&str> {
        self.content
            .as_ref()
            .and_then(|c| c.mime_type.as_deref())
            .or(self.mime_type.as_deref())
    }

    fn base64(&self) -> Option<&str> {
        self.content
            .as_ref()
            .and_then(|c| c.data.as_deref())
            .or(self.bytes.as_deref())
    }
}

/// The reason relayed when a signer rejects; the signer's note follows when there is one.
pub const REASON_REJECTED: &str = "geweigerd door ondertekenaar";
/// The reason relayed when the secretariat cancels the envelope.
pub const REASON_CANCELLED: &str = "ingetrokken";

fn rejected(note: Option<&str>) -> Outcome {
    let reason = match note.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => format!("{REASON_REJECTED}: {n}"),
        None => REASON_REJECTED.to_string(),
    };
    Outcome::Aborted { reason }
}

/// Decoded size of a base64 text, without decoding it.
pub(crate) fn decoded_len(b64: &str) -> u64 {
    let t = b64.trim_end();
    let pad = t.bytes().rev().take_while(|&b| b == b'=').count();
    ((t.len() / 4) * 3 + (t.len() % 4).saturating_sub(1)).saturating_sub(pad) as u64
}

/// As `decoded_len`, for base64 text broken by whitespace (XML), without copying it.
pub(crate) fn decoded_len_spaced(b64: &str) -> u64 {
    let (mut len, mut pad) = (0usize, 0usize);
    for b in b64.bytes().filter(|b| !b.is_ascii_whitespace()) {
        len += 1;
        pad = if b == b'=' { pad + 1 } else { 0 };
    }
    ((len / 4) * 3 + (len % 4).saturating_sub(1)).saturating_sub(pad) as u64
}

/// An envelope id as a transaction id (printable, bounded).
pub(crate) fn check_envelope_id(id: &str) -> Result<TransactionId, Rejection> {
    TransactionId::parse(id).map_err(|_| Rejection::BadEnvelopeId)
}

fn json_error(e: &serde_json::Error) -> Rejection {
    // serde's messages can quote input values; keep only the category and position.
    let what = match e.classify() {
        serde_json::error::Category::Io => "i/o",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected type",
        serde_json::error::Category::Eof => "truncated",
    };
    Rejection::Malformed(format!("{what} at line {} column {}", e.line(), e.column()))
}

/// Parses and normalizes a REST notify body for the envelope named in the path.
pub fn parse_json(path_envelope_id: &str, body: &[u8]) -> Result<Notification, Rejection> {
    let path_id = check_envelope_id(path_envelope_id)?;
    let p: Payload<'_> = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    let (envelope, outcome, occurred_at) = if let Some(t) = p.notification_type.as_deref() {
        let envelope = p
            .envelope_external_id
            .as_deref()
            .ok_or(Rejection::Missing("envelopeExternalId"))?;
        let steps = p
            .live_status
            .as_ref()
            .ok_or(Rejection::Missing("liveStatus"))?;
        let outcome = work_notification_outcome(t, p.note.as_deref(), steps)?;
        let occurred_at = steps
            .iter()
            .filter_map(|s| s.ended_at.as_ref()?.parse())
            .max();
        (envelope, outcome, occurred_at)
    } else if let Some(status) = p.status.as_deref() {
        let envelope = p
            .external_id
            .as_deref()
            .ok_or(Rejection::Missing("externalId"))?;
        let steps = p.process.as_ref().and_then(|pr| pr.live_status.as_ref());
        let note =
            rejection_note(p.notes.as_deref(), steps.map(Vec::as_slice)).or(p.note.as_deref());
        let outcome = extended_outcome(status, p.previous_status.as_deref(), note)?;
        let occurred_at = p
            .completed_at
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .or_else(|| {
                steps?
                    .iter()
                    .filter_map(|s| s.ended_at.as_ref()?.parse())
                    .max()
            });
        (envelope, outcome, occurred_at)
    } else {
        return Err(Rejection::UnknownFormat);
    };
    if envelope != path_id.as_str() {
        return Err(Rejection::EnvelopeMismatch);
    }
    Ok(Notification {
        envelope_id: path_id,
        outcome,
        occurred_at,
        documents: documents(p.documents.as_deref()),
    })
}

/// The text of the rejecting note of an Extended payload: among the recipients' `notes[]`,
/// the latest one written by the person of a rejected (`REJ`) step when the notes tell who
/// wrote them, otherwise the latest one. Only the text is used, never the writer's name.
fn rejection_note<'n>(
    notes: Option<&'n [EnvelopeNote<'_>]>,
    steps: Option<&[StepEvent<'_>]>,
) -> Option<&'n str> {
    let written: Vec<(usize, &EnvelopeNote<'_>)> = notes
        .unwrap_or_default()
        .iter()
        .filter(|n| n.text.as_deref().is_some_and(|t| !t.trim().is_empty()))
        .enumerate()
        .collect();
    let same = |a: Option<&str>, b: Option<&str>| match (a, b) {
        (Some(a), Some(b)) => !a.trim().is_empty() && a.trim().eq_ignore_ascii_case(b.trim()),
        _ => false,
    };
    let by_rejecter = |n: &EnvelopeNote<'_>| {
        steps.unwrap_or_default().iter().any(|s| {
            s.status.as_deref() == Some("REJ")
                && same(s.mgr_name.as_deref(), n.name.as_deref())
                && same(s.mgr_surname.as_deref(), n.surname.as_deref())
        })
    };
    // Latest by createdAt; undated notes count as older, ties go to the later in the list.
    let latest = |notes: &mut dyn Iterator<Item = &(usize, &'n EnvelopeNote<'_>)>| {
        notes
            .max_by_key(|(i, n)| {
                let at = n.created_at.as_ref().and_then(Timestamp::parse);
                (at, *i)
            })
            .and_then(|(_, n)| n.text.as_deref())
    };
    latest(&mut written.iter().filter(|(_, n)| by_rejecter(n)))
        .or_else(|| latest(&mut written.iter()))
}

/// WorkNotification `notificationType` → outcome (ch. 8.3.1).
pub fn work_notification_outcome(
    notification_type: &str,
    note: Option<&str>,
    steps: &[impl StepStatus],
) -> Result<Outcome, Rejection> {
    Ok(match notification_type {
        // ch. 7.1 also names SIGN_PROCESS_ENDED_WSUPPL among the successful endings.
        "SIGN_PROCESS_ENDED" | "SIGN_PROCESS_ENDED_WSUPPL" | "VA_PROCESS_ENDED" => {
            Outcome::Completed
        }
        "ENVELOPE_REJECTED" => rejected(note),
        "PROCESS_CANCELLED" => Outcome::Aborted {
            reason: REASON_CANCELLED.into(),
        },
        "STEP_CLOSED" => {
            let done = steps.iter().filter(|s| s.ended()).count();
            Outcome::Progress {
                detail: format!("stap afgerond ({done}/{})", steps.len()),
            }
        }
        _ => return Err(Rejection::UnknownType),
    })
}

/// Extended `status` (STO resolved through `previousStatus`) → outcome (ch. 8.3.2). Statuses
/// other than the closing ones report progress.
pub fn extended_outcome(
    status: &str,
    previous: Option<&str>,
    note: Option<&str>,
) -> Result<Outcome, Rejection> {
    let closing = |s: &str| match s {
        "WKD" => Some(Outcome::Completed),
        "REJ" => Some(rejected(note)),
        "STP" => Some(Outcome::Aborted {
            reason: REASON_CANCELLED.into(),
        }),
        _ => None,
    };
    if status == "STO" {
        return previous.and_then(closing).ok_or(Rejection::UnknownStatus);
    }
    if let Some(o) = closing(status) {
        return Ok(o);
    }
    let is_code = !status.is_empty()
        && status.len() <= 8
        && status
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if is_code {
        Ok(Outcome::Progress {
            detail: format!("status {status}"),
        })
    } else {
        Err(Rejection::UnknownStatus)
    }
}

/// A process step as far as normalization cares.
pub trait StepStatus {
    fn ended(&self) -> bool;
}

impl StepStatus for StepEvent<'_> {
    fn ended(&self) -> bool {
        self.ended_at.is_some() || self.status.as_deref() == Some("WKD")
    }
}

fn documents(docs: Option<&[Document<'_>]>) -> Vec<DocumentRef> {
    docs.unwrap_or_default()
        .iter()
        .map(|d| DocumentRef {
            external_id: d.id(),
            mime_type: d.mime().map(str::to_string),
            size: d.base64().map(decoded_len).unwrap_or(0),
            url: None,
        })
        .collect()
}

/// The `index`-th inline document of a stored REST payload, decoded: (mime type, bytes).
pub fn json_document(body: &[u8], index: usize) -> Option<(Option<String>, Vec<u8>)> {
    use base64::Engine;
    json_document_with(body, index, |mime, text| {
        let data = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        Some((mime.map(str::to_string), data))
    })?
}

/// Hands the `index`-th inline document's mime type and base64 text (borrowed from `body`
/// where it has no escapes) to `f`.
pub fn json_document_with<R>(
    body: &[u8],
    index: usize,
    f: impl FnOnce(Option<&str>, &str) -> R,
) -> Option<R> {
    let p: Payload<'_> = serde_json::from_slice(body).ok()?;
    let docs = p.documents?;
    let d = docs.get(index)?;
    Some(f(d.mime(), d.base64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_WORK: &str = r#"{
"envelopeExternalId": "string",
"notificationType": "SIGN_PROCESS_ENDED",
"note": "string",
"documents": [{"docExternalId": "string","content": {"mimeType": "string","data": "string"}}],
"liveStatus": [{"mgrExternalId": "string","fromMgrExternalId": "string","mgrName": "string",
"mgrSurname": "string","status": "string","startedAt": "2019-09-06T11:04:48.141Z",
"endedAt": "2019-09-06T11:04:48.141Z","assignedTo": "string","stepNumber": 0,
"actionResume": {"actions": 0,"signActions": 0}}]
}"#;

    #[test]
    fn seed_work_notification_is_completed() {
        let n = parse_json("string", SEED_WORK.as_bytes()).unwrap();
        assert_eq!(n.outcome, Outcome::Completed);
        assert_eq!(n.envelope_id, "string");
        assert_eq!(n.documents.len(), 1);
        assert_eq!(
            n.occurred_at,
            Some("2019-09-06T11:04:48.141Z".parse().unwrap())
        );
    }

    #[test]
    fn path_mismatch_is_rejected() {
        assert_eq!(
            parse_json("other", SEED_WORK.as_bytes()),
            Err(Rejection::EnvelopeMismatch)
        );
    }

    #[test]
    fn each_notification_type_maps() {
        let none: [StepEvent<'_>; 0] = [];
        let cases = [
            ("SIGN_PROCESS_ENDED", Outcome::Completed),
            ("VA_PROCESS_ENDED", Outcome::Completed),
            ("SIGN_PROCESS_ENDED_WSUPPL", Outcome::Completed),
            ("ENVELOPE_REJECTED", rejected(Some("te duur"))),
            (
                "PROCESS_CANCELLED",
                Outcome::Aborted {
                    reason: "ingetrokken".into(),
                },
            ),
            (
                "STEP_CLOSED",
                Outcome::Progress {
                    detail: "stap afgerond (0/0)".into(),
                },
            ),
        ];
        for (t, want) in cases {
            assert_eq!(
                work_notification_outcome(t, Some("te duur"), &none),
                Ok(want)
            );
        }
        assert_eq!(
            work_notification_outcome("NEW_TYPE", None, &none),
            Err(Rejection::UnknownType)
        );
    }

    #[test]
    fn extended_sto_resolves_through_previous_status() {
        assert_eq!(
            extended_outcome("STO", Some("WKD"), None),
            Ok(Outcome::Completed)
        );
        assert_eq!(
            extended_outcome("STO", Some("STP"), None),
            Ok(Outcome::Aborted {
                reason: "ingetrokken".into()
            })
        );
        assert_eq!(
            extended_outcome("STO", None, None),
            Err(Rejection::UnknownStatus)
        );
        assert_eq!(
            extended_outcome("STO", Some("PGS"), None),
            Err(Rejection::UnknownStatus)
        );
        assert!(matches!(
            extended_outcome("PGS", Some("WKD"), None),
            Ok(Outcome::Progress { .. })
        ));
        assert_eq!(
            extended_outcome("weird value", None, None),
            Err(Rejection::UnknownStatus)
        );
    }

    /// An Extended REJ whose text is only in `notes[]`; `step` is the rejected step's person.
    fn extended_rej(notes: serde_json::Value, step: Option<(&str, &str)>) -> Outcome {
        let mut body = serde_json::json!({
            "externalId": "E1", "status": "REJ", "previousStatus": "PGS", "note": null,
            "notes": notes,
        });
        if let Some((name, surname)) = step {
            body["process"] = serde_json::json!({"liveStatus": [
                {"mgrName": "Luigi", "mgrSurname": "Verdi", "status": "WKD", "endedAt": 1},
                {"mgrName": name, "mgrSurname": surname, "status": "REJ", "endedAt": 2},
            ]});
        }
        parse_json("E1", body.to_string().as_bytes())
            .unwrap()
            .outcome
    }

    fn reason(o: Outcome) -> String {
        match o {
            Outcome::Aborted { reason } => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn extended_rejection_uses_the_rejecters_note_or_else_the_latest() {
        let notes = serde_json::json!([
            {"text": "Bedrag klopt niet", "createdAt": 1574777671000i64, "name": "Anna", "surname": "Bianchi"},
            {"text": "Akkoord van mijn kant", "createdAt": 1574778076000i64, "name": "Luigi", "surname": "Verdi"},
            {"text": "   ", "createdAt": 1574779000000i64, "name": "Anna", "surname": "Bianchi"},
        ]);
        // The rejecter's (Anna's) note, though Luigi's is later; her blank one is no text.
        assert_eq!(
            reason(extended_rej(notes.clone(), Some(("anna", "BIANCHI")))),
            "geweigerd door ondertekenaar: Bedrag klopt niet"
        );
        // Who rejected cannot be told: the latest note with text.
        for step in [None, Some(("Mario", "Rossi"))] {
            assert_eq!(
                reason(extended_rej(notes.clone(), step)),
                "geweigerd door ondertekenaar: Akkoord van mijn kant",
                "{step:?}"
            );
        }
        // Undated notes count as older; among equals the later in the list.
        let undated = serde_json::json!([
            {"text": "eerste"}, {"text": "tweede"}, {"text": "gedateerd", "createdAt": 5},
        ]);
        assert_eq!(
            reason(extended_rej(undated, None)),
            "geweigerd door ondertekenaar: gedateerd"
        );
        let undated =
            serde_json::json!([{"text": "eerste"}, {"text": "tweede", "createdAt": null}]);
        assert_eq!(
            reason(extended_rej(undated, None)),
            "geweigerd door ondertekenaar: tweede"
        );
        // No note with text: the bare reason, never the writers' names.
        let nameless = serde_json::json!([{"text": null, "name": "Anna", "surname": "Bianchi"}]);
        assert_eq!(
            reason(extended_rej(nameless, Some(("Anna", "Bianchi")))),
            REASON_REJECTED
        );
        assert_eq!(
            reason(extended_rej(serde_json::json!([]), None)),
            REASON_REJECTED
        );
    }

    #[test]
    fn extended_notes_take_precedence_over_the_envelope_note_only_when_present() {
        let with_note = |notes: serde_json::Value| {
            let body = serde_json::json!({
                "externalId": "E1", "status": "STO", "previousStatus": "REJ",
                "note": "envelopnotitie", "notes": notes,
            });
            reason(
                parse_json("E1", body.to_string().as_bytes())
                    .unwrap()
                    .outcome,
            )
        };
        assert_eq!(
            with_note(serde_json::json!([{"text": "te duur", "createdAt": 1}])),
            "geweigerd door ondertekenaar: te duur"
        );
        assert_eq!(
            with_note(serde_json::Value::Null),
            "geweigerd door ondertekenaar: envelopnotitie"
        );
    }

    #[test]
    fn malformed_json_message_does_not_quote_input() {
        let err = parse_json("x", br#"{"notificationType": 12345678}"#).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains("12345678"), "{msg}");
    }

    /// A document's base64 text is borrowed from the body, not copied (bodies are up to
    /// 64 MiB, spooled and mapped: a copy would put it all in memory again).
    #[test]
    fn document_text_is_borrowed_from_the_body() {
        let body = br#"{"documents": [{"content": {"data": "QUJD"}}, {"bytes": "REVG"}, {"bytes": "R\/H"}]}"#;
        let p: Payload<'_> = serde_json::from_slice(body).unwrap();
        let docs = p.documents.unwrap();
        assert!(matches!(
            docs[0].content.as_ref().unwrap().data,
            Some(Cow::Borrowed("QUJD"))
        ));
        assert!(matches!(docs[1].bytes, Some(Cow::Borrowed("REVG"))));
        // An escape needs a copy, and gets one.
        assert!(matches!(&docs[2].bytes, Some(Cow::Owned(s)) if s == "R/H"));
    }

    #[test]
    fn decoded_len_matches_base64() {
        use base64::Engine;
        for n in 0..10 {
            let data = vec![7u8; n];
            let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
            assert_eq!(decoded_len(&b64), n as u64, "{b64}");
            let spaced: String = b64
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    if i % 3 == 0 {
                        vec!['\n', ' ', c]
                    } else {
                        vec![c]
                    }
                })
                .collect();
            assert_eq!(decoded_len_spaced(&spaced), n as u64, "{spaced:?}");
        }
    }

    #[test]
    fn same_outcome_gives_same_dedup_key_across_formats() {
        let work = parse_json("E1", br#"{"envelopeExternalId":"E1","notificationType":"SIGN_PROCESS_ENDED","liveStatus":[]}"#).unwrap();
        let ext = parse_json(
            "E1",
            br#"{"externalId":"E1","status":"STO","previousStatus":"WKD"}"#,
        )
        .unwrap();
        assert_eq!(work.dedup_key(), ext.dedup_key());
    }
}
