//! Raw payloads in the database, in chunks: written in pieces inside the transaction that
//! records their callback (a 64 MiB body is never one bound parameter), read back in pieces,
//! a large one into an unlinked scratch file that is mapped, so that a download or a documents
//! step costs page cache, not heap, as with sled's payload files.

use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::pg;
use crate::store::{RawPayload, StoreError};

/// The largest piece of a payload in one row (and one statement).
pub const CHUNK: usize = 1 << 20;

pub async fn write(conn: &mut PgConnection, id: Uuid, p: &RawPayload) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO payloads (archive_id, content_type, size) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(&p.content_type)
        .bind(p.bytes.len() as i64)
        .execute(&mut *conn)
        .await
        .map_err(pg)?;
    for (seq, piece) in p.bytes.chunks(CHUNK).enumerate() {
        sqlx::query("INSERT INTO payload_chunks (archive_id, seq, data) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(seq as i32)
            .bind(piece)
            .execute(&mut *conn)
            .await
            .map_err(pg)?;
    }
    Ok(())
}

/// Reads one payload inside a repeatable-read transaction (a purge in between cannot tear
/// it). Up to one chunk is read into memory; larger ones go to a scratch file under
/// `scratch`, unlinked at once and mapped.
pub async fn read(
    conn: &mut PgConnection,
    scratch: &Path,
    id: Uuid,
) -> Result<Option<RawPayload>, StoreError> {
    use sqlx::Connection;
    let mut tx = conn.begin().await.map_err(pg)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
    let Some(head) = sqlx::query("SELECT content_type, size FROM payloads WHERE archive_id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg)?
    else {
        return Ok(None);
    };
    let content_type: String = head.get(0);
    let size = head.get::<i64, _>(1) as usize;
    let pieces = size.div_ceil(CHUNK);
    let piece = |seq: usize| {
        sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT data FROM payload_chunks WHERE archive_id = $1 AND seq = $2",
        )
        .bind(id)
        .bind(seq as i32)
    };
    let corrupt = || StoreError::Corrupt(format!("payload {id}: chunks missing"));
    let bytes = if pieces <= 1 {
        match pieces {
            0 => Bytes::new(),
            _ => Bytes::from(
                piece(0)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(pg)?
                    .ok_or_else(corrupt)?,
            ),
        }
    } else {
        let mut file = tempfile::tempfile_in(scratch)?;
        let mut written = 0;
        for seq in 0..pieces {
            let data = piece(seq)
                .fetch_optional(&mut *tx)
                .await
                .map_err(pg)?
                .ok_or_else(corrupt)?;
            written += data.len();
            file.write_all(&data)?;
        }
        if written != size {
            return Err(corrupt());
        }
        file.flush()?;
        // SAFETY: the file is unlinked and ours alone; nothing writes to it once mapped.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Bytes::from_owner(map)
    };
    tx.commit().await.map_err(pg)?;
    Ok(Some(RawPayload::new(content_type, bytes)))
}
