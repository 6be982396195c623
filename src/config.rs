//! Typed configuration: TOML file, then `SIGNRELAY__SECTION__KEY` environment overrides,
//! validated once at start. Every key is documented in `signrelay.example.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub relay: RelayConfig,
    pub nrc: NrcConfig,
    pub admin: AdminConfig,
    pub gosign: GosignConfig,
}

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
    /// The URL vendors reach signrelay at (used as the address in served WSDLs).
    pub public_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `auto` (pretty in a terminal, JSON otherwise), `json` or `pretty`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `signrelay=debug,info`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory of the embedded sled database and the large-payload archive.
    pub path: PathBuf,
    /// Delivered (or never relayed) events and their raw payloads are purged after this age.
    pub retention_days: u64,
    /// How often the purge runs.
    pub purge_interval_secs: u64,
    /// Most callbacks that share one flush.
    pub max_group: usize,
    /// Below this much free disk space new callbacks are answered "retry later" (and
    /// readiness fails), so that the disk never fills up under a write.
    pub min_free_mib: u64,
    /// Memory for the store's page cache, MiB.
    pub cache_mib: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Run the delivery worker (off: record only).
    pub enabled: bool,
    /// Also relay Progress events (with `progress_actie`).
    pub relay_progress: bool,
    pub progress_actie: String,
    /// Deliveries in flight towards the NRC at once.
    pub concurrency: usize,
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
    /// Documentation URL sent when the kanaal is created.
    pub kanaal_documentatie_link: String,
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

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GosignConfig {
    pub rest: GosignRestConfig,
    pub soap: GosignSoapConfig,
    pub workability: WorkabilityConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GosignSoapConfig {
    pub enabled: bool,
    /// WorkNotificationsService: workNotification and getEnvelopeExternalStatus.
    pub base_path: String,
    /// EvelopeEventService: LegalBus OperationDone.
    pub events_path: String,
    /// Must be set explicitly when enabled, `{ method = "none" }` included.
    pub auth: Option<AuthConfig>,
    pub body_limit_mib: usize,
    pub large_bodies_in_flight: usize,
}

impl Default for GosignSoapConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            base_path: "/gosign/soap".into(),
            events_path: "/gosign/soap/events".into(),
            auth: None,
            body_limit_mib: 64,
            large_bodies_in_flight: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WorkabilityPolicy {
    /// Every envelope is workable.
    Always,
    /// Not workable once withdrawn by the case application or finished.
    Registry,
    /// As `registry`, and not workable once the zaak (from the ZRC) has an `einddatum`.
    ZaakOpen,
    /// Ask the case application (`forward_url`) the same question.
    Forward,
}

impl WorkabilityPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkabilityPolicy::Always => "always",
            WorkabilityPolicy::Registry => "registry",
            WorkabilityPolicy::ZaakOpen => "zaak-open",
            WorkabilityPolicy::Forward => "forward",
        }
    }

    /// Does the policy call another system?
    pub fn is_remote(self) -> bool {
        matches!(
            self,
            WorkabilityPolicy::ZaakOpen | WorkabilityPolicy::Forward
        )
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    FailOpen,
    FailClosed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkabilityConfig {
    pub policy: WorkabilityPolicy,
    /// Envelopes signrelay has no registration for: workable (true) or not.
    pub unknown_envelopes_workable: bool,
    /// What GoSign should do with a non-workable envelope: NOP or DELETE.
    pub action: crate::vendors::gosign::workability::Action,
    /// A remote check (ZRC, case application) gets this long.
    pub timeout_ms: u64,
    /// The answer when a remote check fails or times out.
    pub on_error: OnError,
    /// Decisions of remote policies are cached this many seconds (0: off).
    pub cache_secs: u64,
    /// `forward`: base URL of the case application's workability service; signrelay calls
    /// `{forward_url}/envelopes/{e}/managers/{u}[/for/{o}]/status`.
    pub forward_url: Option<String>,
    pub forward_bearer: Option<Secret>,
    /// `zaak-open`: ZGW credentials for the ZRC (default: the NRC's).
    pub zrc_client_id: Option<String>,
    pub zrc_secret: Option<Secret>,
}

impl Default for WorkabilityConfig {
    fn default() -> Self {
        Self {
            policy: WorkabilityPolicy::Always,
            unknown_envelopes_workable: true,
            action: crate::vendors::gosign::workability::Action::Nop,
            timeout_ms: 2000,
            on_error: OnError::FailOpen,
            cache_secs: 5,
            forward_url: None,
            forward_bearer: None,
            zrc_client_id: None,
            zrc_secret: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GosignRestConfig {
    pub enabled: bool,
    pub base_path: String,
    /// Must be set explicitly, `{ method = "none" }` included.
    pub auth: Option<AuthConfig>,
    /// Largest notify body (documents arrive inline, base64).
    pub body_limit_mib: usize,
    /// Bodies above 1 MiB being read at once; more wait, so memory stays bounded.
    pub large_bodies_in_flight: usize,
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
            public_url: "http://localhost:8080".into(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".into(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
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
            concurrency: 4,
            timeout_secs: 10,
            backoff_initial_ms: 500,
            backoff_max_secs: 600,
            give_up_after_hours: 72,
            park_timeout_hours: 168,
        }
    }
}

impl Default for NrcConfig {
    fn default() -> Self {
        Self {
            url: "http://localhost:8000/api/v1".into(),
            kanaal: "documentacties".into(),
            kanaal_documentatie_link: "https://github.com/signrelay/signrelay".into(),
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

impl Default for GosignRestConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_path: "/gosign/rest".into(),
            auth: None,
            body_limit_mib: 64,
            large_bodies_in_flight: 2,
        }
    }
}

/// A secret: inline (for development), from an environment variable, or from a file (e.g. a
/// mounted Kubernetes secret). Resolved once at start; never printed.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Secret {
    Env(EnvRef),
    File(FileRef),
    Inline(String),
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct EnvRef {
    pub env: String,
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub file: PathBuf,
}

impl Secret {
    pub fn env(name: &str) -> Secret {
        Secret::Env(EnvRef { env: name.into() })
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Env(EnvRef { env }) => write!(f, "Secret(env {env})"),
            Secret::File(FileRef { file }) => write!(f, "Secret(file {})", file.display()),
            Secret::Inline(_) => f.write_str("Secret(inline ***)"),
        }
    }
}

impl Secret {
    /// The secret's value. Trailing newlines of files are dropped.
    pub fn resolve(&self) -> anyhow::Result<String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::Env(EnvRef { env }) => std::env::var(env)
                .map_err(|_| anyhow::anyhow!("environment variable {env} is not set")),
            Secret::File(FileRef { file }) => std::fs::read_to_string(file)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| anyhow::anyhow!("cannot read secret file {}: {e}", file.display())),
        }
    }

    /// How the effective config shows it: where it comes from, never what it is.
    pub fn redacted(&self) -> serde_json::Value {
        match self {
            Secret::Env(EnvRef { env }) => serde_json::json!({ "env": env }),
            Secret::File(FileRef { file }) => serde_json::json!({ "file": file }),
            Secret::Inline(_) => serde_json::json!("***"),
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
        fig.extract().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Checks that hold across keys; secrets must resolve so that a bad deployment fails at
    /// start, not at the first callback.
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
        if self.relay.enabled {
            if let Err(e) = self.nrc.secret.resolve() {
                errs.push(format!("nrc.secret: {e}"));
            }
        }
        if self.relay.concurrency == 0 {
            errs.push("relay.concurrency must be at least 1".into());
        }
        if self.relay.backoff_initial_ms == 0
            || self.relay.backoff_initial_ms > self.relay.backoff_max_secs * 1000
        {
            errs.push("relay.backoff_initial_ms must be > 0 and <= relay.backoff_max_secs".into());
        }
        if !(1..=3600).contains(&self.nrc.jwt_max_age_secs) {
            errs.push("nrc.jwt_max_age_secs must be between 1 and 3600".into());
        }
        if self.store.max_group == 0 {
            errs.push("store.max_group must be at least 1".into());
        }
        if let Err(e) = self.admin.auth.validate("admin.auth") {
            errs.push(e);
        }
        if self.gosign.rest.enabled {
            if !self.gosign.rest.base_path.starts_with('/')
                || self.gosign.rest.base_path.ends_with('/')
            {
                errs.push("gosign.rest.base_path must start and not end with '/'".into());
            }
            match &self.gosign.rest.auth {
                None => errs.push(
                    "gosign.rest.auth is not set: choose basic, api-key, or (explicitly) none"
                        .into(),
                ),
                Some(a) => {
                    if let Err(e) = a.validate("gosign.rest.auth") {
                        errs.push(e);
                    }
                }
            }
            if self.gosign.rest.body_limit_mib == 0 || self.gosign.rest.large_bodies_in_flight == 0
            {
                errs.push(
                    "gosign.rest.body_limit_mib and large_bodies_in_flight must be > 0".into(),
                );
            }
        }
        let soap = &self.gosign.soap;
        if soap.enabled {
            for (name, p) in [
                ("base_path", &soap.base_path),
                ("events_path", &soap.events_path),
            ] {
                if !p.starts_with('/') || p.ends_with('/') {
                    errs.push(format!(
                        "gosign.soap.{name} must start and not end with '/'"
                    ));
                }
            }
            match &soap.auth {
                None => errs.push(
                    "gosign.soap.auth is not set: choose basic, api-key, or (explicitly) none"
                        .into(),
                ),
                Some(a) => {
                    if let Err(e) = a.validate("gosign.soap.auth") {
                        errs.push(e);
                    }
                }
            }
            if soap.body_limit_mib == 0 || soap.large_bodies_in_flight == 0 {
                errs.push(
                    "gosign.soap.body_limit_mib and large_bodies_in_flight must be > 0".into(),
                );
            }
        }
        if url::Url::parse(&self.server.public_url).is_err() {
            errs.push("server.public_url is not a URL".into());
        }
        let w = &self.gosign.workability;
        match w.policy {
            WorkabilityPolicy::Forward => match w.forward_url.as_deref().map(url::Url::parse) {
                Some(Ok(u)) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => errs.push(
                    "gosign.workability.forward_url must be an http(s) URL for policy forward"
                        .into(),
                ),
            },
            WorkabilityPolicy::ZaakOpen => {
                let secret = w.zrc_secret.as_ref().unwrap_or(&self.nrc.secret);
                if let Err(e) = secret.resolve() {
                    errs.push(format!("gosign.workability.zrc_secret: {e}"));
                }
            }
            _ => {}
        }
        if let Some(b) = &w.forward_bearer {
            if let Err(e) = b.resolve() {
                errs.push(format!("gosign.workability.forward_bearer: {e}"));
            }
        }
        if w.timeout_ms == 0 {
            errs.push("gosign.workability.timeout_ms must be > 0".into());
        }
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
        v["admin"]["auth"] = self.admin.auth.redacted();
        if let Some(a) = &self.gosign.rest.auth {
            v["gosign"]["rest"]["auth"] = a.redacted();
        }
        if let Some(a) = &self.gosign.soap.auth {
            v["gosign"]["soap"]["auth"] = a.redacted();
        }
        if let Some(s) = &self.gosign.workability.forward_bearer {
            v["gosign"]["workability"]["forward_bearer"] = s.redacted();
        }
        if let Some(s) = &self.gosign.workability.zrc_secret {
            v["gosign"]["workability"]["zrc_secret"] = s.redacted();
        }
        v
    }

    pub fn relay_timeout(&self) -> Duration {
        Duration::from_secs(self.relay.timeout_secs)
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

    #[test]
    fn example_config_documents_every_key() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("signrelay.example.toml");
        let example = std::fs::read_to_string(&file).unwrap();
        let parsed: toml::Value = toml::from_str(&example).expect("example parses");
        let (mut set, mut unset) = (Vec::new(), Vec::new());
        leaves(
            &serde_json::to_value(Config::default()).unwrap(),
            String::new(),
            &mut set,
            &mut unset,
        );
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
        // The example's values are the defaults (apart from the auth it must choose).
        let typed: Config = toml::from_str(&example).expect("example is a valid config");
        let mut defaults = serde_json::to_value(Config::default()).unwrap();
        defaults["gosign"]["rest"]["auth"] = serde_json::to_value(&typed.gosign.rest.auth).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), defaults);
        with_env(
            &[
                ("SIGNRELAY_NRC_SECRET", "nrc-secret"),
                ("SIGNRELAY_ADMIN_API_KEY", "0123456789abcdef0123"),
                ("SIGNRELAY_GOSIGN_PASSWORD", "pw"),
            ],
            || Config::load(Some(&file)).expect("example validates"),
        );
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let cfg = with_env(
            &[
                ("SIGNRELAY__NRC__URL", "https://nrc.example.nl/api/v1"),
                ("SIGNRELAY__GOSIGN__REST__BASE_PATH", "/cb/gosign"),
                ("SIGNRELAY__RELAY__CONCURRENCY", "2"),
            ],
            || Config::load_unvalidated(None).unwrap(),
        );
        assert_eq!(cfg.nrc.url, "https://nrc.example.nl/api/v1");
        assert_eq!(cfg.gosign.rest.base_path, "/cb/gosign");
        assert_eq!(cfg.relay.concurrency, 2);
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
            [gosign.rest.auth]
            method = "api-key"
            header = "X-Key"
            key = { env = "SOME_KEY" }
        "#;
        let cfg: Config = toml::from_str(toml).unwrap();
        let shown = cfg.redacted().to_string();
        assert!(!shown.contains("inline-secret-value"), "{shown}");
        assert!(shown.contains("SOME_KEY"));
    }

    #[test]
    fn missing_gosign_auth_is_an_error() {
        let mut cfg = Config::default();
        cfg.nrc.secret = Secret::Inline("x".into());
        cfg.admin.auth = AuthConfig::None;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("gosign.rest.auth is not set"), "{err}");
    }
}
