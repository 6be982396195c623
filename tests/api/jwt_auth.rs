use crate::helpers::*;
use crate::idp::{b64url, keys, raw_token, sign, sign_with, Idp, TENANT};

// Inbound authentication, black-box over HTTP: bearer JWTs from an identity provider (a real
// HTTP discovery + JWKS stand-in, `idp.rs`, with RSA keys generated in the test) on the GoSign
// REST and SOAP surfaces and the admin API; the `jwt explain` and `check-config` commands; and
// the Basic and api-key cases no other test file covers (REST workability routes, the SOAP
// status request, the admin API with Basic).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use signrelay::auth::jwt::JwtProviderConfig;
use signrelay::auth::AuthConfig;
use signrelay::config::Secret;

const WAIT: Duration = Duration::from_secs(5);
const OTHER_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const AUDIENCE: &str = "api://signrelay";
/// GoSign's app registration (client id): `azp` in v2 tokens, `appid` in v1 tokens.
const GOSIGN_APP: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
const ROLE: &str = "GoSign.Notify";
/// The challenge when no bearer token was presented (RFC 6750 3.1: no error code).
const BARE: &str = r#"Bearer realm="signrelay""#;
const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const WKNOTIF: &str = "http://www.infocert.it/smartsign/schema/wknotif";

// ---------------------------------------------------------------------------------------------
// Tokens and configuration

/// A provider as the README configures Entra: one tenant, GoSign's app, its role.
fn provider(issuer: &str) -> JwtProviderConfig {
    JwtProviderConfig {
        issuer: issuer.into(),
        audiences: vec![AUDIENCE.into()],
        algorithms: vec!["RS256".into()],
        tenants: vec![TENANT.into()],
        apps: vec![GOSIGN_APP.into()],
        roles: vec![ROLE.into()],
        leeway_secs: 60,
        refresh_secs: 3600,
        unknown_kid_refetch_secs: 300,
        max_token_bytes: 8192,
        // The IdP stand-in serves plain HTTP on loopback.
        allow_insecure_http: true,
    }
}

