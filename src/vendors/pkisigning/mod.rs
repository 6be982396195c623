//! PKIsigning (SBRS): the webhook the platform posts for a dossier's status change, a
//! verification of each terminal status with the platform's API before it is relayed, and
//! `signrelay pkisigning register-webhook`. The transaction id is the dossier's `PkisId`.

pub mod api;
pub mod config;
pub mod signed;
pub mod verify;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use crate::auth::AuthConfig;
use crate::event::{TransactionId, Vendor};
use crate::jobs::backoff::Backoff;
use crate::jobs::pace::PaceSettings;
use crate::jobs::{JobHandler, LaneSettings, Party};
use crate::vendors::receive::receive;
use crate::vendors::seam::{Connector, Settings, VendorSection, Wiring};
use config::PkisigningConfig;

/// The webhook surface's contract, served at `/openapi/pkisigning-webhook.yaml`.
pub const OPENAPI: &str = include_str!("../../../openapi/pkisigning-webhook.yaml");

/// PKIsigning, running.
pub struct Pkisigning {
    route: String,
    webhook: web::Data<webhook::Webhook>,
    verification: Option<(LaneSettings, Arc<verify::Verifier>)>,
    signed: Option<Arc<signed::PkiSigned>>,
}

impl Connector for Pkisigning {
    fn vendor(&self) -> Vendor {
        Vendor::Pkisigning
    }

    fn mount(&self, cfg: &mut web::ServiceConfig) {
        cfg.service(
            web::resource(self.route.as_str())
                .app_data(self.webhook.clone())
                .route(web::post().to(receive::<webhook::Webhook>)),
        );
    }

    fn jobs(&self) -> Option<(LaneSettings, Arc<dyn JobHandler>)> {
        let (lane, handler) = self.verification.clone()?;
        Some((lane, handler))
    }

    fn signed_documents(&self) -> Option<Arc<dyn crate::documents::SignedSource>> {
        let s = self.signed.clone()?;
        Some(s)
    }

    fn contracts(&self) -> Vec<(&'static str, &'static str)> {
        vec![("pkisigning-webhook.yaml", OPENAPI)]
    }

    /// A `PkisId` in any GUID spelling; kept lowercase and hyphenated.
    fn transaction_id(&self, id: &str) -> Result<TransactionId, String> {
        webhook::pkis_id(id).ok_or_else(|| "a PKIsigning PkisId is a GUID".to_string())
    }
}

/// Where PKIsigning posts: `{base}/webhook`, or `{base}/webhook/{token}` with a path token.
fn route(cfg: &PkisigningConfig) -> String {
    match cfg.path_token {
        Some(_) => format!("{}/webhook/{{token}}", cfg.base_path),
        None => format!("{}/webhook", cfg.base_path),
    }
}

impl VendorSection for PkisigningConfig {
    fn vendor(&self) -> Vendor {
        Vendor::Pkisigning
    }

    fn documents(&self) -> crate::documents::DocumentsMode {
        self.documents
    }

    fn has_signed_documents(&self) -> bool {
        true
    }

    fn validate(&self, _settings: &Settings) -> Vec<String> {
        PkisigningConfig::validate(self)
    }

    fn redacted(&self) -> serde_json::Value {
        PkisigningConfig::redacted(self)
    }

    fn auth_surfaces(&self) -> Vec<(&'static str, &AuthConfig)> {
        match (self.enabled, &self.auth) {
            (true, Some(a)) => vec![(webhook::SURFACE, a)],
            _ => Vec::new(),
        }
    }

