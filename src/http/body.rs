//! Reading a callback body: bounded in size, and bounded in how many large bodies are held in
//! memory at once (signed documents arrive inline, up to tens of MiB each).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bodies above this size need a large-body permit.
const LARGE: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct BodyLimits {
    pub max: usize,
    large_permits: Arc<Semaphore>,
    /// A body that trickles in slower than this in total is cut off.
    timeout: Duration,
}

/// A body read into memory; a large one holds its permit until dropped.
pub struct Body {
    pub bytes: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge {
        limit: usize,
    },
    /// The client went away, sent a broken stream, or took too long.
    Incomplete,
}

impl BodyLimits {
    pub fn new(max: usize, large_in_flight: usize, timeout: Duration) -> Self {
        Self {
            max,
            large_permits: Arc::new(Semaphore::new(large_in_flight.max(1))),
            timeout,
        }
    }

    /// Reads the whole body. A declared or actual size over the limit stops reading at once.
    pub async fn read(&self, req: &HttpRequest, payload: web::Payload) -> Result<Body, BodyError> {
        tokio::time::timeout(self.timeout, self.read_all(req, payload))
            .await
            .unwrap_or(Err(BodyError::Incomplete))
    }

    async fn read_all(
        &self,
        req: &HttpRequest,
        mut payload: web::Payload,
    ) -> Result<Body, BodyError> {
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.max) {
            return Err(BodyError::TooLarge { limit: self.max });
        }
        // Unknown (chunked) or large: wait for a permit before buffering.
        let permit = if declared.is_none_or(|n| n > LARGE) {
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
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(8192).min(self.max));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| BodyError::Incomplete)?;
            if buf.len() + chunk.len() > self.max {
                return Err(BodyError::TooLarge { limit: self.max });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Body {
            bytes: buf.freeze(),
            _permit: permit,
        })
    }
}
