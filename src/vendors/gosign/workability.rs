//! Workability: may this GoSign user work on this envelope now? (ch. 7.2 and 8.4). One policy
//! serves the REST and the SOAP check. A GoSign signing session waits on the answer, so local
//! policies answer from the store in microseconds and remote ones are bounded by a timeout,
//! with a short cache and a configurable fail-open or fail-closed answer on errors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use super::config::Action;
use super::config::{OnError, WorkabilityConfig, WorkabilityPolicy};
use crate::event::{TransactionId, Vendor};
use crate::store::Store;
use crate::zgw::jwt::ZgwJwt;
use prometheus::IntCounterVec;

/// The REST answer (ch. 8.4), and the per-envelope part of the SOAP one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub workable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub action: Action,
}

impl Verdict {
    pub fn workable() -> Verdict {
        Verdict {
            workable: true,
            reason: None,
            action: Action::Nop,
        }
    }

    fn not(reason: &str, action: Action) -> Verdict {
        Verdict {
            workable: false,
            reason: Some(reason.to_string()),
            action,
        }
    }
}

pub const REASON_WITHDRAWN: &str = "ondertekening ingetrokken door de zaakbehandelaar";
pub const REASON_FINISHED: &str = "ondertekening is al afgerond";
pub const REASON_UNKNOWN: &str = "envelop onbekend bij de zaakbehandeling";
pub const REASON_ZAAK_CLOSED: &str = "de zaak is afgesloten";
pub const REASON_UNAVAILABLE: &str = "controle tijdelijk niet mogelijk; probeer het later opnieuw";
/// An envelope or user id that notify would refuse too (see `TransactionId::parse`).
pub const REASON_INVALID_ID: &str = "ongeldige envelop- of gebruikers-id";

/// Cache entries kept at most; the cache is cleared when full (entries live seconds).
const CACHE_MAX: usize = 10_000;

type CacheKey = (String, String, Option<String>);

pub struct Workability {
    cfg: WorkabilityConfig,
    store: Arc<dyn Store>,
    /// Decisions by policy and result.
    decisions: IntCounterVec,
    http: reqwest::Client,
    zrc_jwt: Option<ZgwJwt>,
    cache: Mutex<HashMap<CacheKey, (Instant, Verdict)>>,
    /// Did the last remote check (ZRC or forward) succeed? Reported by the `/status` ping.
    backend_ok: AtomicBool,
}

impl Workability {
    pub fn new(
        cfg: WorkabilityConfig,
        store: Arc<dyn Store>,
        metrics: &crate::telemetry::Metrics,
        zrc_jwt: Option<ZgwJwt>,
    ) -> anyhow::Result<Workability> {
        let decisions = metrics.counter_vec(
            "workability_decisions_total",
            "GoSign workability decisions by policy and result (workable, not_workable, error, invalid_id)",
            &["policy", "result"],
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("signrelay/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Workability {
            cfg,
            store,
            decisions,
            http,
            zrc_jwt,
            cache: Mutex::new(HashMap::new()),
            backend_ok: AtomicBool::new(true),
        })
    }

