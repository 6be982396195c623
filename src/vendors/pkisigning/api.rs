//! The PKIsigning platform API, as far as signrelay uses it: an OAuth2 client-credentials
//! token (cached until it expires), `GET /requests/{id}?callbackAuthenticationKey=…`,
//! `GET /Organisations/current` and `POST /organisations/{id}/webhooks`. Every call, tokens
//! included, takes a place in the one call budget (PKIsigning allows 100 calls per 60 s).

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;

use super::config::PkisigningConfig;
use crate::http::budget::CallBudget;

/// Most of an error body kept for a dead letter.
const BODY_KEEP: usize = 4096;

/// How a call went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Worth asking again later: 5xx, 408, 429, timeouts, connection errors, and credentials
    /// PKIsigning refused (an operator fixes those; nothing is lost meanwhile).
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The dossier does not exist (for this key).
    #[error("PKIsigning does not know the dossier")]
    NotFound,
    /// PKIsigning will keep refusing this request as it is.
    #[error("PKIsigning answered {status}")]
    Refused { status: u16, body: String },
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// What signrelay reads of a `RequestModel`.
#[derive(Debug, Deserialize)]
pub struct RequestModel {
    pub id: String,
    pub status: String,
}

#[derive(Debug, Deserialize)]
pub struct Organisation {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

pub struct PkiApi {
    http: reqwest::Client,
    api_url: String,
    token_url: String,
    client_id: String,
    client_secret: String,
    scope: String,
    budget: CallBudget,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

fn retryable(message: String) -> ApiError {
    ApiError::Retryable {
        message,
        retry_after: None,
    }
}

fn transport(e: reqwest::Error) -> ApiError {
    // Never the URL: it carries the callback's key.
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    };
    retryable(format!("PKIsigning: {what}"))
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl PkiApi {
    /// Fails when the client secret does not resolve.
    pub fn new(cfg: &PkisigningConfig) -> anyhow::Result<PkiApi> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout())
            .connect_timeout(cfg.timeout().min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("signrelay/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let secret = match &cfg.client_secret {
            Some(s) => s.resolve()?,
            None => anyhow::bail!("pkisigning.client_secret is not set"),
        };
        Ok(PkiApi {
            http,
            api_url: cfg.api_url.trim_end_matches('/').to_string(),
            token_url: cfg.token_url.clone(),
            client_id: cfg.client_id.clone().unwrap_or_default(),
            client_secret: secret,
            scope: cfg.scope.clone(),
            budget: CallBudget::new(
                cfg.rate_limit_calls,
                Duration::from_secs(cfg.rate_limit_window_secs),
            ),
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// Sends within the budget; the place is held until the answer's headers are in.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        let _place = self.budget.place().await;
        req.send().await.map_err(transport)
    }

    /// A bearer token, fetched once and reused until shortly before it expires.
    async fn bearer(&self) -> Result<String, ApiError> {
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let resp = self
            .send(self.http.post(&self.token_url).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
                ("scope", self.scope.as_str()),
            ]))
            .await?;
        let status = resp.status();
        if !status.is_success() {
            // Credentials an operator must fix (or an identity server in trouble): later.
            return Err(ApiError::Retryable {
                message: format!("PKIsigning token endpoint answered {}", status.as_u16()),
                retry_after: retry_after(&resp),
            });
        }
        let answer: TokenAnswer = resp
            .json()
            .await
            .map_err(|_| retryable("PKIsigning token answer unreadable".into()))?;
        // A minute of margin, so that a token never expires on its way.
        let life = Duration::from_secs(answer.expires_in.unwrap_or(300).saturating_sub(60).max(1));
        *cached = Some((answer.access_token.clone(), Instant::now() + life));
        Ok(answer.access_token)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// Sends an authorized API request; a refused token is fetched anew next time.
    async fn call(
        &self,
        req: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        self.call_accepting("application/json", req).await
    }

    async fn call_accepting(
        &self,
        accept: &str,
        req: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let token = self.bearer().await?;
        let resp = self
            .send(
                req(&self.http)
                    .bearer_auth(token)
                    .header(reqwest::header::ACCEPT, accept),
            )
            .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            self.forget_token().await;
        }
        let after = retry_after(&resp);
        let body: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(BODY_KEEP)
            .collect();
        Err(match status {
            StatusCode::NOT_FOUND => ApiError::NotFound,
            s if s.is_server_error()
                || s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::UNAUTHORIZED
                || s == StatusCode::FORBIDDEN =>
            {
                ApiError::Retryable {
                    message: format!("PKIsigning answered {}", s.as_u16()),
                    retry_after: after,
                }
            }
            s => ApiError::Refused {
                status: s.as_u16(),
                body,
            },
        })
    }

    /// The dossier's status as the API shows it to the holder of the callback's key.
    pub async fn request_status(&self, id: &str, key: &str) -> Result<String, ApiError> {
        let url = format!("{}/requests/{}", self.api_url, id);
        let resp = self
            .call(|http| http.get(&url).query(&[("callbackAuthenticationKey", key)]))
            .await?;
        let model: RequestModel = resp
            .json()
            .await
            .map_err(|_| retryable("PKIsigning request answer unreadable".into()))?;
        Ok(model.status)
    }

    /// The dossier as a zip (`GET /requests/{id}/Download`), streamed into `to`: at most
    /// `limit` bytes, within `timeout`. Returns its size.
    pub async fn download(
        &self,
        id: &str,
        to: &std::path::Path,
        limit: u64,
        timeout: Duration,
    ) -> Result<u64, ApiError> {
        use tokio::io::AsyncWriteExt;
        let url = format!("{}/requests/{}/Download", self.api_url, id);
        let mut resp = self
            .call_accepting("application/zip, application/octet-stream", |http| {
                http.get(&url).timeout(timeout)
            })
            .await?;
        let local = |e: std::io::Error| retryable(format!("download file: {e}"));
        let mut file = tokio::fs::File::create(to).await.map_err(local)?;
        let mut written = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            written += chunk.len() as u64;
            if written > limit {
                return Err(ApiError::Refused {
                    status: 200,
                    body: format!("dossier groter dan {limit} bytes"),
                });
            }
            file.write_all(&chunk).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        Ok(written)
    }

    /// The organisations of the API user (`GET /Organisations/current`).
    pub async fn organisations(&self) -> Result<Vec<Organisation>, ApiError> {
        let url = format!("{}/Organisations/current", self.api_url);
        let resp = self.call(|http| http.get(&url)).await?;
        resp.json()
            .await
            .map_err(|_| retryable("PKIsigning organisations answer unreadable".into()))
    }

    /// Registers `url` for the `status` event of every dossier of the organisation.
    pub async fn register_webhook(
        &self,
        organisation: &str,
        url: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let endpoint = format!("{}/organisations/{organisation}/webhooks", self.api_url);
        let body =
            serde_json::json!({"Events": ["status"], "Config": {"url": url}, "Active": true});
        let resp = self.call(|http| http.post(&endpoint).json(&body)).await?;
        resp.json()
            .await
            .map_err(|_| retryable("PKIsigning webhook answer unreadable".into()))
    }
}
