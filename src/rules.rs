//! The rules of an event's journey, decided once for every store backend: whether a callback
//! is relayed at all (one terminal outcome per transaction), which step it waits on first, when
//! it parks for its registration, and what follows a finished step.
//!
//! The store reads the facts inside its atomic write (a sled writer job, a database
//! transaction), asks these functions, and writes what they decide; the decisions are pure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{NewEvent, NotRelayed, Outcome, RelayState, SigningEvent, Step, Vendor};
use crate::jobs::{Task, VendorTask};

/// Settings the rules depend on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Progress events are relayed too (otherwise they are recorded only).
    pub relay_progress: bool,
    /// Vendors whose completions put the signed documents into the DRC before the NRC hears
    /// of them (`documents = "upload"`).
    pub upload_documents: VendorSet,
}

/// A set of vendors, small enough to copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VendorSet(u32);

impl VendorSet {
    pub fn of(vendors: impl IntoIterator<Item = Vendor>) -> VendorSet {
        VendorSet(vendors.into_iter().fold(0, |m, v| m | Self::bit(v)))
    }

    pub fn contains(self, v: Vendor) -> bool {
        self.0 & Self::bit(v) != 0
    }

    fn bit(v: Vendor) -> u32 {
        let i = Vendor::ALL.iter().position(|x| *x == v).unwrap_or(31);
        1 << i
    }
}

/// A terminal outcome, as a transaction's first one is remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminalOutcome {
    Completed,
    Aborted,
}

impl TerminalOutcome {
    pub fn of(outcome: &Outcome) -> Option<TerminalOutcome> {
        match outcome {
            Outcome::Completed => Some(TerminalOutcome::Completed),
            Outcome::Aborted { .. } => Some(TerminalOutcome::Aborted),
            Outcome::Progress { .. } => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            TerminalOutcome::Completed => "completed",
            TerminalOutcome::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<TerminalOutcome> {
        match s {
            "completed" => Some(TerminalOutcome::Completed),
            "aborted" => Some(TerminalOutcome::Aborted),
            _ => None,
        }
    }
}

/// The first terminal outcome recorded for a transaction. It outlives its event (retention),
/// so that a late redelivery is still recognized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminal {
    pub event_id: Uuid,
    pub outcome: TerminalOutcome,
}

/// What the store knows, at the moment of recording, about the callback's transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordFacts {
    pub terminal: Option<Terminal>,
    pub registered: bool,
}

/// What to write for a new callback besides the event itself.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordPlan {
    pub relay: RelayState,
    /// From now on this event is the transaction's terminal outcome.
    pub claims_terminal: bool,
    /// The job to queue with it (none when parked or not relayed).
    pub job: Option<Task>,
}

/// A new callback with id `id`: relayed or not, and its first step.
pub fn record(policy: Policy, id: Uuid, new: &NewEvent, facts: RecordFacts) -> RecordPlan {
    let not_relayed = |why| RecordPlan {
        relay: RelayState::NotRelayed { why },
        claims_terminal: false,
        job: None,
    };
    let terminal = TerminalOutcome::of(&new.outcome);
    match (terminal, facts.terminal) {
        (Some(this), Some(first)) => {
            return not_relayed(if this == first.outcome {
                NotRelayed::RepeatedOutcome
            } else {
                NotRelayed::ConflictingOutcome
            })
        }
        (None, _) if !policy.relay_progress => return not_relayed(NotRelayed::Progress),
        _ => {}
    }
    let claims_terminal = terminal.is_some();
    match &new.follow_up {
        Some(f) => RecordPlan {
            relay: RelayState::Pending { step: Step::Vendor },
            claims_terminal,
            job: Some(Task::Vendor(VendorTask {
                vendor: new.vendor,
                event_id: Some(id),
                name: f.name.clone(),
                data: f.data.clone(),
            })),
        },
        None => {
            let (relay, job) = zaak_step(policy, id, new.vendor, &new.outcome, facts.registered);
            RecordPlan {
                relay,
                claims_terminal,
                job,
            }
        }
    }
}

/// The steps that need the zaak wait for the transaction's registration (parked without one):
/// first the signed documents into the DRC, for a completion of a vendor that uploads them
/// (the notification says the signed versions are there), then the NRC notification.
fn zaak_step(
    policy: Policy,
    id: Uuid,
    vendor: Vendor,
    outcome: &Outcome,
    registered: bool,
) -> (RelayState, Option<Task>) {
    if !registered {
        return (RelayState::Parked, None);
    }
    if *outcome == Outcome::Completed && policy.upload_documents.contains(vendor) {
        return (
            RelayState::Pending {
                step: Step::Documents,
            },
            Some(Task::Documents {
                event_id: id,
                progress: serde_json::Value::Null,
            }),
        );
    }
    notify_step(id)
}

