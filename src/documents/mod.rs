//! The documents step: before a completion is notified, each signed document becomes a new
//! version of the trigger's `documenten[].url` in the DRC (and evidence of the signing a new
//! document in the zaak), so that the notification is true when the case application reads
//! it (the ZGW signing pattern). A step of the job queue on the `drc` lane: vendors only
//! provide the signed bytes ([`SignedSource`]); the DRC calls, locks, versions and retries
//! live here, once.

pub mod config;
pub mod matching;
pub mod progress;
pub mod source;
pub mod step;
pub mod upload;

pub use config::{DocumentsMode, DrcConfig, OnNewerVersion};
pub use source::{SignedFile, SignedSource, SourceError, Staging, StagingArea};
pub use step::{DocumentsStep, StepSettings};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::event::Vendor;
use crate::jobs::backoff::Backoff;
use crate::jobs::pace::PaceSettings;
use crate::jobs::{JobHandler, LaneSettings, Party};
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::zgw::drc::DrcClient;
use crate::zgw::jwt::ZgwIdentity;

/// The `drc` lane: its settings and its handler. `identity` is signrelay's default ZGW
/// identity (the NRC's); `staging` the directory for staged signed files.
pub fn lane(
    cfg: &DrcConfig,
    identity: &ZgwIdentity,
    sources: HashMap<Vendor, Arc<dyn SignedSource>>,
    store: Arc<dyn Store>,
    staging: PathBuf,
    metrics: &Metrics,
) -> anyhow::Result<(LaneSettings, Arc<dyn JobHandler>)> {
    let drc_identity = identity.with_client(cfg.client_id.as_deref(), cfg.secret.as_ref());
    let zrc_identity =
        drc_identity.with_client(cfg.zrc_client_id.as_deref(), cfg.zrc_secret.as_ref());
    let client = DrcClient::new(
        drc_identity.jwt()?,
        zrc_identity.jwt()?,
        cfg.request_timeout(),
        cfg.upload_timeout(),
    )?
    .counted(metrics.counter_vec(
        "drc_requests_total",
        "Requests of the documents step by component (DRC, ZRC), operation and result \
         (ok, 4xx, 5xx, unreachable)",
        &["component", "operation", "result"],
    ));
    let step = DocumentsStep::new(
        store,
        client,
        sources,
        StagingArea::new(staging),
        StepSettings {
            on_newer_version: cfg.on_newer_version,
            parts_above: cfg.parts_above(),
            bronorganisatie: cfg.bronorganisatie.clone(),
            auteur: cfg.auteur.clone(),
            vertrouwelijkheidaanduiding: cfg.vertrouwelijkheidaanduiding.clone(),
            lost_lock_after: Duration::from_secs(cfg.lost_lock_after_secs),
        },
        metrics,
    );
    let settings = LaneSettings {
        party: Party::Drc,
        pace: PaceSettings::up_to(cfg.concurrency),
        // A turn reads, locks or writes a few documents; each call has its own bound.
        timeout: cfg.upload_timeout() * 2 + cfg.request_timeout() * 4,
        backoff: Backoff {
            initial: Duration::from_millis(cfg.backoff_initial_ms),
            max: Duration::from_secs(cfg.backoff_max_secs),
        },
        give_up_after: Duration::from_secs(crate::bounds::scaled(cfg.give_up_after_hours, 3600)),
        // A lock id or an intent to lock is on disk before the call that depends on it.
        after_commit: true,
    };
    Ok((settings, Arc::new(step)))
}
