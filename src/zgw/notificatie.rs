//! The NRC notification of the ZGW signing pattern (channel `documentacties`).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Outcome, SigningEvent};
use crate::registry::Registration;

pub const ACTIE_VOLTOOID: &str = "OndertekenenVoltooid";
pub const ACTIE_AFGEBROKEN: &str = "OndertekenenAfgebroken";

/// Longest `reden` relayed; a vendor note can be long, an NRC kenmerk should not be.
const REDEN_MAX_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notificatie {
    pub kanaal: String,
    pub hoofd_object: String,
    pub resource: String,
    pub resource_url: String,
    pub actie: String,
    /// RFC 3339 UTC, whole seconds, never in the NRC's future.
    pub aanmaakdatum: String,
    /// Always present (Open Notificaties requires it); values are strings.
    pub kenmerken: BTreeMap<String, String>,
}

impl Notificatie {
    /// The notification for an event of a registered transaction; `None` for an outcome
    /// that has no actie (progress, unless `progress_actie` is given).
    pub fn for_event(
        kanaal: &str,
        event: &SigningEvent,
        registration: &Registration,
        aanmaakdatum: DateTime<Utc>,
        progress_actie: Option<&str>,
    ) -> Option<Notificatie> {
        let mut kenmerken = BTreeMap::new();
        kenmerken.insert(
            "transaction_id".to_string(),
            event.transaction_id.to_string(),
        );
        let actie = match &event.outcome {
            Outcome::Completed => ACTIE_VOLTOOID,
            Outcome::Aborted { reason } => {
                kenmerken.insert(
                    "reden".into(),
                    reason.chars().take(REDEN_MAX_CHARS).collect(),
                );
                ACTIE_AFGEBROKEN
            }
            Outcome::Progress { .. } => progress_actie?,
        };
        let zaak = registration.trigger.zaak.url.clone();
        Some(Notificatie {
            kanaal: kanaal.to_string(),
            hoofd_object: zaak.clone(),
            resource: "zaak".into(),
            resource_url: zaak,
            actie: actie.to_string(),
            aanmaakdatum: aanmaakdatum.to_rfc3339_opts(SecondsFormat::Secs, true),
            kenmerken,
        })
    }
}