fn notify_step(id: Uuid) -> (RelayState, Option<Task>) {
    (
        RelayState::Pending { step: Step::Notify },
        Some(Task::Notify { event_id: id }),
    )
}

/// What follows a finished step of `event`: the next step's job, or the end of the journey.
pub fn advance(
    policy: Policy,
    event: &SigningEvent,
    finished: Step,
    registered: bool,
    attempts: u32,
    at: DateTime<Utc>,
) -> (RelayState, Option<Task>) {
    match finished {
        Step::Vendor => zaak_step(policy, event.id, event.vendor, &event.outcome, registered),
        Step::Documents if registered => notify_step(event.id),
        Step::Documents => (RelayState::Parked, None),
        Step::Notify => (RelayState::Delivered { at, attempts }, None),
    }
}

/// A step found no registration (withdrawn meanwhile): park, unless one arrived meanwhile.
pub fn park(policy: Policy, event: &SigningEvent, registered: bool) -> (RelayState, Option<Task>) {
    zaak_step(policy, event.id, event.vendor, &event.outcome, registered)
}

/// A registration arrived for a parked event: it goes on with the first step that needs it.
pub fn release(policy: Policy, event: &SigningEvent) -> (RelayState, Task) {
    let (relay, job) = zaak_step(policy, event.id, event.vendor, &event.outcome, true);
    (relay, job.expect("a registered zaak step has a job"))
}

/// The vendor contradicted the callback: not relayed, and if it is the transaction's terminal
/// outcome, that claim is given up so that the vendor's next callback is relayed.
pub fn contradicted(event: &SigningEvent, terminal: Option<Terminal>) -> (RelayState, bool) {
    let release = terminal.is_some_and(|t| t.event_id == event.id);
    (
        RelayState::NotRelayed {
            why: NotRelayed::Contradicted,
        },
        release,
    )
}

