//! GoSign (InfoCert): REST callbacks (ch. 8), SOAP callbacks (ch. 7), LegalBus OperationDone
//! (ch. 11) and workability checks (ch. 7.2, 8.4). The shared model normalizes for every
//! transport; workability is one policy for REST and SOAP.

pub mod config;
pub mod legalbus;
pub mod model;
pub mod rest;
pub mod signed;
pub mod soap;
pub mod workability;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::AuthConfig;
use crate::event::Vendor;
use crate::vendors::seam::{Connector, InlineDocument, Settings, VendorSection, Wiring};
use config::{GosignConfig, WorkabilityPolicy};
use workability::Workability;

impl VendorSection for GosignConfig {
    fn vendor(&self) -> Vendor {
        Vendor::Gosign
    }

    fn validate(&self, settings: &Settings) -> Vec<String> {
        GosignConfig::validate(self, settings)
    }

    fn redacted(&self) -> serde_json::Value {
        GosignConfig::redacted(self)
    }

    fn auth_surfaces(&self) -> Vec<(&'static str, &AuthConfig)> {
        let mut all = Vec::new();
        if let (true, Some(a)) = (self.rest.enabled, &self.rest.auth) {
            all.push((rest::SURFACE, a));
        }
        if let (true, Some(a)) = (self.soap.enabled, &self.soap.auth) {
            all.push((soap::SURFACE, a));
        }
        all
    }

    fn documents(&self) -> crate::documents::DocumentsMode {
        self.documents
    }

    fn has_signed_documents(&self) -> bool {
        true
    }

    fn build(&self, wiring: &mut Wiring<'_>) -> anyhow::Result<Option<Arc<dyn Connector>>> {
        Gosign::build(self, wiring)
    }
}

/// GoSign, running: the surfaces that are enabled.
pub struct Gosign {
    rest: Option<(String, web::Data<rest::RestSurface>)>,
    soap: Option<(
        String,
        String,
        web::Data<soap::SoapSurface>,
        web::Data<legalbus::LegalBus>,
    )>,
    signed: Arc<signed::GosignSigned>,
}

impl Gosign {
    pub fn build(
        cfg: &GosignConfig,
        wiring: &mut Wiring<'_>,
    ) -> anyhow::Result<Option<Arc<dyn Connector>>> {
        let workability = Arc::new(build_workability(cfg, wiring)?);
        let rest = match (cfg.rest.enabled, &cfg.rest.auth) {
            (true, Some(auth)) => {
                let body =
                    wiring.body_limits(cfg.rest.body_limit_mib, cfg.rest.large_bodies_in_flight);
                Some((
                    cfg.rest.base_path.clone(),
                    web::Data::new(rest::RestSurface {
                        inlet: wiring.inlet(Vendor::Gosign, rest::SURFACE, auth, body)?,
                        workability: workability.clone(),
                    }),
                ))
            }
            _ => None,
        };
        let soap = match (cfg.soap.enabled, &cfg.soap.auth) {
            (true, Some(auth)) => {
                let s = &cfg.soap;
                let public = &wiring.settings.public_url;
                // One body budget and one auth for both SOAP services.
                let body = wiring.body_limits(s.body_limit_mib, s.large_bodies_in_flight);
                let work = wiring.inlet(Vendor::Gosign, soap::SURFACE, auth, body.clone())?;
                let events = wiring.inlet(Vendor::Gosign, legalbus::SURFACE, auth, body)?;
                Some((
                    s.base_path.clone(),
                    s.events_path.clone(),
                    web::Data::new(soap::SoapSurface {
                        inlet: work,
                        workability: workability.clone(),
                        wsdl: wsdl_for(
                            NOTIFICATIONS_WSDL,
                            NOTIFICATIONS_ADDRESS,
                            public,
                            &s.base_path,
                        ),
                    }),
                    web::Data::new(legalbus::LegalBus {
                        inlet: events,
                        wsdl: wsdl_for(EVENTS_WSDL, EVENTS_ADDRESS, public, &s.events_path),
                    }),
                ))
            }
            _ => None,
        };
        if rest.is_none() && soap.is_none() {
            return Ok(None);
        }
        let signed = Arc::new(signed::GosignSigned {
            store: wiring.store.clone(),
        });
        Ok(Some(Arc::new(Gosign { rest, soap, signed })))
    }
}

