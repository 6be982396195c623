//! The key layout of the single sled tree. One tree, so that one `sled::Batch` (atomic) can
//! cover every part of a callback.

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::event::{TransactionId, Vendor};
use crate::jobs::Party;
use crate::rules::{Terminal, TerminalOutcome};

pub const DELIVERY: &[u8] = b"d/"; // d/<dedup key>          -> event id
pub const EVENT: &[u8] = b"e/"; // e/<event uuid>           -> SigningEvent json
pub const PAYLOAD: &[u8] = b"p/"; // p/<archive uuid>       -> archived payload
pub const JOB: &[u8] = b"j/"; // j/<party>\0<due ms><job uuid> -> Job json
/// The outbox of older stores (NRC deliveries only); moved into the job queue on open.
pub const LEGACY_OUTBOX: &[u8] = b"o/"; // o/<due ms><event uuid> -> OutboxItem json
/// An index by event that older stores have; removed when such a store is opened.
pub const LEGACY_OUTBOX_BY_EVENT: &[u8] = b"O/";
pub const TERMINAL: &[u8] = b"t/"; // t/<vendor>\0<tx>      -> event id + outcome label relayed
pub const PARKED: &[u8] = b"k/"; // k/<vendor>\0<tx>\0<id>  -> parked-at ms
pub const REGISTRATION: &[u8] = b"r/"; // r/<vendor>\0<tx>  -> Registration json
pub const WITHDRAWN: &[u8] = b"w/"; // w/<vendor>\0<tx>    -> withdrawn-at ms (tombstone)
pub const DEAD: &[u8] = b"l/"; // l/<event uuid>            -> DeadLetter json
pub const QUARANTINE: &[u8] = b"q/"; // q/<uuid>            -> QuarantineEntry json
pub const ONCE: &[u8] = b"n/"; // n/<once key>             -> job uuid + queued-at ms
/// Events by transaction, for `GET /api/v1/events?transaction_id=`: no scan of every event.
pub const BY_TRANSACTION: &[u8] = b"x/"; // x/<vendor>\0<tx>\0<event uuid> -> ""
pub const PROBE: &[u8] = b"m/probe";
/// Set once the events of an older store are indexed by transaction.
pub const INDEXED_BY_TRANSACTION: &[u8] = b"m/indexed-by-transaction";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub fn delivery(dedup: &str) -> Vec<u8> {
    cat(&[DELIVERY, dedup.as_bytes()])
}

pub fn event(id: Uuid) -> Vec<u8> {
    cat(&[EVENT, id.as_bytes()])
}

pub fn payload(id: Uuid) -> Vec<u8> {
    cat(&[PAYLOAD, id.as_bytes()])
}

/// One party's lane of the job queue: its keys sort by due time.
pub fn lane(party: Party) -> Vec<u8> {
    cat(&[JOB, party.as_str().as_bytes(), b"\0"])
}

pub fn job(party: Party, due: DateTime<Utc>, id: Uuid) -> Vec<u8> {
    cat(&[&lane(party), &ms(due), id.as_bytes()])
}

/// The job's id, the last 16 bytes of its key: read without the record.
pub fn job_id(key: &[u8]) -> Option<Uuid> {
    let at = key.len().checked_sub(16)?;
    Uuid::from_slice(&key[at..]).ok()
}

/// Reads the due time back out of a job key of `party`'s lane.
pub fn job_due(party: Party, key: &[u8]) -> Option<DateTime<Utc>> {
    let at = lane(party).len();
    from_ms(key.get(at..at + 8)?)
}

/// `<vendor>\0<tx>`; a `TransactionId` never contains NUL.
fn transaction(vendor: Vendor, tx: &TransactionId) -> Vec<u8> {
    cat(&[vendor.as_str().as_bytes(), b"\0", tx.as_bytes()])
}

/// The vendor and transaction at the start of a key's rest (after its prefix), and what
/// follows them (`\0<id>` in a parked key, nothing in others).
pub fn split_transaction(rest: &[u8]) -> Option<(Vendor, TransactionId, &[u8])> {
    let v = rest.iter().position(|b| *b == 0)?;
    let vendor = Vendor::parse(std::str::from_utf8(&rest[..v]).ok()?)?;
    let rest = &rest[v + 1..];
    let t = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let tx = TransactionId::parse(std::str::from_utf8(&rest[..t]).ok()?).ok()?;
    Some((vendor, tx, &rest[t..]))
}

