//! Reading and writing events, registrations and their transaction's facts inside one
//! database transaction, and recording a callback as `crate::rules` decides, as the sled
//! store does inside its writer.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{parse, pg, schema};
use crate::event::{NewEvent, RelayState, SigningEvent, TransactionId, Vendor};
use crate::jobs::{Job, Task};
use crate::rules::{self, Policy, RecordFacts, Terminal, TerminalOutcome};
use crate::store::{QuarantineEntry, Recorded, StoreError};

/// Serializes every write that reads or changes what a transaction's events depend on (its
/// registration, its terminal outcome, its parked events), across all instances, until the
/// database transaction ends. A callback reaching instance A while its registration reaches
/// instance B is therefore either parked before the registration looks for parked events, or
/// sees the registration: never stranded.
pub async fn lock_transaction(
    conn: &mut PgConnection,
    vendor: Vendor,
    tx: &TransactionId,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(schema::TRANSACTION_LOCKS)
        .bind(format!("{}/{}", vendor.as_str(), tx.as_str()))
        .execute(&mut *conn)
        .await
        .map_err(pg)?;
    Ok(())
}

pub async fn registered(
    conn: &mut PgConnection,
    vendor: Vendor,
    tx: &TransactionId,
) -> Result<bool, StoreError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM registrations WHERE vendor = $1 AND transaction_id = $2)",
    )
    .bind(vendor.as_str())
    .bind(tx.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(pg)
}

