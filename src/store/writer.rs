//! Group commit: one thread applies every mutation, many callbacks share one flush.
//!
//! Jobs are closures run on the writer thread against a [`Staging`] view (reads see the
//! group's earlier writes), so read-check-write logic needs no locks or transactions. After a
//! group is applied as one atomic `sled::Batch`, the writer flushes and `fdatasync`s the
//! database file, and only then completes the jobs: a caller hears "ok" only once its write is
//! on disk. sled 0.34's `flush()` alone never fsyncs (it uses `sync_file_range`).

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sled::IVec;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn FnOnce(&mut Staging<'_>) -> Completion + Send>;

/// A job and whether its caller can wait for a commit that happens anyway.
struct Queued {
    job: Job,
    lazy: bool,
}

/// How long writes that need not be durable at once (delivery results: losing one repeats
/// a delivery, at least once) wait for a commit they can share. Half of all writes are such;
/// without a commit of their own, the store syncs (and the disk writes) a third less. Short,
/// because what a crash in the window leaves unrecorded is delivered to the NRC again.
pub const LAZY_WINDOW: Duration = Duration::from_millis(5);
const LAZY_POLL: Duration = Duration::from_micros(500);

/// Counter changes a job makes, applied once its group is durable.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deltas {
    pub outbox: i64,
    pub parked: i64,
    pub dead_letters: i64,
    pub quarantine: i64,
}

/// The writer's view for one job: reads see the job's own and the group's earlier writes.
pub struct Staging<'a> {
    tree: &'a sled::Tree,
    group: BTreeMap<Vec<u8>, Option<IVec>>,
    job: BTreeMap<Vec<u8>, Option<IVec>>,
    group_deltas: Deltas,
    pub deltas: Deltas,
}

impl<'a> Staging<'a> {
    fn new(tree: &'a sled::Tree) -> Self {
        Self {
            tree,
            group: BTreeMap::new(),
            job: BTreeMap::new(),
            group_deltas: Deltas::default(),
            deltas: Deltas::default(),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        if let Some(v) = self.job.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.group.get(key) {
            return Ok(v.clone());
        }
        Ok(self.tree.get(key)?)
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get(key)?.is_some())
    }

    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<IVec>) {
        self.job.insert(key.into(), Some(value.into()));
    }

    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.job.insert(key.into(), None);
    }

    /// Keys and values under `prefix`, as this job would see them, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, IVec)>, StoreError> {
        let mut merged: BTreeMap<Vec<u8>, Option<IVec>> = BTreeMap::new();
        for kv in self.tree.scan_prefix(prefix) {
            let (k, v) = kv?;
            merged.insert(k.to_vec(), Some(v));
        }
        for overlay in [&self.group, &self.job] {
            let range = overlay.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded));
            for (k, v) in range.take_while(|(k, _)| k.starts_with(prefix)) {
                merged.insert(k.clone(), v.clone());
            }
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    fn commit_job(&mut self) {
        let job = std::mem::take(&mut self.job);
        self.group.extend(job);
        let d = std::mem::take(&mut self.deltas);
        self.group_deltas.outbox += d.outbox;
        self.group_deltas.parked += d.parked;
        self.group_deltas.dead_letters += d.dead_letters;
        self.group_deltas.quarantine += d.quarantine;
    }

    fn discard_job(&mut self) {
        self.job.clear();
        self.deltas = Deltas::default();
    }
}

/// Live counts kept by the writer, read by metrics and readiness.
#[derive(Debug, Default)]
pub struct Counts {
    pub outbox: std::sync::atomic::AtomicI64,
    pub parked: std::sync::atomic::AtomicI64,
    pub dead_letters: std::sync::atomic::AtomicI64,
    pub quarantine: std::sync::atomic::AtomicI64,
}

impl Counts {
    pub fn depths(&self) -> super::Depths {
        use std::sync::atomic::Ordering::Relaxed;
        super::Depths {
            outbox: self.outbox.load(Relaxed),
            parked: self.parked.load(Relaxed),
            dead_letters: self.dead_letters.load(Relaxed),
            quarantine: self.quarantine.load(Relaxed),
        }
    }

    fn apply(&self, d: Deltas) {
        use std::sync::atomic::Ordering::Relaxed;
        self.outbox.fetch_add(d.outbox, Relaxed);
        self.parked.fetch_add(d.parked, Relaxed);
        self.dead_letters.fetch_add(d.dead_letters, Relaxed);
        self.quarantine.fetch_add(d.quarantine, Relaxed);
    }
}

