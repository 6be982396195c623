//! Builds signrelay from its config: store, relay worker, background tasks, HTTP server.
//! Used by `serve`, `demo` and the tests alike.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer};
use tokio::sync::watch;

use crate::admin::AdminApi;
use crate::config::{scaled, Backend, Config};
use crate::health::Health;
use crate::http::body::BodyLimits;
use crate::intake::Intake;
use crate::jobs::backoff::Backoff;
use crate::jobs::{LaneSettings, Party};
use crate::ops::Ops;
use crate::relay::kanaal_page::KanaalPage;
use crate::relay::worker::{Wakers, Worker};
use crate::relay::{KanaalKeeper, KanaalSettings, NotifyNrc, RelaySettings};
use crate::rules::Policy;
use crate::store::{PgOptions, PgStore, SledStore, Store, StoreOptions};
use crate::telemetry::Metrics;
use crate::vendors::{self, Wiring};
use crate::zgw::nrc::NrcClient;

pub struct Application {
    server: Server,
    port: u16,
    stop: watch::Sender<bool>,
    /// Background loops that hold no unrecorded work: aborted at shutdown.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The job queue's lanes: awaited at shutdown so that jobs in flight record their result.
    workers: Vec<tokio::task::JoinHandle<()>>,
    store: Backing,
}

/// The store as the application closes it.
enum Backing {
    Sled {
        store: Arc<SledStore>,
        writer: std::thread::JoinHandle<()>,
    },
    Postgres(Arc<PgStore>),
}

