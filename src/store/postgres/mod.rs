//! The shared store: PostgreSQL, for several instances behind one load balancer. The same
//! contract as the sled store, by construction: a callback is acknowledged after its COMMIT
//! (synchronous commit on); delivery dedup and one terminal outcome per transaction are unique
//! constraints checked in the transaction that records the callback; what a write means for an
//! event is decided by `crate::rules` inside that transaction; every write that depends on a
//! transaction's registration, terminal outcome or parked events holds that transaction's
//! advisory lock, so parking and registration cannot miss each other across instances.
//!
//! `schema`: connecting and migrations; `records`: events, registrations and the rules;
//! `jobs`: the queue (claims with a lease); `payloads`: raw bodies in chunks; `purge`: the
//! retention, by one instance at a time.

mod copy;
mod jobs;
mod payloads;
mod purge;
mod records;
pub mod schema;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::archive::Archive;
use super::spool::Spooler;
use super::writer::Counts;
use super::{
    Depths, Enqueued, EventQuery, NewQuarantine, QuarantineEntry, RawPayload, Recorded, Registered,
    Store, StoreError, TransactionState,
};
use crate::config::PostgresConfig;
use crate::event::{NewEvent, SigningEvent, TransactionId, Vendor};
use crate::jobs::{DeadLetter, Job, JobResult, Party};
use crate::registry::Registration;
use crate::rules::{self, Policy};

pub use schema::{migrate, MIGRATIONS};

/// A database error as the store reports it (the request is told to retry).
fn pg(e: sqlx::Error) -> StoreError {
    StoreError::Storage(format!("postgres: {e}"))
}

fn parse<T: serde::de::DeserializeOwned>(
    what: &str,
    v: serde_json::Value,
) -> Result<T, StoreError> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

#[derive(Debug, Clone)]
pub struct PgOptions {
    pub policy: Policy,
    /// How long a claim lasts without renewal.
    pub lease: Duration,
    /// This instance's scratch directory (spooled bodies, large payloads read back).
    pub scratch: PathBuf,
    /// New work is refused below this much free space in the scratch directory.
    pub min_free_bytes: u64,
}

pub struct PgStore {
    pool: PgPool,
    options: PgOptions,
    /// This process's name in leases: a restart is another instance.
    instance: Uuid,
    /// Jobs whose lease this instance holds (renewed until their result is applied).
    held: Arc<Mutex<HashSet<Uuid>>>,
    counts: Arc<Counts>,
    /// Asks the depth refresher to count again now (after a write).
    recount: Arc<tokio::sync::Notify>,
    scratch: Arc<Archive>,
    takeovers: Arc<AtomicU64>,
    background: Vec<tokio::task::AbortHandle>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        for t in &self.background {
            t.abort();
        }
    }
}

impl PgStore {
    /// Connects (lazily: the database may come later), applies or checks the schema, and
    /// starts the lease renewal and the depth counts.
    pub async fn open(cfg: &PostgresConfig, options: PgOptions) -> anyhow::Result<PgStore> {
        let pool = schema::pool(cfg)?;
        if cfg.migrate {
            migrate(&pool).await?;
        } else {
            schema::check(&pool).await?;
        }
        Ok(PgStore::with_pool(pool, options)?)
    }

    /// A store on a pool whose database has the schema.
    pub fn with_pool(pool: PgPool, options: PgOptions) -> Result<PgStore, StoreError> {
        let scratch = Arc::new(Archive::open(options.scratch.join("spool"))?);
        let mut s = PgStore {
            pool,
            instance: Uuid::now_v7(),
            held: Default::default(),
            counts: Default::default(),
            recount: Default::default(),
            scratch,
            takeovers: Default::default(),
            background: Vec::new(),
            options,
        };
        s.background
            .push(tokio::spawn(s.renew_leases()).abort_handle());
        s.background
            .push(tokio::spawn(s.refresh_depths()).abort_handle());
        Ok(s)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn instance(&self) -> Uuid {
        self.instance
    }

    /// Jobs this instance took over from an instance whose lease ran out.
    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(Relaxed)
    }

    fn lease_ms(&self) -> i64 {
        self.options.lease.as_millis().min(i64::MAX as u128) as i64
    }

