//! The worker: one lane per remote party. A lane reads its party's due jobs from the store,
//! runs them through the party's handler with bounded concurrency and time, paces the party
//! (a shared pause after trouble, `Retry-After` honoured), computes backoff and the give-up
//! age, and hands the result to the store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::health::Health;
use crate::jobs::backoff::Pacer;
use crate::jobs::{Attempt, Done, Job, JobHandler, JobResult, LaneSettings, Party};
use crate::store::Store;
use crate::telemetry::Metrics;

/// Wakes a party's lane when a job may have become due (a callback recorded, a registration,
/// a replay). Lanes also look by themselves every [`IDLE_POLL`].
#[derive(Clone, Default)]
pub struct Wakers(Arc<Mutex<HashMap<Party, Arc<Notify>>>>);

impl Wakers {
    fn of(&self, party: Party) -> Arc<Notify> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(party).or_default().clone()
    }

    pub fn wake(&self, party: Party) {
        self.of(party).notify_one();
    }

    pub fn wake_all(&self) {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for n in map.values() {
            n.notify_one();
        }
    }
}

/// The longest a lane sleeps without looking at its queue (a CLI replay, a missed wake-up).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How often parked events are checked against the park timeout.
const PARK_SWEEP: Duration = Duration::from_secs(60);

struct Lane {
    settings: LaneSettings,
    handler: Arc<dyn JobHandler>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    wake: Arc<Notify>,
    pacer: Pacer,
    /// Jobs read from the queue whose result is not recorded yet.
    in_flight: tokio::sync::Mutex<HashSet<Uuid>>,
}

pub struct Worker {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    wakers: Wakers,
    lanes: Vec<(LaneSettings, Arc<dyn JobHandler>)>,
    park_timeout: Duration,
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        wakers: Wakers,
        park_timeout: Duration,
    ) -> Worker {
        Worker {
            store,
            metrics,
            health,
            wakers,
            lanes: Vec::new(),
            park_timeout,
        }
    }

    /// Adds the lane of one party; its jobs are run by `handler`.
    pub fn lane(&mut self, settings: LaneSettings, handler: Arc<dyn JobHandler>) {
        self.lanes.push((settings, handler));
    }

    /// Starts every lane (each waits for its `ready` signal first, e.g. the NRC's kanaal
    /// bootstrap) and the parked-event sweep. Each task ends once `stop` turns true and its
    /// jobs in flight have recorded their result.
    pub fn start(
        self,
        stop: watch::Receiver<bool>,
        mut ready: HashMap<Party, tokio::sync::oneshot::Receiver<bool>>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (settings, handler) in self.lanes {
            let lane = Arc::new(Lane {
                pacer: Pacer::new(settings.backoff),
                wake: self.wakers.of(settings.party),
                settings,
                handler,
                store: self.store.clone(),
                metrics: self.metrics.clone(),
                health: self.health.clone(),
                in_flight: tokio::sync::Mutex::new(HashSet::new()),
            });
            let ready = ready.remove(&lane.settings.party);
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                if let Some(ready) = ready {
                    if !ready.await.unwrap_or(false) {
                        return;
                    }
                }
                lane.run(stop).await
            }));
        }
        tasks.push(tokio::spawn(sweep_parked(
            self.store,
            self.metrics,
            self.park_timeout,
            stop,
        )));
        tasks
    }
}

async fn sweep_parked(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    park_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // A timeout too long for a timestamp expires nothing (never everything).
        let expired = match crate::bounds::ago(park_timeout) {
            Some(cutoff) => store.expire_parked(cutoff).await,
            None => Ok(0),
        };
        match expired {
            Ok(0) => {}
            Ok(n) => {
                metrics
                    .deliveries
                    .with_label_values(&["dead_letter"])
                    .inc_by(n as u64);
                tracing::warn!(
                    count = n,
                    "parked events without registration dead-lettered"
                );
            }
            Err(e) => tracing::error!(error = %e, "cannot expire parked events"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PARK_SWEEP) => {}
            _ = stop.changed() => return,
        }
    }
}

