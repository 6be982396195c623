//! The PKIsigning webhook: `WebhookContentModel` `{PkisId, DossierStatus, Reason,
//! AuthenticationKey}` as the platform posts it for a dossier's status change.
//!
//! Answers: 200 once the callback is durable, and 200 too for a callback that can never be
//! processed (it is quarantined): PKIsigning documents no retry policy, and a webhook sender
//! retries what is not 2xx, so only a 2xx stops a hopeless callback from coming back. A store
//! that cannot take it now answers 503 with `Retry-After`, so that it does come back.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use prometheus::IntCounterVec;
use serde::Deserialize;

use crate::auth::AuthFailure;
use crate::event::{dedup_key, FollowUp, Outcome, TransactionId, Vendor};
use crate::vendors::receive::{Answers, Callback, Inlet, Parsed, Surface};

pub const SURFACE: &str = "pkisigning.webhook";

/// The vendor's payload, field names exactly as sent; other fields are ignored.
#[derive(Debug, Deserialize)]
pub struct WebhookContent {
    #[serde(rename = "PkisId")]
    pub pkis_id: String,
    #[serde(rename = "DossierStatus")]
    pub dossier_status: String,
    #[serde(rename = "Reason", default)]
    pub reason: Option<String>,
    #[serde(rename = "AuthenticationKey", default)]
    pub authentication_key: Option<String>,
}

/// `DossierStatuses` as the connector's definition lists them.
pub const KNOWN_STATUSES: [&str; 15] = [
    "Active",
    "Completed",
    "Declined",
    "Processing",
    "Error",
    "PendingSbrNexus",
    "Withdrawn",
    "PendingDigipoort",
    "New",
    "Filing",
    "InvitationExpired",
    "Expired",
    "PendingApproval",
    "PendingDownload",
    "PendingSignature",
];

/// A vendor status as it may be kept and relayed: short, printable, no markup.
pub fn short(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect()
}

/// The outcome of a dossier status. `Elapsed` is not in the connector's list but is sent
/// for expiries too.
pub fn outcome(status: &str, reason: Option<&str>) -> Outcome {
    let aborted = |base: &str| {
        let reason = match reason.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => format!("{base}: {r}"),
            None => base.to_string(),
        };
        Outcome::Aborted { reason }
    };
    match status {
        "Completed" => Outcome::Completed,
        "Declined" => aborted("geweigerd door ondertekenaar"),
        "Withdrawn" => aborted("ingetrokken"),
        "Expired" | "InvitationExpired" | "Elapsed" => aborted("verlopen"),
        "Error" => aborted("technische fout"),
        other => Outcome::Progress {
            detail: short(other),
        },
    }
}

/// A PKIsigning GUID in the one spelling signrelay keeps (lowercase, hyphenated), so that a
/// registration and a callback that spell it differently still meet.
pub fn pkis_id(s: &str) -> Option<TransactionId> {
    let id = uuid::Uuid::parse_str(s.trim()).ok()?;
    TransactionId::parse(&id.hyphenated().to_string()).ok()
}

/// What a verification job carries: the callback's claim and the key to check it with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct VerifyData {
    pub pkis_id: String,
    pub status: String,
    /// The callback's `AuthenticationKey`: kept only while the job is queued.
    pub key: String,
}

pub const VERIFY: &str = "verify";

pub struct Webhook {
    pub inlet: Inlet,
    /// Terminal statuses go on only after the API confirms them.
    pub verify: bool,
    /// Statuses outside `DossierStatuses`, by status (shortened).
    pub unknown_statuses: IntCounterVec,
}

