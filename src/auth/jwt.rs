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

use crate::bounds::within;
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
    /// Allows an `http://` issuer and JWKS URL (for tests against a local identity provider).
    /// Without it both must be `https://`: keys fetched over plain HTTP can be swapped in
    /// transit, and then any token is "valid".
    #[serde(default)]
    pub allow_insecure_http: bool,
}

impl JwtProviderConfig {
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let issuer =
            url::Url::parse(&self.issuer).map_err(|_| format!("{name}.issuer is not a URL"))?;
        self.secure_url(issuer.as_str())
            .map_err(|e| format!("{name}.issuer {e}"))?;
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

impl JwtProviderConfig {
    /// Is `url` one keys may be fetched from: `https`, or `http` when explicitly allowed?
    pub fn secure_url(&self, url: &str) -> Result<(), String> {
        let scheme = url::Url::parse(url)
            .map(|u| u.scheme().to_string())
            .unwrap_or_default();
        match (scheme.as_str(), self.allow_insecure_http) {
            ("https", _) | ("http", true) => Ok(()),
            ("http", false) => Err(format!(
                "{url} is not https: keys fetched over plain HTTP can be replaced in transit \
                 (allow_insecure_http = true permits it, for tests only)"
            )),
            _ => Err(format!("{url} is not an https URL")),
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
            .https_only(!cfg.allow_insecure_http)
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
        let jwks_uri = meta.jwks_uri().url().to_string();
        self.cfg
            .secure_url(&jwks_uri)
            .map_err(|e| anyhow::anyhow!("the metadata's jwks_uri {e}"))?;
        Ok(jwks_uri)
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

    /// Why no key was found for `kid`, for `explain`.
    fn key_trouble(&self, kid: &str) -> String {
        let known = self.key_ids();
        let issuer = &self.cfg.issuer;
        if known.is_empty() {
            format!("no keys of {issuer} could be fetched")
        } else if kid.is_empty() {
            format!("the token names no kid; {issuer} has {}", known.join(", "))
        } else {
            format!(
                "kid {kid} is not among the keys of {issuer}: {}",
                known.join(", ")
            )
        }
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
        // Each check reports what it saw: on success a short account, on failure the expected
        // against the actual (for `explain`; a refused caller gets only the fixed detail).
        let mut step =
            |check: &'static str, r: Result<String, Refusal>| -> Result<String, TokenFailure> {
                let (ok, detail, result) = match r {
                    Ok(d) => (true, d.clone(), Ok(d)),
                    Err((f, why)) => (false, format!("{}: {why}", f.detail()), Err(f)),
                };
                report(Step { check, ok, detail });
                result
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
                Err((TokenFailure::Missing, "no token".into()))
            } else if token.len() > max {
                Err(too_large(token.len(), max))
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
                        let _ = step("header", Ok(format!("alg {alg}")));
                        let allowed = self.allowed_algorithms();
                        let _ = step("alg", Err(not_allowed_alg(&alg, &allowed)));
                        TokenFailure::AlgorithmNotAllowed
                    }
                    None => {
                        let why = "the header is not base64url-encoded JSON naming an alg".into();
                        let _ = step("header", Err((TokenFailure::Malformed, why)));
                        TokenFailure::Malformed
                    }
                })
            }
        };
        let kid = header.kid.clone().unwrap_or_default();
        step(
            "header",
            Ok(format!(
                "alg {}, kid {}",
                alg_name(header.alg),
                or_none(&kid)
            )),
        )?;
        // The provider is chosen by the (unverified) issuer: a token naming none of the
        // configured issuers is refused here, before any key is looked up (or refetched).
        // Everything is verified below, `iss` again after the signature.
        let claims: Value = match jsonwebtoken::dangerous::insecure_decode_claims(token) {
            Ok(c) => c,
            Err(_) => {
                let why = "the claims are not base64url-encoded JSON".into();
                let _ = step("claims", Err((TokenFailure::Malformed, why)));
                return Err(TokenFailure::Malformed);
            }
        };
        let iss = claims["iss"].as_str();
        let Some(provider) = self
            .providers
            .iter()
            .find(|p| Some(p.cfg.issuer.as_str()) == iss)
        else {
            let configured = self.issuers();
            let why = match &claims["iss"] {
                Value::Null => format!("the token has no iss; configured: {configured}"),
                Value::String(i) => {
                    format!("iss {i} differs from every configured issuer: {configured}")
                }
                other => format!("iss is not a string ({other}); configured: {configured}"),
            };
            let _ = step("iss", Err((TokenFailure::IssuerInvalid, why)));
            return Err(TokenFailure::IssuerInvalid);
        };
        if token.len() > provider.cfg.max_token_bytes {
            step(
                "present",
                Err(too_large(token.len(), provider.cfg.max_token_bytes)),
            )?;
        }
        // 2. alg in the provider's allow-list (`none` and HMAC can never be in it).
        step(
            "alg",
            if provider.algorithms.contains(&header.alg) {
                Ok(alg_name(header.alg))
            } else {
                Err(not_allowed_alg(
                    &alg_name(header.alg),
                    &provider.cfg.algorithms.join(", "),
                ))
            },
        )?;
        // 3. Signature with the key named by kid (jku, x5u and jwk headers are ignored).
        let key = provider.key_for(&kid).await;
        step(
            "key",
            match &key {
                Ok(_) => Ok(format!("kid {kid}")),
                Err(f) => Err((*f, provider.key_trouble(&kid))),
            },
        )?;
        let key = key?;
        let mut v = Validation::new(header.alg);
        v.algorithms = provider.algorithms.clone();
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let verified = jsonwebtoken::decode::<Value>(token, &key, &v).map(|d| d.claims);
        step(
            "signature",
            match &verified {
                Ok(_) => Ok(format!("valid (key {kid})")),
                Err(_) => Err((
                    TokenFailure::SignatureInvalid,
                    format!(
                        "does not verify with the key {kid} of {}",
                        provider.cfg.issuer
                    ),
                )),
            },
        )?;
        let claims = verified.map_err(|_| TokenFailure::SignatureInvalid)?;
        // 4. iss exact.
        step(
            "iss",
            if claims["iss"].as_str() == Some(provider.cfg.issuer.as_str()) {
                Ok(provider.cfg.issuer.clone())
            } else {
                Err((
                    TokenFailure::IssuerInvalid,
                    format!("expected {}", provider.cfg.issuer),
                ))
            },
        )?;
        // 5. exp and nbf, both required, numbers, with leeway.
        let now = chrono::Utc::now().timestamp();
        let leeway = provider.cfg.leeway_secs as i64;
        let times = (|| {
            let (exp, nbf) = (&claims["exp"], &claims["nbf"]);
            if exp.is_null() || nbf.is_null() {
                let missing = if exp.is_null() { "exp" } else { "nbf" };
                return Err((TokenFailure::ClaimMissing, format!("no {missing} claim")));
            }
            let (Some(exp), Some(nbf)) = (exp.as_f64(), nbf.as_f64()) else {
                return Err((
                    TokenFailure::ClaimNotNumeric,
                    format!("exp {exp}, nbf {nbf}: both must be NumericDate seconds"),
                ));
            };
            let (exp, nbf) = (exp as i64, nbf as i64);
            if exp + leeway < now {
                return Err((
                    TokenFailure::Expired,
                    format!(
                        "expired {} ago (exp {}), beyond the leeway of {leeway} s",
                        span(now - exp),
                        instant(exp)
                    ),
                ));
            }
            if nbf - leeway > now {
                return Err((
                    TokenFailure::NotYetValid,
                    format!(
                        "valid only in {} (nbf {}), beyond the leeway of {leeway} s",
                        span(nbf - now),
                        instant(nbf)
                    ),
                ));
            }
            Ok(if exp >= now {
                format!("expires in {} (exp {})", span(exp - now), instant(exp))
            } else {
                format!(
                    "expired {} ago (exp {}), within the leeway of {leeway} s",
                    span(now - exp),
                    instant(exp)
                )
            })
        })();
        step("exp/nbf", times)?;
        // 6. tid allowed and consistent with the issuer's tenant.
        let tid = claims["tid"].as_str().map(str::to_string);
        let tenants = &provider.cfg.tenants;
        let issuer_tenant = issuer_tenant(&provider.cfg.issuer);
        let tenant = (|| {
            let shown = tid.as_deref().unwrap_or("(none)");
            if !tenants.is_empty() && !tid.as_ref().is_some_and(|t| tenants.contains(t)) {
                return Err((
                    TokenFailure::TenantInvalid,
                    format!("tid {shown}; accepted: {}", tenants.join(", ")),
                ));
            }
            match (&issuer_tenant, &tid) {
                (Some(it), Some(t)) if it != t => Err((
                    TokenFailure::TenantInvalid,
                    format!("tid {t} differs from the issuer's tenant {it}"),
                )),
                (Some(it), None) if !tenants.is_empty() => Err((
                    TokenFailure::TenantInvalid,
                    format!("no tid; the issuer's tenant is {it}"),
                )),
                _ => Ok(shown.to_string()),
            }
        })();
        step("tid", tenant)?;
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
                Ok(auds.join(", "))
            } else {
                Err((
                    TokenFailure::AudienceInvalid,
                    format!(
                        "aud {}; accepted: {}",
                        or_none(&auds.join(", ")),
                        provider.cfg.audiences.join(", ")
                    ),
                ))
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
                Ok(app
                    .clone()
                    .unwrap_or_else(|| "(none; any app is accepted)".into()))
            } else {
                Err((
                    TokenFailure::AppNotAllowed,
                    format!(
                        "azp/appid {}; accepted: {}",
                        app.as_deref().unwrap_or("(none)"),
                        provider.cfg.apps.join(", ")
                    ),
                ))
            },
        )?;
        // 9. Required roles.
        let roles: Vec<&str> = claims["roles"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let missing: Vec<&str> = provider
            .cfg
            .roles
            .iter()
            .map(String::as_str)
            .filter(|r| !roles.contains(r))
            .collect();
        step(
            "roles",
            if missing.is_empty() {
                Ok(or_none(&roles.join(", ")).to_string())
            } else {
                Err((
                    TokenFailure::RoleMissing,
                    format!(
                        "lacks {}; the token has: {}",
                        missing.join(", "),
                        or_none(&roles.join(", "))
                    ),
                ))
            },
        )?;
        Ok(Verified {
            issuer: provider.cfg.issuer.clone(),
            app,
            tenant: tid,
            subject: claims["sub"].as_str().map(str::to_string),
        })
    }

    /// The configured issuers, as `explain` names them.
    fn issuers(&self) -> String {
        self.providers
            .iter()
            .map(|p| p.cfg.issuer.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every algorithm some provider allows.
    fn allowed_algorithms(&self) -> String {
        let mut all: Vec<&str> = self
            .providers
            .iter()
            .flat_map(|p| p.cfg.algorithms.iter().map(String::as_str))
            .collect();
        all.sort_unstable();
        all.dedup();
        all.join(", ")
    }
}

/// A failed check: its code, and what was expected against what the token holds.
type Refusal = (TokenFailure, String);

fn too_large(len: usize, max: usize) -> Refusal {
    (
        TokenFailure::TooLarge,
        format!("{len} bytes, over the limit of {max}"),
    )
}

fn not_allowed_alg(alg: &str, allowed: &str) -> Refusal {
    (
        TokenFailure::AlgorithmNotAllowed,
        format!("alg {alg}; allowed: {allowed}"),
    )
}

/// An algorithm as JWTs spell it (`RS256`): jsonwebtoken's variants are named so.
fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "(none)"
    } else {
        s
    }
}