fn jwt(providers: Vec<JwtProviderConfig>) -> AuthConfig {
    AuthConfig::Jwt { providers }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The claims of a v2.0 app token (client credentials) as Entra issues it for GoSign.
fn claims(issuer: &str) -> Value {
    let now = now();
    json!({
        "aud": AUDIENCE,
        "iss": issuer,
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 3600,
        "azp": GOSIGN_APP,
        "azpacr": "1",
        "oid": "b5d1b3e4-7f3a-4c5e-9a0b-2d4f6e8a1c3e",
        "roles": [ROLE],
        "sub": "b5d1b3e4-7f3a-4c5e-9a0b-2d4f6e8a1c3e",
        "tid": TENANT,
        "uti": "AbCdEfGhIjKlMnOpQrStUv",
        "ver": "2.0",
    })
}

/// The claims of a v1.0 app token: `appid` instead of `azp`.
fn v1_claims(issuer: &str) -> Value {
    let mut c = claims(issuer);
    let m = c.as_object_mut().unwrap();
    m.remove("azp");
    m.remove("azpacr");
    m.insert("appid".into(), json!(GOSIGN_APP));
    m.insert("appidacr".into(), json!("1"));
    m.insert("ver".into(), json!("1.0"));
    c
}

/// `c` with these claims set (`Value::Null`: removed).
fn with(mut c: Value, edits: &[(&str, Value)]) -> Value {
    let m = c.as_object_mut().unwrap();
    for (k, v) in edits {
        if v.is_null() {
            m.remove(*k);
        } else {
            m.insert(k.to_string(), v.clone());
        }
    }
    c
}

/// Signed by the primary (published) key.
fn token(claims: &Value) -> String {
    sign(&keys().primary, claims)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn header_with(alg: Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    h
}

// ---------------------------------------------------------------------------------------------
// Expected answers (the wire contract, spelled out here on purpose)

fn detail(code: &str) -> &'static str {
    match code {
        "token_missing" => "no bearer token was presented",
        "token_too_large" => "the token exceeds the size limit",
        "token_malformed" => "the token is not a well-formed JWT",
        "alg_not_allowed" => "the token's alg is not allowed",
        "unknown_kid" => "the token's kid is not among the provider's keys",
        "keys_unavailable" => "the identity provider's keys are not available",
        "signature_invalid" => "the token's signature is invalid",
        "issuer_invalid" => "the token's iss is not a trusted issuer",
        "exp_or_nbf_missing" => "the token lacks exp or nbf",
        "exp_or_nbf_not_numeric" => "the token's exp or nbf is not a number",
        "token_expired" => "the token has expired",
        "token_not_yet_valid" => "the token is not valid yet (nbf)",
        "tenant_invalid" => "the token's tenant (tid) is not allowed",
        "audience_invalid" => "the token's aud is not accepted",
        "app_not_allowed" => "the calling app (azp/appid) is not allowed",
        "role_missing" => "the token lacks a required role",
        "credentials_missing" => "no credentials were presented",
        "credentials_invalid" => "the credentials are not valid",
        "credentials_malformed" => "the credentials could not be parsed",
        other => panic!("unknown code {other}"),
    }
}

/// The `WWW-Authenticate` of a refused bearer token (RFC 6750 3.1).
fn challenge(code: &str) -> String {
    match code {
        "token_missing" => BARE.into(),
        c => format!(
            r#"Bearer realm="signrelay", error="invalid_token", error_description="{}""#,
            detail(c)
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Spawning and calling

/// Waits until `pred` holds for the value of a metric (0 when absent); returns it.
async fn wait_metric(
    app: &TestApp,
    name: &str,
    labels: &[(&str, &str)],
    pred: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = counter(&app.metrics().await, name, labels);
        if pred(v) {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{name}{labels:?} stayed at {v}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A counter's value in the Prometheus text, 0 when the series is absent.
fn counter(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(text, name, labels).unwrap_or(0.0)
}

const FETCHES: &str = "signrelay_jwks_fetches_total";
const FAILURES: &str = "signrelay_auth_failures_total";

/// Waits until the app has fetched `issuer`'s keys `n` times successfully.
async fn wait_keys(app: &TestApp, issuer: &str, n: f64) {
    wait_metric(app, FETCHES, &[("issuer", issuer), ("result", "ok")], |v| {
        v >= n
    })
    .await;
}

/// signrelay with these JWT providers on the GoSign REST surface, once it holds their keys.
async fn rest_app(providers: Vec<JwtProviderConfig>) -> TestApp {
    keys();
    let issuers: Vec<String> = providers.iter().map(|p| p.issuer.clone()).collect();
    let app = spawn_app_with(|c| c.vendors.gosign.rest.auth = Some(jwt(providers))).await;
    for i in &issuers {
        wait_keys(&app, i, 1.0).await;
    }
    app
}

/// A call to the GoSign REST surface with this `Authorization` (if any): status, headers, JSON.
async fn rest_call(
    app: &TestApp,
    route: &str,
    authorization: Option<&str>,
    body: Option<String>,
) -> (u16, HeaderMap, Value) {
    let url = app.url(&format!("/gosign/rest{route}"));
    let mut req = match body {
        Some(b) => app
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .body(b),
        None => app.client.get(url),
    };
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, h, v)
}

/// Posts a SIGN_PROCESS_ENDED notification for `tx`.
async fn notify(app: &TestApp, tx: &str, authorization: Option<&str>) -> (u16, HeaderMap, Value) {
    let body = work(tx, "SIGN_PROCESS_ENDED").to_string();
    rest_call(
        app,
        &format!("/envelopes/{tx}/notify"),
        authorization,
        Some(body),
    )
    .await
}

async fn accepted(app: &TestApp, tx: &str, token: &str) {
    let (status, _, answer) = notify(app, tx, Some(&bearer(token))).await;
    assert_eq!(
        (status, answer),
        (200, json!({"outcome": "succeeded"})),
        "{tx}"
    );
}

/// Refused on notify and on the status ping: 401, the challenge, `{error, detail}`.
async fn assert_refused(app: &TestApp, tx: &str, authorization: Option<&str>, code: &str) {
    for route in ["notify", "status"] {
        let (status, h, answer) = if route == "notify" {
            notify(app, tx, authorization).await
        } else {
            rest_call(app, "/status", authorization, None).await
        };
        assert_eq!(status, 401, "{route} expecting {code}: {answer}");
        assert_eq!(
            answer,
            json!({"error": code, "detail": detail(code)}),
            "{route}"
        );
        assert_eq!(
            header_of(&h, "www-authenticate"),
            challenge(code),
            "{route}"
        );
    }
}

/// The one event recorded for `tx`.
async fn event_of(app: &TestApp, tx: &str) -> Value {
    let ev = app.wait_events(tx, WAIT, |ev| !ev.is_empty()).await;
    assert_eq!(ev.len(), 1, "{ev:#?}");
    ev[0].clone()
}

fn jwt_caller(issuer: &str) -> Value {
    json!({"method": "jwt", "principal": GOSIGN_APP, "issuer": issuer, "tenant": TENANT})
}

// ---------------------------------------------------------------------------------------------
// Accepted

#[tokio::test]
async fn a_valid_token_is_accepted_and_its_caller_recorded() {
    let idp = Idp::start().await;
    let issuer = idp.issuer_v2();
    let app = rest_app(vec![provider(&issuer)]).await;
    let fetched = idp.jwks_fetches();
    let tx = "ENV-JWT-OK";
    let r = app.register(tx, "zaak-jwt").await;
    assert_eq!(r.status().as_u16(), 201);

    accepted(&app, tx, &token(&claims(&issuer))).await;
    let e = event_of(&app, tx).await;
    assert_eq!(e["caller"], jwt_caller(&issuer), "{e}");
    assert_eq!(e["surface"], "gosign.rest");
    let (s, one) = app
        .admin_get(&format!("/api/v1/events/{}", e["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, 200);
    assert_eq!(one["caller"], jwt_caller(&issuer));
    let got = app.nrc.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["kenmerken"]["transaction_id"], tx);

    // Within the leeway, with `aud` as a list, and on the ping and workability routes.
    let now = now();
    for (i, c) in [
        with(claims(&issuer), &[("exp", json!(now - 30))]),
        with(claims(&issuer), &[("nbf", json!(now + 30))]),
        with(
            claims(&issuer),
            &[("aud", json!(["api://something-else", AUDIENCE]))],
        ),
        with(
            claims(&issuer),
            &[
                ("roles", json!(["Other.Role", ROLE])),
                ("exp", json!(now as f64 + 60.5)),
            ],
        ),
    ]
    .iter()
    .enumerate()
    {
        accepted(&app, &format!("ENV-JWT-OK-{i}"), &token(c)).await;
    }
    let auth = bearer(&token(&claims(&issuer)));
    let (s, _, v) = rest_call(&app, "/status", Some(&auth), None).await;
    assert_eq!((s, v), (200, json!({"online": true})));
    let (s, _, v) = rest_call(
        &app,
        "/envelopes/ENV-JWT-OK/managers/abianchi/status",
        Some(&auth),
        None,
    )
    .await;
    assert_eq!((s, v["workable"].clone()), (200, json!(true)));

    let m = app.metrics().await;
    assert_eq!(
        counter(
            &m,
            "signrelay_auth_successes_total",
            &[("surface", "gosign.rest"), ("method", "jwt")]
        ),
        7.0,
        "{m}"
    );
    assert_eq!(counter(&m, FAILURES, &[("surface", "gosign.rest")]), 0.0);
    // Discovered once (openidconnect reads the JWKS then too), keys fetched once at start:
    assert_eq!(
        idp.hits(&format!("/{TENANT}/v2.0/.well-known/openid-configuration")),
        1
    );
    assert_eq!(
        idp.jwks_fetches(),
        fetched,
        "verified from the cache ever since"
    );
}

// ---------------------------------------------------------------------------------------------
// Refused, each with the first failed check

#[tokio::test]
async fn forged_and_invalid_tokens_are_refused_with_the_first_failed_check() {
    let idp = Idp::start().await;
    let issuer = idp.issuer_v2();
    let app = rest_app(vec![provider(&issuer)]).await;
    let fetched = idp.jwks_fetches();
    let k = keys();
    let good = claims(&issuer);
    let now = now();
    let valid = token(&good);
    let parts: Vec<&str> = valid.split('.').collect();

    let primary_header = json!({"alg": "RS256", "typ": "JWT", "kid": k.primary.kid});
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(
            with(good.clone(), &[("azp", json!("someone-else"))])
                .to_string()
                .as_bytes()
        ),
        parts[2]
    );
    let hs256_confusion = jsonwebtoken::encode(
        &header_with(Algorithm::HS256, k.primary.kid),
        &good,
        &EncodingKey::from_secret(k.primary.public_pem.as_bytes()),
    )
    .unwrap();
    let hs256_jwk_n = jsonwebtoken::encode(
        &header_with(Algorithm::HS256, k.primary.kid),
        &good,
        &EncodingKey::from_secret(k.primary.jwk["n"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    let rs512 = sign_with(
        &k.primary,
        &header_with(Algorithm::RS512, k.primary.kid),
        &good,
    );
    let foreign_key = sign_with(
        &k.attacker,
        &header_with(Algorithm::RS256, k.primary.kid),
        &good,
    );
    let oversized = token(&with(good.clone(), &[("pad", json!("x".repeat(9000)))]));
    assert!(oversized.len() > 8192);
    let t = |edits: &[(&str, Value)]| token(&with(good.clone(), edits));

    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no Authorization", None, "token_missing"),
        (
            "another scheme",
            Some(format!("Basic {}", b64url(b"gosign:secret"))),
            "token_missing",
        ),
        ("scheme only", Some("Bearer".into()), "token_malformed"),
        ("not a JWT", Some(bearer("not-a-jwt")), "token_malformed"),
        (
            "signature part stripped",
            Some(bearer(&format!("{}.{}", parts[0], parts[1]))),
            "token_malformed",
        ),
        ("oversized", Some(bearer(&oversized)), "token_too_large"),
        (
            "alg none",
            Some(bearer(&raw_token(
                &json!({"alg": "none", "typ": "JWT", "kid": k.primary.kid}),
                &good,
                b"",
            ))),
            "alg_not_allowed",
        ),
        (
            "alg nOnE with the real signature",
            Some(bearer(&format!(
                "{}.{}.{}",
                b64url(
                    json!({"alg": "nOnE", "kid": k.primary.kid})
                        .to_string()
                        .as_bytes()
                ),
                parts[1],
                parts[2]
            ))),
            "alg_not_allowed",
        ),
        (
            "HS256 keyed with the public key PEM",
            Some(bearer(&hs256_confusion)),
            "alg_not_allowed",
        ),
        (
            "HS256 keyed with the JWK modulus",
            Some(bearer(&hs256_jwk_n)),
            "alg_not_allowed",
        ),
        (
            "RS512, not in the allow-list",
            Some(bearer(&rs512)),
            "alg_not_allowed",
        ),
        (
            "tampered payload",
            Some(bearer(&tampered)),
            "signature_invalid",
        ),
        (
            "signature emptied",
            Some(bearer(&format!("{}.{}.", parts[0], parts[1]))),
            "signature_invalid",
        ),
        (
            "unsigned with the trusted kid",
            Some(bearer(&raw_token(&primary_header, &good, b""))),
            "signature_invalid",
        ),
        (
            "signed by another key under the trusted kid",
            Some(bearer(&foreign_key)),
            "signature_invalid",
        ),
        (
            "wrong issuer",
            Some(bearer(&t(&[("iss", json!("https://evil.example/v2.0"))]))),
            "issuer_invalid",
        ),
        (
            // Refused by its issuer before any key is looked up: no refetch for its kid.
            "another identity provider's token, its own key and kid",
            Some(bearer(&sign(
                &k.attacker,
                &with(good.clone(), &[("iss", json!("https://evil.example/v2.0"))]),
            ))),
            "issuer_invalid",
        ),
        (
            "v1 issuer where v2 is configured",
            Some(bearer(&t(&[("iss", json!(idp.issuer_v1()))]))),
            "issuer_invalid",
        ),
        (
            "issuer with a trailing slash",
            Some(bearer(&t(&[("iss", json!(format!("{issuer}/")))]))),
            "issuer_invalid",
        ),
        (
            "no iss",
            Some(bearer(&t(&[("iss", Value::Null)]))),
            "issuer_invalid",
        ),
        (
            "expired",
            Some(bearer(&t(&[("exp", json!(now - 3600))]))),
            "token_expired",
        ),
        (
            "expired beyond the leeway",
            Some(bearer(&t(&[("exp", json!(now - 90))]))),
            "token_expired",
        ),
        (
            "nbf in the future",
            Some(bearer(&t(&[("nbf", json!(now + 3600))]))),
            "token_not_yet_valid",
        ),
        (
            "exp as a string",
            Some(bearer(&t(&[("exp", json!((now + 3600).to_string()))]))),
            "exp_or_nbf_not_numeric",
        ),
        (
            "nbf as a string",
            Some(bearer(&t(&[("nbf", json!((now - 10).to_string()))]))),
            "exp_or_nbf_not_numeric",
        ),
        (
            "no exp",
            Some(bearer(&t(&[("exp", Value::Null)]))),
            "exp_or_nbf_missing",
        ),
        (
            "no nbf",
            Some(bearer(&t(&[("nbf", Value::Null)]))),
            "exp_or_nbf_missing",
        ),
        (
            "another tenant",
            Some(bearer(&t(&[("tid", json!(OTHER_TENANT))]))),
            "tenant_invalid",
        ),
        (
            "no tid",
            Some(bearer(&t(&[("tid", Value::Null)]))),
            "tenant_invalid",
        ),
        (
            "another audience",
            Some(bearer(&t(&[("aud", json!("api://other"))]))),
            "audience_invalid",
        ),
        (
            "audience list without ours",
            Some(bearer(&t(&[("aud", json!(["api://other", GOSIGN_APP]))]))),
            "audience_invalid",
        ),
        (
            "no aud",
            Some(bearer(&t(&[("aud", Value::Null)]))),
            "audience_invalid",
        ),
        (
            "another app",
            Some(bearer(&t(&[("azp", json!("some-other-app"))]))),
            "app_not_allowed",
        ),
        (
            "no azp",
            Some(bearer(&t(&[("azp", Value::Null)]))),
            "app_not_allowed",
        ),
        (
            "another role",
            Some(bearer(&t(&[("roles", json!(["GoSign.Read"]))]))),
            "role_missing",
        ),
        (
            "no roles",
            Some(bearer(&t(&[("roles", Value::Null)]))),
            "role_missing",
        ),
        // Several checks fail: the first one is named.
        (
            "expired, other tenant, other audience",
            Some(bearer(&t(&[
                ("exp", json!(now - 3600)),
                ("tid", json!(OTHER_TENANT)),
                ("aud", json!("api://other")),
            ]))),
            "token_expired",
        ),
        (
            "wrong issuer and expired",
            Some(bearer(&t(&[
                ("iss", json!("https://evil.example/v2.0")),
                ("exp", json!(now - 3600)),
            ]))),
            "issuer_invalid",
        ),
        (
            "tampered and expired",
            Some(bearer(&format!(
                "{}.{}.{}",
                parts[0],
                b64url(
                    with(good.clone(), &[("exp", json!(now - 3600))])
                        .to_string()
                        .as_bytes()
                ),
                parts[2]
            ))),
            "signature_invalid",
        ),
    ];
    let tx = "ENV-JWT-FORGED";
    let mut expected: HashMap<&str, f64> = HashMap::new();
    for (what, authorization, code) in &cases {
        println!("{what}");
        assert_refused(&app, tx, authorization.as_deref(), code).await;
        *expected.entry(*code).or_default() += 2.0;
    }

    // Refused calls record nothing, and forged tokens naming the known kid fetch nothing.
    assert!(app.events(&format!("transaction_id={tx}")).await.is_empty());
    let (_, q) = app.admin_get("/api/v1/quarantine").await;
    assert_eq!(q["quarantine"], json!([]));
    assert_eq!(idp.jwks_fetches(), fetched);
    let m = app.metrics().await;
    for (code, n) in &expected {
        assert_eq!(
            counter(
                &m,
                FAILURES,
                &[("surface", "gosign.rest"), ("reason", code)]
            ),
            *n,
            "{code}"
        );
    }
    assert_eq!(
        counter(
            &m,
            "signrelay_callbacks_total",
            &[("surface", "gosign.rest"), ("result", "unauthorized")]
        ),
        2.0 * cases.len() as f64
    );
    // The same app accepts the genuine token.
    accepted(&app, tx, &valid).await;
    assert_eq!(event_of(&app, tx).await["caller"], jwt_caller(&issuer));
}

// ---------------------------------------------------------------------------------------------
// Entra v1 and v2 issuers

#[tokio::test]
async fn v1_and_v2_issuers_are_told_apart() {
    let idp = Idp::start().await;
    let (v2, v1) = (idp.issuer_v2(), idp.issuer_v1());
    // The v1 provider checks no tenant list: `tid` must still match its issuer's tenant.
    let mut p1 = provider(&v1);
    p1.tenants.clear();
    let app = rest_app(vec![provider(&v2), p1]).await;

    accepted(&app, "ENV-V2", &token(&claims(&v2))).await;
    accepted(&app, "ENV-V1", &token(&v1_claims(&v1))).await;
    assert_eq!(event_of(&app, "ENV-V2").await["caller"], jwt_caller(&v2));
    assert_eq!(event_of(&app, "ENV-V1").await["caller"], jwt_caller(&v1));

    // Each issuer is discovered at its own address, and its keys fetched once.
    assert_eq!(
        idp.hits(&format!("/{TENANT}/v2.0/.well-known/openid-configuration")),
        1
    );
    assert_eq!(
        idp.hits(&format!("/{TENANT}/.well-known/openid-configuration")),
        1
    );
    assert!(idp.hits(&idp.jwks_path_v2()) >= 1);
    assert!(idp.hits(&idp.jwks_path_v1()) >= 1);

    let cases = [
        (
            "v1 token of another tenant",
            with(v1_claims(&v1), &[("tid", json!(OTHER_TENANT))]),
            "tenant_invalid",
        ),
        (
            "v1 token from another app",
            with(v1_claims(&v1), &[("appid", json!("some-other-app"))]),
            "app_not_allowed",
        ),
        (
            "v1 issuer without its trailing slash",
            with(v1_claims(&v1), &[("iss", json!(v1.trim_end_matches('/')))]),
            "issuer_invalid",
        ),
        (
            "v2 token of another tenant",
            with(claims(&v2), &[("tid", json!(OTHER_TENANT))]),
            "tenant_invalid",
        ),
    ];
    for (what, c, code) in cases {
        println!("{what}");
        assert_refused(&app, "ENV-V-REFUSED", Some(&bearer(&token(&c))), code).await;
    }
    assert!(app.events("transaction_id=ENV-V-REFUSED").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Key rotation

#[tokio::test]
async fn unknown_kid_is_refused_then_accepted_after_rotation_with_one_fetch() {
    let idp = Idp::start().await;
    let issuer = idp.issuer_v2();
    let mut p = provider(&issuer);
    p.unknown_kid_refetch_secs = 2;
    let window = Duration::from_secs(2);
    let app = rest_app(vec![p]).await;
    let k = keys();
    let fetched = idp.jwks_fetches();
    let rotated = sign(&k.rotated, &claims(&issuer));

    // Signed by a key the IdP does not publish yet: one refetch, then refused.
    let first_refetch = Instant::now();
    assert_refused(
        &app,
        "ENV-ROT-EARLY",
        Some(&bearer(&rotated)),
        "unknown_kid",
    )
    .await;
    assert_eq!(
        idp.jwks_fetches(),
        fetched + 1,
        "one refetch for the unknown kid"
    );

    // The IdP rotates: the new key is published next to the old one. Within the refetch
    // interval the new kid is still unknown, without another fetch.
    idp.publish(&[&k.primary, &k.rotated]);
    assert_refused(
        &app,
        "ENV-ROT-EARLY",
        Some(&bearer(&rotated)),
        "unknown_kid",
    )
    .await;
    assert_eq!(idp.jwks_fetches(), fetched + 1, "rate-limited");

    // After the interval, a burst with the new key: exactly one fetch, all accepted.
    tokio::time::sleep(
        (window + Duration::from_millis(200)).saturating_sub(first_refetch.elapsed()),
    )
    .await;
    let burst_started = Instant::now();
    let calls = (0..20).map(|i| {
        let auth = bearer(&rotated);
        let app = &app;
        async move { notify(app, &format!("ENV-BURST-{i}"), Some(&auth)).await }
    });
    for (status, _, answer) in futures_util::future::join_all(calls).await {
        assert_eq!((status, answer), (200, json!({"outcome": "succeeded"})));
    }
    assert_eq!(
        idp.jwks_fetches(),
        fetched + 2,
        "exactly one fetch for the burst"
    );
    // The old key is still trusted, from the cache.
    accepted(&app, "ENV-ROT-OLD", &token(&claims(&issuer))).await;

    // A second unknown kid within the interval: refused without a fetch.
    let other = sign_with(
        &k.attacker,
        &header_with(Algorithm::RS256, "key-3"),
        &claims(&issuer),
    );
    assert_refused(&app, "ENV-ROT-LATE", Some(&bearer(&other)), "unknown_kid").await;
    assert!(
        burst_started.elapsed() < window,
        "the test was too slow to check the refetch interval ({:?})",
        burst_started.elapsed()
    );
    assert_eq!(
        idp.jwks_fetches(),
        fetched + 2,
        "no fetch within the interval"
    );

    for i in 0..20 {
        let e = event_of(&app, &format!("ENV-BURST-{i}")).await;
        assert_eq!(e["caller"], jwt_caller(&issuer));
    }
    assert!(app.events("transaction_id=ENV-ROT-EARLY").await.is_empty());
    assert!(app.events("transaction_id=ENV-ROT-LATE").await.is_empty());
    let m = app.metrics().await;
    assert_eq!(
        counter(&m, FETCHES, &[("issuer", &issuer), ("result", "ok")]),
        3.0,
        "{m}"
    );
    assert_eq!(
        counter(&m, FETCHES, &[("issuer", &issuer), ("result", "error")]),
        0.0
    );
    assert_eq!(
        counter(
            &m,
            FAILURES,
            &[("surface", "gosign.rest"), ("reason", "unknown_kid")]
        ),
        6.0
    );
}

// ---------------------------------------------------------------------------------------------
// Keys named by the token are never fetched

#[tokio::test]
async fn kid_paths_and_key_url_headers_cause_no_outbound_request() {
    let k = keys();
    let attacker = Idp::start_with(&[&k.attacker]).await;
    let idp = Idp::start().await;
    let issuer = idp.issuer_v2();
    let app = rest_app(vec![provider(&issuer)]).await;
    let fetched = idp.jwks_fetches();
    let good = claims(&issuer);
    let attacker_jwks = attacker.jwks_uri_v2();

    // Path-like and URL kids are refused without any fetch, not even from the IdP.
    for kid in [
        "../../../../etc/passwd".to_string(),
        format!("../../{}/discovery/v2.0/keys", attacker.tenant),
        attacker_jwks.clone(),
        "k".repeat(300),
    ] {
        let t = sign_with(&k.attacker, &header_with(Algorithm::RS256, &kid), &good);
        assert_refused(&app, "ENV-KID", Some(&bearer(&t)), "unknown_kid").await;
    }
    assert_eq!(
        idp.jwks_fetches(),
        fetched,
        "implausible kids cause no refetch"
    );

    // Key URLs and embedded keys in the header are ignored.
    let mut jku = header_with(Algorithm::RS256, k.attacker.kid);
    jku.jku = Some(attacker_jwks.clone());
    let t = sign_with(&k.attacker, &jku, &good);
    assert_refused(&app, "ENV-KID", Some(&bearer(&t)), "unknown_kid").await;
    assert_eq!(
        idp.jwks_fetches(),
        fetched + 1,
        "a plausible unknown kid refetches from the IdP's jwks_uri only"
    );
    let mut jku_trusted_kid = header_with(Algorithm::RS256, k.primary.kid);
    jku_trusted_kid.jku = Some(attacker_jwks.clone());
    let mut x5u = header_with(Algorithm::RS256, k.primary.kid);
    x5u.x5u = Some(format!("{}/cert.pem", attacker.base));
    let mut jwk = header_with(Algorithm::RS256, k.primary.kid);
    jwk.jwk = Some(serde_json::from_value(k.attacker.jwk.clone()).unwrap());
    for h in [jku_trusted_kid, x5u, jwk] {
        let t = sign_with(&k.attacker, &h, &good);
        assert_refused(&app, "ENV-KID", Some(&bearer(&t)), "signature_invalid").await;
    }

    assert_eq!(attacker.total_hits(), 0, "{:?}", attacker.all_hits());
    assert_eq!(idp.jwks_fetches(), fetched + 1);
    assert!(app.events("transaction_id=ENV-KID").await.is_empty());
}

#[tokio::test]
async fn jwks_redirects_are_not_followed() {
    let k = keys();
    let attacker = Idp::start_with(&[&k.attacker, &k.primary]).await;
    let idp = Idp::start().await;
    idp.redirect_jwks(Some(attacker.jwks_uri_v2()));
    let issuer = idp.issuer_v2();
    let app =
        spawn_app_with(|c| c.vendors.gosign.rest.auth = Some(jwt(vec![provider(&issuer)]))).await;
    wait_metric(
        &app,
        FETCHES,
        &[("issuer", &issuer), ("result", "error")],
        |v| v >= 1.0,
    )
    .await;

    for key in [&k.attacker, &k.primary] {
        let t = sign(key, &claims(&issuer));
        assert_refused(&app, "ENV-REDIRECT", Some(&bearer(&t)), "keys_unavailable").await;
    }
    assert!(idp.jwks_fetches() >= 1);
    assert_eq!(attacker.total_hits(), 0, "{:?}", attacker.all_hits());
    assert!(app.events("transaction_id=ENV-REDIRECT").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// The IdP down

#[tokio::test]
async fn idp_down_with_cached_keys_still_accepts() {
    let idp = Idp::start().await;
    let issuer = idp.issuer_v2();
    let app = rest_app(vec![provider(&issuer)]).await;
    let fetched = idp.jwks_fetches();

    idp.set_down(true);
    accepted(&app, "ENV-DOWN-1", &token(&claims(&issuer))).await;
    // An unknown kid tries a refetch, which fails: the cached keys are kept.
    let rotated = sign(&keys().rotated, &claims(&issuer));
    assert_refused(&app, "ENV-DOWN-X", Some(&bearer(&rotated)), "unknown_kid").await;
    assert_eq!(idp.jwks_fetches(), fetched + 1);
    accepted(&app, "ENV-DOWN-2", &token(&claims(&issuer))).await;

    // Gone altogether (connections refused): still accepted from the cache.
    idp.stop().await;
    accepted(&app, "ENV-DOWN-3", &token(&claims(&issuer))).await;

    for tx in ["ENV-DOWN-1", "ENV-DOWN-2", "ENV-DOWN-3"] {
        assert_eq!(event_of(&app, tx).await["caller"], jwt_caller(&issuer));
    }
    let m = app.metrics().await;
    assert_eq!(
        counter(&m, FETCHES, &[("issuer", &issuer), ("result", "ok")]),
        1.0
    );
    assert_eq!(
        counter(&m, FETCHES, &[("issuer", &issuer), ("result", "error")]),
        1.0
    );
}

#[tokio::test]
async fn idp_down_without_keys_refuses_with_401() {
    keys();
    let idp = Idp::start().await;
    idp.set_down(true);
    let issuer = idp.issuer_v2();
    // A second issuer where nothing listens at all.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "http://127.0.0.1:{}/{TENANT}/v2.0",
            l.local_addr().unwrap().port()
        )
    };
    let mut p = provider(&issuer);
    p.unknown_kid_refetch_secs = 1;
    let app = spawn_app_with(|c| {
        c.vendors.gosign.rest.auth = Some(jwt(vec![p, provider(&dead)]));
    })
    .await;
    for i in [&issuer, &dead] {
        wait_metric(&app, FETCHES, &[("issuer", i), ("result", "error")], |v| {
            v >= 1.0
        })
        .await;
    }

    let refused_at = Instant::now();
    assert_refused(
        &app,
        "ENV-NOKEYS",
        Some(&bearer(&token(&claims(&issuer)))),
        "keys_unavailable",
    )
    .await;
    assert_refused(
        &app,
        "ENV-NOKEYS",
        Some(&bearer(&token(&claims(&dead)))),
        "keys_unavailable",
    )
    .await;
    assert!(app.events("transaction_id=ENV-NOKEYS").await.is_empty());
    let m = app.metrics().await;
    assert_eq!(
        counter(
            &m,
            FAILURES,
            &[("surface", "gosign.rest"), ("reason", "keys_unavailable")]
        ),
        4.0
    );
    assert_eq!(
        counter(&m, FETCHES, &[("issuer", &issuer), ("result", "ok")]),
        0.0
    );

    // Back up: the next refetch (after the interval) fetches the keys; no restart needed.
    idp.set_down(false);
    tokio::time::sleep(Duration::from_millis(1200).saturating_sub(refused_at.elapsed())).await;
    accepted(&app, "ENV-NOKEYS-LATER", &token(&claims(&issuer))).await;
    assert_eq!(
        event_of(&app, "ENV-NOKEYS-LATER").await["caller"],
        jwt_caller(&issuer)
    );
}

// ---------------------------------------------------------------------------------------------
// SOAP and the admin API

const ACTIONS_RESUME: &str = "<actions>1</actions><signActions>1</signActions><approveActions>0</approveActions><viewActions>0</viewActions><viewedActions>0</viewedActions><approvedActions>0</approvedActions><initialsActions>0</initialsActions><initialedActions>0</initialedActions><signedActions>1</signedActions><confirmedActions>1</confirmedActions><graphometricActions>0</graphometricActions><filledGraphometricActions>0</filledGraphometricActions>";

/// A SOAP 1.1 workNotification (JAX-WS style), SIGN_PROCESS_ENDED.
fn work_notification(tx: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Header/><soapenv:Body><ns2:workNotification xmlns:ns2="{WKNOTIF}"><envelopeExternalId>{tx}</envelopeExternalId><notificationType>SIGN_PROCESS_ENDED</notificationType><liveStatus><stepEvent><mgrExternalId>abianchi</mgrExternalId><mgrName>Anna</mgrName><mgrSurname>Bianchi</mgrSurname><status>WKD</status><startedAt>2026-11-20T10:00:00Z</startedAt><endedAt>2026-11-20T10:05:00Z</endedAt><assignedTo>Bianchi Anna (abianchi)</assignedTo><stepNumber>1</stepNumber><actionsResume>{ACTIONS_RESUME}</actionsResume></stepEvent></liveStatus></ns2:workNotification></soapenv:Body></soapenv:Envelope>"#
    )
}

/// A getEnvelopeExternalStatusRequest (SOAP 1.1).
fn status_request(user: &str, envelope: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Body><ns2:getEnvelopeExternalStatusRequest xmlns:ns2="{WKNOTIF}"><userExtId>{user}</userExtId><envelopeExtIdList>{envelope}</envelopeExtIdList></ns2:getEnvelopeExternalStatusRequest></soapenv:Body></soapenv:Envelope>"#
    )
}

/// POSTs a SOAP 1.1 message: status, headers, body.
async fn soap_post(
    app: &TestApp,
    path: &str,
    body: String,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let mut req = app
        .client
        .post(app.url(path))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.text().await.unwrap())
}

/// The faultstring of a SOAP 1.1 Client fault.
fn client_fault(xml: &str) -> String {
    assert!(
        xml.contains("<faultcode>soap:Client</faultcode>"),
        "not a Client fault: {xml}"
    );
    let start = xml.find("<faultstring>").expect("a faultstring") + "<faultstring>".len();
    let end = xml.find("</faultstring>").unwrap();
    quick_xml::escape::unescape(&xml[start..end])
        .unwrap()
        .into_owned()
}

/// The same provider on REST and SOAP is one provider: one discovery, one JWKS fetch, one
/// refresh schedule; its token is accepted on both surfaces.
#[tokio::test]
async fn a_provider_trusted_by_two_surfaces_asks_the_idp_once() {
    let idp = Idp::start().await;
    let issuer = idp.issuer_v2();
    let app = spawn_app_with(|c| {
        c.vendors.gosign.rest.auth = Some(jwt(vec![provider(&issuer)]));
        c.vendors.gosign.soap.enabled = true;
        c.vendors.gosign.soap.auth = Some(jwt(vec![provider(&issuer)]));
    })
    .await;
    wait_keys(&app, &issuer, 1.0).await;
    // Long enough for a second refresh task's first fetch to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(idp.jwks_fetches(), 1, "{:?}", idp.all_hits());
    assert_eq!(
        idp.total_hits(),
        2,
        "discovery and JWKS: {:?}",
        idp.all_hits()
    );
    let t = token(&claims(&issuer));
    accepted(&app, "ENV-BOTH-REST", &t).await;
    let (status, _, text) = soap_post(
        &app,
        "/gosign/soap",
        work_notification("ENV-BOTH-SOAP"),
        &[("Authorization", &bearer(&t))],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("<success>true</success>"), "{text}");
    assert_eq!(idp.total_hits(), 2, "{:?}", idp.all_hits());
}

#[tokio::test]
async fn soap_surface_answers_a_fault_with_the_reason() {
    let idp = Idp::start().await;
    let issuer = idp.issuer_v2();
    let app = spawn_app_with(|c| {
        c.vendors.gosign.soap.enabled = true;
        c.vendors.gosign.soap.auth = Some(jwt(vec![provider(&issuer)]));
    })
    .await;
    wait_keys(&app, &issuer, 1.0).await;
    let tx = "ENV-SOAP-JWT";
    let expired = token(&with(claims(&issuer), &[("exp", json!(now() - 3600))]));
    let other_aud = token(&with(claims(&issuer), &[("aud", json!("api://other"))]));
    let cases: [(Option<String>, &str); 4] = [
        (None, "token_missing"),
        (Some(bearer(&expired)), "token_expired"),
        (Some(bearer(&other_aud)), "audience_invalid"),
        (Some(bearer("a.b")), "token_malformed"),
    ];
    for path in ["/gosign/soap", "/gosign/soap/events"] {
        for (authorization, code) in &cases {
            let headers: Vec<(&str, &str)> = authorization
                .as_deref()
                .map(|a| vec![("Authorization", a)])
                .unwrap_or_default();
            let (status, h, text) = soap_post(&app, path, work_notification(tx), &headers).await;
            assert_eq!(status, 401, "{path} {code}: {text}");
            assert!(
                header_of(&h, "content-type").starts_with("text/xml"),
                "{h:?}"
            );
            assert_eq!(header_of(&h, "www-authenticate"), challenge(code));
            assert_eq!(
                client_fault(&text),
                format!("authentication failed: {}", detail(code)),
                "{path}"
            );
        }
    }
    assert!(app.events(&format!("transaction_id={tx}")).await.is_empty());

    let auth = bearer(&token(&claims(&issuer)));
    let (status, _, text) = soap_post(
        &app,
        "/gosign/soap",
        work_notification(tx),
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("<success>true</success>"), "{text}");
    let e = event_of(&app, tx).await;
    assert_eq!(e["surface"], "gosign.soap");
    assert_eq!(e["caller"], jwt_caller(&issuer));

    let m = app.metrics().await;
    for (_, code) in &cases {
        assert_eq!(
            counter(
                &m,
                FAILURES,
                &[("surface", "gosign.soap"), ("reason", code)]
            ),
            1.0,
            "{code}: {m}"
        );
        assert_eq!(
            counter(
                &m,
                FAILURES,
                &[("surface", "gosign.legalbus"), ("reason", code)]
            ),
            1.0,
            "{code}"
        );
    }
}

const ADMIN_AUDIENCE: &str = "api://signrelay-admin";
const ADMIN_ROLE: &str = "Signrelay.Admin";

/// An admin API call with this `Authorization`: status, headers, JSON.
async fn admin_call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<Value>,
) -> (u16, HeaderMap, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.json().await.unwrap_or(Value::Null))
}

/// 401 as an RFC 9457 problem with the bearer challenge.
fn assert_problem(status: u16, h: &HeaderMap, v: &Value, code: &str, challenge: &str) {
    assert_eq!(status, 401, "{code}: {v}");
    assert_eq!(header_of(h, "content-type"), "application/problem+json");
    assert_eq!(header_of(h, "www-authenticate"), challenge, "{code}");
    assert_eq!(
        v,
        &json!({
            "type": format!("urn:signrelay:problem:{code}"),
            "title": "Unauthorized",
            "status": 401,
            "detail": detail(code),
        })
    );
}

#[tokio::test]
async fn admin_api_with_jwt_answers_problems() {
    let idp = Idp::start().await;
    let issuer = idp.issuer_v2();
    let mut p = provider(&issuer);
    p.audiences = vec![ADMIN_AUDIENCE.into()];
    p.apps.clear();
    p.roles = vec![ADMIN_ROLE.into()];
    let app = spawn_app_with(|c| c.admin.auth = jwt(vec![p])).await;
    wait_keys(&app, &issuer, 1.0).await;
    let admin = with(
        claims(&issuer),
        &[
            ("aud", json!(ADMIN_AUDIENCE)),
            ("azp", json!("ops-console")),
            ("roles", json!([ADMIN_ROLE])),
        ],
    );
    let tx_path = "/api/v1/transactions/gosign/tx-admin-jwt";
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "token_missing"),
        (Some(format!("X {}", token(&admin))), "token_missing"),
        // GoSign's own token is not for the admin API.
        (Some(bearer(&token(&claims(&issuer)))), "audience_invalid"),
        (
            Some(bearer(&token(&with(
                admin.clone(),
                &[("roles", json!([ROLE]))],
            )))),
            "role_missing",
        ),
        (
            Some(bearer(&token(&with(
                admin.clone(),
                &[("exp", json!(now() - 3600))],
            )))),
            "token_expired",
        ),
    ];
    for (authorization, code) in &cases {
        for (method, path, body) in [
            (reqwest::Method::GET, "/api/v1/events", None),
            (reqwest::Method::PUT, tx_path, Some(trigger("zaak-admin"))),
            (reqwest::Method::GET, tx_path, None),
        ] {
            let (s, h, v) = admin_call(&app, method, path, authorization.as_deref(), body).await;
            assert_problem(s, &h, &v, code, &challenge(code));
        }
    }

    let auth = bearer(&token(&admin));
    let get = |m| admin_call(&app, m, tx_path, Some(&auth), None);
    let (s, _, _) = get(reqwest::Method::GET).await;
    assert_eq!(s, 404, "refused PUTs registered nothing");
    let (s, _, v) = admin_call(
        &app,
        reqwest::Method::PUT,
        tx_path,
        Some(&auth),
        Some(trigger("zaak-admin")),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, _, _) = get(reqwest::Method::GET).await;
    assert_eq!(s, 200);
    let (s, _, v) = admin_call(
        &app,
        reqwest::Method::GET,
        "/api/v1/events",
        Some(&auth),
        None,
    )
    .await;
    assert_eq!((s, &v["events"]), (200, &json!([])), "{v}");

    let m = app.metrics().await;
    assert_eq!(
        counter(
            &m,
            FAILURES,
            &[("surface", "admin"), ("reason", "token_missing")]
        ),
        6.0
    );
    assert_eq!(
        counter(
            &m,
            FAILURES,
            &[("surface", "admin"), ("reason", "audience_invalid")]
        ),
        3.0
    );
    assert_eq!(
        counter(
            &m,
            "signrelay_auth_successes_total",
            &[("surface", "admin"), ("method", "jwt")]
        ),
        4.0
    );
}

// ---------------------------------------------------------------------------------------------
// The command line: `jwt explain` and `check-config`

/// A config file with JWT on the GoSign REST surface (and secrets inline).
fn cli_config(dir: &Path, providers: &[JwtProviderConfig]) -> PathBuf {
    let file = dir.join("signrelay-jwt.toml");
    let cfg = json!({
        "store": {"path": dir.join("store")},
        "nrc": {"secret": "cli-nrc-secret"},
        "admin": {"auth": {"method": "api-key", "header": "X-Api-Key", "key": ADMIN_KEY}},
        "gosign": {"rest": {"auth": {"method": "jwt", "providers": providers}}},
    });
    std::fs::write(&file, toml::to_string(&cfg).unwrap()).unwrap();
    file
}

async fn cli(args: &[&str], config: &Path, stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_signrelay"));
    cmd.args(args).arg("--config").arg(config);
    for (k, _) in std::env::vars() {
        if k.starts_with("SIGNRELAY") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("the CLI runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).await.unwrap();
    }
    drop(input);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the CLI finished in time")
        .unwrap()
}

#[tokio::test]
async fn cli_jwt_explain_prints_header_claims_and_every_check() {
    keys();
    let idp = Idp::start().await;
    let issuer = idp.issuer_v2();
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), &[provider(&issuer)]);

    let valid = token(&claims(&issuer));
    let signature = valid.rsplit('.').next().unwrap();
    let out = cli(&["jwt", "explain", &valid], &config, None).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for expected in [
        "header:\n{",
        r#""alg": "RS256""#,
        r#""kid": "key-1""#,
        "claims:\n{",
        &format!(r#""azp": "{GOSIGN_APP}""#),
        &format!(r#""tid": "{TENANT}""#),
        "gosign.rest:",
        &format!("keys of {issuer}: trusts key ids key-1"),
        "✓ present",
        "✓ header",
        "✓ alg",
        "✓ key",
        "✓ signature",
        "✓ iss",
        "✓ exp/nbf",
        "✓ tid",
        "✓ aud",
        "✓ app",
        "✓ roles",
        &format!("accepted: issuer {issuer}, app {GOSIGN_APP}, tenant {TENANT}"),
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in:\n{stdout}");
    }
    assert!(!stdout.contains('✗'), "{stdout}");
    assert!(
        !stdout.contains(signature),
        "the signature is never printed"
    );
    assert!(
        !stdout.contains("symmetric") && !stdout.contains("encryption"),
        "{stdout}"
    );

    // Rejected: the checks up to the failing one, which says why; non-zero exit.
    let expired = token(&with(claims(&issuer), &[("exp", json!(now() - 3600))]));
    let out = cli(&["jwt", "explain", &bearer(&expired)], &config, None).await;
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("✓ signature"), "{stdout}");
    assert!(
        stdout.contains("✗ exp/nbf   the token has expired"),
        "{stdout}"
    );
    assert!(stdout.contains("rejected: token_expired"), "{stdout}");
    for later in ["tid", "aud", "app", "roles"] {
        assert!(!stdout.contains(&format!("✓ {later}")), "{later}: {stdout}");
    }
    assert!(
        text(&out.stderr).contains("token rejected by gosign.rest (token_expired)"),
        "{}",
        text(&out.stderr)
    );

    let none = raw_token(
        &json!({"alg": "none", "kid": "key-1"}),
        &claims(&issuer),
        b"",
    );
    let out = cli(&["jwt", "explain", &none], &config, None).await;
    let stdout = text(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains(r#""alg": "none""#), "{stdout}");
    assert!(stdout.contains("✗ alg"), "{stdout}");
    assert!(stdout.contains("rejected: alg_not_allowed"), "{stdout}");

    let out = cli(&["jwt", "explain", "not-a-token"], &config, None).await;
    let stdout = text(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("header:\n(not decodable)"), "{stdout}");
    assert!(stdout.contains("✗ header"), "{stdout}");
    assert!(stdout.contains("rejected: token_malformed"), "{stdout}");

    // The token from stdin (kept out of the process list and shell history).
    let out = cli(
        &["jwt", "explain", "-"],
        &config,
        Some(&format!("{valid}\n")),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("accepted: issuer"));

    // No JWT surface at all.
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, "[nrc]\nsecret = \"x\"\n").unwrap();
    let out = cli(&["jwt", "explain", &valid], &plain, None).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(r#"no surface is configured with method = "jwt""#),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn cli_check_config_lists_the_key_ids_each_provider_would_trust() {
    keys();
    let idp = Idp::start_with(&[&keys().primary, &keys().rotated]).await;
    let issuer = idp.issuer_v2();
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), &[provider(&issuer)]);
    let out = cli(&["check-config"], &config, None).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let shown: Value = serde_json::from_str(&stdout).expect("stdout stays the JSON config");
    assert_eq!(
        shown["gosign"]["rest"]["auth"]["providers"][0]["issuer"],
        issuer
    );
    assert!(stderr.contains("gosign.rest: jwt"), "{stderr}");
    // One verdict, the last line (the provider's plain HTTP is allowed for the stand-in).
    assert_eq!(
        stderr.lines().last(),
        Some("configuration is valid, with 1 warning(s) above"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("configuration is").count(), 1, "{stderr}");
    // The symmetric and the encryption key of the JWKS are not trusted.
    assert!(
        stderr.contains(&format!("{issuer}: trusts key ids key-1, key-2\n")),
        "{stderr}"
    );
    assert_eq!(
        idp.hits(&format!("/{TENANT}/v2.0/.well-known/openid-configuration")),
        1
    );

    // A provider whose discovery fails: its error, and a non-zero exit.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "http://127.0.0.1:{}/{TENANT}/v2.0",
            l.local_addr().unwrap().port()
        )
    };
    idp.set_down(true);
    let config = cli_config(dir.path(), &[provider(&issuer), provider(&dead)]);
    let out = cli(&["check-config"], &config, None).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{issuer}: no keys: discovery failed")),
        "{stderr}"
    );
    assert!(stderr.contains("503"), "{stderr}");
    assert!(
        stderr.contains(&format!("{dead}: no keys: discovery failed")),
        "{stderr}"
    );
    // One verdict, at the end: not "valid" first and then a failure.
    assert!(!stderr.contains("configuration is valid"), "{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some(
            "signrelay: configuration is not usable: 2 identity provider(s) could not be resolved"
        ),
        "{stderr}"
    );
}

