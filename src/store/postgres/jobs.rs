//! The job queue shared by instances: a lane's due jobs are claimed with `FOR UPDATE SKIP
//! LOCKED` and a lease, so that each job runs on one instance at a time. A live instance
//! renews the leases it holds; a killed one's run out and another instance takes the job over
//! (counted: it may run a second time). A result is applied only by the instance that holds
//! the job's lease.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

pub use super::records::queue;
use super::records::{
    contradict, find_event, lock_transaction, move_event, record_in, registered, save_event,
};
use super::{parse, payloads, pg};
use crate::event::{NewEvent, RawPayload, RelayState};
use crate::jobs::{Job, JobResult, Party};
use crate::rules::{self, Policy};
use crate::store::StoreError;

/// A claimed job, and the instance whose lease on it had run out, if any.
pub struct Claimed {
    pub job: Job,
    pub taken_from: Option<Uuid>,
}

/// Claims up to `limit` of `party`'s jobs due at `now` for `owner`, leaving out `skip` (the
/// worker's jobs in flight; `renew` keeps their leases): those nobody holds, those whose lease
/// ran out, and those `owner` holds already but does not skip (a job the worker put back).
/// Earliest first.
pub async fn claim(
    pool: &PgPool,
    owner: Uuid,
    lease_ms: i64,
    party: Party,
    now: DateTime<Utc>,
    limit: usize,
    skip: &[Uuid],
) -> Result<Vec<Claimed>, StoreError> {
    let rows = sqlx::query(
        "WITH c AS (
             SELECT id, lease_owner AS previous FROM jobs
             WHERE party = $1 AND due <= $2
               AND (lease_owner IS NULL OR lease_owner = $3 OR lease_until < now())
               AND NOT (id = ANY($6))
             ORDER BY due LIMIT $4
             FOR UPDATE SKIP LOCKED)
         UPDATE jobs j SET lease_owner = $3,
             lease_until = now() + $5 * interval '1 millisecond',
             takeovers = j.takeovers + (c.previous IS NOT NULL AND c.previous <> $3)::int
         FROM c WHERE j.id = c.id
         RETURNING j.record, c.previous, j.due",
    )
    .bind(party.as_str())
    .bind(now)
    .bind(owner)
    .bind(limit as i64)
    .bind(lease_ms)
    .bind(skip)
    .fetch_all(pool)
    .await
    .map_err(pg)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let previous: Option<Uuid> = r.get(1);
        out.push(Claimed {
            job: parse("job", r.get(0))?,
            taken_from: previous.filter(|p| *p != owner),
        });
    }
    out.sort_by_key(|c| (c.job.due, c.job.id));
    Ok(out)
}

/// Extends the leases `owner` holds on `ids`.
pub async fn renew(
    pool: &PgPool,
    owner: Uuid,
    lease_ms: i64,
    ids: &[Uuid],
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE jobs SET lease_until = now() + $2 * interval '1 millisecond'
         WHERE lease_owner = $1 AND id = ANY($3)",
    )
    .bind(owner)
    .bind(lease_ms)
    .bind(ids)
    .execute(pool)
    .await
    .map_err(pg)?;
    Ok(())
}

/// Gives up every lease `owner` holds (a clean stop: nothing of it is in flight any more).
pub async fn release_all(pool: &PgPool, owner: Uuid) -> Result<u64, StoreError> {
    Ok(
        sqlx::query(
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(pool)
        .await
        .map_err(pg)?
        .rows_affected(),
    )
}

/// Dead-letters `job` with the party's answer; its event (if any) shows it.
pub async fn dead_letter(
    conn: &mut PgConnection,
    job: Job,
    attempts: u32,
    reason: String,
    status: Option<u16>,
    body: Option<String>,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let event = find_event(conn, job.task.event_id()).await?;
    let dl = crate::store::dead_letter_of(
        job,
        event.as_ref(),
        now,
        attempts,
        reason.clone(),
        status,
        body,
    );
    sqlx::query(
        "INSERT INTO dead_letters (id, at, record) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at, record = EXCLUDED.record",
    )
    .bind(dl.job.id)
    .bind(now)
    .bind(sqlx::types::Json(&dl))
    .execute(&mut *conn)
    .await
    .map_err(pg)?;
    if let Some(mut event) = event {
        event.relay = RelayState::DeadLettered { at: now, reason };
        save_event(conn, &event).await?;
    }
    Ok(())
}

/// Applies a job's result in one database transaction; nothing when `owner` no longer holds
/// the job (completed, replayed, or taken over after its lease ran out). Callbacks the job
/// obtained are recorded in the same transaction.
pub async fn complete_in(
    conn: &mut PgConnection,
    owner: Uuid,
    policy: Policy,
    job: &Job,
    result: JobResult,
    records: Vec<(NewEvent, RawPayload)>,
) -> Result<bool, StoreError> {
    let current: Option<serde_json::Value> = sqlx::query_scalar(
        "DELETE FROM jobs WHERE id = $1 AND due = $2 AND lease_owner = $3 RETURNING record",
    )
    .bind(job.id)
    .bind(job.due)
    .bind(owner)
    .fetch_optional(&mut *conn)
    .await
    .map_err(pg)?;
    let Some(current) = current else {
        return Ok(false);
    };
    let current: Job = parse("job", current)?;
    let now = Utc::now();
    let attempts = current.attempts + 1;
    // The event's transaction is locked before its rows, as every writer does.
    let event = match find_event(conn, current.task.event_id()).await? {
        Some(e) => {
            lock_transaction(conn, e.vendor, &e.transaction_id).await?;
            find_event(conn, Some(e.id)).await?
        }
        None => None,
    };
    match result {
        JobResult::Done(done) => {
            for (new, payload) in records {
                let archive_id = Uuid::now_v7();
                payloads::write(conn, archive_id, &payload).await?;
                if let crate::store::Recorded::Duplicate { .. } =
                    record_in(conn, policy, new, archive_id).await?
                {
                    sqlx::query("DELETE FROM payloads WHERE archive_id = $1")
                        .bind(archive_id)
                        .execute(&mut *conn)
                        .await
                        .map_err(pg)?;
                }
            }
            for task in done.then {
                queue(conn, &Job::new(task, now)).await?;
            }
            if let Some(again) = done.again {
                // A standing job or a step that goes in turns: queued again, its data updated.
                queue(conn, &current.next_turn(again)).await?;
                return Ok(true);
            }
            if let Some(event) = event {
                let reg = registered(conn, event.vendor, &event.transaction_id).await?;
                let next = rules::advance(policy, &event, current.task.step(), reg, attempts, now);
                move_event(conn, event, next, now).await?;
            }
        }
        JobResult::Retry { due, error } => {
            queue(
                conn,
                &Job {
                    due,
                    attempts,
                    last_error: Some(error),
                    ..current
                },
            )
            .await?
        }
        JobResult::DeadLetter {
            reason,
            status,
            body,
        } => dead_letter(conn, current, attempts, reason, status, body).await?,
        JobResult::Park => match event {
            Some(event) => {
                let reg = registered(conn, event.vendor, &event.transaction_id).await?;
                let next = rules::park(policy, &event, reg);
                move_event(conn, event, next, now).await?;
            }
            None => {
                let reason = "geen registratie van de transactie".to_string();
                dead_letter(conn, current, attempts, reason, None, None).await?
            }
        },
        JobResult::Contradicted { reason } => {
            if let Some(event) = event {
                contradict(conn, event, reason).await?;
            }
        }
    }
    Ok(true)
}
