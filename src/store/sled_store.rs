//! The embedded store: sled 0.34, one tree, one writer thread with group commit. What a write
//! means for an event is decided by `crate::rules`; this file reads the facts and writes.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::archive::{Archive, ORPHAN_AGE};
use super::keys;
use super::spool::{Spooled, Spooler};
use super::writer::{CommitObserver, Counts, Staging, Writer};
use super::{
    Depths, Enqueued, EventQuery, NewEvent, NewQuarantine, QuarantineEntry, RawPayload, Recorded,
    Registered, Store, StoreError, TransactionState, STANDING,
};
use crate::event::{RelayState, SigningEvent, TransactionId, Vendor};
use crate::jobs::{DeadLetter, Job, JobResult, Party, Task};
use crate::registry::Registration;
use crate::rules::{self, Policy, RecordFacts, Terminal, TerminalOutcome};

#[path = "sled_copy.rs"]
mod copy;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub policy: Policy,
    pub max_group: usize,
    /// New callbacks and registrations are refused below this much free disk space.
    pub min_free_bytes: u64,
    /// sled's page cache (its default, 1 GiB, would grow the process with every callback).
    pub cache_bytes: u64,
    /// How long a job result waits to share another write's commit.
    pub lazy_window: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            max_group: 1024,
            min_free_bytes: 0,
            cache_bytes: 16 * 1024 * 1024,
            lazy_window: super::writer::LAZY_WINDOW,
        }
    }
}

