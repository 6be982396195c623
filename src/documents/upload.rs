//! Writing one signed file into the DRC: in one PATCH (base64) or, above the configured size,
//! as `bestandsdelen` PUT one after another from the staged file (memory bounded by the
//! read buffer, whatever the size). Also the evidence document's create.

use std::path::Path;

use base64::Engine;
use serde_json::{json, Value};

use crate::zgw::drc::{Bestandsdeel, DrcClient, DrcError, Eio, Integriteit};

use super::source::SignedFile;

/// The document's new version, as the signing pattern asks: name ending in `.pdf`,
/// `application/pdf`, the size, and the SHA-256 (which also tells a later turn that this
/// upload happened: the DRC stores `integriteit` as sent).
pub struct NewVersion<'a> {
    pub file: &'a SignedFile,
    pub path: &'a Path,
    pub bestandsnaam: String,
    pub integriteit: Integriteit,
}

impl NewVersion<'_> {
    fn metadata(&self, lock: &str) -> Value {
        json!({
            "bestandsomvang": self.file.size,
            "bestandsnaam": self.bestandsnaam,
            "formaat": "application/pdf",
            "integriteit": self.integriteit,
            "lock": lock,
        })
    }
}

/// PATCHes the new version under `lock`: inline up to `parts_above` bytes, else in parts.
pub async fn write_version(
    drc: &DrcClient,
    url: &str,
    lock: &str,
    version: &NewVersion<'_>,
    parts_above: u64,
) -> Result<Eio, DrcError> {
    let mut body = version.metadata(lock);
    if version.file.size <= parts_above {
        body["inhoud"] = Value::String(base64_of(version.path).await?);
        return drc.patch(url, &body).await;
    }
    body["inhoud"] = Value::Null;
    let eio = drc.patch(url, &body).await?;
    put_parts(drc, lock, &eio.bestandsdelen, version.path).await?;
    Ok(eio)
}

/// PUTs the parts not yet complete, each from its offset in the file (parts are consecutive
/// by `volgnummer`).
pub async fn put_parts(
    drc: &DrcClient,
    lock: &str,
    parts: &[Bestandsdeel],
    path: &Path,
) -> Result<(), DrcError> {
    let mut parts: Vec<&Bestandsdeel> = parts.iter().collect();
    parts.sort_by_key(|p| p.volgnummer);
    let mut offset = 0u64;
    for part in parts {
        if !part.voltooid {
            let done = drc
                .put_part(&part.url, lock, path, offset, part.omvang)
                .await?;
            if !done.voltooid {
                return Err(DrcError::Refused {
                    component: "DRC",
                    status: 200,
                    code: "incomplete-part".into(),
                    body: format!("bestandsdeel {} niet voltooid", part.volgnummer),
                });
            }
        }
        offset += part.omvang;
    }
    Ok(())
}

/// A new document holding an evidence file (inline: evidence files are small).
pub async fn create_evidence(
    drc: &DrcClient,
    drc_base: &str,
    mut body: Value,
    file: &SignedFile,
    path: &Path,
) -> Result<Eio, DrcError> {
    body["inhoud"] = Value::String(base64_of(path).await?);
    body["bestandsomvang"] = json!(file.size);
    drc.create(drc_base, &body).await
}

async fn base64_of(path: &Path) -> Result<String, DrcError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| DrcError::Unavailable {
            retry_after: None,
            message: format!("staged file: {e}"),
        })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}
