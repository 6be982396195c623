//! Typed configuration: TOML file, then `SIGNRELAY__SECTION__KEY` environment overrides,
//! validated once at start. Every key is documented in `signrelay.example.toml`. The core
//! sections live here; each vendor's section is its own (`crate::vendors::Sections`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;
pub use crate::bounds::{ago, scaled, within};
use crate::documents::DocumentsMode;
pub use crate::documents::DrcConfig;
pub use crate::secret::{EnvRef, FileRef, Secret};
use crate::telemetry::LogConfig;
use crate::vendors::Sections;
use crate::zgw::jwt::ZgwIdentity;

/// The whole configuration. Unknown top-level sections are refused by `load` (serde cannot
/// refuse them here: the vendors' sections are flattened in).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub relay: RelayConfig,
    pub nrc: NrcConfig,
    pub drc: DrcConfig,
    pub admin: AdminConfig,
    #[serde(flatten)]
    pub vendors: Sections,
}

/// The core sections, beside the vendors' own.
const CORE_SECTIONS: [&str; 7] = ["server", "log", "store", "relay", "nrc", "drc", "admin"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Worker threads for HTTP; 0 = one per core.
    pub workers: usize,
    /// Time a client gets to send its request headers and body.
    pub client_timeout_secs: u64,
    /// On shutdown, how long in-flight requests get to finish.
    pub shutdown_timeout_secs: u64,
    /// HTTP keep-alive, seconds; 0 (default) closes each connection after its response.
    /// actix times out only the first request's headers on a connection, so with keep-alive a
    /// client could trickle a later request forever.
    pub keep_alive_secs: u64,
    /// Largest registry/admin request body.
    pub api_body_limit_kib: usize,
    /// The slowest a request body may arrive: every `body_rate_window_secs` must bring at
    /// least this many KiB, or the request is cut off.
    pub body_min_rate_kib: usize,
    pub body_rate_window_secs: u64,
    /// The URL vendors reach signrelay at (used as the address in served WSDLs).
    pub public_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where the state lives: `sled` (embedded, one instance) or `postgres` (several
    /// instances on one database).
    pub backend: Backend,
    /// Directory of the embedded sled database and the large-payload archive; with
    /// `postgres`, this instance's scratch space (large bodies spooled while they arrive,
    /// signed files staged for the DRC), never state.
    pub path: PathBuf,
    /// Delivered (or never relayed) events and their raw payloads, and quarantine entries, are
    /// purged after this age; 0 purges them at the purge after they end. At most 36 500.
    /// Registrations go this long after their outcome was delivered or they were withdrawn.
    pub retention_days: u64,
    /// How often the purge runs (1 to 86 400).
    pub purge_interval_secs: u64,
    /// Most callbacks that share one flush.
    pub max_group: usize,
    /// Below this much free disk space new callbacks are answered "retry later" (and
    /// readiness fails), so that the disk never fills up under a write.
    pub min_free_mib: u64,
    /// Memory for the store's page cache, MiB.
    pub cache_mib: u64,
    pub postgres: PostgresConfig,
}

/// The store's backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Sled,
    Postgres,
}

/// `[store.postgres]`: the shared store of several instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:5432/database?…`, as libpq takes it.
    pub url: Secret,
    /// Connections this instance keeps open at most.
    pub pool_size: u32,
    /// A statement running longer than this is cancelled (the request is told to retry).
    pub statement_timeout_ms: u64,
    /// Waiting for a connection (from the pool, or a new one) longer than this fails.
    pub connect_timeout_secs: u64,
    /// libpq's `sslmode`: disable, allow, prefer, require, verify-ca, verify-full; unset
    /// takes the URL's (libpq's default: prefer).
    pub sslmode: Option<String>,
    /// libpq's `sslrootcert`: the CA certificate (PEM) that verify-ca/verify-full trust,
    /// besides the public web roots built in (the machine's trust store is not read).
    pub root_cert: Option<PathBuf>,
    /// Apply the embedded migrations at start (one instance at a time); off, run
    /// `signrelay migrate --config F` as a deployment step first.
    pub migrate: bool,
    /// How long a claimed job stays claimed without its instance renewing the claim; after
    /// that another instance takes it over (and may run it a second time).
    pub lease_secs: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: Secret::env("SIGNRELAY_POSTGRES_URL"),
            pool_size: 16,
            statement_timeout_ms: 10_000,
            connect_timeout_secs: 5,
            sslmode: None,
            root_cert: None,
            migrate: true,
            lease_secs: 30,
        }
    }
}