    /// Gives up this instance's leases at a clean stop (after the worker has stopped), so that
    /// its jobs are taken at once by the others, not after the lease.
    pub async fn release_leases(&self) -> Result<u64, StoreError> {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
        jobs::release_all(&self.pool, self.instance).await
    }

    fn renew_leases(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (pool, held, owner, lease_ms) = (
            self.pool.clone(),
            self.held.clone(),
            self.instance,
            self.lease_ms(),
        );
        async move {
            let every = Duration::from_millis((lease_ms / 3).max(100) as u64);
            loop {
                tokio::time::sleep(every).await;
                let ids: Vec<Uuid> = held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .copied()
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                if let Err(e) = jobs::renew(&pool, owner, lease_ms, &ids).await {
                    tracing::warn!(error = %e, jobs = ids.len(), "cannot renew job leases");
                }
            }
        }
    }

    /// Counts the queue, parked events, dead letters and the quarantine (every instance's)
    /// every second, and at once after a write of this instance.
    fn refresh_depths(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (pool, counts, recount) =
            (self.pool.clone(), self.counts.clone(), self.recount.clone());
        async move {
            loop {
                let row = sqlx::query(
                    "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM parked),
                            (SELECT count(*) FROM dead_letters), (SELECT count(*) FROM quarantine)",
                )
                .fetch_one(&pool)
                .await;
                if let Ok(r) = row {
                    counts.outbox.store(r.get(0), Relaxed);
                    counts.parked.store(r.get(1), Relaxed);
                    counts.dead_letters.store(r.get(2), Relaxed);
                    counts.quarantine.store(r.get(3), Relaxed);
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), recount.notified()).await;
            }
        }
    }

    fn wrote(&self) {
        self.recount.notify_one();
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool.begin().await.map_err(pg)
    }

    async fn record_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        sql: &str,
        id: Uuid,
    ) -> Result<Option<T>, StoreError> {
        let v: Option<serde_json::Value> = sqlx::query_scalar(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg)?;
        v.map(|v| parse(what, v)).transpose()
    }

    fn scratch_dir(&self) -> &Path {
        self.scratch.dir()
    }
}

/// Bodies larger than this are looked up as duplicates before their chunks are written.
const PRECHECK_OVER: usize = 64 * 1024;

