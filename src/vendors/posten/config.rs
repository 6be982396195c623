//! Posten signering's config section, `[posten]`: the exit URLs of direct jobs, the landing
//! pages the signer's browser is sent on to, status polling, and the organisation certificate
//! for Posten's API (mutual TLS).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostenConfig {
    pub enabled: bool,
    /// `upload`: a completed job's PAdES (`pades-url`, one PDF for all its documents) becomes
    /// the new version of the trigger's one document in the DRC, and each signer's XAdES an
    /// evidence document, before the NRC is notified; `off`: notified at once.
    pub documents: crate::documents::DocumentsMode,
    /// The largest signed document signrelay fetches from Posten, MiB.
    pub download_limit_mib: u64,
    /// Exit URLs are `{public_url}{base_path}/direct/{reference}/completion|rejection|error`.
    pub base_path: String,
    /// Posten's API, e.g. `https://api.signering.posten.no/api`
    /// (test: `https://api.difitest.signering.posten.no/api`).
    pub api_url: String,
    /// The sender's organisation number (polling: `{api_url}/{organization_number}/…`).
    pub organization_number: String,
    /// The organisation certificate for TLS client authentication: PEM (certificate chain
    /// and private key, one file or two) …
    pub client_certificate_pem: Option<PathBuf>,
    pub client_key_pem: Option<PathBuf>,
    /// … or PKCS#12 with its password.
    pub client_pkcs12: Option<PathBuf>,
    pub client_pkcs12_password: Option<Secret>,
    /// Trust only this CA (PEM) for Posten's server certificate instead of the system roots.
    pub ca_certificate_pem: Option<PathBuf>,
    /// Where the signer's browser goes after an exit URL: the case application's pages (the
    /// transaction id and outcome are added as `transactie` and `uitkomst`); built-in plain
    /// pages when not set.
    pub landing: Landing,
    /// How long the browser waits for Posten's status before it is sent to the "wordt
    /// verwerkt" page (the status is fetched on regardless), milliseconds.
    pub redirect_wait_ms: u64,
    /// Poll the portal and/or direct status queue.
    pub poll_portal: bool,
    pub poll_direct: bool,
    /// A named polling queue (`polling_queue=NAME`); the default queue when not set.
    pub polling_queue: Option<String>,
    /// Time for one call to Posten.
    pub timeout_secs: u64,
    /// Calls to Posten in flight at once.
    pub concurrency: usize,
    /// Backoff between attempts of a status fetch or confirmation, with full jitter.
    pub backoff_initial_ms: u64,
    pub backoff_max_secs: u64,
    /// A fetch or confirmation still failing this long after it was queued is dead-lettered.
    pub give_up_after_hours: u64,
    /// A status Posten says is not complete yet (`SIGNING_CEREMONY_NOT_COMPLETED`) is asked
    /// again for this long, seconds.
    pub ceremony_settle_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Landing {
    pub completed_url: Option<String>,
    pub rejected_url: Option<String>,
    pub error_url: Option<String>,
    /// Shown while the status is not known yet.
    pub processing_url: Option<String>,
}

impl Default for PostenConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            documents: crate::documents::DocumentsMode::Off,
            download_limit_mib: 256,
            base_path: "/posten".into(),
            api_url: "https://api.signering.posten.no/api".into(),
            organization_number: String::new(),
            client_certificate_pem: None,
            client_key_pem: None,
            client_pkcs12: None,
            client_pkcs12_password: None,
            ca_certificate_pem: None,
            landing: Landing::default(),
            redirect_wait_ms: 2000,
            poll_portal: false,
            poll_direct: false,
            polling_queue: None,
            timeout_secs: 10,
            concurrency: 4,
            backoff_initial_ms: 1000,
            backoff_max_secs: 300,
            give_up_after_hours: 72,
            ceremony_settle_secs: 120,
        }
    }
}