/// The line of one check in `jwt explain`'s output (`✓ name` or `✗ name`), trimmed.
fn check_line<'a>(stdout: &'a str, mark: char, check: &str) -> &'a str {
    let prefix = format!("{mark} {check} ");
    stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stdout}"))
}

#[tokio::test]
async fn cli_jwt_explain_says_plainly_why_a_token_is_refused() {
    keys();
    let idp = Idp::start().await;
    let issuer = idp.issuer_v2();
    let dir = tempfile::tempdir().unwrap();
    let mut other = provider(&idp.issuer_v1());
    other.audiences = vec!["api://other-app".into()];
    let config = cli_config(dir.path(), &[provider(&issuer), other]);
    let explain = |token: String| {
        let config = config.clone();
        async move {
            let out = cli(&["jwt", "explain", &token], &config, None).await;
            assert!(!out.status.success(), "{}", text(&out.stdout));
            text(&out.stdout)
        }
    };
    let now = now();
    let t = |edits: &[(&str, Value)]| token(&with(claims(&issuer), edits));

    // Another identity provider's token: its iss is named against every configured issuer.
    let evil = "https://login.evil.example/v2.0";
    let foreign = sign(
        &keys().attacker,
        &with(claims(&issuer), &[("iss", json!(evil))]),
    );
    let out = explain(foreign).await;
    assert_eq!(
        check_line(&out, '✗', "iss"),
        format!(
            "✗ iss       the token's iss is not a trusted issuer: iss {evil} differs from every \
             configured issuer: {issuer}, {}",
            idp.issuer_v1()
        )
    );
    assert_eq!(
        check_line(&out, '✓', "header"),
        "✓ header    alg RS256, kid attacker-key"
    );
    assert!(!out.contains("signature"), "no key was tried:\n{out}");
    assert!(out.contains("rejected: issuer_invalid"), "{out}");

    // A wrong audience and a wrong tenant: what the token says against what is accepted.
    let out = explain(t(&[("aud", json!("api://someone-else"))])).await;
    assert_eq!(
        check_line(&out, '✗', "aud"),
        "✗ aud       the token's aud is not accepted: aud api://someone-else; accepted: api://signrelay"
    );
    assert!(out.contains("rejected: audience_invalid"), "{out}");
    let out = explain(t(&[("tid", json!(OTHER_TENANT))])).await;
    assert_eq!(
        check_line(&out, '✗', "tid"),
        format!(
            "✗ tid       the token's tenant (tid) is not allowed: tid {OTHER_TENANT}; accepted: {TENANT}"
        )
    );

    // Expired: how long ago, against the leeway.
    let out = explain(t(&[("exp", json!(now - 3600))])).await;
    let expired = check_line(&out, '✗', "exp/nbf");
    assert!(
        expired.starts_with("✗ exp/nbf   the token has expired: expired 1 h 0 min ago (exp 2")
            && expired.ends_with(" UTC), beyond the leeway of 60 s"),
        "{expired}"
    );
    assert!(out.contains("rejected: token_expired"), "{out}");

    // A missing role, a foreign app, a refused alg: each names what was expected.
    let out = explain(t(&[("roles", json!(["GoSign.Read"]))])).await;
    assert_eq!(
        check_line(&out, '✗', "roles"),
        format!(
            "✗ roles     the token lacks a required role: lacks {ROLE}; the token has: GoSign.Read"
        )
    );
    let out = explain(raw_token(
        &json!({"alg": "none", "kid": "key-1"}),
        &claims(&issuer),
        b"",
    ))
    .await;
    assert_eq!(check_line(&out, '✓', "header"), "✓ header    alg none");
    assert_eq!(
        check_line(&out, '✗', "alg"),
        "✗ alg       the token's alg is not allowed: alg none; allowed: RS256"
    );

    // No Rust debug forms (`Some("…")`, quoted strings) in any check's line.
    for token in [
        t(&[]),
        t(&[("exp", json!(now - 3600))]),
        t(&[("aud", json!(7))]),
    ] {
        let out = cli(&["jwt", "explain", &token], &config, None).await;
        let stdout = text(&out.stdout);
        let checks: Vec<&str> = stdout
            .lines()
            .filter(|l| l.contains('✓') || l.contains('✗'))
            .collect();
        assert!(checks.len() >= 7, "{stdout}");
        for line in checks {
            for debug in ["Some(", "None", "\""] {
                assert!(!line.contains(debug), "{debug} in {line:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_plain_http_issuer_is_refused_unless_explicitly_allowed() {
    keys();
    let idp = Idp::start().await;
    let issuer = idp.issuer_v2();
    assert!(issuer.starts_with("http://"));
    let dir = tempfile::tempdir().unwrap();
    let mut plain = provider(&issuer);
    plain.allow_insecure_http = false;
    let want = format!(
        "gosign.rest.auth.providers[0].issuer {issuer} is not https: keys fetched over plain \
         HTTP can be replaced in transit (allow_insecure_http = true permits it, for tests only)"
    );

    // check-config: invalid, and nothing asked of the identity provider.
    let config = cli_config(dir.path(), std::slice::from_ref(&plain));
    let out = cli(&["check-config"], &config, None).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&want), "{stderr}");
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    assert_eq!(idp.total_hits(), 0);
    // jwt explain refuses to use it either.
    let out = cli(&["jwt", "explain", &token(&claims(&issuer))], &config, None).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(&want), "{}", text(&out.stderr));
    assert_eq!(idp.total_hits(), 0);
    // The service does not start with it.
    let mut cfg = test_config(&dir.path().join("store"), "http://127.0.0.1:9/api/v1");
    cfg.vendors.gosign.rest.auth = Some(jwt(vec![plain]));
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains(&want), "{err}");

    // Allowed explicitly: valid, with a warning that check-config names.
    let config = cli_config(dir.path(), &[provider(&issuer)]);
    let out = cli(&["check-config"], &config, None).await;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: {issuer}: allow_insecure_http = true: discovery and keys may come over \
             plain HTTP, where anyone on the way can replace them; for tests only"
        )),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().last(),
        Some("configuration is valid, with 1 warning(s) above"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Basic and api-key where no other test file covers them: the REST workability routes, the
// SOAP status request, the admin API with Basic

const BASIC_CHALLENGE: &str = r#"Basic realm="signrelay", charset="UTF-8""#;
const API_KEY_CHALLENGE: &str = r#"ApiKey realm="signrelay""#;
const GOSIGN_PASSWORD: &str = "s3cret-Pa55word";
const GOSIGN_KEY: &str = "gosign-key-0123456789abcdef";

fn basic_auth() -> AuthConfig {
    AuthConfig::Basic {
        username: "gosign".into(),
        password: Secret::Inline(GOSIGN_PASSWORD.into()),
    }
}

fn api_key_auth() -> AuthConfig {
    AuthConfig::ApiKey {
        header: "X-GoSign-Key".into(),
        key: Secret::Inline(GOSIGN_KEY.into()),
    }
}

/// Request headers, and the code they are refused with (`None`: accepted).
type CredentialCase = (Vec<(&'static str, String)>, Option<&'static str>);

/// The challenge and the cases for a surface with Basic or api-key.
fn credential_cases(method: &str) -> (&'static str, Vec<CredentialCase>) {
    match method {
        "basic" => (
            BASIC_CHALLENGE,
            vec![
                (vec![], Some("credentials_missing")),
                (
                    vec![("X-GoSign-Key", GOSIGN_KEY.into())],
                    Some("credentials_missing"),
                ),
                (
                    vec![("Authorization", basic("gosign", "wrong-password"))],
                    Some("credentials_invalid"),
                ),
                (
                    vec![("Authorization", basic("GoSign", GOSIGN_PASSWORD))],
                    Some("credentials_invalid"),
                ),
                (
                    vec![("Authorization", "Basic %%%".into())],
                    Some("credentials_malformed"),
                ),
                (
                    vec![("Authorization", basic("gosign", GOSIGN_PASSWORD))],
                    None,
                ),
            ],
        ),
        _ => (
            API_KEY_CHALLENGE,
            vec![
                (vec![], Some("credentials_missing")),
                (
                    vec![("X-Api-Key", GOSIGN_KEY.into())],
                    Some("credentials_missing"),
                ),
                (
                    vec![("X-GoSign-Key", format!("{GOSIGN_KEY}0"))],
                    Some("credentials_invalid"),
                ),
                (
                    vec![("X-GoSign-Key", GOSIGN_KEY[1..].into())],
                    Some("credentials_invalid"),
                ),
                (vec![("x-gosign-key", GOSIGN_KEY.into())], None),
            ],
        ),
    }
}

#[tokio::test]
async fn rest_workability_routes_require_basic_or_api_key_credentials() {
    for (method, auth) in [("basic", basic_auth()), ("api-key", api_key_auth())] {
        let app = spawn_app_with(|c| c.vendors.gosign.rest.auth = Some(auth)).await;
        let (challenge, cases) = credential_cases(method);
        let mut decisions = 0.0;
        for route in [
            "/gosign/rest/envelopes/ENV-W/managers/abianchi/status",
            "/gosign/rest/envelopes/ENV-W/managers/abianchi/for/mrossi/status",
        ] {
            for (headers, code) in &cases {
                let mut req = app.client.get(app.url(route));
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let h = r.headers().clone();
                let v: Value = r.json().await.unwrap();
                match code {
                    Some(code) => {
                        assert_eq!(status, 401, "{method} {route} {headers:?}: {v}");
                        assert_eq!(header_of(&h, "www-authenticate"), challenge);
                        assert_eq!(v, json!({"error": code, "detail": detail(code)}));
                        // Refused before the policy was asked.
                        assert_eq!(
                            counter(
                                &app.metrics().await,
                                "signrelay_workability_decisions_total",
                                &[]
                            ),
                            decisions
                        );
                    }
                    None => {
                        assert_eq!(
                            (status, v),
                            (200, json!({"workable": true, "action": "NOP"})),
                            "{method} {route}"
                        );
                        decisions += 1.0;
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn soap_status_request_requires_basic_or_api_key_credentials() {
    for (method, auth) in [("basic", basic_auth()), ("api-key", api_key_auth())] {
        let app = spawn_app_with(|c| {
            c.vendors.gosign.soap.enabled = true;
            c.vendors.gosign.soap.auth = Some(auth);
        })
        .await;
        let (challenge, cases) = credential_cases(method);
        for (headers, code) in &cases {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, h, text) = soap_post(
                &app,
                "/gosign/soap",
                status_request("abianchi", "ENV-S"),
                &headers,
            )
            .await;
            match code {
                Some(code) => {
                    assert_eq!(status, 401, "{method} {headers:?}: {text}");
                    assert_eq!(header_of(&h, "www-authenticate"), challenge);
                    assert_eq!(
                        client_fault(&text),
                        format!("authentication failed: {}", detail(code))
                    );
                }
                None => {
                    assert_eq!(status, 200, "{method}: {text}");
                    assert!(
                        text.contains("getEnvelopeExternalStatusResponse")
                            && text.contains("<extId>ENV-S</extId>"),
                        "{text}"
                    );
                }
            }
        }
        let m = app.metrics().await;
        let refused = cases.iter().filter(|(_, c)| c.is_some()).count() as f64;
        assert_eq!(
            counter(
                &m,
                "signrelay_callbacks_total",
                &[("surface", "gosign.soap"), ("result", "unauthorized")]
            ),
            refused
        );
    }
}

#[tokio::test]
async fn admin_api_with_basic_credentials() {
    let app = spawn_app_with(|c| {
        c.admin.auth = AuthConfig::Basic {
            username: "operator".into(),
            password: Secret::Inline("operator-Pa55word".into()),
        }
    })
    .await;
    let tx_path = "/api/v1/transactions/gosign/tx-basic";
    let good = basic("operator", "operator-Pa55word");
    for (authorization, code) in [
        (None, "credentials_missing"),
        (Some(format!("Bearer {}", "x.y.z")), "credentials_missing"),
        (Some(basic("operator", "wrong")), "credentials_invalid"),
        (
            Some(basic("gosign", "operator-Pa55word")),
            "credentials_invalid",
        ),
        (Some("Basic !!".to_string()), "credentials_malformed"),
    ] {
        for (method, path, body) in [
            (reqwest::Method::GET, "/api/v1/events", None),
            (reqwest::Method::PUT, tx_path, Some(trigger("zaak-basic"))),
            (reqwest::Method::GET, "/api/v1/dead-letters", None),
        ] {
            let (s, h, v) = admin_call(&app, method, path, authorization.as_deref(), body).await;
            assert_problem(s, &h, &v, code, BASIC_CHALLENGE);
        }
    }
    let (s, _, _) = admin_call(&app, reqwest::Method::GET, tx_path, Some(&good), None).await;
    assert_eq!(s, 404, "refused PUTs registered nothing");
    let (s, _, v) = admin_call(
        &app,
        reqwest::Method::PUT,
        tx_path,
        Some(&good),
        Some(trigger("zaak-basic")),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, _, v) = admin_call(
        &app,
        reqwest::Method::GET,
        "/api/v1/events",
        Some(&good),
        None,
    )
    .await;
    assert_eq!((s, &v["events"]), (200, &json!([])), "{v}");
}
