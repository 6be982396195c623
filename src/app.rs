//! Builds signrelay from its config: store, relay worker, background tasks, HTTP server.
//! Used by `serve`, `demo` and the tests alike.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpServer};
use tokio::sync::{watch, Notify};
use tracing::Instrument;

use crate::admin::AdminApi;
use crate::config::Config;
use crate::health::Health;
use crate::intake::Intake;
use crate::ops::Ops;
use crate::relay::backoff::Backoff;
use crate::relay::{Relay, RelaySettings};
use crate::store::{SledStore, Store, StoreOptions};
use crate::telemetry::Metrics;
use crate::vendors::body::BodyLimits;
use crate::vendors::gosign::workability::Workability;
use crate::vendors::gosign::{self, GosignRest, GosignSoap};
use crate::zgw::jwt::ZgwJwt;
use crate::zgw::nrc::NrcClient;

pub struct Application {
    server: Server,
    port: u16,
    stop: watch::Sender<bool>,
    /// Background loops that hold no unrecorded work: aborted at shutdown.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Awaited at shutdown so that deliveries in flight record their result.
    relay: Option<tokio::task::JoinHandle<()>>,
    store: Arc<SledStore>,
    writer: std::thread::JoinHandle<()>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let metrics = Arc::new(Metrics::new());
        let (store, writer) = SledStore::open(
            &config.store.path,
            StoreOptions {
                relay_progress: config.relay.relay_progress,
                max_group: config.store.max_group,
                min_free_bytes: config.store.min_free_mib * 1024 * 1024,
                cache_bytes: config.store.cache_mib * 1024 * 1024,
                ..StoreOptions::default()
            },
            Some(metrics.clone()),
        )?;
        let store = Arc::new(store);
        let dyn_store: Arc<dyn Store> = store.clone();
        let health = Health::new(config.relay.enabled);
        let wake = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut relay_task = None;

        tasks.push(tokio::spawn(
            health
                .clone()
                .probe_store(dyn_store.clone(), Duration::from_secs(5)),
        ));
        tasks.push(tokio::spawn(purge_loop(
            dyn_store.clone(),
            Duration::from_secs(config.store.retention_days * 86_400),
            Duration::from_secs(config.store.purge_interval_secs.max(1)),
            stop_rx.clone(),
        )));
        if config.relay.enabled {
            let nrc = Arc::new(NrcClient::new(
                &config.nrc.url,
                ZgwJwt::new(
                    &config.nrc.client_id,
                    &config.nrc.secret.resolve()?,
                    &config.nrc.user_id,
                    &config.nrc.user_representation,
                    Duration::from_secs(config.nrc.jwt_max_age_secs),
                ),
                config.relay_timeout(),
            )?);
            let relay = Relay::new(
                dyn_store.clone(),
                nrc.clone(),
                metrics.clone(),
                health.clone(),
                wake.clone(),
                RelaySettings {
                    kanaal: config.nrc.kanaal.clone(),
                    concurrency: config.relay.concurrency,
                    backoff: Backoff {
                        initial: Duration::from_millis(config.relay.backoff_initial_ms),
                        max: Duration::from_secs(config.relay.backoff_max_secs),
                    },
                    give_up_after: Duration::from_secs(config.relay.give_up_after_hours * 3600),
                    park_timeout: Duration::from_secs(config.relay.park_timeout_hours * 3600),
                    progress_actie: config
                        .relay
                        .relay_progress
                        .then(|| config.relay.progress_actie.clone()),
                },
            );
            let cfg = config.clone();
            let (m, h) = (metrics.clone(), health.clone());
            let mut stop_rx = stop_rx.clone();
            relay_task = Some(tokio::spawn(async move {
                if cfg.nrc.ensure_kanaal && !ensure_kanaal(&nrc, &cfg, &h, &mut stop_rx).await {
                    return;
                }
                m.kanaal_ready.set(1);
                relay.run(stop_rx).await;
            }));
        }