/// libpq's sslmode values.
pub const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Run the delivery worker (off: record only).
    pub enabled: bool,
    /// Also relay Progress events (with `progress_actie`).
    pub relay_progress: bool,
    pub progress_actie: String,
    /// Most deliveries in flight towards the NRC at once: the adaptive window's maximum.
    pub concurrency: usize,
    /// Fewest deliveries the window shrinks to (equal to `concurrency`: a fixed window).
    pub concurrency_min: usize,
    /// The longest wait between two probes of a party that is down or refuses signrelay
    /// (every lane's circuit).
    pub probe_interval_max_secs: u64,
    /// Per-request timeout towards the NRC.
    pub timeout_secs: u64,
    /// Exponential backoff with full jitter between `backoff_initial_ms` and `backoff_max_secs`.
    pub backoff_initial_ms: u64,
    pub backoff_max_secs: u64,
    /// An outcome the NRC keeps refusing with retryable errors is dead-lettered after this age.
    pub give_up_after_hours: u64,
    /// An event whose transaction is never registered is dead-lettered after this age.
    pub park_timeout_hours: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NrcConfig {
    /// Base URL of the NRC API, e.g. `https://nrc.example.nl/api/v1`.
    pub url: String,
    pub kanaal: String,
    /// Documentation URL sent when the kanaal is created; by default signrelay's own page,
    /// `{server.public_url}/kanalen/{kanaal}`.
    pub kanaal_documentatie_link: Option<String>,
    /// Filters sent when the kanaal is created.
    pub kanaal_filters: Vec<String>,
    /// At start, create the kanaal if the NRC lacks it.
    pub ensure_kanaal: bool,
    pub client_id: String,
    pub secret: Secret,
    pub user_id: String,
    pub user_representation: String,
    /// A ZGW JWT is regenerated once it is this old (real NRCs reject `iat` older than 1 h).
    pub jwt_max_age_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Authentication of the admin and registry API (`/api/v1/...`).
    pub auth: AuthConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().unwrap(),
            workers: 0,
            client_timeout_secs: 30,
            shutdown_timeout_secs: 30,
            keep_alive_secs: 0,
            api_body_limit_kib: 100,
            body_min_rate_kib: 16,
            body_rate_window_secs: 10,
            public_url: "http://localhost:8080".into(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Sled,
            postgres: PostgresConfig::default(),
            path: PathBuf::from("./signrelay-data"),
            retention_days: 30,
            purge_interval_secs: 3600,
            max_group: 1024,
            min_free_mib: 256,
            cache_mib: 16,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            relay_progress: false,
            progress_actie: "OndertekenenVoortgang".into(),
            concurrency: 32,
            concurrency_min: 1,
            probe_interval_max_secs: 5,
            timeout_secs: 10,
            backoff_initial_ms: 500,
            backoff_max_secs: 600,
            give_up_after_hours: 72,
            park_timeout_hours: 168,
        }
    }
}

impl NrcConfig {
    /// The kanaal's `documentatieLink`: the configured one, or signrelay's own page.
    pub fn documentatie_link(&self, public_url: &str) -> String {
        self.kanaal_documentatie_link.clone().unwrap_or_else(|| {
            format!(
                "{}{}",
                public_url.trim_end_matches('/'),
                crate::relay::kanaal_page::path(&self.kanaal)
            )
        })
    }

    /// signrelay's ZGW identity towards the NRC (and, by default, other ZGW components).
    pub fn identity(&self) -> ZgwIdentity {
        ZgwIdentity {
            client_id: self.client_id.clone(),
            secret: self.secret.clone(),
            user_id: self.user_id.clone(),
            user_representation: self.user_representation.clone(),
            max_age: Duration::from_secs(self.jwt_max_age_secs),
        }
    }
}