/// A NumericDate as UTC time.
fn instant(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{secs} (out of range)"))
}

/// A duration for people: `45 s`, `1 h 5 min`, `3 d 2 h`.
fn span(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
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
            allow_insecure_http: false,
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
    fn keys_come_over_https_unless_plain_http_is_allowed_explicitly() {
        let mut cfg: JwtProviderConfig = serde_json::from_value(serde_json::json!({
            "issuer": "http://127.0.0.1:8080/tenant/v2.0",
            "audiences": ["api://signrelay"],
        }))
        .unwrap();
        assert!(!cfg.allow_insecure_http, "off unless written");
        let err = cfg.validate("p").unwrap_err();
        assert!(
            err.starts_with("p.issuer http://127.0.0.1:8080/tenant/v2.0 is not https"),
            "{err}"
        );
        assert!(err.contains("allow_insecure_http = true"), "{err}");
        cfg.allow_insecure_http = true;
        assert_eq!(cfg.validate("p"), Ok(()));
        assert!(cfg.secure_url("http://idp.example/keys").is_ok());
        for never in ["file:///etc/keys", "ftp://idp.example/keys", "not a url"] {
            assert!(cfg.secure_url(never).is_err(), "{never}");
        }
        cfg.allow_insecure_http = false;
        cfg.issuer = "https://login.microsoftonline.com/t/v2.0".into();
        assert_eq!(cfg.validate("p"), Ok(()));
        assert!(cfg
            .secure_url("http://login.microsoftonline.com/keys")
            .is_err());
    }

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(span(45), "45 s");
        assert_eq!(span(3605), "1 h 0 min");
        assert_eq!(span(125), "2 min 5 s");
        assert_eq!(span(2 * 86_400 + 7200), "2 d 2 h");
        assert_eq!(alg_name(Algorithm::RS256), "RS256");
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