        let intake = Intake {
            store: dyn_store.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            relay_wake: wake.clone(),
        };
        let client_timeout = Duration::from_secs(config.server.client_timeout_secs);
        let workability = Arc::new(build_workability(&config, &dyn_store, &metrics)?);
        let mut providers = crate::auth::jwt::ProviderPool::default();
        let gosign_rest = match (&config.gosign.rest.enabled, &config.gosign.rest.auth) {
            (true, Some(auth)) => Some(web::Data::new(GosignRest {
                auth: auth.build_shared(Some(metrics.clone()), &mut providers)?,
                body: BodyLimits::new(
                    config.gosign.rest.body_limit_mib * 1024 * 1024,
                    config.gosign.rest.large_bodies_in_flight,
                    client_timeout * 4,
                ),
                intake: intake.clone(),
                workability: workability.clone(),
            })),
            _ => None,
        };
        let soap_cfg = config.gosign.soap.clone();
        let gosign_soap = match (&soap_cfg.enabled, &soap_cfg.auth) {
            (true, Some(auth)) => Some(web::Data::new(GosignSoap {
                auth: auth.build_shared(Some(metrics.clone()), &mut providers)?,
                body: BodyLimits::new(
                    soap_cfg.body_limit_mib * 1024 * 1024,
                    soap_cfg.large_bodies_in_flight,
                    client_timeout * 4,
                ),
                intake: intake.clone(),
                workability: workability.clone(),
                notifications_wsdl: gosign::wsdl_for(
                    gosign::NOTIFICATIONS_WSDL,
                    gosign::NOTIFICATIONS_ADDRESS,
                    &config.server.public_url,
                    &soap_cfg.base_path,
                ),
                events_wsdl: gosign::wsdl_for(
                    gosign::EVENTS_WSDL,
                    gosign::EVENTS_ADDRESS,
                    &config.server.public_url,
                    &soap_cfg.events_path,
                ),
            })),
            _ => None,
        };
        let gosign_base = config.gosign.rest.base_path.clone();
        let admin = web::Data::new(AdminApi {
            auth: config
                .admin
                .auth
                .build_shared(Some(metrics.clone()), &mut providers)?,
            store: dyn_store.clone(),
            metrics: metrics.clone(),
            relay_wake: wake.clone(),
            body: BodyLimits::new(
                config.server.api_body_limit_kib * 1024,
                4,
                client_timeout * 4,
            ),
        });
        let ops = web::Data::new(Ops {
            store: dyn_store.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
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
                .wrap(from_fn(request_span))
                .configure(|c| crate::ops::configure(c, ops.clone()))
                .configure(|c| crate::admin::configure(c, admin.clone()));
            if let Some(gs) = &gosign_rest {
                let gs = gs.clone();
                app = app.configure(|c| gosign::configure_rest(c, &gosign_base, gs));
            }
            if let Some(gs) = &gosign_soap {
                let gs = gs.clone();
                app = app.configure(|c| {
                    gosign::configure_soap(c, &soap_cfg.base_path, &soap_cfg.events_path, gs)
                });
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
        tracing::info!(port, store = %config.store.path.display(), "signrelay listening");
        Ok(Application {
            server,
            port,
            stop,
            tasks,
            relay: relay_task,
            store,
            writer,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server gracefully (in-flight requests finish), which ends `run_until_stopped`.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server stops (SIGTERM/SIGINT or `handle().stop()`), then stops the relay
    /// worker and background tasks and closes the store after its last group commit.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            server,
            stop,
            tasks,
            relay,
            store,
            writer,
            ..
        } = self;
        server.await?;
        tracing::info!("HTTP server stopped; stopping the relay");
        let _ = stop.send(true);
        if let Some(relay) = relay {
            let _ = tokio::time::timeout(Duration::from_secs(35), relay).await;
        }
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        drop(store);
        // Every acknowledged write is already durable; this only waits for the last group.
        let joined = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || writer.join()),
        )
        .await;
        match joined {
            Ok(Ok(Ok(()))) => tracing::info!("store closed"),
            Ok(_) => anyhow::bail!("store writer panicked"),
            Err(_) => tracing::warn!("store writer still referenced at shutdown; leaving it"),
        }
        Ok(())
    }
}

/// The GoSign workability policy, with ZRC credentials when it needs them.
fn build_workability(
    config: &Config,
    store: &Arc<dyn Store>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Workability> {
    let w = &config.gosign.workability;
    let zrc_jwt = if w.policy == crate::config::WorkabilityPolicy::ZaakOpen {
        let client = w.zrc_client_id.as_deref().unwrap_or(&config.nrc.client_id);
        let secret = w
            .zrc_secret
            .as_ref()
            .unwrap_or(&config.nrc.secret)
            .resolve()?;
        Some(ZgwJwt::new(
            client,
            &secret,
            &config.nrc.user_id,
            &config.nrc.user_representation,
            Duration::from_secs(config.nrc.jwt_max_age_secs),
        ))
    } else {
        None
    };
    Workability::new(w.clone(), store.clone(), metrics.clone(), zrc_jwt)
}

/// Retries kanaal bootstrap until it works or the service stops. Returns false on stop.
async fn ensure_kanaal(
    nrc: &NrcClient,
    cfg: &Config,
    health: &Health,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let backoff = Backoff {
        initial: Duration::from_millis(cfg.relay.backoff_initial_ms),
        max: Duration::from_secs(cfg.relay.backoff_max_secs.min(60)),
    };
    let mut attempt = 0;
    loop {
        health.relay_tick();
        match nrc
            .ensure_kanaal(
                &cfg.nrc.kanaal,
                &cfg.nrc.kanaal_documentatie_link,
                &cfg.nrc.kanaal_filters,
            )
            .await
        {
            Ok(state) => {
                tracing::info!(kanaal = %cfg.nrc.kanaal, ?state, "kanaal ready");
                return true;
            }
            Err(e) => {
                attempt += 1;
                tracing::warn!(kanaal = %cfg.nrc.kanaal, error = %e, attempt, "kanaal bootstrap failed; retrying");
            }
        }
        let wait = backoff.delay(attempt).max(Duration::from_millis(100));
        let wait = wait.min(Duration::from_secs(10));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return false,
        }
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
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
        match store.purge(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "retention purge"),
            Err(e) => tracing::error!(error = %e, "retention purge failed"),
        }
    }
}

