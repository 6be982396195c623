//! The Documenten API (DRC) and the one Zaken API (ZRC) call the documents step makes, as Open
//! Zaak answers them: every PATCH under a lock is a new version, `integriteit` is stored as
//! sent, auth failures are 403, a 400's specific code is in `invalidParams[].code`, parts
//! (`bestandsdelen`) are PUT as multipart with the lock.

use std::path::Path;
use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::jwt::ZgwJwt;
use super::nrc::{retry_after, without_url};

/// Most of an error body kept for the dead letters.
const BODY_KEEP: usize = 4096;

/// An `enkelvoudiginformatieobject`, the fields the documents step reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Eio {
    pub url: String,
    pub versie: u32,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub integriteit: Option<Integriteit>,
    #[serde(default)]
    pub bestandsomvang: Option<u64>,
    #[serde(default)]
    pub bestandsnaam: Option<String>,
    #[serde(default)]
    pub bestandsdelen: Vec<Bestandsdeel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integriteit {
    #[serde(default)]
    pub algoritme: String,
    #[serde(default)]
    pub waarde: String,
    #[serde(default)]
    pub datum: Option<String>,
}

impl Integriteit {
    /// The SHA-256 of a file as the Documenten API writes it.
    pub fn sha_256(hex: &str, datum: chrono::NaiveDate) -> Integriteit {
        Integriteit {
            algoritme: "sha_256".into(),
            waarde: hex.to_string(),
            datum: Some(datum.format("%Y-%m-%d").to_string()),
        }
    }

