//! signrelay's own API under `/api/v1`: the transaction registry (for the case application)
//! and the admin routes (for operators). Both require authentication.

use std::sync::Arc;

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::auth::SurfaceAuth;
use crate::event::Vendor;
use crate::problem::Problem;
use crate::registry::{valid_transaction_id, Registration, TriggerMessage};
use crate::store::{EventQuery, Store, StoreError};
use crate::telemetry::Metrics;

pub struct AdminApi {
    pub auth: SurfaceAuth,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub relay_wake: Arc<Notify>,
    pub body_limit: usize,
}

pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AdminApi>) {
    let limit = state.body_limit;
    cfg.service(
        web::scope("/api/v1")
            .app_data(state)
            .app_data(web::PayloadConfig::new(limit))
            .route("/transactions/{vendor}/{id}", web::put().to(register))
            .route("/transactions/{vendor}/{id}", web::get().to(registration))
            .route("/transactions/{vendor}/{id}", web::delete().to(unregister))
            .route("/events", web::get().to(events))
            .route("/events/{id}", web::get().to(event))
            .route("/events/{id}/payload", web::get().to(payload))
            .route("/events/{id}/documents/{index}", web::get().to(document))
            .route("/dead-letters", web::get().to(dead_letters))
            .route("/dead-letters/{id}/replay", web::post().to(replay))
            .route("/quarantine", web::get().to(quarantine))
            .default_service(web::to(|| async { Problem::not_found("this route") })),
    );
}

fn authenticate(api: &AdminApi, req: &HttpRequest) -> Result<(), HttpResponse> {
    api.auth.check(req).map(|_| ()).map_err(|f| {
        api.metrics
            .auth_failures
            .with_label_values(&["admin", f.code()])
            .inc();
        let mut resp = Problem::new(StatusCode::UNAUTHORIZED, f.code(), "Unauthorized")
            .detail(f.detail())
            .respond();
        if let Some(c) = api.auth.challenge() {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(c),
            );
        }
        resp
    })
}

macro_rules! auth {
    ($api:expr, $req:expr) => {
        if let Err(resp) = authenticate(&$api, &$req) {
            return resp;
        }
    };
}

fn store_error(e: StoreError) -> HttpResponse {
    match e {
        StoreError::NotFound => Problem::not_found("the resource"),
        other => {
            tracing::error!(error = %other, "admin store error");
            Problem::store_unavailable()
        }
    }
}

fn transaction_path(vendor: &str, id: &str) -> Result<(Vendor, String), HttpResponse> {
    let Some(v) = Vendor::parse(vendor) else {
        return Err(
            Problem::new(StatusCode::NOT_FOUND, "unknown-vendor", "Unknown vendor")
                .detail("vendor must be gosign, pkisigning or posten")
                .respond(),
        );
    };
    if !valid_transaction_id(id) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-transaction-id",
            "Invalid transaction id",
        )
        .detail("1 to 256 printable characters, without '/' or '\\'")
        .respond());
    }
    Ok((v, id.to_string()))
}

/// `PUT /api/v1/transactions/{vendor}/{id}` with the ZGW trigger message.
async fn register(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    api: web::Data<AdminApi>,
) -> HttpResponse {
    auth!(api, req);
    let (vendor, id) = match transaction_path(&path.0, &path.1) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let trigger: TriggerMessage = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-json",
                "Invalid trigger message",
            )
            .detail(format!(
                "not a trigger message: {:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
            .respond()
        }
    };
    if let Err(params) = trigger.validate() {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "validation-error",
            "Invalid trigger message",
        )
        .invalid(params)
        .respond();
    }
    let reg = Registration {
        vendor,
        transaction_id: id.clone(),
        trigger,
        registered_at: Utc::now(),
    };
    match api.store.register(reg.clone()).await {
        Ok(r) => {
            tracing::info!(vendor = %vendor, transaction_id = %id, released = r.released, "transaction registered");
            if r.released > 0 {
                api.relay_wake.notify_one();
            }
            let status = if r.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            HttpResponse::build(status).json(serde_json::json!({
                "registration": reg,
                "released_events": r.released,
            }))
        }
        Err(e) => store_error(e),
    }
}

async fn registration(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    api: web::Data<AdminApi>,
) -> HttpResponse {
    auth!(api, req);
    let (vendor, id) = match transaction_path(&path.0, &path.1) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match api.store.registration(vendor, &id) {
        Ok(Some(r)) => HttpResponse::Ok().json(r),
        Ok(None) => Problem::not_found("the registration"),
        Err(e) => store_error(e),
    }
}

async fn unregister(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    api: web::Data<AdminApi>,
) -> HttpResponse {
    auth!(api, req);
    let (vendor, id) = match transaction_path(&path.0, &path.1) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match api.store.unregister(vendor, &id).await {
        Ok(true) => HttpResponse::NoContent().finish(),
        Ok(false) => Problem::not_found("the registration"),
        Err(e) => store_error(e),
    }
}

#[derive(Debug, Deserialize)]
struct EventsParams {
    vendor: Option<String>,
    transaction_id: Option<String>,
    state: Option<String>,
    after: Option<Uuid>,
    limit: Option<usize>,
}

