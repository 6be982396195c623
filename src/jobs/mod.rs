//! The durable job queue: every call signrelay makes towards a remote party (the NRC, a
//! vendor's API) is a job, recorded in the same atomic write as the callback or registration
//! that needs it, and run by one worker (`crate::relay::worker`) that owns timeouts, retries with backoff,
//! pacing per remote party, dead letters with the party's answer, and replay.
//!
//! A job is prepared, called and handled in three stages (as svix-server's queue does): the
//! party's [`JobHandler`] prepares and makes the call and says how it went ([`Attempt`]); the
//! worker turns that into a [`JobResult`] (backoff, give-up age); the store applies the result
//! atomically, with the event's next step decided by `crate::rules`.

pub mod backoff;
pub mod circuit;
pub mod pace;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{NewEvent, RawPayload, Step, TransactionId, Vendor};

/// A remote party that jobs call. Each has its own lane in the queue: its own concurrency,
/// pacing and backoff, so that one slow party never holds up another's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Party {
    /// The Notification Routing Component.
    Nrc,
    /// The Documents API (with the Zaken API for the evidence document's link): the
    /// signed documents' step.
    Drc,
    /// A vendor's own API (verification, status fetches, confirmations).
    Vendor(Vendor),
}

impl Party {
    pub fn as_str(self) -> &'static str {
        match self {
            Party::Nrc => "nrc",
            Party::Drc => "drc",
            Party::Vendor(v) => v.as_str(),
        }
    }

    pub fn parse(s: &str) -> Option<Party> {
        match s {
            "nrc" => Some(Party::Nrc),
            "drc" => Some(Party::Drc),
            other => Vendor::parse(other).map(Party::Vendor),
        }
    }
}

impl std::fmt::Display for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Party {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Party {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Party, D::Error> {
        let s = String::deserialize(d)?;
        Party::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown party {s}")))
    }
}

/// What a job does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    /// Tell the NRC an event's outcome.
    Notify { event_id: Uuid },
    /// Put a completion's signed documents into the DRC. `progress` is the step's own state
    /// (which document, the lock signrelay holds), which only `crate::documents` reads; it is
    /// written back after each turn, so that a restart goes on where the step was.
    Documents {
        event_id: Uuid,
        #[serde(default)]
        progress: serde_json::Value,
    },
    /// A vendor's own follow-up, run by that vendor's code.
    Vendor(VendorTask),
}

/// A vendor's job: `name` and `data` are the vendor's own job type, which only its code reads.
/// `data` may hold credentials (a callback's authentication key, a status token): it is kept
/// only while the job is queued and never shown by the admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VendorTask {
    pub vendor: Vendor,
    /// The event this job is a step of, if any (a poller has none).
    #[serde(default)]
    pub event_id: Option<Uuid>,
    pub name: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Task {
    /// Whom the job calls.
    pub fn party(&self) -> Party {
        match self {
            Task::Notify { .. } => Party::Nrc,
            Task::Documents { .. } => Party::Drc,
            Task::Vendor(v) => Party::Vendor(v.vendor),
        }
    }

    /// The event this job is a step of.
    pub fn event_id(&self) -> Option<Uuid> {
        match self {
            Task::Notify { event_id } | Task::Documents { event_id, .. } => Some(*event_id),
            Task::Vendor(v) => v.event_id,
        }
    }

    /// The step of the event's journey this job is.
    pub fn step(&self) -> Step {
        match self {
            Task::Notify { .. } => Step::Notify,
            Task::Documents { .. } => Step::Documents,
            Task::Vendor(_) => Step::Vendor,
        }
    }

    /// A short name for listings and metrics: `notify`, `pkisigning.verify`.
    pub fn label(&self) -> String {
        match self {
            Task::Notify { .. } => "notify".into(),
            Task::Documents { .. } => "documents".into(),
            Task::Vendor(v) => format!("{}.{}", v.vendor, v.name),
        }
    }

    /// The job's own data, which a turn that runs again may update.
    pub fn data_mut(&mut self) -> Option<&mut serde_json::Value> {
        match self {
            Task::Notify { .. } => None,
            Task::Documents { progress, .. } => Some(progress),
            Task::Vendor(v) => Some(&mut v.data),
        }
    }
}

/// A queued job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// An event's job has the event's id (an event waits on one step at a time), so that its
    /// dead letter is found and replayed by the event id; other jobs have their own.
    pub id: Uuid,
    pub task: Task,
    pub due: DateTime<Utc>,
    pub attempts: u32,
    pub first_queued_at: DateTime<Utc>,
    #[serde(default)]
    pub last_error: Option<String>,
}

impl Job {
    /// This job's next turn, as `again` says (not a retry: its attempts start over).
    pub fn next_turn(self, again: Again) -> Job {
        let mut next = Job {
            due: again.at,
            attempts: 0,
            last_error: None,
            ..self
        };
        if let (Some(d), Some(data)) = (again.data, next.task.data_mut()) {
            *data = d;
        }
        next
    }

    /// A new job for `task`, due `now`.
    pub fn new(task: Task, now: DateTime<Utc>) -> Job {
        Job {
            id: task.event_id().unwrap_or_else(Uuid::now_v7),
            task,
            due: now,
            attempts: 0,
            first_queued_at: now,
            last_error: None,
        }
    }

    pub fn party(&self) -> Party {
        self.task.party()
    }
}

