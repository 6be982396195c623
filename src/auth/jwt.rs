//! Bearer JWTs from external identity providers (e.g. Azure AD / Entra ID), GoSign ch. 12.
//!
//! Providers are configured by issuer. `openidconnect` discovers the metadata (and refuses
//! metadata naming another issuer); the JWKS is fetched from its `jwks_uri` without following
//! redirects; `jsonwebtoken` verifies signatures. Checks run in a fixed order, each with its
//! own failure reason. Keys are cached by `kid`, refreshed in the background, refetched at most
//! once per interval (single-flight) on an unknown `kid`, and kept when the IdP is down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::within;
use crate::event::Caller;
use crate::telemetry::Metrics;

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_leeway() -> u64 {
    60
}
fn default_refresh() -> u64 {
    3600
}
fn default_refetch() -> u64 {
    300
}
fn default_max_token() -> usize {
    8192
}

/// One trusted identity provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JwtProviderConfig {
    /// Exact `iss`, e.g. `https://login.microsoftonline.com/{tid}/v2.0` (Entra v2) or
    /// `https://sts.windows.net/{tid}/` (v1). Discovery: `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    /// Accepted `alg` values: RS256/384/512, PS256/384/512, ES256/384. Never HMAC or none.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Accepted `tid` (tenant) values; empty: not checked. Must agree with the issuer's tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Accepted calling apps (`azp` in v2, `appid` in v1); empty: any.
    #[serde(default)]
    pub apps: Vec<String>,
    /// Roles the token must all carry (`roles` claim); empty: none.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Clock leeway for `exp` and `nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Background key refresh interval, seconds.
    #[serde(default = "default_refresh")]
    pub refresh_secs: u64,
    /// An unknown `kid` refetches the keys at most this often, seconds.
    #[serde(default = "default_refetch")]
    pub unknown_kid_refetch_secs: u64,
    /// Longest token accepted, bytes.
    #[serde(default = "default_max_token")]
    pub max_token_bytes: usize,
}

impl JwtProviderConfig {
    pub fn validate(&self, name: &str) -> Result<(), String> {
        url::Url::parse(&self.issuer).map_err(|_| format!("{name}.issuer is not a URL"))?;
        if self.audiences.is_empty() {
            return Err(format!("{name}.audiences must list at least one audience"));
        }
        for a in &self.algorithms {
            parse_alg(a).ok_or_else(|| {
                format!("{name}.algorithms: {a} is not allowed (asymmetric algorithms only)")
            })?;
        }
        if self.algorithms.is_empty() {
            return Err(format!("{name}.algorithms is empty"));
        }
        let mut errs = Vec::new();
        let key = |k: &str| format!("{name}.{k}");
        within(&mut errs, &key("leeway_secs"), self.leeway_secs, 0..=3600);
        within(
            &mut errs,
            &key("refresh_secs"),
            self.refresh_secs,
            10..=604_800,
        );
        within(
            &mut errs,
            &key("unknown_kid_refetch_secs"),
            self.unknown_kid_refetch_secs,
            1..=86_400,
        );
        within(
            &mut errs,
            &key("max_token_bytes"),
            self.max_token_bytes,
            256..=65_536,
        );
        match errs.is_empty() {
            true => Ok(()),
            false => Err(errs.join("; ")),
        }
    }
}

/// Only asymmetric algorithms: an HMAC "key" from an IdP would be public.
fn parse_alg(s: &str) -> Option<Algorithm> {
    Some(match s {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        _ => return None,
    })
}

/// Why a token was refused: one stable code per check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFailure {
    Missing,
    TooLarge,
    Malformed,
    AlgorithmNotAllowed,
    UnknownKey,
    KeysUnavailable,
    SignatureInvalid,
    IssuerInvalid,
    ClaimMissing,
    ClaimNotNumeric,
    Expired,
    NotYetValid,
    TenantInvalid,
    AudienceInvalid,
    AppNotAllowed,
    RoleMissing,
}

