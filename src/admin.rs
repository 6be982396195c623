//! signrelay's own API under `/api/v1`: the transaction registry (for the case application)
//! and the admin routes (for operators). Both require authentication.

use std::sync::Arc;

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::SurfaceAuth;
use crate::event::{RelayStateKind, SigningEvent, TransactionId, Vendor};
use crate::problem::{ApiError, ApiResult, Problem};
use crate::registry::{Registration, TriggerMessage};
use crate::relay::worker::Wakers;
use crate::store::{EventQuery, Store, StoreError};
use crate::telemetry::Metrics;
use crate::vendors::Connectors;

/// This API's contract, served at `/openapi/signrelay-api.yaml`.
pub const OPENAPI: &str = include_str!("../openapi/signrelay-api.yaml");

pub struct AdminApi {
    pub auth: SurfaceAuth,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Wakes the job queue after a registration released events or a replay.
    pub wakers: Wakers,
    /// The running vendors (they decode their inline documents).
    pub connectors: Connectors,
    /// Registry bodies are small; bounded like every other body.
    pub body: crate::http::body::BodyLimits,
}

pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AdminApi>) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(state)
            // A path segment that does not parse (e.g. a document index of 2^64) is a problem
            // like any other, not actix's plain-text echo of the input.
            .app_data(
                web::PathConfig::default()
                    .error_handler(|_, _| ApiError::not_found("this route").into()),
            )
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
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::not_found("this route"))
            })),
    );
}

async fn authenticate(api: &AdminApi, req: &HttpRequest) -> Result<(), ApiError> {
    api.auth
        .authenticate(req, "admin", &api.metrics)
        .await
        .map(|_| ())
        .map_err(|f| {
            ApiError::unauthorized(
                Problem::new(StatusCode::UNAUTHORIZED, f.code(), "Unauthorized").detail(f.detail()),
                api.auth.challenge(f),
            )
        })
}

/// The vendors' names, as a sentence lists them.
fn vendor_names() -> String {
    let names: Vec<&str> = Vendor::ALL.iter().map(|v| v.as_str()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

fn transaction_path(
    api: &AdminApi,
    vendor: &str,
    id: &str,
) -> Result<(Vendor, TransactionId), ApiError> {
    let v = Vendor::parse(vendor).ok_or_else(|| {
        ApiError::from(
            Problem::new(StatusCode::NOT_FOUND, "unknown-vendor", "Unknown vendor")
                .detail(format!("vendor must be {}", vendor_names())),
        )
    })?;
    // The vendor's own spelling of its ids, when it runs here.
    let parsed = match api.connectors.get(v) {
        Some(c) => c.transaction_id(id),
        None => TransactionId::parse(id).map_err(|e| e.to_string()),
    };
    let id = parsed.map_err(|e| {
        ApiError::from(
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-transaction-id",
                "Invalid transaction id",
            )
            .detail(e.to_string()),
        )
    })?;
    Ok((v, id))
}

/// A trigger message serde refused. Missing fields are named; other messages may quote input
/// (personal data), so only their position is given.
fn trigger_error(e: serde_json::Error) -> ApiError {
    let msg = e.to_string();
    let missing = msg
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .filter(|_| e.classify() == serde_json::error::Category::Data);
    let problem = Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-json",
        "Invalid trigger message",
    );
    match missing {
        Some(field) => problem
            .detail(format!("field {field} is required"))
            .invalid(vec![crate::registry::InvalidParam {
                name: field.to_string(),
                code: "required",
                reason: format!("{field} ontbreekt"),
            }])
            .into(),
        None => problem
            .detail(format!(
                "not a trigger message: {:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
            .into(),
    }
}

fn parse_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-id", "Invalid id")
            .detail("ids are UUIDs")
            .into()
    })
}

async fn load_event(api: &AdminApi, id: Uuid) -> Result<SigningEvent, ApiError> {
    api.store
        .event(id)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found("the event"))
}

