//! The one receive pipeline every vendor callback goes through: authenticate → bounded read →
//! the surface's parse → record or quarantine → an answer in the vendor's own contract. A
//! surface supplies only its parse ([`Surface`]) and its answers ([`Answers`]).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::auth::{AuthFailure, SurfaceAuth};
use crate::event::{dedup_key, Caller, DocumentRef, FollowUp, NewEvent, Outcome};
use crate::event::{TransactionId, Vendor};
use crate::http::body::{BodyError, BodyLimits};
use crate::intake::Intake;
use crate::store::{NewQuarantine, RawPayload};

/// What one inbound surface shares between its requests: who it is, how its callers
/// authenticate, how its bodies are bounded, and where callbacks are recorded.
pub struct Inlet {
    pub vendor: Vendor,
    /// Its name in metrics, logs and events, e.g. `gosign.rest`.
    pub surface: &'static str,
    pub auth: SurfaceAuth,
    pub body: BodyLimits,
    pub intake: Intake,
    /// A secret path segment (`{token}` in the route) for vendors that sign nothing: its
    /// SHA-256, compared in constant time with the presented segment's.
    pub path_token: Option<[u8; 32]>,
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

impl Inlet {
    /// Requires the route's `{token}` segment to be `token`.
    pub fn with_path_token(mut self, token: &str) -> Inlet {
        self.path_token = Some(sha256(token.as_bytes()));
        self
    }

    /// Authenticates a request (counted by surface and result); a refusal comes with the
    /// `WWW-Authenticate` challenge for it.
    pub async fn authenticate(
        &self,
        req: &HttpRequest,
    ) -> Result<Caller, (AuthFailure, Option<String>)> {
        if let Some(expected) = &self.path_token {
            use subtle::ConstantTimeEq;
            let presented = sha256(req.match_info().get("token").unwrap_or("").as_bytes());
            if !bool::from(presented.ct_eq(expected)) {
                self.count("unauthorized");
                self.intake
                    .metrics
                    .auth_failures
                    .with_label_values(&[self.surface, "path_token_invalid"])
                    .inc();
                tracing::warn!(
                    surface = self.surface,
                    reason = "path_token_invalid",
                    "caller refused"
                );
                return Err((AuthFailure::Invalid, None));
            }
        }
        match self
            .auth
            .authenticate(req, self.surface, &self.intake.metrics)
            .await
        {
            Ok(c) => Ok(c),
            Err(f) => {
                self.count("unauthorized");
                Err((f, self.auth.challenge(f)))
            }
        }
    }

    fn count(&self, result: &str) {
        self.intake
            .metrics
            .callback(self.vendor.as_str(), self.surface, result);
    }
}

/// A callback, normalized by its surface.
#[derive(Debug, Clone)]
pub struct Callback {
    pub transaction_id: TransactionId,
    pub outcome: Outcome,
    /// When the vendor says it happened, if it says.
    pub occurred_at: Option<DateTime<Utc>>,
    /// Identifies the same delivery arriving again (see `crate::event::dedup_key`).
    pub dedup_key: String,
    pub documents: Vec<DocumentRef>,
    /// A vendor job to run before the outcome is relayed.
    pub follow_up: Option<FollowUp>,
}

/// What a surface made of a request body.
pub enum Parsed {
    Callback(Callback),
    /// A callback that can never be processed: kept in the quarantine (once per route and
    /// body), answered [`Answers::discarded`]. The reason names fields, never their values.
    Unprocessable(String),
    /// Not a callback (a status query, a broken envelope): answered as is, nothing recorded.
    Answer(HttpResponse),
}

/// A vendor's answers, one for each way a callback can end.
pub trait Answers {
    fn unauthorized(&self, failure: AuthFailure, challenge: Option<String>) -> HttpResponse;
    fn too_large(&self, limit_bytes: usize) -> HttpResponse;
    /// The body did not arrive completely (client gone, broken stream, too slow).
    fn incomplete(&self) -> HttpResponse;
    /// Durable (or durable before: a duplicate).
    fn recorded(&self) -> HttpResponse;
    /// Quarantined: the vendor should not send it again.
    fn discarded(&self, reason: &str) -> HttpResponse;
    /// The store could not take the callback now: the vendor should retry.
    fn not_recorded(&self) -> HttpResponse;
    /// The store could not quarantine it now: the vendor should retry too.
    fn not_quarantined(&self) -> HttpResponse {
        self.not_recorded()
    }
}

/// One callback route of a vendor.
// actix runs each worker's handlers on one thread: their futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Surface: 'static {
    type Answers: Answers;
    /// The content type assumed when the request names none.
    const CONTENT_TYPE: &'static str;
    fn inlet(&self) -> &Inlet;
    /// The answers for this request, chosen before its body is read (e.g. by SOAP version).
    fn answers(&self, req: &HttpRequest) -> Self::Answers;
    /// Parses and normalizes a body that passed authentication and the size bounds; may
    /// refine the answers (the envelope's own SOAP version).
    async fn parse(&self, req: &HttpRequest, body: &Bytes, answers: &mut Self::Answers) -> Parsed;
    /// What is archived of a body: all of it, unless the vendor puts credentials in it.
    fn archived(&self, body: &Bytes) -> Bytes {
        body.clone()
    }
}

