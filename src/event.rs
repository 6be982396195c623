//! The one event model every vendor surface normalizes into.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The signing vendors signrelay speaks to. A new vendor is a new variant plus a folder in
/// `vendors/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Gosign,
    Pkisigning,
    Posten,
    /// Exists only to prove the vendor seam in the tests.
    #[cfg(feature = "throwaway-vendor")]
    Throwaway,
}

impl Vendor {
    #[cfg(not(feature = "throwaway-vendor"))]
    pub const ALL: &'static [Vendor] = &[Vendor::Gosign, Vendor::Pkisigning, Vendor::Posten];
    #[cfg(feature = "throwaway-vendor")]
    pub const ALL: &'static [Vendor] = &[
        Vendor::Gosign,
        Vendor::Pkisigning,
        Vendor::Posten,
        Vendor::Throwaway,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Gosign => "gosign",
            Vendor::Pkisigning => "pkisigning",
            Vendor::Posten => "posten",
            #[cfg(feature = "throwaway-vendor")]
            Vendor::Throwaway => "throwaway",
        }
    }

    pub fn parse(s: &str) -> Option<Vendor> {
        Vendor::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a callback says happened to the signing transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Every signer signed: relayed as `OndertekenenVoltooid`.
    Completed,
    /// The transaction ended without all signatures: relayed as `OndertekenenAfgebroken`.
    /// `reason` is a short Dutch text fit for an end user.
    Aborted { reason: String },
    /// An intermediate step; recorded, relayed only when configured.
    Progress { detail: String },
}

impl Outcome {
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Outcome::Progress { .. })
    }

    /// The label used in metrics and listings.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Aborted { .. } => "aborted",
            Outcome::Progress { .. } => "progress",
        }
    }
}

/// A document that arrived inline with a callback. The bytes stay in the raw payload archive;
/// the event only describes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRef {
    /// The vendor's id for the document.
    pub external_id: String,
    pub mime_type: Option<String>,
    /// Size of the decoded document in bytes (0 when it is fetched from `url`).
    pub size: u64,
    /// Where the vendor serves the signed document, when it is not inline (Posten's PAdES).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A vendor's id of a signing transaction, as it may appear in a path and a store key:
/// 1 to 256 printable characters, no `/`, `\\` or NUL, not `.` or `..`. Surfaces parse it;
/// everything after them relies on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TransactionId(String);

/// Why a text is not a transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a transaction id is 1 to 256 printable characters, without '/' or '\\'")]
pub struct InvalidTransactionId;

impl TransactionId {
    pub const MAX_LEN: usize = 256;

    /// U+FFFD is what a path's invalid UTF-8 was decoded to: such an id is not the one the
    /// caller sent, and distinct ones would collide.
    pub fn parse(id: &str) -> Result<TransactionId, InvalidTransactionId> {
        let ok = !id.is_empty()
            && id.len() <= Self::MAX_LEN
            && id
                .chars()
                .all(|c| !c.is_control() && c != '/' && c != '\\' && c != '\u{FFFD}')
            && id != "."
            && id != "..";
        if ok {
            Ok(TransactionId(id.to_string()))
        } else {
            Err(InvalidTransactionId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TransactionId {
    type Error = InvalidTransactionId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TransactionId::parse(&s)
    }
}

impl From<TransactionId> for String {
    fn from(t: TransactionId) -> String {
        t.0
    }
}

impl std::fmt::Display for TransactionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for TransactionId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TransactionId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::ops::Deref for TransactionId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// How a caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CallerMethod {
    #[default]
    None,
    Basic,
    ApiKey,
    Jwt,
}

impl CallerMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CallerMethod::None => "none",
            CallerMethod::Basic => "basic",
            CallerMethod::ApiKey => "api-key",
            CallerMethod::Jwt => "jwt",
        }
    }
}

/// Who made the callback, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Caller {
    pub method: CallerMethod,
    /// Basic user name, api-key header name or JWT calling app (or subject); never a secret.
    pub principal: Option<String>,
    /// JWT: the verified issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// JWT: the verified tenant (`tid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// The step of its journey a pending event waits on; each is a job of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A follow-up with the vendor first (e.g. confirming the callback with its API).
    Vendor,
    /// The signed documents into the DRC, before a completion is notified.
    Documents,
    /// The notification to the NRC.
    #[default]
    Notify,
}

impl Step {
    pub fn is_notify(&self) -> bool {
        *self == Step::Notify
    }

    pub fn label(self) -> &'static str {
        match self {
            Step::Vendor => "vendor",
            Step::Documents => "documents",
            Step::Notify => "notify",
        }
    }
}

/// Where an event is in its journey to the NRC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RelayState {
    /// Queued, waiting for (another) attempt at `step` (shown unless it is the NRC's).
    Pending {
        #[serde(default, skip_serializing_if = "Step::is_notify")]
        step: Step,
    },
    /// No registration for its transaction yet; released when one arrives.
    Parked,
    Delivered {
        at: DateTime<Utc>,
        attempts: u32,
    },
    DeadLettered {
        at: DateTime<Utc>,
        reason: String,
    },
    /// Recorded for audit, never sent: progress (unless configured), or a second terminal
    /// report for a transaction that already has one.
    NotRelayed {
        why: NotRelayed,
    },
}

