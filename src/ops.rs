//! Operations endpoints: liveness, readiness, Prometheus metrics, and the contracts of the
//! surfaces signrelay serves (`/openapi/{name}`).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use crate::health::Health;
use crate::store::Store;
use crate::telemetry::Metrics;

pub struct Ops {
    pub store: Arc<dyn Store>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// (file name, YAML) of each OpenAPI document served.
    pub contracts: Vec<(&'static str, &'static str)>,
}

pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<Ops>) {
    cfg.app_data(state)
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/readyz/intake", web::get().to(intake))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi/{name}", web::get().to(contract));
}

async fn contract(name: web::Path<String>, ops: web::Data<Ops>) -> HttpResponse {
    match ops.contracts.iter().find(|(n, _)| *n == name.as_str()) {
        Some((_, yaml)) => HttpResponse::Ok()
            .content_type("application/yaml; charset=utf-8")
            .body(*yaml),
        None => crate::problem::Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .detail("no such contract")
            .respond(),
    }
}

/// The process is up and serving, or needs a restart (a durable write failed: the store
/// refuses all work until it is reopened), so that an orchestrator restarts it.
async fn healthz(ops: web::Data<Ops>) -> HttpResponse {
    if ops.store.needs_restart() {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "restart_required"}))
    } else {
        HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
    }
}

/// Ready to take callbacks and pass them on: the store is writable, the relay worker is alive,
/// the NRC's kanaal exists and no party refuses signrelay. A failing check says why.
async fn readyz(ops: web::Data<Ops>) -> HttpResponse {
    let store = ops.health.store_writable(ops.store.as_ref());
    let relay = ops.health.relay_ok();
    let kanaal = ops.health.kanaal_problem();
    let refusals = ops.health.refusals();
    let ready = store && relay && kanaal.is_none() && refusals.is_empty();
    let mut reasons = serde_json::Map::new();
    if let Some(why) = &kanaal {
        reasons.insert("kanaal_ready".into(), why.clone().into());
    }
    if !refusals.is_empty() {
        let parties: serde_json::Map<String, serde_json::Value> = refusals
            .iter()
            .map(|(p, why)| (p.to_string(), why.clone().into()))
            .collect();
        reasons.insert("parties_accept".into(), parties.into());
    }
    let depths = ops.store.depths();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {
            "store_writable": store,
            "relay_alive": relay,
            "kanaal_ready": kanaal.is_none(),
            "parties_accept": refusals.is_empty(),
        },
        "reasons": reasons,
        "backlog": depths,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Ready to take callbacks: the store is writable. This is what a load balancer should route
/// by: a refusing NRC or a missing kanaal (which fail `/readyz`) stop deliveries, not intake,
/// and callbacks recorded meanwhile are delivered once the NRC accepts again; taking the
/// instance out of the ingress for them would make vendors retry and a signer's browser meet
/// an error page for nothing.
async fn intake(ops: web::Data<Ops>) -> HttpResponse {
    let store = ops.health.store_writable(ops.store.as_ref());
    let body = serde_json::json!({
        "status": if store { "ready" } else { "not_ready" },
        "checks": {"store_writable": store},
    });
    if store {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(ops: web::Data<Ops>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(ops.metrics.render(ops.store.depths()))
}
