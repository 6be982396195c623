//! Durable state: callbacks, raw payloads, the job queue (towards the NRC and the vendors),
//! registrations, dead letters and the quarantine. `Store` is the seam for a second backend
//! (e.g. PostgreSQL for several instances); `SledStore` is the embedded default. A backend
//! only stores and reads atomically: what a write means for an event's journey is decided by
//! `crate::rules`, the same for every backend.

mod archive;
pub mod copy;
#[cfg(test)]
mod fixtures;
mod keys;
pub mod postgres;
mod sled_store;
mod spool;
pub mod writer;

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::event::RawPayload;
use crate::event::{Caller, NewEvent, RelayStateKind, SigningEvent, TransactionId, Vendor};
use crate::jobs::{DeadLetter, Job, JobResult, Party};
use crate::registry::Registration;
use crate::rules::TerminalOutcome;

pub use postgres::{PgOptions, PgStore};
pub use sled_store::{SledStore, StoreOptions};
pub use spool::{Spool, Spooled, Spooler};

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

/// What `record` did with a callback.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// Stored (and queued, parked or flagged, as its `relay` state says).
    New(Box<SigningEvent>),
    /// The same delivery was recorded before; nothing was written.
    Duplicate { event_id: Uuid },
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

impl QuarantineEntry {
    /// The entry of a callback its vendor contradicted: the event's own archived payload.
    pub fn contradicted(event: &SigningEvent, reason: String) -> QuarantineEntry {
        QuarantineEntry {
            id: Uuid::now_v7(),
            vendor: event.vendor,
            surface: event.surface.clone(),
            received_at: event.received_at,
            reason,
            archive_id: event.archive_id,
            caller: event.caller.clone(),
            dedup_key: format!("contradicted/{}", event.id),
        }
    }
}

/// A new callback as the store keeps it, before the rules set its relay state.
fn new_record(new: NewEvent, id: Uuid, archive_id: Uuid, now: DateTime<Utc>) -> SigningEvent {
    SigningEvent {
        id,
        vendor: new.vendor,
        transaction_id: new.transaction_id,
        outcome: new.outcome,
        occurred_at: new.occurred_at,
        received_at: now,
        surface: new.surface.to_string(),
        dedup_key: new.dedup_key,
        archive_id,
        documents: new.documents,
        caller: new.caller,
        relay: crate::event::RelayState::Parked,
    }
}

/// The dead letter of `job` with the party's answer, naming its event's vendor and
/// transaction when the event still exists.
fn dead_letter_of(
    job: Job,
    event: Option<&SigningEvent>,
    at: DateTime<Utc>,
    attempts: u32,
    reason: String,
    status: Option<u16>,
    body: Option<String>,
) -> DeadLetter {
    let vendor = match (event, &job.task) {
        (Some(e), _) => Some(e.vendor),
        (None, crate::jobs::Task::Vendor(v)) => Some(v.vendor),
        (None, _) => None,
    };
    DeadLetter {
        event_id: job.task.event_id(),
        vendor,
        transaction_id: event.map(|e| e.transaction_id.clone()),
        at,
        reason,
        attempts,
        status,
        body,
        job,
    }
}

#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub vendor: Option<Vendor>,
    pub transaction_id: Option<TransactionId>,
    pub state: Option<RelayStateKind>,
    /// Only events with an id after this one (pagination cursor).
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Depths {
    /// Queued jobs of every party (NRC deliveries and vendor follow-ups).
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
    /// The terminal outcome already recorded, if any.
    pub terminal: Option<TerminalOutcome>,
}

/// What `enqueue` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    New(Uuid),
    /// The `once` key was seen before: this job was queued then.
    Existing(Uuid),
}

/// The prefix of `once` keys that are never purged: jobs that always exist (pollers).
pub const STANDING: &str = "standing/";

/// Whether a registration was new and how many parked events it released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub created: bool,
    pub released: usize,
}