impl TokenFailure {
    pub fn code(self) -> &'static str {
        match self {
            TokenFailure::Missing => "token_missing",
            TokenFailure::TooLarge => "token_too_large",
            TokenFailure::Malformed => "token_malformed",
            TokenFailure::AlgorithmNotAllowed => "alg_not_allowed",
            TokenFailure::UnknownKey => "unknown_kid",
            TokenFailure::KeysUnavailable => "keys_unavailable",
            TokenFailure::SignatureInvalid => "signature_invalid",
            TokenFailure::IssuerInvalid => "issuer_invalid",
            TokenFailure::ClaimMissing => "exp_or_nbf_missing",
            TokenFailure::ClaimNotNumeric => "exp_or_nbf_not_numeric",
            TokenFailure::Expired => "token_expired",
            TokenFailure::NotYetValid => "token_not_yet_valid",
            TokenFailure::TenantInvalid => "tenant_invalid",
            TokenFailure::AudienceInvalid => "audience_invalid",
            TokenFailure::AppNotAllowed => "app_not_allowed",
            TokenFailure::RoleMissing => "role_missing",
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            TokenFailure::Missing => "no bearer token was presented",
            TokenFailure::TooLarge => "the token exceeds the size limit",
            TokenFailure::Malformed => "the token is not a well-formed JWT",
            TokenFailure::AlgorithmNotAllowed => "the token's alg is not allowed",
            TokenFailure::UnknownKey => "the token's kid is not among the provider's keys",
            TokenFailure::KeysUnavailable => "the identity provider's keys are not available",
            TokenFailure::SignatureInvalid => "the token's signature is invalid",
            TokenFailure::IssuerInvalid => "the token's iss is not a trusted issuer",
            TokenFailure::ClaimMissing => "the token lacks exp or nbf",
            TokenFailure::ClaimNotNumeric => "the token's exp or nbf is not a number",
            TokenFailure::Expired => "the token has expired",
            TokenFailure::NotYetValid => "the token is not valid yet (nbf)",
            TokenFailure::TenantInvalid => "the token's tenant (tid) is not allowed",
            TokenFailure::AudienceInvalid => "the token's aud is not accepted",
            TokenFailure::AppNotAllowed => "the calling app (azp/appid) is not allowed",
            TokenFailure::RoleMissing => "the token lacks a required role",
        }
    }
}

struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// A provider with its key cache.
pub struct Provider {
    pub cfg: JwtProviderConfig,
    algorithms: Vec<Algorithm>,
    http: reqwest::Client,
    jwks_uri: RwLock<Option<String>>,
    keys: RwLock<Keys>,
    last_refetch: Mutex<Option<Instant>>,
    /// One fetch at a time; a burst of unknown-kid requests waits for it.
    fetching: tokio::sync::Mutex<()>,
    metrics: Option<Arc<Metrics>>,
}

/// Is this `kid` something an IdP would issue? Never used to build a URL, but an attacker's
/// path-like or huge `kid` must not even cause a refetch.
fn plausible_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 256
        && !kid.contains("..")
        && !kid.contains("://")
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=+/.:".contains(&b))
}

/// The `alg` of a JSON header naming an algorithm jsonwebtoken does not know (e.g. `none`).
fn unsupported_alg(token: &str) -> Option<String> {
    use base64::Engine;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let alg = serde_json::from_slice::<Value>(&bytes).ok()?["alg"]
        .as_str()?
        .to_string();
    serde_json::from_value::<Algorithm>(Value::String(alg.clone()))
        .is_err()
        .then_some(alg)
}

/// The tenant id in an Entra issuer URL (the first path segment), if it looks like one.
fn issuer_tenant(issuer: &str) -> Option<String> {
    let u = url::Url::parse(issuer).ok()?;
    let seg = u.path_segments()?.next()?.to_string();
    uuid::Uuid::parse_str(&seg).ok().map(|_| seg)
}

