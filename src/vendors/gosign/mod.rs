//! GoSign (InfoCert): REST callbacks (ch. 8). The shared model normalizes for every transport.

pub mod model;
pub mod rest;

use actix_web::web;

use crate::auth::SurfaceAuth;
use crate::intake::Intake;
use crate::vendors::body::BodyLimits;

/// What the GoSign REST handlers share.
pub struct GosignRest {
    pub auth: SurfaceAuth,
    pub body: BodyLimits,
    pub intake: Intake,
}

/// Mounts the REST surface at `base_path`.
pub fn configure_rest(cfg: &mut web::ServiceConfig, base_path: &str, state: web::Data<GosignRest>) {
    cfg.service(
        web::scope(base_path)
            .app_data(state)
            .route("/status", web::get().to(rest::status))
            .route(
                "/envelopes/{enveExtId}/notify",
                web::post().to(rest::notify),
            )
            .default_service(web::to(rest::not_found)),
    );
}

/// The `index`-th inline document of a stored GoSign payload.
pub fn document(surface: &str, body: &[u8], index: usize) -> Option<(Option<String>, Vec<u8>)> {
    match surface {
        rest::SURFACE => model::json_document(body, index),
        _ => None,
    }
}