async fn events(
    req: HttpRequest,
    params: web::Query<EventsParams>,
    api: web::Data<AdminApi>,
) -> HttpResponse {
    auth!(api, req);
    let p = params.into_inner();
    let vendor = match p.vendor.as_deref().map(Vendor::parse) {
        Some(None) => {
            return Problem::new(StatusCode::BAD_REQUEST, "unknown-vendor", "Unknown vendor")
                .respond()
        }
        Some(v) => v,
        None => None,
    };
    let q = EventQuery {
        vendor,
        transaction_id: p.transaction_id,
        state: p.state,
        after: p.after,
        limit: p.limit,
    };
    match api.store.events(&q) {
        Ok(list) => HttpResponse::Ok().json(serde_json::json!({
            "next_after": list.last().map(|e| e.id),
            "events": list,
        })),
        Err(e) => store_error(e),
    }
}

fn event_id(s: &str) -> Result<Uuid, HttpResponse> {
    Uuid::parse_str(s).map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-id", "Invalid id")
            .detail("ids are UUIDs")
            .respond()
    })
}

async fn event(
    req: HttpRequest,
    path: web::Path<String>,
    api: web::Data<AdminApi>,
) -> HttpResponse {
    auth!(api, req);
    let id = match event_id(&path) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match api.store.event(id) {
        Ok(Some(e)) => HttpResponse::Ok().json(e),
        Ok(None) => Problem::not_found("the event"),
        Err(e) => store_error(e),
    }
}

/// The raw payload of an event or a quarantined callback (same archive).
async fn payload(
    req: HttpRequest,
    path: web::Path<String>,
    api: web::Data<AdminApi>,
) -> HttpResponse {
    auth!(api, req);
    let id = match event_id(&path) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let archive_id = match api.store.event(id) {
        Ok(Some(e)) => e.archive_id,
        Ok(None) => match api.store.quarantined() {
            Ok(q) => match q.into_iter().find(|q| q.id == id) {
                Some(q) => q.archive_id,
                None => return Problem::not_found("the event"),
            },
            Err(e) => return store_error(e),
        },
        Err(e) => return store_error(e),
    };
    match api.store.payload(archive_id) {
        Ok(Some(p)) => HttpResponse::Ok()
            .content_type(p.content_type)
            .body(p.bytes),
        Ok(None) => Problem::not_found("the payload (purged?)"),
        Err(e) => store_error(e),
    }
}

/// An inline signed document of an event, decoded.
async fn document(
    req: HttpRequest,
    path: web::Path<(String, usize)>,
    api: web::Data<AdminApi>,
) -> HttpResponse {
    auth!(api, req);
    let id = match event_id(&path.0) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let index = path.1;
    let e = match api.store.event(id) {
        Ok(Some(e)) => e,
        Ok(None) => return Problem::not_found("the event"),
        Err(e) => return store_error(e),
    };
    let Some(doc) = e.documents.get(index) else {
        return Problem::not_found("the document");
    };
    let p = match api.store.payload(e.archive_id) {
        Ok(Some(p)) => p,
        Ok(None) => return Problem::not_found("the payload (purged?)"),
        Err(e) => return store_error(e),
    };
    let (vendor, surface) = (e.vendor, e.surface.clone());
    let decoded =
        web::block(move || crate::vendors::document(vendor, &surface, &p.bytes, index)).await;
    match decoded {
        Ok(Some((mime, bytes))) => HttpResponse::Ok()
            .content_type(mime.unwrap_or_else(|| ContentType::octet_stream().to_string()))
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"document-{index}\""),
            ))
            .insert_header(("X-Document-Id", sanitize_header(&doc.external_id)))
            .body(bytes),
        _ => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "document-unreadable",
            "The document cannot be decoded",
        )
        .respond(),
    }
}

fn sanitize_header(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(200)
        .collect()
}

async fn dead_letters(req: HttpRequest, api: web::Data<AdminApi>) -> HttpResponse {
    auth!(api, req);
    match api.store.dead_letters() {
        Ok(list) => HttpResponse::Ok().json(serde_json::json!({ "dead_letters": list })),
        Err(e) => store_error(e),
    }
}

async fn replay(
    req: HttpRequest,
    path: web::Path<String>,
    api: web::Data<AdminApi>,
) -> HttpResponse {
    auth!(api, req);
    let id = match event_id(&path) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match api.store.replay(id).await {
        Ok(()) => {
            tracing::info!(event_id = %id, "dead letter replayed");
            api.relay_wake.notify_one();
            HttpResponse::Accepted().json(serde_json::json!({"event_id": id, "relay": "pending"}))
        }
        Err(StoreError::NotFound) => Problem::not_found("the dead letter"),
        Err(e) => store_error(e),
    }
}

async fn quarantine(req: HttpRequest, api: web::Data<AdminApi>) -> HttpResponse {
    auth!(api, req);
    match api.store.quarantined() {
        Ok(list) => HttpResponse::Ok().json(serde_json::json!({ "quarantine": list })),
        Err(e) => store_error(e),
    }
}
