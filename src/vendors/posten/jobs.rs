//! Posten's jobs, run by the queue's worker in Posten's lane (which runs a job only once what
//! queued it is durable): fetch a direct job's status with the token an exit URL brought,
//! confirm a status to Posten once it is recorded, and poll a status queue. Every call goes
//! over mutual TLS with the organisation certificate.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::board::{Board, Seen};
use super::xml::{self, Flow, JobStatus};
use crate::event::{dedup_key, Caller, CallerMethod, DocumentRef, NewEvent, Outcome};
use crate::event::{RawPayload, TransactionId, Vendor};
use crate::jobs::{Attempt, Done, Job, JobHandler, Task, VendorTask};
use crate::store::Store;

pub const SURFACE: &str = "posten.status";

/// Which exit URL the signer came back through (a hint; Posten's status is the truth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    Completion,
    Rejection,
    Error,
}

impl Exit {
    pub fn parse(s: &str) -> Option<Exit> {
        match s {
            "completion" => Some(Exit::Completion),
            "rejection" => Some(Exit::Rejection),
            "error" => Some(Exit::Error),
            _ => None,
        }
    }
}

/// A Posten job's data (the vendor's own job type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PostenJob {
    /// A direct job's signer came back: fetch its status with the token (a credential: kept
    /// only while this job is queued).
    Fetch {
        reference: String,
        exit: Exit,
        token: String,
    },
    /// Tell Posten a status is recorded.
    Confirm { url: String },
    /// Poll a status queue.
    Poll { portal: bool, queue: Option<String> },
}

impl PostenJob {
    pub fn name(&self) -> &'static str {
        match self {
            PostenJob::Fetch { .. } => "fetch",
            PostenJob::Confirm { .. } => "confirm",
            PostenJob::Poll { .. } => "poll",
        }
    }

    pub fn task(&self) -> Task {
        Task::Vendor(VendorTask {
            vendor: Vendor::Posten,
            event_id: None,
            name: self.name().into(),
            data: serde_json::to_value(self).expect("serializes"),
        })
    }
}

/// Runs Posten's jobs.
pub struct PostenJobs {
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    /// `{api_url}`, without a trailing slash: every URL signrelay calls with the organisation
    /// certificate lies under it.
    pub api_url: String,
    pub organization_number: String,
    pub polling_queue: Option<String>,
    pub settle: Duration,
    pub board: Board,
}

fn retry(error: String, retry_after: Option<Duration>) -> Attempt {
    Attempt::Retry {
        error,
        retry_after,
        pause_party: true,
    }
}

fn refused(reason: String, status: Option<u16>, body: Option<String>) -> Attempt {
    Attempt::Refused {
        reason,
        status,
        body,
    }
}

/// What a transport failure is called in logs and dead letters: never the URL (tokens travel
/// in queries).
fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "Posten: timed out".into()
    } else if e.is_connect() {
        "Posten: cannot connect (or the TLS handshake failed)".into()
    } else {
        "Posten: transport error".into()
    }
}

