//! The NRC's job handler: runs the queue's `notify` jobs. It correlates an event with its
//! registration (vendor transaction → zaak), builds the `Notificatie` and posts it, and says
//! whose fault a refusal is: one notificatie's (a dead letter), signrelay's connection as a
//! whole (held: the job stays queued), or a kanaal the NRC lost (made again by
//! `super::kanaal`). The worker owns retries, pacing and dead letters.

use std::sync::Arc;

use async_trait::async_trait;

use super::kanaal::KanaalKeeper;
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
    kanaal: Arc<KanaalKeeper>,
}

impl NotifyNrc {
    pub fn new(
        store: Arc<dyn Store>,
        nrc: Arc<NrcClient>,
        settings: RelaySettings,
        kanaal: Arc<KanaalKeeper>,
    ) -> NotifyNrc {
        NotifyNrc {
            store,
            nrc,
            settings,
            kanaal,
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
            Err(NrcError::KanaalMissing { body }) => {
                if self.kanaal.gone(&body) {
                    local_retry("het NRC kent het kanaal niet; het wordt opnieuw aangemaakt".into())
                } else {
                    Attempt::Hold {
                        reason: format!(
                            "het NRC kent kanaal {} niet (nrc.ensure_kanaal staat uit)",
                            self.settings.kanaal
                        ),
                        status: Some(400),
                        body: Some(body),
                    }
                }
            }
            Err(NrcError::Refusing { status, body }) => Attempt::Hold {
                reason: format!("NRC weigert signrelay ({status})"),
                status: Some(status),
                body: Some(body),
            },
            Err(NrcError::Permanent { status, body }) => Attempt::Refused {
                reason: format!("NRC weigerde de notificatie ({status})"),
                status: Some(status),
                body: Some(body),
            },
        }
    }
}
