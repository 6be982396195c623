//! RFC 9457 `application/problem+json` answers for signrelay's own API.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

use crate::registry::InvalidParam;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid_params: Vec<InvalidParam>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str) -> Problem {
        Problem {
            kind: format!("urn:signrelay:problem:{kind}"),
            title: title.into(),
            status: status.as_u16(),
            detail: None,
            invalid_params: Vec::new(),
        }
    }

    pub fn detail(mut self, d: impl Into<String>) -> Problem {
        self.detail = Some(d.into());
        self
    }

    pub fn invalid(mut self, params: Vec<InvalidParam>) -> Problem {
        self.invalid_params = params;
        self
    }

    pub fn respond(self) -> HttpResponse {
        HttpResponse::build(StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST))
            .content_type("application/problem+json")
            .json(self)
    }

    pub fn not_found(what: &str) -> HttpResponse {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .detail(format!("{what} does not exist"))
            .respond()
    }

    pub fn store_unavailable() -> HttpResponse {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            "The store cannot be written now",
        )
        .respond()
    }
}
