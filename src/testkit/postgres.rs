//! Throwaway PostgreSQL databases for tests and the benchmark: each creates its own database
//! on the local server and drops it when done. The server is `SIGNRELAY_TEST_POSTGRES` (a URL
//! of a database to connect to first), by default `postgres://postgres@127.0.0.1:5432/postgres`
//! (trust authentication, as on the development machines and in CI).

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use crate::config::{PostgresConfig, Secret};

pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server the tests use.
pub fn server() -> String {
    std::env::var("SIGNRELAY_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_SERVER.into())
}

const PREFIX: &str = "signrelay_test_";

/// Drops test databases whose creating process is gone (once per process: the first database
/// a process makes looks).
async fn sweep_orphans(c: &mut PgConnection) {
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SWEPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'signrelay_test_%'")
            .fetch_all(&mut *c)
            .await
            .unwrap_or_default();
    for name in names {
        let owner = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        // Names without a process (an older format) are leftovers too.
        let alive = owner.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = tokio::time::timeout(Duration::from_secs(30), c.execute(drop.as_str())).await;
        }
    }
}

/// A database of its own, dropped (with any connections left) on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let server = server();
        // The creating process is in the name, so that a later run can drop what a killed or
        // finished run left (a config made for an app that never started, a SIGKILLed test).
        let name = format!("{PREFIX}{}_{}", std::process::id(), Uuid::now_v7().simple());
        let mut c = PgConnection::connect(&server).await.unwrap_or_else(|e| {
            panic!(
                "no PostgreSQL at {server} ({e}): start one (see .ci/run), or point \
                 SIGNRELAY_TEST_POSTGRES at one"
            )
        });
        sweep_orphans(&mut c).await;
        c.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create the test database");
        let _ = c.close().await;
        let mut url = url::Url::parse(&server).expect("SIGNRELAY_TEST_POSTGRES is a URL");
        url.set_path(&name);
        TestDb {
            name,
            url: url.to_string(),
        }
    }

    /// `[store.postgres]` for this database: a small pool (many tests share the server) and
    /// a short lease (take-overs within a test's time).
    pub fn config(&self) -> PostgresConfig {
        PostgresConfig {
            url: Secret::Inline(self.url.clone()),
            pool_size: 4,
            lease_secs: 5,
            ..PostgresConfig::default()
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (server(), self.name.clone());
        // Drop runs inside or outside a runtime: a thread of its own with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let Ok(mut c) = PgConnection::connect(&server).await else {
                    return;
                };
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ =
                    tokio::time::timeout(Duration::from_secs(30), c.execute(drop.as_str())).await;
            });
        })
        .join();
    }
}