pub async fn terminal(
    conn: &mut PgConnection,
    vendor: Vendor,
    tx: &TransactionId,
) -> Result<Option<Terminal>, StoreError> {
    let row = sqlx::query(
        "SELECT event_id, outcome FROM terminals WHERE vendor = $1 AND transaction_id = $2",
    )
    .bind(vendor.as_str())
    .bind(tx.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(pg)?;
    row.map(|r| {
        Ok(Terminal {
            event_id: r.get(0),
            outcome: TerminalOutcome::parse(r.get::<&str, _>(1))
                .ok_or_else(|| StoreError::Corrupt("terminal outcome".into()))?,
        })
    })
    .transpose()
}

/// The event, locked for this transaction's write.
pub async fn load_event(conn: &mut PgConnection, id: Uuid) -> Result<SigningEvent, StoreError> {
    let v: serde_json::Value =
        sqlx::query_scalar("SELECT record FROM events WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(pg)?
            .ok_or(StoreError::NotFound)?;
    parse("event", v)
}

/// The event if it still exists (an operator's retention may have purged it).
pub async fn find_event(
    conn: &mut PgConnection,
    id: Option<Uuid>,
) -> Result<Option<SigningEvent>, StoreError> {
    let Some(id) = id else { return Ok(None) };
    match load_event(conn, id).await {
        Ok(e) => Ok(Some(e)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn save_event(conn: &mut PgConnection, e: &SigningEvent) -> Result<(), StoreError> {
    let delivered_at = match e.relay {
        RelayState::Delivered { at, .. } => Some(at),
        _ => None,
    };
    sqlx::query(
        "INSERT INTO events (id, vendor, transaction_id, dedup_key, state, final, delivered_at,
                             received_at, archive_id, record)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, final = EXCLUDED.final,
             delivered_at = EXCLUDED.delivered_at, record = EXCLUDED.record",
    )
    .bind(e.id)
    .bind(e.vendor.as_str())
    .bind(e.transaction_id.as_str())
    .bind(&e.dedup_key)
    .bind(e.relay.label())
    .bind(e.relay.is_final())
    .bind(delivered_at)
    .bind(e.received_at)
    .bind(e.archive_id)
    .bind(sqlx::types::Json(e))
    .execute(&mut *conn)
    .await
    .map_err(pg)?;
    Ok(())
}

/// Writes an event's new state, as the rules decided it: parked, or its next job queued.
pub async fn move_event(
    conn: &mut PgConnection,
    mut event: SigningEvent,
    (relay, next): (RelayState, Option<Task>),
    now: DateTime<Utc>,
) -> Result<SigningEvent, StoreError> {
    event.relay = relay;
    save_event(conn, &event).await?;
    if event.relay == RelayState::Parked {
        sqlx::query(
            "INSERT INTO parked (event_id, vendor, transaction_id, since) VALUES ($1, $2, $3, $4)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.id)
        .bind(event.vendor.as_str())
        .bind(event.transaction_id.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(pg)?;
    }
    if let Some(task) = next {
        queue(conn, &Job::new(task, now)).await?;
    }
    Ok(event)
}

/// Records one callback (its payload already written as `archive_id` in this transaction).
/// A duplicate leaves the transaction to be rolled back by the caller.
pub async fn record_in(
    conn: &mut PgConnection,
    policy: Policy,
    new: NewEvent,
    archive_id: Uuid,
) -> Result<Recorded, StoreError> {
    lock_transaction(conn, new.vendor, &new.transaction_id).await?;
    let dup: Option<Uuid> = sqlx::query_scalar("SELECT id FROM events WHERE dedup_key = $1")
        .bind(&new.dedup_key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(pg)?;
    if let Some(event_id) = dup {
        return Ok(Recorded::Duplicate { event_id });
    }
    let id = Uuid::now_v7();
    let now = Utc::now();
    let facts = RecordFacts {
        terminal: terminal(conn, new.vendor, &new.transaction_id).await?,
        registered: registered(conn, new.vendor, &new.transaction_id).await?,
    };
    let plan = rules::record(policy, id, &new, facts);
    if plan.claims_terminal {
        let outcome = TerminalOutcome::of(&new.outcome).expect("a terminal outcome claims");
        // The primary key keeps it to one per transaction, whatever the lock.
        sqlx::query(
            "INSERT INTO terminals (vendor, transaction_id, event_id, outcome) VALUES ($1, $2, $3, $4)",
        )
        .bind(new.vendor.as_str())
        .bind(new.transaction_id.as_str())
        .bind(id)
        .bind(outcome.label())
        .execute(&mut *conn)
        .await
        .map_err(pg)?;
    }
    let event = crate::store::new_record(new, id, archive_id, now);
    let saved = move_event(conn, event, (plan.relay, plan.job), now).await?;
    Ok(Recorded::New(Box::new(saved)))
}

pub async fn insert_quarantine(
    conn: &mut PgConnection,
    q: &QuarantineEntry,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO quarantine (id, dedup_key, received_at, archive_id, record)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(q.id)
    .bind(&q.dedup_key)
    .bind(q.received_at)
    .bind(q.archive_id)
    .bind(sqlx::types::Json(q))
    .execute(&mut *conn)
    .await
    .map_err(pg)?
    .rows_affected();
    Ok(inserted == 1)
}

/// The vendor contradicted `event`: not relayed, kept in the quarantine with the reason (the
/// same archived payload), and the transaction's terminal outcome open again if it was this.
pub async fn contradict(
    conn: &mut PgConnection,
    mut event: SigningEvent,
    reason: String,
) -> Result<(), StoreError> {
    let t = terminal(conn, event.vendor, &event.transaction_id).await?;
    let (relay, release) = rules::contradicted(&event, t);
    if release {
        sqlx::query("DELETE FROM terminals WHERE vendor = $1 AND transaction_id = $2")
            .bind(event.vendor.as_str())
            .bind(event.transaction_id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(pg)?;
    }
    let entry = QuarantineEntry::contradicted(&event, reason);
    insert_quarantine(conn, &entry).await?;
    event.relay = relay;
    save_event(conn, &event).await
}

/// Queues a job (a job of the same id, an event's, is replaced: an event waits on one step).
pub async fn queue(conn: &mut PgConnection, job: &Job) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO jobs (id, party, due, record) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET party = EXCLUDED.party, due = EXCLUDED.due,
             record = EXCLUDED.record, lease_owner = NULL, lease_until = NULL",
    )
    .bind(job.id)
    .bind(job.party().as_str())
    .bind(job.due)
    .bind(sqlx::types::Json(job))
    .execute(&mut *conn)
    .await
    .map_err(pg)?;
    Ok(())
}