/// `PUT /api/v1/transactions/{vendor}/{id}` with the ZGW trigger message.
async fn register(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    api: web::Data<AdminApi>,
) -> ApiResult {
    authenticate(&api, &req).await?;
    let (vendor, id) = transaction_path(&api, &path.0, &path.1)?;
    let body = api.body.read(&req, payload).await.map_err(|e| match e {
        crate::http::body::BodyError::TooLarge { limit } => ApiError::from(
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Body too large")
                .detail(format!("a trigger message is at most {} KiB", limit / 1024)),
        ),
        // (Unavailable only comes of spooling, which the registry's small bodies never do.)
        crate::http::body::BodyError::Incomplete | crate::http::body::BodyError::Unavailable => {
            ApiError::from(Problem::new(
                StatusCode::BAD_REQUEST,
                "incomplete-body",
                "The body was not received completely",
            ))
        }
    })?;
    let body = body.bytes;
    let trigger: TriggerMessage = serde_json::from_slice(&body).map_err(trigger_error)?;
    trigger.validate().map_err(|params| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "validation-error",
            "Invalid trigger message",
        )
        .invalid(params)
    })?;
    let reg = Registration {
        vendor,
        transaction_id: id.clone(),
        trigger,
        registered_at: Utc::now(),
    };
    let r = api
        .store
        .register(reg.clone())
        .await
        .map_err(ApiError::store)?;
    crate::telemetry::note(|n| {
        n.result = Some("registered");
        n.vendor = Some(vendor.as_str());
        n.transaction_id = Some(id.to_string());
        n.released = Some(r.released);
    });
    tracing::debug!(vendor = %vendor, transaction_id = %id, released = r.released, "transaction registered");
    if r.released > 0 {
        api.wakers.wake_all();
    }
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(serde_json::json!({
        "registration": reg,
        "released_events": r.released,
    })))
}

async fn registration(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    api: web::Data<AdminApi>,
) -> ApiResult {
    authenticate(&api, &req).await?;
    let (vendor, id) = transaction_path(&api, &path.0, &path.1)?;
    let reg = api
        .store
        .registration(vendor, &id)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found("the registration"))?;
    Ok(HttpResponse::Ok().json(reg))
}

async fn unregister(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    api: web::Data<AdminApi>,
) -> ApiResult {
    authenticate(&api, &req).await?;
    let (vendor, id) = transaction_path(&api, &path.0, &path.1)?;
    if api
        .store
        .unregister(vendor, &id)
        .await
        .map_err(ApiError::store)?
    {
        tracing::info!(vendor = %vendor, transaction_id = %id, "transaction withdrawn");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found("the registration"))
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

async fn events(req: HttpRequest, api: web::Data<AdminApi>) -> ApiResult {
    authenticate(&api, &req).await?;
    // Parsed after authentication, and refused as a problem.
    let p = web::Query::<EventsParams>::from_query(req.query_string())
        .map_err(|e| {
            ApiError::from(
                Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query")
                    .detail(e.to_string()),
            )
        })?
        .into_inner();
    if p.limit.is_some_and(|l| l == 0 || l > 1000) {
        return Err(
            Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query")
                .detail("limit must be between 1 and 1000")
                .into(),
        );
    }
    let vendor = match p.vendor.as_deref() {
        Some(v) => Some(Vendor::parse(v).ok_or_else(|| {
            ApiError::from(Problem::new(
                StatusCode::BAD_REQUEST,
                "unknown-vendor",
                "Unknown vendor",
            ))
        })?),
        None => None,
    };
    // A state or transaction id that cannot exist matches no event.
    let nothing =
        || Ok(HttpResponse::Ok().json(serde_json::json!({"next_after": null, "events": []})));
    let state = match p.state.as_deref().map(RelayStateKind::parse) {
        Some(None) => return nothing(),
        Some(s) => s,
        None => None,
    };
    let transaction_id = match p.transaction_id.as_deref().map(TransactionId::parse) {
        Some(Err(_)) => return nothing(),
        Some(Ok(t)) => Some(t),
        None => None,
    };
    let q = EventQuery {
        vendor,
        transaction_id,
        state,
        after: p.after,
        limit: p.limit,
    };
    let list = api.store.events(&q).await.map_err(ApiError::store)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "next_after": list.last().map(|e| e.id),
        "events": list,
    })))
}