impl Provider {
    pub fn new(cfg: JwtProviderConfig, metrics: Option<Arc<Metrics>>) -> anyhow::Result<Provider> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .user_agent(concat!("signrelay/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Provider {
            algorithms: cfg.algorithms.iter().filter_map(|a| parse_alg(a)).collect(),
            cfg,
            http,
            jwks_uri: RwLock::new(None),
            keys: RwLock::new(Keys {
                by_kid: HashMap::new(),
                fetched_at: None,
            }),
            last_refetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            metrics,
        })
    }

    /// The key ids currently trusted.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_kid
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    fn count(&self, result: &str) {
        if let Some(m) = &self.metrics {
            m.jwks_fetches
                .with_label_values(&[self.cfg.issuer.as_str(), result])
                .inc();
        }
    }

    /// Discovery (once) and a JWKS fetch; the keys are replaced only on success.
    pub async fn refresh(&self) -> anyhow::Result<usize> {
        let result = self.fetch().await;
        match &result {
            Ok(n) => {
                self.count("ok");
                tracing::info!(issuer = %self.cfg.issuer, keys = n, "identity provider keys refreshed");
            }
            Err(e) => {
                self.count("error");
                tracing::warn!(issuer = %self.cfg.issuer, error = %e, "identity provider keys not refreshed; keeping the last good keys");
            }
        }
        result
    }

    /// The provider's `jwks_uri`, from its OpenID metadata. The metadata is read into
    /// openidconnect's `CoreProviderMetadata` (which checks its shape) and must name exactly the
    /// configured issuer. Its `discover_async` is not used: it downloads the JWKS as well, a
    /// second fetch whose failure would fail discovery.
    async fn discover(&self) -> anyhow::Result<String> {
        use openidconnect::core::CoreProviderMetadata;
        let issuer = openidconnect::IssuerUrl::new(self.cfg.issuer.clone())?;
        let url = issuer.join(".well-known/openid-configuration")?;
        let resp = self.http.get(url.as_str()).send().await?;
        if !resp.status().is_success() {
            anyhow::bail!("metadata answered {}", resp.status().as_u16());
        }
        let meta: CoreProviderMetadata = serde_json::from_slice(&resp.bytes().await?)
            .map_err(|e| anyhow::anyhow!("metadata unreadable: {e}"))?;
        if meta.issuer() != &issuer {
            anyhow::bail!(
                "metadata names issuer {} instead of {}",
                meta.issuer().as_str(),
                issuer.as_str()
            );
        }
        Ok(meta.jwks_uri().url().to_string())
    }

    async fn fetch(&self) -> anyhow::Result<usize> {
        let known = self
            .jwks_uri
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let jwks_uri = match known {
            Some(u) => u,
            None => {
                let uri = self
                    .discover()
                    .await
                    .map_err(|e| anyhow::anyhow!("discovery failed: {e}"))?;
                *self.jwks_uri.write().unwrap_or_else(|p| p.into_inner()) = Some(uri.clone());
                uri
            }
        };
        let resp = self.http.get(&jwks_uri).send().await?;
        if !resp.status().is_success() {
            anyhow::bail!("JWKS answered {}", resp.status().as_u16());
        }
        let body: Value = resp.json().await?;
        let mut by_kid = HashMap::new();
        for k in body["keys"].as_array().cloned().unwrap_or_default() {
            // One odd key must not spoil the rest.
            let Ok(jwk) = serde_json::from_value::<Jwk>(k) else {
                continue;
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let signing = matches!(
                jwk.common.public_key_use,
                None | Some(PublicKeyUse::Signature)
            );
            // `kty: oct` would become an HMAC key: never from an IdP.
            let asymmetric = matches!(
                jwk.algorithm,
                AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_)
            );
            if signing && asymmetric {
                if let Ok(key) = DecodingKey::from_jwk(&jwk) {
                    by_kid.insert(kid, key);
                }
            }
        }
        if by_kid.is_empty() {
            anyhow::bail!("the JWKS holds no usable signing key");
        }
        let n = by_kid.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Keys {
            by_kid,
            fetched_at: Some(Instant::now()),
        };
        Ok(n)
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_kid
            .get(kid)
            .cloned()
    }

    /// The key for `kid`, refetching once (rate-limited, single-flight) when it is unknown.
    async fn key_for(&self, kid: &str) -> Result<DecodingKey, TokenFailure> {
        if let Some(k) = self.key(kid) {
            return Ok(k);
        }
        if !plausible_kid(kid) {
            return Err(TokenFailure::UnknownKey);
        }
        let _one_at_a_time = self.fetching.lock().await;
        if let Some(k) = self.key(kid) {
            return Ok(k);
        }
        let min = Duration::from_secs(self.cfg.unknown_kid_refetch_secs);
        {
            let mut last = self.last_refetch.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < min) {
                return Err(self.missing_key_reason());
            }
            *last = Some(Instant::now());
        }
        let _ = self.refresh().await;
        self.key(kid).ok_or_else(|| self.missing_key_reason())
    }

    fn missing_key_reason(&self) -> TokenFailure {
        if self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .fetched_at
            .is_none()
        {
            TokenFailure::KeysUnavailable
        } else {
            TokenFailure::UnknownKey
        }
    }

    /// Refreshes the keys every `refresh_secs` until dropped.
    pub async fn refresh_loop(self: Arc<Self>) {
        loop {
            let _ = {
                let _one_at_a_time = self.fetching.lock().await;
                self.refresh().await
            };
            let every = Duration::from_secs(self.cfg.refresh_secs.max(10));
            let ok = self
                .keys
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .fetched_at
                .is_some_and(|t| t.elapsed() < every);
            // Without keys, try again soon.
            tokio::time::sleep(if ok {
                every
            } else {
                Duration::from_secs(30).min(every)
            })
            .await;
        }
    }
}

