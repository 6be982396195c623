//! The kanaal: made sure of before the NRC's lane runs, and again whenever the NRC answers
//! that it does not know it (removed, or its database restored without it). While the kanaal
//! is not there the lane waits; why is said in the log (once per change of the NRC's answer),
//! in `/readyz` and in `nrc_kanaal_ready` / `nrc_kanaal_failures_total`. Checks are retried
//! with a growing, bounded interval.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::health::Health;
use crate::jobs::backoff::Backoff;
use crate::telemetry::Metrics;
use crate::zgw::NrcClient;

/// What the kanaal bootstrap needs.
#[derive(Debug, Clone)]
pub struct KanaalSettings {
    pub kanaal: String,
    pub documentatie_link: String,
    pub filters: Vec<String>,
    /// Create the kanaal when the NRC lacks it (`nrc.ensure_kanaal`); off, signrelay neither
    /// checks nor creates it.
    pub ensure: bool,
    /// The first retry after `initial`, doubling up to `max`.
    pub retry: Backoff,
}

/// Keeps the kanaal and opens the NRC lane's gate while it is there.
pub struct KanaalKeeper {
    nrc: Arc<NrcClient>,
    settings: KanaalSettings,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    ready: watch::Sender<bool>,
    recheck: Notify,
}

impl KanaalKeeper {
    pub fn new(
        nrc: Arc<NrcClient>,
        settings: KanaalSettings,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Arc<KanaalKeeper> {
        let ensure = settings.ensure;
        if ensure {
            health.kanaal(Err(format!(
                "kanaal {} not checked at the NRC yet",
                settings.kanaal
            )));
        } else {
            metrics.kanaal_ready.set(1);
        }
        Arc::new(KanaalKeeper {
            nrc,
            settings,
            health,
            metrics,
            ready: watch::channel(!ensure).0,
            recheck: Notify::new(),
        })
    }

    /// Open while the kanaal exists: the NRC lane's gate.
    pub fn gate(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// The NRC answered that it does not know the kanaal. True when it is being made again
    /// (the lane waits meanwhile); false when that is not signrelay's to do.
    pub fn gone(&self, answer: &str) -> bool {
        if !self.settings.ensure {
            return false;
        }
        if self.ready.send_replace(false) {
            let answer: String = answer.chars().take(500).collect();
            tracing::warn!(kanaal = %self.settings.kanaal, answer, "the NRC does not know the kanaal (any more); making it again");
            self.metrics.kanaal_ready.set(0);
            self.health.kanaal(Err(format!(
                "the NRC does not know kanaal {}; making it again",
                self.settings.kanaal
            )));
            self.recheck.notify_one();
        }
        true
    }

    /// Makes sure of the kanaal, then again each time it is gone, until `stop`.
    pub async fn keep(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if !self.settings.ensure {
            return;
        }
        loop {
            if !self.establish(&mut stop).await {
                return;
            }
            tokio::select! {
                _ = self.recheck.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Asks until the kanaal exists; false on stop.
    async fn establish(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let k = &self.settings;
        let mut attempt = 0;
        let mut last: Option<String> = None;
        loop {
            self.health.relay_tick();
            match self
                .nrc
                .ensure_kanaal(&k.kanaal, &k.documentatie_link, &k.filters)
                .await
            {
                Ok(state) => {
                    tracing::info!(kanaal = %k.kanaal, ?state, "kanaal ready");
                    self.health.kanaal(Ok(()));
                    self.metrics.kanaal_ready.set(1);
                    self.ready.send_replace(true);
                    return true;
                }
                Err(e) => {
                    attempt += 1;
                    let answer = e.describe();
                    let status = e
                        .status()
                        .map_or_else(|| "unreachable".to_string(), |s| s.to_string());
                    self.metrics
                        .kanaal_failures
                        .with_label_values(&[&status])
                        .inc();
                    let kind = e.kind();
                    if last.as_deref() != Some(kind.as_str()) {
                        tracing::warn!(kanaal = %k.kanaal, answer = %answer, documentatie_link = %k.documentatie_link, attempt, "kanaal bootstrap failed; retrying");
                    } else {
                        tracing::debug!(kanaal = %k.kanaal, attempt, "kanaal bootstrap failed again");
                    }
                    self.health
                        .kanaal(Err(format!("kanaal {}: {answer}", k.kanaal)));
                    last = Some(kind);
                }
            }
            let wait = k.retry.spread(attempt).max(Duration::from_millis(10));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return false,
            }
        }
    }
}
