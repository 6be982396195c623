//! How hard a lane presses on its party: an adaptive window of requests in flight, in the
//! spirit of Vector's adaptive request concurrency.
//!
//! Each interval of about one round trip, the window compares the interval's mean RTT with a
//! moving baseline (an EWMA of earlier intervals, with its deviation). It grows by one when
//! the window was fully used and the RTT is not above the baseline (the party keeps up), and
//! shrinks by a tenth when the party pushed back (429, 503, 5xx, a timeout) or the RTT rose
//! clearly above the baseline (2.5 deviations: requests are queueing at the party). Once per
//! interval, however many requests of it failed. After an outage it starts again from the
//! minimum and doubles per interval up to the window it had (slow start), then goes on by one.
//! The window's rules read no clock (the caller passes `now`), so they are tested without
//! waiting. [`Pace`] puts the window, the party's circuit (`super::circuit`) and the requests in
//! flight together for a lane and its running jobs, and shows them as metrics.

use std::sync::Mutex;
use std::time::Duration;

use prometheus::{Gauge, IntCounter, IntGauge};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::circuit::{Change, Circuit, Gate, Ticket, Verdict};

/// The EWMA's weight of the newest interval.
const ALPHA: f64 = 0.4;
/// An RTT this many deviations above the baseline counts as back-pressure.
const DEVIATIONS: f64 = 2.5;
/// What a decrease keeps of the window.
const DECREASE: f64 = 0.9;
/// An RTT within this share of the baseline is noise, whatever the deviation (a baseline
/// seeded with equal RTTs has none).
const NOISE: f64 = 0.05;

/// The bounds of a lane's window and of its circuit's probe interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceSettings {
    /// The window never shrinks below this many requests in flight.
    pub min: usize,
    /// Nor grows beyond this many.
    pub max: usize,
    /// The longest wait between two probes of a party whose circuit is open.
    pub probe_max: Duration,
}

/// The default longest wait between probes of a party that is down.
pub const DEFAULT_PROBE_MAX: Duration = Duration::from_secs(5);

impl PaceSettings {
    /// A window that adapts between one request and `max`.
    pub fn up_to(max: usize) -> PaceSettings {
        PaceSettings {
            min: 1,
            max: max.max(1),
            probe_max: DEFAULT_PROBE_MAX,
        }
    }

    /// A window of exactly `n` requests (min = max).
    pub fn fixed(n: usize) -> PaceSettings {
        PaceSettings {
            min: n.max(1),
            ..PaceSettings::up_to(n)
        }
    }
}

/// A moving mean and variance (exponentially weighted).
#[derive(Debug, Clone, Copy, Default)]
struct Ewma {
    mean: f64,
    var: f64,
    seeded: bool,
}

impl Ewma {
    fn update(&mut self, x: f64) {
        if !self.seeded {
            *self = Ewma {
                mean: x,
                var: 0.0,
                seeded: true,
            };
            return;
        }
        let diff = x - self.mean;
        let incr = ALPHA * diff;
        self.mean += incr;
        self.var = (1.0 - ALPHA) * (self.var + diff * incr);
    }

    fn deviation(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }
}

/// The adaptive window of one lane.
#[derive(Debug)]
pub struct Window {
    min: usize,
    max: usize,
    limit: usize,
    /// Below it the window doubles per interval (slow start); from it on it grows by one.
    threshold: usize,
    baseline: Ewma,
    /// RTTs (seconds) of this interval's answers.
    sum: f64,
    count: u32,
    /// The window was fully used during this interval.
    full: bool,
    /// The party pushed back during this interval.
    pressed: bool,
    /// When this interval ends.
    next: Option<Instant>,
}

impl Window {
    /// Starts at the minimum and grows in slow start up to the maximum.
    pub fn new(s: &PaceSettings) -> Window {
        let min = s.min.max(1);
        let max = s.max.max(min);
        Window {
            min,
            max,
            limit: min,
            threshold: max,
            baseline: Ewma::default(),
            sum: 0.0,
            count: 0,
            full: false,
            pressed: false,
            next: None,
        }
    }

