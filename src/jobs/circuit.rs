//! A party's circuit breaker: an outage counts once, and a party that is down is asked with a
//! single request at a bounded interval.
//!
//! Closed: requests go as the window allows. [`OPEN_AFTER`] party failures in a row open it,
//! counting only requests started since the circuit last changed, so that the whole window
//! failing at once is one outage, not one per request; the party's `Retry-After`, or its
//! refusal of signrelay itself (credentials), opens it at once. Open: nothing goes until the
//! probe time — the party's `Retry-After` if it gave one, else the initial backoff doubled per
//! failed probe, at most `probe_max`, jittered. Half-open: one request, the probe. Its answer
//! closes the circuit (the window then starts again from its minimum); its failure opens it
//! again for longer. No clock is read here: the caller passes `now`.

use std::time::Duration;

use tokio::time::Instant;

use super::backoff::Backoff;

/// Party failures in a row (of requests started since the last change) that open the circuit.
pub const OPEN_AFTER: u32 = 3;

/// How one request's end bears on the circuit.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The party answered (done, or a refusal of that one request).
    Answered,
    /// The party failed: 5xx, 429, a timeout, no connection.
    Failed {
        retry_after: Option<Duration>,
        cause: String,
    },
    /// The party refuses signrelay itself (401/403: credentials, rights): nothing will go
    /// until it accepts again. `reason` names the refusal (the same refusal again is no
    /// news); `answer` is the party's own words, for the log and readiness.
    Refusing { reason: String, answer: String },
    /// Nothing learned about the party (a local failure, a parked job).
    Neutral,
}

/// What the lane may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Send as the window allows.
    Closed,
    /// Send one request, the probe.
    Probe,
    /// Send nothing until then (`None`: until a request in flight ends).
    Wait(Option<Instant>),
}

/// A request's place in the circuit's history, taken when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    probe: bool,
}

/// What changed with a request's end, for the log and the lane's readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The circuit opened (`first`: it was closed) and the cause is new.
    Opened {
        first: bool,
    },
    /// A probe failed for the same cause as before.
    StillOpen,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
pub struct Circuit {
    state: State,
    /// Changes with every change of state: results of requests started before it are ignored.
    generation: u64,
    /// Party failures in a row in this generation.
    failures: u32,
    /// Failed probes since the circuit opened.
    probes: u32,
    initial: Duration,
    probe_max: Duration,
    retry_after_max: Duration,
    cause: Option<String>,
    refusal: Option<String>,
}

