//! GoSign REST surface (integration methodology ch. 8): the `/status` ping and
//! `/envelopes/{enveExtId}/notify`, answered with GoSign's `outcome` contract.

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::model;
use super::GosignRest;
use crate::event::{dedup_key, NewEvent, Vendor};
use crate::store::RawPayload;
use crate::vendors::body::BodyError;

pub const SURFACE: &str = "gosign.rest";

/// GoSign's answer contract: always 2xx; `outcome` tells GoSign whether to retry.
#[derive(Debug, Serialize)]
struct NotifyAnswer<'a> {
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

fn answer(status: StatusCode, outcome: &str, message: Option<String>) -> HttpResponse {
    HttpResponse::build(status).json(NotifyAnswer { outcome, message })
}

fn succeeded() -> HttpResponse {
    answer(StatusCode::OK, "succeeded", None)
}

fn retry(message: &str) -> HttpResponse {
    answer(StatusCode::OK, "failed_please_retry", Some(message.into()))
}

fn discard(message: String) -> HttpResponse {
    answer(StatusCode::OK, "failed_please_discard", Some(message))
}

/// A refused caller: 401 (GoSign treats it as "retry", which is right for a credential that
/// an operator will fix).
fn unauthorized(gs: &GosignRest, failure: crate::auth::AuthFailure) -> HttpResponse {
    gs.intake
        .metrics
        .callback(Vendor::Gosign.as_str(), SURFACE, "unauthorized");
    let mut resp = HttpResponse::Unauthorized();
    if let Some(c) = gs.auth.challenge(failure) {
        resp.insert_header((header::WWW_AUTHENTICATE, c));
    }
    resp.json(serde_json::json!({"error": failure.code(), "detail": failure.detail()}))
}

/// `GET {base}/status`: GoSign's availability ping.
pub async fn status(req: HttpRequest, gs: web::Data<GosignRest>) -> HttpResponse {
    if let Err(f) = gs
        .auth
        .authenticate(&req, SURFACE, &gs.intake.metrics)
        .await
    {
        return unauthorized(&gs, f);
    }
    // Report only the services that are down; without `services` all count as available.
    let mut services = serde_json::Map::new();
    if !gs.intake.health.store_ok() {
        // Notifications cannot be recorded now.
        services.insert(
            "workNotification".into(),
            serde_json::json!({"online": true, "available": false}),
        );
    }
    if !gs.workability.backend_ok() {
        // The workability policy's backend (ZRC, case application) failed its last call.
        services.insert(
            "getStatus".into(),
            serde_json::json!({"online": true, "available": false}),
        );
    }
    if services.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({"online": true}))
    } else {
        HttpResponse::Ok().json(serde_json::json!({"online": true, "services": services}))
    }
}

/// `GET {base}/envelopes/{enveExtId}/managers/{userExtId}/status` (ch. 8.4).
pub async fn workability(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    gs: web::Data<GosignRest>,
) -> HttpResponse {
    if let Err(f) = gs
        .auth
        .authenticate(&req, SURFACE, &gs.intake.metrics)
        .await
    {
        return unauthorized(&gs, f);
    }
    let (envelope, user) = path.into_inner();
    HttpResponse::Ok().json(gs.workability.check(&envelope, &user, None).await)
}

/// `GET {base}/envelopes/{enveExtId}/managers/{userExtId}/for/{originalUserExtId}/status`:
/// the same check while `userExtId` substitutes `originalUserExtId`.
pub async fn workability_substitute(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    gs: web::Data<GosignRest>,
) -> HttpResponse {
    if let Err(f) = gs
        .auth
        .authenticate(&req, SURFACE, &gs.intake.metrics)
        .await
    {
        return unauthorized(&gs, f);
    }
    let (envelope, user, original) = path.into_inner();
    HttpResponse::Ok().json(
        gs.workability
            .check(&envelope, &user, Some(&original))
            .await,
    )
}

/// `POST {base}/envelopes/{enveExtId}/notify`: parse, authenticate, normalize, record.
pub async fn notify(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    gs: web::Data<GosignRest>,
) -> HttpResponse {
    let caller = match gs
        .auth
        .authenticate(&req, SURFACE, &gs.intake.metrics)
        .await
    {
        Ok(c) => c,
        Err(f) => return unauthorized(&gs, f),
    };
    let body = match gs.body.read(&req, payload).await {
        Ok(b) => b,
        Err(BodyError::TooLarge { limit }) => {
            gs.intake
                .metrics
                .callback(Vendor::Gosign.as_str(), SURFACE, "too_large");
            // Not 2xx: GoSign keeps retrying, so nothing is lost while an operator raises the limit.
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "failed_please_retry",
                Some(format!(
                    "body exceeds the limit of {} MiB",
                    limit / (1024 * 1024)
                )),
            );
        }
        Err(BodyError::Incomplete) => return retry("body was not received completely"),
    };
    let raw = RawPayload {
        content_type: req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string(),
        bytes: body.bytes.clone(),
    };
    let envelope = path.into_inner();
    let notification = match model::parse_json(&envelope, &body.bytes) {
        Ok(n) => n,
        Err(rejection) => {
            let reason = rejection.to_string();
            let key = dedup_key(&[SURFACE.as_bytes(), envelope.as_bytes(), &raw.bytes]);
            return match gs
                .intake
                .quarantine(Vendor::Gosign, SURFACE, reason.clone(), caller, raw, key)
                .await
            {
                Ok(_) => discard(reason),
                Err(_) => retry("the callback cannot be recorded now"),
            };
        }
    };
    let event = NewEvent {
        vendor: Vendor::Gosign,
        dedup_key: notification.dedup_key(),
        transaction_id: notification.envelope_id,
        outcome: notification.outcome,
        occurred_at: notification.occurred_at,
        surface: SURFACE,
        documents: notification.documents,
        caller,
    };
    match gs.intake.record(event, raw).await {
        Ok(_) => succeeded(),
        Err(_) => retry("the callback cannot be recorded now; please retry"),
    }
}

/// Unknown routes and methods under the GoSign base answer in GoSign's own shape.
pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type(ContentType::json())
        .body(r#"{"outcome":"failed_please_discard","message":"no such GoSign route"}"#)
}