/// The workability policy, with ZRC credentials (default: the NRC's) when it needs them.
fn build_workability(cfg: &GosignConfig, wiring: &Wiring<'_>) -> anyhow::Result<Workability> {
    let w = &cfg.workability;
    let zrc_jwt = if w.policy == WorkabilityPolicy::ZaakOpen {
        let identity = wiring
            .settings
            .zgw
            .with_client(w.zrc_client_id.as_deref(), w.zrc_secret.as_ref());
        Some(identity.jwt()?)
    } else {
        None
    };
    Workability::new(w.clone(), wiring.store.clone(), &wiring.metrics, zrc_jwt)
}

impl Connector for Gosign {
    fn vendor(&self) -> Vendor {
        Vendor::Gosign
    }

    fn mount(&self, cfg: &mut web::ServiceConfig) {
        if let Some((base, state)) = &self.rest {
            configure_rest(cfg, base, state.clone());
        }
        if let Some((base, events, work, legalbus)) = &self.soap {
            configure_soap(cfg, base, events, work.clone(), legalbus.clone());
        }
    }

    fn document(&self, surface: &str, body: &[u8], index: usize) -> Option<InlineDocument> {
        let (mime_type, bytes) = match surface {
            rest::SURFACE => model::json_document(body, index),
            soap::SURFACE => soap::xml_document(body, index),
            _ => None,
        }?;
        Some(InlineDocument { mime_type, bytes })
    }

    fn signed_documents(&self) -> Option<Arc<dyn crate::documents::SignedSource>> {
        Some(self.signed.clone())
    }

    fn contracts(&self) -> Vec<(&'static str, &'static str)> {
        vec![("gosign-rest.yaml", REST_OPENAPI)]
    }
}

/// GoSign's REST surface as signrelay serves it (GoSign publishes no machine-readable one).
pub const REST_OPENAPI: &str = include_str!("../../../openapi/gosign-rest.yaml");

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

/// Mounts the REST surface at `base_path`. A route asked with a method it does not serve
/// answers 405 with `Allow` (before authentication: it says nothing about the caller); an
/// unknown route answers 404 in GoSign's shape.
fn configure_rest(
    cfg: &mut web::ServiceConfig,
    base_path: &str,
    state: web::Data<rest::RestSurface>,
) {
    let get = |path: &str, handler| {
        web::resource(path)
            .route(handler)
            .default_service(only("GET"))
    };
    cfg.service(
        web::scope(base_path)
            .app_data(state)
            .service(get("/status", web::get().to(rest::status)))
            .service(
                web::resource("/envelopes/{enveExtId}/notify")
                    .route(web::post().to(crate::vendors::receive::receive::<rest::RestSurface>))
                    .default_service(only("POST")),
            )
            .service(get(
                "/envelopes/{enveExtId}/managers/{userExtId}/status",
                web::get().to(rest::workability),
            ))
            .service(get(
                "/envelopes/{enveExtId}/managers/{userExtId}/for/{originalUserExtId}/status",
                web::get().to(rest::workability_substitute),
            ))
            .default_service(web::to(rest::not_found)),
    );
}

/// The fallback of a resource that serves only the methods in `allow`: 405 with `Allow`.
fn only(allow: &'static str) -> actix_web::Route {
    web::to(move || async move { rest::method_not_allowed(allow) })
}

/// Mounts the SOAP services: WorkNotificationsService at `base_path`, EvelopeEventService at
/// `events_path`; `GET …?wsdl` serves each WSDL.
fn configure_soap(
    cfg: &mut web::ServiceConfig,
    base_path: &str,
    events_path: &str,
    work: web::Data<soap::SoapSurface>,
    events: web::Data<legalbus::LegalBus>,
) {
    cfg.service(
        web::resource(base_path)
            .app_data(work)
            .route(web::post().to(crate::vendors::receive::receive::<soap::SoapSurface>))
            .route(web::get().to(
                |req: HttpRequest, s: web::Data<soap::SoapSurface>| async move {
                    serve_wsdl(&req, &s.wsdl)
                },
            ))
            .default_service(only("GET, POST")),
    );
    cfg.service(
        web::resource(events_path)
            .app_data(events)
            .route(web::post().to(crate::vendors::receive::receive::<legalbus::LegalBus>))
            .route(web::get().to(
                |req: HttpRequest, s: web::Data<legalbus::LegalBus>| async move {
                    serve_wsdl(&req, &s.wsdl)
                },
            ))
            .default_service(only("GET, POST")),
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
