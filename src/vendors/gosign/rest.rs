//! GoSign REST surface (integration methodology ch. 8): the `/status` ping,
//! `/envelopes/{enveExtId}/notify` answered with GoSign's `outcome` contract, and the
//! workability checks.

use std::sync::Arc;

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Serialize;

use super::model;
use super::workability::Workability;
use crate::auth::AuthFailure;
use crate::vendors::receive::{Answers, Callback, Inlet, Parsed, Surface};

pub const SURFACE: &str = "gosign.rest";

/// What the REST routes share.
pub struct RestSurface {
    pub inlet: Inlet,
    pub workability: Arc<Workability>,
}

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

fn retry(message: &str) -> HttpResponse {
    answer(StatusCode::OK, "failed_please_retry", Some(message.into()))
}

/// A refused caller: 401 (GoSign treats it as "retry", which is right for a credential that
/// an operator will fix).
fn unauthorized(failure: AuthFailure, challenge: Option<String>) -> HttpResponse {
    let mut resp = HttpResponse::Unauthorized();
    if let Some(c) = challenge {
        resp.insert_header((header::WWW_AUTHENTICATE, c));
    }
    resp.json(serde_json::json!({"error": failure.code(), "detail": failure.detail()}))
}

/// The `outcome` contract for notify.
pub struct NotifyAnswers;

impl Answers for NotifyAnswers {
    fn unauthorized(&self, failure: AuthFailure, challenge: Option<String>) -> HttpResponse {
        unauthorized(failure, challenge)
    }

    fn too_large(&self, limit_bytes: usize) -> HttpResponse {
        // Not 2xx: GoSign keeps retrying, so nothing is lost while an operator raises the limit.
        answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "failed_please_retry",
            Some(format!(
                "body exceeds the limit of {} MiB",
                limit_bytes / (1024 * 1024)
            )),
        )
    }

    fn incomplete(&self) -> HttpResponse {
        retry("body was not received completely")
    }

    fn recorded(&self) -> HttpResponse {
        answer(StatusCode::OK, "succeeded", None)
    }

    fn discarded(&self, reason: &str) -> HttpResponse {
        answer(
            StatusCode::OK,
            "failed_please_discard",
            Some(reason.to_string()),
        )
    }

    fn not_recorded(&self) -> HttpResponse {
        retry("the callback cannot be recorded now; please retry")
    }

    fn not_quarantined(&self) -> HttpResponse {
        retry("the callback cannot be recorded now")
    }
}

/// `POST {base}/envelopes/{enveExtId}/notify`.
impl Surface for RestSurface {
    type Answers = NotifyAnswers;
    const CONTENT_TYPE: &'static str = "application/json";

    fn inlet(&self) -> &Inlet {
        &self.inlet
    }

    fn answers(&self, _req: &HttpRequest) -> NotifyAnswers {
        NotifyAnswers
    }

    async fn parse(&self, req: &HttpRequest, body: &Bytes, _: &mut NotifyAnswers) -> Parsed {
        // Decoded as the Path extractor decodes it (in full).
        let envelope = web::Path::<String>::extract(req)
            .await
            .map(web::Path::into_inner)
            .unwrap_or_default();
        match model::parse_json(&envelope, body) {
            Ok(n) => Parsed::Callback(Callback {
                dedup_key: n.dedup_key(),
                transaction_id: n.envelope_id,
                outcome: n.outcome,
                occurred_at: n.occurred_at,
                documents: n.documents,
                follow_up: None,
            }),
            Err(rejection) => Parsed::Unprocessable(rejection.to_string()),
        }
    }
}

/// `GET {base}/status`: GoSign's availability ping.
pub async fn status(req: HttpRequest, gs: web::Data<RestSurface>) -> HttpResponse {
    if let Err((f, c)) = gs.inlet.authenticate(&req).await {
        return unauthorized(f, c);
    }
    // Report only the services that are down; without `services` all count as available.
    let mut services = serde_json::Map::new();
    if !gs.inlet.intake.store_writable() {
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
    gs: web::Data<RestSurface>,
) -> HttpResponse {
    if let Err((f, c)) = gs.inlet.authenticate(&req).await {
        return unauthorized(f, c);
    }
    let (envelope, user) = path.into_inner();
    HttpResponse::Ok().json(gs.workability.check(&envelope, &user, None).await)
}

/// `GET {base}/envelopes/{enveExtId}/managers/{userExtId}/for/{originalUserExtId}/status`:
/// the same check while `userExtId` substitutes `originalUserExtId`.
pub async fn workability_substitute(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    gs: web::Data<RestSurface>,
) -> HttpResponse {
    if let Err((f, c)) = gs.inlet.authenticate(&req).await {
        return unauthorized(f, c);
    }
    let (envelope, user, original) = path.into_inner();
    HttpResponse::Ok().json(
        gs.workability
            .check(&envelope, &user, Some(&original))
            .await,
    )
}

/// Unknown routes and methods under the GoSign base answer in GoSign's own shape.
pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type(ContentType::json())
        .body(r#"{"outcome":"failed_please_discard","message":"no such GoSign route"}"#)
}

/// A known route asked with a method it does not serve.
pub fn method_not_allowed(allow: &'static str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow))
        .json(serde_json::json!({
            "error": "method_not_allowed",
            "detail": format!("this route allows {allow} only"),
        }))
}