impl Default for NrcConfig {
    fn default() -> Self {
        Self {
            url: "http://localhost:8000/api/v1".into(),
            kanaal: "documentacties".into(),
            kanaal_documentatie_link: None,
            kanaal_filters: vec!["transaction_id".into(), "reden".into()],
            ensure_kanaal: true,
            client_id: "signrelay".into(),
            secret: Secret::env("SIGNRELAY_NRC_SECRET"),
            user_id: "signrelay".into(),
            user_representation: "signrelay".into(),
            jwt_max_age_secs: 300,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            auth: AuthConfig::ApiKey {
                header: "X-Api-Key".into(),
                key: Secret::env("SIGNRELAY_ADMIN_API_KEY"),
            },
        }
    }
}

impl Config {
    /// Defaults, then the TOML file (if any), then `SIGNRELAY__…` environment variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let cfg = Self::load_unvalidated(file)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// As `load`, without validation: for offline admin commands that only need the store.
    pub fn load_unvalidated(file: Option<&Path>) -> anyhow::Result<Config> {
        // Defaults come from serde, not from a merged provider: merging would mix a default
        // `{ env = … }` secret with a configured `{ file = … }` one.
        let mut fig = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("config file {} does not exist", file.display());
            }
            fig = fig.merge(Toml::file_exact(file));
        }
        fig = fig.merge(Env::prefixed("SIGNRELAY__").split("__"));
        let sections: std::collections::BTreeMap<String, figment::value::Value> =
            fig.extract().map_err(|e| anyhow::anyhow!("{e}"))?;
        let vendors = Sections::names();
        let unknown: Vec<&String> = sections
            .keys()
            .filter(|k| !CORE_SECTIONS.contains(&k.as_str()) && !vendors.contains(&k.as_str()))
            .collect();
        if let Some(k) = unknown.first() {
            anyhow::bail!(
                "unknown section `{k}`, expected one of {}",
                CORE_SECTIONS
                    .iter()
                    .chain(vendors.iter())
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        fig.extract().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// What the vendors may lean on from the core sections.
    pub fn vendor_settings(&self) -> crate::vendors::Settings {
        crate::vendors::Settings {
            public_url: self.server.public_url.clone(),
            client_timeout: Duration::from_secs(self.server.client_timeout_secs),
            body_min_rate: self.server.body_min_rate(),
            zgw: self.nrc.identity(),
        }
    }

    /// Checks that hold across keys; secrets must resolve so that a bad deployment fails at
    /// start, not at the first callback. Every duration and size has bounds: a value past them
    /// is refused with its key named, never converted into something else (a failed conversion
    /// must not become zero, which for a retention means "purge everything").
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut errs: Vec<String> = Vec::new();
        let nrc = url::Url::parse(&self.nrc.url);
        match nrc {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => errs.push(format!("nrc.url is not an http(s) URL: {}", self.nrc.url)),
        }
        if self.nrc.kanaal.trim().is_empty() {
            errs.push("nrc.kanaal is empty".into());
        }
        // It becomes a path segment of signrelay's own page.
        if self.nrc.kanaal.contains(['/', '?', '#', '%']) {
            errs.push("nrc.kanaal must not contain / ? # or %".into());
        }
        if let Some(link) = &self.nrc.kanaal_documentatie_link {
            if !matches!(url::Url::parse(link), Ok(u) if u.scheme() == "http" || u.scheme() == "https")
            {
                errs.push(format!(
                    "nrc.kanaal_documentatie_link is not an http(s) URL: {link}"
                ));
            }
        }
        if self.relay.enabled {
            if let Err(e) = self.nrc.secret.resolve() {
                errs.push(format!("nrc.secret: {e}"));
            }
        }
        let (sv, st, r) = (&self.server, &self.store, &self.relay);
        let bounded: [(&str, u64, u64, u64); 20] = [
            ("server.workers", sv.workers as u64, 0, 256),
            ("server.client_timeout_secs", sv.client_timeout_secs, 1, 600),
            (
                "server.shutdown_timeout_secs",
                sv.shutdown_timeout_secs,
                0,
                600,
            ),
            ("server.keep_alive_secs", sv.keep_alive_secs, 0, 3600),
            (
                "server.api_body_limit_kib",
                sv.api_body_limit_kib as u64,
                1,
                10_240,
            ),
            (
                "server.body_min_rate_kib",
                sv.body_min_rate_kib as u64,
                0,
                102_400,
            ),
            (
                "server.body_rate_window_secs",
                sv.body_rate_window_secs,
                1,
                600,
            ),
            (
                "store.retention_days",
                st.retention_days,
                0,
                MAX_RETENTION_DAYS,
            ),
            (
                "store.purge_interval_secs",
                st.purge_interval_secs,
                1,
                86_400,
            ),
            ("store.max_group", st.max_group as u64, 1, 65_536),
            ("store.min_free_mib", st.min_free_mib, 0, 1 << 20),
            ("store.cache_mib", st.cache_mib, 1, 65_536),
            ("relay.concurrency", r.concurrency as u64, 1, 1024),
            ("relay.concurrency_min", r.concurrency_min as u64, 1, 1024),
            (
                "relay.probe_interval_max_secs",
                r.probe_interval_max_secs,
                1,
                300,
            ),
            ("relay.timeout_secs", r.timeout_secs, 1, 600),
            (
                "relay.backoff_initial_ms",
                r.backoff_initial_ms,
                1,
                3_600_000,
            ),
            ("relay.backoff_max_secs", r.backoff_max_secs, 1, 86_400),
            ("relay.give_up_after_hours", r.give_up_after_hours, 1, 8_760),
            ("relay.park_timeout_hours", r.park_timeout_hours, 1, 87_600),
        ];
        for (key, value, min, max) in bounded {
            within(&mut errs, key, value, min..=max);
        }
        if r.concurrency_min > r.concurrency {
            errs.push("relay.concurrency_min must be <= relay.concurrency".into());
        }
        if st.backend == Backend::Postgres {
            errs.extend(st.postgres.validate());
        }
        if r.backoff_initial_ms > r.backoff_max_secs.saturating_mul(1000) {
            errs.push("relay.backoff_initial_ms must be <= relay.backoff_max_secs".into());
        }
        within(
            &mut errs,
            "nrc.jwt_max_age_secs",
            self.nrc.jwt_max_age_secs,
            1..=3600,
        );
        if let Err(e) = self.admin.auth.validate("admin.auth") {
            errs.push(e);
        }
        if url::Url::parse(&self.server.public_url).is_err() {
            errs.push("server.public_url is not a URL".into());
        }
        let settings = self.vendor_settings();
        for (name, v) in Sections::names().into_iter().zip(self.vendors.all()) {
            errs.extend(v.validate(&settings));
            if v.documents() == DocumentsMode::Upload && !v.has_signed_documents() {
                errs.push(format!(
                    "{name}.documents = \"upload\": signrelay cannot fetch {name}'s signed \
                     documents yet (see the README)"
                ));
            }
        }
        errs.extend(
            self.drc
                .validate(self.relay.enabled && !self.uploading().is_empty()),
        );
        if errs.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid configuration:\n  - {}", errs.join("\n  - "))
        }
    }

    /// The effective configuration as `check-config` prints it: secrets show their source only.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serializes");
        v["nrc"]["secret"] = self.nrc.secret.redacted();
        v["store"]["postgres"]["url"] = self.store.postgres.url.redacted();
        v["drc"] = self.drc.redacted();
        v["admin"]["auth"] = self.admin.auth.redacted();
        for (name, section) in Sections::names().into_iter().zip(self.vendors.all()) {
            v[name] = section.redacted();
        }
        v
    }

    /// The vendors whose completions put their signed documents into the DRC.
    pub fn uploading(&self) -> Vec<crate::event::Vendor> {
        self.vendors
            .all()
            .into_iter()
            .filter(|v| v.documents() == DocumentsMode::Upload)
            .map(|v| v.vendor())
            .collect()
    }

    pub fn relay_timeout(&self) -> Duration {
        Duration::from_secs(self.relay.timeout_secs)
    }

    /// The NRC lane's window and every lane's probe bound.
    pub fn nrc_pace(&self) -> crate::jobs::pace::PaceSettings {
        crate::jobs::pace::PaceSettings {
            min: self.relay.concurrency_min,
            max: self.relay.concurrency,
            probe_max: self.probe_interval_max(),
        }
    }

    pub fn probe_interval_max(&self) -> Duration {
        Duration::from_secs(self.relay.probe_interval_max_secs)
    }
}

