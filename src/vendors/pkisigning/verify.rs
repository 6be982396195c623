//! The `verify` job: before a terminal status goes on, ask the PKIsigning API what it shows
//! for the dossier to the holder of the callback's `AuthenticationKey`. PKIsigning signs its
//! webhooks with nothing; this is how a forged or mistaken one is caught.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;

use super::api::{ApiError, PkiApi};
use super::webhook::{outcome, short, VerifyData};
use crate::jobs::{Attempt, Done, Job, JobHandler, Task};
use crate::rules::TerminalOutcome;

pub struct Verifier {
    pub api: Arc<PkiApi>,
    /// How long a status the API does not show yet is asked again before it counts as
    /// contradicted.
    pub settle: Duration,
}

fn refused(reason: &str) -> Attempt {
    Attempt::Refused {
        reason: reason.into(),
        status: None,
        body: None,
    }
}

#[async_trait]
impl JobHandler for Verifier {
    async fn attempt(&self, job: &Job) -> Attempt {
        let Task::Vendor(task) = &job.task else {
            return refused("geen PKIsigning-taak");
        };
        let Ok(data) = serde_json::from_value::<VerifyData>(task.data.clone()) else {
            return refused("PKIsigning-taak onleesbaar");
        };
        let actual = match self.api.request_status(&data.pkis_id, &data.key).await {
            Ok(s) => s,
            Err(ApiError::NotFound) => {
                return Attempt::Contradicted {
                    reason: format!(
                        "PKIsigning kent het dossier niet (de callback meldde {})",
                        data.status
                    ),
                }
            }
            Err(ApiError::Retryable {
                message,
                retry_after,
            }) => {
                return Attempt::Retry {
                    error: message,
                    retry_after,
                    pause_party: true,
                }
            }
            Err(ApiError::Refused { status, body }) => {
                return Attempt::Refused {
                    reason: format!("PKIsigning weigerde de controle ({status})"),
                    status: Some(status),
                    body: Some(body),
                }
            }
        };
        let claimed = TerminalOutcome::of(&outcome(&data.status, None));
        let shown = TerminalOutcome::of(&outcome(&actual, None));
        if shown.is_some() && shown == claimed {
            return Attempt::Done(Done::default());
        }
        let age = (Utc::now() - job.first_queued_at)
            .to_std()
            .unwrap_or_default();
        if shown.is_none() && age < self.settle {
            // The API may show a change a moment after its own webhook.
            return Attempt::Retry {
                error: format!("PKIsigning toont nog status {}", short(&actual)),
                retry_after: None,
                pause_party: false,
            };
        }
        Attempt::Contradicted {
            reason: format!(
                "PKIsigning toont status {}, de callback meldde {}",
                short(&actual),
                data.status
            ),
        }
    }
}
