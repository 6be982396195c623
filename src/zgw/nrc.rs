//! The NRC client: posts notifications and makes sure the kanaal exists.
//!
//! Real NRCs differ: any 2xx is success (Open Notificaties answers 201 where the spec says
//! 200), auth errors may come as 403, and an `aanmaakdatum` or `iat` in the NRC's future is
//! refused. The NRC's `Date` header tells how far its clock is from ours.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, DATE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;

use super::jwt::ZgwJwt;
use super::Notificatie;

/// Most of an NRC error body kept for the dead letters.
const BODY_KEEP: usize = 4096;

#[derive(Debug, Clone, thiserror::Error)]
pub enum NrcError {
    /// Worth trying again later: 5xx, 408, 429, timeouts, connection errors.
    #[error("{message}")]
    Retryable {
        status: Option<u16>,
        retry_after: Option<Duration>,
        message: String,
    },
    /// The NRC refuses signrelay itself, or is not where signrelay sends to (401, 403, 404,
    /// 405, …): no fault of this request, and the same for every other one.
    #[error("NRC answered {status}")]
    Refusing { status: u16, body: String },
    /// The NRC does not know the kanaal (a 400 naming `kanaal`: removed, or a database
    /// restored without it).
    #[error("NRC does not know the kanaal")]
    KanaalMissing { body: String },
    /// The NRC will keep refusing this request as it is (400 with field errors, 409, 413,
    /// 422).
    #[error("NRC answered {status}")]
    Permanent { status: u16, body: String },
}

/// Most of an NRC answer shown in the log and in readiness.
const ANSWER_SHOWN: usize = 500;

impl NrcError {
    /// The NRC's status and answer, short, for the log and readiness (the NRC's answers
    /// hold no secrets of signrelay's; its own request is not shown).
    pub fn describe(&self) -> String {
        let (status, body) = match self {
            NrcError::Retryable { message, .. } => return message.clone(),
            NrcError::KanaalMissing { body } => (400, body),
            NrcError::Refusing { status, body } | NrcError::Permanent { status, body } => {
                (*status, body)
            }
        };
        let body = body.trim();
        if body.is_empty() {
            format!("NRC answered {status}")
        } else {
            let shown: String = body.chars().take(ANSWER_SHOWN).collect();
            format!("NRC answered {status}: {shown}")
        }
    }

    /// What kind of failure this is, without the words that change with every answer: the
    /// same kind again is no news for the log.
    pub fn kind(&self) -> String {
        match self {
            NrcError::Retryable { message, .. } => message.clone(),
            NrcError::KanaalMissing { body }
            | NrcError::Refusing { body, .. }
            | NrcError::Permanent { body, .. } => format!(
                "{} {}",
                self.status().unwrap_or_default(),
                crate::problem::kind_of(body).unwrap_or_default()
            ),
        }
    }

    /// The NRC's HTTP status, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            NrcError::Retryable { status, .. } => *status,
            NrcError::KanaalMissing { .. } => Some(400),
            NrcError::Refusing { status, .. } | NrcError::Permanent { status, .. } => Some(*status),
        }
    }
}

/// Estimates the NRC's clock from its `Date` headers (whole seconds).
#[derive(Debug, Default)]
pub struct NrcClock {
    /// NRC time minus local time, in seconds.
    offset: AtomicI64,
}

impl NrcClock {
    fn observe(&self, headers: &HeaderMap) {
        let Some(date) = headers.get(DATE).and_then(|d| d.to_str().ok()) else {
            return;
        };
        if let Ok(t) = DateTime::parse_from_rfc2822(date) {
            let offset = t.timestamp() - Utc::now().timestamp();
            self.offset.store(offset, Ordering::Relaxed);
        }
    }

    /// A "now" that is not in the NRC's future: our clock, moved back if the NRC is behind,
    /// minus a second for the `Date` header's rounding.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = self.offset.load(Ordering::Relaxed).min(0);
        Utc::now() + chrono::Duration::seconds(offset - 1)
    }
}

pub struct NrcClient {
    http: reqwest::Client,
    base: String,
    jwt: ZgwJwt,
    pub clock: NrcClock,
}

#[derive(Debug, Deserialize)]
struct Kanaal {
    naam: String,
}

/// What `ensure_kanaal` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KanaalState {
    Existed,
    Created,
}