/// The longest retention accepted: a century.
pub const MAX_RETENTION_DAYS: u64 = 36_500;

impl ServerConfig {
    pub fn body_min_rate(&self) -> crate::http::body::MinRate {
        crate::http::body::MinRate {
            bytes: self.body_min_rate_kib.saturating_mul(1024),
            window: Duration::from_secs(self.body_rate_window_secs),
        }
    }
}

impl PostgresConfig {
    fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        match self.url.resolve() {
            Ok(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {}
            Ok(_) => errs.push("store.postgres.url is not a postgres:// URL".into()),
            Err(e) => errs.push(format!("store.postgres.url: {e}")),
        }
        if let Some(m) = &self.sslmode {
            if !SSL_MODES.contains(&m.as_str()) {
                errs.push(format!(
                    "store.postgres.sslmode = {m:?}: expected one of {}",
                    SSL_MODES.join(", ")
                ));
            }
        }
        if let Some(c) = &self.root_cert {
            if !c.is_file() {
                errs.push(format!(
                    "store.postgres.root_cert {} is not a file",
                    c.display()
                ));
            }
        }
        within(
            &mut errs,
            "store.postgres.pool_size",
            u64::from(self.pool_size),
            1..=1000,
        );
        within(
            &mut errs,
            "store.postgres.statement_timeout_ms",
            self.statement_timeout_ms,
            100..=3_600_000,
        );
        within(
            &mut errs,
            "store.postgres.connect_timeout_secs",
            self.connect_timeout_secs,
            1..=600,
        );
        within(
            &mut errs,
            "store.postgres.lease_secs",
            self.lease_secs,
            2..=3600,
        );
        errs
    }
}

