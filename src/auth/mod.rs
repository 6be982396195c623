//! Per-surface inbound authentication: `none` (explicit), HTTP Basic, an api-key header, or a
//! bearer JWT from an external identity provider (`jwt.rs`). Secrets are resolved once at start
//! and kept only as SHA-256 digests; a presented credential is hashed and the two digests are
//! compared in constant time, so neither a secret's content nor its length shows in the time a
//! check takes.

pub mod jwt;

use std::sync::Arc;

use actix_web::http::header::{HeaderName, AUTHORIZATION};
use actix_web::HttpRequest;
use base64::Engine;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::event::{Caller, CallerMethod};
use crate::secret::Secret;

/// How a surface's callers prove who they are, as configured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum AuthConfig {
    /// No authentication; must be chosen explicitly.
    None,
    Basic {
        username: String,
        password: Secret,
    },
    ApiKey {
        /// Header that carries the key, e.g. `X-Api-Key`.
        header: String,
        key: Secret,
    },
    /// `Authorization: Bearer` JWTs from one or more identity providers.
    Jwt {
        providers: Vec<jwt::JwtProviderConfig>,
    },
}

impl AuthConfig {
    /// The error for a surface whose `auth` is missing: every method, `none` only explicitly.
    pub fn not_set(name: &str) -> String {
        format!("{name} is not set: choose basic, api-key, jwt, or (explicitly) none")
    }

    pub fn validate(&self, name: &str) -> Result<(), String> {
        match self {
            AuthConfig::None => Ok(()),
            AuthConfig::Basic { username, password } => {
                if username.is_empty() || username.contains(':') {
                    return Err(format!("{name}.username must be non-empty without ':'"));
                }
                let p = password
                    .resolve()
                    .map_err(|e| format!("{name}.password: {e}"))?;
                if p.is_empty() {
                    return Err(format!("{name}.password is empty"));
                }
                Ok(())
            }
            AuthConfig::ApiKey { header, key } => {
                HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("{name}.header is not a valid header name"))?;
                let k = key.resolve().map_err(|e| format!("{name}.key: {e}"))?;
                if k.len() < 16 {
                    return Err(format!("{name}.key must be at least 16 characters"));
                }
                Ok(())
            }
            AuthConfig::Jwt { providers } => {
                if providers.is_empty() {
                    return Err(format!("{name}.providers must list at least one provider"));
                }
                for (i, p) in providers.iter().enumerate() {
                    p.validate(&format!("{name}.providers[{i}]"))?;
                }
                Ok(())
            }
        }
    }

    pub fn redacted(&self) -> serde_json::Value {
        match self {
            AuthConfig::None => serde_json::json!({"method": "none"}),
            AuthConfig::Basic { username, password } => {
                serde_json::json!({"method": "basic", "username": username, "password": password.redacted()})
            }
            AuthConfig::ApiKey { header, key } => {
                serde_json::json!({"method": "api-key", "header": header, "key": key.redacted()})
            }
            AuthConfig::Jwt { providers } => {
                serde_json::json!({"method": "jwt", "providers": providers})
            }
        }
    }

    /// Resolves secrets into a checker. Call after `validate`. JWT key caches start empty:
    /// run each provider's `refresh_loop` (the pool of `build_shared` lists them) to fill them.
    pub fn build(
        &self,
        metrics: Option<Arc<crate::telemetry::Metrics>>,
    ) -> anyhow::Result<SurfaceAuth> {
        self.build_shared(metrics, &mut jwt::ProviderPool::default())
    }

    /// As `build`, with JWT providers shared through `pool` by the surfaces of one service;
    /// the pool then lists each provider once, for its refresh task.
    pub fn build_shared(
        &self,
        metrics: Option<Arc<crate::telemetry::Metrics>>,
        pool: &mut jwt::ProviderPool,
    ) -> anyhow::Result<SurfaceAuth> {
        Ok(match self {
            AuthConfig::None => SurfaceAuth::None,
            AuthConfig::Basic { username, password } => SurfaceAuth::Basic {
                username: username.clone(),
                user_digest: Digest::of(username.as_bytes()),
                password: Digest::of(password.resolve()?.as_bytes()),
            },
            AuthConfig::ApiKey { header, key } => SurfaceAuth::ApiKey {
                header: HeaderName::from_bytes(header.as_bytes())?,
                key: Digest::of(key.resolve()?.as_bytes()),
            },
            AuthConfig::Jwt { providers } => {
                SurfaceAuth::Jwt(Arc::new(jwt::JwtAuth::from_pool(providers, metrics, pool)?))
            }
        })
    }
}

