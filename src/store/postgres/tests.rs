//! The PostgreSQL store's contract, each test on a database of its own (see
//! `crate::testkit::postgres`), two stores on one database standing for two instances.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use uuid::Uuid;

use super::*;
use crate::event::{Caller, NotRelayed, Outcome, RelayState, Step};
use crate::jobs::{Done, Task};
use crate::rules::TerminalOutcome;
use crate::store::fixtures::{new_event, payload, recorded, registration};
use crate::testkit::postgres::TestDb;

async fn open(db: &TestDb, lease: Duration) -> PgStore {
    let pool = schema::pool(&db.config()).unwrap();
    migrate(&pool).await.unwrap();
    let scratch = tempfile::tempdir().unwrap().keep();
    PgStore::with_pool(
        pool,
        PgOptions {
            policy: Policy::default(),
            lease,
            scratch,
            min_free_bytes: 0,
        },
    )
    .unwrap()
}

fn far() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::days(3650)
}

const PENDING: RelayState = RelayState::Pending { step: Step::Notify };

#[tokio::test]
async fn dedup_terminal_outcomes_parking_and_release() {
    let db = TestDb::create().await;
    let s = open(&db, Duration::from_secs(30)).await;
    let first = recorded(
        s.record(new_event("T1", Outcome::Completed, "k1"), payload(10))
            .await
            .unwrap(),
    );
    assert_eq!(first.relay, RelayState::Parked);
    match s
        .record(new_event("T1", Outcome::Completed, "k1"), payload(10))
        .await
        .unwrap()
    {
        Recorded::Duplicate { event_id } => assert_eq!(event_id, first.id),
        other => panic!("{other:?}"),
    }
    let conflicting = recorded(
        s.record(
            new_event("T1", Outcome::Aborted { reason: "x".into() }, "k2"),
            payload(1),
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        conflicting.relay,
        RelayState::NotRelayed {
            why: NotRelayed::ConflictingOutcome
        }
    );
    assert!(s.due(Party::Nrc, far(), 10).await.unwrap().is_empty());
    let r = s.register(registration("T1")).await.unwrap();
    assert_eq!(
        r,
        Registered {
            created: true,
            released: 1
        }
    );
    assert_eq!(s.event(first.id).await.unwrap().unwrap().relay, PENDING);
    let due = s.due(Party::Nrc, Utc::now(), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, first.id);
    s.complete(&due[0], JobResult::Done(Done::default()))
        .await
        .unwrap();
    assert!(matches!(
        s.event(first.id).await.unwrap().unwrap().relay,
        RelayState::Delivered { attempts: 1, .. }
    ));
    let state = s
        .transaction_state(Vendor::Gosign, &TransactionId::parse("T1").unwrap())
        .await
        .unwrap();
    assert_eq!(state.terminal, Some(TerminalOutcome::Completed));
    assert!(state.registration.is_some());
    assert_eq!(
        s.register(registration("T1")).await.unwrap(),
        Registered {
            created: false,
            released: 0
        }
    );
    let q = EventQuery {
        transaction_id: Some(TransactionId::parse("T1").unwrap()),
        ..EventQuery::default()
    };
    assert_eq!(s.events(&q).await.unwrap().len(), 2);
    let delivered = EventQuery {
        state: Some(crate::event::RelayStateKind::Delivered),
        ..EventQuery::default()
    };
    assert_eq!(s.events(&delivered).await.unwrap()[0].id, first.id);
}

#[tokio::test]
async fn retry_dead_letter_and_replay() {
    let db = TestDb::create().await;
    let s = open(&db, Duration::from_secs(30)).await;
    s.register(registration("T1")).await.unwrap();
    let e = recorded(
        s.record(new_event("T1", Outcome::Completed, "k"), payload(1))
            .await
            .unwrap(),
    );
    let later = Utc::now() + chrono::Duration::seconds(60);
    let job = s.due(Party::Nrc, Utc::now(), 10).await.unwrap().remove(0);
    s.complete(
        &job,
        JobResult::Retry {
            due: later,
            error: "503".into(),
        },
    )
    .await
    .unwrap();
    assert!(s.due(Party::Nrc, Utc::now(), 10).await.unwrap().is_empty());
    let job = s.due(Party::Nrc, later, 10).await.unwrap().remove(0);
    assert_eq!((job.attempts, job.last_error.as_deref()), (1, Some("503")));
    s.complete(
        &job,
        JobResult::DeadLetter {
            reason: "400".into(),
            status: Some(400),
            body: Some("bad".into()),
        },
    )
    .await
    .unwrap();
    let dl = s.dead_letters().await.unwrap();
    assert_eq!((dl.len(), dl[0].attempts, dl[0].status), (1, 2, Some(400)));
    assert!(matches!(
        s.event(e.id).await.unwrap().unwrap().relay,
        RelayState::DeadLettered { .. }
    ));
    s.replay(e.id).await.unwrap();
    assert!(matches!(s.replay(e.id).await, Err(StoreError::NotFound)));
    assert_eq!(s.event(e.id).await.unwrap().unwrap().relay, PENDING);
    assert_eq!(
        s.due(Party::Nrc, Utc::now(), 10).await.unwrap()[0].attempts,
        0
    );
}

/// A payload over many chunks comes back byte for byte (mapped from a scratch file); a
/// quarantined callback is kept once.
#[tokio::test]
async fn large_payloads_and_the_quarantine() {
    let db = TestDb::create().await;
    let s = open(&db, Duration::from_secs(30)).await;
    let big: Vec<u8> = (0..(payloads::CHUNK * 3 + 12345))
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let e = recorded(
        s.record(
            new_event("T1", Outcome::Completed, "k"),
            RawPayload::new("application/pdf", Bytes::from(big.clone())),
        )
        .await
        .unwrap(),
    );
    let p = s.payload(e.archive_id).await.unwrap().unwrap();
    assert_eq!(p.content_type, "application/pdf");
    assert!(p.bytes[..] == big[..], "the payload comes back as recorded");
    assert_eq!(
        s.payload(Uuid::now_v7()).await.unwrap().map(|p| p.bytes),
        None
    );
    let q = || NewQuarantine {
        vendor: Vendor::Gosign,
        surface: "gosign.rest",
        reason: "unreadable".into(),
        caller: Caller::default(),
        dedup_key: "q1".into(),
    };
    let a = s.quarantine(q(), payload(5)).await.unwrap();
    let b = s.quarantine(q(), payload(5)).await.unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(s.quarantined().await.unwrap().len(), 1);
    assert_eq!(s.quarantine_entry(a.id).await.unwrap().unwrap(), a);
    assert_eq!(
        s.payload(a.archive_id).await.unwrap().unwrap().bytes.len(),
        5
    );
}

/// A callback reaching one instance while its registration reaches another, at the same
/// moment, many times: every event ends queued for the NRC, none is stranded parked.
#[tokio::test]
async fn parking_and_registration_on_two_instances_never_miss_each_other() {
    let db = TestDb::create().await;
    let a = Arc::new(open(&db, Duration::from_secs(30)).await);
    let b = Arc::new(open(&db, Duration::from_secs(30)).await);
    let rounds = 200;
    let mut events = Vec::new();
    for i in 0..rounds {
        let tx = format!("R{i}");
        let (a2, b2, tx2) = (a.clone(), b.clone(), tx.clone());
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let b3 = barrier.clone();
        let rec = tokio::spawn(async move {
            b3.wait().await;
            a2.record(new_event(&tx2, Outcome::Completed, &tx2), payload(1))
                .await
        });
        let reg = tokio::spawn(async move {
            barrier.wait().await;
            b2.register(registration(&tx)).await
        });
        let e = recorded(rec.await.unwrap().unwrap());
        reg.await.unwrap().unwrap();
        events.push(e.id);
    }
    let mut stranded = 0;
    for id in &events {
        if a.event(*id).await.unwrap().unwrap().relay != PENDING {
            stranded += 1;
        }
    }
    assert_eq!(stranded, 0, "events left parked although registered");
    let queued = a.due(Party::Nrc, far(), 10_000).await.unwrap();
    assert_eq!(queued.len(), rounds);
}

/// One terminal outcome per transaction, whatever instance records it: two different
/// outcomes at once, many times, one relayed and one flagged.
#[tokio::test]
async fn concurrent_terminal_outcomes_on_two_instances_relay_one() {
    let db = TestDb::create().await;
    let a = Arc::new(open(&db, Duration::from_secs(30)).await);
    let b = Arc::new(open(&db, Duration::from_secs(30)).await);
    for i in 0..100 {
        let tx = format!("C{i}");
        let (a2, tx2) = (a.clone(), tx.clone());
        let one = tokio::spawn(async move {
            a2.record(
                new_event(&tx2, Outcome::Completed, &format!("{tx2}/c")),
                payload(1),
            )
            .await
        });
        let other = b
            .record(
                new_event(
                    &tx,
                    Outcome::Aborted { reason: "r".into() },
                    &format!("{tx}/a"),
                ),
                payload(1),
            )
            .await
            .unwrap();
        let one = recorded(one.await.unwrap().unwrap());
        let other = recorded(other);
        let flagged = [&one, &other]
            .iter()
            .filter(|e| matches!(e.relay, RelayState::NotRelayed { .. }))
            .count();
        assert_eq!(flagged, 1, "{:?} / {:?}", one.relay, other.relay);
    }
}

/// A job claimed by one instance is not run by another while its lease is renewed; once the
/// lease runs out (the instance is gone) the other takes it over, counted, and the first
/// instance's late result is not applied.
#[tokio::test]
async fn leases_keep_a_job_on_one_instance_until_they_run_out() {
    let db = TestDb::create().await;
    let lease = Duration::from_millis(1500);
    let a = open(&db, lease).await;
    let b = open(&db, lease).await;
    a.register(registration("T1")).await.unwrap();
    let e = recorded(
        a.record(new_event("T1", Outcome::Completed, "k"), payload(1))
            .await
            .unwrap(),
    );
    let job = a.due(Party::Nrc, Utc::now(), 10).await.unwrap().remove(0);
    // Renewed by A while it lives: B finds nothing, long after one lease.
    tokio::time::sleep(lease * 2).await;
    assert!(b.due(Party::Nrc, Utc::now(), 10).await.unwrap().is_empty());
    // A is gone (its renewal stops): B takes the job over once the lease has run out.
    drop(a);
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let taken = b.due(Party::Nrc, Utc::now(), 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(b.takeovers(), 1);
    // A's result arrives late, from an instance that no longer holds the job: not applied.
    let a_again = open(&db, lease).await;
    a_again
        .complete(&job, JobResult::Done(Done::default()))
        .await
        .unwrap();
    assert_eq!(a_again.event(e.id).await.unwrap().unwrap().relay, PENDING);
    b.complete(&taken[0], JobResult::Done(Done::default()))
        .await
        .unwrap();
    assert!(matches!(
        b.event(e.id).await.unwrap().unwrap().relay,
        RelayState::Delivered { .. }
    ));
    // A clean stop hands what it holds to the others at once.
    b.register(registration("T2")).await.unwrap();
    b.record(new_event("T2", Outcome::Completed, "k2"), payload(1))
        .await
        .unwrap();
    assert_eq!(b.due(Party::Nrc, Utc::now(), 10).await.unwrap().len(), 1);
    assert_eq!(b.release_leases().await.unwrap(), 1);
    assert_eq!(
        a_again.due(Party::Nrc, Utc::now(), 10).await.unwrap().len(),
        1
    );
    assert_eq!(a_again.takeovers(), 0, "a released job is not a take-over");
}

#[tokio::test]
async fn purge_enqueue_once_and_expiry() {
    let db = TestDb::create().await;
    let s = open(&db, Duration::from_secs(30)).await;
    s.register(registration("T1")).await.unwrap();
    let done = recorded(
        s.record(new_event("T1", Outcome::Completed, "a"), payload(100_000))
            .await
            .unwrap(),
    );
    let job = s.due(Party::Nrc, Utc::now(), 10).await.unwrap().remove(0);
    s.complete(&job, JobResult::Done(Done::default()))
        .await
        .unwrap();
    let parked = recorded(
        s.record(new_event("T2", Outcome::Completed, "c"), payload(5))
            .await
            .unwrap(),
    );
    let task = |name: &str| {
        Task::Vendor(crate::jobs::VendorTask {
            vendor: Vendor::Posten,
            event_id: None,
            name: name.into(),
            data: serde_json::json!({}),
        })
    };
    let first = s
        .enqueue(Job::new(task("fetch"), Utc::now()), Some("exit/abc".into()))
        .await
        .unwrap();
    let Enqueued::New(id) = first else {
        panic!("{first:?}")
    };
    assert_eq!(
        s.enqueue(Job::new(task("fetch"), Utc::now()), Some("exit/abc".into()))
            .await
            .unwrap(),
        Enqueued::Existing(id)
    );
    let standing = format!("{}posten/poll", crate::store::STANDING);
    s.enqueue(Job::new(task("poll"), Utc::now()), Some(standing.clone()))
        .await
        .unwrap();
    assert_eq!(
        s.purge(Utc::now() - chrono::Duration::days(1))
            .await
            .unwrap(),
        0
    );
    // The delivered event and T1's registration (its outcome was delivered).
    assert_eq!(
        s.purge(Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        2
    );
    assert!(s.event(done.id).await.unwrap().is_none());
    assert!(s.payload(done.archive_id).await.unwrap().is_none());
    assert!(
        s.event(parked.id).await.unwrap().is_some(),
        "parked events are kept"
    );
    let again = recorded(
        s.record(new_event("T1", Outcome::Completed, "a"), payload(1))
            .await
            .unwrap(),
    );
    assert_eq!(
        again.relay,
        RelayState::NotRelayed {
            why: NotRelayed::RepeatedOutcome
        },
        "the outcome stays deduplicated after the purge"
    );
    assert!(matches!(
        s.enqueue(Job::new(task("fetch"), Utc::now()), Some("exit/abc".into()))
            .await
            .unwrap(),
        Enqueued::New(_)
    ));
    assert!(matches!(
        s.enqueue(Job::new(task("poll"), Utc::now()), Some(standing))
            .await
            .unwrap(),
        Enqueued::Existing(_)
    ));
    assert_eq!(
        s.expire_parked(Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.dead_letters().await.unwrap()[0].event_id, Some(parked.id));
}

/// Two instances starting at once migrate once; a database with a newer schema is refused.
#[tokio::test]
async fn migrations_run_once_and_refuse_a_newer_schema() {
    let db = TestDb::create().await;
    let pool = schema::pool(&db.config()).unwrap();
    let (x, y) = tokio::join!(migrate(&pool), migrate(&pool));
    let mut applied = [x.unwrap(), y.unwrap()];
    applied.sort();
    assert_eq!(applied, [vec![], vec![1]]);
    schema::check(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO signrelay_migrations (version, name, checksum) VALUES (999, 'x', 'y')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let refused = migrate(&pool).await.unwrap_err().to_string();
    assert!(refused.contains("newer"), "{refused}");
    let empty = TestDb::create().await;
    let pool = schema::pool(&empty.config()).unwrap();
    assert!(
        schema::check(&pool).await.is_err(),
        "an empty database is not migrated"
    );
}

/// One instance purges at a time: while another holds the purge lock, a purge does nothing
/// (and says so with 0); afterwards it purges.
#[tokio::test]
async fn one_instance_purges_at_a_time() {
    let db = TestDb::create().await;
    let s = open(&db, Duration::from_secs(30)).await;
    s.record(
        new_event("T1", Outcome::Progress { detail: "d".into() }, "p"),
        payload(5),
    )
    .await
    .unwrap();
    let mut other = s.pool().acquire().await.unwrap();
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(schema::LOCK_NAMESPACE)
        .bind(schema::PURGE_LOCK)
        .fetch_one(&mut *other)
        .await
        .unwrap();
    assert!(held);
    let later = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(
        s.purge(later).await.unwrap(),
        0,
        "another instance is purging"
    );
    sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(schema::LOCK_NAMESPACE)
        .bind(schema::PURGE_LOCK)
        .execute(&mut *other)
        .await
        .unwrap();
    assert_eq!(s.purge(later).await.unwrap(), 1);
}

/// Whether this pool's connection is encrypted, as the server sees it.
async fn encrypted(cfg: &crate::config::PostgresConfig) -> Result<bool, sqlx::Error> {
    let pool = schema::pool(cfg).unwrap();
    let ssl = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await;
    pool.close().await;
    ssl
}

/// TLS as libpq users set it: `sslmode` over the URL's, and `root_cert` deciding whom
/// verify-full trusts. Needs a server with `ssl = on` and a certificate for `localhost`
/// (Debian's default, as on the development machines and in CI, which requires it).
#[tokio::test]
async fn tls_as_libpq_users_expect() {
    let db = TestDb::create().await;
    let pool = schema::pool(&db.config()).unwrap();
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&pool)
        .await
        .unwrap();
    let cert_file: String = sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    if ssl != "on" || std::fs::metadata(&cert_file).is_err() {
        assert!(
            std::env::var_os("SIGNRELAY_REQUIRE_POSTGRES_TLS").is_none(),
            "the PostgreSQL server has no TLS (ssl = {ssl}, certificate {cert_file})"
        );
        eprintln!("skipped: the PostgreSQL server has no TLS");
        return;
    }
    let with = |mode: &str, root: Option<std::path::PathBuf>, host: &str| {
        let mut cfg = db.config();
        let mut url = url::Url::parse(&db.url).unwrap();
        url.set_host(Some(host)).unwrap();
        cfg.url = crate::config::Secret::Inline(url.to_string());
        cfg.sslmode = Some(mode.into());
        cfg.root_cert = root;
        cfg
    };
    assert!(!encrypted(&with("disable", None, "127.0.0.1"))
        .await
        .unwrap());
    assert!(encrypted(&with("require", None, "127.0.0.1"))
        .await
        .unwrap());
    // The server's own certificate as the root: verified, name and all.
    let server_cert = Some(std::path::PathBuf::from(&cert_file));
    assert!(encrypted(&with("verify-full", server_cert, "localhost"))
        .await
        .unwrap());
    // A root that did not sign the server's certificate is refused, not ignored.
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("stranger.pem");
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&stranger, other.cert.pem()).unwrap();
    let refused = encrypted(&with("verify-full", Some(stranger), "localhost")).await;
    assert!(
        refused.is_err(),
        "a server certificate no root signed was accepted"
    );
}

#[tokio::test]
async fn due_jobs_skip_those_in_flight_and_return_held_ones_not_skipped() {
    let db = TestDb::create().await;
    let s = open(&db, Duration::from_secs(30)).await;
    for tx in ["T1", "T2", "T3"] {
        s.register(registration(tx)).await.unwrap();
        s.record(new_event(tx, Outcome::Completed, tx), payload(1))
            .await
            .unwrap();
    }
    let all = s.due(Party::Nrc, Utc::now(), 10).await.unwrap();
    assert_eq!(all.len(), 3);
    // All three are held now; the worker has the first in flight.
    let skip = std::collections::HashSet::from([all[0].id]);
    let rest = s
        .due_except(Party::Nrc, Utc::now(), 10, &skip)
        .await
        .unwrap();
    let ids: Vec<Uuid> = rest.iter().map(|j| j.id).collect();
    assert_eq!(ids, vec![all[1].id, all[2].id]);
    let one = s
        .due_except(Party::Nrc, Utc::now(), 1, &skip)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, all[1].id);
    let every = all.iter().map(|j| j.id).collect();
    assert!(s
        .due_except(Party::Nrc, Utc::now(), 10, &every)
        .await
        .unwrap()
        .is_empty());
}