/// The actix handler of a callback route: `web::post().to(receive::<MySurface>)`.
pub async fn receive<S: Surface>(
    req: HttpRequest,
    payload: web::Payload,
    surface: web::Data<S>,
) -> HttpResponse {
    let s = surface.get_ref();
    let inlet = s.inlet();
    let mut answers = s.answers(&req);
    let caller = match inlet.authenticate(&req).await {
        Ok(c) => c,
        Err((failure, challenge)) => return answers.unauthorized(failure, challenge),
    };
    let body = match inlet.body.read(&req, payload).await {
        Ok(b) => b,
        Err(BodyError::TooLarge { limit }) => {
            // Not a success: the vendor retries, so nothing is lost while the limit is raised.
            inlet.count("too_large");
            return answers.too_large(limit);
        }
        Err(BodyError::Incomplete) => return answers.incomplete(),
        Err(BodyError::Unavailable) => {
            inlet.count("retry_later");
            return answers.not_recorded();
        }
    };
    let parsed = s.parse(&req, &body.bytes, &mut answers).await;
    let raw = || {
        let bytes = s.archived(&body.bytes);
        // A spooled body becomes its payload's file, unless the surface archives other bytes.
        let same = bytes.as_ptr() == body.bytes.as_ptr() && bytes.len() == body.bytes.len();
        RawPayload {
            content_type: req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(S::CONTENT_TYPE)
                .to_string(),
            bytes,
            spooled: body.spooled.clone().filter(|_| same),
        }
    };
    match parsed {
        Parsed::Answer(response) => response,
        Parsed::Callback(c) => {
            let event = NewEvent {
                vendor: inlet.vendor,
                transaction_id: c.transaction_id,
                outcome: c.outcome,
                occurred_at: c.occurred_at,
                surface: inlet.surface,
                dedup_key: c.dedup_key,
                documents: c.documents,
                caller,
                follow_up: c.follow_up,
            };
            match inlet.intake.record(event, raw()).await {
                Ok(_) => answers.recorded(),
                Err(_) => answers.not_recorded(),
            }
        }
        Parsed::Unprocessable(reason) => {
            let raw = raw();
            // The same bytes to the same (decoded) path are one callback, however often
            // retried and however the path was encoded.
            let path = percent_encoding::percent_decode_str(req.path()).collect::<Vec<u8>>();
            let key = dedup_key(&[inlet.surface.as_bytes(), &path, &raw.bytes]);
            let entry = NewQuarantine {
                vendor: inlet.vendor,
                surface: inlet.surface,
                reason: reason.clone(),
                caller,
                dedup_key: key,
            };
            match inlet.intake.quarantine(entry, raw).await {
                Ok(_) => answers.discarded(&reason),
                Err(_) => answers.not_quarantined(),
            }
        }
    }
}
