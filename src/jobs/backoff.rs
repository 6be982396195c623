//! Retry timing: exponential backoff with full jitter, and a shared pace gate so that a
//! struggling NRC sees the whole relay slow down, not just the one delivery.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The ceiling for attempt `n` (1-based): initial · 2^(n-1), capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Full jitter: uniform in [0, ceiling], so retries of many outcomes spread out.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceil = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ceil))
    }
}

/// Closes for a while after NRC trouble; every delivery waits for it to open.
#[derive(Debug)]
pub struct Pacer {
    backoff: Backoff,
    state: Mutex<PaceState>,
}

#[derive(Debug, Default)]
struct PaceState {
    failures: u32,
    closed_until: Option<Instant>,
}

impl Pacer {
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            state: Mutex::new(PaceState::default()),
        }
    }

    /// When deliveries may go again (`None`: now).
    pub fn closed_until(&self) -> Option<Instant> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.closed_until.filter(|t| *t > Instant::now())
    }

    pub fn success(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.failures = 0;
    }

    /// A retryable failure: close for the NRC's `Retry-After` if it gave one, else for a
    /// jittered backoff that grows with consecutive failures.
    pub fn failure(&self, retry_after: Option<Duration>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.failures = s.failures.saturating_add(1);
        let pause = retry_after
            .map(|d| d.min(self.backoff.max))
            .unwrap_or_else(|| self.backoff.delay(s.failures));
        let until = Instant::now() + pause;
        if s.closed_until.is_none_or(|t| t < until) {
            s.closed_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(400));
        assert_eq!(b.ceiling(60), Duration::from_secs(1));
        for n in 1..20 {
            assert!(b.delay(n) <= b.ceiling(n));
        }
    }

    #[tokio::test]
    async fn retry_after_closes_the_gate_for_that_long() {
        let p = Pacer::new(Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(60),
        });
        assert!(p.closed_until().is_none());
        p.failure(Some(Duration::from_secs(5)));
        let until = p.closed_until().expect("closed");
        assert!(until >= Instant::now() + Duration::from_secs(4));
    }
}
