//! The seam between signrelay and a vendor: [`VendorSection`], a vendor's config section
//! (validated, redacted, built), and [`Connector`], the running vendor (its routes, its inline
//! documents, its follow-up jobs, its contracts). A vendor folder implements both and imports
//! this file; nothing here names a vendor.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use super::receive::Inlet;
use crate::auth::jwt::ProviderPool;
use crate::auth::{AuthConfig, SurfaceAuth};
use crate::documents::{DocumentsMode, SignedSource};
use crate::event::{TransactionId, Vendor};
use crate::http::body::BodyLimits;
use crate::intake::Intake;
use crate::jobs::{JobHandler, LaneSettings};
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::zgw::jwt::ZgwIdentity;

/// What a vendor may lean on from the service around it (filled in from the core config).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The URL vendors reach signrelay at.
    pub public_url: String,
    /// How long a client gets to send a request (bodies get a multiple of it).
    pub client_timeout: Duration,
    /// The slowest a request body may arrive.
    pub body_min_rate: crate::http::body::MinRate,
    /// signrelay's ZGW identity (the NRC's), the default towards other ZGW components.
    pub zgw: ZgwIdentity,
}

/// What a vendor is built with.
pub struct Wiring<'a> {
    pub settings: &'a Settings,
    pub intake: Intake,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Identity providers shared by every surface that trusts them (one key cache each).
    pub providers: &'a mut ProviderPool,
}

impl Wiring<'_> {
    pub fn auth(&mut self, cfg: &AuthConfig) -> anyhow::Result<SurfaceAuth> {
        cfg.build_shared(Some(self.metrics.clone()), self.providers)
    }

    /// An inbound surface: its auth resolved, its bodies bounded.
    pub fn inlet(
        &mut self,
        vendor: Vendor,
        surface: &'static str,
        auth: &AuthConfig,
        body: BodyLimits,
    ) -> anyhow::Result<Inlet> {
        Ok(Inlet {
            vendor,
            surface,
            auth: self.auth(auth)?,
            body,
            intake: self.intake.clone(),
            path_token: None,
        })
    }

    /// Body bounds for a callback surface: at most `limit_mib`, at the server's minimum rate,
    /// large ones spooled into the store's payload archive and at most `large_in_flight` of
    /// those over 1 MiB parsed at once.
    pub fn body_limits(&self, limit_mib: usize, large_in_flight: usize) -> BodyLimits {
        BodyLimits::new(
            limit_mib.saturating_mul(1024 * 1024),
            large_in_flight,
            self.settings.client_timeout * 4,
            self.settings.body_min_rate,
        )
        .spooled(self.store.spooler())
    }
}

/// A vendor's config section, at the top level of the config file under the vendor's name.
pub trait VendorSection: Send + Sync {
    fn vendor(&self) -> Vendor;
    /// What is wrong with it, each message naming its key.
    fn validate(&self, settings: &Settings) -> Vec<String>;
    /// The section as `check-config` prints it: secrets show their source only.
    fn redacted(&self) -> serde_json::Value;
    /// Its enabled inbound surfaces (by their metrics name) and how their callers
    /// authenticate: `check-config` and `jwt explain` list them.
    fn auth_surfaces(&self) -> Vec<(&'static str, &AuthConfig)>;
    /// Its own command line (`signrelay <name> <command> --config F`), e.g. to register
    /// signrelay at the vendor; every subcommand takes `--config`.
    fn command(&self) -> Option<clap::Command> {
        None
    }
    /// Runs its command (`matches` are the vendor's, with the subcommand chosen).
    fn run_command<'a>(
        &'a self,
        _matches: &'a clap::ArgMatches,
        _settings: &'a Settings,
    ) -> futures_util::future::BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { anyhow::bail!("this vendor has no commands") })
    }
    /// Its `documents` key: whether its completions put the signed documents into the DRC.
    fn documents(&self) -> DocumentsMode {
        DocumentsMode::Off
    }
    /// Whether its connector can hand over signed documents (`Connector::signed_documents`).
    fn has_signed_documents(&self) -> bool {
        false
    }
    /// Documented in `signrelay.example.toml` (a vendor made for tests is not).
    fn in_example(&self) -> bool {
        true
    }
    /// The running vendor; `None` when nothing of it is enabled.
    fn build(&self, wiring: &mut Wiring<'_>) -> anyhow::Result<Option<Arc<dyn Connector>>>;
}

/// A document a vendor sent inline with a callback, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineDocument {
    pub mime_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// A running vendor.
pub trait Connector: Send + Sync {
    fn vendor(&self) -> Vendor;
    /// Mounts its routes; called once per HTTP worker.
    fn mount(&self, cfg: &mut web::ServiceConfig);
    /// The `index`-th document inline in a payload its `surface` received.
    fn document(&self, _surface: &str, _body: &[u8], _index: usize) -> Option<InlineDocument> {
        None
    }
    /// Its follow-up jobs: how the worker treats them and what runs them.
    fn jobs(&self) -> Option<(LaneSettings, Arc<dyn JobHandler>)> {
        None
    }
    /// Jobs that always exist while the vendor is enabled (pollers), by a key of their own:
    /// queued at start unless queued before.
    fn standing_jobs(&self) -> Vec<(String, crate::jobs::Task)> {
        Vec::new()
    }
    /// Where its signed documents come from, for the documents step.
    fn signed_documents(&self) -> Option<Arc<dyn SignedSource>> {
        None
    }
    /// The contracts it serves at `/openapi/{name}`: (name, YAML).
    fn contracts(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
    /// The vendor's transaction id as signrelay keeps it (e.g. a GUID in one spelling), for
    /// the registry: the same id its callbacks will carry.
    fn transaction_id(&self, id: &str) -> Result<TransactionId, String> {
        TransactionId::parse(id).map_err(|e| e.to_string())
    }
}

/// The running vendors.
#[derive(Default, Clone)]
pub struct Connectors(Vec<Arc<dyn Connector>>);

impl Connectors {
    pub fn new(all: Vec<Arc<dyn Connector>>) -> Connectors {
        Connectors(all)
    }

    pub fn all(&self) -> &[Arc<dyn Connector>] {
        &self.0
    }

    pub fn get(&self, vendor: Vendor) -> Option<&Arc<dyn Connector>> {
        self.0.iter().find(|c| c.vendor() == vendor)
    }
}