    /// Requests allowed in flight now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The baseline RTT, once there is one.
    pub fn rtt(&self) -> Option<Duration> {
        self.baseline
            .seeded
            .then(|| Duration::from_secs_f64(self.baseline.mean))
    }

    /// A request was started with `in_flight` requests (itself included) now in flight.
    pub fn started(&mut self, in_flight: usize) {
        if in_flight >= self.limit {
            self.full = true;
        }
    }

    /// The party answered (whatever it said) after `rtt`.
    pub fn answered(&mut self, rtt: Duration, now: Instant) {
        self.sum += rtt.as_secs_f64();
        self.count += 1;
        self.adjust(now);
    }

    /// The party pushed back (429, 503, 5xx, a timeout, no connection): a tenth less at
    /// once, and once only until an interval has passed, however many requests of the
    /// window fail.
    pub fn pressed(&mut self, now: Instant) {
        if self.pressed && self.next.is_some_and(|n| now < n) {
            return;
        }
        self.decrease();
        let next = self
            .baseline
            .seeded
            .then(|| now + Duration::from_secs_f64(self.baseline.mean));
        self.reset(next);
        self.pressed = true;
    }

    /// After an outage: from the minimum again, doubling up to the window it had.
    pub fn restart(&mut self) {
        self.threshold = self.limit.max(self.min);
        self.limit = self.min;
        self.reset(None);
    }

    fn reset(&mut self, next: Option<Instant>) {
        self.sum = 0.0;
        self.count = 0;
        self.full = false;
        self.pressed = false;
        self.next = next;
    }

    fn decrease(&mut self) {
        self.limit = ((self.limit as f64 * DECREASE) as usize).max(self.min);
        self.threshold = self.limit;
    }

    /// At the end of an interval: grow, shrink or stay, and move the baseline.
    fn adjust(&mut self, now: Instant) {
        let current = (self.count > 0).then(|| self.sum / f64::from(self.count));
        if !self.baseline.seeded {
            // The first answers only give the baseline.
            if let Some(c) = current {
                self.baseline.update(c);
                self.reset(Some(now + Duration::from_secs_f64(c)));
            }
            return;
        }
        if self.next.is_some_and(|n| now < n) {
            return;
        }
        let base = self.baseline.mean;
        // An interval that was pushed back has had its decrease.
        if !self.pressed {
            let tolerance = (DEVIATIONS * self.baseline.deviation()).max(base * NOISE);
            if current.is_some_and(|c| c > base + tolerance) {
                self.decrease();
            } else if self.full && current.is_some_and(|c| c <= base) && self.limit < self.max {
                self.limit = if self.limit < self.threshold {
                    (self.limit * 2).min(self.threshold)
                } else {
                    self.limit + 1
                }
                .min(self.max);
            }
        }
        if let Some(c) = current {
            self.baseline.update(c);
        }
        let length = current.unwrap_or(base).max(base);
        self.reset(Some(now + Duration::from_secs_f64(length)));
    }
}

/// A lane's pacing, shared by the lane and its running jobs: the adaptive window, the
/// party's circuit and the requests in flight.
pub struct Pace {
    inner: Mutex<Inner>,
    /// A request ended or the circuit changed: the lane may start more.
    changed: Notify,
    gauges: Option<PaceGauges>,
}

struct Inner {
    window: Window,
    circuit: Circuit,
    in_flight: usize,
}

/// The party's figures as `/metrics` shows them, labelled by whoever owns the registry (the
/// job model knows no metrics registry).
pub struct PaceGauges {
    pub window: IntGauge,
    pub in_flight: IntGauge,
    pub rtt: Gauge,
    pub circuit_open: IntGauge,
    pub circuit_opened: IntCounter,
}

/// A request in flight, as the pace counts it.
#[derive(Debug)]
pub struct Started {
    ticket: Ticket,
    at: Instant,
}

