//! The PostgreSQL store's side of `store copy`: every table listed as items (streamed), and
//! batches written in one transaction each.

use futures_util::TryStreamExt;
use sqlx::Row;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{jobs, parse, payloads, pg, records, PgStore};
use crate::event::{TransactionId, Vendor};
use crate::rules::{Terminal, TerminalOutcome};
use crate::store::copy::{Item, Portable};
use crate::store::StoreError;

fn transaction(row: &sqlx::postgres::PgRow) -> Result<(Vendor, TransactionId), StoreError> {
    let corrupt = || StoreError::Corrupt("vendor or transaction".into());
    let vendor = Vendor::parse(row.get::<&str, _>("vendor")).ok_or_else(corrupt)?;
    let tx = TransactionId::parse(row.get::<&str, _>("transaction_id")).map_err(|_| corrupt())?;
    Ok((vendor, tx))
}

impl PgStore {
    /// Sends each row of `sql` as the item `item` makes of it.
    async fn each(
        &self,
        sql: &str,
        to: &mpsc::Sender<Item>,
        item: impl Fn(&sqlx::postgres::PgRow) -> Result<Item, StoreError>,
    ) -> Result<(), StoreError> {
        let mut rows = sqlx::query(sql).fetch(&self.pool);
        while let Some(row) = rows.try_next().await.map_err(pg)? {
            to.send(item(&row)?).await.map_err(|_| StoreError::Closed)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Portable for PgStore {
    async fn export(&self, to: mpsc::Sender<Item>) -> Result<(), StoreError> {
        let record = |what: &'static str| {
            move |r: &sqlx::postgres::PgRow| -> Result<serde_json::Value, StoreError> {
                r.try_get("record")
                    .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
            }
        };
        self.each("SELECT record FROM events ORDER BY id", &to, |r| {
            Ok(Item::Event(Box::new(parse("event", record("event")(r)?)?)))
        })
        .await?;
        let ids: Vec<Uuid> =
            sqlx::query_scalar("SELECT archive_id FROM payloads ORDER BY archive_id")
                .fetch_all(&self.pool)
                .await
                .map_err(pg)?;
        for archive_id in ids {
            let mut conn = self.pool.acquire().await.map_err(pg)?;
            if let Some(payload) = payloads::read(&mut conn, self.scratch_dir(), archive_id).await?
            {
                to.send(Item::Payload {
                    archive_id,
                    payload,
                })
                .await
                .map_err(|_| StoreError::Closed)?;
            }
        }
        self.each("SELECT * FROM terminals", &to, |r| {
            let (vendor, transaction_id) = transaction(r)?;
            Ok(Item::Terminal {
                vendor,
                transaction_id,
                terminal: Terminal {
                    event_id: r.get("event_id"),
                    outcome: TerminalOutcome::parse(r.get::<&str, _>("outcome"))
                        .ok_or_else(|| StoreError::Corrupt("terminal outcome".into()))?,
                },
            })
        })
        .await?;
        self.each("SELECT record FROM registrations", &to, |r| {
            Ok(Item::Registration(Box::new(parse(
                "registration",
                record("registration")(r)?,
            )?)))
        })
        .await?;
        self.each("SELECT * FROM withdrawals", &to, |r| {
            let (vendor, transaction_id) = transaction(r)?;
            Ok(Item::Withdrawal {
                vendor,
                transaction_id,
                at: r.get("at"),
            })
        })
        .await?;
        self.each("SELECT * FROM parked", &to, |r| {
            let (vendor, transaction_id) = transaction(r)?;
            Ok(Item::Parked {
                event_id: r.get("event_id"),
                vendor,
                transaction_id,
                since: r.get("since"),
            })
        })
        .await?;
        self.each("SELECT record FROM jobs ORDER BY party, due", &to, |r| {
            Ok(Item::Job(Box::new(parse("job", record("job")(r)?)?)))
        })
        .await?;
        self.each("SELECT * FROM onces", &to, |r| {
            Ok(Item::Once {
                key: r.get("key"),
                job_id: r.get("job_id"),
                at: r.get("at"),
            })
        })
        .await?;
        self.each("SELECT record FROM dead_letters ORDER BY id", &to, |r| {
            Ok(Item::DeadLetter(Box::new(parse(
                "dead letter",
                record("dead letter")(r)?,
            )?)))
        })
        .await?;
        self.each("SELECT record FROM quarantine ORDER BY id", &to, |r| {
            Ok(Item::Quarantine(Box::new(parse(
                "quarantine",
                record("quarantine")(r)?,
            )?)))
        })
        .await
    }

    async fn import(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        for item in items {
            match item {
                Item::Event(e) => {
                    records::save_event(&mut tx, &e).await?;
                }
                Item::Payload {
                    archive_id,
                    payload,
                } => {
                    payloads::write(&mut tx, archive_id, &payload).await?;
                }
                Item::Job(j) => {
                    jobs::queue(&mut tx, &j).await?;
                }
                Item::Quarantine(q) => {
                    records::insert_quarantine(&mut tx, &q).await?;
                }
                Item::DeadLetter(d) => {
                    sqlx::query("INSERT INTO dead_letters (id, at, record) VALUES ($1, $2, $3)")
                        .bind(d.job.id)
                        .bind(d.at)
                        .bind(sqlx::types::Json(&d))
                        .execute(&mut *tx)
                        .await
                        .map_err(pg)?;
                }
                Item::Once { key, job_id, at } => {
                    sqlx::query("INSERT INTO onces (key, job_id, at) VALUES ($1, $2, $3)")
                        .bind(key)
                        .bind(job_id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(pg)?;
                }
                Item::Terminal {
                    vendor,
                    transaction_id,
                    terminal,
                } => {
                    sqlx::query(
                        "INSERT INTO terminals (vendor, transaction_id, event_id, outcome)
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(vendor.as_str())
                    .bind(transaction_id.as_str())
                    .bind(terminal.event_id)
                    .bind(terminal.outcome.label())
                    .execute(&mut *tx)
                    .await
                    .map_err(pg)?;
                }
                Item::Registration(r) => {
                    sqlx::query(
                        "INSERT INTO registrations (vendor, transaction_id, record) VALUES ($1, $2, $3)",
                    )
                    .bind(r.vendor.as_str())
                    .bind(r.transaction_id.as_str())
                    .bind(sqlx::types::Json(&r))
                    .execute(&mut *tx)
                    .await
                    .map_err(pg)?;
                }
                Item::Withdrawal {
                    vendor,
                    transaction_id,
                    at,
                } => {
                    sqlx::query(
                        "INSERT INTO withdrawals (vendor, transaction_id, at) VALUES ($1, $2, $3)",
                    )
                    .bind(vendor.as_str())
                    .bind(transaction_id.as_str())
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(pg)?;
                }
                Item::Parked {
                    event_id,
                    vendor,
                    transaction_id,
                    since,
                } => {
                    sqlx::query(
                        "INSERT INTO parked (event_id, vendor, transaction_id, since)
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(event_id)
                    .bind(vendor.as_str())
                    .bind(transaction_id.as_str())
                    .bind(since)
                    .execute(&mut *tx)
                    .await
                    .map_err(pg)?;
                }
            }
        }
        tx.commit().await.map_err(pg)?;
        self.wrote();
        Ok(())
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM events) AND NOT EXISTS (SELECT 1 FROM jobs)
                AND NOT EXISTS (SELECT 1 FROM registrations)
                AND NOT EXISTS (SELECT 1 FROM dead_letters)
                AND NOT EXISTS (SELECT 1 FROM quarantine)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(pg)
    }
}