impl Circuit {
    /// Probes `initial` after opening, doubling up to `probe_max`; a `Retry-After` is obeyed
    /// up to `retry_after_max`.
    pub fn new(initial: Duration, probe_max: Duration, retry_after_max: Duration) -> Circuit {
        Circuit {
            state: State::Closed,
            generation: 0,
            failures: 0,
            probes: 0,
            initial: initial.min(probe_max),
            probe_max,
            retry_after_max,
            cause: None,
            refusal: None,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Why the circuit is open.
    pub fn cause(&self) -> Option<&str> {
        self.cause.as_deref()
    }

    /// The party's refusal of signrelay, until it answers again.
    pub fn refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }

    /// The request started since the circuit last changed.
    pub fn is_current(&self, ticket: Ticket) -> bool {
        ticket.generation == self.generation
    }

    pub fn admit(&mut self, now: Instant) -> Gate {
        match self.state {
            State::Closed => Gate::Closed,
            State::Open { until } if now < until => Gate::Wait(Some(until)),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: false };
                Gate::Probe
            }
            State::HalfOpen { probing: true } => Gate::Wait(None),
        }
    }

    /// A request starts (after `admit` let it).
    pub fn start(&mut self) -> Ticket {
        let probe = self.state == (State::HalfOpen { probing: false });
        if probe {
            self.state = State::HalfOpen { probing: true };
        }
        Ticket {
            generation: self.generation,
            probe,
        }
    }

    /// A request ended.
    pub fn finish(&mut self, ticket: Ticket, verdict: Verdict, now: Instant) -> Option<Change> {
        if ticket.generation != self.generation {
            return None;
        }
        match verdict {
            Verdict::Answered => {
                self.failures = 0;
                self.refusal = None;
                if self.is_closed() {
                    return None;
                }
                self.state = State::Closed;
                self.generation += 1;
                self.probes = 0;
                self.cause = None;
                Some(Change::Closed)
            }
            Verdict::Failed { retry_after, cause } => {
                self.failures += 1;
                if ticket.probe || retry_after.is_some() || self.failures >= OPEN_AFTER {
                    Some(self.open(ticket.probe, retry_after, cause, now))
                } else {
                    None
                }
            }
            Verdict::Refusing { reason, answer } => {
                self.refusal = Some(answer);
                Some(self.open(ticket.probe, None, reason, now))
            }
            Verdict::Neutral => {
                if ticket.probe {
                    self.state = State::HalfOpen { probing: false };
                }
                None
            }
        }
    }

    fn open(
        &mut self,
        probe: bool,
        retry_after: Option<Duration>,
        cause: String,
        now: Instant,
    ) -> Change {
        let first = self.is_closed();
        self.probes = if probe { self.probes + 1 } else { 0 };
        let pause = match retry_after {
            Some(d) => d.min(self.retry_after_max),
            None => self.interval(),
        };
        self.state = State::Open { until: now + pause };
        self.generation += 1;
        self.failures = 0;
        let new_cause = self.cause.as_deref() != Some(cause.as_str());
        self.cause = Some(cause);
        if first || new_cause {
            Change::Opened { first }
        } else {
            Change::StillOpen
        }
    }

    /// The wait before the next probe: doubled per failed probe, at most `probe_max`, and
    /// jittered (between half and all of it) so that instances do not probe in step.
    fn interval(&self) -> Duration {
        Backoff {
            initial: self.initial,
            max: self.probe_max,
        }
        .spread(self.probes + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn failed() -> Verdict {
        Verdict::Failed {
            retry_after: None,
            cause: "NRC connection failed".into(),
        }
    }

    fn circuit() -> Circuit {
        Circuit::new(100 * MS, 1000 * MS, 60_000 * MS)
    }

    /// Waits for the probe's turn; returns how long that was.
    fn until_probe(c: &mut Circuit, now: &mut Instant) -> Duration {
        let start = *now;
        loop {
            match c.admit(*now) {
                Gate::Probe => return *now - start,
                Gate::Wait(Some(t)) => *now = t,
                other => panic!("{other:?} while open"),
            }
        }
    }

    #[test]
    fn a_whole_window_failing_at_once_is_one_outage() {
        let (mut c, mut now) = (circuit(), Instant::now());
        let tickets: Vec<Ticket> = (0..32).map(|_| c.start()).collect();
        let changes: Vec<_> = tickets
            .into_iter()
            .filter_map(|t| c.finish(t, failed(), now))
            .collect();
        assert_eq!(changes, [Change::Opened { first: true }]);
        // The first probe comes after the initial interval, not after 32 failures' backoff.
        let waited = until_probe(&mut c, &mut now);
        assert!(waited >= 50 * MS && waited <= 100 * MS, "{waited:?}");
    }

    #[test]
    fn fewer_failures_in_a_row_than_the_threshold_leave_it_closed() {
        let (mut c, now) = (circuit(), Instant::now());
        for _ in 0..5 {
            for _ in 0..OPEN_AFTER - 1 {
                let t = c.start();
                assert_eq!(c.finish(t, failed(), now), None);
            }
            let t = c.start();
            assert_eq!(c.finish(t, Verdict::Answered, now), None);
        }
        assert_eq!(c.admit(now), Gate::Closed);
    }

    #[test]
    fn half_open_sends_one_probe_whose_answer_closes_the_circuit() {
        let (mut c, mut now) = (circuit(), Instant::now());
        let t = c.start();
        c.finish(
            t,
            Verdict::Failed {
                retry_after: Some(5000 * MS),
                cause: "NRC answered 503".into(),
            },
            now,
        );
        // Retry-After wins over the probe interval.
        assert_eq!(until_probe(&mut c, &mut now), 5000 * MS);
        let probe = c.start();
        assert_eq!(
            c.admit(now),
            Gate::Wait(None),
            "a second request while probing"
        );
        assert_eq!(
            c.finish(probe, Verdict::Answered, now),
            Some(Change::Closed)
        );
        assert_eq!(c.admit(now), Gate::Closed);
        assert_eq!(c.cause(), None);
    }

    #[test]
    fn failed_probes_wait_longer_up_to_the_bound() {
        let (mut c, mut now) = (circuit(), Instant::now());
        for _ in 0..OPEN_AFTER {
            let t = c.start();
            c.finish(t, failed(), now);
        }
        let mut waits = Vec::new();
        let mut changes = Vec::new();
        for _ in 0..8 {
            waits.push(until_probe(&mut c, &mut now));
            let probe = c.start();
            changes.push(c.finish(probe, failed(), now));
        }
        assert!(waits.iter().all(|w| *w <= 1000 * MS), "{waits:?}");
        assert!(waits[7] >= 500 * MS, "{waits:?}");
        // The same cause again is not news.
        assert!(changes.iter().all(|c| *c == Some(Change::StillOpen)));
    }

    #[test]
    fn results_of_requests_started_before_it_opened_do_not_count() {
        let (mut c, mut now) = (circuit(), Instant::now());
        let old: Vec<Ticket> = (0..10).map(|_| c.start()).collect();
        for t in &old[..3] {
            c.finish(*t, failed(), now);
        }
        until_probe(&mut c, &mut now);
        let probe = c.start();
        // A late success of an old request neither closes the circuit nor lets more through.
        assert_eq!(c.finish(old[3], Verdict::Answered, now), None);
        assert_eq!(c.admit(now), Gate::Wait(None));
        assert_eq!(
            c.finish(probe, Verdict::Answered, now),
            Some(Change::Closed)
        );
        // Late failures of old requests do not open it again.
        for t in &old[4..] {
            assert_eq!(c.finish(*t, failed(), now), None);
        }
        assert_eq!(c.admit(now), Gate::Closed);
    }

    #[test]
    fn a_refusal_opens_at_once_and_is_kept_until_the_party_answers() {
        let (mut c, mut now) = (circuit(), Instant::now());
        let t = c.start();
        let refusing = Verdict::Refusing {
            reason: "NRC answered 403".into(),
            answer: "NRC answered 403: Client credentials zijn niet geldig".into(),
        };
        assert_eq!(
            c.finish(t, refusing.clone(), now),
            Some(Change::Opened { first: true })
        );
        let answer = Some("NRC answered 403: Client credentials zijn niet geldig");
        assert_eq!(c.refusal(), answer);
        // The same refusal again is no news.
        until_probe(&mut c, &mut now);
        let probe = c.start();
        assert_eq!(c.finish(probe, refusing, now), Some(Change::StillOpen));
        until_probe(&mut c, &mut now);
        let probe = c.start();
        c.finish(probe, failed(), now);
        assert_eq!(c.refusal(), answer, "not answered yet");
        until_probe(&mut c, &mut now);
        let probe = c.start();
        c.finish(probe, Verdict::Answered, now);
        assert_eq!(c.refusal(), None);
        assert!(c.is_closed());
    }

    #[test]
    fn a_probe_that_learns_nothing_lets_another_go() {
        let (mut c, mut now) = (circuit(), Instant::now());
        for _ in 0..OPEN_AFTER {
            let t = c.start();
            c.finish(t, failed(), now);
        }
        until_probe(&mut c, &mut now);
        let probe = c.start();
        assert_eq!(c.finish(probe, Verdict::Neutral, now), None);
        assert_eq!(c.admit(now), Gate::Probe);
    }
}
