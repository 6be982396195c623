//! A vendor that exists only to prove the vendor seam (feature `throwaway-vendor`, used by the
//! tests): one callback route and one follow-up job, written against the seam alone. It has
//! no retry, backoff or persistence code of its own: the job queue owns those.
//!
//! `POST {base_path}/callbacks` takes `{"id": "...", "status": "done" | "failed" | …}`;
//! before an outcome goes to the NRC, a `ping` job posts `{"id": "..."}` to `ping_url`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::auth::{AuthConfig, AuthFailure};
use crate::bounds::within;
use crate::event::{dedup_key, FollowUp, Outcome, TransactionId, Vendor};
use crate::jobs::backoff::Backoff;
use crate::jobs::pace::PaceSettings;
use crate::jobs::{Attempt, Done, Job, JobHandler, LaneSettings, Party, Task};
use crate::vendors::receive::{receive, Answers, Callback, Inlet, Parsed, Surface};
use crate::vendors::seam::{Connector, Settings, VendorSection, Wiring};

const SURFACE: &str = "throwaway.callbacks";

/// `[throwaway]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrowawayConfig {
    pub enabled: bool,
    pub base_path: String,
    pub auth: Option<AuthConfig>,
    /// The remote party its follow-up job calls.
    pub ping_url: String,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub give_up_after_secs: u64,
    /// It has no source of signed documents: `upload` is refused.
    pub documents: crate::documents::DocumentsMode,
}

impl Default for ThrowawayConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            base_path: "/throwaway".into(),
            auth: None,
            ping_url: "http://127.0.0.1:9/ping".into(),
            backoff_initial_ms: 20,
            backoff_max_ms: 200,
            give_up_after_secs: 3600,
            documents: crate::documents::DocumentsMode::Off,
        }
    }
}

impl VendorSection for ThrowawayConfig {
    fn vendor(&self) -> Vendor {
        Vendor::Throwaway
    }

    fn documents(&self) -> crate::documents::DocumentsMode {
        self.documents
    }

    fn validate(&self, _: &Settings) -> Vec<String> {
        let mut errs = match (&self.enabled, &self.auth) {
            (true, None) => vec![AuthConfig::not_set("throwaway.auth")],
            _ => Vec::new(),
        };
        let e = &mut errs;
        within(
            e,
            "throwaway.backoff_initial_ms",
            self.backoff_initial_ms,
            1..=60_000,
        );
        within(
            e,
            "throwaway.backoff_max_ms",
            self.backoff_max_ms,
            1..=3_600_000,
        );
        within(
            e,
            "throwaway.give_up_after_secs",
            self.give_up_after_secs,
            1..=31_536_000,
        );
        errs
    }

    fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serializes");
        if let Some(a) = &self.auth {
            v["auth"] = a.redacted();
        }
        v
    }

    fn in_example(&self) -> bool {
        false
    }

    fn auth_surfaces(&self) -> Vec<(&'static str, &AuthConfig)> {
        match (self.enabled, &self.auth) {
            (true, Some(a)) => vec![(SURFACE, a)],
            _ => Vec::new(),
        }
    }

    fn build(&self, wiring: &mut Wiring<'_>) -> anyhow::Result<Option<Arc<dyn Connector>>> {
        let (true, Some(auth)) = (self.enabled, &self.auth) else {
            return Ok(None);
        };
        let body = wiring.body_limits(1, 1);
        Ok(Some(Arc::new(Throwaway {
            base_path: self.base_path.clone(),
            surface: web::Data::new(Callbacks {
                inlet: wiring.inlet(Vendor::Throwaway, SURFACE, auth, body)?,
            }),
            pinger: Arc::new(Pinger {
                url: self.ping_url.clone(),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(2))
                    .build()?,
            }),
            lane: LaneSettings {
                party: Party::Vendor(Vendor::Throwaway),
                pace: PaceSettings::up_to(2),
                timeout: Duration::from_secs(5),
                backoff: Backoff {
                    initial: Duration::from_millis(self.backoff_initial_ms),
                    max: Duration::from_millis(self.backoff_max_ms),
                },
                give_up_after: Duration::from_secs(self.give_up_after_secs),
                after_commit: true,
            },
        })))
    }
}

