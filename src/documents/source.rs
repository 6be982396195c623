//! Where the signed bytes come from: a vendor's [`SignedSource`] writes an event's signed
//! files into a staging directory on the store's disk, once; the documents step then reads
//! them from there in bounded pieces, however often it is retried.

use std::io::Read;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::event::SigningEvent;
use crate::registry::Registration;

/// What a signed file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A signed version of one of the trigger's `documenten`.
    Document,
    /// Evidence of the signing (an audit trail, a XAdES file): a new document in the zaak.
    Evidence,
}

/// One staged file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedFile {
    pub role: Role,
    /// The vendor's own id of the document, as the case application set it when it created
    /// the transaction (GoSign's `docExternalId`), if the vendor has one.
    pub vendor_id: Option<String>,
    /// The file's name at the vendor, if it has one.
    pub name: Option<String>,
    pub mime_type: Option<String>,
    /// Its file in the staging directory.
    pub file: String,
    pub size: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
}

/// Why a source could not stage an event's files.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// Try again later (the vendor is down, the disk is busy).
    #[error("{0}")]
    Unavailable(String),
    /// The vendor's files can never be had as they are: the step is dead-lettered.
    #[error("{0}")]
    Refused(String),
}

/// A vendor's signed files.
#[async_trait]
pub trait SignedSource: Send + Sync {
    /// Whether the signed files come in the order of the trigger's `documenten` (the order
    /// rule of the matching applies only then).
    fn ordered(&self) -> bool;
    /// Writes the signed files of `event` into `into` (each with [`Staging::add`]).
    async fn stage(
        &self,
        event: &SigningEvent,
        registration: &Registration,
        into: &mut Staging,
    ) -> Result<(), SourceError>;
}

/// An event's staging directory while a source fills it.
pub struct Staging {
    dir: PathBuf,
    files: Vec<SignedFile>,
}

impl Staging {
    /// A path for the next file; write it, then [`Staging::add`] it.
    pub fn next_path(&self) -> PathBuf {
        self.dir.join(format!("{}.bin", self.files.len()))
    }

    /// A path for a working file of the source's own (e.g. a download to unpack), removed
    /// with the directory.
    pub fn scratch_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("scratch-{name}"))
    }

    /// Adds the file written at `path` (from `next_path`): its size and hash are read back
    /// from the disk, in pieces, and it is synced.
    pub async fn add(
        &mut self,
        path: &Path,
        role: Role,
        vendor_id: Option<String>,
        name: Option<String>,
        mime_type: Option<String>,
    ) -> std::io::Result<()> {
        let p = path.to_path_buf();
        let (size, sha256) = tokio::task::spawn_blocking(move || hash_file(&p))
            .await
            .map_err(std::io::Error::other)??;
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| std::io::Error::other("a staged file has no name"))?
            .to_string();
        self.files.push(SignedFile {
            role,
            vendor_id,
            name,
            mime_type,
            file,
            size,
            sha256,
        });
        Ok(())
    }
}

/// Size and hex SHA-256 of a file, read in pieces; the file is synced first.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    f.sync_all()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, hex(&h.finalize())))
}

/// Decodes base64 `text` (whitespace ignored, as SOAP wraps it) into `out` in pieces: memory
/// stays bounded whatever the size. Fails on text that is not base64.
pub fn decode_base64(text: &str, out: &mut impl std::io::Write) -> std::io::Result<u64> {
    use base64::Engine;
    const PIECE: usize = 64 * 1024;
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut chars = Vec::with_capacity(PIECE);
    let mut bytes = Vec::with_capacity(PIECE / 4 * 3);
    let mut written = 0u64;
    let bad = |e: base64::DecodeError| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        chars.push(c);
        if chars.len() == PIECE {
            bytes.clear();
            engine.decode_vec(&chars, &mut bytes).map_err(bad)?;
            out.write_all(&bytes)?;
            written += bytes.len() as u64;
            chars.clear();
        }
    }
    if !chars.is_empty() {
        bytes.clear();
        engine.decode_vec(&chars, &mut bytes).map_err(bad)?;
        out.write_all(&bytes)?;
        written += bytes.len() as u64;
    }
    Ok(written)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An event's staged files.