/// Figures about group commits, for metrics and the benchmark.
pub trait CommitObserver: Send + Sync {
    fn committed(&self, jobs: usize, seconds: f64, ok: bool);
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Queued>,
    /// Set once a group commit failed; see [`poisoned`].
    failed: Arc<AtomicBool>,
}

/// The error of every store operation after a group commit failed. The failed group's batch
/// may already be visible in sled's in-memory tree without being on disk (sled 0.34 applies a
/// batch before the flush that fails, cannot roll it back, and after an I/O error keeps
/// refusing writes until reopened), so nothing read from the tree can be trusted to be
/// durable: acknowledging a retry as a duplicate of such a record would lose it. Until a
/// restart reopens the store, every write and read fails and vendors are told to retry.
pub fn poisoned() -> StoreError {
    StoreError::Storage(
        "a durable write failed earlier; the store refuses work until signrelay is restarted"
            .into(),
    )
}

impl Writer {
    /// Starts the writer thread. It ends once every `Writer` clone is dropped and the queue
    /// is drained.
    pub fn start(
        db: sled::Db,
        tree: sled::Tree,
        db_file: File,
        max_group: usize,
        lazy_window: Duration,
        counts: Arc<Counts>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> (Writer, std::thread::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Queued>(max_group * 4);
        let failed = Arc::new(AtomicBool::new(false));
        let poison = failed.clone();
        let handle = std::thread::Builder::new()
            .name("signrelay-writer".into())
            .spawn(move || {
                let mut completions: Vec<(Completion, Deltas)> = Vec::with_capacity(max_group);
                while let Some(first) = rx.blocking_recv() {
                    let started = Instant::now();
                    let mut staging = Staging::new(&tree);
                    let mut eager = false;
                    let mut next = Some(first);
                    loop {
                        while let Some(q) = next.take() {
                            eager |= !q.lazy;
                            let done = (q.job)(&mut staging);
                            let d = staging.deltas;
                            staging.commit_job();
                            completions.push((done, d));
                            if completions.len() < max_group {
                                next = rx.try_recv().ok();
                            }
                        }
                        if eager
                            || completions.len() >= max_group
                            || started.elapsed() >= lazy_window
                        {
                            break;
                        }
                        // Only lazy writes so far: give an eager one a moment to come.
                        std::thread::sleep(LAZY_POLL);
                        next = rx.try_recv().ok();
                    }
                    let group = std::mem::take(&mut staging.group);
                    let result = if poison.load(Ordering::SeqCst) {
                        Err(poisoned())
                    } else {
                        apply(&db, &tree, &db_file, group)
                    };
                    let ok = result.is_ok();
                    if !ok {
                        // Before any caller hears of it, so that its retry is refused too.
                        poison.store(true, Ordering::SeqCst);
                    }
                    if let Some(o) = &observer {
                        o.committed(completions.len(), started.elapsed().as_secs_f64(), ok);
                    }
                    for (done, deltas) in completions.drain(..) {
                        if ok {
                            counts.apply(deltas);
                        }
                        done(result.clone());
                    }
                }
            })
            .expect("spawn writer thread");
        (Writer { tx, failed }, handle)
    }

    /// Has a group commit failed (so that the store refuses all work until reopened)?
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Runs `f` on the writer thread and resolves once its writes are durable. When `f` fails
    /// its writes are discarded and the error returned; the rest of the group still commits.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Staging<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.queue(f, false).await
    }

    /// As [`Writer::write`], for a write that may wait a moment ([`LAZY_WINDOW`] by default)
    /// to share a commit that other writes make anyway.
    pub async fn write_lazy<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Staging<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.queue(f, true).await
    }

    async fn queue<R, F>(&self, f: F, lazy: bool) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Staging<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        if self.failed() {
            return Err(poisoned());
        }
        let (tx, rx) = oneshot::channel::<Result<R, StoreError>>();
        let job: Job = Box::new(move |staging| {
            let outcome = f(staging);
            if outcome.is_err() {
                staging.discard_job();
            }
            Box::new(move |commit: Result<(), StoreError>| {
                let _ = tx.send(commit.and(outcome));
            })
        });
        self.tx
            .send(Queued { job, lazy })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn apply(
    db: &sled::Db,
    tree: &sled::Tree,
    db_file: &File,
    group: BTreeMap<Vec<u8>, Option<IVec>>,
) -> Result<(), StoreError> {
    if !group.is_empty() {
        let mut batch = sled::Batch::default();
        for (k, v) in group {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        tree.apply_batch(batch)?;
    }
    db.flush()?;
    db_file.sync_data()?;
    Ok(())
}