/// A span per request with a request id (taken from `X-Request-Id` when sane), echoed back;
/// one log line per request. Paths are logged without their query (tokens travel there).
async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let path = loggable_path(req.path());
    let span =
        tracing::info_span!("request", request_id = %id, method = %req.method(), path = %path);
    let started = std::time::Instant::now();
    let (res, note) =
        crate::telemetry::with_request_note(next.call(req).instrument(span.clone())).await;
    let mut res = res?;
    let status = res.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            status,
            ms = started.elapsed().as_secs_f64() * 1e3,
            result = note.result,
            event_id = note.event_id.map(tracing::field::display),
            vendor = note.vendor,
            transaction_id = note.transaction_id.as_deref(),
            outcome = note.outcome,
            relay = note.relay,
            released = note.released,
            workable = note.workable,
            "request done"
        );
    });
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&id) {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            v,
        );
    }
    Ok(res)
}

/// A path as logged. GoSign's workability routes (`…/envelopes/{e}/managers/{user}/status`,
/// `…/managers/{user}/for/{original}/status`) name users, who are people: their segments are
/// masked. The route's end is fixed, whatever the configured base path.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    let mut segs: Vec<&str> = path.split('/').collect();
    let n = segs.len();
    let at = |i: usize, s: &str| n > i && segs[n - 1 - i] == s;
    let users: &[usize] =
        if at(0, "status") && at(2, "for") && at(4, "managers") && at(6, "envelopes") {
            &[1, 3]
        } else if at(0, "status") && at(2, "managers") && at(4, "envelopes") {
            &[1]
        } else {
            return std::borrow::Cow::Borrowed(path);
        };
    for i in users {
        segs[n - 1 - i] = "-";
    }
    std::borrow::Cow::Owned(segs.join("/"))
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn workability_paths_are_logged_without_users() {
        assert_eq!(
            loggable_path("/gosign/rest/envelopes/E-1/managers/jdoe%40x.nl/status"),
            "/gosign/rest/envelopes/E-1/managers/-/status"
        );
        assert_eq!(
            loggable_path("/cb/envelopes/E-1/managers/jdoe/for/asmith/status"),
            "/cb/envelopes/E-1/managers/-/for/-/status"
        );
        assert_eq!(
            loggable_path("/gosign/rest/envelopes/managers/managers/jdoe/status"),
            "/gosign/rest/envelopes/managers/managers/-/status"
        );
        for p in [
            "/gosign/rest/envelopes/E-1/notify",
            "/api/v1/events",
            "/status",
            "",
        ] {
            assert_eq!(loggable_path(p), p);
        }
    }
}
