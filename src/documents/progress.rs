//! How far an event's documents step is, kept in its job (`Task::Documents.progress`) and
//! written back before every call whose answer must not be lost: a restart, a replay or a
//! retry goes on from here.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The trigger's `documenten` before this index hold their signed version.
    #[serde(default)]
    pub next: usize,
    /// signrelay asked for a lock on `documenten[next]` and may have lost the answer: a lock
    /// found on it afterwards may be its own (an operator then unlocks it).
    #[serde(default)]
    pub locking: bool,
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