#[async_trait]
impl Store for PgStore {
    async fn record(&self, new: NewEvent, payload: RawPayload) -> Result<Recorded, StoreError> {
        self.room()?;
        // A committed duplicate (a retry) of a large body need not write its chunks again. A
        // small one is found by the transaction's own check under the transaction's lock: a
        // lookup here too would cost every callback a round trip to save a retry a few rows.
        if payload.bytes.len() > PRECHECK_OVER {
            let dup: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM events WHERE dedup_key = $1")
                    .bind(&new.dedup_key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(pg)?;
            if let Some(event_id) = dup {
                return Ok(Recorded::Duplicate { event_id });
            }
        }
        let mut tx = self.begin().await?;
        let archive_id = Uuid::now_v7();
        payloads::write(&mut tx, archive_id, &payload).await?;
        let recorded = records::record_in(&mut tx, self.options.policy, new, archive_id).await?;
        match recorded {
            Recorded::Duplicate { .. } => tx.rollback().await.map_err(pg)?,
            Recorded::New(_) => {
                tx.commit().await.map_err(pg)?;
                self.wrote();
            }
        }
        Ok(recorded)
    }

    async fn quarantine(
        &self,
        q: NewQuarantine,
        payload: RawPayload,
    ) -> Result<QuarantineEntry, StoreError> {
        self.room()?;
        let existing = |dedup: String| async move {
            let v: Option<serde_json::Value> =
                sqlx::query_scalar("SELECT record FROM quarantine WHERE dedup_key = $1")
                    .bind(dedup)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(pg)?;
            v.map(|v| parse::<QuarantineEntry>("quarantine", v))
                .transpose()
        };
        if let Some(e) = existing(q.dedup_key.clone()).await? {
            return Ok(e);
        }
        let entry = QuarantineEntry {
            id: Uuid::now_v7(),
            vendor: q.vendor,
            surface: q.surface.to_string(),
            received_at: Utc::now(),
            reason: q.reason,
            archive_id: Uuid::now_v7(),
            caller: q.caller,
            dedup_key: q.dedup_key,
        };
        let mut tx = self.begin().await?;
        payloads::write(&mut tx, entry.archive_id, &payload).await?;
        if records::insert_quarantine(&mut tx, &entry).await? {
            tx.commit().await.map_err(pg)?;
            self.wrote();
            return Ok(entry);
        }
        // Quarantined meanwhile by another request: that entry is the one kept.
        tx.rollback().await.map_err(pg)?;
        existing(entry.dedup_key.clone())
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn register(&self, reg: Registration) -> Result<Registered, StoreError> {
        self.room()?;
        let policy = self.options.policy;
        let (vendor, txid) = (reg.vendor, reg.transaction_id.clone());
        let mut tx = self.begin().await?;
        records::lock_transaction(&mut tx, vendor, &txid).await?;
        let created: bool = sqlx::query_scalar(
            "INSERT INTO registrations (vendor, transaction_id, record) VALUES ($1, $2, $3)
             ON CONFLICT (vendor, transaction_id) DO UPDATE SET record = EXCLUDED.record
             RETURNING (xmax = 0)",
        )
        .bind(vendor.as_str())
        .bind(txid.as_str())
        .bind(sqlx::types::Json(&reg))
        .fetch_one(&mut *tx)
        .await
        .map_err(pg)?;
        sqlx::query("DELETE FROM withdrawals WHERE vendor = $1 AND transaction_id = $2")
            .bind(vendor.as_str())
            .bind(txid.as_str())
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
        let parked: Vec<Uuid> = sqlx::query_scalar(
            "DELETE FROM parked WHERE vendor = $1 AND transaction_id = $2 RETURNING event_id",
        )
        .bind(vendor.as_str())
        .bind(txid.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(pg)?;
        let now = Utc::now();
        for id in &parked {
            let event = records::load_event(&mut tx, *id).await?;
            let (relay, task) = rules::release(policy, &event);
            records::move_event(&mut tx, event, (relay, Some(task)), now).await?;
        }
        tx.commit().await.map_err(pg)?;
        self.wrote();
        Ok(Registered {
            created,
            released: parked.len(),
        })
    }

    async fn registration(
        &self,
        vendor: Vendor,
        tx: &TransactionId,
    ) -> Result<Option<Registration>, StoreError> {
        let v: Option<serde_json::Value> = sqlx::query_scalar(
            "SELECT record FROM registrations WHERE vendor = $1 AND transaction_id = $2",
        )
        .bind(vendor.as_str())
        .bind(tx.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(pg)?;
        v.map(|v| parse("registration", v)).transpose()
    }

    async fn unregister(&self, vendor: Vendor, txid: &TransactionId) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        records::lock_transaction(&mut tx, vendor, txid).await?;
        let existed =
            sqlx::query("DELETE FROM registrations WHERE vendor = $1 AND transaction_id = $2")
                .bind(vendor.as_str())
                .bind(txid.as_str())
                .execute(&mut *tx)
                .await
                .map_err(pg)?
                .rows_affected()
                > 0;
        if existed {
            sqlx::query(
                "INSERT INTO withdrawals (vendor, transaction_id, at) VALUES ($1, $2, now())
                 ON CONFLICT (vendor, transaction_id) DO UPDATE SET at = now()",
            )
            .bind(vendor.as_str())
            .bind(txid.as_str())
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(existed)
    }

    async fn transaction_state(
        &self,
        vendor: Vendor,
        txid: &TransactionId,
    ) -> Result<TransactionState, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(pg)?;
        let withdrawn: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM withdrawals WHERE vendor = $1 AND transaction_id = $2)",
        )
        .bind(vendor.as_str())
        .bind(txid.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(pg)?;
        let terminal = records::terminal(&mut conn, vendor, txid).await?;
        drop(conn);
        Ok(TransactionState {
            registration: self.registration(vendor, txid).await?,
            withdrawn,
            terminal: terminal.map(|t| t.outcome),
        })
    }

    async fn due_except(
        &self,
        party: Party,
        now: DateTime<Utc>,
        limit: usize,
        skip: &HashSet<Uuid>,
    ) -> Result<Vec<Job>, StoreError> {
        let skip: Vec<Uuid> = skip.iter().copied().collect();
        let claimed = jobs::claim(
            &self.pool,
            self.instance,
            self.lease_ms(),
            party,
            now,
            limit,
            &skip,
        )
        .await?;
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        Ok(claimed
            .into_iter()
            .map(|c| {
                held.insert(c.job.id);
                if let Some(from) = c.taken_from {
                    self.takeovers.fetch_add(1, Relaxed);
                    tracing::warn!(
                        job_id = %c.job.id,
                        event_id = c.job.task.event_id().map(tracing::field::display),
                        party = party.as_str(),
                        from = %from,
                        "job taken over: its instance's lease ran out (it may run a second time)"
                    );
                }
                c.job
            })
            .collect())
    }

    async fn next_due(&self, party: Party) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query_scalar("SELECT min(due) FROM jobs WHERE party = $1")
            .bind(party.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(pg)
    }

    async fn complete(&self, job: &Job, mut result: JobResult) -> Result<(), StoreError> {
        let records = match &mut result {
            JobResult::Done(done) => std::mem::take(&mut done.record),
            _ => Vec::new(),
        };
        let mut tx = self.begin().await?;
        let applied = jobs::complete_in(
            &mut tx,
            self.instance,
            self.options.policy,
            job,
            result,
            records,
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job.id);
        if !applied {
            tracing::debug!(job_id = %job.id, "job result not applied: no longer held by this instance");
        }
        self.wrote();
        Ok(())
    }

    async fn enqueue(&self, job: Job, once: Option<String>) -> Result<Enqueued, StoreError> {
        self.room()?;
        let mut tx = self.begin().await?;
        if let Some(k) = &once {
            let fresh = sqlx::query(
                "INSERT INTO onces (key, job_id, at) VALUES ($1, $2, now())
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(k)
            .bind(job.id)
            .execute(&mut *tx)
            .await
            .map_err(pg)?
            .rows_affected()
                == 1;
            if !fresh {
                let id: Uuid = sqlx::query_scalar("SELECT job_id FROM onces WHERE key = $1")
                    .bind(k)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(pg)?;
                tx.rollback().await.map_err(pg)?;
                return Ok(Enqueued::Existing(id));
            }
        }
        jobs::queue(&mut tx, &job).await?;
        tx.commit().await.map_err(pg)?;
        self.wrote();
        Ok(Enqueued::New(job.id))
    }

    async fn replay(&self, id: Uuid) -> Result<Job, StoreError> {
        let mut tx = self.begin().await?;
        let v: Option<serde_json::Value> =
            sqlx::query_scalar("DELETE FROM dead_letters WHERE id = $1 RETURNING record")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(pg)?;
        let dl: DeadLetter = parse("dead letter", v.ok_or(StoreError::NotFound)?)?;
        let job = dl.replayed(Utc::now());
        if let Some(event_id) = job.task.event_id() {
            let event = records::load_event(&mut tx, event_id).await?;
            records::lock_transaction(&mut tx, event.vendor, &event.transaction_id).await?;
            let mut event = records::load_event(&mut tx, event_id).await?;
            event.relay = rules::replayed(&job.task);
            records::save_event(&mut tx, &event).await?;
        }
        jobs::queue(&mut tx, &job).await?;
        tx.commit().await.map_err(pg)?;
        self.wrote();
        Ok(job)
    }

    async fn barrier(&self) -> Result<(), StoreError> {
        // A reader sees only committed (durable) rows.
        Ok(())
    }

    async fn expire_parked(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        let policy = self.options.policy;
        let mut n = 0;
        loop {
            let mut tx = self.begin().await?;
            // Row locks, not the transaction's lock: a registration taking these events waits
            // for this write, then finds them gone (dead-lettered), or took them first.
            let ids: Vec<Uuid> = sqlx::query_scalar(
                "DELETE FROM parked WHERE event_id IN (
                     SELECT event_id FROM parked WHERE since < $1 ORDER BY since LIMIT 500
                     FOR UPDATE SKIP LOCKED)
                 RETURNING event_id",
            )
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await
            .map_err(pg)?;
            let now = Utc::now();
            for id in &ids {
                // What it waited for is what a replay tries again.
                let event = records::load_event(&mut tx, *id).await?;
                let (_, task) = rules::release(policy, &event);
                let reason = "geen registratie van de transactie ontvangen".to_string();
                jobs::dead_letter(&mut tx, Job::new(task, now), 0, reason, None, None).await?;
            }
            tx.commit().await.map_err(pg)?;
            n += ids.len();
            if ids.len() < 500 {
                break;
            }
        }
        if n > 0 {
            self.wrote();
        }
        Ok(n)
    }

    async fn purge(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        let n = purge::purge(&self.pool, cutoff).await?;
        // Spool files left by a crash of this instance (claimed ones are in use).
        let scratch = self.scratch.clone();
        tokio::task::spawn_blocking(move || {
            scratch.sweep_orphans(|_| false, super::archive::ORPHAN_AGE)
        })
        .await
        .map_err(|_| StoreError::Closed)?;
        self.wrote();
        Ok(n)
    }

    async fn probe(&self) -> Result<(), StoreError> {
        self.room()?;
        sqlx::query(
            "INSERT INTO probes (instance, at) VALUES ($1, now())
             ON CONFLICT (instance) DO UPDATE SET at = now()",
        )
        .bind(self.instance)
        .execute(&self.pool)
        .await
        .map_err(pg)?;
        Ok(())
    }

    fn room(&self) -> Result<(), StoreError> {
        super::spool::check_room(self.scratch_dir(), self.options.min_free_bytes)
    }

    fn spooler(&self) -> Option<Spooler> {
        Some(Spooler::new(
            self.scratch.clone(),
            self.options.min_free_bytes,
        ))
    }

    async fn event(&self, id: Uuid) -> Result<Option<SigningEvent>, StoreError> {
        self.record_json("event", "SELECT record FROM events WHERE id = $1", id)
            .await
    }

    async fn events(&self, q: &EventQuery) -> Result<Vec<SigningEvent>, StoreError> {
        let limit = q.limit.unwrap_or(100).clamp(1, 1000) as i64;
        let mut b = sqlx::QueryBuilder::new("SELECT record FROM events WHERE true");
        if let Some(v) = q.vendor {
            b.push(" AND vendor = ").push_bind(v.as_str());
        }
        if let Some(t) = &q.transaction_id {
            b.push(" AND transaction_id = ")
                .push_bind(t.as_str().to_string());
        }
        if let Some(s) = q.state {
            b.push(" AND state = ").push_bind(s.label());
        }
        if let Some(a) = q.after {
            b.push(" AND id > ").push_bind(a);
        }
        b.push(" ORDER BY id LIMIT ").push_bind(limit);
        let rows: Vec<serde_json::Value> = b
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await
            .map_err(pg)?;
        rows.into_iter().map(|v| parse("event", v)).collect()
    }

    async fn payload(&self, archive_id: Uuid) -> Result<Option<RawPayload>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(pg)?;
        payloads::read(&mut conn, self.scratch_dir(), archive_id).await
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let rows: Vec<serde_json::Value> =
            sqlx::query_scalar("SELECT record FROM dead_letters ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(pg)?;
        rows.into_iter().map(|v| parse("dead letter", v)).collect()
    }

    async fn quarantined(&self) -> Result<Vec<QuarantineEntry>, StoreError> {
        let rows: Vec<serde_json::Value> =
            sqlx::query_scalar("SELECT record FROM quarantine ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(pg)?;
        rows.into_iter().map(|v| parse("quarantine", v)).collect()
    }

    async fn quarantine_entry(&self, id: Uuid) -> Result<Option<QuarantineEntry>, StoreError> {
        self.record_json(
            "quarantine",
            "SELECT record FROM quarantine WHERE id = $1",
            id,
        )
        .await
    }

    fn depths(&self) -> Depths {
        self.counts.depths()
    }

    fn needs_restart(&self) -> bool {
        // A failed commit is rolled back: nothing uncommitted is ever visible, so the store
        // goes on once the database answers again.
        false
    }
}

#[cfg(test)]
mod tests;