/// A dead letter replayed: the event is pending at the step that failed.
pub fn replayed(task: &Task) -> RelayState {
    RelayState::Pending { step: task.step() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Caller, FollowUp, TransactionId, Vendor};

    fn new(outcome: Outcome, follow_up: bool) -> NewEvent {
        NewEvent {
            vendor: Vendor::Gosign,
            transaction_id: TransactionId::parse("T1").unwrap(),
            outcome,
            occurred_at: None,
            surface: "gosign.rest",
            dedup_key: "k".into(),
            documents: vec![],
            caller: Caller::default(),
            follow_up: follow_up.then(|| FollowUp {
                name: "verify".into(),
                data: serde_json::json!({}),
            }),
        }
    }

    const NOW: Policy = Policy {
        relay_progress: false,
        upload_documents: VendorSet(0),
    };

    fn facts(first: Option<TerminalOutcome>, registered: bool) -> RecordFacts {
        RecordFacts {
            terminal: first.map(|outcome| Terminal {
                event_id: Uuid::nil(),
                outcome,
            }),
            registered,
        }
    }

    #[test]
    fn the_first_terminal_outcome_is_relayed_and_later_ones_are_flagged() {
        let id = Uuid::now_v7();
        let first = record(NOW, id, &new(Outcome::Completed, false), facts(None, true));
        assert_eq!(first.relay, RelayState::Pending { step: Step::Notify });
        assert!(first.claims_terminal);
        assert_eq!(first.job, Some(Task::Notify { event_id: id }));
        let again = record(
            NOW,
            id,
            &new(Outcome::Completed, false),
            facts(Some(TerminalOutcome::Completed), true),
        );
        assert_eq!(
            (again.relay, again.job),
            (
                RelayState::NotRelayed {
                    why: NotRelayed::RepeatedOutcome
                },
                None
            )
        );
        let conflict = record(
            NOW,
            id,
            &new(Outcome::Aborted { reason: "x".into() }, true),
            facts(Some(TerminalOutcome::Completed), true),
        );
        assert_eq!(
            conflict.relay,
            RelayState::NotRelayed {
                why: NotRelayed::ConflictingOutcome
            }
        );
        assert!(!conflict.claims_terminal && conflict.job.is_none());
    }

    #[test]
    fn unregistered_outcomes_park_and_progress_is_kept_unless_configured() {
        let id = Uuid::now_v7();
        let parked = record(NOW, id, &new(Outcome::Completed, false), facts(None, false));
        assert_eq!((parked.relay, parked.job), (RelayState::Parked, None));
        let progress = Outcome::Progress { detail: "d".into() };
        let kept = record(NOW, id, &new(progress.clone(), false), facts(None, true));
        assert_eq!(
            kept.relay,
            RelayState::NotRelayed {
                why: NotRelayed::Progress
            }
        );
        let relayed = record(
            Policy {
                relay_progress: true,
                ..NOW
            },
            id,
            &new(progress, false),
            facts(Some(TerminalOutcome::Completed), true),
        );
        assert_eq!(relayed.relay, RelayState::Pending { step: Step::Notify });
        assert!(!relayed.claims_terminal);
    }

    #[test]
    fn a_contradicted_outcome_gives_up_its_claim_only_if_it_holds_it() {
        let mut event = sample_event(Uuid::now_v7());
        event.relay = RelayState::Pending { step: Step::Vendor };
        let mine = Terminal {
            event_id: event.id,
            outcome: TerminalOutcome::Completed,
        };
        let other = Terminal {
            event_id: Uuid::nil(),
            ..mine
        };
        let not_relayed = RelayState::NotRelayed {
            why: NotRelayed::Contradicted,
        };
        assert_eq!(
            contradicted(&event, Some(mine)),
            (not_relayed.clone(), true)
        );
        assert_eq!(
            contradicted(&event, Some(other)),
            (not_relayed.clone(), false)
        );
        assert_eq!(contradicted(&event, None), (not_relayed, false));
    }

    fn sample_event(id: Uuid) -> SigningEvent {
        SigningEvent {
            id,
            vendor: Vendor::Gosign,
            transaction_id: TransactionId::parse("T1").unwrap(),
            outcome: Outcome::Completed,
            occurred_at: None,
            received_at: Utc::now(),
            surface: "s".into(),
            dedup_key: "k".into(),
            archive_id: Uuid::nil(),
            documents: vec![],
            caller: Caller::default(),
            relay: RelayState::Parked,
        }
    }

    #[test]
    fn a_follow_up_runs_first_even_without_a_registration_and_then_the_zaak_step() {
        let id = Uuid::now_v7();
        let plan = record(NOW, id, &new(Outcome::Completed, true), facts(None, false));
        assert_eq!(plan.relay, RelayState::Pending { step: Step::Vendor });
        match &plan.job {
            Some(Task::Vendor(v)) => {
                assert_eq!((v.event_id, v.name.as_str()), (Some(id), "verify"))
            }
            other => panic!("{other:?}"),
        }
        let event = SigningEvent {
            relay: plan.relay,
            ..sample_event(id)
        };
        let now = Utc::now();
        assert_eq!(
            advance(NOW, &event, Step::Vendor, false, 1, now),
            (RelayState::Parked, None)
        );
        assert_eq!(
            advance(NOW, &event, Step::Vendor, true, 1, now),
            (
                RelayState::Pending { step: Step::Notify },
                Some(Task::Notify { event_id: id })
            )
        );
        assert_eq!(
            advance(NOW, &event, Step::Notify, true, 3, now),
            (
                RelayState::Delivered {
                    at: now,
                    attempts: 3
                },
                None
            )
        );
    }

    #[test]
    fn a_completion_of_an_uploading_vendor_goes_to_the_drc_first_and_an_abort_does_not() {
        let policy = Policy {
            upload_documents: VendorSet::of([Vendor::Gosign]),
            ..NOW
        };
        let id = Uuid::now_v7();
        let done = record(
            policy,
            id,
            &new(Outcome::Completed, false),
            facts(None, true),
        );
        assert_eq!(
            done.relay,
            RelayState::Pending {
                step: Step::Documents
            }
        );
        assert!(matches!(done.job, Some(Task::Documents { event_id, .. }) if event_id == id));
        let aborted = Outcome::Aborted { reason: "r".into() };
        let abort = record(policy, id, &new(aborted, false), facts(None, true));
        assert_eq!(abort.job, Some(Task::Notify { event_id: id }));
        // Another vendor's completion is notified directly.
        let mut other = new(Outcome::Completed, false);
        other.vendor = Vendor::Posten;
        assert_eq!(
            record(policy, id, &other, facts(None, true)).job,
            Some(Task::Notify { event_id: id })
        );
        let event = sample_event(id);
        let now = Utc::now();
        assert_eq!(
            advance(policy, &event, Step::Documents, true, 1, now),
            (
                RelayState::Pending { step: Step::Notify },
                Some(Task::Notify { event_id: id })
            )
        );
        assert_eq!(
            advance(policy, &event, Step::Documents, false, 1, now),
            (RelayState::Parked, None)
        );
        // A released completion starts with the documents.
        assert!(matches!(release(policy, &event).1, Task::Documents { .. }));
        assert!(matches!(release(NOW, &event).1, Task::Notify { .. }));
    }
}
