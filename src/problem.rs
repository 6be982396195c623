//! RFC 9457 `application/problem+json` answers for signrelay's own API, and what kind of
//! problem a party answered.

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
}

/// A problem as a handler error, so handlers can use `?`. Boxed: errors stay small.
#[derive(Debug)]
pub struct ApiError {
    problem: Box<Problem>,
    /// `WWW-Authenticate` challenge for a 401.
    challenge: Option<String>,
}

impl ApiError {
    pub fn unauthorized(problem: Problem, challenge: Option<String>) -> ApiError {
        ApiError {
            problem: Box::new(problem),
            challenge,
        }
    }

    pub fn not_found(what: &str) -> ApiError {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .detail(format!("{what} does not exist"))
            .into()
    }

    pub fn store(e: crate::store::StoreError) -> ApiError {
        match e {
            crate::store::StoreError::NotFound => ApiError::not_found("the resource"),
            other => {
                tracing::error!(error = %other, "store error in the API");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                    "The store cannot be used now",
                )
                .into()
            }
        }
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        ApiError {
            problem: Box::new(p),
            challenge: None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.problem.status, self.problem.title)
    }
}

impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::BAD_REQUEST)
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        if let Some(c) = &self.challenge {
            r.insert_header((actix_web::http::header::WWW_AUTHENTICATE, c.as_str()));
        }
        r.content_type("application/problem+json")
            .json(&*self.problem)
    }
}

pub type ApiResult = Result<HttpResponse, ApiError>;

/// What kind of problem a party's answer is: its `code` and its field errors' names and codes
/// (ZGW's `invalidParams`), without the words or the `instance` that change with every answer;
/// `None` when the body is no problem document. Tells a repeated refusal from a new one.
pub fn kind_of(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let mut kind = v.get("code")?.as_str()?.to_string();
    for p in v
        .get("invalidParams")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        let field = |k: &str| p.get(k).and_then(|x| x.as_str()).unwrap_or("");
        kind.push_str(&format!(" {}:{}", field("name"), field("code")));
    }
    Some(kind)
}

#[cfg(test)]
mod tests {
    #[test]
    fn kind_of_leaves_out_words_and_instance() {
        let a = r#"{"code":"invalid","instance":"urn:uuid:1","detail":"x","invalidParams":[{"name":"documentatieLink","code":"bad-url","reason":"x"}]}"#;
        let b = r#"{"code":"invalid","instance":"urn:uuid:2","detail":"y","invalidParams":[{"name":"documentatieLink","code":"bad-url","reason":"y"}]}"#;
        assert_eq!(super::kind_of(a), super::kind_of(b));
        assert_eq!(
            super::kind_of(a).as_deref(),
            Some("invalid documentatieLink:bad-url")
        );
        assert_eq!(super::kind_of("Forbidden"), None);
    }
}