pub struct SledStore {
    tree: sled::Tree,
    writer: Writer,
    archive: Arc<Archive>,
    counts: Arc<Counts>,
    options: StoreOptions,
    path: PathBuf,
    events_read: std::sync::atomic::AtomicU64,
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("store records serialize")
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn uuid_at(b: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(b).map_err(|_| StoreError::Corrupt("event id".into()))
}

/// What keeps a payload's file from the orphan sweep while it is recorded.
enum PayloadClaim {
    New(super::archive::Claim),
    Spooled(Arc<Spooled>),
}

impl PayloadClaim {
    fn id(&self) -> Uuid {
        match self {
            PayloadClaim::New(c) => c.id,
            PayloadClaim::Spooled(s) => s.id(),
        }
    }
}

/// An outbox entry of older stores, which queued NRC deliveries only.
#[derive(Deserialize)]
struct LegacyOutboxItem {
    event_id: Uuid,
    due: DateTime<Utc>,
    attempts: u32,
    first_queued_at: DateTime<Utc>,
    #[serde(default)]
    last_error: Option<String>,
}

/// A dead letter of older stores: always an NRC delivery.
#[derive(Deserialize)]
struct LegacyDeadLetter {
    event_id: Uuid,
    vendor: Vendor,
    transaction_id: TransactionId,
    at: DateTime<Utc>,
    reason: String,
    attempts: u32,
    nrc_status: Option<u16>,
    nrc_body: Option<String>,
}

fn parse_dead_letter(v: &[u8]) -> Result<DeadLetter, StoreError> {
    if let Ok(d) = serde_json::from_slice::<DeadLetter>(v) {
        return Ok(d);
    }
    let l: LegacyDeadLetter = parse("dead letter", v)?;
    Ok(DeadLetter {
        job: Job {
            id: l.event_id,
            task: Task::Notify {
                event_id: l.event_id,
            },
            due: l.at,
            attempts: l.attempts,
            first_queued_at: l.at,
            last_error: None,
        },
        event_id: Some(l.event_id),
        vendor: Some(l.vendor),
        transaction_id: Some(l.transaction_id),
        at: l.at,
        reason: l.reason,
        attempts: l.attempts,
        status: l.nrc_status,
        body: l.nrc_body,
    })
}

impl SledStore {
    /// Opens (or creates) the store at `path`. Fails with `Locked` when another process has it.
    pub fn open(
        path: &Path,
        options: StoreOptions,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Result<(SledStore, std::thread::JoinHandle<()>), StoreError> {
        std::fs::create_dir_all(path)?;
        let db = sled::Config::new()
            .path(path.join("sled"))
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(options.cache_bytes)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked(path.display().to_string())
                }
                sled::Error::Io(io) if io.to_string().contains("lock") => {
                    StoreError::Locked(path.display().to_string())
                }
                other => StoreError::from(other),
            })?;
        let tree = db.open_tree("signrelay")?;
        upgrade(&tree)?;
        let db_file = File::open(path.join("sled").join("db"))?;
        let archive = Arc::new(Archive::open(path.join("payloads"))?);
        let counts = Arc::new(Counts::default());
        let count = |p: &[u8]| tree.scan_prefix(p).keys().count() as i64;
        counts.outbox.store(count(keys::JOB), Relaxed);
        counts.parked.store(count(keys::PARKED), Relaxed);
        counts.dead_letters.store(count(keys::DEAD), Relaxed);
        counts.quarantine.store(count(keys::QUARANTINE), Relaxed);
        let (writer, handle) = Writer::start(
            db,
            tree.clone(),
            db_file,
            options.max_group,
            options.lazy_window,
            counts.clone(),
            observer,
        );
        Ok((
            SledStore {
                tree,
                writer,
                archive,
                counts,
                options,
                path: path.to_path_buf(),
                events_read: Default::default(),
            },
            handle,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Purges registrations (personal data: the owner's and signers' names and e-mail
    /// addresses) once they are no longer needed: their transaction's terminal outcome was
    /// delivered before `cutoff`, or they were withdrawn before `cutoff` (the tombstone goes).
    /// Decided inside the writer, so a registration renewed meanwhile stays.
    async fn purge_registrations(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut candidates = Vec::new();
        for kv in self.tree.scan_prefix(keys::REGISTRATION) {
            let (k, v) = kv?;
            let reg: Registration = parse("registration", &v)?;
            if self
                .tree
                .contains_key(keys::terminal(reg.vendor, &reg.transaction_id))?
            {
                candidates.push((k.to_vec(), Some(reg)));
            }
        }
        for kv in self.tree.scan_prefix(keys::WITHDRAWN) {
            let (k, v) = kv?;
            if keys::from_ms(&v).is_some_and(|at| at < cutoff) {
                candidates.push((k.to_vec(), None));
            }
        }
        if candidates.is_empty() {
            return Ok(0);
        }
        self.writer
            .write(move |s| {
                let mut n = 0;
                for (key, reg) in candidates {
                    let over = match reg {
                        Some(reg) => registration_over(s, reg.vendor, &reg.transaction_id, cutoff)?,
                        None => s
                            .get(&key)?
                            .is_some_and(|v| keys::from_ms(&v).is_some_and(|at| at < cutoff)),
                    };
                    if over {
                        s.remove(key);
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await
    }

    /// The events of one transaction, from the index by transaction (oldest first).
    fn events_of_transaction(
        &self,
        q: &EventQuery,
        tx: &TransactionId,
        limit: usize,
    ) -> Result<Vec<SigningEvent>, StoreError> {
        let vendors = match q.vendor {
            Some(v) => vec![v],
            None => Vendor::ALL.to_vec(),
        };
        let mut ids = Vec::new();
        for v in vendors {
            for k in self
                .tree
                .scan_prefix(keys::by_transaction_prefix(v, tx))
                .keys()
            {
                let k = k?;
                ids.push(
                    keys::parked_event(&k).ok_or_else(|| StoreError::Corrupt("index".into()))?,
                );
            }
        }
        // UUIDv7: in time order, as the scan of every event returns them.
        ids.sort();
        let mut out = Vec::new();
        for id in ids.into_iter().filter(|id| q.after.is_none_or(|a| *id > a)) {
            let Some(v) = self.tree.get(keys::event(id))? else {
                continue;
            };
            let e: SigningEvent = parse("event", &v)?;
            self.events_read.fetch_add(1, Relaxed);
            if q.state.is_none_or(|s| s.matches(&e.relay)) {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Event records read by `events` so far: a query by transaction reads only that
    /// transaction's events (its tests count them).
    pub fn events_read(&self) -> u64 {
        self.events_read.load(Relaxed)
    }

    /// Removes payload files that no record refers to and that are older than `age`, except
    /// those whose batch is on its way (claimed); returns how many.
    pub async fn sweep_orphans(&self, age: std::time::Duration) -> Result<usize, StoreError> {
        let tree = self.tree.clone();
        let archive = self.archive.clone();
        tokio::task::spawn_blocking(move || {
            archive.sweep_orphans(
                |id| tree.contains_key(keys::payload(id)).unwrap_or(true),
                age,
            )
        })
        .await
        .map_err(|_| StoreError::Closed)
    }

    /// Fails once a group commit has failed: what the tree holds may not be on disk.
    fn usable(&self) -> Result<(), StoreError> {
        if self.writer.failed() {
            Err(super::writer::poisoned())
        } else {
            Ok(())
        }
    }

    /// The archive id of a payload about to be recorded, claimed until the returned handle
    /// is dropped: a spooled body's own (its file becomes the payload's), or a new one.
    fn claim(&self, payload: &RawPayload) -> PayloadClaim {
        match &payload.spooled {
            Some(s) => PayloadClaim::Spooled(s.clone()),
            None => PayloadClaim::New(self.archive.claim()),
        }
    }

    /// Encodes a payload for the archive; large ones become fsynced files, written off the
    /// async runtime. Small ones are a copy, not worth a thread hand-off.
    async fn encode_payload(&self, id: Uuid, p: RawPayload) -> Result<Vec<u8>, StoreError> {
        if !Archive::goes_to_file(&p) {
            return self.archive.encode(id, &p);
        }
        let archive = self.archive.clone();
        tokio::task::spawn_blocking(move || archive.encode(id, &p))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.usable()?;
        match self.tree.get(key)? {
            Some(v) => Ok(Some(parse(what, &v)?)),
            None => Ok(None),
        }
    }
}

/// Brings a store written by an earlier build up to date. Not flushed: if this is lost, the
/// next open does it again.
fn upgrade(tree: &sled::Tree) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    // An outbox index by event that nothing reads now.
    for k in tree.scan_prefix(keys::LEGACY_OUTBOX_BY_EVENT).keys() {
        batch.remove(k?);
    }
    // The outbox (NRC deliveries) becomes the NRC's lane of the job queue.
    for kv in tree.scan_prefix(keys::LEGACY_OUTBOX) {
        let (k, v) = kv?;
        let o: LegacyOutboxItem = parse("outbox", &v)?;
        let job = Job {
            id: o.event_id,
            task: Task::Notify {
                event_id: o.event_id,
            },
            due: o.due,
            attempts: o.attempts,
            first_queued_at: o.first_queued_at,
            last_error: o.last_error,
        };
        batch.insert(keys::job(Party::Nrc, job.due, job.id), json(&job));
        batch.remove(k);
    }
    // Events by transaction (stores written before the index).
    if !tree.contains_key(keys::INDEXED_BY_TRANSACTION)? {
        for kv in tree.scan_prefix(keys::EVENT) {
            let e: SigningEvent = parse("event", &kv?.1)?;
            batch.insert(
                keys::by_transaction(e.vendor, &e.transaction_id, e.id),
                vec![],
            );
        }
        batch.insert(keys::INDEXED_BY_TRANSACTION, vec![]);
    }
    tree.apply_batch(batch)?;
    Ok(())
}

/// Whether a registration has served its purpose by `cutoff`: its transaction's terminal
/// outcome was delivered before then (or its event, final, is purged already).
fn registration_over(
    s: &Staging<'_>,
    vendor: Vendor,
    tx: &TransactionId,
    cutoff: DateTime<Utc>,
) -> Result<bool, StoreError> {
    if !s.contains(&keys::registration(vendor, tx))? {
        return Ok(false);
    }
    let Some(t) = s.get(&keys::terminal(vendor, tx))? else {
        return Ok(false);
    };
    let t = keys::parse_terminal(&t).ok_or_else(|| StoreError::Corrupt("terminal".into()))?;
    Ok(match load_event(s, t.event_id) {
        Ok(e) => matches!(e.relay, RelayState::Delivered { at, .. } if at < cutoff),
        // Only the purge removes events, and only finished ones.
        Err(StoreError::NotFound) => true,
        Err(e) => return Err(e),
    })
}

fn queue(s: &mut Staging<'_>, job: &Job) {
    s.insert(keys::job(job.party(), job.due, job.id), json(job));
    s.deltas.outbox += 1;
}

/// Takes a job out of the queue; returns it if it was still there. The worker knows the due
/// time of what it ran, so no index by id is kept (fewer writes per callback).
fn unqueue(s: &mut Staging<'_>, job: &Job) -> Result<Option<Job>, StoreError> {
    let key = keys::job(job.party(), job.due, job.id);
    let Some(v) = s.get(&key)? else {
        return Ok(None);
    };
    let current = parse::<Job>("job", &v)?;
    s.remove(key);
    s.deltas.outbox -= 1;
    Ok(Some(current))
}

fn load_event(s: &Staging<'_>, id: Uuid) -> Result<SigningEvent, StoreError> {
    let v = s.get(&keys::event(id))?.ok_or(StoreError::NotFound)?;
    parse("event", &v)
}

fn save_event(s: &mut Staging<'_>, e: &SigningEvent) {
    s.insert(keys::event(e.id), json(e));
}

fn registered(s: &Staging<'_>, e: &SigningEvent) -> Result<bool, StoreError> {
    s.contains(&keys::registration(e.vendor, &e.transaction_id))
}

/// Writes an event's new state, as the rules decided it: parked, or its next job queued.
fn move_event(
    s: &mut Staging<'_>,
    mut event: SigningEvent,
    (relay, next): (RelayState, Option<Task>),
    now: DateTime<Utc>,
) -> SigningEvent {
    if relay == RelayState::Parked {
        s.insert(
            keys::parked(event.vendor, &event.transaction_id, event.id),
            keys::ms(now).to_vec(),
        );
        s.deltas.parked += 1;
    }
    if let Some(task) = next {
        queue(s, &Job::new(task, now));
    }
    event.relay = relay;
    save_event(s, &event);
    event
}

/// Records one callback (its payload already encoded) inside a writer job.
fn record_in(
    s: &mut Staging<'_>,
    policy: Policy,
    new: NewEvent,
    archive_id: Uuid,
    encoded: Vec<u8>,
) -> Result<Recorded, StoreError> {
    let dkey = keys::delivery(&new.dedup_key);
    if let Some(id) = s.get(&dkey)? {
        return Ok(Recorded::Duplicate {
            event_id: uuid_at(&id)?,
        });
    }
    let id = Uuid::now_v7();
    let now = Utc::now();
    let tkey = keys::terminal(new.vendor, &new.transaction_id);
    let facts = RecordFacts {
        terminal: match s.get(&tkey)? {
            Some(v) => Some(
                keys::parse_terminal(&v).ok_or_else(|| StoreError::Corrupt("terminal".into()))?,
            ),
            None => None,
        },
        registered: s.contains(&keys::registration(new.vendor, &new.transaction_id))?,
    };
    let plan = rules::record(policy, id, &new, facts);
    if plan.claims_terminal {
        let outcome = TerminalOutcome::of(&new.outcome).expect("a terminal outcome claims");
        s.insert(
            tkey,
            keys::terminal_value(Terminal {
                event_id: id,
                outcome,
            }),
        );
    }
    let event = super::new_record(new, id, archive_id, now);
    s.insert(dkey, id.as_bytes().to_vec());
    s.insert(keys::payload(archive_id), encoded);
    s.insert(
        keys::by_transaction(event.vendor, &event.transaction_id, id),
        Vec::new(),
    );
    let saved = move_event(s, event, (plan.relay, plan.job), now);
    Ok(Recorded::New(Box::new(saved)))
}

/// Dead-letters `job` with the party's answer; its event (if any) shows it.
fn dead_letter(
    s: &mut Staging<'_>,
    job: Job,
    attempts: u32,
    reason: String,
    status: Option<u16>,
    body: Option<String>,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let event = match job.task.event_id() {
        Some(id) => match load_event(s, id) {
            Ok(e) => Some(e),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let dl = super::dead_letter_of(
        job,
        event.as_ref(),
        now,
        attempts,
        reason.clone(),
        status,
        body,
    );
    s.insert(keys::dead(dl.job.id), json(&dl));
    s.deltas.dead_letters += 1;
    if let Some(mut event) = event {
        event.relay = RelayState::DeadLettered { at: now, reason };
        save_event(s, &event);
    }
    Ok(())
}

/// The vendor contradicted `event`: not relayed, kept in the quarantine with the reason (the
/// same archived payload), and the transaction's terminal outcome open again if it was this.
/// The event's delivery key stays: a redelivery of the same callback is absorbed.
fn contradict(
    s: &mut Staging<'_>,
    mut event: SigningEvent,
    reason: String,
) -> Result<(), StoreError> {
    let tkey = keys::terminal(event.vendor, &event.transaction_id);
    let terminal = s.get(&tkey)?.and_then(|v| keys::parse_terminal(&v));
    let (relay, release) = rules::contradicted(&event, terminal);
    if release {
        s.remove(tkey);
    }
    let entry = QuarantineEntry::contradicted(&event, reason);
    s.insert(keys::quarantine(entry.id), json(&entry));
    s.deltas.quarantine += 1;
    event.relay = relay;
    save_event(s, &event);
    Ok(())
}

/// Applies a job's result inside a writer job (payloads of recorded callbacks encoded).
fn complete_in(
    s: &mut Staging<'_>,
    policy: Policy,
    job: &Job,
    result: JobResult,
    records: Vec<(NewEvent, Uuid, Vec<u8>)>,
) -> Result<(), StoreError> {
    // Replayed or completed meanwhile: nothing to do.
    let Some(current) = unqueue(s, job)? else {
        return Ok(());
    };
    let now = Utc::now();
    let attempts = current.attempts + 1;
    let event = match current.task.event_id() {
        Some(id) => match load_event(s, id) {
            Ok(e) => Some(e),
            // Purged by an operator's retention settings while queued: the job still ends.
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    match result {
        JobResult::Done(done) => {
            for (new, archive_id, encoded) in records {
                record_in(s, policy, new, archive_id, encoded)?;
            }
            for task in done.then {
                queue(s, &Job::new(task, now));
            }
            if let Some(again) = done.again {
                // A standing job or a step that goes in turns: queued again, its data updated.
                queue(s, &current.next_turn(again));
                return Ok(());
            }
            if let Some(event) = event {
                let reg = registered(s, &event)?;
                let next = rules::advance(policy, &event, current.task.step(), reg, attempts, now);
                move_event(s, event, next, now);
            }
        }
        JobResult::Retry { due, error } => queue(
            s,
            &Job {
                due,
                attempts,
                last_error: Some(error),
                ..current
            },
        ),
        JobResult::DeadLetter {
            reason,
            status,
            body,
        } => dead_letter(s, current, attempts, reason, status, body)?,
        JobResult::Park => match event {
            Some(event) => {
                let reg = registered(s, &event)?;
                let next = rules::park(policy, &event, reg);
                move_event(s, event, next, now);
            }
            None => dead_letter(
                s,
                current,
                attempts,
                "geen registratie van de transactie".into(),
                None,
                None,
            )?,
        },
        JobResult::Contradicted { reason } => {
            if let Some(event) = event {
                contradict(s, event, reason)?;
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Store for SledStore {
    async fn record(&self, new: NewEvent, payload: RawPayload) -> Result<Recorded, StoreError> {
        self.usable()?;
        self.room()?;
        let large = Archive::goes_to_file(&payload);
        // A retried large delivery need not write its file again. A small one is checked
        // inside the writer only: looking it up here too cost every callback a second read
        // (from disk once the store outgrows the page cache) to save a retry a few µs. The
        // tree shows a group as soon as it is applied, before its flush: wait for the commit
        // in progress (an empty job completes after it) so that "duplicate" is never said of
        // an undurable record.
        if large {
            if let Some(id) = self.tree.get(keys::delivery(&new.dedup_key))? {
                let event_id = uuid_at(&id)?;
                self.writer.write(|_| Ok(())).await?;
                return Ok(Recorded::Duplicate { event_id });
            }
        }
        // Claimed: the orphan sweep leaves its file alone until the batch is in.
        let claim = self.claim(&payload);
        let archive_id = claim.id();
        let encoded = self.encode_payload(archive_id, payload).await?;
        let policy = self.options.policy;
        let recorded = self
            .writer
            .write(move |s| record_in(s, policy, new, archive_id, encoded))
            .await;
        if large && matches!(recorded, Ok(Recorded::Duplicate { .. })) {
            // Nothing refers to the file written for it.
            self.archive.remove_file(archive_id);
        }
        drop(claim);
        recorded
    }

    async fn quarantine(
        &self,
        q: NewQuarantine,
        payload: RawPayload,
    ) -> Result<QuarantineEntry, StoreError> {
        self.usable()?;
        self.room()?;
        let dkey = keys::delivery(&q.dedup_key);
        if let Some(id) = self.tree.get(&dkey)? {
            if let Some(q) = self.tree.get(keys::quarantine(uuid_at(&id)?))? {
                return parse("quarantine", &q);
            }
        }
        let claim = self.claim(&payload);
        let archive_id = claim.id();
        let encoded = self.encode_payload(archive_id, payload).await?;
        let entry = QuarantineEntry {
            id: Uuid::now_v7(),
            vendor: q.vendor,
            surface: q.surface.to_string(),
            received_at: Utc::now(),
            reason: q.reason,
            archive_id,
            caller: q.caller,
            dedup_key: q.dedup_key,
        };
        let kept = self
            .writer
            .write(move |s| {
                if let Some(id) = s.get(&dkey)? {
                    if let Some(q) = s.get(&keys::quarantine(uuid_at(&id)?))? {
                        return parse("quarantine", &q);
                    }
                }
                s.insert(dkey, entry.id.as_bytes().to_vec());
                s.insert(keys::payload(archive_id), encoded);
                s.insert(keys::quarantine(entry.id), json(&entry));
                s.deltas.quarantine += 1;
                Ok(entry)
            })
            .await;
        if matches!(&kept, Ok(q) if q.archive_id != archive_id) {
            // Quarantined before: nothing refers to what was written for this one.
            self.archive.remove_file(archive_id);
        }
        drop(claim);
        kept
    }

    async fn register(&self, reg: Registration) -> Result<Registered, StoreError> {
        self.room()?;
        let policy = self.options.policy;
        self.writer
            .write(move |s| {
                let rkey = keys::registration(reg.vendor, &reg.transaction_id);
                let created = !s.contains(&rkey)?;
                s.insert(rkey, json(&reg));
                s.remove(keys::withdrawn(reg.vendor, &reg.transaction_id));
                let now = Utc::now();
                let parked =
                    s.scan_prefix(&keys::parked_prefix(reg.vendor, &reg.transaction_id))?;
                for (k, _) in &parked {
                    let id = keys::parked_event(k)
                        .ok_or_else(|| StoreError::Corrupt("parked key".into()))?;
                    s.remove(k.clone());
                    s.deltas.parked -= 1;
                    let event = load_event(s, id)?;
                    let (relay, task) = rules::release(policy, &event);
                    move_event(s, event, (relay, Some(task)), now);
                }
                Ok(Registered {
                    created,
                    released: parked.len(),
                })
            })
            .await
    }

    async fn registration(
        &self,
        vendor: Vendor,
        tx: &TransactionId,
    ) -> Result<Option<Registration>, StoreError> {
        self.get_json("registration", &keys::registration(vendor, tx))
    }

    async fn unregister(&self, vendor: Vendor, tx: &TransactionId) -> Result<bool, StoreError> {
        let key = keys::registration(vendor, tx);
        let tombstone = keys::withdrawn(vendor, tx);
        self.writer
            .write(move |s| {
                let existed = s.contains(&key)?;
                if existed {
                    s.remove(key);
                    s.insert(tombstone, keys::ms(Utc::now()).to_vec());
                }
                Ok(existed)
            })
            .await
    }

    async fn transaction_state(
        &self,
        vendor: Vendor,
        tx: &TransactionId,
    ) -> Result<TransactionState, StoreError> {
        self.usable()?;
        Ok(TransactionState {
            registration: self.registration(vendor, tx).await?,
            withdrawn: self.tree.contains_key(keys::withdrawn(vendor, tx))?,
            terminal: self
                .tree
                .get(keys::terminal(vendor, tx))?
                .and_then(|v| keys::parse_terminal(&v))
                .map(|t| t.outcome),
        })
    }

    async fn due_except(
        &self,
        party: Party,
        now: DateTime<Utc>,
        limit: usize,
        skip: &HashSet<Uuid>,
    ) -> Result<Vec<Job>, StoreError> {
        self.usable()?;
        let end = keys::job(party, now, Uuid::max());
        let mut out = Vec::new();
        for kv in self.tree.range(keys::lane(party)..=end) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            // The id is in the key: a job in flight is passed over unparsed.
            if keys::job_id(&k).is_some_and(|id| skip.contains(&id)) {
                continue;
            }
            out.push(parse("job", &v)?);
        }
        Ok(out)
    }

    async fn next_due(&self, party: Party) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.usable()?;
        match self.tree.scan_prefix(keys::lane(party)).next() {
            Some(kv) => Ok(keys::job_due(party, &kv?.0)),
            None => Ok(None),
        }
    }

    async fn complete(&self, job: &Job, mut result: JobResult) -> Result<(), StoreError> {
        let mut records = Vec::new();
        let mut claims = Vec::new();
        if let JobResult::Done(done) = &mut result {
            self.usable()?;
            for (new, payload) in done.record.drain(..) {
                let claim = self.claim(&payload);
                let encoded = self.encode_payload(claim.id(), payload).await?;
                records.push((new, claim.id(), encoded));
                claims.push(claim);
            }
        }
        let (job, policy) = (job.clone(), self.options.policy);
        // Lazy: until it is durable the worker keeps the job in flight, and a crash before
        // that runs it once more (at least once), so it need not cost a sync of its own.
        let completed = self
            .writer
            .write_lazy(move |s| complete_in(s, policy, &job, result, records))
            .await;
        drop(claims);
        completed
    }

    async fn enqueue(&self, job: Job, once: Option<String>) -> Result<Enqueued, StoreError> {
        self.usable()?;
        self.room()?;
        self.writer
            .write(move |s| {
                if let Some(k) = &once {
                    if let Some(v) = s.get(&keys::once(k))? {
                        return Ok(Enqueued::Existing(uuid_at(
                            v.get(..16).unwrap_or_default(),
                        )?));
                    }
                }
                queue(s, &job);
                if let Some(k) = once {
                    let mut v = job.id.as_bytes().to_vec();
                    v.extend_from_slice(&keys::ms(Utc::now()));
                    s.insert(keys::once(&k), v);
                }
                Ok(Enqueued::New(job.id))
            })
            .await
    }

    async fn replay(&self, id: Uuid) -> Result<Job, StoreError> {
        self.writer
            .write(move |s| {
                let Some(v) = s.get(&keys::dead(id))? else {
                    return Err(StoreError::NotFound);
                };
                let dl = parse_dead_letter(&v)?;
                s.remove(keys::dead(id));
                s.deltas.dead_letters -= 1;
                let job = dl.replayed(Utc::now());
                if let Some(event_id) = job.task.event_id() {
                    let mut event = load_event(s, event_id)?;
                    event.relay = rules::replayed(&job.task);
                    save_event(s, &event);
                }
                queue(s, &job);
                Ok(job)
            })
            .await
    }

    async fn barrier(&self) -> Result<(), StoreError> {
        self.writer.write_lazy(|_| Ok(())).await
    }

    async fn expire_parked(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        let policy = self.options.policy;
        self.writer
            .write(move |s| {
                let mut n = 0;
                let now = Utc::now();
                for (k, v) in s.scan_prefix(keys::PARKED)? {
                    let since = keys::from_ms(&v).unwrap_or(cutoff);
                    if since >= cutoff {
                        continue;
                    }
                    let id = keys::parked_event(&k)
                        .ok_or_else(|| StoreError::Corrupt("parked key".into()))?;
                    s.remove(k);
                    s.deltas.parked -= 1;
                    // What it waited for is what a replay tries again.
                    let (_, task) = rules::release(policy, &load_event(s, id)?);
                    let reason = "geen registratie van de transactie ontvangen".to_string();
                    dead_letter(s, Job::new(task, now), 0, reason, None, None)?;
                    n += 1;
                }
                Ok(n)
            })
            .await
    }

    async fn purge(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        let registrations = self.purge_registrations(cutoff).await?;
        // Events are keyed by UUIDv7, so they are in time order: stop at the first young one.
        let cutoff_ms = cutoff.timestamp_millis().max(0) as u64;
        let mut candidates = Vec::new();
        for kv in self.tree.scan_prefix(keys::EVENT) {
            let (k, v) = kv?;
            let id = uuid_at(&k[keys::EVENT.len()..])?;
            let (secs, nanos) = id.get_timestamp().map(|t| t.to_unix()).unwrap_or((0, 0));
            if secs * 1000 + u64::from(nanos / 1_000_000) >= cutoff_ms {
                break;
            }
            let e: SigningEvent = parse("event", &v)?;
            if e.relay.is_final() {
                candidates.push(e);
            }
        }
        let mut quarantined = Vec::new();
        for kv in self.tree.scan_prefix(keys::QUARANTINE) {
            let (_, v) = kv?;
            let q: QuarantineEntry = parse("quarantine", &v)?;
            if q.received_at < cutoff {
                quarantined.push(q);
            }
        }
        let mut onces = Vec::new();
        for kv in self.tree.scan_prefix(keys::ONCE) {
            let (k, v) = kv?;
            let standing = k[keys::ONCE.len()..].starts_with(STANDING.as_bytes());
            let at = v.get(16..).and_then(keys::from_ms);
            if !standing && at.is_some_and(|t| t < cutoff) {
                onces.push(k.to_vec());
            }
        }
        let n = candidates.len() + quarantined.len() + registrations;
        let archive = self.archive.clone();
        let files: Vec<Uuid> = candidates
            .iter()
            .map(|e| e.archive_id)
            .chain(quarantined.iter().map(|q| q.archive_id))
            .collect();
        for chunk in candidates.chunks(512) {
            let chunk = chunk.to_vec();
            self.writer
                .write(move |s| {
                    for e in chunk {
                        s.remove(keys::by_transaction(e.vendor, &e.transaction_id, e.id));
                        s.remove(keys::event(e.id));
                        s.remove(keys::payload(e.archive_id));
                        s.remove(keys::delivery(&e.dedup_key));
                    }
                    Ok(())
                })
                .await?;
        }
        if !quarantined.is_empty() || !onces.is_empty() {
            self.writer
                .write(move |s| {
                    for k in onces {
                        s.remove(k);
                    }
                    for q in quarantined {
                        s.remove(keys::delivery(&q.dedup_key));
                        s.remove(keys::quarantine(q.id));
                        s.remove(keys::payload(q.archive_id));
                        s.deltas.quarantine -= 1;
                    }
                    Ok(())
                })
                .await?;
        }
        for id in files {
            archive.remove_file(id);
        }
        // Orphans by their own safe age, never the retention's: a retention of 0 would take
        // a file whose batch is still on its way.
        self.sweep_orphans(ORPHAN_AGE).await?;
        Ok(n)
    }

    async fn probe(&self) -> Result<(), StoreError> {
        self.room()?;
        let archive = self.archive.clone();
        tokio::task::spawn_blocking(move || archive.probe())
            .await
            .map_err(|_| StoreError::Closed)??;
        self.writer
            .write(|s| {
                s.insert(keys::PROBE.to_vec(), keys::ms(Utc::now()).to_vec());
                Ok(())
            })
            .await
    }

    async fn event(&self, id: Uuid) -> Result<Option<SigningEvent>, StoreError> {
        self.get_json("event", &keys::event(id))
    }

    async fn events(&self, q: &EventQuery) -> Result<Vec<SigningEvent>, StoreError> {
        self.usable()?;
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        if let Some(tx) = &q.transaction_id {
            return self.events_of_transaction(q, tx, limit);
        }
        let start = match q.after {
            Some(after) => {
                let mut k = keys::event(after);
                k.push(0);
                k
            }
            None => keys::EVENT.to_vec(),
        };
        let mut out = Vec::new();
        for kv in self.tree.range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(keys::EVENT) {
                break;
            }
            let e: SigningEvent = parse("event", &v)?;
            self.events_read.fetch_add(1, Relaxed);
            let keep = q.vendor.is_none_or(|v| v == e.vendor)
                && q.transaction_id
                    .as_ref()
                    .is_none_or(|t| *t == e.transaction_id)
                && q.state.is_none_or(|s| s.matches(&e.relay));
            if keep {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn payload(&self, archive_id: Uuid) -> Result<Option<RawPayload>, StoreError> {
        self.usable()?;
        match self.tree.get(keys::payload(archive_id))? {
            Some(v) => {
                let archive = self.archive.clone();
                Ok(Some(
                    tokio::task::spawn_blocking(move || archive.decode(archive_id, &v))
                        .await
                        .map_err(|_| StoreError::Closed)??,
                ))
            }
            None => Ok(None),
        }
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.usable()?;
        self.tree
            .scan_prefix(keys::DEAD)
            .map(|kv| parse_dead_letter(&kv?.1))
            .collect()
    }

    async fn quarantined(&self) -> Result<Vec<QuarantineEntry>, StoreError> {
        self.usable()?;
        self.tree
            .scan_prefix(keys::QUARANTINE)
            .map(|kv| parse("quarantine", &kv?.1))
            .collect()
    }

    async fn quarantine_entry(&self, id: Uuid) -> Result<Option<QuarantineEntry>, StoreError> {
        self.get_json("quarantine", &keys::quarantine(id))
    }

    fn needs_restart(&self) -> bool {
        self.writer.failed()
    }

    fn room(&self) -> Result<(), StoreError> {
        super::spool::check_room(&self.path, self.options.min_free_bytes)
    }

    fn spooler(&self) -> Option<Spooler> {
        Some(Spooler::new(
            self.archive.clone(),
            self.options.min_free_bytes,
        ))
    }

    fn depths(&self) -> Depths {
        self.counts.depths()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{NotRelayed, Outcome, Step};
    use crate::jobs::Done;
    use crate::store::fixtures::{new_event, payload, recorded, registration};

    fn open(dir: &Path) -> SledStore {
        SledStore::open(dir, StoreOptions::default(), None)
            .unwrap()
            .0
    }

    /// The queued job of event `id`, as the worker reads it.
    async fn job_of(s: &SledStore, id: Uuid) -> Job {
        s.due(
            Party::Nrc,
            Utc::now() + chrono::Duration::days(3650),
            10_000,
        )
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.task.event_id() == Some(id))
        .expect("queued")
    }

    fn delivered() -> JobResult {
        JobResult::Done(Done::default())
    }

    const PENDING: RelayState = RelayState::Pending { step: Step::Notify };

    #[tokio::test]
    async fn delivery_dedup_returns_the_first_event() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let first = recorded(
            s.record(new_event("T1", Outcome::Completed, "k1"), payload(10))
                .await
                .unwrap(),
        );
        match s
            .record(new_event("T1", Outcome::Completed, "k1"), payload(10))
            .await
            .unwrap()
        {
            Recorded::Duplicate { event_id } => assert_eq!(event_id, first.id),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.events(&EventQuery::default()).await.unwrap().len(), 1);
    }

    /// The tree shows a group before its flush; a duplicate seen there is answered only once
    /// the writer has finished the commit it is in.
    #[tokio::test]
    async fn a_duplicate_is_answered_only_after_the_commit_in_progress() {
        // Small bodies are checked inside the writer, large ones before their file is written.
        for size in [10, super::super::archive::INLINE_MAX * 2] {
            let dir = tempfile::tempdir().unwrap();
            let s = Arc::new(open(dir.path()));
            s.record(new_event("T1", Outcome::Completed, "k1"), payload(size))
                .await
                .unwrap();
            let (hold, release_tx) = hold_writer(&s).await;
            let dup = {
                let s = s.clone();
                tokio::spawn(async move {
                    s.record(new_event("T1", Outcome::Completed, "k1"), payload(size))
                        .await
                })
            };
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert!(
                !dup.is_finished(),
                "answered while the writer was mid-commit ({size} bytes)"
            );
            release_tx.send(()).unwrap();
            hold.await.unwrap().unwrap();
            assert!(matches!(
                dup.await.unwrap().unwrap(),
                Recorded::Duplicate { .. }
            ));
        }
    }

    /// Holds the writer mid-group (as a slow flush would) until the sender is used; the task
    /// ends once the held job is done.
    async fn hold_writer(
        s: &SledStore,
    ) -> (
        tokio::task::JoinHandle<Result<(), StoreError>>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let writer = s.writer.clone();
        let hold = tokio::spawn(async move {
            writer
                .write(move |_| {
                    let _ = held_tx.send(());
                    let _ = release_rx.recv();
                    Ok(())
                })
                .await
        });
        held_rx.await.unwrap();
        (hold, release_tx)
    }

    /// Counts group commits and their sizes.
    #[derive(Default)]
    struct Commits(std::sync::Mutex<Vec<usize>>);

    impl CommitObserver for Commits {
        fn committed(&self, jobs: usize, _seconds: f64, _ok: bool) {
            self.0.lock().unwrap().push(jobs);
        }
    }

    /// A delivery result waits for the next callback's commit instead of syncing on its own,
    /// and on its own is still made durable within the lazy window.
    #[tokio::test]
    async fn delivery_results_share_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let commits = Arc::new(Commits::default());
        // A wide window, so that a slow test machine cannot close it before the callback.
        let options = StoreOptions {
            lazy_window: std::time::Duration::from_millis(500),
            ..StoreOptions::default()
        };
        let (s, writer) = SledStore::open(dir.path(), options, Some(commits.clone())).unwrap();
        s.register(registration("T1")).await.unwrap();
        s.register(registration("T2")).await.unwrap();
        let first = recorded(
            s.record(new_event("T1", Outcome::Completed, "k1"), payload(10))
                .await
                .unwrap(),
        );
        let first_job = job_of(&s, first.id).await;
        let before = commits.0.lock().unwrap().len();
        let (done, callback) = tokio::join!(s.complete(&first_job, delivered()), async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            s.record(new_event("T2", Outcome::Completed, "k2"), payload(10))
                .await
        });
        done.unwrap();
        let second = recorded(callback.unwrap());
        assert_eq!(
            commits.0.lock().unwrap()[before..],
            [2],
            "one commit for both"
        );
        assert!(matches!(
            s.event(first.id).await.unwrap().unwrap().relay,
            RelayState::Delivered { .. }
        ));
        // Alone, it is committed once the window has passed.
        let started = std::time::Instant::now();
        s.complete(&job_of(&s, second.id).await, delivered())
            .await
            .unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
        assert_eq!(commits.0.lock().unwrap()[before + 1..], [1]);
        drop(s);
        writer.join().unwrap();
        let s = open(dir.path());
        assert!(matches!(
            s.event(second.id).await.unwrap().unwrap().relay,
            RelayState::Delivered { .. }
        ));
    }

    #[tokio::test]
    async fn an_older_stores_outbox_index_is_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (s, writer) = SledStore::open(dir.path(), StoreOptions::default(), None).unwrap();
        let legacy = [keys::LEGACY_OUTBOX_BY_EVENT, Uuid::now_v7().as_bytes()].concat();
        s.writer
            .write(move |st| {
                st.insert(legacy, b"0".to_vec());
                Ok(())
            })
            .await
            .unwrap();
        drop(s);
        writer.join().unwrap();
        let s = open(dir.path());
        assert_eq!(s.tree.scan_prefix(keys::LEGACY_OUTBOX_BY_EVENT).count(), 0);
    }

    #[tokio::test]
    async fn second_terminal_outcome_is_flagged_not_queued() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.register(registration("T1")).await.unwrap();
        let a = recorded(
            s.record(new_event("T1", Outcome::Completed, "a"), payload(1))
                .await
                .unwrap(),
        );
        assert_eq!(a.relay, PENDING);
        let b = recorded(
            s.record(
                new_event("T1", Outcome::Aborted { reason: "x".into() }, "b"),
                payload(1),
            )
            .await
            .unwrap(),
        );
        assert_eq!(
            b.relay,
            RelayState::NotRelayed {
                why: NotRelayed::ConflictingOutcome
            }
        );
        let c = recorded(
            s.record(new_event("T1", Outcome::Completed, "c"), payload(1))
                .await
                .unwrap(),
        );
        assert_eq!(
            c.relay,
            RelayState::NotRelayed {
                why: NotRelayed::RepeatedOutcome
            }
        );
        assert_eq!(s.depths().outbox, 1);
    }

    #[tokio::test]
    async fn unregistered_events_park_and_registration_releases_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let e = recorded(
            s.record(new_event("T9", Outcome::Completed, "k"), payload(1))
                .await
                .unwrap(),
        );
        assert_eq!(e.relay, RelayState::Parked);
        assert_eq!(s.depths().parked, 1);
        assert!(s.due(Party::Nrc, Utc::now(), 10).await.unwrap().is_empty());
        let r = s.register(registration("T9")).await.unwrap();
        assert_eq!(
            r,
            Registered {
                created: true,
                released: 1
            }
        );
        assert_eq!(
            s.depths(),
            Depths {
                outbox: 1,
                parked: 0,
                dead_letters: 0,
                quarantine: 0
            }
        );
        let due = s.due(Party::Nrc, Utc::now(), 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, e.id);
        assert_eq!(s.event(e.id).await.unwrap().unwrap().relay, PENDING);
    }

    #[tokio::test]
    async fn retry_reschedules_and_dead_letter_replays() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.register(registration("T1")).await.unwrap();
        let e = recorded(
            s.record(new_event("T1", Outcome::Completed, "k"), payload(1))
                .await
                .unwrap(),
        );
        let later = Utc::now() + chrono::Duration::seconds(60);
        s.complete(
            &job_of(&s, e.id).await,
            JobResult::Retry {
                due: later,
                error: "503".into(),
            },
        )
        .await
        .unwrap();
        assert!(s.due(Party::Nrc, Utc::now(), 10).await.unwrap().is_empty());
        let item = &s.due(Party::Nrc, later, 10).await.unwrap()[0];
        assert_eq!(
            (item.attempts, item.last_error.as_deref()),
            (1, Some("503"))
        );
        assert_eq!(
            s.next_due(Party::Nrc)
                .await
                .unwrap()
                .map(|t| t.timestamp_millis()),
            Some(later.timestamp_millis())
        );
        s.complete(
            &job_of(&s, e.id).await,
            JobResult::DeadLetter {
                reason: "400".into(),
                status: Some(400),
                body: Some("bad".into()),
            },
        )
        .await
        .unwrap();
        assert_eq!(s.depths().outbox, 0);
        let dl = s.dead_letters().await.unwrap();
        assert_eq!((dl.len(), dl[0].attempts, dl[0].status), (1, 2, Some(400)));
        s.replay(e.id).await.unwrap();
        assert!(matches!(s.replay(e.id).await, Err(StoreError::NotFound)));
        assert_eq!(s.depths().dead_letters, 0);
        assert_eq!(
            s.due(Party::Nrc, Utc::now(), 10).await.unwrap()[0].attempts,
            0
        );
    }

    #[tokio::test]
    async fn large_payloads_live_in_files_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let s = open(dir.path());
            let big = payload(super::super::archive::INLINE_MAX + 1);
            recorded(
                s.record(new_event("T1", Outcome::Completed, "k"), big)
                    .await
                    .unwrap(),
            )
            .archive_id
        };
        // The writer thread ends with its last handle; give sled its lock back.
        let s = loop {
            match SledStore::open(dir.path(), StoreOptions::default(), None) {
                Ok((s, _)) => break s,
                Err(StoreError::Locked(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("{e}"),
            }
        };
        let p = s.payload(id).await.unwrap().unwrap();
        assert_eq!(p.bytes.len(), super::super::archive::INLINE_MAX + 1);
        assert!(dir
            .path()
            .join("payloads")
            .join(id.simple().to_string())
            .exists());
        assert_eq!(s.depths().parked, 1, "counts are rebuilt on open");
    }

    #[tokio::test]
    async fn purge_removes_finished_events_and_their_payloads_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.register(registration("T1")).await.unwrap();
        let done = recorded(
            s.record(new_event("T1", Outcome::Completed, "a"), payload(100_000))
                .await
                .unwrap(),
        );
        s.complete(&job_of(&s, done.id).await, delivered())
            .await
            .unwrap();
        let progress = recorded(
            s.record(
                new_event("T1", Outcome::Progress { detail: "d".into() }, "p"),
                payload(5),
            )
            .await
            .unwrap(),
        );
        let parked = recorded(
            s.record(new_event("T2", Outcome::Completed, "c"), payload(5))
                .await
                .unwrap(),
        );
        // Nothing is old enough yet.
        assert_eq!(
            s.purge(Utc::now() - chrono::Duration::days(1))
                .await
                .unwrap(),
            0
        );
        let n = s
            .purge(Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap();
        // Two events, and T1's registration: its outcome was delivered.
        assert_eq!(n, 3);
        let t1 = TransactionId::parse("T1").unwrap();
        assert!(s.registration(Vendor::Gosign, &t1).await.unwrap().is_none());
        assert!(s.event(done.id).await.unwrap().is_none());
        assert!(s.payload(done.archive_id).await.unwrap().is_none());
        assert!(!dir
            .path()
            .join("payloads")
            .join(done.archive_id.simple().to_string())
            .exists());
        assert!(s.event(progress.id).await.unwrap().is_none());
        assert!(
            s.event(parked.id).await.unwrap().is_some(),
            "parked events are kept"
        );
        // The outcome stays deduplicated after the purge: a late redelivery is not relayed again.
        let again = recorded(
            s.record(new_event("T1", Outcome::Completed, "a"), payload(1))
                .await
                .unwrap(),
        );
        assert_eq!(
            again.relay,
            RelayState::NotRelayed {
                why: NotRelayed::RepeatedOutcome
            }
        );
    }

    /// A large payload's file is written before the batch that refers to it. A sweep in
    /// between (a purge with a retention of 0 once swept files of any age) must leave it: the
    /// callback is acknowledged once the batch commits. An orphan, claimed by nobody and
    /// referred to by nothing, is still swept.
    #[tokio::test]
    async fn a_payload_file_waiting_for_its_batch_survives_a_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(open(dir.path()));
        let files = dir.path().join("payloads");
        let orphan = files.join(Uuid::now_v7().simple().to_string());
        std::fs::write(&orphan, b"left by a crash").unwrap();
        let (hold, release_tx) = hold_writer(&s).await;
        let size = super::super::archive::INLINE_MAX * 4;
        let record = {
            let s = s.clone();
            tokio::spawn(async move {
                s.record(new_event("T1", Outcome::Completed, "k"), payload(size))
                    .await
            })
        };
        // Its file is there (and fsynced) while its batch waits behind the held writer.
        let waiting = |f: &std::path::Path| {
            std::fs::read_dir(f)
                .unwrap()
                .flatten()
                .filter(|e| e.path() != orphan && !e.file_name().to_string_lossy().contains('.'))
                .count()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while waiting(&files) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no payload file written"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(!record.is_finished());
        // A sweep that takes files of any age.
        assert_eq!(s.sweep_orphans(std::time::Duration::ZERO).await.unwrap(), 1);
        assert!(!orphan.exists(), "the orphan is swept");
        release_tx.send(()).unwrap();
        hold.await.unwrap().unwrap();
        let e = recorded(record.await.unwrap().unwrap());
        let p = s
            .payload(e.archive_id)
            .await
            .unwrap()
            .expect("payload kept");
        assert_eq!(p.bytes.len(), size);
        // Referenced now: still not an orphan.
        assert_eq!(s.sweep_orphans(std::time::Duration::ZERO).await.unwrap(), 0);
        assert!(s.payload(e.archive_id).await.unwrap().is_some());
    }

    /// A large duplicate leaves no file behind (it was written before the dedup decided).
    #[tokio::test]
    async fn a_large_duplicate_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let size = super::super::archive::INLINE_MAX * 2;
        let payload_files = || {
            std::fs::read_dir(dir.path().join("payloads"))
                .unwrap()
                .count()
        };
        s.record(new_event("T1", Outcome::Completed, "k"), payload(size))
            .await
            .unwrap();
        let before = payload_files();
        // Both pass the pre-check before either commits: the second is a duplicate found
        // inside the writer, after its file was written.
        let (a, b) = tokio::join!(
            s.record(new_event("T2", Outcome::Completed, "k2"), payload(size)),
            s.record(new_event("T2", Outcome::Completed, "k2"), payload(size)),
        );
        let dups = [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|r| matches!(r, Recorded::Duplicate { .. }))
            .count();
        assert_eq!(dups, 1);
        assert_eq!(payload_files(), before + 1);
    }

    /// `events?transaction_id=` reads the transaction's own events from the index, not every
    /// event in the store; an older store without the index gets it on open.
    #[tokio::test]
    async fn a_transaction_query_reads_only_its_own_events() {
        let dir = tempfile::tempdir().unwrap();
        let (s, writer) = SledStore::open(dir.path(), StoreOptions::default(), None).unwrap();
        for i in 0..600 {
            let tx = format!("T{}", i % 200);
            s.record(
                new_event(
                    &tx,
                    Outcome::Progress {
                        detail: format!("{i}"),
                    },
                    &format!("k{i}"),
                ),
                payload(1),
            )
            .await
            .unwrap();
        }
        let query = |tx: &str, after: Option<Uuid>, limit: Option<usize>| EventQuery {
            transaction_id: Some(TransactionId::parse(tx).unwrap()),
            after,
            limit,
            ..EventQuery::default()
        };
        let before = s.events_read();
        let found = s.events(&query("T7", None, None)).await.unwrap();
        assert_eq!(found.len(), 3);
        assert!(found.iter().all(|e| e.transaction_id == "T7"));
        assert!(found.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
        assert_eq!(
            s.events_read() - before,
            3,
            "read only the transaction's events"
        );
        // Paging and vendors.
        let page = s
            .events(&query("T7", Some(found[0].id), Some(1)))
            .await
            .unwrap();
        assert_eq!(page[0].id, found[1].id);
        let none = EventQuery {
            vendor: Some(Vendor::Pkisigning),
            ..query("T7", None, None)
        };
        assert!(s.events(&none).await.unwrap().is_empty());
        // An older store: its index is built on open.
        let index = keys::BY_TRANSACTION.to_vec();
        s.writer
            .write(move |st| {
                for (k, _) in st.scan_prefix(&index)? {
                    st.remove(k);
                }
                st.remove(keys::INDEXED_BY_TRANSACTION.to_vec());
                Ok(())
            })
            .await
            .unwrap();
        drop(s);
        writer.join().unwrap();
        let s = open(dir.path());
        let again = s.events(&query("T7", None, None)).await.unwrap();
        assert_eq!(
            again.iter().map(|e| e.id).collect::<Vec<_>>(),
            found.iter().map(|e| e.id).collect::<Vec<_>>()
        );
        assert_eq!(s.events_read(), 3);
    }

    #[tokio::test]
    async fn expired_parked_events_become_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let e = recorded(
            s.record(new_event("T3", Outcome::Completed, "k"), payload(1))
                .await
                .unwrap(),
        );
        assert_eq!(
            s.expire_parked(Utc::now() - chrono::Duration::hours(1))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            s.expire_parked(Utc::now() + chrono::Duration::seconds(1))
                .await
                .unwrap(),
            1
        );
        assert_eq!(s.depths().parked, 0);
        assert_eq!(s.dead_letters().await.unwrap()[0].event_id, Some(e.id));
    }

    #[tokio::test]
    async fn a_job_queued_once_is_queued_once_and_standing_keys_outlive_the_purge() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let task = |name: &str| {
            Task::Vendor(crate::jobs::VendorTask {
                vendor: Vendor::Posten,
                event_id: None,
                name: name.into(),
                data: serde_json::json!({}),
            })
        };
        let party = Party::Vendor(Vendor::Posten);
        let first = s
            .enqueue(Job::new(task("fetch"), Utc::now()), Some("exit/abc".into()))
            .await
            .unwrap();
        let Enqueued::New(id) = first else {
            panic!("{first:?}")
        };
        let again = s
            .enqueue(Job::new(task("fetch"), Utc::now()), Some("exit/abc".into()))
            .await
            .unwrap();
        assert_eq!(again, Enqueued::Existing(id));
        let standing = format!("{STANDING}posten/poll");
        s.enqueue(Job::new(task("poll"), Utc::now()), Some(standing.clone()))
            .await
            .unwrap();
        assert_eq!(s.due(party, Utc::now(), 10).await.unwrap().len(), 2);
        s.purge(Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap();
        // The purged key may be queued anew; the standing one never.
        assert!(matches!(
            s.enqueue(Job::new(task("fetch"), Utc::now()), Some("exit/abc".into()))
                .await
                .unwrap(),
            Enqueued::New(_)
        ));
        assert!(matches!(
            s.enqueue(Job::new(task("poll"), Utc::now()), Some(standing))
                .await
                .unwrap(),
            Enqueued::Existing(_)
        ));
        assert_eq!(s.due(party, Utc::now(), 10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn due_jobs_skip_those_in_flight_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        for tx in ["T1", "T2", "T3"] {
            s.register(registration(tx)).await.unwrap();
            s.record(new_event(tx, Outcome::Completed, tx), payload(1))
                .await
                .unwrap();
        }
        let all = s.due(Party::Nrc, Utc::now(), 10).await.unwrap();
        assert_eq!(all.len(), 3);
        // The first is in flight; its record is unreadable, so reading it would fail.
        let first = &all[0];
        s.tree
            .insert(keys::job(Party::Nrc, first.due, first.id), &b"not json"[..])
            .unwrap();
        assert!(s.due(Party::Nrc, Utc::now(), 10).await.is_err());
        let skip = HashSet::from([first.id]);
        let rest = s
            .due_except(Party::Nrc, Utc::now(), 10, &skip)
            .await
            .unwrap();
        let ids: Vec<Uuid> = rest.iter().map(|j| j.id).collect();
        assert_eq!(ids, vec![all[1].id, all[2].id]);
        // The limit counts what is returned, not what is skipped.
        let one = s
            .due_except(Party::Nrc, Utc::now(), 1, &skip)
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].id, all[1].id);
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _s = open(dir.path());
        assert!(matches!(
            SledStore::open(dir.path(), StoreOptions::default(), None),
            Err(StoreError::Locked(_))
        ));
    }
}
