//! What the exit URL's browser waits for: the outcome of its status fetch, as the job that
//! fetched it saw it, in this process's memory only (the outcome itself is recorded durably
//! by the job; this only decides which page the browser goes on to).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::event::Outcome;

/// What a fetch saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Outcome(Outcome),
    /// Not known yet (Posten slow, down, or not finished).
    Processing,
    /// Never (a forged exit URL, a used-up token).
    Invalid,
}

/// Entries live this long; the board never holds more than `MAX`.
const KEEP: Duration = Duration::from_secs(600);
const MAX: usize = 10_000;

#[derive(Clone, Default)]
pub struct Board {
    seen: Arc<Mutex<HashMap<Uuid, (Instant, Seen)>>>,
    changed: Arc<Notify>,
}

impl Board {
    pub fn publish(&self, job: Uuid, s: Seen) {
        let mut m = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX {
            m.retain(|_, (at, _)| at.elapsed() < KEEP);
            if m.len() >= MAX {
                m.clear();
            }
        }
        m.insert(job, (Instant::now(), s));
        drop(m);
        self.changed.notify_waiters();
    }

    fn get(&self, job: Uuid) -> Option<Seen> {
        let m = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&job).map(|(_, s)| s.clone())
    }

    /// What the job has seen by `within`: an outcome or invalid as soon as it has, otherwise
    /// whatever it saw last (or nothing) when the time is up.
    pub async fn wait(&self, job: Uuid, within: Duration) -> Option<Seen> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            match self.get(job) {
                Some(s @ (Seen::Outcome(_) | Seen::Invalid)) => return Some(s),
                last => {
                    if tokio::time::Instant::now() >= deadline {
                        return last;
                    }
                }
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}
