//! PKIsigning's signed documents: the dossier as a zip (`GET /requests/{id}/Download`),
//! streamed to disk and unpacked in pieces. PKIsigning does not document the zip's layout; what
//! signrelay relies on: each signed document is a PDF under the file name it was uploaded with;
//! a PDF whose name says it is evidence (audit, bewijs, proof, evidence, certificate,
//! logboek, report) and every file that is not a PDF (e.g. XML) are evidence. PKIsigning keeps
//! no order that signrelay could rely on: files are matched by name.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::documents::source::Role;
use crate::documents::{SignedSource, SourceError, Staging};
use crate::event::SigningEvent;
use crate::registry::Registration;

use super::api::{ApiError, PkiApi};

/// At most this many files in a dossier's zip.
const MAX_ENTRIES: usize = 256;

pub struct PkiSigned {
    pub api: Arc<PkiApi>,
    pub limit: u64,
    pub timeout: Duration,
}

/// Words in a file name that make it evidence rather than a signed document.
const EVIDENCE_WORDS: [&str; 7] = [
    "audit",
    "bewijs",
    "proof",
    "evidence",
    "certificate",
    "logboek",
    "report",
];

/// A file of the zip: its role by its name.
pub fn role_of(name: &str) -> Role {
    let lower = name.to_lowercase();
    if !lower.ends_with(".pdf") || EVIDENCE_WORDS.iter().any(|w| lower.contains(w)) {
        Role::Evidence
    } else {
        Role::Document
    }
}

fn mime_of(name: &str) -> &'static str {
    match name
        .rsplit_once('.')
        .map(|(_, e)| e.to_lowercase())
        .as_deref()
    {
        Some("pdf") => "application/pdf",
        Some("xml") => "application/xml",
        Some("json") => "application/json",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

/// One unpacked file: where, and its name in the zip.
struct Unpacked {
    path: PathBuf,
    name: String,
}

/// Unpacks the zip at `zip` into `next(i)` paths, at most `limit` bytes in all (a zip bomb is
/// refused, not unpacked).
fn unpack(
    zip: &std::path::Path,
    next: impl Fn(usize) -> PathBuf,
    limit: u64,
) -> Result<Vec<Unpacked>, SourceError> {
    let refused = |e: String| SourceError::Refused(format!("PKIsigning's dossier zip: {e}"));
    let file = std::fs::File::open(zip).map_err(|e| SourceError::Unavailable(e.to_string()))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| refused(e.to_string()))?;
    if archive.len() > MAX_ENTRIES {
        return Err(refused(format!("more than {MAX_ENTRIES} files")));
    }
    let mut out = Vec::new();
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| refused(e.to_string()))?;
        if entry.is_dir() {
            continue;
        }
        // Only the file's own name is used (never its path: nothing is written where the zip
        // says).
        let Some(name) = entry
            .mangled_name()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            continue;
        };
        let path = next(out.len());
        let mut target =
            std::fs::File::create(&path).map_err(|e| SourceError::Unavailable(e.to_string()))?;
        let left = limit.saturating_sub(total);
        let copied = std::io::copy(&mut (&mut entry).take(left + 1), &mut target)
            .map_err(|e| refused(e.to_string()))?;
        total += copied;
        if total > limit {
            return Err(refused(format!("unpacks to more than {limit} bytes")));
        }
        out.push(Unpacked { path, name });
    }
    Ok(out)
}

#[async_trait]
impl SignedSource for PkiSigned {
    fn ordered(&self) -> bool {
        false
    }

    async fn stage(
        &self,
        event: &SigningEvent,
        _registration: &Registration,
        into: &mut Staging,
    ) -> Result<(), SourceError> {
        let zip = into.scratch_path("dossier.zip");
        self.api
            .download(
                event.transaction_id.as_str(),
                &zip,
                self.limit,
                self.timeout,
            )
            .await
            .map_err(|e| match e {
                ApiError::Retryable { message, .. } => SourceError::Unavailable(message),
                ApiError::NotFound => {
                    SourceError::Refused("PKIsigning kent het dossier niet (meer)".into())
                }
                ApiError::Refused { status, body } => SourceError::Refused(format!(
                    "PKIsigning weigerde de download ({status}): {}",
                    body.chars().take(200).collect::<String>()
                )),
            })?;
        // Files go where the staging area says, numbered after those staged so far.
        let first = into.next_path();
        let dir = first.parent().map(PathBuf::from).unwrap_or_default();
        let limit = self.limit.saturating_mul(4);
        let zip_path = zip.clone();
        let unpacked = tokio::task::spawn_blocking(move || {
            unpack(&zip_path, |i| dir.join(format!("unpacked-{i}.bin")), limit)
        })
        .await
        .map_err(|e| SourceError::Unavailable(e.to_string()))??;
        let _ = tokio::fs::remove_file(&zip).await;
        for u in unpacked {
            let role = role_of(&u.name);
            into.add(
                &u.path,
                role,
                None,
                Some(u.name.clone()),
                Some(mime_of(&u.name).to_string()),
            )
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_pdfs_are_documents_and_the_rest_evidence() {
        assert_eq!(role_of("Besluit.pdf"), Role::Document);
        assert_eq!(role_of("AuditTrail.pdf"), Role::Evidence);
        assert_eq!(role_of("ondertekeningsbewijs.PDF"), Role::Evidence);
        assert_eq!(role_of("signatures.xml"), Role::Evidence);
    }

    #[test]
    fn a_zip_bomb_is_refused_and_paths_in_the_zip_are_ignored() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let zip_path = dir.path().join("d.zip");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file("../../etc/besluit.pdf", opts).unwrap();
        w.write_all(&vec![b'a'; 10_000]).unwrap();
        w.start_file("big.pdf", opts).unwrap();
        w.write_all(&vec![0u8; 2_000_000]).unwrap();
        w.finish().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let next = |i: usize| out.join(format!("{i}.bin"));
        let err = unpack(&zip_path, next, 1_000_000).err().unwrap();
        assert!(err.to_string().contains("more than 1000000 bytes"), "{err}");
        let files = unpack(&zip_path, next, 10_000_000).unwrap();
        assert_eq!(files[0].name, "besluit.pdf");
        assert!(files[0].path.starts_with(&out));
        assert_eq!(std::fs::metadata(&files[1].path).unwrap().len(), 2_000_000);
    }
}
