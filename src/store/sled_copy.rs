//! The sled store's side of `store copy`: its records listed from the tree, and written back
//! with the keys and counts the writer keeps.

use tokio::sync::mpsc;

use super::super::archive::Archive;
use super::{json, keys, parse, parse_dead_letter, queue, save_event, uuid_at, SledStore};
use crate::store::copy::{Item, Portable};
use crate::store::{QuarantineEntry, StoreError};

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} key"))
}

/// Every record, in key order, each converted to an item.
fn items(tree: &sled::Tree, archive: &Archive, to: &mpsc::Sender<Item>) -> Result<(), StoreError> {
    let send = |item: Item| to.blocking_send(item).map_err(|_| StoreError::Closed);
    {
        for kv in tree.iter() {
            let (k, v) = kv?;
            let at = |p: &[u8]| k.starts_with(p).then(|| &k[p.len()..]);
            let item = if at(keys::EVENT).is_some() {
                Item::Event(Box::new(parse("event", &v)?))
            } else if let Some(id) = at(keys::PAYLOAD) {
                let archive_id = uuid_at(id)?;
                Item::Payload {
                    archive_id,
                    payload: archive.decode(archive_id, &v)?,
                }
            } else if let Some(rest) = at(keys::TERMINAL) {
                let (vendor, transaction_id, _) =
                    keys::split_transaction(rest).ok_or_else(|| corrupt("terminal"))?;
                Item::Terminal {
                    vendor,
                    transaction_id,
                    terminal: keys::parse_terminal(&v).ok_or_else(|| corrupt("terminal"))?,
                }
            } else if at(keys::REGISTRATION).is_some() {
                Item::Registration(Box::new(parse("registration", &v)?))
            } else if let Some(rest) = at(keys::WITHDRAWN) {
                let (vendor, transaction_id, _) =
                    keys::split_transaction(rest).ok_or_else(|| corrupt("withdrawn"))?;
                Item::Withdrawal {
                    vendor,
                    transaction_id,
                    at: keys::from_ms(&v).ok_or_else(|| corrupt("withdrawn"))?,
                }
            } else if let Some(rest) = at(keys::PARKED) {
                let (vendor, transaction_id, _) =
                    keys::split_transaction(rest).ok_or_else(|| corrupt("parked"))?;
                Item::Parked {
                    event_id: keys::parked_event(&k).ok_or_else(|| corrupt("parked"))?,
                    vendor,
                    transaction_id,
                    since: keys::from_ms(&v).ok_or_else(|| corrupt("parked"))?,
                }
            } else if at(keys::JOB).is_some() {
                Item::Job(Box::new(parse("job", &v)?))
            } else if let Some(key) = at(keys::ONCE) {
                Item::Once {
                    key: String::from_utf8(key.to_vec()).map_err(|_| corrupt("once"))?,
                    job_id: uuid_at(v.get(..16).unwrap_or_default())?,
                    at: v
                        .get(16..)
                        .and_then(keys::from_ms)
                        .ok_or_else(|| corrupt("once"))?,
                }
            } else if at(keys::DEAD).is_some() {
                Item::DeadLetter(Box::new(parse_dead_letter(&v)?))
            } else if at(keys::QUARANTINE).is_some() {
                Item::Quarantine(Box::new(parse::<QuarantineEntry>("quarantine", &v)?))
            } else {
                // Delivery keys and the index by transaction are derived; the rest is
                // bookkeeping of this store.
                continue;
            };
            send(item)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Portable for SledStore {
    async fn export(&self, to: mpsc::Sender<Item>) -> Result<(), StoreError> {
        self.usable()?;
        // The tree is read on a thread of its own: the channel waits for the importer.
        let (tree, archive) = (self.tree.clone(), self.archive.clone());
        tokio::task::spawn_blocking(move || items(&tree, &archive, &to))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    async fn import(&self, items: Vec<Item>) -> Result<(), StoreError> {
        // Payloads first: large ones become fsynced files before the batch refers to them.
        let mut encoded = Vec::new();
        let mut rest = Vec::new();
        for item in items {
            match item {
                Item::Payload {
                    archive_id,
                    payload,
                } => encoded.push((archive_id, self.encode_payload(archive_id, payload).await?)),
                other => rest.push(other),
            }
        }
        self.writer
            .write(move |s| {
                for (id, v) in encoded {
                    s.insert(keys::payload(id), v);
                }
                for item in rest {
                    match item {
                        Item::Event(e) => {
                            s.insert(keys::delivery(&e.dedup_key), e.id.as_bytes().to_vec());
                            s.insert(
                                keys::by_transaction(e.vendor, &e.transaction_id, e.id),
                                Vec::new(),
                            );
                            save_event(s, &e);
                        }
                        Item::Terminal {
                            vendor,
                            transaction_id,
                            terminal,
                        } => s.insert(
                            keys::terminal(vendor, &transaction_id),
                            keys::terminal_value(terminal),
                        ),
                        Item::Registration(r) => {
                            s.insert(keys::registration(r.vendor, &r.transaction_id), json(&r))
                        }
                        Item::Withdrawal {
                            vendor,
                            transaction_id,
                            at,
                        } => s.insert(
                            keys::withdrawn(vendor, &transaction_id),
                            keys::ms(at).to_vec(),
                        ),
                        Item::Parked {
                            event_id,
                            vendor,
                            transaction_id,
                            since,
                        } => {
                            s.insert(
                                keys::parked(vendor, &transaction_id, event_id),
                                keys::ms(since).to_vec(),
                            );
                            s.deltas.parked += 1;
                        }
                        Item::Job(j) => queue(s, &j),
                        Item::Once { key, job_id, at } => {
                            let mut v = job_id.as_bytes().to_vec();
                            v.extend_from_slice(&keys::ms(at));
                            s.insert(keys::once(&key), v);
                        }
                        Item::DeadLetter(d) => {
                            s.insert(keys::dead(d.job.id), json(&d));
                            s.deltas.dead_letters += 1;
                        }
                        Item::Quarantine(q) => {
                            s.insert(keys::delivery(&q.dedup_key), q.id.as_bytes().to_vec());
                            s.insert(keys::quarantine(q.id), json(&q));
                            s.deltas.quarantine += 1;
                        }
                        Item::Payload { .. } => unreachable!("written above"),
                    }
                }
                Ok(())
            })
            .await
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        let d = self.counts.depths();
        Ok(d.outbox + d.parked + d.dead_letters + d.quarantine == 0
            && self.tree.scan_prefix(keys::EVENT).next().is_none()
            && self.tree.scan_prefix(keys::REGISTRATION).next().is_none())
    }
}
