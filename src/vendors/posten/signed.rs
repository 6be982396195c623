//! Posten's signed documents: the `pades-url` of a completed job's status (one PAdES PDF
//! holding all the job's documents) as the signed document, and each signer's `xades-url` as
//! evidence, fetched with the organisation certificate (mutual TLS) from URLs under
//! `posten.api_url` only, streamed to disk. One PAdES joins a job's documents: it matches a
//! trigger with one document; with several, the step is dead-lettered (no file per document).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use crate::documents::source::Role;
use crate::documents::{SignedSource, SourceError, Staging};
use crate::event::SigningEvent;
use crate::registry::Registration;

use super::jobs::PostenJobs;

pub struct PostenSigned {
    pub jobs: Arc<PostenJobs>,
    pub limit: u64,
    pub timeout: Duration,
}

impl PostenSigned {
    async fn fetch(
        &self,
        url: &str,
        accept: &str,
        to: &std::path::Path,
    ) -> Result<(), SourceError> {
        if !self.jobs.is_posten_url(url) {
            return Err(SourceError::Refused(
                "een ondertekend document van Posten hoort niet bij posten.api_url".into(),
            ));
        }
        let unavailable = |e: String| SourceError::Unavailable(format!("Posten: {e}"));
        let mut resp = self
            .jobs
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, accept)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let status = resp.status();
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            return Err(unavailable(format!("answered {}", status.as_u16())));
        }
        if !status.is_success() {
            return Err(SourceError::Refused(format!(
                "Posten gaf het ondertekende document niet ({})",
                status.as_u16()
            )));
        }
        let mut file = tokio::fs::File::create(to)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let mut written = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(e.to_string()))? {
            written += chunk.len() as u64;
            if written > self.limit {
                return Err(SourceError::Refused(format!(
                    "een ondertekend document van Posten is groter dan {} bytes",
                    self.limit
                )));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
        }
        file.flush().await.map_err(|e| unavailable(e.to_string()))
    }
}

#[async_trait]
impl SignedSource for PostenSigned {
    fn ordered(&self) -> bool {
        true
    }

    async fn stage(
        &self,
        event: &SigningEvent,
        _registration: &Registration,
        into: &mut Staging,
    ) -> Result<(), SourceError> {
        for doc in &event.documents {
            let Some(url) = &doc.url else { continue };
            let (role, name, accept) = if doc.external_id == "pades" {
                (Role::Document, "pades.pdf".to_string(), "application/pdf")
            } else {
                (
                    Role::Evidence,
                    format!("{}.xml", doc.external_id),
                    "application/xml",
                )
            };
            let path = into.next_path();
            self.fetch(url, accept, &path).await?;
            into.add(&path, role, None, Some(name), doc.mime_type.clone())
                .await
                .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        }
        Ok(())
    }
}