fn http_url(s: &str, https_only: bool) -> bool {
    url::Url::parse(s)
        .map(|u| {
            (u.scheme() == "https" || (!https_only && u.scheme() == "http")) && u.host().is_some()
        })
        .unwrap_or(false)
}

impl PostenConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    pub fn redirect_wait(&self) -> Duration {
        Duration::from_millis(self.redirect_wait_ms)
    }

    /// What is wrong with the section, each message naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !self.enabled {
            return errs;
        }
        if !(1..=1 << 20).contains(&self.download_limit_mib) {
            errs.push("posten.download_limit_mib must be between 1 and 1048576".into());
        }
        if !self.base_path.starts_with('/') || self.base_path.ends_with('/') {
            errs.push("posten.base_path must start and not end with '/'".into());
        }
        // Posten's API is only ever reached over TLS with the organisation certificate.
        if !http_url(&self.api_url, true) {
            errs.push("posten.api_url must be an https URL".into());
        }
        if (self.poll_portal || self.poll_direct)
            && (self.organization_number.len() != 9
                || !self.organization_number.bytes().all(|b| b.is_ascii_digit()))
        {
            errs.push("posten.organization_number must be 9 digits (polling needs it)".into());
        }
        match (
            &self.client_certificate_pem,
            &self.client_pkcs12,
        ) {
            (Some(_), Some(_)) => errs.push(
                "posten: give the organisation certificate as PEM (client_certificate_pem) or PKCS#12 (client_pkcs12), not both"
                    .into(),
            ),
            (None, None) => errs.push(
                "posten.client_certificate_pem or posten.client_pkcs12 must be set (Posten requires TLS client authentication)"
                    .into(),
            ),
            (None, Some(_)) => {
                if let Some(Err(e)) = self.client_pkcs12_password.as_ref().map(Secret::resolve) {
                    errs.push(format!("posten.client_pkcs12_password: {e}"));
                }
            }
            (Some(_), None) => {}
        }
        for (key, url) in [
            ("completed_url", &self.landing.completed_url),
            ("rejected_url", &self.landing.rejected_url),
            ("error_url", &self.landing.error_url),
            ("processing_url", &self.landing.processing_url),
        ] {
            if url.as_deref().is_some_and(|u| !http_url(u, false)) {
                errs.push(format!("posten.landing.{key} is not an http(s) URL"));
            }
        }
        if let Some(q) = &self.polling_queue {
            if q.is_empty()
                || q.len() > 64
                || !q
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                errs.push("posten.polling_queue must be 1 to 64 of A-Z a-z 0-9 - _".into());
            }
        }
        if !(1..=30_000).contains(&self.redirect_wait_ms) {
            errs.push("posten.redirect_wait_ms must be between 1 and 30000".into());
        }
        if !(1..=300).contains(&self.timeout_secs) {
            errs.push("posten.timeout_secs must be between 1 and 300".into());
        }
        if !(1..=64).contains(&self.concurrency) {
            errs.push("posten.concurrency must be between 1 and 64".into());
        }
        if self.backoff_initial_ms == 0
            || self.backoff_max_secs > 86_400
            || self.backoff_initial_ms > self.backoff_max_secs.saturating_mul(1000)
        {
            errs.push(
                "posten.backoff_initial_ms must be > 0 and <= backoff_max_secs (<= 1 day)".into(),
            );
        }
        if !(1..=24 * 365).contains(&self.give_up_after_hours) {
            errs.push("posten.give_up_after_hours must be between 1 and 8760".into());
        }
        if self.ceremony_settle_secs > 86_400 {
            errs.push("posten.ceremony_settle_secs must be at most 86400".into());
        }
        errs
    }

    /// The section as `check-config` prints it: secrets show their source only.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serializes");
        if let Some(s) = &self.client_pkcs12_password {
            v["client_pkcs12_password"] = s.redacted();
        }
        v
    }
}