impl StoreConfig {
    /// How long finished events and their payloads are kept.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(scaled(self.retention_days, 86_400))
    }

    pub fn min_free_bytes(&self) -> u64 {
        scaled(self.min_free_mib, 1 << 20)
    }

    pub fn cache_bytes(&self) -> u64 {
        scaled(self.cache_mib, 1 << 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // figment's Jail fixes the closure's (large) error type.
    #[allow(clippy::result_large_err)]
    fn with_env<T>(vars: &[(&str, &str)], f: impl FnOnce() -> T) -> T {
        let mut out = None;
        let mut f = Some(f);
        figment::Jail::expect_with(|jail| {
            for (k, v) in vars {
                jail.set_env(k, v);
            }
            out = Some((f.take().unwrap())());
            Ok(())
        });
        out.unwrap()
    }

    /// Every key of the config, as dotted paths; `None` keys separately.
    fn leaves(v: &serde_json::Value, path: String, set: &mut Vec<String>, unset: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) if !m.is_empty() && !path.ends_with("auth") => {
                for (k, v) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    leaves(v, p, set, unset);
                }
            }
            serde_json::Value::Null => unset.push(path),
            _ => set.push(path),
        }
    }

    /// Where `defaults` has no value, the example's.
    fn take_unset(defaults: &mut serde_json::Value, example: &serde_json::Value) {
        match defaults {
            serde_json::Value::Null => *defaults = example.clone(),
            serde_json::Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    if let Some(e) = example.get(k) {
                        take_unset(v, e);
                    }
                }
            }
            _ => {}
        }
    }

    #[test]
    fn example_config_documents_every_key() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("signrelay.example.toml");
        let example = std::fs::read_to_string(&file).unwrap();
        let parsed: toml::Value = toml::from_str(&example).expect("example parses");
        let (mut set, mut unset) = (Vec::new(), Vec::new());
        let mut defaults = serde_json::to_value(Config::default()).unwrap();
        let defaults_obj = defaults.as_object_mut().unwrap();
        for (name, v) in Sections::names()
            .into_iter()
            .zip(Config::default().vendors.all())
        {
            if !v.in_example() {
                defaults_obj.remove(name);
            }
        }
        leaves(&defaults, String::new(), &mut set, &mut unset);
        for key in set {
            let mut at = &parsed;
            for part in key.split('.') {
                at = at
                    .get(part)
                    .unwrap_or_else(|| panic!("{key} is not in the example"));
            }
        }
        for key in unset {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                example.contains(&format!("{leaf} =")) || example.contains(&format!("[{key}]")),
                "optional key {key} is not documented in the example"
            );
        }
        // The example's values are the defaults (apart from what has no default and must be
        // chosen, such as a surface's auth).
        let typed: Config = toml::from_str(&example).expect("example is a valid config");
        let mut typed = serde_json::to_value(&typed).unwrap();
        for k in typed
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
        {
            if defaults.get(&k).is_none() {
                typed.as_object_mut().unwrap().remove(&k);
            }
        }
        take_unset(&mut defaults, &typed);
        assert_eq!(typed, defaults);
        // Every secret the example takes from the environment, set (long enough for a key).
        let vars: Vec<(&str, &str)> = example
            .split("env = \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(|name| (name, "0123456789abcdef0123"))
            .collect();
        assert!(!vars.is_empty());
        with_env(&vars, || {
            Config::load(Some(&file)).expect("example validates")
        });
    }

    #[test]
    fn durations_past_a_timestamp_select_nothing_and_sizes_saturate() {
        assert!(ago(Duration::from_secs(86_400)).is_some());
        assert_eq!(ago(Duration::from_secs(200_000_000_000 * 86_400)), None);
        assert_eq!(ago(Duration::MAX), None);
        assert_eq!(scaled(u64::MAX / 2, 1 << 20), u64::MAX);
        let store = StoreConfig {
            retention_days: u64::MAX,
            ..StoreConfig::default()
        };
        assert_eq!(store.retention(), Duration::from_secs(u64::MAX));
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let cfg = with_env(
            &[
                ("SIGNRELAY__NRC__URL", "https://nrc.example.nl/api/v1"),
                ("SIGNRELAY__SERVER__PUBLIC_URL", "https://sr.example.nl"),
                ("SIGNRELAY__RELAY__CONCURRENCY", "2"),
            ],
            || Config::load_unvalidated(None).unwrap(),
        );
        assert_eq!(cfg.nrc.url, "https://nrc.example.nl/api/v1");
        assert_eq!(cfg.server.public_url, "https://sr.example.nl");
        assert_eq!(cfg.relay.concurrency, 2);
    }

    #[test]
    fn the_window_bounds_and_the_kanaal_link_are_checked() {
        let mut cfg = Config::default();
        cfg.nrc.secret = Secret::Inline("x".into());
        cfg.admin.auth = AuthConfig::None;
        cfg.relay.concurrency = 4;
        cfg.relay.concurrency_min = 8;
        cfg.relay.probe_interval_max_secs = 0;
        cfg.nrc.kanaal_documentatie_link = Some("ftp://docs".into());
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("relay.concurrency_min must be <= relay.concurrency"),
            "{err}"
        );
        assert!(err.contains("relay.probe_interval_max_secs"), "{err}");
        assert!(err.contains("nrc.kanaal_documentatie_link"), "{err}");
        // By default the link is signrelay's own page.
        let cfg = Config::default();
        assert_eq!(
            cfg.nrc.documentatie_link("https://signrelay.example.nl/"),
            "https://signrelay.example.nl/kanalen/documentacties"
        );
    }

    #[test]
    fn secrets_come_from_env_or_file_and_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "from-file\n").unwrap();
        let s = Secret::File(FileRef { file: f });
        assert_eq!(s.resolve().unwrap(), "from-file");
        let toml = r#"
            [nrc]
            secret = "inline-secret-value"
            [admin.auth]
            method = "api-key"
            header = "X-Key"
            key = { env = "SOME_KEY" }
        "#;
        let cfg: Config = toml::from_str(toml).unwrap();
        let shown = cfg.redacted().to_string();
        assert!(!shown.contains("inline-secret-value"), "{shown}");
        assert!(shown.contains("SOME_KEY"));
    }
}
