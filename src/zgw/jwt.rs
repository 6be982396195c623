//! ZGW JWTs: HS256 over the client secret, claims as the ZGW standard prescribes. A token is
//! reused until it is `max_age` old, so a busy relay signs about once per interval.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ZgwClaims {
    pub iss: String,
    pub iat: i64,
    pub client_id: String,
    pub user_id: String,
    pub user_representation: String,
}

pub struct ZgwJwt {
    client_id: String,
    user_id: String,
    user_representation: String,
    key: EncodingKey,
    max_age: Duration,
    cached: Mutex<Option<(String, Instant)>>,
}

impl ZgwJwt {
    pub fn new(
        client_id: &str,
        secret: &str,
        user_id: &str,
        user_representation: &str,
        max_age: Duration,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            user_id: user_id.into(),
            user_representation: user_representation.into(),
            key: EncodingKey::from_secret(secret.as_bytes()),
            max_age,
            cached: Mutex::new(None),
        }
    }

    /// A valid token; `iat` is the caller's idea of "now" at the NRC (see `NrcClock`).
    pub fn token(&self, iat: i64) -> String {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((tok, at)) = cached.as_ref() {
            if at.elapsed() < self.max_age {
                return tok.clone();
            }
        }
        let claims = ZgwClaims {
            iss: self.client_id.clone(),
            iat,
            client_id: self.client_id.clone(),
            user_id: self.user_id.clone(),
            user_representation: self.user_representation.clone(),
        };
        let tok = encode(&Header::default(), &claims, &self.key).expect("HS256 signing");
        *cached = Some((tok.clone(), Instant::now()));
        tok
    }

    /// Forgets the cached token, e.g. after the NRC refused it.
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
