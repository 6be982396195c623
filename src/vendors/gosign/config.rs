//! GoSign's config section, `[gosign]`: the REST and SOAP surfaces and the workability policy.

use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;
use crate::bounds::within;
use crate::secret::Secret;
use crate::vendors::seam::Settings;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GosignConfig {
    pub rest: GosignRestConfig,
    pub soap: GosignSoapConfig,
    pub workability: WorkabilityConfig,
    /// `upload`: a completion's signed documents (inline in GoSign's callback) become new
    /// versions in the DRC before the NRC is notified; `off`: notified at once.
    pub documents: crate::documents::DocumentsMode,
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

/// What GoSign does with an envelope that is not workable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "NOP")]
    Nop,
    #[serde(rename = "DELETE")]
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Nop => "NOP",
            Action::Delete => "DELETE",
        }
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
    pub action: Action,
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
            action: Action::Nop,
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
    /// Bodies above 1 MiB parsed and recorded at once (they are spooled to disk while they
    /// arrive); more wait once complete, so the memory their parsing maps stays bounded.
    pub large_bodies_in_flight: usize,
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

/// A surface's body limit (MiB) and large bodies in flight, within their bounds.
fn body_bounds(errs: &mut Vec<String>, surface: &str, limit_mib: usize, in_flight: usize) {
    within(
        errs,
        &format!("{surface}.body_limit_mib"),
        limit_mib,
        1..=1024,
    );
    within(
        errs,
        &format!("{surface}.large_bodies_in_flight"),
        in_flight,
        1..=64,
    );
}

impl GosignConfig {
    /// What is wrong with the section, each message naming its key.
    pub fn validate(&self, settings: &Settings) -> Vec<String> {
        let mut errs: Vec<String> = Vec::new();
        if self.rest.enabled {
            if !self.rest.base_path.starts_with('/') || self.rest.base_path.ends_with('/') {
                errs.push("gosign.rest.base_path must start and not end with '/'".into());
            }
            match &self.rest.auth {
                None => errs.push(AuthConfig::not_set("gosign.rest.auth")),
                Some(a) => {
                    if let Err(e) = a.validate("gosign.rest.auth") {
                        errs.push(e);
                    }
                }
            }
            body_bounds(
                &mut errs,
                "gosign.rest",
                self.rest.body_limit_mib,
                self.rest.large_bodies_in_flight,
            );
        }
        let soap = &self.soap;
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
                None => errs.push(AuthConfig::not_set("gosign.soap.auth")),
                Some(a) => {
                    if let Err(e) = a.validate("gosign.soap.auth") {
                        errs.push(e);
                    }
                }
            }
            body_bounds(
                &mut errs,
                "gosign.soap",
                soap.body_limit_mib,
                soap.large_bodies_in_flight,
            );
        }
        let w = &self.workability;
        match w.policy {
            WorkabilityPolicy::Forward => match w.forward_url.as_deref().map(url::Url::parse) {
                Some(Ok(u)) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => errs.push(
                    "gosign.workability.forward_url must be an http(s) URL for policy forward"
                        .into(),
                ),
            },
            WorkabilityPolicy::ZaakOpen => {
                let secret = w.zrc_secret.as_ref().unwrap_or(&settings.zgw.secret);
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
        within(
            &mut errs,
            "gosign.workability.timeout_ms",
            w.timeout_ms,
            1..=60_000,
        );
        within(
            &mut errs,
            "gosign.workability.cache_secs",
            w.cache_secs,
            0..=86_400,
        );
        errs
    }

    /// The section as `check-config` prints it: secrets show their source only.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serializes");
        if let Some(a) = &self.rest.auth {
            v["rest"]["auth"] = a.redacted();
        }
        if let Some(a) = &self.soap.auth {
            v["soap"]["auth"] = a.redacted();
        }
        if let Some(s) = &self.workability.forward_bearer {
            v["workability"]["forward_bearer"] = s.redacted();
        }
        if let Some(s) = &self.workability.zrc_secret {
            v["workability"]["zrc_secret"] = s.redacted();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zgw::jwt::ZgwIdentity;

    fn settings() -> Settings {
        Settings {
            public_url: "http://localhost:8080".into(),
            client_timeout: std::time::Duration::from_secs(30),
            body_min_rate: crate::http::body::MinRate {
                bytes: 16 * 1024,
                window: std::time::Duration::from_secs(10),
            },
            zgw: ZgwIdentity {
                client_id: "signrelay".into(),
                secret: Secret::Inline("x".into()),
                user_id: "signrelay".into(),
                user_representation: "signrelay".into(),
                max_age: std::time::Duration::from_secs(300),
            },
        }
    }

    #[test]
    fn missing_gosign_auth_is_an_error_naming_every_method() {
        let mut cfg = GosignConfig::default();
        cfg.soap.enabled = true;
        let errs = cfg.validate(&settings());
        for surface in ["rest", "soap"] {
            let want = format!(
                "gosign.{surface}.auth is not set: choose basic, api-key, jwt, or (explicitly) none"
            );
            assert!(errs.contains(&want), "{errs:?}");
        }
    }

    #[test]
    fn gosign_secrets_are_redacted() {
        let toml = r#"
            [rest.auth]
            method = "basic"
            username = "gosign"
            password = "inline-password-value"
            [workability]
            zrc_secret = { env = "SOME_ZRC_SECRET" }
        "#;
        let cfg: GosignConfig = toml::from_str(toml).unwrap();
        let shown = cfg.redacted().to_string();
        assert!(!shown.contains("inline-password-value"), "{shown}");
        assert!(shown.contains("SOME_ZRC_SECRET"));
    }
}
