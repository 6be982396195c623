//! What each fuzz target feeds its input to. Shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) and the corpus regression test of the main crate
//! (`tests/fuzz_corpus.rs`), so that both exercise exactly the same calls. A harness panics
//! only where signrelay itself would.

#![allow(dead_code)]

use std::sync::OnceLock;

use signrelay::vendors::gosign::{legalbus, model, soap as gosign_soap};
use signrelay::vendors::soap;

/// The names of the targets, as in `fuzz/Cargo.toml` and `fuzz/corpus/<target>/`.
pub const TARGETS: [&str; 3] = ["gosign_json", "soap_envelope", "jwt_header_claims"];

/// Runs `data` through the harness of `target`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "gosign_json" => gosign_json(data),
        "soap_envelope" => soap_envelope(data),
        "jwt_header_claims" => jwt_header_claims(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// GoSign REST bodies, both formats: parse and normalize against a fixed path id and against
/// the id the body names (so that the fuzzer gets past the id check), then read the inline
/// documents back as the admin API does.
pub fn gosign_json(data: &[u8]) {
    let _ = model::parse_json("E", data);
    let named = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| {
            v.get("envelopeExternalId")
                .or_else(|| v.get("externalId"))
                .and_then(|id| id.as_str().map(str::to_string))
        });
    if let Some(id) = named {
        if let Ok(n) = model::parse_json(&id, data) {
            let _ = n.dedup_key();
            assert_eq!(n.envelope_id.as_str(), id);
        }
    }
    for index in 0..2 {
        let _ = model::json_document(data, index);
    }
}

/// SOAP envelopes: the bounded parse, then every operation reader that a SOAP surface
/// dispatches to (GoSign workNotification, LegalBus OperationDone), and document decoding.
pub fn soap_envelope(data: &[u8]) {
    let _ = soap::parse_tree(data);
    if let Ok(req) = soap::parse(data) {
        let op = &req.operation;
        if let Ok(n) = gosign_soap::notification(op) {
            let _ = n.dedup_key();
        }
        if let Ok(done) = legalbus::parse(op) {
            let _ = legalbus::outcome(&done);
        }
        let _ = op.child_text("userExtId");
        let _ = op.attr("fromUserExtId");
    }
    let _ = gosign_soap::xml_document(data, 0);
}

/// A single-threaded runtime for the async checks.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// signrelay's JWT checker with one provider that can never be reached: its issuer is a
/// `file:` URL, which the HTTP client refuses before any I/O, and its key refetch is limited
/// to one attempt. So every check runs up to the key lookup, without network, and a token is
/// never accepted (there is no key). The provider is chosen by `iss` and a token naming no
/// configured issuer is refused before the key lookup, so the seeds meant to reach it name
/// this issuer (`fuzz_issuer_es256`, `azure_v2_rs256`, `kid_traversal`, `jku_x5u_jwk`, …).
pub fn jwt_auth() -> &'static signrelay::auth::SurfaceAuth {
    static AUTH: OnceLock<signrelay::auth::SurfaceAuth> = OnceLock::new();
    AUTH.get_or_init(|| {
        let provider = serde_json::json!({
            "issuer": "file:///signrelay-fuzz/idp",
            "audiences": ["api://signrelay"],
            "algorithms": ["RS256", "RS384", "PS256", "ES256", "ES384"],
            "tenants": ["72f988bf-86f1-41af-91ab-2d7cd011db47"],
            "apps": ["gosign"],
            "roles": ["GoSign.Notify"],
            "unknown_kid_refetch_secs": 1_000_000_000u64,
            "max_token_bytes": 8192
        });
        let cfg: signrelay::auth::AuthConfig =
            serde_json::from_value(serde_json::json!({"method": "jwt", "providers": [provider]}))
                .expect("jwt auth config");
        cfg.build(None).expect("jwt auth builds")
    })
}

/// Basic credentials, for the same header parsing.
fn basic_auth() -> &'static signrelay::auth::SurfaceAuth {
    static AUTH: OnceLock<signrelay::auth::SurfaceAuth> = OnceLock::new();
    AUTH.get_or_init(|| {
        let cfg: signrelay::auth::AuthConfig = serde_json::from_value(
            serde_json::json!({"method": "basic", "username": "gosign", "password": "s3cret"}),
        )
        .expect("basic auth config");
        cfg.build(None).expect("basic auth builds")
    })
}

/// JWT headers and claims as signrelay reads them (jsonwebtoken's header decoding and its
/// unverified claims decoding), the whole check path of signrelay's JWT authentication up to
/// the key lookup, and the `Authorization` header parsing of the Bearer and Basic methods.
pub fn jwt_header_claims(data: &[u8]) {
    use actix_web::http::header::{HeaderValue, AUTHORIZATION};
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = jsonwebtoken::decode_header(token);
        let _ = jsonwebtoken::dangerous::insecure_decode_claims::<serde_json::Value>(token);
    }
    let mut values: Vec<Vec<u8>> = vec![data.to_vec()];
    let mut bearer = b"Bearer ".to_vec();
    bearer.extend_from_slice(data);
    values.push(bearer);
    for value in values {
        let Ok(v) = HeaderValue::from_bytes(&value) else {
            continue;
        };
        let req = actix_web::test::TestRequest::default()
            .insert_header((AUTHORIZATION, v))
            .to_http_request();
        for auth in [jwt_auth(), basic_auth()] {
            let checked = runtime().block_on(auth.check(&req));
            if auth.method() == "jwt" {
                assert!(checked.is_err(), "a token was accepted without any key");
            }
        }
    }
}
