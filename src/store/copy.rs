//! `signrelay store copy`: every record of one store into another, for an installation that
//! outgrows one machine (sled into PostgreSQL) or goes back. Each backend lists its records as
//! [`Item`]s and writes them in batches; the copy itself knows no backend.

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{QuarantineEntry, RawPayload, StoreError};
use crate::event::{SigningEvent, TransactionId, Vendor};
use crate::jobs::{DeadLetter, Job};
use crate::registry::Registration;
use crate::rules::Terminal;

/// One record, as every backend keeps it.
#[derive(Debug, Clone)]
pub enum Item {
    Event(Box<SigningEvent>),
    Payload {
        archive_id: Uuid,
        payload: RawPayload,
    },
    Terminal {
        vendor: Vendor,
        transaction_id: TransactionId,
        terminal: Terminal,
    },
    Registration(Box<Registration>),
    Withdrawal {
        vendor: Vendor,
        transaction_id: TransactionId,
        at: DateTime<Utc>,
    },
    Parked {
        event_id: Uuid,
        vendor: Vendor,
        transaction_id: TransactionId,
        since: DateTime<Utc>,
    },
    Job(Box<Job>),
    Once {
        key: String,
        job_id: Uuid,
        at: DateTime<Utc>,
    },
    DeadLetter(Box<DeadLetter>),
    Quarantine(Box<QuarantineEntry>),
}

impl Item {
    /// The kind, for the copy's counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Item::Event(_) => "events",
            Item::Payload { .. } => "payloads",
            Item::Terminal { .. } => "terminal outcomes",
            Item::Registration(_) => "registrations",
            Item::Withdrawal { .. } => "withdrawals",
            Item::Parked { .. } => "parked events",
            Item::Job(_) => "jobs",
            Item::Once { .. } => "once-keys",
            Item::DeadLetter(_) => "dead letters",
            Item::Quarantine(_) => "quarantine entries",
        }
    }
}

/// A store whose records can be listed and written as they are.
#[async_trait::async_trait]
pub trait Portable: Send + Sync {
    /// Sends every record; payloads may be large (mapped), so the channel bounds how many are
    /// held at once.
    async fn export(&self, to: mpsc::Sender<Item>) -> Result<(), StoreError>;
    /// Writes a batch of records atomically.
    async fn import(&self, items: Vec<Item>) -> Result<(), StoreError>;
    /// Whether the store holds no event, job, registration, dead letter or quarantine entry.
    async fn is_empty(&self) -> Result<bool, StoreError>;
}

/// Copies everything from `from` into `to`, which must be empty; returns the counts by kind.
pub async fn copy(
    from: &dyn Portable,
    to: &dyn Portable,
) -> anyhow::Result<std::collections::BTreeMap<&'static str, u64>> {
    if !to.is_empty().await? {
        anyhow::bail!("the target store is not empty: copy into a new one");
    }
    let (tx, mut rx) = mpsc::channel(64);
    let mut counts = std::collections::BTreeMap::new();
    let export = from.export(tx);
    let import = async {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(item) = rx.recv().await {
            *counts.entry(item.kind()).or_insert(0) += 1;
            if let Item::Payload { payload, .. } = &item {
                bytes += payload.bytes.len();
            }
            batch.push(item);
            if batch.len() >= 500 || bytes >= 32 << 20 {
                to.import(std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            to.import(batch).await?;
        }
        Ok::<_, StoreError>(())
    };
    let (exported, imported) = tokio::join!(export, import);
    // An import error drops the receiver, which ends the export with an error of its own:
    // the import's is the one that explains.
    imported?;
    exported?;
    Ok(counts)
}

#[cfg(test)]
mod tests;
