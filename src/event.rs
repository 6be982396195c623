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
}

impl Vendor {
    pub const ALL: [Vendor; 3] = [Vendor::Gosign, Vendor::Pkisigning, Vendor::Posten];

    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Gosign => "gosign",
            Vendor::Pkisigning => "pkisigning",
            Vendor::Posten => "posten",
        }
    }

    pub fn parse(s: &str) -> Option<Vendor> {
        Vendor::ALL.into_iter().find(|v| v.as_str() == s)
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
    /// Size of the decoded document in bytes.
    pub size: u64,
}

/// Who made the callback, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Caller {
    /// `none`, `basic`, `api-key`, `jwt`.
    pub method: String,
    /// Basic user name, api-key header name or JWT calling app (or subject); never a secret.
    pub principal: Option<String>,
    /// JWT: the verified issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// JWT: the verified tenant (`tid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Where an event is in its journey to the NRC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RelayState {
    /// In the outbox, waiting for (another) delivery attempt.
    Pending,
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
            RelayState::Pending => "pending",
            RelayState::Parked => "parked",
            RelayState::Delivered { .. } => "delivered",
            RelayState::DeadLettered { .. } => "dead_lettered",
            RelayState::NotRelayed { .. } => "not_relayed",
        }
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
}

/// One normalized vendor callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningEvent {
    pub id: Uuid,
    pub vendor: Vendor,
    /// The vendor's id of the signing transaction (GoSign envelope externalId, PKIsigning
    /// PkisId, Posten signature-job-id).
    pub transaction_id: String,
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

/// A callback as a surface hands it to the intake: normalized, not yet stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub vendor: Vendor,
    pub transaction_id: String,
    pub outcome: Outcome,
    pub occurred_at: Option<DateTime<Utc>>,
    pub surface: &'static str,
    pub dedup_key: String,
    pub documents: Vec<DocumentRef>,
    pub caller: Caller,
}

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
    fn dedup_key_separates_parts() {
        assert_ne!(dedup_key(&[b"ab", b"c"]), dedup_key(&[b"a", b"bc"]));
        assert_eq!(dedup_key(&[b"x"]), dedup_key(&[b"x"]));
    }

    #[test]
    fn relay_label_is_the_serialized_state() {
        let now = Utc::now();
        for r in [
            RelayState::Pending,
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
