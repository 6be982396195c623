//! One log line per request. Paths are logged as their route's template
//! (`/envelopes/{enveExtId}/managers/{userExtId}/status`), never as sent: segments name
//! people (user ids, e-mail addresses) and tokens travel in paths and queries. What the
//! request did rides on the same line (`crate::telemetry::note`).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use tracing::Instrument;

/// What is logged for a path that matches no route.
pub const UNMATCHED: &str = "(no route)";

/// A span per request with a request id (taken from `X-Request-Id` when sane), echoed back.
pub async fn request_span(
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
    let route = req.match_pattern();
    let path = route.as_deref().unwrap_or(UNMATCHED);
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
            verdict = note.verdict,
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