fn header_time(resp: &reqwest::Response, name: &str) -> Option<DateTime<Utc>> {
    let v = resp.headers().get(name)?.to_str().ok()?;
    DateTime::parse_from_rfc3339(v.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A status as a callback of its own, recorded like any other (one NRC notification however
/// many times and ways it is reported).
fn recorded(tx: TransactionId, status: &JobStatus, body: bytes::Bytes) -> (NewEvent, RawPayload) {
    let detail = match &status.outcome {
        Outcome::Completed => "",
        Outcome::Aborted { reason } => reason,
        Outcome::Progress { detail } => detail,
    };
    let mut documents = Vec::new();
    if let Some(url) = &status.pades_url {
        documents.push(DocumentRef {
            external_id: "pades".into(),
            mime_type: Some("application/pdf".into()),
            size: 0,
            url: Some(url.clone()),
        });
    }
    for (i, url) in status.xades_urls.iter().enumerate() {
        documents.push(DocumentRef {
            external_id: format!("xades-{}", i + 1),
            mime_type: Some("application/xml".into()),
            size: 0,
            url: Some(url.clone()),
        });
    }
    let event = NewEvent {
        vendor: Vendor::Posten,
        dedup_key: dedup_key(&[
            Vendor::Posten.as_str().as_bytes(),
            tx.as_bytes(),
            status.outcome.label().as_bytes(),
            detail.as_bytes(),
        ]),
        transaction_id: tx,
        outcome: status.outcome.clone(),
        occurred_at: status.occurred_at,
        surface: SURFACE,
        documents,
        caller: Caller {
            method: CallerMethod::None,
            principal: Some("posten api".into()),
            ..Caller::default()
        },
        follow_up: None,
    };
    let payload = RawPayload::new("application/xml", body);
    (event, payload)
}

impl PostenJobs {
    /// Is `url` one of Posten's (under `api_url`)? The organisation certificate goes nowhere
    /// else.
    pub fn is_posten_url(&self, url: &str) -> bool {
        url.starts_with(&format!("{}/", self.api_url))
    }

    /// The status, the confirmation that follows it, and what to record.
    fn done_with(&self, tx: TransactionId, status: &JobStatus, body: bytes::Bytes) -> Done {
        let then = status
            .confirmation_url
            .iter()
            .filter(|u| self.is_posten_url(u))
            .map(|url| PostenJob::Confirm { url: url.clone() }.task())
            .collect();
        Done {
            record: vec![recorded(tx, status, body)],
            then,
            again: None,
        }
    }

    async fn fetch(&self, job: &Job, reference: &str, token: &str) -> Attempt {
        let seen = |s: Seen| self.board.publish(job.id, s);
        let Ok(tx) = TransactionId::parse(reference) else {
            seen(Seen::Invalid);
            return refused("ongeldige referentie".into(), None, None);
        };
        let registration = match self.store.registration(Vendor::Posten, &tx).await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    error: e.to_string(),
                    retry_after: None,
                    pause_party: false,
                }
            }
        };
        let status_url = registration
            .as_ref()
            .and_then(|r| r.trigger.vendor.get("status_url"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let Some(status_url) = status_url else {
            // The registration (with the job's status URL) may still come.
            seen(Seen::Processing);
            return Attempt::Retry {
                error: "geen status_url geregistreerd voor deze transactie".into(),
                retry_after: None,
                pause_party: false,
            };
        };
        if !self.is_posten_url(&status_url) {
            seen(Seen::Invalid);
            return refused(
                "de status_url hoort niet bij posten.api_url".into(),
                None,
                None,
            );
        }
        let mut req = self
            .http
            .get(&status_url)
            .header(reqwest::header::ACCEPT, "application/xml")
            .query(&[("status_query_token", token)]);
        if let Some(q) = &self.polling_queue {
            req = req.query(&[("polling_queue", q)]);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                seen(Seen::Processing);
                return retry(transport(&e), None);
            }
        };
        let code = resp.status();
        let body = match read_body(resp).await {
            Ok(b) => b,
            Err(e) => {
                seen(Seen::Processing);
                return retry(e, None);
            }
        };
        if code.is_success() {
            return match xml::parse(&body) {
                Ok(status) if status.reference.as_deref().is_none_or(|r| r == reference) => {
                    seen(Seen::Outcome(status.outcome.clone()));
                    Attempt::Done(self.done_with(tx, &status, body))
                }
                Ok(_) => {
                    seen(Seen::Invalid);
                    refused(
                        "Posten's status noemt een andere referentie".into(),
                        Some(code.as_u16()),
                        None,
                    )
                }
                Err(e) => {
                    seen(Seen::Processing);
                    refused(
                        format!("onleesbare status van Posten: {e}"),
                        Some(code.as_u16()),
                        None,
                    )
                }
            };
        }
        let error = xml::error_code(&body);
        let shown: String = String::from_utf8_lossy(&body).chars().take(4096).collect();
        match (code, error.as_deref()) {
            // A forged exit URL, or a token used up: it will never work.
            (StatusCode::FORBIDDEN, Some("INVALID_STATUS_QUERY_TOKEN")) => {
                seen(Seen::Invalid);
                refused("status_query_token ongeldig".into(), Some(403), Some(shown))
            }
            // The signer is back before Posten has finished: ask again for a while.
            (StatusCode::NOT_FOUND, Some("SIGNING_CEREMONY_NOT_COMPLETED")) => {
                seen(Seen::Processing);
                let age = (Utc::now() - job.first_queued_at)
                    .to_std()
                    .unwrap_or_default();
                if age < self.settle {
                    Attempt::Retry {
                        error: "ondertekening nog niet afgerond bij Posten".into(),
                        retry_after: None,
                        pause_party: false,
                    }
                } else {
                    refused("ondertekening niet afgerond".into(), Some(404), Some(shown))
                }
            }
            (c, _)
                if c.is_server_error()
                    || c == StatusCode::TOO_MANY_REQUESTS
                    || c == StatusCode::REQUEST_TIMEOUT =>
            {
                seen(Seen::Processing);
                retry(format!("Posten answered {}", c.as_u16()), None)
            }
            (c, _) => {
                seen(Seen::Invalid);
                refused(
                    format!("Posten weigerde ({})", c.as_u16()),
                    Some(c.as_u16()),
                    Some(shown),
                )
            }
        }
    }

    async fn confirm(&self, url: &str) -> Attempt {
        if !self.is_posten_url(url) {
            return refused(
                "de confirmation-url hoort niet bij posten.api_url".into(),
                None,
                None,
            );
        }
        let resp = match self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return retry(transport(&e), None),
        };
        let code = resp.status();
        match code {
            c if c.is_success() => Attempt::Done(Done::default()),
            // Confirmed before (a repeated change), or the job is gone: nothing to confirm.
            StatusCode::NOT_FOUND | StatusCode::CONFLICT => Attempt::Done(Done::default()),
            c if c.is_server_error() || c == StatusCode::TOO_MANY_REQUESTS => {
                retry(format!("Posten answered {}", c.as_u16()), None)
            }
            c => {
                let body = read_body(resp).await.unwrap_or_default();
                refused(
                    format!("Posten weigerde de bevestiging ({})", c.as_u16()),
                    Some(c.as_u16()),
                    Some(String::from_utf8_lossy(&body).chars().take(4096).collect()),
                )
            }
        }
    }

    /// One turn of a poller. It never ends and never dead-letters: whatever happens it runs
    /// again, never before Posten's next permitted poll time (kept in the job's due time, so
    /// also across restarts).
    async fn poll(&self, portal: bool, queue: Option<&str>) -> Attempt {
        let flow = if portal { "portal" } else { "direct" };
        let url = format!(
            "{}/{}/{flow}/signature-jobs",
            self.api_url, self.organization_number
        );
        let mut req = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/xml");
        if let Some(q) = queue {
            req = req.query(&[("polling_queue", q)]);
        }
        let now = Utc::now();
        // Without Posten's word, wait at least this long (its DoS filter answers without one).
        let floor = now + chrono::Duration::seconds(30);
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %transport(&e), flow, "Posten poll failed; polling again later");
                return Attempt::Done(Done::again_at(floor));
            }
        };
        let code = resp.status();
        // Posten's clock decides: a permitted time in the future gets a second's margin (for
        // the clocks' difference and the header's rounding); one already past is now.
        let next = header_time(&resp, "X-Next-permitted-poll-time").map(|t| {
            if t > now {
                t + chrono::Duration::seconds(1)
            } else {
                now
            }
        });
        match code {
            StatusCode::OK => {
                let body = match read_body(resp).await {
                    Ok(b) => b,
                    Err(_) => return Attempt::Done(Done::again_at(next.unwrap_or(floor))),
                };
                match xml::parse(&body) {
                    Ok(status) => {
                        let expected = if portal { Flow::Portal } else { Flow::Direct };
                        let id = status
                            .reference
                            .clone()
                            .unwrap_or_else(|| status.job_id.clone());
                        match (status.flow == expected, TransactionId::parse(&id)) {
                            (true, Ok(tx)) => {
                                let mut done = self.done_with(tx, &status, body);
                                // A change came: the next one may be asked for at once.
                                done.again = Some(crate::jobs::Again {
                                    at: next.unwrap_or(now),
                                    data: None,
                                });
                                Attempt::Done(done)
                            }
                            _ => {
                                tracing::error!(
                                    flow,
                                    "Posten poll answered a change signrelay cannot use"
                                );
                                Attempt::Done(Done::again_at(next.unwrap_or(floor)))
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(flow, error = %e, "unreadable Posten status change");
                        Attempt::Done(Done::again_at(next.unwrap_or(floor)))
                    }
                }
            }
            StatusCode::NO_CONTENT => Attempt::Done(Done::again_at(next.unwrap_or(floor))),
            StatusCode::TOO_MANY_REQUESTS => {
                tracing::warn!(
                    flow,
                    "Posten: polled too early; waiting for the permitted time"
                );
                Attempt::Done(Done::again_at(next.unwrap_or(floor).max(now)))
            }
            c => {
                tracing::warn!(
                    flow,
                    status = c.as_u16(),
                    "Posten poll refused; polling again later"
                );
                Attempt::Done(Done::again_at(next.unwrap_or(floor).max(floor)))
            }
        }
    }
}

/// A Posten answer's body, bounded.
async fn read_body(resp: reqwest::Response) -> Result<bytes::Bytes, String> {
    if resp
        .content_length()
        .is_some_and(|n| n as usize > xml::MAX_BYTES)
    {
        return Err("Posten's answer is too large".into());
    }
    let b = resp.bytes().await.map_err(|e| transport(&e))?;
    if b.len() > xml::MAX_BYTES {
        return Err("Posten's answer is too large".into());
    }
    Ok(b)
}

#[async_trait]
impl JobHandler for PostenJobs {
    async fn attempt(&self, job: &Job) -> Attempt {
        let Task::Vendor(task) = &job.task else {
            return refused("geen Posten-taak".into(), None, None);
        };
        let Ok(posten) = serde_json::from_value::<PostenJob>(task.data.clone()) else {
            return refused("Posten-taak onleesbaar".into(), None, None);
        };
        match posten {
            PostenJob::Fetch {
                reference, token, ..
            } => self.fetch(job, &reference, &token).await,
            PostenJob::Confirm { url } => self.confirm(&url).await,
            PostenJob::Poll { portal, queue } => self.poll(portal, queue.as_deref()).await,
        }
    }
}