/// How one attempt of a job went, as its handler tells the worker.
#[derive(Debug)]
pub enum Attempt {
    /// Done. An event's job moves the event to its next step.
    Done(Done),
    /// Not now: try again later with backoff. `pause_party` when the remote party itself is in
    /// trouble (5xx, 429, timeouts): the party's window shrinks, and failures in a row open
    /// its circuit (`retry_after`, when the party said so, at once and for that long).
    Retry {
        error: String,
        retry_after: Option<Duration>,
        pause_party: bool,
    },
    /// The party refuses signrelay itself, not this job (401/403: credentials or rights): the
    /// job stays queued however long that lasts, the party's circuit opens (probing at a
    /// bounded interval), and readiness names the party's answer until it accepts again.
    Hold {
        reason: String,
        status: Option<u16>,
        body: Option<String>,
    },
    /// The party refused the job as it is: a dead letter with its answer.
    Refused {
        reason: String,
        status: Option<u16>,
        body: Option<String>,
    },
    /// The event's transaction has no registration (any more): park it until one arrives.
    Park,
    /// The vendor's own API contradicts the callback this job checked (a forged or mistaken
    /// callback): it is not relayed, but quarantined with `reason`, and the transaction's
    /// outcome stays open for the vendor's next callback.
    Contradicted { reason: String },
}

/// What a finished job leaves behind, written in the same atomic write that completes it.
#[derive(Debug, Default)]
pub struct Done {
    /// Callbacks the job obtained (e.g. a status it fetched), recorded like any other.
    pub record: Vec<(NewEvent, RawPayload)>,
    /// Jobs that follow from it (e.g. a confirmation once the fetched status is durable).
    pub then: Vec<Task>,
    /// A job that runs again (a poller): when, and with what data if it changes.
    pub again: Option<Again>,
}

/// When a job runs again, not as a failure: a standing job's (a poller's) next turn, or the
/// next turn of a step that goes in several (its progress written first).
#[derive(Debug, Clone)]
pub struct Again {
    pub at: DateTime<Utc>,
    pub data: Option<serde_json::Value>,
}

impl Done {
    /// A poller's turn that found nothing: run again at `at`.
    pub fn again_at(at: DateTime<Utc>) -> Done {
        Done {
            again: Some(Again { at, data: None }),
            ..Done::default()
        }
    }
}

/// What the store applies to a job, as the worker decided it.
#[derive(Debug)]
pub enum JobResult {
    Done(Done),
    Retry {
        due: DateTime<Utc>,
        error: String,
    },
    DeadLetter {
        reason: String,
        status: Option<u16>,
        body: Option<String>,
    },
    Park,
    Contradicted {
        reason: String,
    },
}

impl JobResult {
    /// Label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            JobResult::Done(d) if d.again.is_some() => "again",
            JobResult::Done(_) => "done",
            JobResult::Retry { .. } => "retry",
            JobResult::DeadLetter { .. } => "dead_letter",
            JobResult::Park => "parked",
            JobResult::Contradicted { .. } => "contradicted",
        }
    }
}

/// A job the worker gave up on, with the party's answer; replay queues it again as it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub job: Job,
    pub event_id: Option<Uuid>,
    pub vendor: Option<Vendor>,
    pub transaction_id: Option<TransactionId>,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub attempts: u32,
    /// The party's HTTP status and (problem) body, truncated.
    pub status: Option<u16>,
    pub body: Option<String>,
}

/// A dead letter as operators see it (admin API, CLI): the job's data is left out, it may hold
/// credentials.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterView {
    /// Replay with this id (an event's job has the event's id).
    pub id: Uuid,
    pub event_id: Option<Uuid>,
    pub vendor: Option<Vendor>,
    pub transaction_id: Option<TransactionId>,
    pub party: Party,
    pub task: String,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub attempts: u32,
    pub status: Option<u16>,
    pub body: Option<String>,
    /// The same as `status` and `body` for the NRC's answers (the names of earlier versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nrc_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nrc_body: Option<String>,
}

impl DeadLetter {
    /// Its job as replay queues it: due now, counted afresh (the give-up age starts over).
    pub fn replayed(self, now: DateTime<Utc>) -> Job {
        Job {
            due: now,
            attempts: 0,
            first_queued_at: now,
            last_error: None,
            ..self.job
        }
    }

    pub fn view(&self) -> DeadLetterView {
        let nrc = self.job.party() == Party::Nrc;
        DeadLetterView {
            id: self.job.id,
            event_id: self.event_id,
            vendor: self.vendor,
            transaction_id: self.transaction_id.clone(),
            party: self.job.party(),
            task: self.job.task.label(),
            at: self.at,
            reason: self.reason.clone(),
            attempts: self.attempts,
            status: self.status,
            body: self.body.clone(),
            nrc_status: self.status.filter(|_| nrc),
            nrc_body: self.body.clone().filter(|_| nrc),
        }
    }
}

/// Runs the jobs of one party: prepares the call (reads what it needs), makes it within its
/// own time bound, and says how it went. No retry, backoff or persistence code: the worker
/// and the store own those.
#[async_trait]
pub trait JobHandler: Send + Sync {
    async fn attempt(&self, job: &Job) -> Attempt;
}

/// How the worker treats one party's jobs.
#[derive(Debug, Clone)]
pub struct LaneSettings {
    pub party: Party,
    /// Jobs of this party in flight at once: an adaptive window between bounds, and the
    /// bound of the circuit's probe interval.
    pub pace: pace::PaceSettings,
    /// The longest one attempt may take, whatever the handler's own timeouts.
    pub timeout: Duration,
    pub backoff: backoff::Backoff,
    /// A job still failing with retryable errors this long after it was queued is
    /// dead-lettered.
    pub give_up_after: Duration,
    /// A job is run only once what queued it is durable (e.g. a confirmation to a vendor
    /// that would then forget what it sent): the worker waits for the commit in progress.
    pub after_commit: bool,
}
