//! A sled store with every kind of record, copied into PostgreSQL and back: each store reads
//! the same through the `Store` trait.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};

use super::*;
use crate::event::Outcome;
use crate::jobs::{Done, JobResult, Party, Task, VendorTask};
use crate::store::fixtures::{new_event, payload, recorded, registration};
use crate::store::postgres::{migrate, schema};
use crate::store::{
    EventQuery, NewQuarantine, PgOptions, PgStore, SledStore, Store, StoreOptions, STANDING,
};
use crate::testkit::postgres::TestDb;

const TXS: [&str; 5] = ["T1", "T2", "T3", "T4", "T5"];

async fn seed(s: &SledStore) {
    let far = Utc::now() + chrono::Duration::days(1);
    // T1: queued for the NRC, a large payload (a file in sled).
    s.register(registration("T1")).await.unwrap();
    s.record(new_event("T1", Outcome::Completed, "k1"), payload(200_000))
        .await
        .unwrap();
    // T2: parked.
    s.record(new_event("T2", Outcome::Completed, "k2"), payload(10))
        .await
        .unwrap();
    // T3: delivered; T4: dead-lettered.
    for tx in ["T3", "T4"] {
        s.register(registration(tx)).await.unwrap();
        let e = recorded(
            s.record(new_event(tx, Outcome::Completed, tx), payload(10))
                .await
                .unwrap(),
        );
        let job = s
            .due(Party::Nrc, far, 100)
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.task.event_id() == Some(e.id))
            .unwrap();
        let result = match tx {
            "T3" => JobResult::Done(Done::default()),
            _ => JobResult::DeadLetter {
                reason: "400".into(),
                status: Some(400),
                body: Some("nee".into()),
            },
        };
        s.complete(&job, result).await.unwrap();
    }
    // T5: withdrawn.
    s.register(registration("T5")).await.unwrap();
    s.unregister(
        crate::event::Vendor::Gosign,
        &TransactionId::parse("T5").unwrap(),
    )
    .await
    .unwrap();
    s.quarantine(
        NewQuarantine {
            vendor: crate::event::Vendor::Gosign,
            surface: "gosign.rest",
            reason: "onleesbaar".into(),
            caller: Default::default(),
            dedup_key: "q1".into(),
        },
        payload(70_000),
    )
    .await
    .unwrap();
    let poll = Task::Vendor(VendorTask {
        vendor: crate::event::Vendor::Posten,
        event_id: None,
        name: "poll".into(),
        data: json!({"cursor": 7}),
    });
    s.enqueue(
        crate::jobs::Job::new(poll, Utc::now()),
        Some(format!("{STANDING}posten/poll")),
    )
    .await
    .unwrap();
}

/// Everything a store shows through the trait, as one comparable value.
async fn snapshot(s: &dyn Store) -> Value {
    let far = Utc::now() + chrono::Duration::days(1);
    let events = s.events(&EventQuery::default()).await.unwrap();
    let mut payloads = Vec::new();
    for e in &events {
        let p = s.payload(e.archive_id).await.unwrap().unwrap();
        payloads.push(json!([
            p.content_type,
            p.bytes.len(),
            p.bytes.iter().map(|b| *b as u64).sum::<u64>()
        ]));
    }
    let quarantine = s.quarantined().await.unwrap();
    for q in &quarantine {
        payloads.push(json!(s
            .payload(q.archive_id)
            .await
            .unwrap()
            .unwrap()
            .bytes
            .len()));
    }
    let mut txs = Vec::new();
    for tx in TXS {
        let t = s
            .transaction_state(
                crate::event::Vendor::Gosign,
                &TransactionId::parse(tx).unwrap(),
            )
            .await
            .unwrap();
        txs.push(json!([t.registration, t.withdrawn, t.terminal]));
    }
    let mut jobs = Vec::new();
    for party in [Party::Nrc, Party::Vendor(crate::event::Vendor::Posten)] {
        jobs.extend(s.due(party, far, 100).await.unwrap());
    }
    json!({
        "events": events,
        "payloads": payloads,
        "quarantine": quarantine,
        "transactions": txs,
        "jobs": jobs,
        "dead_letters": s.dead_letters().await.unwrap(),
    })
}

async fn pg_store(db: &TestDb) -> PgStore {
    let pool = schema::pool(&db.config()).unwrap();
    migrate(&pool).await.unwrap();
    PgStore::with_pool(
        pool,
        PgOptions {
            policy: Default::default(),
            lease: std::time::Duration::from_secs(30),
            scratch: tempfile::tempdir().unwrap().keep(),
            min_free_bytes: 0,
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_to_postgres_and_back_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let (sled, _w) = SledStore::open(&dir.path().join("a"), StoreOptions::default(), None).unwrap();
    seed(&sled).await;
    let before = snapshot(&sled).await;
    assert_eq!(before["events"].as_array().unwrap().len(), 4);

    let db = TestDb::create().await;
    let pg = Arc::new(pg_store(&db).await);
    let counts = copy(&sled, &*pg).await.unwrap();
    assert_eq!(counts["events"], 4);
    assert_eq!(counts["payloads"], 5);
    assert_eq!(counts["dead letters"], 1);
    assert_eq!(counts["parked events"], 1);
    assert_eq!(snapshot(&*pg).await, before, "PostgreSQL reads as sled did");
    // The parked event is released by a registration in its new store.
    let released = pg.register(registration("T2")).await.unwrap();
    assert_eq!(released.released, 1);
    // Back into sled (before the release): a second, empty PostgreSQL copy first.
    let db2 = TestDb::create().await;
    let pg2 = pg_store(&db2).await;
    copy(&sled, &pg2).await.unwrap();
    let (sled2, _w2) =
        SledStore::open(&dir.path().join("b"), StoreOptions::default(), None).unwrap();
    copy(&pg2, &sled2).await.unwrap();
    assert_eq!(snapshot(&sled2).await, before, "and back into sled");
    assert_eq!(sled2.depths(), sled.depths());
    let err = copy(&sled, &pg2).await.unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
}