impl Lane {
    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let party = self.settings.party;
        let permits = Arc::new(Semaphore::new(self.settings.concurrency));
        tracing::info!(
            party = party.as_str(),
            concurrency = self.settings.concurrency,
            "job lane started"
        );
        while !*stop.borrow() {
            self.health.relay_tick();
            if let Some(until) = self.pacer.closed_until() {
                let until = until.min(tokio::time::Instant::now() + IDLE_POLL);
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = permits.clone().acquire_owned() => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let now = Utc::now();
            let fresh = match self.read_due(now, free).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(party = party.as_str(), error = %e, "cannot read the job queue");
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            };
            if fresh.is_empty() {
                let wait = match self.store.next_due(party).await {
                    Ok(Some(t)) if t > now => (t - now).to_std().unwrap_or(IDLE_POLL),
                    _ => IDLE_POLL,
                }
                .min(IDLE_POLL);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.wake.notified() => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            if self.settings.after_commit {
                // What queued these jobs may still be on its way to the disk.
                if let Err(e) = self.store.barrier().await {
                    tracing::error!(party = party.as_str(), error = %e, "store not durable");
                    self.forget(&fresh).await;
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            }
            for job in fresh {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore open");
                let me = self.clone();
                tokio::spawn(async move {
                    let id = job.id;
                    let next_turn_now = me.run_one(job, permit).await;
                    me.in_flight.lock().await.remove(&id);
                    if next_turn_now {
                        me.wake.notify_one();
                    }
                });
            }
        }
        // Let jobs in flight record their result; anything else stays queued.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.in_flight.lock().await.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(party = party.as_str(), "job lane stopped");
    }

    /// Due jobs not already in flight. Read under the in-flight lock: a job leaves
    /// `in_flight` only after its result is in the store, so a job read here is either still
    /// in flight or still due. Read before taking the lock, a job finishing in between would
    /// run a second time.
    async fn read_due(
        &self,
        now: chrono::DateTime<Utc>,
        free: usize,
    ) -> Result<Vec<Job>, crate::store::StoreError> {
        let mut f = self.in_flight.lock().await;
        let due = self
            .store
            .due(self.settings.party, now, free + f.len())
            .await?;
        Ok(due
            .into_iter()
            .filter(|j| f.insert(j.id))
            .take(free)
            .collect())
    }

    async fn forget(&self, jobs: &[Job]) {
        let mut f = self.in_flight.lock().await;
        for j in jobs {
            f.remove(&j.id);
        }
    }

    /// One attempt. The permit bounds calls at the party, so it is released as soon as the
    /// party has answered; recording the result (a group commit) does not hold it. True when
    /// the job's next turn is due now.
    async fn run_one(&self, job: Job, permit: OwnedSemaphorePermit) -> bool {
        let party = self.settings.party;
        let started = Instant::now();
        let attempt = tokio::time::timeout(self.settings.timeout, self.handler.attempt(&job))
            .await
            .unwrap_or_else(|_| Attempt::Retry {
                error: format!(
                    "{party} did not answer within {} s",
                    self.settings.timeout.as_secs_f64()
                ),
                retry_after: None,
                pause_party: true,
            });
        drop(permit);
        let secs = started.elapsed().as_secs_f64();
        let result = match attempt {
            Attempt::Done(done) => {
                self.pacer.success();
                JobResult::Done(done)
            }
            Attempt::Retry {
                error,
                retry_after,
                pause_party,
            } => {
                if pause_party {
                    self.pacer.failure(retry_after);
                }
                self.retry(&job, error)
            }
            Attempt::Refused {
                reason,
                status,
                body,
            } => JobResult::DeadLetter {
                reason,
                status,
                body,
            },
            Attempt::Park => JobResult::Park,
            Attempt::Contradicted { reason } => {
                self.pacer.success();
                JobResult::Contradicted { reason }
            }
        };
        self.count(&job, &result, secs);
        // A step that goes in turns runs its next one as soon as this one is recorded.
        let next_turn_now =
            matches!(&result, JobResult::Done(Done { again: Some(a), .. }) if a.at <= Utc::now());
        // If this write fails the job stays queued and runs again: at least once.
        if let Err(e) = self.store.complete(&job, result).await {
            self.health.store_result(false);
            tracing::error!(job_id = %job.id, party = party.as_str(), error = %e, "cannot record a job's result");
            return false;
        }
        next_turn_now
    }

    /// Next attempt with backoff, or the dead letters once the job is too old.
    fn retry(&self, job: &Job, error: String) -> JobResult {
        let age = (Utc::now() - job.first_queued_at)
            .to_std()
            .unwrap_or_default();
        if age >= self.settings.give_up_after {
            return JobResult::DeadLetter {
                reason: format!("{} bleef onbereikbaar: {error}", self.settings.party),
                status: None,
                body: None,
            };
        }
        let delay = self.settings.backoff.delay(job.attempts + 1);
        JobResult::Retry {
            due: Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
            error,
        }
    }

    fn count(&self, job: &Job, result: &JobResult, secs: f64) {
        let party = self.settings.party;
        self.metrics
            .jobs
            .with_label_values(&[party.as_str(), result.label()])
            .inc();
        if party == Party::Nrc {
            // The NRC's own figures, as operators have alerted on them since the first release.
            let label = match result {
                JobResult::Done(_) => "delivered",
                JobResult::Retry { .. } => "retry",
                JobResult::DeadLetter { .. } => "dead_letter",
                JobResult::Park => "parked",
                JobResult::Contradicted { .. } => "contradicted",
            };
            self.metrics.deliveries.with_label_values(&[label]).inc();
            let latency = match result {
                JobResult::Done(_) => "ok",
                JobResult::DeadLetter {
                    status: Some(_), ..
                } => "refused",
                _ => "retryable",
            };
            self.metrics
                .delivery_seconds
                .with_label_values(&[latency])
                .observe(secs);
        }
        let event_id = job.task.event_id().map(tracing::field::display);
        match result {
            JobResult::Done(Done {
                again: Some(again), ..
            }) => {
                tracing::debug!(job_id = %job.id, party = party.as_str(), due = %again.at, "job runs again later")
            }
            JobResult::Done(_) if party == Party::Nrc => {
                tracing::info!(event_id, "delivered to the NRC")
            }
            JobResult::Done(_) => {
                tracing::info!(job_id = %job.id, event_id, party = party.as_str(), task = %job.task.label(), "job done")
            }
            JobResult::Retry { due, error } => {
                tracing::warn!(job_id = %job.id, event_id, party = party.as_str(), attempts = job.attempts + 1, %due, error = %error, "job failed; will retry")
            }
            JobResult::DeadLetter { reason, .. } => {
                tracing::error!(job_id = %job.id, event_id, party = party.as_str(), reason = %reason, "dead-lettered")
            }
            JobResult::Park => tracing::info!(event_id, "no registration; parked"),
            JobResult::Contradicted { .. } => {
                tracing::warn!(job_id = %job.id, event_id, party = party.as_str(), task = %job.task.label(), "callback contradicted by the vendor; quarantined")
            }
        }
    }
}
