//! An identity-provider stand-in shaped like Entra ID (Azure AD), for the JWT tests.
//!
//! A real HTTP server on 127.0.0.1 serving, for any tenant `{t}`:
//! - `/{t}/v2.0/.well-known/openid-configuration`: the v2.0 issuer `{base}/{t}/v2.0` (as
//!   `https://login.microsoftonline.com/{tid}/v2.0`), keys at `/{t}/discovery/v2.0/keys`;
//! - `/{t}/.well-known/openid-configuration`: a v1-style issuer `{base}/{t}/` (as
//!   `https://sts.windows.net/{tid}/`), keys at `/{t}/discovery/keys`.
//!
//! It counts requests per path (so a test can assert exactly one JWKS fetch, or none at all
//! to an attacker's server), rotates keys, can redirect its JWKS elsewhere, go down (503 for
//! everything) or stop (connections refused). Next to the signing keys its JWKS always holds
//! keys an IdP may publish that must never be trusted: a symmetric (`oct`) key and an RSA key
//! for encryption.
//!
//! RSA keys (2048 bits, what Entra uses and what the rust_crypto backend of jsonwebtoken is
//! happy with) are generated once per test binary, in parallel; with `[profile.dev.package."*"]
//! opt-level = 1` the three take about a second on two cores.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

/// The tenant (`tid`) the stand-in's issuers name by default.
pub const TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// An RSA signing key of the test: the private half for signing, the public half as a JWK.
pub struct TestKey {
    pub kid: &'static str,
    pub encoding: EncodingKey,
    /// `{kty: RSA, use: sig, alg: RS256, kid, n, e}`, base64url without padding.
    pub jwk: Value,
    /// The public key as PKCS#1 PEM: what an HS256 key-confusion attack uses as its secret.
    pub public_pem: String,
}

/// The test binary's keys.
pub struct TestKeys {
    /// Published from the start.
    pub primary: TestKey,
    /// Published only after a rotation.
    pub rotated: TestKey,
    /// Never published by the trusted IdP.
    pub attacker: TestKey,
}

/// The keys, generated on first use (blocking: call it before spawning anything that runs on
/// the test's runtime).
pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        std::thread::scope(|s| {
            let primary = s.spawn(|| generate("key-1"));
            let rotated = s.spawn(|| generate("key-2"));
            let attacker = s.spawn(|| generate("attacker-key"));
            TestKeys {
                primary: primary.join().unwrap(),
                rotated: rotated.join().unwrap(),
                attacker: attacker.join().unwrap(),
            }
        })
    })
}

fn generate(kid: &'static str) -> TestKey {
    let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key");
    let pem = private.to_pkcs1_pem(LineEnding::LF).unwrap();
    let public_pem = private
        .to_public_key()
        .to_pkcs1_pem(LineEnding::LF)
        .unwrap();
    TestKey {
        kid,
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("jsonwebtoken takes the key"),
        jwk: json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid,
            "n": b64url(&private.n().to_bytes_be()),
            "e": b64url(&private.e().to_bytes_be()),
        }),
        public_pem,
    }
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An RS256 token signed by `key`, naming its `kid`.
pub fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.to_string());
    sign_with(key, &header, claims)
}

/// A token with this exact header, signed by `key`.
pub fn sign_with(key: &TestKey, header: &Header, claims: &Value) -> String {
    jsonwebtoken::encode(header, claims, &key.encoding).expect("signing")
}

/// `header.claims.signature` from raw JSON and signature bytes (for headers jsonwebtoken
/// cannot write, such as `alg: none`).
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        b64url(signature)
    )
}

#[derive(Default)]
struct State {
    base: String,
    /// The published signing keys (JWKs).
    keys: Vec<Value>,
    down: bool,
    jwks_redirect: Option<String>,
    hits: HashMap<String, usize>,
}

/// The stand-in; stops when dropped.
pub struct Idp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub tenant: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

impl Idp {
    /// Starts with the primary key published.
    pub async fn start() -> Idp {
        Self::start_with(&[&keys().primary]).await
    }