/// A secret as its SHA-256 digest. `subtle`'s `ct_eq` returns at once when the lengths differ,
/// so comparing a presented credential with the secret itself would tell the secret's length;
/// two digests always have the same length, and a digest tells nothing of the secret's.
#[derive(Clone, PartialEq, Eq)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest(sha2::Sha256::digest(bytes).into())
    }

    /// Whether `presented` is the secret, in time independent of both.
    pub fn matches(&self, presented: &[u8]) -> subtle::Choice {
        Digest::of(presented).0.ct_eq(&self.0)
    }

    /// What is kept of the secret: 32 bytes, whatever its length.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A surface's resolved authentication.
#[derive(Clone)]
pub enum SurfaceAuth {
    None,
    Basic {
        /// The name a successful caller is recorded as.
        username: String,
        user_digest: Digest,
        password: Digest,
    },
    ApiKey {
        header: HeaderName,
        key: Digest,
    },
    Jwt(Arc<jwt::JwtAuth>),
}

impl std::fmt::Debug for SurfaceAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.method())
    }
}

/// Why a caller was refused; `code()` is stable for metrics and clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Malformed,
    Invalid,
    /// A bearer token failed one of the JWT checks.
    Token(jwt::TokenFailure),
}

impl AuthFailure {
    pub fn code(self) -> &'static str {
        match self {
            AuthFailure::Missing => "credentials_missing",
            AuthFailure::Malformed => "credentials_malformed",
            AuthFailure::Invalid => "credentials_invalid",
            AuthFailure::Token(t) => t.code(),
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            AuthFailure::Missing => "no credentials were presented",
            AuthFailure::Malformed => "the credentials could not be parsed",
            AuthFailure::Invalid => "the credentials are not valid",
            AuthFailure::Token(t) => t.detail(),
        }
    }
}

