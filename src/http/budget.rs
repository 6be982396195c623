//! A call budget towards a remote party that allows at most `calls` requests in any `window`
//! (PKIsigning: 100 per 60 s), counted as the party sees them. The party counts a request when
//! it arrives, somewhere between our sending it and our having its answer; so a request holds
//! its place from the moment it is sent until `window` after its answer arrived. Then no
//! window at the party can ever hold more than `calls` of them, however long each took.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// When the places of answered requests free up, oldest first.
    frees_at: VecDeque<Instant>,
}

#[derive(Debug)]
struct Inner {
    calls: usize,
    window: Duration,
    state: Mutex<State>,
    answered: Notify,
}

/// Shared by every caller towards one party.
#[derive(Debug, Clone)]
pub struct CallBudget(Arc<Inner>);

/// A place in the budget, held while a request is on its way; dropping it (answered, failed,
/// timed out, cancelled) keeps the place taken for the window.
#[derive(Debug)]
pub struct Place(Arc<Inner>);

impl Drop for Place {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        s.in_flight -= 1;
        s.frees_at.push_back(Instant::now() + self.0.window);
        drop(s);
        self.0.answered.notify_waiters();
    }
}

impl CallBudget {
    pub fn new(calls: usize, window: Duration) -> CallBudget {
        CallBudget(Arc::new(Inner {
            calls: calls.max(1),
            window,
            state: Mutex::new(State {
                in_flight: 0,
                frees_at: VecDeque::new(),
            }),
            answered: Notify::new(),
        }))
    }

    /// Waits for a place; hold it until the request has its answer.
    pub async fn place(&self) -> Place {
        loop {
            let answered = self.0.answered.notified();
            let wait_until = {
                let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                while s.frees_at.front().is_some_and(|t| *t <= now) {
                    s.frees_at.pop_front();
                }
                if s.in_flight + s.frees_at.len() < self.0.calls {
                    s.in_flight += 1;
                    return Place(self.0.clone());
                }
                s.frees_at.front().copied()
            };
            match wait_until {
                Some(t) => tokio::select! {
                    _ = tokio::time::sleep_until(t) => {}
                    _ = answered => {}
                },
                // Every place is held by a request on its way: wait for an answer.
                None => answered.await,
            }
        }
    }

    /// Requests on their way or answered within the window: what the party may count now.
    pub fn used(&self) -> usize {
        let s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        s.in_flight + s.frees_at.iter().filter(|t| **t > now).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 250 requests as fast as the budget lets them, each arriving at the party a little after
    /// it is sent and answered some time after that (paused clock: no real waiting).
    #[tokio::test(start_paused = true)]
    async fn no_window_at_the_party_ever_holds_more_than_the_budget() {
        let budget = CallBudget::new(100, Duration::from_secs(60));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..250u64 {
            let (budget, arrivals) = (budget.clone(), arrivals.clone());
            tasks.push(tokio::spawn(async move {
                let _place = budget.place().await;
                // In transit for 0–900 ms, answered 0–2 s later.
                tokio::time::sleep(Duration::from_millis((i * 37) % 900)).await;
                arrivals.lock().unwrap().push(Instant::now());
                tokio::time::sleep(Duration::from_millis((i * 53) % 2000)).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut at = arrivals.lock().unwrap().clone();
        at.sort();
        assert_eq!(at.len(), 250);
        for (i, first) in at.iter().enumerate() {
            let in_window = at[i..]
                .iter()
                .take_while(|t| **t < *first + Duration::from_secs(60))
                .count();
            assert!(in_window <= 100, "{in_window} arrivals within 60 s of #{i}");
        }
        // Not slower than needed: 250 requests take about two windows and a bit.
        let took = Instant::now() - start;
        assert!(took < Duration::from_secs(130), "{took:?}");
        assert!(took >= Duration::from_secs(120), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_request_keeps_its_place_for_the_window() {
        let budget = CallBudget::new(1, Duration::from_secs(10));
        let place = budget.place().await;
        drop(place);
        assert_eq!(budget.used(), 1);
        let before = Instant::now();
        let _second = budget.place().await;
        assert!(Instant::now() - before >= Duration::from_secs(10));
    }
}
