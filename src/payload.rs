//! A raw callback body as received, kept for audit, document download and replay; and the
//! file a large body was spooled to while it was read, which the store's archive adopts as the
//! payload's file instead of writing the bytes again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct RawPayload {
    pub content_type: String,
    pub bytes: Bytes,
    /// The spool file `bytes` are mapped from, when the body was spooled while read.
    pub spooled: Option<Arc<SpooledFile>>,
}

impl RawPayload {
    pub fn new(content_type: impl Into<String>, bytes: Bytes) -> RawPayload {
        RawPayload {
            content_type: content_type.into(),
            bytes,
            spooled: None,
        }
    }
}

/// A spooled body's file: removed when the last handle goes, unless it was adopted. It holds
/// whatever guard its maker gives it (the store's claim, which keeps the orphan sweep off it)
/// for as long as it lives.
pub struct SpooledFile {
    id: Uuid,
    path: PathBuf,
    adopted: AtomicBool,
    _guard: Box<dyn Send + Sync>,
}

impl SpooledFile {
    pub fn new(id: Uuid, path: PathBuf, guard: Box<dyn Send + Sync>) -> SpooledFile {
        SpooledFile {
            id,
            path,
            adopted: AtomicBool::new(false),
            _guard: guard,
        }
    }

    /// The archive id the file becomes when adopted.
    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file is the payload's now: it stays when the last handle goes.
    pub fn mark_adopted(&self) {
        self.adopted.store(true, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for SpooledFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpooledFile({})", self.id)
    }
}

impl Drop for SpooledFile {
    fn drop(&mut self) {
        if !self.adopted.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