    pub fn policy_name(&self) -> &'static str {
        self.cfg.policy.as_str()
    }

    /// False when the last remote check failed.
    pub fn backend_ok(&self) -> bool {
        self.backend_ok.load(Ordering::Relaxed)
    }

    /// The verdict for one envelope and user (`original` when a substitution is active).
    /// Ids that notify would refuse (empty, over 256 bytes, control characters, `/`, `\`,
    /// `.` or `..`) are never workable and never reach a policy: no such envelope can have been
    /// loaded, and a forwarded URL must not be built from them. GoSign's contract has no error
    /// answer, so they get a verdict with action NOP.
    pub async fn check(&self, envelope: &str, user: &str, original: Option<&str>) -> Verdict {
        let ids_ok = [Some(envelope), Some(user), original]
            .into_iter()
            .flatten()
            .all(|id| TransactionId::parse(id).is_ok());
        if !ids_ok {
            self.decisions
                .with_label_values(&[self.policy_name(), "invalid_id"])
                .inc();
            note_verdict(false);
            tracing::debug!(policy = self.policy_name(), "workability: invalid id");
            return Verdict::not(REASON_INVALID_ID, Action::Nop);
        }
        let key = (
            envelope.to_string(),
            user.to_string(),
            original.map(str::to_string),
        );
        // Local policies answer from the store at once; only remote ones are worth caching
        // (and caching a local answer would hide a withdrawal for the TTL).
        let ttl = if self.cfg.policy.is_remote() {
            Duration::from_secs(self.cfg.cache_secs)
        } else {
            Duration::ZERO
        };
        if !ttl.is_zero() {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, v)) = cache.get(&key) {
                if at.elapsed() < ttl {
                    return v.clone();
                }
            }
        }
        let started = Instant::now();
        let decided =
            tokio::time::timeout(self.timeout(), self.decide(envelope, user, original)).await;
        let (verdict, result) = match decided {
            Ok(Ok(v)) => {
                let label = if v.workable {
                    "workable"
                } else {
                    "not_workable"
                };
                (v, label)
            }
            Ok(Err(e)) => {
                tracing::warn!(envelope, policy = self.policy_name(), error = %e, "workability check failed");
                (self.on_error(), "error")
            }
            Err(_) => {
                tracing::warn!(
                    envelope,
                    policy = self.policy_name(),
                    "workability check timed out"
                );
                (self.on_error(), "error")
            }
        };
        if self.cfg.policy.is_remote() {
            self.backend_ok.store(result != "error", Ordering::Relaxed);
        }
        self.decisions
            .with_label_values(&[self.policy_name(), result])
            .inc();
        note_verdict(verdict.workable);
        // Only ids and the decision: user ids and reasons may name people.
        tracing::debug!(
            envelope,
            policy = self.policy_name(),
            workable = verdict.workable,
            action = verdict.action.as_str(),
            result,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "workability decided"
        );
        if !ttl.is_zero() && result != "error" {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), verdict.clone()));
        }
        verdict
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    fn on_error(&self) -> Verdict {
        match self.cfg.on_error {
            OnError::FailOpen => Verdict::workable(),
            OnError::FailClosed => Verdict::not(REASON_UNAVAILABLE, Action::Nop),
        }
    }

    fn unknown(&self) -> Verdict {
        if self.cfg.unknown_envelopes_workable {
            Verdict::workable()
        } else {
            Verdict::not(REASON_UNKNOWN, self.cfg.action)
        }
    }

    async fn decide(
        &self,
        envelope: &str,
        user: &str,
        original: Option<&str>,
    ) -> anyhow::Result<Verdict> {
        match self.cfg.policy {
            WorkabilityPolicy::Always => Ok(Verdict::workable()),
            WorkabilityPolicy::Registry => self.registry_verdict(envelope).await.map(|(v, _)| v),
            WorkabilityPolicy::ZaakOpen => {
                let (verdict, zaak) = self.registry_verdict(envelope).await?;
                match zaak {
                    Some(url) if verdict.workable => self.zaak_open(&url).await,
                    _ => Ok(verdict),
                }
            }
            WorkabilityPolicy::Forward => self.forward(envelope, user, original).await,
        }
    }

    /// The registry's view, and the zaak URL when the envelope is registered and open.
    async fn registry_verdict(&self, envelope: &str) -> anyhow::Result<(Verdict, Option<String>)> {
        let Ok(envelope) = TransactionId::parse(envelope) else {
            return Ok((Verdict::not(REASON_INVALID_ID, Action::Nop), None));
        };
        let state = self
            .store
            .transaction_state(Vendor::Gosign, &envelope)
            .await?;
        if state.terminal.is_some() {
            return Ok((Verdict::not(REASON_FINISHED, self.cfg.action), None));
        }
        if state.withdrawn && state.registration.is_none() {
            return Ok((Verdict::not(REASON_WITHDRAWN, self.cfg.action), None));
        }
        match state.registration {
            Some(r) => Ok((Verdict::workable(), Some(r.trigger.zaak.url))),
            None => Ok((self.unknown(), None)),
        }
    }

    /// The zaak from the ZRC: closed once it has an `einddatum`.
    async fn zaak_open(&self, url: &str) -> anyhow::Result<Verdict> {
        let jwt = self
            .zrc_jwt
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no ZRC credentials"))?;
        let resp = self
            .http
            .get(url)
            .bearer_auth(jwt.token(chrono::Utc::now().timestamp() - 1))
            .header("Accept-Crs", "EPSG:4326")
            .header("Accept", "application/json")
            .send()
            .await?;
        if !resp.status().is_success() {
            anyhow::bail!("ZRC answered {}", resp.status().as_u16());
        }
        #[derive(Deserialize)]
        struct Zaak {
            #[serde(default)]
            einddatum: Option<String>,
        }
        let zaak: Zaak = resp.json().await?;
        Ok(match zaak.einddatum {
            Some(d) if !d.is_empty() => Verdict::not(REASON_ZAAK_CLOSED, self.cfg.action),
            _ => Verdict::workable(),
        })
    }

    /// Asks the case application the same question GoSign asks us.
    async fn forward(
        &self,
        envelope: &str,
        user: &str,
        original: Option<&str>,
    ) -> anyhow::Result<Verdict> {
        let base = self
            .cfg
            .forward_url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("no forward_url"))?;
        let mut url = url::Url::parse(base)?;
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|_| anyhow::anyhow!("forward_url cannot be a base"))?;
            segs.pop_if_empty()
                .extend(["envelopes", envelope, "managers", user]);
            if let Some(o) = original {
                segs.extend(["for", o]);
            }
            segs.push("status");
        }
        let mut req = self.http.get(url).header("Accept", "application/json");
        if let Some(token) = &self.cfg.forward_bearer {
            req = req.bearer_auth(token.resolve()?);
        }
        let resp = req.send().await?;
        if !resp.status().is_success() {
            anyhow::bail!("case application answered {}", resp.status().as_u16());
        }
        Ok(resp.json::<Verdict>().await?)
    }
}