/// Opens the configured backend.
async fn open_store(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Backing> {
    let policy = Policy {
        relay_progress: config.relay.relay_progress,
        upload_documents: crate::rules::VendorSet::of(config.uploading()),
    };
    Ok(match config.store.backend {
        Backend::Sled => {
            let (store, writer) = SledStore::open(
                &config.store.path,
                StoreOptions {
                    policy,
                    max_group: config.store.max_group,
                    min_free_bytes: config.store.min_free_bytes(),
                    cache_bytes: config.store.cache_bytes(),
                    ..StoreOptions::default()
                },
                Some(metrics.clone()),
            )?;
            Backing::Sled {
                store: Arc::new(store),
                writer,
            }
        }
        Backend::Postgres => {
            std::fs::create_dir_all(&config.store.path)?;
            Backing::Postgres(Arc::new(
                PgStore::open(
                    &config.store.postgres,
                    PgOptions {
                        policy,
                        lease: Duration::from_secs(config.store.postgres.lease_secs),
                        scratch: config.store.path.clone(),
                        min_free_bytes: config.store.min_free_bytes(),
                    },
                )
                .await?,
            ))
        }
    })
}

impl Backing {
    fn store(&self) -> Arc<dyn Store> {
        match self {
            Backing::Sled { store, .. } => store.clone(),
            Backing::Postgres(store) => store.clone(),
        }
    }

    /// Closes the store once nothing uses it any more.
    async fn close(self) -> anyhow::Result<()> {
        match self {
            Backing::Sled { store, writer } => {
                drop(store);
                // Every acknowledged write is already durable; this only waits for the last
                // group.
                let joined = tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio::task::spawn_blocking(move || writer.join()),
                )
                .await;
                match joined {
                    Ok(Ok(Ok(()))) => tracing::info!("store closed"),
                    Ok(_) => anyhow::bail!("store writer panicked"),
                    Err(_) => {
                        tracing::warn!("store writer still referenced at shutdown; leaving it")
                    }
                }
            }
            Backing::Postgres(store) => {
                // Jobs read but not run go to the other instances at once.
                match store.release_leases().await {
                    Ok(n) => tracing::info!(released = n, "store closed"),
                    Err(e) => tracing::warn!(error = %e, "cannot release job leases; they run out"),
                }
                store.pool().close().await;
            }
        }
        Ok(())
    }
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let metrics = Arc::new(Metrics::new());
        let store = open_store(&config, &metrics).await?;
        let dyn_store = store.store();
        let health = Health::new(config.relay.enabled);
        let wakers = Wakers::default();
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(
                health
                    .clone()
                    .probe_store(dyn_store.clone(), Duration::from_secs(5)),
            ),
            tokio::spawn(purge_loop(
                dyn_store.clone(),
                config.store.retention(),
                Duration::from_secs(config.store.purge_interval_secs.max(1)),
                stop_rx.clone(),
            )),
        ];

        let intake = Intake {
            store: dyn_store.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            wakers: wakers.clone(),
        };
        let settings = config.vendor_settings();
        let mut providers = crate::auth::jwt::ProviderPool::default();
        let connectors = vendors::build(
            &config.vendors,
            &mut Wiring {
                settings: &settings,
                intake,
                store: dyn_store.clone(),
                metrics: metrics.clone(),
                providers: &mut providers,
            },
        )?;

        // Jobs that always exist (pollers): queued once, ever.
        for c in connectors.all() {
            for (key, task) in c.standing_jobs() {
                let job = crate::jobs::Job::new(task, chrono::Utc::now());
                let once = format!("{}{}/{key}", crate::store::STANDING, c.vendor());
                dyn_store.enqueue(job, Some(once)).await?;
            }
        }

        let mut workers = Vec::new();
        // Started once the HTTP server listens: creating the kanaal makes the NRC fetch its
        // documentation page from signrelay.
        let mut kanaal_keeper = None;
        if config.relay.enabled {
            let backoff = Backoff {
                initial: Duration::from_millis(config.relay.backoff_initial_ms),
                max: Duration::from_secs(config.relay.backoff_max_secs),
            };
            let nrc = Arc::new(NrcClient::new(
                &config.nrc.url,
                config.nrc.identity().jwt()?,
                config.relay_timeout(),
            )?);
            let kanaal = KanaalKeeper::new(
                nrc.clone(),
                KanaalSettings {
                    kanaal: config.nrc.kanaal.clone(),
                    documentatie_link: config.nrc.documentatie_link(&config.server.public_url),
                    filters: config.nrc.kanaal_filters.clone(),
                    ensure: config.nrc.ensure_kanaal,
                    retry: Backoff {
                        initial: backoff.initial,
                        max: config.probe_interval_max(),
                    },
                },
                health.clone(),
                metrics.clone(),
            );
            let nrc_gate = kanaal.gate();
            let mut worker = Worker::new(
                dyn_store.clone(),
                metrics.clone(),
                health.clone(),
                wakers.clone(),
                Duration::from_secs(scaled(config.relay.park_timeout_hours, 3600)),
            );
            worker.lane(
                LaneSettings {
                    party: Party::Nrc,
                    pace: config.nrc_pace(),
                    // The NRC client's own timeout ends a request first.
                    timeout: config.relay_timeout() + Duration::from_secs(2),
                    backoff,
                    give_up_after: Duration::from_secs(scaled(
                        config.relay.give_up_after_hours,
                        3600,
                    )),
                    after_commit: false,
                },
                Arc::new(NotifyNrc::new(
                    dyn_store.clone(),
                    nrc.clone(),
                    RelaySettings {
                        kanaal: config.nrc.kanaal.clone(),
                        progress_actie: config
                            .relay
                            .relay_progress
                            .then(|| config.relay.progress_actie.clone()),
                    },
                    kanaal.clone(),
                )),
            );
            for c in connectors.all() {
                if let Some((mut lane, handler)) = c.jobs() {
                    lane.pace.probe_max = config.probe_interval_max();
                    worker.lane(lane, handler);
                }
            }
            let uploading = config.uploading();
            if !uploading.is_empty() {
                let sources = connectors
                    .all()
                    .iter()
                    .filter_map(|c| Some((c.vendor(), c.signed_documents()?)))
                    .collect();
                let (mut lane, handler) = crate::documents::lane(
                    &config.drc,
                    &config.nrc.identity(),
                    sources,
                    dyn_store.clone(),
                    config.store.path.join("signed"),
                    &metrics,
                )?;
                lane.pace.probe_max = config.probe_interval_max();
                worker.lane(lane, handler);
                // Staged signed files of events that ended otherwise (a purge, an operator)
                // go with the retention loop's rhythm.
                let staging = crate::documents::StagingArea::new(config.store.path.join("signed"));
                let (st, mut stop_s) = (dyn_store.clone(), stop_rx.clone());
                let every = Duration::from_secs(config.store.purge_interval_secs.max(1));
                tasks.push(tokio::spawn(async move {
                    loop {
                        let n = staging.sweep(&*st).await;
                        if n > 0 {
                            tracing::info!(count = n, "staged signed files removed");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(every) => {}
                            _ = stop_s.changed() => return,
                        }
                    }
                }));
                tracing::info!(
                    vendors = ?uploading.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
                    "completions put their signed documents into the DRC before the NRC hears of them"
                );
            }
            kanaal_keeper = Some(kanaal.keep(stop_rx.clone()));
            // The NRC's lane runs while the kanaal exists.
            workers = worker.start(stop_rx.clone(), HashMap::from([(Party::Nrc, nrc_gate)]));
        }

        let client_timeout = Duration::from_secs(config.server.client_timeout_secs);
        let admin = actix_web::web::Data::new(AdminApi {
            auth: config
                .admin
                .auth
                .build_shared(Some(metrics.clone()), &mut providers)?,
            store: dyn_store.clone(),
            metrics: metrics.clone(),
            wakers: wakers.clone(),
            connectors: connectors.clone(),
            body: BodyLimits::new(
                config.server.api_body_limit_kib.saturating_mul(1024),
                4,
                client_timeout * 4,
                config.server.body_min_rate(),
            ),
        });
        let kanaal_page = actix_web::web::Data::new(KanaalPage {
            kanaal: config.nrc.kanaal.clone(),
            filters: config.nrc.kanaal_filters.clone(),
            progress_actie: config
                .relay
                .relay_progress
                .then(|| config.relay.progress_actie.clone()),
        });
        let mut contracts = vec![("signrelay-api.yaml", crate::admin::OPENAPI)];
        for c in connectors.all() {
            contracts.extend(c.contracts());
        }
        let ops = actix_web::web::Data::new(Ops {
            store: dyn_store.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
            contracts,
        });

        // Identity provider keys, refreshed in the background: once per provider, however
        // many surfaces trust it.
        tasks.extend(
            providers
                .providers()
                .iter()
                .map(|p| tokio::spawn(p.clone().refresh_loop())),
        );

        let listener = TcpListener::bind(config.server.listen)?;
        let port = listener.local_addr()?.port();
        let mut server = HttpServer::new(move || {
            let mut app = App::new()
                .wrap(from_fn(crate::http::log::request_span))
                .configure(|c| crate::ops::configure(c, ops.clone()))
                .configure(|c| crate::relay::kanaal_page::configure(c, kanaal_page.clone()))
                .configure(|c| crate::admin::configure(c, admin.clone()));
            for v in connectors.all() {
                app = app.configure(|c| v.mount(c));
            }
            app
        })
        .client_request_timeout(client_timeout)
        .client_disconnect_timeout(Duration::from_secs(5))
        // Off by default: actix times out the headers of a connection's first request only,
        // so a kept-alive connection could trickle (or stall) its next request's headers
        // forever. Each request on its own connection is always under the timeout.
        .keep_alive(match config.server.keep_alive_secs {
            0 => actix_web::http::KeepAlive::Disabled,
            secs => actix_web::http::KeepAlive::Timeout(Duration::from_secs(secs)),
        })
        .max_connections(10_000)
        .shutdown_timeout(config.server.shutdown_timeout_secs);
        if config.server.workers > 0 {
            server = server.workers(config.server.workers);
        }
        let server = server.listen(listener)?.run();
        tasks.extend(kanaal_keeper.map(tokio::spawn));
        tracing::info!(
            port,
            backend = ?config.store.backend,
            store = %config.store.path.display(),
            "signrelay listening"
        );
        Ok(Application {
            server,
            port,
            stop,
            tasks,
            workers,
            store,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server gracefully (in-flight requests finish), which ends `run_until_stopped`.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server stops (SIGTERM/SIGINT or `handle().stop()`), then stops the job
    /// queue and background tasks and closes the store after its last group commit.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            server,
            stop,
            tasks,
            workers,
            store,
            ..
        } = self;
        server.await?;
        tracing::info!("HTTP server stopped; stopping the job queue");
        let _ = stop.send(true);
        let _ = tokio::time::timeout(
            Duration::from_secs(35),
            futures_util::future::join_all(workers),
        )
        .await;
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        store.close().await
    }
}

async fn purge_loop(
    store: Arc<dyn Store>,
    retention: Duration,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        // A retention too long to subtract from now keeps everything: it never becomes zero.
        let Some(cutoff) = crate::bounds::ago(retention) else {
            continue;
        };
        match store.purge(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "retention purge"),
            Err(e) => tracing::error!(error = %e, "retention purge failed"),
        }
    }
}
