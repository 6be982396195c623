//! The one path every vendor surface records through: store, count, log, wake the relay.
//! Surfaces parse, authenticate and normalize; everything after that lives here once.

use std::sync::Arc;

use crate::event::NewEvent;
use crate::health::Health;
use crate::relay::worker::Wakers;
use crate::store::{NewQuarantine, QuarantineEntry, RawPayload, Recorded, Store, StoreError};
use crate::telemetry::Metrics;

#[derive(Clone)]
pub struct Intake {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Wakes the job queue's lanes when something became due.
    pub wakers: Wakers,
}

impl Intake {
    /// Whether callbacks can be recorded now (see `Health::store_writable`).
    pub fn store_writable(&self) -> bool {
        self.health.store_writable(self.store.as_ref())
    }

    /// Records a normalized callback; `Ok` means it is durable (or was already).
    pub async fn record(
        &self,
        event: NewEvent,
        payload: RawPayload,
    ) -> Result<Recorded, StoreError> {
        let (vendor, surface) = (event.vendor, event.surface);
        let result = self.store.record(event, payload).await;
        self.health.store_result(result.is_ok());
        match &result {
            Ok(Recorded::New(e)) => {
                self.metrics.callback(vendor.as_str(), surface, "recorded");
                crate::telemetry::note(|n| {
                    n.result = Some("recorded");
                    n.event_id = Some(e.id);
                    n.vendor = Some(e.vendor.as_str());
                    n.transaction_id = Some(e.transaction_id.to_string());
                    n.outcome = Some(e.outcome.label());
                    n.relay = Some(e.relay.label());
                });
                tracing::debug!(
                    event_id = %e.id,
                    vendor = %e.vendor,
                    transaction_id = %e.transaction_id,
                    outcome = e.outcome.label(),
                    relay = e.relay.label(),
                    "callback recorded"
                );
                if e.relay.is_pending() {
                    self.wakers.wake_all();
                }
            }
            Ok(Recorded::Duplicate { event_id }) => {
                self.metrics.callback(vendor.as_str(), surface, "duplicate");
                crate::telemetry::note(|n| {
                    n.result = Some("duplicate");
                    n.event_id = Some(*event_id);
                    n.vendor = Some(vendor.as_str());
                });
                tracing::debug!(%event_id, vendor = %vendor, surface, "duplicate delivery");
            }
            Err(e) => {
                self.metrics
                    .callback(vendor.as_str(), surface, "retry_later");
                tracing::error!(vendor = %vendor, surface, error = %e, "callback not recorded");
            }
        }
        result
    }

    /// Keeps a callback that can never be processed.
    pub async fn quarantine(
        &self,
        entry: NewQuarantine,
        payload: RawPayload,
    ) -> Result<QuarantineEntry, StoreError> {
        let (vendor, surface) = (entry.vendor, entry.surface);
        let result = self.store.quarantine(entry, payload).await;
        self.health.store_result(result.is_ok());
        match &result {
            Ok(q) => {
                self.metrics.callback(vendor.as_str(), surface, "discarded");
                crate::telemetry::note(|n| {
                    n.result = Some("quarantined");
                    n.vendor = Some(vendor.as_str());
                });
                tracing::warn!(quarantine_id = %q.id, vendor = %vendor, surface, reason = %q.reason, "callback quarantined");
            }
            Err(e) => {
                self.metrics
                    .callback(vendor.as_str(), surface, "retry_later");
                tracing::error!(vendor = %vendor, surface, error = %e, "callback not quarantined");
            }
        }
        result
    }
}