/// A change of the circuit, with what the lane tells the log and readiness.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub change: Change,
    /// Why the circuit is open.
    pub cause: Option<String>,
    /// The party's refusal of signrelay itself, until it answers again.
    pub refusal: Option<String>,
    /// This change came of a refusal.
    pub refused: bool,
}

impl Pace {
    /// The circuit probes after `backoff.initial` at first and obeys a `Retry-After` up to
    /// `backoff.max`.
    pub fn new(settings: &PaceSettings, backoff: Backoff, gauges: Option<PaceGauges>) -> Pace {
        let pace = Pace {
            inner: Mutex::new(Inner {
                window: Window::new(settings),
                circuit: Circuit::new(backoff.initial, settings.probe_max, backoff.max),
                in_flight: 0,
            }),
            changed: Notify::new(),
            gauges,
        };
        pace.show(&pace.lock());
        pace
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many requests may start now; or, when none may, until when to wait (`None`: until
    /// [`Pace::changed`]).
    pub fn admit(&self) -> Result<usize, Option<Instant>> {
        let mut s = self.lock();
        match s.circuit.admit(Instant::now()) {
            Gate::Closed => match s.window.limit().saturating_sub(s.in_flight) {
                0 => Err(None),
                free => Ok(free),
            },
            Gate::Probe => Ok(1),
            Gate::Wait(until) => Err(until),
        }
    }

    /// A request starts, if there is still room for it.
    pub fn start(&self) -> Option<Started> {
        let mut s = self.lock();
        let room = match s.circuit.admit(Instant::now()) {
            Gate::Closed => s.in_flight < s.window.limit(),
            Gate::Probe => true,
            Gate::Wait(_) => false,
        };
        if !room {
            return None;
        }
        s.in_flight += 1;
        let n = s.in_flight;
        s.window.started(n);
        let ticket = s.circuit.start();
        self.show(&s);
        Some(Started {
            ticket,
            at: Instant::now(),
        })
    }

    /// A request ended: what it tells of the party adjusts the window and the circuit.
    pub fn finish(&self, started: Started, verdict: Verdict) -> Option<Transition> {
        let now = Instant::now();
        let refused = matches!(verdict, Verdict::Refusing { .. });
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        // The RTT of a request from before the circuit last changed says nothing of now.
        if s.circuit.is_current(started.ticket) {
            match &verdict {
                Verdict::Answered => s.window.answered(now - started.at, now),
                Verdict::Failed { .. } => s.window.pressed(now),
                Verdict::Refusing { .. } | Verdict::Neutral => {}
            }
        }
        let change = s.circuit.finish(started.ticket, verdict, now);
        if change == Some(Change::Closed) {
            s.window.restart();
        }
        if let (Some(Change::Opened { first: true }), Some(g)) = (change, &self.gauges) {
            g.circuit_opened.inc();
        }
        self.show(&s);
        let transition = change.map(|change| Transition {
            change,
            cause: s.circuit.cause().map(String::from),
            refusal: s.circuit.refusal().map(String::from),
            refused,
        });
        drop(s);
        self.changed.notify_one();
        transition
    }

    /// Waits until a request ends or the circuit changes (a wake-up stored before the lane
    /// waits is not lost).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    fn show(&self, s: &Inner) {
        if let Some(g) = &self.gauges {
            g.window.set(s.window.limit() as i64);
            g.in_flight.set(s.in_flight as i64);
            g.rtt.set(s.window.rtt().map_or(0.0, |d| d.as_secs_f64()));
            g.circuit_open.set(i64::from(!s.circuit.is_closed()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Runs intervals of `rtt` with the window fully used; returns the limits seen.
    fn intervals(w: &mut Window, now: &mut Instant, n: usize, rtt: Duration) -> Vec<usize> {
        let mut seen = Vec::new();
        for _ in 0..n {
            w.started(w.limit());
            *now += rtt;
            w.answered(rtt, *now);
            seen.push(w.limit());
        }
        seen
    }

    fn window(min: usize, max: usize) -> Window {
        Window::new(&PaceSettings {
            min,
            max,
            probe_max: DEFAULT_PROBE_MAX,
        })
    }

    #[test]
    fn grows_in_slow_start_then_by_one_while_the_rtt_stays_flat() {
        let (mut w, mut now) = (window(1, 40), Instant::now());
        let seen = intervals(&mut w, &mut now, 8, 50 * MS);
        // The first answer only gives the baseline.
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 40, 40]);
        assert_eq!(w.rtt(), Some(50 * MS));

        let (mut w, mut now) = (window(2, 40), Instant::now());
        intervals(&mut w, &mut now, 4, 50 * MS);
        assert_eq!(w.limit(), 16);
        w.pressed(now);
        assert_eq!(w.limit(), 14, "a tenth less");
        // The interval of the decrease, then one more each.
        assert_eq!(intervals(&mut w, &mut now, 3, 50 * MS), [14, 15, 16]);
    }

    #[test]
    fn a_window_not_fully_used_does_not_grow() {
        let (mut w, mut now) = (window(1, 40), Instant::now());
        intervals(&mut w, &mut now, 3, 50 * MS);
        assert_eq!(w.limit(), 4);
        for _ in 0..10 {
            w.started(1);
            now += 50 * MS;
            w.answered(50 * MS, now);
        }
        assert_eq!(w.limit(), 4);
    }

    #[test]
    fn back_pressure_shrinks_the_window_once_per_interval() {
        let (mut w, mut now) = (window(1, 64), Instant::now());
        intervals(&mut w, &mut now, 7, 100 * MS);
        assert_eq!(w.limit(), 64);
        // Every request in flight fails at once: one decrease.
        now += MS;
        for _ in 0..64 {
            w.pressed(now);
        }
        assert_eq!(w.limit(), 57);
        // The next interval's failures: one more.
        now += 100 * MS;
        for _ in 0..10 {
            w.pressed(now);
        }
        assert_eq!(w.limit(), 51);
        // Never below the minimum.
        for _ in 0..100 {
            now += 100 * MS;
            w.pressed(now);
        }
        assert_eq!(w.limit(), 1);
    }

    #[test]
    fn a_rising_rtt_shrinks_the_window_and_ends_slow_start() {
        let (mut w, mut now) = (window(1, 64), Instant::now());
        intervals(&mut w, &mut now, 5, 50 * MS);
        assert_eq!(w.limit(), 16);
        // Noise within a twentieth: no change.
        assert_eq!(intervals(&mut w, &mut now, 1, 52 * MS), [16]);
        // Queueing at the party: twice the RTT.
        assert_eq!(intervals(&mut w, &mut now, 1, 100 * MS), [14]);
        // Back at the baseline or below it: at most one more per interval, no more doubling.
        let seen = intervals(&mut w, &mut now, 6, 50 * MS);
        assert!(
            seen.windows(2).all(|p| p[1] <= p[0] + 1) && seen[5] > 14,
            "{seen:?}"
        );
    }

    #[test]
    fn restart_begins_at_the_minimum_and_doubles_up_to_the_old_window() {
        let (mut w, mut now) = (window(1, 100), Instant::now());
        intervals(&mut w, &mut now, 7, 20 * MS);
        for _ in 0..2 {
            now += 20 * MS;
            w.pressed(now);
        }
        assert_eq!(w.limit(), 51);
        w.restart();
        assert_eq!(w.limit(), 1);
        assert_eq!(
            intervals(&mut w, &mut now, 8, 20 * MS),
            [2, 4, 8, 16, 32, 51, 52, 53]
        );
    }

    #[test]
    fn a_fixed_window_stays_fixed() {
        let (mut w, mut now) = (Window::new(&PaceSettings::fixed(6)), Instant::now());
        assert_eq!(w.limit(), 6);
        intervals(&mut w, &mut now, 5, 10 * MS);
        w.pressed(now + 100 * MS);
        assert_eq!(w.limit(), 6);
    }
}
