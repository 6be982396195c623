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

/// How signrelay identifies itself to a ZGW component (NRC, ZRC, DRC): the Applicatie's
/// client id and secret, and the user it acts as. The NRC's is the default for the others.
#[derive(Debug, Clone)]
pub struct ZgwIdentity {
    pub client_id: String,
    pub secret: crate::secret::Secret,
    pub user_id: String,
    pub user_representation: String,
    /// A token is reused until it is this old.
    pub max_age: Duration,
}

impl ZgwIdentity {
    /// The same identity with another component's client id and secret, where configured.
    pub fn with_client(
        &self,
        client_id: Option<&str>,
        secret: Option<&crate::secret::Secret>,
    ) -> ZgwIdentity {
        ZgwIdentity {
            client_id: client_id.unwrap_or(&self.client_id).to_string(),
            secret: secret.unwrap_or(&self.secret).clone(),
            ..self.clone()
        }
    }

    /// A token maker; fails when the secret does not resolve.
    pub fn jwt(&self) -> anyhow::Result<ZgwJwt> {
        Ok(ZgwJwt::new(
            &self.client_id,
            &self.secret.resolve()?,
            &self.user_id,
            &self.user_representation,
            self.max_age,
        ))
    }
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