    pub async fn start_with(published: &[&TestKey]) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(Mutex::new(State {
            base: base.clone(),
            keys: published.iter().map(|k| k.jwk.clone()).collect(),
            ..State::default()
        }));
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(serve))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Idp {
            base,
            tenant: TENANT.into(),
            state,
            handle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The v2.0 issuer, `{base}/{tenant}/v2.0`.
    pub fn issuer_v2(&self) -> String {
        format!("{}/{}/v2.0", self.base, self.tenant)
    }

    /// The v1-style issuer, `{base}/{tenant}/` (trailing slash, as sts.windows.net).
    pub fn issuer_v1(&self) -> String {
        format!("{}/{}/", self.base, self.tenant)
    }

    pub fn jwks_path_v2(&self) -> String {
        format!("/{}/discovery/v2.0/keys", self.tenant)
    }

    pub fn jwks_path_v1(&self) -> String {
        format!("/{}/discovery/keys", self.tenant)
    }

    pub fn jwks_uri_v2(&self) -> String {
        format!("{}{}", self.base, self.jwks_path_v2())
    }

    /// Publishes exactly these signing keys from now on (a rotation).
    pub fn publish(&self, keys: &[&TestKey]) {
        self.lock().keys = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// Down: every request (counted) gets 503.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// The JWKS answers `302 Found` to this URL.
    pub fn redirect_jwks(&self, to: Option<String>) {
        self.lock().jwks_redirect = to;
    }

    /// Requests to this exact path so far.
    pub fn hits(&self, path: &str) -> usize {
        self.lock().hits.get(path).copied().unwrap_or(0)
    }

    /// JWKS requests so far, v1 and v2 paths.
    pub fn jwks_fetches(&self) -> usize {
        self.hits(&self.jwks_path_v2()) + self.hits(&self.jwks_path_v1())
    }

    /// Every request so far, by path.
    pub fn all_hits(&self) -> HashMap<String, usize> {
        self.lock().hits.clone()
    }

    pub fn total_hits(&self) -> usize {
        self.lock().hits.values().sum()
    }

    /// Stops listening: from now on connections are refused.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        // Not awaited: the test's runtime may be ending.
        drop(self.handle.stop(false));
    }
}

async fn serve(req: HttpRequest, st: web::Data<Arc<Mutex<State>>>) -> HttpResponse {
    let path = req.path().to_string();
    let mut st = st.lock().unwrap_or_else(|p| p.into_inner());
    *st.hits.entry(path.clone()).or_default() += 1;
    if st.down {
        return HttpResponse::ServiceUnavailable().body("down for maintenance");
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let base = st.base.clone();
    let metadata = |issuer: String, jwks_uri: String, t: &str| {
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/authorize"),
            "token_endpoint": format!("{base}/{t}/oauth2/v2.0/token"),
            "jwks_uri": jwks_uri,
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": "EU",
        })
    };
    match segments.as_slice() {
        [t, "v2.0", ".well-known", "openid-configuration"] => HttpResponse::Ok().json(metadata(
            format!("{base}/{t}/v2.0"),
            format!("{base}/{t}/discovery/v2.0/keys"),
            t,
        )),
        [t, ".well-known", "openid-configuration"] => HttpResponse::Ok().json(metadata(
            format!("{base}/{t}/"),
            format!("{base}/{t}/discovery/keys"),
            t,
        )),
        [_, "discovery", "v2.0", "keys"] | [_, "discovery", "keys"] => {
            if let Some(to) = &st.jwks_redirect {
                return HttpResponse::Found()
                    .insert_header(("Location", to.as_str()))
                    .finish();
            }
            let mut published = st.keys.clone();
            // What an IdP may publish that must never be trusted for signatures.
            published
                .push(json!({"kty": "oct", "kid": "symmetric", "k": b64url(b"a shared secret")}));
            let mut enc = keys().attacker.jwk.clone();
            enc["kid"] = json!("encryption");
            enc["use"] = json!("enc");
            published.push(enc);
            HttpResponse::Ok().json(json!({ "keys": published }))
        }
        _ => HttpResponse::NotFound().finish(),
    }
}
