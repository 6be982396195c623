//! Retry timing of one job: exponential backoff with full jitter. (How hard a lane presses on
//! its party is `super::pace`'s.)

use std::time::Duration;

use rand::Rng;

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

    /// Half jitter: uniform in [ceiling / 2, ceiling], for a wait that must grow (a probe of
    /// a party that is down) yet not fall in step with other instances'.
    pub fn spread(&self, attempt: u32) -> Duration {
        let ceil = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(ceil / 2..=ceil))
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
}
