//! The `[drc]` section: how signrelay reaches the Documenten API (and the Zaken API for the
//! evidence document's link), and what it does when a document changed while it was signed.
//! Which vendors upload at all is each vendor's own `documents` key.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bounds::{scaled, within};
use crate::secret::Secret;

/// A vendor's `documents` key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocumentsMode {
    /// A completion is notified at once; the DRC keeps the unsigned version (the case
    /// application fetches the signed one itself).
    #[default]
    Off,
    /// The signed documents become new versions in the DRC before the NRC hears of the
    /// completion.
    Upload,
}

/// What to do when the DRC's version is newer than the one sent for signing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnNewerVersion {
    /// Stop with "document gewijzigd tijdens ondertekenen": an operator decides.
    #[default]
    DeadLetter,
    /// Upload the signed version on top of the edit.
    Upload,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrcConfig {
    /// The Applicatie's client id and secret at the DRC; the NRC's when not set.
    pub client_id: Option<String>,
    pub secret: Option<Secret>,
    /// The same at the ZRC (linking an evidence document to the zaak); the DRC's when not set.
    pub zrc_client_id: Option<String>,
    pub zrc_secret: Option<Secret>,
    pub on_newer_version: OnNewerVersion,
    /// Documents larger than this go in parts (`bestandsdelen`), streamed from disk; smaller
    /// ones in one PATCH (base64), which holds about 2.4 times their size in memory.
    pub parts_above_kib: u64,
    /// The RSIN of the organisation that creates evidence documents (`bronorganisatie`).
    pub bronorganisatie: Option<String>,
    /// `auteur` of an evidence document.
    pub auteur: String,
    /// `vertrouwelijkheidaanduiding` of an evidence document; the informatieobjecttype's when
    /// not set.
    pub vertrouwelijkheidaanduiding: Option<String>,
    /// A document still locked this many seconds after signrelay's own lock call went
    /// unanswered (a crash between the DRC's answer and signrelay's record of it) is handed
    /// to an operator (a dead letter): the DRC does not say whose a lock is, and signrelay
    /// never breaks a lock it cannot prove its own.
    pub lost_lock_after_secs: u64,
    /// Events whose documents are uploaded at once.
    pub concurrency: usize,
    /// Time for one small call (a read, a lock).
    pub request_timeout_secs: u64,
    /// Time for one upload (a PATCH with content, one part) and for one turn of the step.
    pub upload_timeout_secs: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_secs: u64,
    /// A step still failing this long after it began is dead-lettered.
    pub give_up_after_hours: u64,
}

impl Default for DrcConfig {
    fn default() -> Self {
        Self {
            client_id: None,
            secret: None,
            zrc_client_id: None,
            zrc_secret: None,
            on_newer_version: OnNewerVersion::DeadLetter,
            parts_above_kib: 8192,
            bronorganisatie: None,
            auteur: "signrelay".into(),
            vertrouwelijkheidaanduiding: None,
            lost_lock_after_secs: 900,
            concurrency: 2,
            request_timeout_secs: 15,
            upload_timeout_secs: 300,
            backoff_initial_ms: 1000,
            backoff_max_secs: 300,
            give_up_after_hours: 72,
        }
    }
}

/// The `vertrouwelijkheidaanduiding` values of the Documenten API.
const VERTROUWELIJKHEID: [&str; 8] = [
    "openbaar",
    "beperkt_openbaar",
    "intern",
    "zaakvertrouwelijk",
    "vertrouwelijk",
    "confidentieel",
    "geheim",
    "zeer_geheim",
];

impl DrcConfig {
    /// What is wrong with it; `uploading` when some vendor uploads (then the secrets must
    /// resolve at start).
    pub fn validate(&self, uploading: bool) -> Vec<String> {
        let mut errs = Vec::new();
        let bounded: [(&str, u64, u64, u64); 8] = [
            ("drc.parts_above_kib", self.parts_above_kib, 1, 1 << 22),
            (
                "drc.lost_lock_after_secs",
                self.lost_lock_after_secs,
                1,
                604_800,
            ),
            ("drc.concurrency", self.concurrency as u64, 1, 64),
            (
                "drc.request_timeout_secs",
                self.request_timeout_secs,
                1,
                600,
            ),
            (
                "drc.upload_timeout_secs",
                self.upload_timeout_secs,
                1,
                86_400,
            ),
            (
                "drc.backoff_initial_ms",
                self.backoff_initial_ms,
                1,
                3_600_000,
            ),
            ("drc.backoff_max_secs", self.backoff_max_secs, 1, 86_400),
            (
                "drc.give_up_after_hours",
                self.give_up_after_hours,
                1,
                8_760,
            ),
        ];
        for (key, value, min, max) in bounded {
            within(&mut errs, key, value, min..=max);
        }
        if let Some(b) = &self.bronorganisatie {
            if !(b.len() == 9 && b.bytes().all(|c| c.is_ascii_digit())) {
                errs.push("drc.bronorganisatie must be an RSIN of 9 digits".into());
            }
        }
        if let Some(v) = &self.vertrouwelijkheidaanduiding {
            if !VERTROUWELIJKHEID.contains(&v.as_str()) {
                errs.push(format!(
                    "drc.vertrouwelijkheidaanduiding must be one of {}",
                    VERTROUWELIJKHEID.join(", ")
                ));
            }
        }
        if self.auteur.trim().is_empty() || self.auteur.chars().count() > 200 {
            errs.push("drc.auteur must be 1 to 200 characters".into());
        }
        if uploading {
            for (key, secret) in [
                ("drc.secret", &self.secret),
                ("drc.zrc_secret", &self.zrc_secret),
            ] {
                if let Some(Err(e)) = secret.as_ref().map(Secret::resolve) {
                    errs.push(format!("{key}: {e}"));
                }
            }
        }
        errs
    }

    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serializes");
        for key in ["secret", "zrc_secret"] {
            let shown = match key {
                "secret" => self.secret.as_ref(),
                _ => self.zrc_secret.as_ref(),
            };
            v[key] = shown
                .map(Secret::redacted)
                .unwrap_or(serde_json::Value::Null);
        }
        v
    }

    pub fn parts_above(&self) -> u64 {
        scaled(self.parts_above_kib, 1024)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn upload_timeout(&self) -> Duration {
        Duration::from_secs(self.upload_timeout_secs)
    }
}