#[derive(Debug, Clone)]
pub struct Staged {
    pub dir: PathBuf,
    pub files: Vec<SignedFile>,
}

impl Staged {
    pub fn path(&self, f: &SignedFile) -> PathBuf {
        self.dir.join(&f.file)
    }

    pub fn of_role(&self, role: Role) -> Vec<&SignedFile> {
        self.files.iter().filter(|f| f.role == role).collect()
    }
}

const MANIFEST: &str = "manifest.json";

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn base64_is_decoded_in_pieces_across_whitespace() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let text = base64::engine::general_purpose::STANDARD.encode(&data);
        // Wrapped at 76 columns, as SOAP stacks do.
        let wrapped: String = text
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n");
        let mut out = Vec::new();
        assert_eq!(
            decode_base64(&wrapped, &mut out).unwrap(),
            data.len() as u64
        );
        assert_eq!(out, data);
        assert!(decode_base64("not*base64", &mut Vec::new()).is_err());
    }
}

/// The staging area: one directory per event under the store's directory, with a manifest
/// written last (a directory without one is staged again).
#[derive(Debug, Clone)]
pub struct StagingArea {
    root: PathBuf,
}

impl StagingArea {
    pub fn new(root: PathBuf) -> StagingArea {
        StagingArea { root }
    }

    fn dir(&self, event: Uuid) -> PathBuf {
        self.root.join(event.to_string())
    }

    /// The event's staged files: those staged before, or staged now by `source`.
    pub async fn staged(
        &self,
        event: &SigningEvent,
        registration: &Registration,
        source: &dyn SignedSource,
    ) -> Result<Staged, SourceError> {
        let dir = self.dir(event.id);
        let unavailable = |e: std::io::Error| SourceError::Unavailable(format!("staging: {e}"));
        if let Some(staged) = read_manifest(&dir) {
            return Ok(staged);
        }
        if dir.exists() {
            tokio::fs::remove_dir_all(&dir).await.map_err(unavailable)?;
        }
        tokio::fs::create_dir_all(&dir).await.map_err(unavailable)?;
        let mut staging = Staging {
            dir: dir.clone(),
            files: Vec::new(),
        };
        let staged = source.stage(event, registration, &mut staging).await;
        if let Err(e) = staged {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(e);
        }
        let manifest = serde_json::to_vec(&staging.files).expect("files serialize");
        let files = staging.files;
        let d = dir.clone();
        tokio::task::spawn_blocking(move || write_atomically(&d.join(MANIFEST), &manifest))
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?
            .map_err(unavailable)?;
        Ok(Staged { dir, files })
    }

    /// Removes an event's files (its step is done).
    pub async fn remove(&self, event: Uuid) {
        let _ = tokio::fs::remove_dir_all(self.dir(event)).await;
    }

    /// Removes the staged files of events that no longer wait on their documents step:
    /// finished (delivered, not relayed) or purged. A dead-lettered or parked event keeps
    /// them for its replay or release. Returns how many were removed.
    pub async fn sweep(&self, store: &dyn crate::store::Store) -> usize {
        let mut removed = 0;
        for id in self.events() {
            let gone = match store.event(id).await {
                Ok(None) => true,
                Ok(Some(e)) => e.relay.is_final(),
                Err(_) => false,
            };
            if gone {
                self.remove(id).await;
                removed += 1;
            }
        }
        removed
    }

    /// Event ids that have a staging directory (to sweep those whose step ended).
    pub fn events(&self) -> Vec<Uuid> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }
}

fn read_manifest(dir: &Path) -> Option<Staged> {
    let bytes = std::fs::read(dir.join(MANIFEST)).ok()?;
    let files: Vec<SignedFile> = serde_json::from_slice(&bytes).ok()?;
    // A file that went missing or changed size is staged again.
    let intact = files
        .iter()
        .all(|f| std::fs::metadata(dir.join(&f.file)).is_ok_and(|m| m.len() == f.size));
    intact.then(|| Staged {
        dir: dir.to_path_buf(),
        files,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
