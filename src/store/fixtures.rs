//! What the stores' own tests record, the same for every backend.

use bytes::Bytes;
use chrono::Utc;

use super::{RawPayload, Recorded};
use crate::event::{Caller, NewEvent, Outcome, SigningEvent, TransactionId, Vendor};
use crate::registry::{Registration, TriggerMessage};

pub fn new_event(tx: &str, outcome: Outcome, dedup: &str) -> NewEvent {
    NewEvent {
        vendor: Vendor::Gosign,
        transaction_id: TransactionId::parse(tx).unwrap(),
        outcome,
        occurred_at: None,
        surface: "gosign.rest",
        dedup_key: dedup.into(),
        documents: vec![],
        caller: Caller::default(),
        follow_up: None,
    }
}

pub fn payload(n: usize) -> RawPayload {
    RawPayload::new("application/json", Bytes::from(vec![b'x'; n]))
}

pub fn registration(tx: &str) -> Registration {
    let trigger: TriggerMessage = serde_json::from_value(serde_json::json!({
        "naam": "n", "eigenaar": "e@x.nl",
        "zaak": {"uuid": "2cc803a9-7404-4289-8f3d-f2300f666eac", "url": "https://zrc.example/z/1"},
        "documenten": [{"uuid": "f491249e-0651-4d22-a8a8-bb35885e9245", "url": "https://drc.example/d/1"}],
        "ondertekenaars": [{"e-mail": "s@x.nl"}]
    }))
    .unwrap();
    Registration {
        vendor: Vendor::Gosign,
        transaction_id: TransactionId::parse(tx).unwrap(),
        trigger,
        registered_at: Utc::now(),
    }
}

pub fn recorded(r: Recorded) -> SigningEvent {
    match r {
        Recorded::New(e) => *e,
        Recorded::Duplicate { .. } => panic!("expected a new record"),
    }
}
