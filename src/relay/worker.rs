//! The worker: one lane per remote party. A lane reads its party's due jobs from the store,
//! runs them through the party's handler within a time bound, paces the party (an adaptive
//! window of requests in flight, a circuit breaker that probes a party that is down or
//! refusing signrelay; `Retry-After` honoured), computes backoff and the give-up age, and
//! hands the result to the store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::health::Health;
use crate::jobs::circuit::{Change, Verdict};
use crate::jobs::pace::{Pace, Started, Transition};
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
    pace: Pace,
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

    /// Starts every lane and the parked-event sweep. A lane with a gate runs jobs only while
    /// its gate is open (the NRC's: while the kanaal exists). Each task ends once `stop` turns
    /// true and its jobs in flight have recorded their result.
    pub fn start(
        self,
        stop: watch::Receiver<bool>,
        mut gates: HashMap<Party, watch::Receiver<bool>>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (settings, handler) in self.lanes {
            let lane = Arc::new(Lane {
                pace: Pace::new(
                    &settings.pace,
                    settings.backoff,
                    Some(self.metrics.pace_gauges(settings.party)),
                ),
                wake: self.wakers.of(settings.party),
                settings,
                handler,
                store: self.store.clone(),
                metrics: self.metrics.clone(),
                health: self.health.clone(),
                in_flight: tokio::sync::Mutex::new(HashSet::new()),
            });
            let gate = gates
                .remove(&lane.settings.party)
                .unwrap_or_else(|| watch::channel(true).1);
            tasks.push(tokio::spawn(lane.run(stop.clone(), gate)));
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

/// A refusal as the log and readiness show it: the party's status and answer, short.
fn refusal(reason: &str, status: Option<u16>, body: Option<&str>) -> String {
    let mut s = reason.to_string();
    if let Some(b) = body.map(str::trim).filter(|b| !b.is_empty()) {
        let b: String = b.chars().take(REFUSAL_KEEP).collect();
        s.push_str(&format!(": {b}"));
    } else if let Some(st) = status {
        s.push_str(&format!(" ({st})"));
    }
    s
}

/// What tells one refusal from another: the reason and the kind of problem answered, not its
/// words (which may carry a fresh `instance` each time).
fn refusal_kind(reason: &str, body: Option<&str>) -> String {
    match body.and_then(crate::problem::kind_of) {
        Some(kind) => format!("{reason} {kind}"),
        None => reason.to_string(),
    }
}

/// Most of a party's answer kept in a refusal's log line and readiness.
const REFUSAL_KEEP: usize = 500;

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
    async fn run(
        self: Arc<Self>,
        mut stop: watch::Receiver<bool>,
        mut gate: watch::Receiver<bool>,
    ) {
        let party = self.settings.party;
        tracing::info!(
            party = party.as_str(),
            concurrency_min = self.settings.pace.min,
            concurrency_max = self.settings.pace.max,
            "job lane started"
        );
        while !*stop.borrow() {
            self.health.relay_tick();
            if !*gate.borrow_and_update() {
                tokio::select! {
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = gate.changed() => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let free = match self.pace.admit() {
                Ok(free) => free,
                Err(until) => {
                    let poll = tokio::time::Instant::now() + IDLE_POLL;
                    let until = until.map_or(poll, |u| u.min(poll));
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        _ = self.pace.changed() => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            };
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
                // The circuit may have opened meanwhile: the job stays queued.
                let Some(started) = self.pace.start() else {
                    self.forget(std::slice::from_ref(&job)).await;
                    continue;
                };
                let me = self.clone();
                tokio::spawn(async move {
                    let id = job.id;
                    let next_turn_now = me.run_one(job, started).await;
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

    /// Due jobs not already in flight; the store passes over those in flight unread, so a
    /// turn reads what it starts, not the whole window. Read under the in-flight lock: a job
    /// leaves `in_flight` only after its result is in the store, so a job read here is either
    /// still in flight or still due. Read before taking the lock, a job finishing in between
    /// would run a second time.
    async fn read_due(
        &self,
        now: chrono::DateTime<Utc>,
        free: usize,
    ) -> Result<Vec<Job>, crate::store::StoreError> {
        let mut f = self.in_flight.lock().await;
        let due = self
            .store
            .due_except(self.settings.party, now, free, &f)
            .await?;
        Ok(due.into_iter().filter(|j| f.insert(j.id)).collect())
    }

    async fn forget(&self, jobs: &[Job]) {
        let mut f = self.in_flight.lock().await;
        for j in jobs {
            f.remove(&j.id);
        }
    }

    /// One attempt. Its place in the window is given back as soon as the party has
    /// answered; recording the result (a group commit) does not hold it. True when the job's
    /// next turn is due now.
    async fn run_one(&self, job: Job, started: Started) -> bool {
        let party = self.settings.party;
        let clock = Instant::now();
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
        let verdict = match &attempt {
            Attempt::Done(_) | Attempt::Refused { .. } | Attempt::Contradicted { .. } => {
                Verdict::Answered
            }
            Attempt::Retry {
                error,
                retry_after,
                pause_party: true,
            } => Verdict::Failed {
                retry_after: *retry_after,
                cause: error.clone(),
            },
            Attempt::Retry { .. } | Attempt::Park => Verdict::Neutral,
            Attempt::Hold {
                reason,
                status,
                body,
            } => Verdict::Refusing {
                reason: refusal_kind(reason, body.as_deref()),
                answer: refusal(reason, *status, body.as_deref()),
            },
        };
        if let Some(t) = self.pace.finish(started, verdict) {
            self.transition(t);
        }
        let secs = clock.elapsed().as_secs_f64();
        let result = match attempt {
            Attempt::Done(done) => JobResult::Done(done),
            Attempt::Retry {
                error, pause_party, ..
            } => self.retry(&job, error, pause_party),
            Attempt::Hold { reason, .. } => JobResult::Retry {
                due: self.due_after(&job, true),
                error: reason,
            },
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
            Attempt::Contradicted { reason } => JobResult::Contradicted { reason },
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

    /// Says once per change of the party's circuit what happened; readiness follows a
    /// refusal of signrelay.
    fn transition(&self, t: Transition) {
        let party = self.settings.party.as_str();
        let cause = t.cause.as_deref().unwrap_or("");
        match (t.change, t.refusal.as_deref()) {
            (Change::Opened { .. }, Some(answer)) if t.refused => {
                tracing::error!(
                    party,
                    answer,
                    "the party refuses signrelay; its jobs wait, probing until it accepts"
                )
            }
            (Change::Opened { first: true }, _) => {
                tracing::warn!(
                    party,
                    cause,
                    "party unreachable; its jobs wait, probing until it answers"
                )
            }
            (Change::Opened { first: false }, _) => {
                tracing::warn!(party, cause, "party still unreachable, for another reason")
            }
            (Change::StillOpen, _) => tracing::debug!(party, cause, "probe failed"),
            (Change::Closed, _) => tracing::info!(party, "party answers again; resuming"),
        }
        self.health
            .party_refusal(self.settings.party, t.refusal.clone());
    }

    /// Next attempt with backoff, or the dead letters once the job is too old.
    fn retry(&self, job: &Job, error: String, party_failed: bool) -> JobResult {
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
        JobResult::Retry {
            due: self.due_after(job, party_failed),
            error,
        }
    }

    /// When a failed job is due again. When the party failed, the circuit paces the party,
    /// so the job waits no longer than a probe interval: once the party is back, the jobs
    /// are due.
    fn due_after(&self, job: &Job, party_failed: bool) -> chrono::DateTime<Utc> {
        let mut delay = self.settings.backoff.delay(job.attempts + 1);
        if party_failed {
            delay = delay.min(self.settings.pace.probe_max);
        }
        Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default()
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