pub fn terminal(vendor: Vendor, tx: &TransactionId) -> Vec<u8> {
    cat(&[TERMINAL, &transaction(vendor, tx)])
}

/// The value of a terminal key: the event id, then the outcome's label.
pub fn terminal_value(t: Terminal) -> Vec<u8> {
    cat(&[t.event_id.as_bytes(), t.outcome.label().as_bytes()])
}

pub fn parse_terminal(v: &[u8]) -> Option<Terminal> {
    Some(Terminal {
        event_id: Uuid::from_slice(v.get(..16)?).ok()?,
        outcome: TerminalOutcome::parse(std::str::from_utf8(v.get(16..)?).ok()?)?,
    })
}

pub fn registration(vendor: Vendor, tx: &TransactionId) -> Vec<u8> {
    cat(&[REGISTRATION, &transaction(vendor, tx)])
}

pub fn withdrawn(vendor: Vendor, tx: &TransactionId) -> Vec<u8> {
    cat(&[WITHDRAWN, &transaction(vendor, tx)])
}

pub fn by_transaction_prefix(vendor: Vendor, tx: &TransactionId) -> Vec<u8> {
    cat(&[BY_TRANSACTION, &transaction(vendor, tx), b"\0"])
}

pub fn by_transaction(vendor: Vendor, tx: &TransactionId, id: Uuid) -> Vec<u8> {
    cat(&[&by_transaction_prefix(vendor, tx), id.as_bytes()])
}

pub fn parked_prefix(vendor: Vendor, tx: &TransactionId) -> Vec<u8> {
    cat(&[PARKED, &transaction(vendor, tx), b"\0"])
}

pub fn parked(vendor: Vendor, tx: &TransactionId, id: Uuid) -> Vec<u8> {
    cat(&[&parked_prefix(vendor, tx), id.as_bytes()])
}

/// The event id at the end of a parked or by-transaction key.
pub fn parked_event(key: &[u8]) -> Option<Uuid> {
    let tail = key.get(key.len().checked_sub(16)?..)?;
    Uuid::from_slice(tail).ok()
}

pub fn once(key: &str) -> Vec<u8> {
    cat(&[ONCE, key.as_bytes()])
}

pub fn dead(id: Uuid) -> Vec<u8> {
    cat(&[DEAD, id.as_bytes()])
}

pub fn quarantine(id: Uuid) -> Vec<u8> {
    cat(&[QUARANTINE, id.as_bytes()])
}

pub fn ms(t: DateTime<Utc>) -> [u8; 8] {
    (t.timestamp_millis().max(0) as u64).to_be_bytes()
}

pub fn from_ms(b: &[u8]) -> Option<DateTime<Utc>> {
    let ms = u64::from_be_bytes(b.try_into().ok()?);
    Utc.timestamp_millis_opt(ms as i64).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_keys_sort_by_due_time_within_their_lane() {
        let id = Uuid::now_v7();
        let early = Utc.timestamp_millis_opt(1_000).unwrap();
        let late = Utc.timestamp_millis_opt(2_000_000).unwrap();
        assert!(job(Party::Nrc, early, id) < job(Party::Nrc, late, Uuid::nil()));
        assert_eq!(job_due(Party::Nrc, &job(Party::Nrc, late, id)), Some(late));
        let vendor = Party::Vendor(Vendor::Gosign);
        assert!(job(vendor, late, id).starts_with(&lane(vendor)));
        assert!(!job(vendor, late, id).starts_with(&lane(Party::Nrc)));
    }

    #[test]
    fn parked_key_ends_with_event_id() {
        let id = Uuid::now_v7();
        let tx = TransactionId::parse("env-1").unwrap();
        let key = parked(Vendor::Gosign, &tx, id);
        assert_eq!(parked_event(&key), Some(id));
        let (v, t, rest) = split_transaction(&key[PARKED.len()..]).unwrap();
        assert_eq!((v, t, rest.len()), (Vendor::Gosign, tx.clone(), 17));
        let key = terminal(Vendor::Posten, &tx);
        let (v, t, rest) = split_transaction(&key[TERMINAL.len()..]).unwrap();
        assert_eq!((v, t, rest), (Vendor::Posten, tx, &[][..]));
    }
}
