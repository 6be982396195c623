//! The retention purge, in batches (each its own short transaction, so that callbacks are
//! never held up behind it), by one instance at a time: the others skip their turn while the
//! purge lock is held.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{pg, schema};
use crate::store::{StoreError, STANDING};

const BATCH: i64 = 500;

/// Purges what the retention lets go (as the sled store does); 0 when another instance is
/// purging now.
pub async fn purge(pool: &PgPool, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
    let mut conn = pool.acquire().await.map_err(pg)?;
    let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(schema::LOCK_NAMESPACE)
        .bind(schema::PURGE_LOCK)
        .fetch_one(&mut *conn)
        .await
        .map_err(pg)?;
    if !mine {
        return Ok(0);
    }
    let purged = batches(&mut conn, cutoff).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(schema::LOCK_NAMESPACE)
        .bind(schema::PURGE_LOCK)
        .execute(&mut *conn)
        .await;
    purged
}

/// Runs `sql` (which takes the cutoff as $1 and the batch size as $2 and returns one count)
/// until a batch comes back short.
async fn drain(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    cutoff: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut n = 0;
    loop {
        let k: i64 = sqlx::query_scalar(sql)
            .bind(cutoff)
            .bind(BATCH)
            .fetch_one(&mut *conn)
            .await
            .map_err(pg)?;
        n += k as usize;
        if k < BATCH {
            return Ok(n);
        }
    }
}

async fn batches(
    conn: &mut sqlx::PgConnection,
    cutoff: DateTime<Utc>,
) -> Result<usize, StoreError> {
    // Registrations (personal data) whose transaction's terminal outcome was delivered before
    // the cutoff, or whose event (final) is purged already; and withdrawn ones' tombstones.
    let registrations = drain(
        conn,
        "WITH over AS (
             SELECT r.vendor, r.transaction_id FROM registrations r
             JOIN terminals t USING (vendor, transaction_id)
             LEFT JOIN events e ON e.id = t.event_id
             WHERE e.id IS NULL OR e.delivered_at < $1
             LIMIT $2),
         gone AS (DELETE FROM registrations r USING over
             WHERE r.vendor = over.vendor AND r.transaction_id = over.transaction_id
             RETURNING 1)
         SELECT count(*) FROM gone",
        cutoff,
    )
    .await?;
    let withdrawals = drain(
        conn,
        "WITH gone AS (DELETE FROM withdrawals WHERE (vendor, transaction_id) IN (
             SELECT vendor, transaction_id FROM withdrawals WHERE at < $1 LIMIT $2)
             RETURNING 1)
         SELECT count(*) FROM gone",
        cutoff,
    )
    .await?;
    // Finished events with their payloads (and delivery keys: the row).
    let events = drain(
        conn,
        "WITH gone AS (DELETE FROM events WHERE id IN (
                 SELECT id FROM events WHERE final AND received_at < $1 LIMIT $2
                 FOR UPDATE SKIP LOCKED)
             RETURNING archive_id),
         files AS (DELETE FROM payloads WHERE archive_id IN (SELECT archive_id FROM gone))
         SELECT count(*) FROM gone",
        cutoff,
    )
    .await?;
    let quarantined = drain(
        conn,
        "WITH gone AS (DELETE FROM quarantine WHERE id IN (
                 SELECT id FROM quarantine WHERE received_at < $1 LIMIT $2
                 FOR UPDATE SKIP LOCKED)
             RETURNING archive_id),
         files AS (DELETE FROM payloads WHERE archive_id IN (SELECT archive_id FROM gone))
         SELECT count(*) FROM gone",
        cutoff,
    )
    .await?;
    // Once-keys, except standing jobs'.
    sqlx::query("DELETE FROM onces WHERE at < $1 AND NOT starts_with(key, $2)")
        .bind(cutoff)
        .bind(STANDING)
        .execute(&mut *conn)
        .await
        .map_err(pg)?;
    Ok(registrations + withdrawals + events + quarantined)
}