/// The JWT checker of a surface: one or more providers.
pub struct JwtAuth {
    pub providers: Vec<Arc<Provider>>,
}

/// One step of `explain`.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The verified caller's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub issuer: String,
    pub app: Option<String>,
    pub tenant: Option<String>,
    pub subject: Option<String>,
}

/// The providers of every surface of one service. A provider configured identically on
/// several surfaces (e.g. GoSign's app on REST and SOAP) is one provider: one key cache, one
/// discovery, one refresh schedule, so the IdP is asked once.
#[derive(Default)]
pub struct ProviderPool {
    providers: Vec<Arc<Provider>>,
}

impl ProviderPool {
    fn get(
        &mut self,
        cfg: &JwtProviderConfig,
        metrics: &Option<Arc<Metrics>>,
    ) -> anyhow::Result<Arc<Provider>> {
        if let Some(p) = self.providers.iter().find(|p| p.cfg == *cfg) {
            return Ok(p.clone());
        }
        let p = Arc::new(Provider::new(cfg.clone(), metrics.clone())?);
        self.providers.push(p.clone());
        Ok(p)
    }

    /// Every distinct provider, each once.
    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }
}

impl JwtAuth {
    pub fn new(
        configs: &[JwtProviderConfig],
        metrics: Option<Arc<Metrics>>,
    ) -> anyhow::Result<JwtAuth> {
        Self::from_pool(configs, metrics, &mut ProviderPool::default())
    }

