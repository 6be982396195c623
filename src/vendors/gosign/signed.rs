//! GoSign's signed documents: inline in its completion callback (REST `documents[]`, SOAP
//! `documents/document`), already in the payload archive. Staged by decoding the archived
//! base64 in pieces. GoSign sends them in the envelope's order, each with the
//! `docExternalId` the case application gave it; it sends no evidence document.

use std::sync::Arc;

use async_trait::async_trait;

use crate::documents::source::{decode_base64, Role};
use crate::documents::{SignedSource, SourceError, Staging};
use crate::event::SigningEvent;
use crate::registry::Registration;
use crate::store::Store;

use super::{model, rest, soap};

pub struct GosignSigned {
    pub store: Arc<dyn Store>,
}

#[async_trait]
impl SignedSource for GosignSigned {
    fn ordered(&self) -> bool {
        true
    }

    async fn stage(
        &self,
        event: &SigningEvent,
        _registration: &Registration,
        into: &mut Staging,
    ) -> Result<(), SourceError> {
        let payload = match self.store.payload(event.archive_id).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return Err(SourceError::Refused(
                    "de callback met de ondertekende documenten is niet meer bewaard".into(),
                ))
            }
            Err(e) => return Err(SourceError::Unavailable(e.to_string())),
        };
        let surface = event.surface.clone();
        for (index, doc) in event.documents.iter().enumerate() {
            let path = into.next_path();
            let (body, target) = (payload.bytes.clone(), path.clone());
            let surface = surface.clone();
            let decoded = tokio::task::spawn_blocking(move || {
                let write = |mime: Option<&str>, text: &str| {
                    let mut out = std::io::BufWriter::new(std::fs::File::create(&target)?);
                    decode_base64(text, &mut out)?;
                    std::io::Write::flush(&mut out)?;
                    Ok::<_, std::io::Error>(mime.map(str::to_string))
                };
                match surface.as_str() {
                    rest::SURFACE => model::json_document_with(&body, index, write),
                    soap::SURFACE => soap::xml_document_with(&body, index, write),
                    _ => None,
                }
            })
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
            let mime = match decoded {
                Some(Ok(mime)) => mime,
                Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Err(SourceError::Refused(format!(
                        "document {} in GoSigns callback is geen geldige base64",
                        index + 1
                    )))
                }
                Some(Err(e)) => return Err(SourceError::Unavailable(e.to_string())),
                None => {
                    return Err(SourceError::Refused(format!(
                        "document {} ontbreekt in GoSigns callback",
                        index + 1
                    )))
                }
            };
            let vendor_id = Some(doc.external_id.clone()).filter(|s| !s.is_empty());
            into.add(&path, Role::Document, vendor_id, None, mime)
                .await
                .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        }
        Ok(())
    }
}
