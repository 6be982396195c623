//! The transaction registry: which zaak a vendor's signing transaction belongs to.
//!
//! The case application registers each transaction with the trigger message of the ZGW signing
//! pattern; the relay needs its `zaak.url` to address the NRC notification.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{TransactionId, Vendor};

/// The standard trigger message (OneGround ZGW signing pattern) plus vendor-specific fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerMessage {
    pub naam: String,
    /// E-mail of the user who started the transaction (personal data: never logged).
    pub eigenaar: String,
    pub zaak: ZaakRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bewijs_informatieobjecttype: Option<String>,
    pub documenten: Vec<Document>,
    pub ondertekenaars: Vec<Ondertekenaar>,
    /// Vendor-specific extras, e.g. Posten's `status_url`.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub vendor: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZaakRef {
    pub uuid: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub uuid: String,
    pub url: String,
    #[serde(default)]
    pub titel: Option<String>,
    #[serde(default)]
    pub versie: Option<u32>,
    #[serde(default)]
    pub bestandsnaam: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ondertekenaar {
    #[serde(rename = "e-mail")]
    pub email: String,
    #[serde(default)]
    pub voornaam: Option<String>,
    #[serde(default)]
    pub achternaam: Option<String>,
    #[serde(default)]
    pub identificatie: Option<String>,
    #[serde(default)]
    pub volgorde: Option<u32>,
    #[serde(default)]
    pub authenticatie: Option<Authenticatie>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authenticatie {
    pub methode: String,
    #[serde(default)]
    pub waarde: Option<String>,
}

/// A registered transaction as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub vendor: Vendor,
    pub transaction_id: TransactionId,
    pub trigger: TriggerMessage,
    pub registered_at: DateTime<Utc>,
}

/// One invalid field, as reported in a problem+json `invalidParams` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidParam {
    pub name: String,
    pub code: &'static str,
    pub reason: String,
}

impl TriggerMessage {
    /// Checks what serde cannot: the URLs the relay and vendors will call, and required texts.
    pub fn validate(&self) -> Result<(), Vec<InvalidParam>> {
        let mut errs = Vec::new();
        let mut need = |name: &str, ok: bool, code: &'static str, reason: &str| {
            if !ok {
                errs.push(InvalidParam {
                    name: name.to_string(),
                    code,
                    reason: reason.to_string(),
                });
            }
        };
        need(
            "naam",
            !self.naam.trim().is_empty(),
            "required",
            "naam is leeg",
        );
        need(
            "eigenaar",
            !self.eigenaar.trim().is_empty(),
            "required",
            "eigenaar is leeg",
        );
        need(
            "zaak.url",
            is_http_url(&self.zaak.url),
            "invalid-url",
            "zaak.url moet een http(s)-URL zijn",
        );
        need(
            "zaak.uuid",
            uuid::Uuid::parse_str(&self.zaak.uuid).is_ok(),
            "invalid-uuid",
            "zaak.uuid is geen UUID",
        );
        if let Some(t) = &self.bewijs_informatieobjecttype {
            need(
                "bewijs_informatieobjecttype",
                is_http_url(t),
                "invalid-url",
                "bewijs_informatieobjecttype moet een http(s)-URL zijn",
            );
        }
        need(
            "documenten",
            !self.documenten.is_empty(),
            "required",
            "minstens één document",
        );
        for (i, d) in self.documenten.iter().enumerate() {
            need(
                &format!("documenten.{i}.url"),
                is_http_url(&d.url),
                "invalid-url",
                "url moet een http(s)-URL zijn",
            );
        }
        need(
            "ondertekenaars",
            !self.ondertekenaars.is_empty(),
            "required",
            "minstens één ondertekenaar",
        );
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s)
        .map(|u| (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> TriggerMessage {
        serde_json::from_value(serde_json::json!({
            "naam": "Vergunning",
            "eigenaar": "lisa@breda.dev",
            "zaak": {"uuid": "2cc803a9-7404-4289-8f3d-f2300f666eac", "url": "https://zrc.example/zaken/2cc803a9"},
            "documenten": [{"uuid": "f491249e-0651-4d22-a8a8-bb35885e9245", "url": "https://drc.example/d/1", "titel": "Besluit", "versie": 1, "bestandsnaam": "b.docx"}],
            "ondertekenaars": [{"e-mail": "john@x.nl", "voornaam": "John", "achternaam": "Doe", "volgorde": 1, "authenticatie": {"methode": "sms", "waarde": "+31655555555"}}]
        }))
        .unwrap()
    }

    #[test]
    fn sample_trigger_is_valid() {
        assert_eq!(sample().validate(), Ok(()));
    }

    #[test]
    fn bad_zaak_url_is_reported() {
        let mut t = sample();
        t.zaak.url = "ftp://x".into();
        let errs = t.validate().unwrap_err();
        assert_eq!(errs[0].name, "zaak.url");
    }
}
