//! Connecting as libpq users expect (the URL, `sslmode`, a root certificate) and the schema:
//! versioned migrations embedded in the binary, applied by one instance at a time.

use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Connection, Row};

use super::pg;
use crate::config::PostgresConfig;
use crate::store::StoreError;

/// One step of the schema, applied once, in order, inside a transaction of its own.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first. A released one is never edited (its checksum is checked):
/// a change is a new file.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "store",
    sql: include_str!("../../../migrations/0001_store.sql"),
}];

/// Advisory lock keys (two 32-bit halves: signrelay's namespace, then what is locked), so
/// that no other application's advisory locks collide with ours.
pub const LOCK_NAMESPACE: i32 = 0x5352_0000;
pub const MIGRATION_LOCK: i32 = 1;
pub const PURGE_LOCK: i32 = 2;
/// The namespace of per-transaction locks (the second half is a hash of vendor and id).
pub const TRANSACTION_LOCKS: i32 = 0x5352_0001;

/// The connection settings: the URL, then `sslmode` and `root_cert` over it, a statement
/// timeout, and synchronous commit on whatever the server's default (an acknowledgement means
/// the commit is on the server's disk).
pub fn connect_options(cfg: &PostgresConfig) -> anyhow::Result<PgConnectOptions> {
    let url = cfg.url.resolve()?;
    let mut o =
        PgConnectOptions::from_str(&url).map_err(|e| anyhow::anyhow!("store.postgres.url: {e}"))?;
    if let Some(mode) = &cfg.sslmode {
        o = o.ssl_mode(
            PgSslMode::from_str(mode)
                .map_err(|e| anyhow::anyhow!("store.postgres.sslmode: {e}"))?,
        );
    }
    if let Some(cert) = &cfg.root_cert {
        o = o.ssl_root_cert(cert);
    }
    Ok(o.application_name("signrelay").options([
        ("statement_timeout", cfg.statement_timeout_ms.to_string()),
        ("synchronous_commit", "on".to_string()),
    ]))
}

/// A pool that connects on demand: an instance starts (and answers "retry later") while the
/// database is away, and goes on by itself when it is back.
pub fn pool(cfg: &PostgresConfig) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(cfg.pool_size)
        .acquire_timeout(Duration::from_secs(cfg.connect_timeout_secs))
        .connect_lazy_with(connect_options(cfg)?))
}

fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Applies the migrations this database lacks, holding the migration lock (a second instance
/// starting at the same time waits, then finds nothing to do). Returns the versions applied.
/// Refuses a database whose schema is newer than this binary, or whose applied migrations
/// differ from the embedded ones.
pub async fn migrate(pool: &PgPool) -> Result<Vec<i64>, StoreError> {
    let mut conn = pool.acquire().await.map_err(pg)?;
    sqlx::query("SELECT pg_advisory_lock($1, $2)")
        .bind(LOCK_NAMESPACE)
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(pg)?;
    let applied = apply(&mut conn).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(LOCK_NAMESPACE)
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    applied
}

async fn apply(conn: &mut sqlx::PgConnection) -> Result<Vec<i64>, StoreError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS signrelay_migrations (
            version bigint PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *conn)
    .await
    .map_err(pg)?;
    let done = applied(conn).await?;
    let mut now_applied = Vec::new();
    for m in MIGRATIONS {
        if done.iter().any(|(v, _)| *v == m.version) {
            continue;
        }
        let mut tx = conn.begin().await.map_err(pg)?;
        sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(|e| {
            StoreError::Storage(format!("migration {} ({}): {e}", m.version, m.name))
        })?;
        sqlx::query(
            "INSERT INTO signrelay_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(checksum(m.sql))
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "schema migration applied"
        );
        now_applied.push(m.version);
    }
    Ok(now_applied)
}

/// The applied migrations, checked against the embedded ones.
async fn applied(conn: &mut sqlx::PgConnection) -> Result<Vec<(i64, String)>, StoreError> {
    let rows = sqlx::query("SELECT version, checksum FROM signrelay_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .map_err(pg)?;
    let done: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    for (v, sum) in &done {
        match MIGRATIONS.iter().find(|m| m.version == *v) {
            None if *v > latest => {
                return Err(StoreError::Storage(format!(
                    "the database's schema is at version {v}, newer than this signrelay knows \
                     ({latest}): run a newer signrelay"
                )))
            }
            None => {
                return Err(StoreError::Storage(format!(
                    "the database has schema migration {v}, which this signrelay does not know"
                )))
            }
            Some(m) if checksum(m.sql) != *sum => {
                return Err(StoreError::Storage(format!(
                    "schema migration {v} ({}) in the database differs from this signrelay's",
                    m.name
                )))
            }
            Some(_) => {}
        }
    }
    Ok(done)
}

/// With `migrate = false`: the schema must already be this binary's (run `signrelay
/// migrate` first).
pub async fn check(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(pg)?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('signrelay_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(pg)?;
    let done = if exists {
        applied(&mut conn).await?
    } else {
        Vec::new()
    };
    let missing: Vec<i64> = MIGRATIONS
        .iter()
        .map(|m| m.version)
        .filter(|v| !done.iter().any(|(d, _)| d == v))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Storage(format!(
            "the database lacks schema migrations {missing:?}: run `signrelay migrate --config F` \
             (or set store.postgres.migrate = true)"
        )))
    }
}
