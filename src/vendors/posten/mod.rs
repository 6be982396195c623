//! Posten signering (Norway): Posten never calls a server. In the direct flow it sends the
//! signer's browser back to the sender's exit URLs with a `status_query_token`; signrelay is
//! that endpoint (`exit.rs`), fetches the status with the token, records it, and confirms it
//! (`jobs.rs`). Portal jobs (and direct jobs created with POLLING) are learnt by polling a
//! status queue, a standing job of the queue. The transaction id is the job's `reference`
//! (the sender's own, set when the case application creates the job); a polled change without
//! one is recorded under its `signature-job-id`.

pub mod board;
pub mod config;
pub mod exit;
pub mod jobs;
pub mod signed;
pub mod tls;
pub mod xml;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use crate::auth::AuthConfig;
use crate::event::Vendor;
use crate::jobs::backoff::Backoff;
use crate::jobs::pace::PaceSettings;
use crate::jobs::{JobHandler, LaneSettings, Party, Task};
use crate::vendors::seam::{Connector, Settings, VendorSection, Wiring};
use config::PostenConfig;
use jobs::{PostenJob, PostenJobs};

/// Posten, running.
pub struct Posten {
    base_path: String,
    exit: web::Data<exit::ExitState>,
    lane: LaneSettings,
    jobs: Arc<PostenJobs>,
    standing: Vec<(String, Task)>,
    signed: Arc<signed::PostenSigned>,
}

impl Connector for Posten {
    fn vendor(&self) -> Vendor {
        Vendor::Posten
    }

    fn mount(&self, cfg: &mut web::ServiceConfig) {
        cfg.service(
            web::scope(&self.base_path)
                .app_data(self.exit.clone())
                .route("/direct/{reference}/{exit}", web::get().to(exit::exit_url))
                .route("/landing/{uitkomst}", web::get().to(exit::landing))
                .default_service(web::to(exit::not_found)),
        );
    }

    fn jobs(&self) -> Option<(LaneSettings, Arc<dyn JobHandler>)> {
        Some((self.lane.clone(), self.jobs.clone()))
    }

    fn signed_documents(&self) -> Option<Arc<dyn crate::documents::SignedSource>> {
        Some(self.signed.clone())
    }

    fn standing_jobs(&self) -> Vec<(String, Task)> {
        self.standing.clone()
    }
}

impl VendorSection for PostenConfig {
    fn vendor(&self) -> Vendor {
        Vendor::Posten
    }

    fn documents(&self) -> crate::documents::DocumentsMode {
        self.documents
    }

    fn has_signed_documents(&self) -> bool {
        true
    }

    fn validate(&self, _settings: &Settings) -> Vec<String> {
        PostenConfig::validate(self)
    }

    fn redacted(&self) -> serde_json::Value {
        PostenConfig::redacted(self)
    }

    /// The exit URLs are the signer's browser's: no credentials (the token is checked with
    /// Posten).
    fn auth_surfaces(&self) -> Vec<(&'static str, &AuthConfig)> {
        Vec::new()
    }

    fn build(&self, wiring: &mut Wiring<'_>) -> anyhow::Result<Option<Arc<dyn Connector>>> {
        if !self.enabled {
            return Ok(None);
        }
        let board = board::Board::default();
        let api_url = self.api_url.trim_end_matches('/').to_string();
        let jobs = Arc::new(PostenJobs {
            http: tls::client(self)?,
            store: wiring.store.clone(),
            api_url,
            organization_number: self.organization_number.clone(),
            polling_queue: self.polling_queue.clone(),
            settle: Duration::from_secs(self.ceremony_settle_secs),
            board: board.clone(),
        });
        let queue = self.polling_queue.clone();
        let mut standing = Vec::new();
        for (on, portal) in [(self.poll_portal, true), (self.poll_direct, false)] {
            if on {
                let key = format!(
                    "poll/{}/{}",
                    if portal { "portal" } else { "direct" },
                    queue.as_deref().unwrap_or("default")
                );
                standing.push((
                    key,
                    PostenJob::Poll {
                        portal,
                        queue: queue.clone(),
                    }
                    .task(),
                ));
            }
        }
        Ok(Some(Arc::new(Posten {
            base_path: self.base_path.clone(),
            exit: web::Data::new(exit::ExitState {
                intake: wiring.intake.clone(),
                board,
                landing: self.landing.clone(),
                base_path: self.base_path.clone(),
                redirect_wait: self.redirect_wait(),
            }),
            lane: LaneSettings {
                party: Party::Vendor(Vendor::Posten),
                pace: PaceSettings::up_to(self.concurrency),
                timeout: self.timeout() + Duration::from_secs(1),
                backoff: Backoff {
                    initial: Duration::from_millis(self.backoff_initial_ms),
                    max: Duration::from_secs(self.backoff_max_secs),
                },
                give_up_after: Duration::from_secs(self.give_up_after_hours * 3600),
                // A confirmation makes Posten forget the status: only once it is on disk here.
                after_commit: true,
            },
            signed: Arc::new(signed::PostenSigned {
                jobs: jobs.clone(),
                limit: self.download_limit_mib.saturating_mul(1 << 20),
                timeout: self.timeout() * 10,
            }),
            jobs,
            standing,
        })))
    }
}
