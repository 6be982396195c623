//! Large bodies spooled into the payload archive while they are read, so that a request holds
//! a small buffer in memory, never its whole body. The finished file is mapped for parsing
//! (the parsers borrow from the map) and adopted by the archive as the payload's file: it is
//! fsynced and renamed into place before the batch that refers to it, never written twice.
//!
//! A spool file is `<archive>/<id>.spool`, claimed from its creation (the orphan sweep leaves
//! it alone) and removed when dropped unless the archive adopted it.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::archive::Archive;
use super::StoreError;

/// Free space is asked again after this many bytes spooled.
const ROOM_EVERY: u64 = 8 << 20;

/// Where a surface spools its large bodies: the store's payload archive.
#[derive(Clone)]
pub struct Spooler {
    archive: Arc<Archive>,
    min_free_bytes: u64,
}

impl Spooler {
    pub(super) fn new(archive: Arc<Archive>, min_free_bytes: u64) -> Spooler {
        Spooler {
            archive,
            min_free_bytes,
        }
    }

    /// A new spool file; refused while the disk is below the store's free-space floor.
    pub async fn create(&self) -> Result<Spool, StoreError> {
        self.room()?;
        let claim = self.archive.claim();
        let path = self.archive.spool_path(claim.id);
        // Readable too: it is mapped once complete.
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(Spool {
            file,
            guard: Arc::new(Spooled::new(claim.id, path, Box::new(claim))),
            written: 0,
            checked: 0,
            spooler: self.clone(),
        })
    }

    fn room(&self) -> Result<(), StoreError> {
        check_room(self.archive.dir(), self.min_free_bytes)
    }
}

/// A body being written to its spool file.
pub struct Spool {
    file: tokio::fs::File,
    guard: Arc<Spooled>,
    written: u64,
    checked: u64,
    spooler: Spooler,
}

impl Spool {
    pub async fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(buf).await?;
        self.written += buf.len() as u64;
        if self.written - self.checked >= ROOM_EVERY {
            self.spooler.room()?;
            self.checked = self.written;
        }
        Ok(())
    }

    /// The whole body, mapped (not fsynced: the archive does that when it adopts the file).
    pub async fn finish(mut self) -> Result<(Bytes, Arc<Spooled>), StoreError> {
        self.file.flush().await?;
        let file = self.file.into_std().await;
        // SAFETY: the file is ours (a fresh name in the archive, claimed); nothing writes to
        // or truncates it while it is mapped (the archive only fsyncs and renames it).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok((Bytes::from_owner(map), self.guard))
    }
}

/// A spooled body's file (see `crate::payload`): the store's claim rides with it.
pub type Spooled = crate::payload::SpooledFile;

/// `DiskLow` while the file system holding `path` has less than `min_free` bytes free.
pub fn check_room(path: &Path, min_free: u64) -> Result<(), StoreError> {
    if min_free == 0 {
        return Ok(());
    }
    match free_bytes(path) {
        Some(free) if free < min_free => Err(StoreError::DiskLow {
            free_mib: free / (1024 * 1024),
        }),
        _ => Ok(()),
    }
}

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}
