//! The relay worker: takes due outcomes from the outbox, correlates them with their
//! registration (vendor transaction → zaak), and delivers them to the NRC, paced and with
//! retries; hopeless ones go to the dead letters.

pub mod backoff;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{watch, Notify, Semaphore};
use uuid::Uuid;

use crate::health::Health;
use crate::store::{DeliveryResult, OutboxItem, Store};
use crate::telemetry::Metrics;
use crate::zgw::{Notificatie, NrcClient, NrcError};
use backoff::{Backoff, Pacer};

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub kanaal: String,
    pub concurrency: usize,
    pub backoff: Backoff,
    pub give_up_after: Duration,
    pub park_timeout: Duration,
    /// The actie for Progress events, when they are relayed.
    pub progress_actie: Option<String>,
}

pub struct Relay {
    store: Arc<dyn Store>,
    nrc: Arc<NrcClient>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    wake: Arc<Notify>,
    settings: RelaySettings,
    pacer: Pacer,
    in_flight: Mutex<HashSet<Uuid>>,
}

/// The longest the worker sleeps without looking at the outbox (new due entries from a CLI
/// replay, a missed wake-up).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How often parked events are checked against the park timeout.
const PARK_SWEEP: Duration = Duration::from_secs(60);

impl Relay {
    pub fn new(
        store: Arc<dyn Store>,
        nrc: Arc<NrcClient>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        wake: Arc<Notify>,
        settings: RelaySettings,
    ) -> Arc<Relay> {
        Arc::new(Relay {
            pacer: Pacer::new(settings.backoff),
            store,
            nrc,
            metrics,
            health,
            wake,
            settings,
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// Runs until `stop` turns true, then waits for deliveries in flight to be recorded.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut last_sweep = Instant::now() - PARK_SWEEP;
        tracing::info!(
            concurrency = self.settings.concurrency,
            "relay worker started"
        );
        while !*stop.borrow() {
            self.health.relay_tick();
            if last_sweep.elapsed() >= PARK_SWEEP {
                last_sweep = Instant::now();
                self.expire_parked().await;
            }
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
            // The outbox is read under the in-flight lock: a delivery leaves `in_flight` only
            // after its result is in the store, so an entry read here is either still in
            // flight or still due. Read before taking the lock, a delivery finishing in
            // between would be sent to the NRC a second time.
            let fresh: Result<Vec<OutboxItem>, _> = {
                let mut f = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                self.store.due(now, free + f.len()).map(|due| {
                    due.into_iter()
                        .filter(|i| f.insert(i.event_id))
                        .take(free)
                        .collect()
                })
            };
            let fresh = match fresh {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox");
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            };
            if fresh.is_empty() {
                let wait = match self.store.next_due() {
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
            for item in fresh {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore open");
                let me = self.clone();
                tokio::spawn(async move {
                    let id = item.event_id;
                    me.deliver(item, permit).await;
                    me.in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                });
            }
        }
        // Let deliveries in flight record their result; anything else stays in the outbox.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.in_flight_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!("relay worker stopped");
    }

    fn in_flight_count(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    async fn expire_parked(&self) {
        let cutoff =
            Utc::now() - chrono::Duration::from_std(self.settings.park_timeout).unwrap_or_default();
        match self.store.expire_parked(cutoff).await {
            Ok(0) => {}
            Ok(n) => {
                self.metrics
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
    }

    /// One delivery. The permit bounds requests at the NRC, so it is released as soon as the
    /// NRC has answered; recording the result (a group commit) does not hold it.
    async fn deliver(&self, item: OutboxItem, permit: tokio::sync::OwnedSemaphorePermit) {
        let id = item.event_id;
        let result = self.attempt(&item).await;
        drop(permit);
        let label = match &result {
            DeliveryResult::Delivered { .. } => "delivered",
            DeliveryResult::Retry { .. } => "retry",
            DeliveryResult::DeadLetter { .. } => "dead_letter",
            DeliveryResult::Park => "parked",
        };
        self.metrics.deliveries.with_label_values(&[label]).inc();
        match &result {
            DeliveryResult::Delivered { .. } => {
                tracing::info!(event_id = %id, "delivered to the NRC")
            }
            DeliveryResult::Retry { due, error } => {
                tracing::warn!(event_id = %id, attempts = item.attempts + 1, %due, error = %error, "delivery failed; will retry")
            }
            DeliveryResult::DeadLetter { reason, .. } => {
                tracing::error!(event_id = %id, reason = %reason, "dead-lettered")
            }
            DeliveryResult::Park => tracing::info!(event_id = %id, "no registration; parked"),
        }
        // If this write fails the entry stays in the outbox and is tried again: at least once.
        if let Err(e) = self.store.complete(id, item.due, result).await {
            self.health.store_result(false);
            tracing::error!(event_id = %id, error = %e, "cannot record delivery result");
        }
    }

    async fn attempt(&self, item: &OutboxItem) -> DeliveryResult {
        let dead = |reason: &str| DeliveryResult::DeadLetter {
            reason: reason.to_string(),
            nrc_status: None,
            nrc_body: None,
        };
        let event = match self.store.event(item.event_id) {
            Ok(Some(e)) => e,
            Ok(None) => return dead("event ontbreekt in de opslag"),
            Err(e) => return self.retry(item, e.to_string()),
        };
        let registration = match self.store.registration(event.vendor, &event.transaction_id) {
            Ok(Some(r)) => r,
            Ok(None) => return DeliveryResult::Park,
            Err(e) => return self.retry(item, e.to_string()),
        };
        let Some(notificatie) = Notificatie::for_event(
            &self.settings.kanaal,
            &event,
            &registration,
            self.nrc.clock.now(),
            self.settings.progress_actie.as_deref(),
        ) else {
            return dead("uitkomst heeft geen actie voor het NRC");
        };
        let started = Instant::now();
        let sent = self.nrc.post_notificatie(&notificatie).await;
        let secs = started.elapsed().as_secs_f64();
        match sent {
            Ok(()) => {
                self.pacer.success();
                self.metrics
                    .delivery_seconds
                    .with_label_values(&["ok"])
                    .observe(secs);
                DeliveryResult::Delivered { at: Utc::now() }
            }
            Err(NrcError::Retryable {
                retry_after,
                message,
                ..
            }) => {
                self.pacer.failure(retry_after);
                self.metrics
                    .delivery_seconds
                    .with_label_values(&["retryable"])
                    .observe(secs);
                self.retry(item, message)
            }
            Err(NrcError::Permanent { status, body }) => {
                self.metrics
                    .delivery_seconds
                    .with_label_values(&["refused"])
                    .observe(secs);
                DeliveryResult::DeadLetter {
                    reason: format!("NRC weigerde de notificatie ({status})"),
                    nrc_status: Some(status),
                    nrc_body: Some(body),
                }
            }
        }
    }

    /// Next attempt with backoff, or the dead letters once the outcome is too old.
    fn retry(&self, item: &OutboxItem, error: String) -> DeliveryResult {
        let age = (Utc::now() - item.first_queued_at)
            .to_std()
            .unwrap_or_default();
        if age >= self.settings.give_up_after {
            return DeliveryResult::DeadLetter {
                reason: format!("NRC bleef onbereikbaar: {error}"),
                nrc_status: None,
                nrc_body: None,
            };
        }
        let delay = self.settings.backoff.delay(item.attempts + 1);
        DeliveryResult::Retry {
            due: Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
            error,
        }
    }
}
