//! PKIsigning's config section, `[pkisigning]`: the webhook surface and the API signrelay
//! verifies terminal callbacks with.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;
use crate::secret::Secret;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PkisigningConfig {
    pub enabled: bool,
    /// `upload`: a completed dossier's signed PDFs (from `GET /requests/{id}/Download`)
    /// become new versions in the DRC before the NRC is notified; `off`: notified at once.
    pub documents: crate::documents::DocumentsMode,
    /// The largest dossier download (zip), MiB.
    pub download_limit_mib: u64,
    /// Time for one dossier download.
    pub download_timeout_secs: u64,
    /// The webhook is `{base_path}/webhook`, or `{base_path}/webhook/{path_token}`.
    pub base_path: String,
    /// Must be set explicitly when enabled, `{ method = "none" }` included.
    pub auth: Option<AuthConfig>,
    /// A secret path segment (PKIsigning signs nothing): at least 32 URL-safe characters.
    pub path_token: Option<Secret>,
    /// Largest webhook body (PKIsigning's are a few hundred bytes).
    pub body_limit_kib: usize,
    /// Relay a terminal status only after the PKIsigning API confirms it.
    pub verify: bool,
    /// A terminal status the API does not show yet is asked again for this long before the
    /// callback counts as contradicted (the API may lag its own webhook).
    pub verify_settle_secs: u64,
    /// The PKIsigning platform API (https).
    pub api_url: String,
    /// OAuth2 token endpoint (client credentials).
    pub token_url: String,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub scope: String,
    /// Allow `http://` API and token URLs (tests with a local stand-in only: the client
    /// secret and the callbacks' keys would travel in the clear).
    pub allow_insecure_http: bool,
    /// For `signrelay pkisigning register-webhook`; looked up (`GET /Organisations/current`)
    /// when not set.
    pub organisation_id: Option<String>,
    /// PKIsigning allows this many API calls in any `rate_limit_window_secs`; every call
    /// signrelay makes to it (tokens included) shares the budget.
    pub rate_limit_calls: usize,
    pub rate_limit_window_secs: u64,
    /// Time for one call to the API.
    pub timeout_secs: u64,
    /// Verifications in flight at once.
    pub concurrency: usize,
    /// Backoff between attempts of a verification, with full jitter.
    pub backoff_initial_ms: u64,
    pub backoff_max_secs: u64,
    /// A verification still failing this long after its callback is dead-lettered.
    pub give_up_after_hours: u64,
}

impl Default for PkisigningConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            documents: crate::documents::DocumentsMode::Off,
            download_limit_mib: 512,
            download_timeout_secs: 300,
            base_path: "/pkisigning".into(),
            auth: None,
            path_token: None,
            body_limit_kib: 64,
            verify: true,
            verify_settle_secs: 300,
            api_url: "https://platformapi.pkisigning.io".into(),
            token_url: "https://identity.pkisigning.io/connect/token".into(),
            client_id: None,
            client_secret: None,
            scope: "pkisigning.platform".into(),
            allow_insecure_http: false,
            organisation_id: None,
            rate_limit_calls: 100,
            rate_limit_window_secs: 60,
            timeout_secs: 10,
            concurrency: 4,
            backoff_initial_ms: 1000,
            backoff_max_secs: 300,
            give_up_after_hours: 72,
        }
    }
}

fn http_url(s: &str, allow_http: bool) -> bool {
    url::Url::parse(s)
        .map(|u| {
            (u.scheme() == "https" || (allow_http && u.scheme() == "http")) && u.host().is_some()
        })
        .unwrap_or(false)
}

