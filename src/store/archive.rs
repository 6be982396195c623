//! Raw payload archive. Small payloads live in sled beside the event; large ones (inline
//! signed documents) are files, because sled 0.34 writes values over ~128 KiB to blob files
//! it never fsyncs. A large file is written and fsynced before the batch that refers to it.
//!
//! Between the two, the file is *claimed* ([`Claim`]): the sweep of orphans (files no record
//! refers to, left by a crash between a file and its batch) never touches a claimed file, and
//! sweeps only files older than [`ORPHAN_AGE`], whatever the retention says.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use super::{RawPayload, StoreError};
use crate::payload::SpooledFile as Spooled;

/// Payloads up to this size are stored inline in sled.
pub const INLINE_MAX: usize = 64 * 1024;

const INLINE: u8 = 0;
const IN_FILE: u8 = 1;

/// Files no record refers to are swept only once this old. A file is claimed while its batch
/// is on its way, so this is a second line of defence (a clock step, a stalled disk), not the
/// first; it has nothing to do with the retention.
pub const ORPHAN_AGE: Duration = Duration::from_secs(3600);

pub struct Archive {
    dir: PathBuf,
    /// Ids whose files are being written or wait for the batch that refers to them.
    claimed: Mutex<HashSet<Uuid>>,
}

/// An archive id whose file the sweep leaves alone until this is dropped (after the batch that
/// refers to it committed, or failed).
pub struct Claim {
    archive: Arc<Archive>,
    pub id: Uuid,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.archive.claims().remove(&self.id);
    }
}

impl Archive {
    pub fn open(dir: PathBuf) -> Result<Archive, StoreError> {
        fs::create_dir_all(&dir)?;
        Ok(Archive {
            dir,
            claimed: Mutex::new(HashSet::new()),
        })
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh archive id, claimed: its file is safe from the sweep until the claim is dropped.
    pub fn claim(self: &Arc<Self>) -> Claim {
        let id = Uuid::now_v7();
        self.claims().insert(id);
        Claim {
            archive: self.clone(),
            id,
        }
    }

    fn path(&self, id: Uuid) -> PathBuf {
        self.dir.join(id.simple().to_string())
    }

    /// Whether `encode` writes (and fsyncs) a file for this payload.
    pub fn goes_to_file(p: &RawPayload) -> bool {
        p.bytes.len() > INLINE_MAX
    }

    /// Encodes the sled value for a payload, writing large bodies to their own file first.
    pub fn encode(&self, id: Uuid, p: &RawPayload) -> Result<Vec<u8>, StoreError> {
        let ct = p.content_type.as_bytes();
        let ct_len = ct.len().min(255);
        let large = Self::goes_to_file(p);
        let mut v = Vec::with_capacity(2 + ct_len + if large { 0 } else { p.bytes.len() });
        v.push(if large { IN_FILE } else { INLINE });
        v.push(ct_len as u8);
        v.extend_from_slice(&ct[..ct_len]);
        if large {
            match &p.spooled {
                Some(s) if s.id() == id => self.adopt(s)?,
                _ => self.write_file(id, &p.bytes)?,
            }
        } else {
            v.extend_from_slice(&p.bytes);
        }
        Ok(v)
    }

    fn write_file(&self, id: Uuid, bytes: &[u8]) -> Result<(), StoreError> {
        let final_path = self.path(id);
        let tmp = final_path.with_extension("tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &final_path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    /// Makes a spooled body the payload file of its id: fsynced, renamed into place, the
    /// directory fsynced; it is never written again.
    fn adopt(&self, s: &Spooled) -> Result<(), StoreError> {
        File::open(s.path())?.sync_all()?;
        fs::rename(s.path(), self.path(s.id()))?;
        s.mark_adopted();
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    /// Where a body of `id` is spooled while it is read.
    pub fn spool_path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{}.spool", id.simple()))
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Proves the archive directory takes durable writes (large payloads go there).
    pub fn probe(&self) -> Result<(), StoreError> {
        let path = self.dir.join(".probe");
        let mut f = File::create(&path)?;
        f.write_all(b"probe")?;
        f.sync_all()?;
        Ok(())
    }

    pub fn decode(&self, id: Uuid, v: &[u8]) -> Result<RawPayload, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("payload {id}"));
        let kind = *v.first().ok_or_else(corrupt)?;
        let ct_len = *v.get(1).ok_or_else(corrupt)? as usize;
        let ct = v.get(2..2 + ct_len).ok_or_else(corrupt)?;
        let content_type = String::from_utf8_lossy(ct).into_owned();
        let bytes = match kind {
            INLINE => Bytes::copy_from_slice(&v[2 + ct_len..]),
            IN_FILE => {
                // Mapped, not read: a document step or an admin download of a large payload
                // costs page cache, not heap.
                let file = File::open(self.path(id))?;
                // SAFETY: a payload's file is written once, before its record, and never
                // written or truncated afterwards; a purge unlinks it, which leaves a mapping
                // intact.
                let map = unsafe { memmap2::Mmap::map(&file)? };
                Bytes::from_owner(map)
            }
            _ => return Err(corrupt()),
        };
        Ok(RawPayload::new(content_type, bytes))
    }

    /// Removes a payload's file, if it has one. Missing files are fine (purged before).
    pub fn remove_file(&self, id: Uuid) {
        let _ = fs::remove_file(self.path(id));
    }

    /// Removes files no record refers to (a crash between a file and its batch) older than
    /// `age`; returns how many. Claimed files are never removed: the claim is checked before
    /// `referenced`, and a claim ends only after its batch is in the tree, so a file is either
    /// still claimed or already referenced when it is looked at.
    pub fn sweep_orphans(&self, referenced: impl Fn(Uuid) -> bool, age: Duration) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let stem = name.trim_end_matches(".tmp").trim_end_matches(".spool");
            let Ok(id) = Uuid::parse_str(stem) else {
                continue;
            };
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default() > age)
                .unwrap_or(false);
            if old && !self.claims().contains(&id) && !referenced(id) {
                let _ = fs::remove_file(e.path());
                removed += 1;
            }
        }
        removed
    }
}
