//! Reading a callback body, bounded: in size; in time (a total, and a minimum transfer rate
//! over every window, so a client trickling its body is cut off); and in memory. Small bodies
//! are read into memory; a larger one (or a chunked one once it grows) is spooled into the
//! store's payload archive while it arrives, so a request holds a small buffer whatever its
//! body's size, then mapped for parsing. Large bodies are parsed and recorded at most
//! `large_in_flight` at a time: the permit is taken once the body is complete, so a slow
//! upload never holds one, and waiting for it counts against no deadline of the request.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::store::{Spool, Spooled, Spooler};

/// Bodies above this size are spooled (when a spooler is given) and need a permit to be
/// parsed.
pub const LARGE: usize = 1024 * 1024;
/// Bytes handed to the spool file at once.
const SPOOL_BUFFER: usize = 256 * 1024;

/// The slowest a body may arrive: every `window` must bring at least `bytes` (the last,
/// partial one excepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub bytes: usize,
    pub window: Duration,
}

#[derive(Clone)]
pub struct BodyLimits {
    pub max: usize,
    large_permits: Arc<Semaphore>,
    /// The whole body must arrive within this, from its first byte read.
    timeout: Duration,
    min_rate: MinRate,
    spooler: Option<Spooler>,
}

impl std::fmt::Debug for BodyLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyLimits")
            .field("max", &self.max)
            .field("timeout", &self.timeout)
            .field("min_rate", &self.min_rate)
            .field("spooled", &self.spooler.is_some())
            .finish()
    }
}

/// A body, complete. A large one holds its parse permit until dropped; a spooled one maps its
/// spool file, which the archive adopts when it is recorded.
pub struct Body {
    pub bytes: Bytes,
    pub spooled: Option<Arc<Spooled>>,
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge {
        limit: usize,
    },
    /// The client went away, sent a broken stream, took too long or sent too slowly.
    Incomplete,
    /// It could not be spooled (the store's disk is nearly full, or failed): the vendor should
    /// retry, as for any callback the store cannot take now.
    Unavailable,
}

/// Where a body's bytes go while it is read.
enum Sink {
    Memory(BytesMut),
    Spool { spool: Spool, buffer: BytesMut },
}

impl BodyLimits {
    pub fn new(max: usize, large_in_flight: usize, timeout: Duration, min_rate: MinRate) -> Self {
        Self {
            max,
            large_permits: Arc::new(Semaphore::new(large_in_flight.max(1))),
            timeout,
            min_rate,
            spooler: None,
        }
    }

    /// Large bodies go to `spooler` rather than memory.
    pub fn spooled(mut self, spooler: Option<Spooler>) -> Self {
        self.spooler = spooler;
        self
    }

    /// Reads the whole body. A declared or actual size over the limit stops reading at once.
    pub async fn read(&self, req: &HttpRequest, payload: web::Payload) -> Result<Body, BodyError> {
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.max) {
            return Err(BodyError::TooLarge { limit: self.max });
        }
        let (bytes, spooled) = self.receive(declared, payload).await?;
        // Complete: only now wait for a parse permit, however long, on no request deadline.
        let permit = if bytes.len() > LARGE {
            Some(
                self.large_permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| BodyError::Incomplete)?,
            )
        } else {
            None
        };
        Ok(Body {
            bytes,
            spooled,
            _permit: permit,
        })
    }

    async fn receive(
        &self,
        declared: Option<usize>,
        mut payload: web::Payload,
    ) -> Result<(Bytes, Option<Arc<Spooled>>), BodyError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut window_end = started + self.min_rate.window;
        let mut window_bytes = 0usize;
        let mut total = 0usize;
        let mut sink = match (&self.spooler, declared) {
            (Some(s), Some(n)) if n > LARGE => Sink::Spool {
                spool: s.create().await.map_err(|_| BodyError::Unavailable)?,
                buffer: BytesMut::with_capacity(SPOOL_BUFFER),
            },
            _ => Sink::Memory(BytesMut::with_capacity(declared.unwrap_or(8192).min(LARGE))),
        };
        loop {
            let next = tokio::time::timeout_at(window_end.min(deadline), payload.next()).await;
            let now = Instant::now();
            let chunk = match next {
                Ok(None) => break,
                Ok(Some(Ok(c))) => Some(c),
                Ok(Some(Err(_))) => return Err(BodyError::Incomplete),
                Err(_) if now >= deadline => return Err(BodyError::Incomplete),
                Err(_) => None,
            };
            if let Some(c) = &chunk {
                total += c.len();
                window_bytes += c.len();
                if total > self.max {
                    return Err(BodyError::TooLarge { limit: self.max });
                }
            }
            if now >= window_end {
                // A window that brought less than the minimum: too slow.
                if window_bytes < self.min_rate.bytes {
                    return Err(BodyError::Incomplete);
                }
                window_bytes = 0;
                window_end = now + self.min_rate.window;
            }
            if let Some(c) = chunk {
                sink = self.put(sink, &c).await?;
            }
        }
        match sink {
            Sink::Memory(buf) => Ok((buf.freeze(), None)),
            Sink::Spool { mut spool, buffer } => {
                spool
                    .write(&buffer)
                    .await
                    .map_err(|_| BodyError::Unavailable)?;
                let (bytes, spooled) = spool.finish().await.map_err(|_| BodyError::Unavailable)?;
                Ok((bytes, Some(spooled)))
            }
        }
    }

    /// Adds a chunk: in memory up to `LARGE`, then (with a spooler) into the spool file.
    async fn put(&self, sink: Sink, chunk: &[u8]) -> Result<Sink, BodyError> {
        match sink {
            Sink::Memory(mut buf) => match &self.spooler {
                Some(s) if buf.len() + chunk.len() > LARGE => {
                    let mut spool = s.create().await.map_err(|_| BodyError::Unavailable)?;
                    spool
                        .write(&buf)
                        .await
                        .map_err(|_| BodyError::Unavailable)?;
                    let mut buffer = BytesMut::with_capacity(SPOOL_BUFFER);
                    buffer.extend_from_slice(chunk);
                    Ok(Sink::Spool { spool, buffer })
                }
                _ => {
                    buf.extend_from_slice(chunk);
                    Ok(Sink::Memory(buf))
                }
            },
            Sink::Spool {
                mut spool,
                mut buffer,
            } => {
                buffer.extend_from_slice(chunk);
                if buffer.len() >= SPOOL_BUFFER {
                    spool
                        .write(&buffer)
                        .await
                        .map_err(|_| BodyError::Unavailable)?;
                    buffer.clear();
                }
                Ok(Sink::Spool { spool, buffer })
            }
        }
    }
}