/// Whether a payload can ever be processed; `Err` names what is wrong, never a value.
pub fn parse(body: &[u8], verify: bool) -> Result<(WebhookContent, Callback), String> {
    let w: WebhookContent = serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        match msg.strip_prefix("missing field `") {
            Some(rest) => format!("missing field {}", rest.split('`').next().unwrap_or("")),
            // serde's other messages can quote input: only the kind and the position.
            None => format!(
                "not a WebhookContentModel ({:?} at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        }
    })?;
    let tx = pkis_id(&w.pkis_id).ok_or("PkisId is not a GUID")?;
    if w.dossier_status.trim().is_empty() {
        return Err("DossierStatus is empty".into());
    }
    let outcome = outcome(w.dossier_status.trim(), w.reason.as_deref());
    let follow_up = match (verify && outcome.is_terminal(), &w.authentication_key) {
        (false, _) => None,
        (true, Some(key)) if !key.trim().is_empty() => Some(FollowUp {
            name: VERIFY.into(),
            data: serde_json::to_value(VerifyData {
                pkis_id: tx.to_string(),
                status: short(w.dossier_status.trim()),
                key: key.trim().to_string(),
            })
            .expect("serializes"),
        }),
        (true, _) => {
            return Err(
                "missing field AuthenticationKey (a terminal status is verified with it)".into(),
            )
        }
    };
    let callback = Callback {
        dedup_key: dedup_key(&[
            Vendor::Pkisigning.as_str().as_bytes(),
            tx.as_bytes(),
            w.dossier_status.trim().as_bytes(),
            w.reason.as_deref().unwrap_or("").trim().as_bytes(),
        ]),
        transaction_id: tx,
        outcome,
        occurred_at: None,
        documents: Vec::new(),
        follow_up,
    };
    Ok((w, callback))
}

/// The body with its `AuthenticationKey` masked: what is archived of a webhook.
pub fn without_key(body: &Bytes) -> Bytes {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.clone();
    };
    match v.get_mut("AuthenticationKey") {
        Some(k) if k.is_string() => {
            *k = serde_json::Value::String("***".into());
            Bytes::from(serde_json::to_vec(&v).expect("serializes"))
        }
        _ => body.clone(),
    }
}

pub struct WebhookAnswers;

fn json(status: actix_web::http::StatusCode, v: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status).json(v)
}

impl Answers for WebhookAnswers {
    fn unauthorized(&self, f: AuthFailure, challenge: Option<String>) -> HttpResponse {
        let mut r = HttpResponse::Unauthorized();
        if let Some(c) = challenge {
            r.insert_header((header::WWW_AUTHENTICATE, c));
        }
        r.json(serde_json::json!({"result": "unauthorized", "error": f.code()}))
    }

    fn too_large(&self, limit_bytes: usize) -> HttpResponse {
        json(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            serde_json::json!({"result": "retry", "reason": format!("body exceeds {} KiB", limit_bytes / 1024)}),
        )
    }

    fn incomplete(&self) -> HttpResponse {
        json(
            actix_web::http::StatusCode::REQUEST_TIMEOUT,
            serde_json::json!({"result": "retry", "reason": "body was not received completely"}),
        )
    }

    fn recorded(&self) -> HttpResponse {
        json(
            actix_web::http::StatusCode::OK,
            serde_json::json!({"result": "recorded"}),
        )
    }

    fn discarded(&self, reason: &str) -> HttpResponse {
        json(
            actix_web::http::StatusCode::OK,
            serde_json::json!({"result": "discarded", "reason": reason}),
        )
    }

    fn not_recorded(&self) -> HttpResponse {
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "30"))
            .json(serde_json::json!({"result": "retry", "reason": "the callback cannot be recorded now"}))
    }
}

impl Surface for Webhook {
    type Answers = WebhookAnswers;
    const CONTENT_TYPE: &'static str = "application/json";

    fn inlet(&self) -> &Inlet {
        &self.inlet
    }

    fn answers(&self, _req: &HttpRequest) -> WebhookAnswers {
        WebhookAnswers
    }

    async fn parse(&self, _req: &HttpRequest, body: &Bytes, _: &mut WebhookAnswers) -> Parsed {
        match parse(body, self.verify) {
            Ok((w, callback)) => {
                let status = w.dossier_status.trim();
                if !KNOWN_STATUSES.contains(&status) && status != "Elapsed" {
                    self.unknown_statuses
                        .with_label_values(&[&short(status)])
                        .inc();
                    tracing::warn!(status = %short(status), "unknown PKIsigning status; recorded as progress");
                }
                Parsed::Callback(callback)
            }
            Err(reason) => Parsed::Unprocessable(reason),
        }
    }