impl NrcClient {
    pub fn new(base: &str, jwt: ZgwJwt, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("signrelay/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(32)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            jwt,
            clock: NrcClock::default(),
        })
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.jwt.token(self.clock.now().timestamp()))
    }

    pub async fn post_notificatie(&self, n: &Notificatie) -> Result<(), NrcError> {
        let resp = self
            .http
            .post(format!("{}/notificaties", self.base))
            .header(reqwest::header::AUTHORIZATION, self.bearer())
            .json(n)
            .send()
            .await
            .map_err(transport_error)?;
        self.clock.observe(resp.headers());
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            // Perhaps our token aged out at the NRC: sign a new one for the next try.
            self.jwt.invalidate();
        }
        match classify(status, resp.headers().clone(), resp).await {
            NrcError::Permanent { status: 400, body } if names_kanaal(&body) => {
                Err(NrcError::KanaalMissing { body })
            }
            other => Err(other),
        }
    }

    /// Makes sure the kanaal exists: `GET /kanaal?naam=`, then `POST /kanaal` if missing. A
    /// 400 about uniqueness means another instance created it meanwhile.
    pub async fn ensure_kanaal(
        &self,
        naam: &str,
        documentatie_link: &str,
        filters: &[String],
    ) -> Result<KanaalState, NrcError> {
        let resp = self
            .http
            .get(format!("{}/kanaal", self.base))
            .query(&[("naam", naam)])
            .header(reqwest::header::AUTHORIZATION, self.bearer())
            .send()
            .await
            .map_err(transport_error)?;
        self.clock.observe(resp.headers());
        let status = resp.status();
        if !status.is_success() {
            return Err(classify(status, resp.headers().clone(), resp).await);
        }
        let body = resp.bytes().await.map_err(transport_error)?;
        // A list, or a paginated `{"results": [...]}` from some NRCs.
        let kanalen: Vec<Kanaal> = serde_json::from_slice::<Vec<Kanaal>>(&body)
            .or_else(|_| {
                #[derive(Deserialize)]
                struct Page {
                    results: Vec<Kanaal>,
                }
                serde_json::from_slice::<Page>(&body).map(|p| p.results)
            })
            .map_err(|e| NrcError::Retryable {
                status: Some(status.as_u16()),
                retry_after: None,
                message: format!("unreadable kanaal list: {e}"),
            })?;
        if kanalen.iter().any(|k| k.naam == naam) {
            return Ok(KanaalState::Existed);
        }
        let resp = self
            .http
            .post(format!("{}/kanaal", self.base))
            .header(reqwest::header::AUTHORIZATION, self.bearer())
            .json(&serde_json::json!({
                "naam": naam,
                "documentatieLink": documentatie_link,
                "filters": filters,
            }))
            .send()
            .await
            .map_err(transport_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(KanaalState::Created);
        }
        let err = classify(status, resp.headers().clone(), resp).await;
        match &err {
            NrcError::Permanent { status: 400, body } if body.contains("unique") => {
                Ok(KanaalState::Existed)
            }
            _ => Err(err),
        }
    }
}

fn transport_error(e: reqwest::Error) -> NrcError {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    NrcError::Retryable {
        status: None,
        retry_after: None,
        message: format!("NRC {what}: {}", without_url(&e)),
    }
}

/// reqwest errors name the URL; ours has no secrets, but keep messages short and stable.
pub(super) fn without_url(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

async fn classify(status: StatusCode, headers: HeaderMap, resp: reqwest::Response) -> NrcError {
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(BODY_KEEP).collect();
    let code = status.as_u16();
    if status.is_server_error() || code == 408 || code == 429 {
        NrcError::Retryable {
            status: Some(code),
            retry_after: retry_after(&headers),
            message: format!("NRC answered {code}"),
        }
    } else if matches!(code, 400 | 409 | 413 | 422) {
        NrcError::Permanent { status: code, body }
    } else {
        NrcError::Refusing { status: code, body }
    }
}

/// A problem body whose field errors name the kanaal: Open Notificaties' answer for a kanaal
/// it does not have (`invalidParams: [{name: "kanaal", code: "message_kanaal"}]`).
fn names_kanaal(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("invalidParams").and_then(|p| p.as_array()).cloned())
        .is_some_and(|params| params.iter().any(|p| p["name"] == "kanaal"))
}

/// `Retry-After` as seconds or an HTTP date.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&Utc) - Utc::now()).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn a_problem_naming_the_kanaal_is_told_apart() {
        let gone = r#"{"code":"invalid","invalidParams":[{"name":"kanaal","code":"message_kanaal","reason":"Kanaal met deze naam bestaat niet."}]}"#;
        assert!(names_kanaal(gone));
        let field = r#"{"code":"invalid","invalidParams":[{"name":"kenmerken","code":"kenmerken_inconsistent","reason":"…"}]}"#;
        assert!(!names_kanaal(field));
        assert!(!names_kanaal("kanaal"));
    }

    #[test]
    fn clock_never_runs_ahead_of_a_slow_nrc() {
        let c = NrcClock::default();
        let mut h = HeaderMap::new();
        let nrc_now = Utc::now() - chrono::Duration::seconds(30);
        h.insert(DATE, nrc_now.to_rfc2822().parse().unwrap());
        c.observe(&h);
        assert!(c.now() <= nrc_now);
    }
}
