//! GoSign (InfoCert): REST callbacks (ch. 8), SOAP callbacks (ch. 7), LegalBus OperationDone
//! (ch. 11) and workability checks (ch. 7.2, 8.4). The shared model normalizes for every
//! transport; workability is one policy for REST and SOAP.

pub mod legalbus;
pub mod model;
pub mod rest;
pub mod soap;
pub mod workability;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::SurfaceAuth;
use crate::intake::Intake;
use crate::vendors::body::BodyLimits;
use workability::Workability;

/// What the GoSign REST handlers share.
pub struct GosignRest {
    pub auth: SurfaceAuth,
    pub body: BodyLimits,
    pub intake: Intake,
    pub workability: Arc<Workability>,
}

/// What the GoSign SOAP handlers share.
pub struct GosignSoap {
    pub auth: SurfaceAuth,
    pub body: BodyLimits,
    pub intake: Intake,
    pub workability: Arc<Workability>,
    /// The WSDLs with their service addresses set to the public URL.
    pub notifications_wsdl: String,
    pub events_wsdl: String,
}

/// The WSDLs as shipped; their `soap:address` is rewritten to the configured public URL.
pub const NOTIFICATIONS_WSDL: &str = include_str!("../../../wsdl/WorkNotificationsService.wsdl");
pub const EVENTS_WSDL: &str = include_str!("../../../wsdl/EvelopeEventService.wsdl");
/// The service addresses written in the shipped WSDLs, replaced when served.
pub const NOTIFICATIONS_ADDRESS: &str = "http://localhost:8080/gosign/soap";
pub const EVENTS_ADDRESS: &str = "http://localhost:8080/gosign/soap/events";

/// A shipped WSDL whose `address` (one of the two above) now names `public_url` + `path`.
pub fn wsdl_for(template: &str, address: &str, public_url: &str, path: &str) -> String {
    let location = |a: &str| format!("location=\"{a}\"");
    template.replace(
        &location(address),
        &location(&format!("{}{path}", public_url.trim_end_matches('/'))),
    )
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
            .route(
                "/envelopes/{enveExtId}/managers/{userExtId}/status",
                web::get().to(rest::workability),
            )
            .route(
                "/envelopes/{enveExtId}/managers/{userExtId}/for/{originalUserExtId}/status",
                web::get().to(rest::workability_substitute),
            )
            .default_service(web::to(rest::not_found)),
    );
}

/// Mounts the SOAP services: WorkNotificationsService at `base_path`, EvelopeEventService at
/// `events_path`; `GET …?wsdl` serves each WSDL.
pub fn configure_soap(
    cfg: &mut web::ServiceConfig,
    base_path: &str,
    events_path: &str,
    state: web::Data<GosignSoap>,
) {
    cfg.service(
        web::resource(base_path)
            .app_data(state.clone())
            .route(web::post().to(soap::endpoint))
            .route(
                web::get().to(|req: HttpRequest, gs: web::Data<GosignSoap>| async move {
                    serve_wsdl(&req, &gs.notifications_wsdl)
                }),
            ),
    );
    cfg.service(
        web::resource(events_path)
            .app_data(state)
            .route(web::post().to(legalbus::endpoint))
            .route(
                web::get().to(|req: HttpRequest, gs: web::Data<GosignSoap>| async move {
                    serve_wsdl(&req, &gs.events_wsdl)
                }),
            ),
    );
}

fn serve_wsdl(req: &HttpRequest, wsdl: &str) -> HttpResponse {
    let asks_wsdl = req
        .query_string()
        .split('&')
        .any(|p| p.eq_ignore_ascii_case("wsdl") || p.to_ascii_lowercase().starts_with("wsdl="));
    if asks_wsdl {
        HttpResponse::Ok()
            .content_type("text/xml; charset=utf-8")
            .body(wsdl.to_string())
    } else {
        HttpResponse::MethodNotAllowed()
            .insert_header(("Allow", "POST"))
            .body("POST a SOAP envelope, or GET ?wsdl")
    }
}

/// The `index`-th inline document of a stored GoSign payload.
pub fn document(surface: &str, body: &[u8], index: usize) -> Option<(Option<String>, Vec<u8>)> {
    match surface {
        rest::SURFACE => model::json_document(body, index),
        soap::SURFACE => soap::xml_document(body, index),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_wsdls_name_the_configured_address() {
        let w = wsdl_for(
            NOTIFICATIONS_WSDL,
            NOTIFICATIONS_ADDRESS,
            "https://sr.example.nl/",
            "/cb/soap",
        );
        assert!(w.contains(r#"location="https://sr.example.nl/cb/soap""#));
        assert!(!w.contains("localhost:8080"));
        let e = wsdl_for(
            EVENTS_WSDL,
            EVENTS_ADDRESS,
            "https://sr.example.nl",
            "/cb/events",
        );
        assert!(e.contains(r#"location="https://sr.example.nl/cb/events""#));
        assert!(!e.contains("localhost:8080"));
    }
}