struct Throwaway {
    base_path: String,
    surface: web::Data<Callbacks>,
    pinger: Arc<Pinger>,
    lane: LaneSettings,
}

impl Connector for Throwaway {
    fn vendor(&self) -> Vendor {
        Vendor::Throwaway
    }

    fn mount(&self, cfg: &mut web::ServiceConfig) {
        cfg.service(
            web::resource(format!("{}/callbacks", self.base_path))
                .app_data(self.surface.clone())
                .route(web::post().to(receive::<Callbacks>)),
        );
    }

    fn jobs(&self) -> Option<(LaneSettings, Arc<dyn JobHandler>)> {
        Some((self.lane.clone(), self.pinger.clone()))
    }
}

struct Callbacks {
    inlet: Inlet,
}

#[derive(Deserialize)]
struct Payload {
    id: String,
    status: String,
}

struct JsonAnswers;

impl Answers for JsonAnswers {
    fn unauthorized(&self, f: AuthFailure, _: Option<String>) -> HttpResponse {
        HttpResponse::Unauthorized().json(serde_json::json!({"error": f.code()}))
    }
    fn too_large(&self, _: usize) -> HttpResponse {
        HttpResponse::PayloadTooLarge().finish()
    }
    fn incomplete(&self) -> HttpResponse {
        HttpResponse::BadRequest().finish()
    }
    fn recorded(&self) -> HttpResponse {
        HttpResponse::Ok().json(serde_json::json!({"recorded": true}))
    }
    fn discarded(&self, reason: &str) -> HttpResponse {
        HttpResponse::UnprocessableEntity().json(serde_json::json!({"discarded": reason}))
    }
    fn not_recorded(&self) -> HttpResponse {
        HttpResponse::ServiceUnavailable().finish()
    }
}

impl Surface for Callbacks {
    type Answers = JsonAnswers;
    const CONTENT_TYPE: &'static str = "application/json";

    fn inlet(&self) -> &Inlet {
        &self.inlet
    }

    fn answers(&self, _: &HttpRequest) -> JsonAnswers {
        JsonAnswers
    }

    async fn parse(&self, _: &HttpRequest, body: &Bytes, _: &mut JsonAnswers) -> Parsed {
        let Ok(p) = serde_json::from_slice::<Payload>(body) else {
            return Parsed::Unprocessable("not a throwaway callback".into());
        };
        let Ok(tx) = TransactionId::parse(&p.id) else {
            return Parsed::Unprocessable("bad id".into());
        };
        let outcome = match p.status.as_str() {
            "done" => Outcome::Completed,
            "failed" => Outcome::Aborted {
                reason: "technische fout".into(),
            },
            other => Outcome::Progress {
                detail: other.chars().take(32).collect(),
            },
        };
        Parsed::Callback(Callback {
            dedup_key: dedup_key(&[SURFACE.as_bytes(), p.id.as_bytes(), p.status.as_bytes()]),
            follow_up: Some(FollowUp {
                name: "ping".into(),
                data: serde_json::json!({ "id": p.id }),
            }),
            transaction_id: tx,
            outcome,
            occurred_at: None,
            documents: Vec::new(),
        })
    }
}

/// Runs the `ping` jobs.
struct Pinger {
    url: String,
    http: reqwest::Client,
}

#[async_trait]
impl JobHandler for Pinger {
    async fn attempt(&self, job: &Job) -> Attempt {
        let Task::Vendor(task) = &job.task else {
            return Attempt::Refused {
                reason: "not a throwaway job".into(),
                status: None,
                body: None,
            };
        };
        let sent = self.http.post(&self.url).json(&task.data).send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    error: e.to_string(),
                    retry_after: None,
                    pause_party: true,
                }
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Attempt::Done(Done::default());
        }
        let body = resp.text().await.unwrap_or_default();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Attempt::Retry {
                error: format!("ping answered {}", status.as_u16()),
                retry_after: None,
                pause_party: true,
            }
        } else {
            Attempt::Refused {
                reason: format!("ping refused ({})", status.as_u16()),
                status: Some(status.as_u16()),
                body: Some(body),
            }
        }
    }
}
