//! GoSign REST surface (integration methodology ch. 8): the `/status` ping and
//! `/envelopes/{enveExtId}/notify`, answered with GoSign's `outcome` contract.

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::model;
use super::GosignRest;
use crate::event::{NewEvent, Vendor};
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
    gs.intake
        .metrics
        .auth_failures
        .with_label_values(&[SURFACE, failure.code()])
        .inc();
    let mut resp = HttpResponse::Unauthorized();
    if let Some(c) = gs.auth.challenge() {
        resp.insert_header((header::WWW_AUTHENTICATE, c));
    }
    resp.json(serde_json::json!({"error": failure.code(), "detail": failure.detail()}))
}

/// `GET {base}/status`: GoSign's availability ping.
pub async fn status(req: HttpRequest, gs: web::Data<GosignRest>) -> HttpResponse {
    if let Err(f) = gs.auth.check(&req) {
        return unauthorized(&gs, f);
    }
    if gs.intake.health.store_ok() {
        HttpResponse::Ok().json(serde_json::json!({"online": true}))
    } else {
        // Notifications cannot be recorded: tell GoSign that service is unavailable for now.
        HttpResponse::Ok().json(serde_json::json!({
            "online": true,
            "services": {"workNotification": {"online": true, "available": false}}
        }))
    }
}

/// `POST {base}/envelopes/{enveExtId}/notify`: parse, authenticate, normalize, record.
pub async fn notify(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    gs: web::Data<GosignRest>,
) -> HttpResponse {
    let caller = match gs.auth.check(&req) {
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
            return match gs
                .intake
                .quarantine(Vendor::Gosign, SURFACE, reason.clone(), caller, raw)
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