    /// As `new`, sharing providers configured identically elsewhere through `pool`.
    pub fn from_pool(
        configs: &[JwtProviderConfig],
        metrics: Option<Arc<Metrics>>,
        pool: &mut ProviderPool,
    ) -> anyhow::Result<JwtAuth> {
        Ok(JwtAuth {
            providers: configs
                .iter()
                .map(|c| pool.get(c, &metrics))
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// Verifies a bearer token; see `check` for the order of checks.
    pub async fn verify(&self, token: &str) -> Result<Caller, TokenFailure> {
        let v = self.check(token, &mut |_| {}).await?;
        Ok(Caller {
            method: crate::event::CallerMethod::Jwt,
            principal: v.app.clone().or(v.subject),
            issuer: Some(v.issuer),
            tenant: v.tenant,
        })
    }

    /// Every check with its result, for `signrelay jwt explain`.
    pub async fn explain(&self, token: &str) -> (Vec<Step>, Result<Verified, TokenFailure>) {
        let mut steps = Vec::new();
        let result = self.check(token, &mut |s| steps.push(s)).await;
        (steps, result)
    }

    async fn check(
        &self,
        token: &str,
        report: &mut dyn FnMut(Step),
    ) -> Result<Verified, TokenFailure> {
        let mut step = |check: &'static str,
                        r: Result<String, TokenFailure>|
         -> Result<String, TokenFailure> {
            report(Step {
                check,
                ok: r.is_ok(),
                detail: match &r {
                    Ok(d) => d.clone(),
                    Err(f) => f.detail().to_string(),
                },
            });
            r
        };
        // 1. Present and bounded: by the largest limit before anything is decoded, by the
        //    provider's own once the provider is known.
        let max = self
            .providers
            .iter()
            .map(|p| p.cfg.max_token_bytes)
            .max()
            .unwrap_or(8192);
        step(
            "present",
            if token.is_empty() {
                Err(TokenFailure::Missing)
            } else if token.len() > max {
                Err(TokenFailure::TooLarge)
            } else {
                Ok(format!("{} bytes", token.len()))
            },
        )?;
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            // jsonwebtoken has no `Algorithm` for `none` (nor for an unknown alg), so such a
            // header does not decode; it fails the alg check, it is not a malformed token.
            Err(_) => {
                return Err(match unsupported_alg(token) {
                    Some(alg) => {
                        let _ = step("header", Ok(format!("alg {alg:?}")));
                        let _ = step("alg", Err(TokenFailure::AlgorithmNotAllowed));
                        TokenFailure::AlgorithmNotAllowed
                    }
                    None => {
                        let _ = step("header", Err(TokenFailure::Malformed));
                        TokenFailure::Malformed
                    }
                })
            }
        };
        step(
            "header",
            Ok(format!("alg {:?}, kid {:?}", header.alg, header.kid)),
        )?;
        // The provider is chosen by the (unverified) issuer; everything is verified below.
        let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| TokenFailure::Malformed)?;
        let iss = claims["iss"].as_str().unwrap_or_default();
        let provider = self
            .providers
            .iter()
            .find(|p| p.cfg.issuer == iss)
            .or(self.providers.first())
            .ok_or(TokenFailure::IssuerInvalid)?;
        if token.len() > provider.cfg.max_token_bytes {
            step("present", Err(TokenFailure::TooLarge))?;
        }
        // 2. alg in the provider's allow-list (`none` and HMAC can never be in it).
        step(
            "alg",
            if provider.algorithms.contains(&header.alg) {
                Ok(format!("{:?}", header.alg))
            } else {
                Err(TokenFailure::AlgorithmNotAllowed)
            },
        )?;
        // 3. Signature with the key named by kid (jku, x5u and jwk headers are ignored).
        let kid = header.kid.clone().unwrap_or_default();
        let key = provider.key_for(&kid).await;
        step(
            "key",
            key.as_ref().map(|_| format!("kid {kid}")).map_err(|e| *e),
        )?;
        let key = key?;
        let mut v = Validation::new(header.alg);
        v.algorithms = provider.algorithms.clone();
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let verified = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|_| TokenFailure::SignatureInvalid);
        step(
            "signature",
            verified
                .as_ref()
                .map(|_| "valid".to_string())
                .map_err(|e| *e),
        )?;
        let claims = verified?;
        // 4. iss exact.
        step(
            "iss",
            if claims["iss"].as_str() == Some(provider.cfg.issuer.as_str()) {
                Ok(provider.cfg.issuer.clone())
            } else {
                Err(TokenFailure::IssuerInvalid)
            },
        )?;
        // 5. exp and nbf, both required, numbers, with leeway.
        let now = chrono::Utc::now().timestamp();
        let leeway = provider.cfg.leeway_secs as i64;
        let times = (|| {
            let (exp, nbf) = (&claims["exp"], &claims["nbf"]);
            if exp.is_null() || nbf.is_null() {
                return Err(TokenFailure::ClaimMissing);
            }
            let (Some(exp), Some(nbf)) = (exp.as_f64(), nbf.as_f64()) else {
                return Err(TokenFailure::ClaimNotNumeric);
            };
            if (exp as i64) + leeway < now {
                return Err(TokenFailure::Expired);
            }
            if (nbf as i64) - leeway > now {
                return Err(TokenFailure::NotYetValid);
            }
            Ok(format!("exp in {} s", exp as i64 - now))
        })();
        step("exp/nbf", times)?;
        // 6. tid allowed and consistent with the issuer's tenant.
        let tid = claims["tid"].as_str().map(str::to_string);
        let tenant_ok = (provider.cfg.tenants.is_empty()
            || tid
                .as_ref()
                .is_some_and(|t| provider.cfg.tenants.contains(t)))
            && match (issuer_tenant(&provider.cfg.issuer), &tid) {
                (Some(it), Some(t)) => &it == t,
                (Some(_), None) => provider.cfg.tenants.is_empty(),
                _ => true,
            };
        step(
            "tid",
            if tenant_ok {
                Ok(tid.clone().unwrap_or_else(|| "-".into()))
            } else {
                Err(TokenFailure::TenantInvalid)
            },
        )?;
        // 7. aud among the accepted audiences (a string or a list).
        let auds: Vec<&str> = match &claims["aud"] {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        step(
            "aud",
            if auds
                .iter()
                .any(|a| provider.cfg.audiences.iter().any(|x| x == a))
            {
                Ok(auds.join(","))
            } else {
                Err(TokenFailure::AudienceInvalid)
            },
        )?;
        // 8. The calling app: azp (v2) or appid (v1).
        let app = claims["azp"]
            .as_str()
            .or(claims["appid"].as_str())
            .map(str::to_string);
        step(
            "app",
            if provider.cfg.apps.is_empty()
                || app.as_ref().is_some_and(|a| provider.cfg.apps.contains(a))
            {
                Ok(app.clone().unwrap_or_else(|| "-".into()))
            } else {
                Err(TokenFailure::AppNotAllowed)
            },
        )?;
        // 9. Required roles.
        let roles: Vec<&str> = claims["roles"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        step(
            "roles",
            if provider
                .cfg
                .roles
                .iter()
                .all(|r| roles.contains(&r.as_str()))
            {
                Ok(roles.join(","))
            } else {
                Err(TokenFailure::RoleMissing)
            },
        )?;
        Ok(Verified {
            issuer: provider.cfg.issuer.clone(),
            app,
            tenant: tid,
            subject: claims["sub"].as_str().map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_and_none_are_never_allowed() {
        for a in ["HS256", "HS512", "none", "EdDSA"] {
            assert!(parse_alg(a).is_none(), "{a}");
        }
        let cfg = JwtProviderConfig {
            issuer: "https://login.microsoftonline.com/x/v2.0".into(),
            audiences: vec!["api://signrelay".into()],
            algorithms: vec!["HS256".into()],
            tenants: vec![],
            apps: vec![],
            roles: vec![],
            leeway_secs: 60,
            refresh_secs: 3600,
            unknown_kid_refetch_secs: 300,
            max_token_bytes: 8192,
        };
        assert!(cfg.validate("p").unwrap_err().contains("HS256"));
    }

    #[test]
    fn alg_none_is_told_apart_from_a_malformed_header() {
        use base64::Engine;
        let enc = |h: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h);
        let none = format!("{}.e30.", enc(r#"{"alg":"none","kid":"k"}"#));
        assert_eq!(unsupported_alg(&none).as_deref(), Some("none"));
        let rs = format!("{}.e30.", enc(r#"{"alg":"RS256","kid":5}"#));
        assert_eq!(unsupported_alg(&rs), None);
        assert_eq!(unsupported_alg("not-a-jwt"), None);
    }

    #[test]
    fn path_like_kids_are_implausible() {
        assert!(plausible_kid("nOo3ZDrODXEK1jKWhXslHR_KXEg"));
        assert!(!plausible_kid("../../etc/passwd"));
        assert!(!plausible_kid("https://evil.example/keys"));
        assert!(!plausible_kid(&"a".repeat(300)));
    }

    #[test]
    fn tenant_is_read_from_entra_issuers() {
        let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        assert_eq!(
            issuer_tenant(&format!("https://sts.windows.net/{tid}/")).as_deref(),
            Some(tid)
        );
        assert_eq!(
            issuer_tenant(&format!("https://login.microsoftonline.com/{tid}/v2.0")).as_deref(),
            Some(tid)
        );
        assert_eq!(issuer_tenant("https://idp.example/realms/x"), None);
    }
}