/// The request's log note: a workability check, and its verdict.
fn note_verdict(workable: bool) {
    crate::telemetry::note(|n| {
        n.result = Some("workability");
        n.verdict = Some(if workable { "workable" } else { "not_workable" });
    });
}

/// The SOAP answer (ch. 7.2) for a set of envelopes, combined per the seed's rules: when no
/// envelope is workable and all share an action, the user is not allowed to work and the
/// global action applies; otherwise the user may work and each envelope carries its own
/// verdict (the global action, NOP, is the fallback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeStatuses {
    pub user_allowed_to_work: bool,
    pub user_reason: Option<String>,
    pub global_action: Action,
    pub envelopes: Vec<(String, Verdict)>,
}

pub fn combine(verdicts: Vec<(String, Verdict)>) -> EnvelopeStatuses {
    let none_workable = !verdicts.is_empty() && verdicts.iter().all(|(_, v)| !v.workable);
    let first = verdicts.first().map(|(_, v)| v.clone());
    let same_action = verdicts
        .iter()
        .all(|(_, v)| Some(v.action) == first.as_ref().map(|f| f.action));
    if none_workable && same_action {
        let first = first.expect("non-empty");
        return EnvelopeStatuses {
            user_allowed_to_work: false,
            user_reason: first.reason,
            global_action: first.action,
            envelopes: Vec::new(),
        };
    }
    EnvelopeStatuses {
        user_allowed_to_work: true,
        user_reason: None,
        global_action: Action::Nop,
        envelopes: verdicts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(workable: bool, action: Action) -> Verdict {
        Verdict {
            workable,
            reason: (!workable).then(|| "r".to_string()),
            action,
        }
    }

    #[test]
    fn all_refused_alike_uses_the_global_action() {
        let c = combine(vec![
            ("a".into(), v(false, Action::Delete)),
            ("b".into(), v(false, Action::Delete)),
        ]);
        assert!(!c.user_allowed_to_work);
        assert_eq!(c.global_action, Action::Delete);
        assert!(c.envelopes.is_empty());
    }

    #[test]
    fn mixed_verdicts_are_listed_per_envelope() {
        let c = combine(vec![
            ("a".into(), v(true, Action::Nop)),
            ("b".into(), v(false, Action::Delete)),
        ]);
        assert!(c.user_allowed_to_work);
        assert_eq!(c.envelopes.len(), 2);
        assert_eq!(c.envelopes[1].1.action, Action::Delete);
    }

    #[test]
    fn rest_verdict_has_the_ch_8_4_shape() {
        let json =
            serde_json::to_value(Verdict::not("User permission expired", Action::Nop)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"workable": false, "reason": "User permission expired", "action": "NOP"})
        );
    }
}