impl PkisigningConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Does signrelay call the API (verification, `register-webhook`)?
    pub fn calls_api(&self) -> bool {
        self.verify || self.documents == crate::documents::DocumentsMode::Upload
    }

    /// What is wrong with the section, each message naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !self.enabled {
            return errs;
        }
        if !self.base_path.starts_with('/') || self.base_path.ends_with('/') {
            errs.push("pkisigning.base_path must start and not end with '/'".into());
        }
        match &self.auth {
            None => errs.push(AuthConfig::not_set("pkisigning.auth")),
            Some(a) => {
                if let Err(e) = a.validate("pkisigning.auth") {
                    errs.push(e);
                }
            }
        }
        if let Some(t) = &self.path_token {
            match t.resolve() {
                Err(e) => errs.push(format!("pkisigning.path_token: {e}")),
                Ok(t) if t.len() < 32
                    || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
                {
                    errs.push(
                        "pkisigning.path_token must be at least 32 characters of A-Z, a-z, 0-9, '-', '_'"
                            .into(),
                    )
                }
                Ok(_) => {}
            }
        }
        if !(1..=1024).contains(&self.body_limit_kib) {
            errs.push("pkisigning.body_limit_kib must be between 1 and 1024".into());
        }
        if self.calls_api() {
            for (key, url) in [("api_url", &self.api_url), ("token_url", &self.token_url)] {
                if !http_url(url, self.allow_insecure_http) {
                    errs.push(format!(
                        "pkisigning.{key} must be an https URL (http only with allow_insecure_http = true)"
                    ));
                }
            }
            if self.client_id.as_deref().is_none_or(str::is_empty) {
                errs.push(
                    "pkisigning.client_id is not set (verify = true and documents = \"upload\" call the API)"
                        .into(),
                );
            }
            match &self.client_secret {
                None => errs.push(
                    "pkisigning.client_secret is not set (verify = true and documents = \"upload\" call the API)"
                        .into(),
                ),
                Some(s) => {
                    if let Err(e) = s.resolve() {
                        errs.push(format!("pkisigning.client_secret: {e}"));
                    }
                }
            }
            if self.rate_limit_calls == 0 || !(1..=3600).contains(&self.rate_limit_window_secs) {
                errs.push(
                    "pkisigning.rate_limit_calls must be > 0 and rate_limit_window_secs 1..=3600"
                        .into(),
                );
            }
            if !(1..=300).contains(&self.timeout_secs) {
                errs.push("pkisigning.timeout_secs must be between 1 and 300".into());
            }
            if !(1..=64).contains(&self.concurrency) {
                errs.push("pkisigning.concurrency must be between 1 and 64".into());
            }
            if self.backoff_initial_ms == 0
                || self.backoff_max_secs > 86_400
                || self.backoff_initial_ms > self.backoff_max_secs.saturating_mul(1000)
            {
                errs.push(
                    "pkisigning.backoff_initial_ms must be > 0 and <= backoff_max_secs (<= 1 day)"
                        .into(),
                );
            }
            if !(1..=24 * 365).contains(&self.give_up_after_hours) {
                errs.push("pkisigning.give_up_after_hours must be between 1 and 8760".into());
            }
            if !(1..=1 << 20).contains(&self.download_limit_mib) {
                errs.push("pkisigning.download_limit_mib must be between 1 and 1048576".into());
            }
            if !(1..=86_400).contains(&self.download_timeout_secs) {
                errs.push("pkisigning.download_timeout_secs must be between 1 and 86400".into());
            }
            if self.verify_settle_secs > 86_400 {
                errs.push("pkisigning.verify_settle_secs must be at most 86400".into());
            }
        }
        errs
    }

    /// The section as `check-config` prints it: secrets show their source only.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serializes");
        if let Some(a) = &self.auth {
            v["auth"] = a.redacted();
        }
        if let Some(s) = &self.path_token {
            v["path_token"] = s.redacted();
        }
        if let Some(s) = &self.client_secret {
            v["client_secret"] = s.redacted();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> PkisigningConfig {
        PkisigningConfig {
            enabled: true,
            auth: Some(AuthConfig::None),
            client_id: Some("signrelay".into()),
            client_secret: Some(Secret::Inline("s".into())),
            ..PkisigningConfig::default()
        }
    }

    #[test]
    fn an_enabled_webhook_needs_its_auth_and_api_credentials() {
        assert!(
            enabled().validate().is_empty(),
            "{:?}",
            enabled().validate()
        );
        let errs = PkisigningConfig {
            auth: None,
            client_secret: None,
            ..enabled()
        }
        .validate();
        assert!(errs
            .iter()
            .any(|e| e.contains("pkisigning.auth is not set")));
        assert!(errs.iter().any(|e| e.contains("pkisigning.client_secret")));
        let no_verify = PkisigningConfig {
            verify: false,
            client_id: None,
            client_secret: None,
            ..enabled()
        };
        assert!(no_verify.validate().is_empty());
    }

    #[test]
    fn a_short_or_unsafe_path_token_is_refused_and_secrets_are_redacted() {
        let short = PkisigningConfig {
            path_token: Some(Secret::Inline("short".into())),
            ..enabled()
        };
        assert!(short.validate().iter().any(|e| e.contains("path_token")));
        let good = PkisigningConfig {
            path_token: Some(Secret::Inline("A".repeat(40))),
            client_secret: Some(Secret::Inline("client-secret-value".into())),
            ..enabled()
        };
        assert!(good.validate().is_empty());
        let shown = good.redacted().to_string();
        assert!(
            !shown.contains("AAAA") && !shown.contains("client-secret-value"),
            "{shown}"
        );
    }
}
