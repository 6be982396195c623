//! Durable state: callbacks, raw payloads, the outbox towards the NRC, registrations, dead
//! letters and the quarantine. `Store` is the seam for a second backend (e.g. PostgreSQL for
//! several instances); `SledStore` is the embedded default.

mod archive;
mod keys;
mod sled_store;
pub mod writer;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{Caller, NewEvent, SigningEvent, Vendor};
use crate::registry::Registration;

pub use sled_store::{SledStore, StoreOptions};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Storage(String),
    #[error("i/o error: {0}")]
    Io(std::sync::Arc<std::io::Error>),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("store is closed")]
    Closed,
    #[error("not found")]
    NotFound,
    #[error("database {0} is in use by another process (a running instance?)")]
    Locked(String),
    /// Free space is below `store.min_free_mib`: new work is refused before the disk is full,
    /// so that no write ever fails half-way.
    #[error("the store's disk is nearly full ({free_mib} MiB free)")]
    DiskLow { free_mib: u64 },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => StoreError::Io(std::sync::Arc::new(io)),
            other => StoreError::Storage(other.to_string()),
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(std::sync::Arc::new(e))
    }
}

/// A raw callback body as received, kept for audit, document download and replay.
#[derive(Debug, Clone)]
pub struct RawPayload {
    pub content_type: String,
    pub bytes: Bytes,
}

/// What `record` did with a callback.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// Stored (and queued, parked or flagged, as its `relay` state says).
    New(Box<SigningEvent>),
    /// The same delivery was recorded before; nothing was written.
    Duplicate { event_id: Uuid },
}

/// An outcome waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    pub event_id: Uuid,
    pub due: DateTime<Utc>,
    pub attempts: u32,
    pub first_queued_at: DateTime<Utc>,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// An outcome the relay gave up on, with what the NRC said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event_id: Uuid,
    pub vendor: Vendor,
    pub transaction_id: String,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub attempts: u32,
    pub nrc_status: Option<u16>,
    /// The NRC's (problem) body, truncated.
    pub nrc_body: Option<String>,
}

/// A callback that can never be processed, kept for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub id: Uuid,
    pub vendor: Vendor,
    pub surface: String,
    pub received_at: DateTime<Utc>,
    pub reason: String,
    pub archive_id: Uuid,
    #[serde(default)]
    pub caller: Caller,
    /// The same payload quarantined again (a vendor retrying) is kept once.
    #[serde(default)]
    pub dedup_key: String,
}

/// How a delivery attempt ended, as the relay worker reports it.
#[derive(Debug, Clone)]
pub enum DeliveryResult {
    Delivered {
        at: DateTime<Utc>,
    },
    Retry {
        due: DateTime<Utc>,
        error: String,
    },
    DeadLetter {
        reason: String,
        nrc_status: Option<u16>,
        nrc_body: Option<String>,
    },
    /// No registration for the transaction (any more): wait for one.
    Park,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventQuery {
    pub vendor: Option<Vendor>,
    pub transaction_id: Option<String>,
    /// Relay state: pending, parked, delivered, dead_lettered, not_relayed.
    pub state: Option<String>,
    /// Only events with an id after this one (pagination cursor).
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Depths {
    pub outbox: i64,
    pub parked: i64,
    pub dead_letters: i64,
    pub quarantine: i64,
}

/// What the store knows of a transaction, for workability decisions.
#[derive(Debug, Clone, Default)]
pub struct TransactionState {
    pub registration: Option<Registration>,
    /// The case application withdrew (deleted) its registration.
    pub withdrawn: bool,
    /// The terminal outcome already recorded (`completed` / `aborted`), if any.
    pub terminal: Option<String>,
}

/// Whether a registration was new and how many parked events it released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub created: bool,
    pub released: usize,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records one callback atomically (delivery dedup, payload archive, event, and its outbox
    /// or parking entry) and returns once it is durable.
    async fn record(&self, event: NewEvent, payload: RawPayload) -> Result<Recorded, StoreError>;
    /// Keeps an unprocessable callback for an operator, once per `dedup_key`; durable on
    /// return.
    async fn quarantine(
        &self,
        vendor: Vendor,
        surface: &str,
        reason: String,
        caller: Caller,
        payload: RawPayload,
        dedup_key: String,
    ) -> Result<QuarantineEntry, StoreError>;

    async fn register(&self, registration: Registration) -> Result<Registered, StoreError>;
    fn registration(&self, vendor: Vendor, tx: &str) -> Result<Option<Registration>, StoreError>;
    /// Withdraws a registration; a tombstone remembers it for workability checks.
    async fn unregister(&self, vendor: Vendor, tx: &str) -> Result<bool, StoreError>;
    fn transaction_state(&self, vendor: Vendor, tx: &str) -> Result<TransactionState, StoreError>;

    /// Outbox entries due at `now`, earliest first.
    fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;
    /// When the earliest outbox entry is due.
    fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Records the result of delivering the outbox entry of `event_id` due at `due`; does
    /// nothing when that entry is no longer there.
    async fn complete(
        &self,
        event_id: Uuid,
        due: DateTime<Utc>,
        result: DeliveryResult,
    ) -> Result<(), StoreError>;
    /// Moves a dead letter back into the outbox.
    async fn replay(&self, event_id: Uuid) -> Result<(), StoreError>;
    /// Dead-letters parked events older than `cutoff`; returns how many.
    async fn expire_parked(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError>;
    /// Purges finished events, their payloads and old quarantine entries older than `cutoff`.
    async fn purge(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError>;
    /// A durable write, to prove the store is writable.
    async fn probe(&self) -> Result<(), StoreError>;

    fn event(&self, id: Uuid) -> Result<Option<SigningEvent>, StoreError>;
    fn events(&self, q: &EventQuery) -> Result<Vec<SigningEvent>, StoreError>;
    fn payload(&self, archive_id: Uuid) -> Result<Option<RawPayload>, StoreError>;
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;
    fn quarantined(&self) -> Result<Vec<QuarantineEntry>, StoreError>;
    fn quarantine_entry(&self, id: Uuid) -> Result<Option<QuarantineEntry>, StoreError>;
    fn depths(&self) -> Depths;
    /// True once the store refuses all work until the process restarts (a durable write
    /// failed): liveness turns red so that an orchestrator restarts the instance.
    fn needs_restart(&self) -> bool;
}