    pub fn is_sha_256_of(&self, hex: &str) -> bool {
        self.algoritme == "sha_256" && self.waarde.eq_ignore_ascii_case(hex)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Bestandsdeel {
    pub url: String,
    pub volgnummer: u32,
    pub omvang: u64,
    #[serde(default)]
    pub voltooid: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DrcError {
    /// Worth trying again later: 5xx, 408, 429, timeouts, connection errors.
    #[error("{message}")]
    Unavailable {
        retry_after: Option<Duration>,
        message: String,
    },
    /// The component refused the request as it is: its status, the specific code of its
    /// problem (`invalidParams[0].code`, else `code`), and its body.
    #[error("{component} answered {status} ({code})")]
    Refused {
        component: &'static str,
        status: u16,
        code: String,
        body: String,
    },
}

impl DrcError {
    pub fn code(&self) -> Option<&str> {
        match self {
            DrcError::Refused { code, .. } => Some(code),
            DrcError::Unavailable { .. } => None,
        }
    }
}

/// What a `zaakinformatieobject` create did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linked {
    Created,
    /// The zaak and the document were linked already (`unique`).
    Existed,
}

pub struct DrcClient {
    http: reqwest::Client,
    drc: ZgwJwt,
    zrc: ZgwJwt,
    request_timeout: Duration,
    upload_timeout: Duration,
    /// Requests by component, operation and result (`ok`, `4xx`, `5xx`, `unreachable`).
    requests: Option<prometheus::IntCounterVec>,
}

impl DrcClient {
    /// `request_timeout` bounds each small call, `upload_timeout` a PATCH with content or one
    /// part.
    pub fn new(
        drc: ZgwJwt,
        zrc: ZgwJwt,
        request_timeout: Duration,
        upload_timeout: Duration,
    ) -> anyhow::Result<DrcClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(request_timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("signrelay/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(DrcClient {
            http,
            drc,
            zrc,
            request_timeout,
            upload_timeout,
            requests: None,
        })
    }

    /// Counts every request in `requests` (labels: component, operation, result).
    pub fn counted(mut self, requests: prometheus::IntCounterVec) -> DrcClient {
        self.requests = Some(requests);
        self
    }

    fn count(&self, component: &str, op: &str, result: &str) {
        if let Some(c) = &self.requests {
            c.with_label_values(&[component, op, result]).inc();
        }
    }

    fn drc_auth(&self) -> String {
        format!("Bearer {}", self.drc.token(chrono::Utc::now().timestamp()))
    }

    fn zrc_auth(&self) -> String {
        format!("Bearer {}", self.zrc.token(chrono::Utc::now().timestamp()))
    }

    pub async fn get(&self, url: &str) -> Result<Eio, DrcError> {
        let req = self.http.get(url).header(AUTHORIZATION, self.drc_auth());
        self.json(req, self.request_timeout, ("DRC", "get")).await
    }

    /// `POST {eio}/lock`: the lock id.
    pub async fn lock(&self, url: &str) -> Result<String, DrcError> {
        #[derive(Deserialize)]
        struct Lock {
            lock: String,
        }
        let req = self
            .http
            .post(format!("{url}/lock"))
            .header(AUTHORIZATION, self.drc_auth());
        let l: Lock = self
            .json(req, self.request_timeout, ("DRC", "lock"))
            .await?;
        Ok(l.lock)
    }

    /// `POST {eio}/unlock` with signrelay's lock.
    pub async fn unlock(&self, url: &str, lock: &str) -> Result<(), DrcError> {
        let req = self
            .http
            .post(format!("{url}/unlock"))
            .header(AUTHORIZATION, self.drc_auth())
            .json(&json!({ "lock": lock }));
        self.empty(req, self.request_timeout, ("DRC", "unlock"))
            .await
    }

    /// `PATCH {eio}` with `body` (which carries the lock): a new version.
    pub async fn patch(&self, url: &str, body: &Value) -> Result<Eio, DrcError> {
        let req = self
            .http
            .patch(url)
            .header(AUTHORIZATION, self.drc_auth())
            .json(body);
        self.json(req, self.upload_timeout, ("DRC", "patch")).await
    }

    /// `PUT {bestandsdeel}`: `len` bytes of `file` from `offset`, streamed, as the multipart
    /// field `inhoud`, with the lock.
    pub async fn put_part(
        &self,
        part_url: &str,
        lock: &str,
        file: &Path,
        offset: u64,
        len: u64,
    ) -> Result<Bestandsdeel, DrcError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(|e| local(format!("staged file: {e}")))?;
        f.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| local(format!("staged file: {e}")))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 64 * 1024);
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
                .file_name("deel.bin")
                .mime_str("application/octet-stream")
                .expect("a valid mime type");
        let form = reqwest::multipart::Form::new()
            .part("inhoud", part)
            .text("lock", lock.to_string());
        let req = self
            .http
            .put(part_url)
            .header(AUTHORIZATION, self.drc_auth())
            .multipart(form);
        self.json(req, self.upload_timeout, ("DRC", "part")).await
    }

    /// `POST {drc}/enkelvoudiginformatieobjecten`.
    pub async fn create(&self, drc_base: &str, body: &Value) -> Result<Eio, DrcError> {
        let req = self
            .http
            .post(format!("{drc_base}/enkelvoudiginformatieobjecten"))
            .header(AUTHORIZATION, self.drc_auth())
            .json(body);
        self.json(req, self.upload_timeout, ("DRC", "create")).await
    }

    /// The document with this `identificatie` of `bronorganisatie`, if one exists.
    pub async fn find(
        &self,
        drc_base: &str,
        bronorganisatie: &str,
        identificatie: &str,
    ) -> Result<Option<Eio>, DrcError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum List {
            Page { results: Vec<Eio> },
            Plain(Vec<Eio>),
        }
        let req = self
            .http
            .get(format!("{drc_base}/enkelvoudiginformatieobjecten"))
            .query(&[
                ("bronorganisatie", bronorganisatie),
                ("identificatie", identificatie),
            ])
            .header(AUTHORIZATION, self.drc_auth());
        let list: List = self
            .json(req, self.request_timeout, ("DRC", "find"))
            .await?;
        let mut found = match list {
            List::Page { results } => results,
            List::Plain(v) => v,
        };
        Ok(found.pop())
    }

    /// `POST {zrc}/zaakinformatieobjecten`: links a document to a zaak.
    pub async fn link(
        &self,
        zrc_base: &str,
        zaak: &str,
        informatieobject: &str,
        titel: &str,
    ) -> Result<Linked, DrcError> {
        let req = self
            .http
            .post(format!("{zrc_base}/zaakinformatieobjecten"))
            .header(AUTHORIZATION, self.zrc_auth())
            .json(&json!({ "zaak": zaak, "informatieobject": informatieobject, "titel": titel }));
        match self.empty(req, self.request_timeout, ("ZRC", "link")).await {
            Ok(()) => Ok(Linked::Created),
            Err(DrcError::Refused {
                status: 400, code, ..
            }) if code == "unique" => Ok(Linked::Existed),
            Err(e) => Err(e),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
        (component, op): (&'static str, &'static str),
    ) -> Result<T, DrcError> {
        let resp = self.send(req, timeout, (component, op)).await?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| transport(component, &e))?;
        serde_json::from_slice(&body).map_err(|e| DrcError::Unavailable {
            retry_after: None,
            message: format!("{component} answered {status} with an unreadable body: {e}"),
        })
    }

    async fn empty(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
        call: (&'static str, &'static str),
    ) -> Result<(), DrcError> {
        self.send(req, timeout, call).await.map(drop)
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
        (component, op): (&'static str, &'static str),
    ) -> Result<reqwest::Response, DrcError> {
        let resp = match req.timeout(timeout).send().await {
            Ok(r) => r,
            Err(e) => {
                self.count(component, op, "unreachable");
                return Err(transport(component, &e));
            }
        };
        let status = resp.status();
        let class = match status.as_u16() {
            200..=299 => "ok",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.count(component, op, class);
        if status.is_success() {
            return Ok(resp);
        }
        if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
            // Perhaps a token aged out there: the next call signs a new one.
            self.drc.invalidate();
            self.zrc.invalidate();
        }
        let headers = resp.headers().clone();
        let code = status.as_u16();
        if status.is_server_error() || code == 408 || code == 429 {
            return Err(DrcError::Unavailable {
                retry_after: retry_after(&headers),
                message: format!("{component} answered {code}"),
            });
        }
        let body = resp.text().await.unwrap_or_default();
        let body: String = body.chars().take(BODY_KEEP).collect();
        Err(DrcError::Refused {
            component,
            status: code,
            code: problem_code(&body),
            body,
        })
    }
}

