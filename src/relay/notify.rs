//! The NRC's job handler: runs the queue's `notify` jobs. It correlates an event with its
//! registration (vendor transaction → zaak), builds the `Notificatie` and posts it; the worker
//! owns retries, pacing and dead letters. The kanaal bootstrap runs before the NRC's lane.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::health::Health;
use crate::jobs::backoff::Backoff;
use crate::jobs::{Attempt, Done, Job, JobHandler, Task};
use crate::store::Store;
use crate::zgw::{Notificatie, NrcClient, NrcError};

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub kanaal: String,
    /// The actie for Progress events, when they are relayed.
    pub progress_actie: Option<String>,
}

/// Runs `notify` jobs.
pub struct NotifyNrc {
    store: Arc<dyn Store>,
    nrc: Arc<NrcClient>,
    settings: RelaySettings,
}

impl NotifyNrc {
    pub fn new(store: Arc<dyn Store>, nrc: Arc<NrcClient>, settings: RelaySettings) -> NotifyNrc {
        NotifyNrc {
            store,
            nrc,
            settings,
        }
    }
}

/// A failure on our side (the store): try again later, without pausing the NRC.
fn local_retry(error: String) -> Attempt {
    Attempt::Retry {
        error,
        retry_after: None,
        pause_party: false,
    }
}

fn refused(reason: &str) -> Attempt {
    Attempt::Refused {
        reason: reason.to_string(),
        status: None,
        body: None,
    }
}

#[async_trait]
impl JobHandler for NotifyNrc {
    async fn attempt(&self, job: &Job) -> Attempt {
        let Task::Notify { event_id } = job.task else {
            return refused("geen NRC-taak");
        };
        let event = match self.store.event(event_id).await {
            Ok(Some(e)) => e,
            Ok(None) => return refused("event ontbreekt in de opslag"),
            Err(e) => return local_retry(e.to_string()),
        };
        let registration = match self
            .store
            .registration(event.vendor, &event.transaction_id)
            .await
        {
            Ok(Some(r)) => r,
            Ok(None) => return Attempt::Park,
            Err(e) => return local_retry(e.to_string()),
        };
        let Some(notificatie) = Notificatie::for_event(
            &self.settings.kanaal,
            &event,
            &registration,
            self.nrc.clock.now(),
            self.settings.progress_actie.as_deref(),
        ) else {
            return refused("uitkomst heeft geen actie voor het NRC");
        };
        match self.nrc.post_notificatie(&notificatie).await {
            Ok(()) => Attempt::Done(Done::default()),
            Err(NrcError::Retryable {
                retry_after,
                message,
                ..
            }) => Attempt::Retry {
                error: message,
                retry_after,
                pause_party: true,
            },
            Err(NrcError::Permanent { status, body }) => Attempt::Refused {
                reason: format!("NRC weigerde de notificatie ({status})"),
                status: Some(status),
                body: Some(body),
            },
        }
    }
}

/// What the kanaal bootstrap needs.
#[derive(Debug, Clone)]
pub struct KanaalSettings {
    pub kanaal: String,
    pub documentatie_link: String,
    pub filters: Vec<String>,
    pub backoff: Backoff,
}

/// Retries the kanaal bootstrap until it works or the service stops. Returns false on stop.
pub async fn ensure_kanaal(
    nrc: &NrcClient,
    k: &KanaalSettings,
    health: &Health,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let backoff = Backoff {
        initial: k.backoff.initial,
        max: k.backoff.max.min(Duration::from_secs(60)),
    };
    let mut attempt = 0;
    loop {
        health.relay_tick();
        match nrc
            .ensure_kanaal(&k.kanaal, &k.documentatie_link, &k.filters)
            .await
        {
            Ok(state) => {
                tracing::info!(kanaal = %k.kanaal, ?state, "kanaal ready");
                return true;
            }
            Err(e) => {
                attempt += 1;
                tracing::warn!(kanaal = %k.kanaal, error = %e, attempt, "kanaal bootstrap failed; retrying");
            }
        }
        let wait = backoff.delay(attempt).max(Duration::from_millis(100));
        let wait = wait.min(Duration::from_secs(10));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return false,
        }
    }
}
