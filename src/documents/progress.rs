//! How far an event's documents step is, kept in its job (`Task::Documents.progress`) and
//! written back before every call whose answer must not be lost: a restart, a replay or a
//! retry goes on from here.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The trigger's `documenten` before this index hold their signed version.
    #[serde(default)]
    pub next: usize,
    /// Since when signrelay means to lock `documenten[next]`: the intent is committed before
    /// the call, so a lock found on it afterwards, without a lock id, may be signrelay's own
    /// whose answer a crash lost (the DRC does not say whose a lock is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locking_since: Option<chrono::DateTime<chrono::Utc>>,
    /// The lock signrelay holds; always released, also after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<HeldLock>,
    /// Why the step stops, reported once the lock is released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// Evidence files before this index are in the DRC and linked to the zaak.
    #[serde(default)]
    pub evidence_next: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLock {
    /// The document it is on.
    pub url: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: String,
    pub status: Option<u16>,
    pub body: Option<String>,
    /// A refusal older than the job (replayed since) is forgotten.
    pub at: chrono::DateTime<chrono::Utc>,
}

impl Progress {
    /// The progress in a job's data (`null` for a step not begun).
    pub fn of(data: &serde_json::Value) -> Progress {
        serde_json::from_value(data.clone()).unwrap_or_default()
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("progress serializes")
    }
}