impl SurfaceAuth {
    pub fn method(&self) -> &'static str {
        match self {
            SurfaceAuth::None => "none",
            SurfaceAuth::Basic { .. } => "basic",
            SurfaceAuth::ApiKey { .. } => "api-key",
            SurfaceAuth::Jwt(_) => "jwt",
        }
    }

    /// The `WWW-Authenticate` challenge for a 401 (RFC 6750 error codes for bearer tokens).
    pub fn challenge(&self, failure: AuthFailure) -> Option<String> {
        match self {
            SurfaceAuth::Basic { .. } => {
                Some("Basic realm=\"signrelay\", charset=\"UTF-8\"".into())
            }
            SurfaceAuth::ApiKey { .. } => Some("ApiKey realm=\"signrelay\"".into()),
            SurfaceAuth::Jwt(_) => Some(match failure {
                AuthFailure::Token(jwt::TokenFailure::Missing) | AuthFailure::Missing => {
                    "Bearer realm=\"signrelay\"".into()
                }
                f => format!(
                    "Bearer realm=\"signrelay\", error=\"invalid_token\", error_description=\"{}\"",
                    f.detail()
                ),
            }),
            SurfaceAuth::None => None,
        }
    }

    /// `check`, counted in the metrics by surface and result. Every surface calls this.
    pub async fn authenticate(
        &self,
        req: &HttpRequest,
        surface: &'static str,
        metrics: &crate::telemetry::Metrics,
    ) -> Result<Caller, AuthFailure> {
        let result = self.check(req).await;
        match &result {
            Ok(_) => metrics
                .auth_successes
                .with_label_values(&[surface, self.method()])
                .inc(),
            Err(f) => {
                metrics
                    .auth_failures
                    .with_label_values(&[surface, f.code()])
                    .inc();
                tracing::warn!(
                    surface,
                    method = self.method(),
                    reason = f.code(),
                    "caller refused"
                );
            }
        }
        result
    }

    pub async fn check(&self, req: &HttpRequest) -> Result<Caller, AuthFailure> {
        match self {
            SurfaceAuth::None => Ok(Caller {
                method: CallerMethod::None,
                ..Caller::default()
            }),
            SurfaceAuth::Jwt(j) => {
                let value = match req.headers().get(AUTHORIZATION) {
                    None => return Err(AuthFailure::Token(jwt::TokenFailure::Missing)),
                    Some(v) => v
                        .to_str()
                        .map_err(|_| AuthFailure::Token(jwt::TokenFailure::Malformed))?,
                };
                let (scheme, token) = value
                    .split_once(' ')
                    .ok_or(AuthFailure::Token(jwt::TokenFailure::Malformed))?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(AuthFailure::Token(jwt::TokenFailure::Missing));
                }
                j.verify(token.trim()).await.map_err(AuthFailure::Token)
            }
            SurfaceAuth::ApiKey { header, key } => {
                let presented = req.headers().get(header).ok_or(AuthFailure::Missing)?;
                if bool::from(key.matches(presented.as_bytes())) {
                    Ok(Caller {
                        method: CallerMethod::ApiKey,
                        principal: Some(header.as_str().to_string()),
                        ..Caller::default()
                    })
                } else {
                    Err(AuthFailure::Invalid)
                }
            }
            SurfaceAuth::Basic {
                username,
                user_digest,
                password,
            } => {
                let value = req
                    .headers()
                    .get(AUTHORIZATION)
                    .ok_or(AuthFailure::Missing)?;
                let value = value.to_str().map_err(|_| AuthFailure::Malformed)?;
                let (scheme, b64) = value.split_once(' ').ok_or(AuthFailure::Malformed)?;
                if !scheme.eq_ignore_ascii_case("basic") {
                    return Err(AuthFailure::Missing);
                }
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|_| AuthFailure::Malformed)?;
                let colon = decoded
                    .iter()
                    .position(|&b| b == b':')
                    .ok_or(AuthFailure::Malformed)?;
                let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
                // Both compared, always, so timing does not tell which one was wrong.
                let user_ok = user_digest.matches(user);
                let pass_ok = password.matches(pass);
                if bool::from(user_ok & pass_ok) {
                    Ok(Caller {
                        method: CallerMethod::Basic,
                        principal: Some(username.clone()),
                        ..Caller::default()
                    })
                } else {
                    Err(AuthFailure::Invalid)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use actix_web::test::TestRequest;

    fn basic() -> SurfaceAuth {
        AuthConfig::Basic {
            username: "gosign".into(),
            password: Secret::Inline("s3cret".into()),
        }
        .build(None)
        .unwrap()
    }

    fn header(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[actix_web::test]
    async fn basic_accepts_only_the_exact_pair() {
        let ok = TestRequest::default()
            .insert_header((AUTHORIZATION, header("gosign", "s3cret")))
            .to_http_request();
        assert_eq!(
            basic().check(&ok).await.unwrap().principal.as_deref(),
            Some("gosign")
        );
        for (u, p) in [
            ("gosign", "s3cre"),
            ("gosig", "s3cret"),
            ("gosign", "s3cret "),
        ] {
            let r = TestRequest::default()
                .insert_header((AUTHORIZATION, header(u, p)))
                .to_http_request();
            assert_eq!(basic().check(&r).await, Err(AuthFailure::Invalid));
        }
        let none = TestRequest::default().to_http_request();
        assert_eq!(basic().check(&none).await, Err(AuthFailure::Missing));
        let junk = TestRequest::default()
            .insert_header((AUTHORIZATION, "Basic %%%"))
            .to_http_request();
        assert_eq!(basic().check(&junk).await, Err(AuthFailure::Malformed));
    }

    #[actix_web::test]
    async fn api_key_header_is_compared() {
        let auth = AuthConfig::ApiKey {
            header: "X-Api-Key".into(),
            key: Secret::Inline("0123456789abcdef".into()),
        }
        .build(None)
        .unwrap();
        let ok = TestRequest::default()
            .insert_header(("X-Api-Key", "0123456789abcdef"))
            .to_http_request();
        assert!(auth.check(&ok).await.is_ok());
        let bad = TestRequest::default()
            .insert_header(("X-Api-Key", "0123456789abcdeX"))
            .to_http_request();
        assert_eq!(auth.check(&bad).await, Err(AuthFailure::Invalid));
    }

    /// Only a fixed-length digest of a secret is kept and compared: a key of 16 characters and
    /// one of 200 leave the same 32 bytes, so a comparison's time cannot depend on the length
    /// (`ct_eq` on the raw secret returned early for a presented value of another length).
    #[actix_web::test]
    async fn secrets_are_kept_and_compared_as_fixed_length_digests() {
        let short = "0123456789abcdef";
        let long = "k".repeat(200);
        for key in [short, long.as_str()] {
            let auth = AuthConfig::ApiKey {
                header: "X-Api-Key".into(),
                key: Secret::Inline(key.into()),
            }
            .build(None)
            .unwrap();
            let SurfaceAuth::ApiKey { key: kept, .. } = &auth else {
                panic!("{auth:?}");
            };
            assert_eq!(kept.as_bytes().len(), 32);
            assert_ne!(kept.as_bytes(), &key.as_bytes()[..32.min(key.len())]);
            // Presented values of every length, a prefix and an extension included.
            let extended = format!("{key}x");
            for presented in ["", &key[..1], &key[..key.len() - 1], key, extended.as_str()] {
                let r = TestRequest::default()
                    .insert_header(("X-Api-Key", presented))
                    .to_http_request();
                let want = if presented == key {
                    Ok(())
                } else {
                    Err(AuthFailure::Invalid)
                };
                assert_eq!(auth.check(&r).await.map(|_| ()), want, "{presented:?}");
            }
        }
        let SurfaceAuth::Basic {
            user_digest,
            password,
            ..
        } = basic()
        else {
            panic!()
        };
        assert_eq!(
            (user_digest.as_bytes().len(), password.as_bytes().len()),
            (32, 32)
        );
    }
}
