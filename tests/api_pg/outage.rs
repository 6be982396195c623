//! PostgreSQL away and back: the database refuses this test's connections (as a failover or a
//! restart does), while other tests' databases on the server go on.

use std::time::Duration;

use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

use crate::helpers::*;

/// Refuses (or admits again) every connection to `db`, and ends the ones it has.
async fn database_away(db: &str, away: bool) {
    let mut c = PgConnection::connect(&signrelay::testkit::postgres::server())
        .await
        .unwrap();
    c.execute(format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS {}", !away).as_str())
        .await
        .unwrap();
    if away {
        c.execute(
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
            )
            .as_str(),
        )
        .await
        .unwrap();
    }
}

async fn ready(app: &TestApp) -> u16 {
    app.client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// While the database is away GoSign hears "retry", the case application 503, `/readyz`
/// fails and nothing is acknowledged; once it is back everything resumes by itself, and the
/// outcome GoSign retried is relayed once.
#[tokio::test]
async fn vendors_retry_readiness_fails_and_work_resumes_when_postgres_returns() {
    let app = spawn_app().await;
    let db = database_of(&app)
        .expect("a PostgreSQL database")
        .name
        .clone();
    let tx = "ENV-PG-AWAY";
    let zaak = register_tx(&app, "gosign", tx).await;
    assert_eq!(ready(&app).await, 200);

    database_away(&db, true).await;
    let body = work(tx, "SIGN_PROCESS_ENDED").to_string();
    for _ in 0..2 {
        let (status, answer) = app.notify(tx, body.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(answer["outcome"], json!("failed_please_retry"), "{answer}");
    }
    let registered = app.register("ENV-PG-OTHER", "zaak-other").await;
    assert_eq!(registered.status().as_u16(), 503);
    assert_eq!(
        ready(&app).await,
        503,
        "readiness follows the failed writes"
    );

    database_away(&db, false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, answer) = app.notify(tx, body.clone()).await;
        assert_eq!(status, 200);
        if answer["outcome"] == "succeeded" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refused after the database returned: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let e = delivered_event(&app, tx).await;
    assert_eq!(e["relay"]["state"], "delivered");
    assert_notified(&app, tx, &zaak, "OndertekenenVoltooid", None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while ready(&app).await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