    fn build(&self, wiring: &mut Wiring<'_>) -> anyhow::Result<Option<Arc<dyn Connector>>> {
        let (true, Some(auth)) = (self.enabled, &self.auth) else {
            return Ok(None);
        };
        // Webhook bodies are small: read into memory, never spooled.
        let body = crate::http::body::BodyLimits::new(
            self.body_limit_kib * 1024,
            1,
            wiring.settings.client_timeout * 4,
            wiring.settings.body_min_rate,
        );
        let mut inlet = wiring.inlet(Vendor::Pkisigning, webhook::SURFACE, auth, body)?;
        if let Some(t) = &self.path_token {
            inlet = inlet.with_path_token(&t.resolve()?);
        }
        // One API client (one token, one call budget) for verification and downloads.
        let api = if self.calls_api() {
            Some(Arc::new(api::PkiApi::new(self)?))
        } else {
            None
        };
        let signed = match (&api, self.documents) {
            (Some(api), crate::documents::DocumentsMode::Upload) => {
                Some(Arc::new(signed::PkiSigned {
                    api: api.clone(),
                    limit: self.download_limit_mib.saturating_mul(1 << 20),
                    timeout: Duration::from_secs(self.download_timeout_secs),
                }))
            }
            _ => None,
        };
        let verification = if let (true, Some(api)) = (self.verify, api) {
            Some((
                LaneSettings {
                    party: Party::Vendor(Vendor::Pkisigning),
                    pace: PaceSettings::up_to(self.concurrency),
                    // A token and the request itself, each within its own timeout.
                    timeout: self.timeout() * 2 + Duration::from_secs(1),
                    backoff: Backoff {
                        initial: Duration::from_millis(self.backoff_initial_ms),
                        max: Duration::from_secs(self.backoff_max_secs),
                    },
                    give_up_after: Duration::from_secs(self.give_up_after_hours * 3600),
                    // Asking is harmless before the callback is durable.
                    after_commit: false,
                },
                Arc::new(verify::Verifier {
                    api,
                    settle: Duration::from_secs(self.verify_settle_secs),
                }),
            ))
        } else {
            None
        };
        Ok(Some(Arc::new(Pkisigning {
            route: route(self),
            webhook: web::Data::new(webhook::Webhook {
                inlet,
                verify: self.verify,
                unknown_statuses: wiring.metrics.counter_vec(
                    "pkisigning_unknown_statuses_total",
                    "PKIsigning webhooks with a DossierStatus outside the known list (recorded as progress)",
                    &["status"],
                ),
            }),
            verification,
            signed,
        })))
    }

    fn command(&self) -> Option<clap::Command> {
        let config = clap::Arg::new("config")
            .long("config")
            .short('c')
            .env("SIGNRELAY_CONFIG")
            .required(true)
            .value_parser(clap::value_parser!(std::path::PathBuf));
        Some(
            clap::Command::new("pkisigning")
                .about("PKIsigning: register signrelay's webhook at the platform")
                .subcommand_required(true)
                .subcommand(
                    clap::Command::new("register-webhook")
                        .about(
                            "Registers {server.public_url}{pkisigning.base_path}/webhook[/token] \
                             for the `status` event of every dossier of the organisation \
                             (pkisigning.organisation_id, or the API user's), and prints \
                             PKIsigning's answer",
                        )
                        .arg(config),
                ),
        )
    }

    fn run_command<'a>(
        &'a self,
        matches: &'a clap::ArgMatches,
        settings: &'a Settings,
    ) -> futures_util::future::BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            match matches.subcommand_name() {
                Some("register-webhook") => register_webhook(self, settings).await,
                other => anyhow::bail!("unknown pkisigning command {other:?}"),
            }
        })
    }
}

/// `signrelay pkisigning register-webhook`.
async fn register_webhook(cfg: &PkisigningConfig, settings: &Settings) -> anyhow::Result<()> {
    let api = api::PkiApi::new(cfg)?;
    let organisation = match &cfg.organisation_id {
        Some(o) => o.clone(),
        None => {
            let orgs = api.organisations().await?;
            let first = orgs.first().ok_or_else(|| {
                anyhow::anyhow!("PKIsigning lists no organisation for this API user")
            })?;
            eprintln!(
                "organisation {} ({}) of the API user",
                first.id,
                first.name.as_deref().unwrap_or("-")
            );
            first.id.clone()
        }
    };
    let base = format!(
        "{}{}",
        settings.public_url.trim_end_matches('/'),
        cfg.base_path
    );
    let (url, shown) = match &cfg.path_token {
        Some(t) => (
            format!("{base}/webhook/{}", t.resolve()?),
            format!("{base}/webhook/***"),
        ),
        None => (format!("{base}/webhook"), format!("{base}/webhook")),
    };
    let answer = api.register_webhook(&organisation, &url).await?;
    eprintln!("registered {shown} for the `status` event of organisation {organisation}");
    // PKIsigning echoes the URL: the path token stays off the terminal.
    let printed = serde_json::to_string_pretty(&answer)?.replace(&url, &shown);
    println!("{printed}");
    Ok(())
}