/// The specific code of a ZGW problem: `invalidParams[0].code` for a 400, else `code`.
fn problem_code(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return String::new();
    };
    v["invalidParams"][0]["code"]
        .as_str()
        .or_else(|| v["code"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn transport(component: &str, e: &reqwest::Error) -> DrcError {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    DrcError::Unavailable {
        retry_after: None,
        message: format!("{component} {what}: {}", without_url(e)),
    }
}

fn local(message: String) -> DrcError {
    DrcError::Unavailable {
        retry_after: None,
        message,
    }
}

/// The Documenten API's root from a document's URL (`…/enkelvoudiginformatieobjecten/{uuid}`).
pub fn drc_base(document_url: &str) -> Option<String> {
    api_root(document_url, "enkelvoudiginformatieobjecten")
}

/// The Zaken API's root from a zaak's URL (`…/zaken/{uuid}`).
pub fn zrc_base(zaak_url: &str) -> Option<String> {
    api_root(zaak_url, "zaken")
}

fn api_root(url: &str, collection: &str) -> Option<String> {
    let u = url.split(['?', '#']).next()?.trim_end_matches('/');
    let (rest, id) = u.rsplit_once('/')?;
    let (root, coll) = rest.rsplit_once('/')?;
    (coll == collection && !id.is_empty() && !root.is_empty()).then(|| root.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_come_from_the_resource_urls() {
        assert_eq!(
            drc_base("https://oz.example/documenten/api/v1/enkelvoudiginformatieobjecten/8c1e")
                .as_deref(),
            Some("https://oz.example/documenten/api/v1")
        );
        assert_eq!(
            zrc_base("https://oz.example/zaken/api/v1/zaken/2cc8/").as_deref(),
            Some("https://oz.example/zaken/api/v1")
        );
        assert_eq!(
            zrc_base("https://oz.example/zaken/api/v1/statussen/1"),
            None
        );
        assert_eq!(drc_base("https://oz.example/x"), None);
    }

    #[test]
    fn a_problem_code_is_the_specific_one() {
        let body = r#"{"code":"invalid","status":400,"invalidParams":[{"name":"nonFieldErrors","code":"existing-lock","reason":"x"}]}"#;
        assert_eq!(problem_code(body), "existing-lock");
        assert_eq!(
            problem_code(r#"{"code":"permission_denied"}"#),
            "permission_denied"
        );
        assert_eq!(problem_code("<html>"), "");
    }
}