async fn event(req: HttpRequest, path: web::Path<String>, api: web::Data<AdminApi>) -> ApiResult {
    authenticate(&api, &req).await?;
    let e = load_event(&api, parse_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(e))
}

/// The raw payload of an event or a quarantined callback (same archive).
async fn payload(req: HttpRequest, path: web::Path<String>, api: web::Data<AdminApi>) -> ApiResult {
    authenticate(&api, &req).await?;
    let id = parse_id(&path)?;
    let archive_id = match api.store.event(id).await.map_err(ApiError::store)? {
        Some(e) => e.archive_id,
        None => api
            .store
            .quarantine_entry(id)
            .await
            .map_err(ApiError::store)?
            .map(|q| q.archive_id)
            .ok_or_else(|| ApiError::not_found("the event"))?,
    };
    let p = api
        .store
        .payload(archive_id)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found("the payload (purged?)"))?;
    Ok(HttpResponse::Ok()
        .content_type(p.content_type)
        .body(p.bytes))
}

/// An inline signed document of an event, decoded.
async fn document(
    req: HttpRequest,
    path: web::Path<(String, usize)>,
    api: web::Data<AdminApi>,
) -> ApiResult {
    authenticate(&api, &req).await?;
    let (id, index) = (parse_id(&path.0)?, path.1);
    let e = load_event(&api, id).await?;
    let doc_id = e
        .documents
        .get(index)
        .ok_or_else(|| ApiError::not_found("the document"))?
        .external_id
        .clone();
    let p = api
        .store
        .payload(e.archive_id)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found("the payload (purged?)"))?;
    let connector = api.connectors.get(e.vendor).cloned();
    let surface = e.surface;
    // Decoding tens of MiB of base64 is CPU work: off the async workers.
    let decoded = web::block(move || connector?.document(&surface, &p.bytes, index)).await;
    let Ok(Some(doc)) = decoded else {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "document-unreadable",
            "The document cannot be decoded",
        )
        .into());
    };
    Ok(HttpResponse::Ok()
        .content_type(
            doc.mime_type
                .unwrap_or_else(|| ContentType::octet_stream().to_string()),
        )
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"document-{index}\""),
        ))
        .insert_header(("X-Document-Id", header_safe(&doc_id)))
        .body(doc.bytes))
}

fn header_safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(200)
        .collect()
}

async fn dead_letters(req: HttpRequest, api: web::Data<AdminApi>) -> ApiResult {
    authenticate(&api, &req).await?;
    let list: Vec<_> = api
        .store
        .dead_letters()
        .await
        .map_err(ApiError::store)?
        .iter()
        .map(|d| d.view())
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "dead_letters": list })))
}

async fn replay(req: HttpRequest, path: web::Path<String>, api: web::Data<AdminApi>) -> ApiResult {
    authenticate(&api, &req).await?;
    let id = parse_id(&path)?;
    match api.store.replay(id).await {
        Ok(job) => {
            tracing::info!(id = %id, task = %job.task.label(), "dead letter replayed");
            api.wakers.wake(job.party());
            // An event's job is named by the event (its id), any other job by its own id.
            let body = match job.task.event_id() {
                Some(event_id) => serde_json::json!({"event_id": event_id, "relay": "pending"}),
                None => serde_json::json!({"id": job.id, "relay": "pending"}),
            };
            Ok(HttpResponse::Accepted().json(body))
        }
        Err(StoreError::NotFound) => Err(ApiError::not_found("the dead letter")),
        Err(e) => Err(ApiError::store(e)),
    }
}

async fn quarantine(req: HttpRequest, api: web::Data<AdminApi>) -> ApiResult {
    authenticate(&api, &req).await?;
    let list = api.store.quarantined().await.map_err(ApiError::store)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "quarantine": list })))
}