impl RelayState {
    /// The `state` tag as serialized, for filters, logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            RelayState::Pending { .. } => "pending",
            RelayState::Parked => "parked",
            RelayState::Delivered { .. } => "delivered",
            RelayState::DeadLettered { .. } => "dead_lettered",
            RelayState::NotRelayed { .. } => "not_relayed",
        }
    }

    pub fn is_pending(&self) -> bool {
        matches!(self, RelayState::Pending { .. })
    }

    /// Finished: nothing more will happen to the event unless an operator replays it.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            RelayState::Delivered { .. } | RelayState::NotRelayed { .. }
        )
    }
}

/// The relay states, for filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayStateKind {
    Pending,
    Parked,
    Delivered,
    DeadLettered,
    NotRelayed,
}

impl RelayStateKind {
    pub const ALL: [RelayStateKind; 5] = [
        RelayStateKind::Pending,
        RelayStateKind::Parked,
        RelayStateKind::Delivered,
        RelayStateKind::DeadLettered,
        RelayStateKind::NotRelayed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RelayStateKind::Pending => "pending",
            RelayStateKind::Parked => "parked",
            RelayStateKind::Delivered => "delivered",
            RelayStateKind::DeadLettered => "dead_lettered",
            RelayStateKind::NotRelayed => "not_relayed",
        }
    }

    pub fn parse(s: &str) -> Option<RelayStateKind> {
        Self::ALL.into_iter().find(|k| k.label() == s)
    }

    pub fn matches(self, state: &RelayState) -> bool {
        self.label() == state.label()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotRelayed {
    Progress,
    /// Same terminal outcome as one already relayed (e.g. reported over a second transport).
    RepeatedOutcome,
    /// A terminal outcome that contradicts the one already relayed: kept and flagged.
    ConflictingOutcome,
    /// The vendor's own API contradicted the callback when asked (it is quarantined too).
    Contradicted,
}

/// One normalized vendor callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningEvent {
    pub id: Uuid,
    pub vendor: Vendor,
    /// The vendor's id of the signing transaction (GoSign envelope externalId, PKIsigning
    /// PkisId, Posten signature-job-id).
    pub transaction_id: TransactionId,
    pub outcome: Outcome,
    /// When the vendor says it happened, if it says.
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    /// Which endpoint received it, e.g. `gosign.rest`.
    pub surface: String,
    /// Identifies the same delivery arriving again.
    pub dedup_key: String,
    /// The raw payload in the archive.
    pub archive_id: Uuid,
    #[serde(default)]
    pub documents: Vec<DocumentRef>,
    #[serde(default)]
    pub caller: Caller,
    pub relay: RelayState,
}

/// A vendor's own job to run before the outcome goes on (e.g. confirming it with the vendor's
/// API): the vendor's job name and data, see `crate::jobs::VendorTask`.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    pub name: String,
    pub data: serde_json::Value,
}

/// A callback as a surface hands it to the intake: normalized, not yet stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub vendor: Vendor,
    pub transaction_id: TransactionId,
    pub outcome: Outcome,
    pub occurred_at: Option<DateTime<Utc>>,
    pub surface: &'static str,
    pub dedup_key: String,
    pub documents: Vec<DocumentRef>,
    pub caller: Caller,
    /// Run before the outcome is relayed, when the callback is to be relayed at all.
    pub follow_up: Option<FollowUp>,
}

pub use crate::payload::RawPayload;

/// A stable delivery-dedup key: the hex SHA-256 of the parts, length-prefixed so that parts
/// cannot run into each other.
pub fn dedup_key(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_reject_traversal_and_controls() {
        assert!(TransactionId::parse("2opbDxqSB8BX3137ulqdw2q9_Mw=").is_ok());
        for bad in [
            "../x",
            "a\nb",
            "..",
            ".",
            "",
            "\u{FFFD}\u{FFFD}",
            "a\\b",
            "a\0b",
        ] {
            assert!(TransactionId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(TransactionId::parse(&"A".repeat(256)).is_ok());
        assert!(TransactionId::parse(&"A".repeat(257)).is_err());
        assert!(serde_json::from_str::<TransactionId>("\"a/b\"").is_err());
    }

    #[test]
    fn dedup_key_separates_parts() {
        assert_ne!(dedup_key(&[b"ab", b"c"]), dedup_key(&[b"a", b"bc"]));
        assert_eq!(dedup_key(&[b"x"]), dedup_key(&[b"x"]));
    }

    #[test]
    fn relay_label_is_the_serialized_state() {
        let now = Utc::now();
        for r in [
            RelayState::Pending { step: Step::Notify },
            RelayState::Parked,
            RelayState::Delivered {
                at: now,
                attempts: 1,
            },
            RelayState::DeadLettered {
                at: now,
                reason: "r".into(),
            },
            RelayState::NotRelayed {
                why: NotRelayed::Progress,
            },
        ] {
            assert_eq!(serde_json::to_value(&r).unwrap()["state"], r.label());
        }
    }

    #[test]
    fn pending_without_a_step_reads_as_notify() {
        let r: RelayState = serde_json::from_str(r#"{"state":"pending"}"#).unwrap();
        assert_eq!(r, RelayState::Pending { step: Step::Notify });
        for k in RelayStateKind::ALL {
            assert_eq!(RelayStateKind::parse(k.label()), Some(k));
        }
    }

    #[test]
    fn outcome_serializes_with_kind_tag() {
        let json = serde_json::to_value(Outcome::Aborted {
            reason: "verlopen".into(),
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "aborted", "reason": "verlopen"})
        );
    }
}