    /// The `AuthenticationKey` is a credential: the archive keeps the body without it.
    fn archived(&self, body: &Bytes) -> Bytes {
        without_key(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "7D3F6A2E-1B4C-4E5F-9A8B-0C1D2E3F4A5B";

    fn body(status: &str, reason: Option<&str>, key: Option<&str>) -> Vec<u8> {
        let mut v = serde_json::json!({"PkisId": ID, "DossierStatus": status});
        if let Some(r) = reason {
            v["Reason"] = r.into();
        }
        if let Some(k) = key {
            v["AuthenticationKey"] = k.into();
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn every_status_maps_as_specified() {
        let aborted = |r: &str| Outcome::Aborted { reason: r.into() };
        assert_eq!(outcome("Completed", Some("klaar")), Outcome::Completed);
        assert_eq!(
            outcome("Declined", None),
            aborted("geweigerd door ondertekenaar")
        );
        assert_eq!(
            outcome("Declined", Some("bedrag klopt niet")),
            aborted("geweigerd door ondertekenaar: bedrag klopt niet")
        );
        assert_eq!(outcome("Withdrawn", Some(" ")), aborted("ingetrokken"));
        for s in ["Expired", "InvitationExpired", "Elapsed"] {
            assert_eq!(outcome(s, None), aborted("verlopen"));
        }
        assert_eq!(outcome("Error", None), aborted("technische fout"));
        for s in KNOWN_STATUSES {
            let terminal = matches!(
                s,
                "Completed" | "Declined" | "Withdrawn" | "Expired" | "InvitationExpired" | "Error"
            );
            assert_eq!(outcome(s, None).is_terminal(), terminal, "{s}");
        }
        assert_eq!(
            outcome("<b>Frob</b>", None),
            Outcome::Progress {
                detail: "bFrobb".into()
            }
        );
    }

    #[test]
    fn a_terminal_status_is_verified_with_its_key_and_the_key_is_not_archived() {
        let (_, c) = parse(&body("Completed", None, Some("k-123")), true).unwrap();
        assert_eq!(c.transaction_id, "7d3f6a2e-1b4c-4e5f-9a8b-0c1d2e3f4a5b");
        let f = c.follow_up.unwrap();
        assert_eq!(f.name, VERIFY);
        let data: VerifyData = serde_json::from_value(f.data).unwrap();
        assert_eq!(
            (data.status.as_str(), data.key.as_str()),
            ("Completed", "k-123")
        );
        let (_, progress) = parse(&body("Active", None, Some("k")), true).unwrap();
        assert!(progress.follow_up.is_none());
        let (_, unverified) = parse(&body("Completed", None, None), false).unwrap();
        assert!(unverified.follow_up.is_none());
        assert!(parse(&body("Completed", None, None), true)
            .unwrap_err()
            .contains("AuthenticationKey"));
        let archived = without_key(&Bytes::from(body("Completed", None, Some("k-123"))));
        assert!(!String::from_utf8_lossy(&archived).contains("k-123"));
    }

    #[test]
    fn hostile_payloads_are_refused_without_echoing_them() {
        for (b, why) in [
            (
                br#"{"pkisId": "x", "DossierStatus": "Completed"}"#.to_vec(),
                "missing field PkisId",
            ),
            (
                br#"{"PkisId": "not-a-guid <script>", "DossierStatus": "Completed"}"#.to_vec(),
                "PkisId is not a GUID",
            ),
            (br#"{"PkisId": 7}"#.to_vec(), "not a WebhookContentModel"),
            (b"{".to_vec(), "not a WebhookContentModel"),
        ] {
            let err = parse(&b, true).unwrap_err();
            assert!(err.contains(why), "{err}");
            assert!(!err.contains("script"), "{err}");
        }
        let extra = br#"{"PkisId": "7d3f6a2e-1b4c-4e5f-9a8b-0c1d2e3f4a5b", "DossierStatus": "Active", "Extra": {"a": 1}}"#;
        assert!(parse(extra, true).is_ok());
    }
}