/// A callback that can never be processed, as a surface hands it to the quarantine.
#[derive(Debug, Clone)]
pub struct NewQuarantine {
    pub vendor: Vendor,
    pub surface: &'static str,
    /// Why; never payload data.
    pub reason: String,
    pub caller: Caller,
    /// The same callback quarantined again (a vendor retrying) is kept once.
    pub dedup_key: String,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records one callback atomically (delivery dedup, payload archive, event, and its first
    /// job or parking entry, as `crate::rules::record` decides) and returns once it is durable.
    async fn record(&self, event: NewEvent, payload: RawPayload) -> Result<Recorded, StoreError>;
    /// Keeps an unprocessable callback for an operator, once per `dedup_key`; durable on
    /// return.
    async fn quarantine(
        &self,
        entry: NewQuarantine,
        payload: RawPayload,
    ) -> Result<QuarantineEntry, StoreError>;

    /// Registers a transaction and releases its parked events, in one write.
    async fn register(&self, registration: Registration) -> Result<Registered, StoreError>;
    async fn registration(
        &self,
        vendor: Vendor,
        tx: &TransactionId,
    ) -> Result<Option<Registration>, StoreError>;
    /// Withdraws a registration; a tombstone remembers it for workability checks.
    async fn unregister(&self, vendor: Vendor, tx: &TransactionId) -> Result<bool, StoreError>;
    async fn transaction_state(
        &self,
        vendor: Vendor,
        tx: &TransactionId,
    ) -> Result<TransactionState, StoreError>;

    /// `party`'s jobs due at `now`, earliest first, up to `limit` of them not in `skip`.
    /// The worker skips its jobs in flight, which are the earliest due: a backend leaves them
    /// out before reading their records, so a read costs what it returns, not what is in flight.
    async fn due_except(
        &self,
        party: Party,
        now: DateTime<Utc>,
        limit: usize,
        skip: &HashSet<Uuid>,
    ) -> Result<Vec<Job>, StoreError>;
    /// `party`'s jobs due at `now`, earliest first.
    async fn due(
        &self,
        party: Party,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        self.due_except(party, now, limit, &HashSet::new()).await
    }
    /// When `party`'s earliest job is due.
    async fn next_due(&self, party: Party) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Applies the result of running `job` (as read from the queue); does nothing when that
    /// job is no longer queued (replayed or completed meanwhile). May share a later commit:
    /// until it returns the worker keeps the job in flight, and a crash before then runs the
    /// job again (at least once).
    async fn complete(&self, job: &Job, result: JobResult) -> Result<(), StoreError>;
    /// Queues a job of its own (not a callback's step), durable on return. With `once`, a job
    /// is queued only the first time the key is seen (a browser reloading an exit URL, a
    /// poller seeded at every start): the answer names the job queued then. Keys are purged
    /// with the retention, except those of standing jobs (`standing/…`), which live forever.
    async fn enqueue(&self, job: Job, once: Option<String>) -> Result<Enqueued, StoreError>;
    /// Queues a dead letter's job again, as it was; returns it as queued.
    async fn replay(&self, id: Uuid) -> Result<Job, StoreError>;
    /// Returns once everything a reader can see now is durable.
    async fn barrier(&self) -> Result<(), StoreError>;
    /// Dead-letters parked events older than `cutoff`; returns how many.
    async fn expire_parked(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError>;
    /// Purges finished events, their payloads and old quarantine entries older than `cutoff`,
    /// and registrations whose transaction's outcome was delivered, or that were withdrawn,
    /// before `cutoff`.
    async fn purge(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError>;
    /// A durable write, to prove the store is writable.
    async fn probe(&self) -> Result<(), StoreError>;
    /// Refuses (`DiskLow`) while free space is below the floor, asked of the file system now:
    /// every write decision and readiness check calls it.
    fn room(&self) -> Result<(), StoreError>;
    /// Where large bodies are spooled while they are read, to be adopted as their payload's
    /// file by `record` and `quarantine`; `None` reads them into memory.
    fn spooler(&self) -> Option<Spooler> {
        None
    }

    async fn event(&self, id: Uuid) -> Result<Option<SigningEvent>, StoreError>;
    async fn events(&self, q: &EventQuery) -> Result<Vec<SigningEvent>, StoreError>;
    async fn payload(&self, archive_id: Uuid) -> Result<Option<RawPayload>, StoreError>;
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;
    async fn quarantined(&self) -> Result<Vec<QuarantineEntry>, StoreError>;
    async fn quarantine_entry(&self, id: Uuid) -> Result<Option<QuarantineEntry>, StoreError>;
    /// Counts kept up to date by the writer: cheap enough for every `/metrics` scrape.
    fn depths(&self) -> Depths;
    /// True once the store refuses all work until the process restarts (a durable write
    /// failed): liveness turns red so that an orchestrator restarts the instance.
    fn needs_restart(&self) -> bool;
}
