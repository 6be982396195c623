use crate::helpers::*;
use crate::openapi_check::*;

// `openapi/gosign-rest.yaml` against the running server: every documented operation is
// served, every answer the server gives is documented and conforms to its schema, and the
// documented enums and examples are what the server really does.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use signrelay::auth::AuthConfig;
use signrelay::config::{Config, Secret};

const GOSIGN_KEY: &str = "gosign-openapi-key-0123456789";

fn load() -> Value {
    crate::openapi_check::load("gosign-rest.yaml")
}

/// One answer of the server, as the document must describe it.
struct Answer {
    what: &'static str,
    path: &'static str,
    method: &'static str,
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn call(
    app: &TestApp,
    doc: &Value,
    what: &'static str,
    (path, method): (&'static str, &'static str),
    key: Option<&str>,
    body: Option<Vec<u8>>,
) -> Answer {
    let op = operation(doc, path, method);
    let url = app.url(&format!("{}{}", base(doc), concrete(path, op)));
    let mut req = match method {
        "get" => app.client.get(url),
        "post" => app
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .body(body.unwrap_or_default()),
        other => panic!("{other}"),
    };
    if let Some(k) = key {
        req = req.header(api_key_header(doc), k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
    Answer {
        what,
        path,
        method,
        status,
        headers,
        body,
    }
}

fn api_key_header(doc: &Value) -> &str {
    doc["components"]["securitySchemes"]["apiKey"]["name"]
        .as_str()
        .expect("apiKey scheme header name")
}

const STATUS: (&str, &str) = ("/status", "get");
const NOTIFY: (&str, &str) = ("/envelopes/{enveExtId}/notify", "post");

/// The envelope id of the documented examples (the path parameter's example).
fn example_envelope(doc: &Value) -> String {
    let op = operation(doc, NOTIFY.0, NOTIFY.1);
    concrete("{enveExtId}", op)
}

/// Spawns an app guarded by an api-key in the header the document names, with a 1 MiB body
/// limit, and collects the answers to valid and invalid requests of every kind.
async fn answers(doc: &Value) -> (TestApp, Vec<Answer>) {
    let header = api_key_header(doc).to_string();
    let app = spawn_app_with(move |c: &mut Config| {
        c.vendors.gosign.rest.auth = Some(AuthConfig::ApiKey {
            header,
            key: Secret::Inline(GOSIGN_KEY.into()),
        });
        c.vendors.gosign.rest.body_limit_mib = 1;
    })
    .await;
    let env = example_envelope(doc);
    let key = Some(GOSIGN_KEY);
    let op = operation(doc, NOTIFY.0, NOTIFY.1);
    let examples = request_examples(op);
    let first = serde_json::to_vec(&examples[0].1).unwrap();
    let mut out = vec![
        call(&app, doc, "ping", STATUS, key, None).await,
        call(&app, doc, "ping without credentials", STATUS, None, None).await,
        call(&app, doc, "notify", NOTIFY, key, Some(first.clone())).await,
        call(&app, doc, "duplicate", NOTIFY, key, Some(first.clone())).await,
        call(
            &app,
            doc,
            "malformed",
            NOTIFY,
            key,
            Some(b"<notify/>".to_vec()),
        )
        .await,
        call(
            &app,
            doc,
            "unknown type",
            NOTIFY,
            key,
            Some(work(&env, "ENVELOPE_EXPLODED").to_string().into_bytes()),
        )
        .await,
        call(
            &app,
            doc,
            "id mismatch",
            NOTIFY,
            key,
            Some(
                work("ABCDE-123456-XXXX", "SIGN_PROCESS_ENDED")
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await,
        call(
            &app,
            doc,
            "notify without credentials",
            NOTIFY,
            None,
            Some(first),
        )
        .await,
        call(&app, doc, "notify without a body", NOTIFY, key, None).await,
        call(
            &app,
            doc,
            "too large",
            NOTIFY,
            key,
            Some(vec![b' '; 3 * 1024 * 1024 / 2]),
        )
        .await,
    ];
    // Unwritable store (see gosign_rest.rs): payloads over 64 KiB are archived as files.
    let payloads = app.store_path.join("payloads");
    std::fs::remove_dir_all(&payloads).unwrap();
    std::fs::write(&payloads, b"not a directory").unwrap();
    // (Another outcome than the examples', or it would be a duplicate, answered at once.)
    let mut big = work(&env, "PROCESS_CANCELLED");
    big["note"] = json!("x".repeat(100 * 1024));
    let big = big.to_string().into_bytes();
    out.push(call(&app, doc, "store unwritable", NOTIFY, key, Some(big)).await);
    std::fs::remove_file(&payloads).unwrap();
    std::fs::create_dir(&payloads).unwrap();
    (app, out)
}

fn answer<'a>(answers: &'a [Answer], what: &str) -> &'a Answer {
    answers.iter().find(|a| a.what == what).unwrap()
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let doc = load();
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(base(&doc), Config::default().vendors.gosign.rest.base_path);
    let app = spawn_app().await;
    let ops = operations(&doc);
    let documented: BTreeSet<String> = ops
        .iter()
        .map(|(p, m, _)| format!("{} {p}", m.to_uppercase()))
        .collect();
    for required in ["GET /status", "POST /envelopes/{enveExtId}/notify"] {
        assert!(
            documented.contains(required),
            "{required} is not documented"
        );
    }
    for (path, method, op) in &ops {
        let url = app.url(&format!("{}{}", base(&doc), concrete(path, op)));
        let r = match method.as_str() {
            "get" => app.client.get(&url).send().await.unwrap(),
            "post" => {
                let (_, example) = request_examples(op)
                    .into_iter()
                    .next()
                    .expect("a request example");
                app.client.post(&url).json(&example).send().await.unwrap()
            }
            other => panic!("{other} not handled"),
        };
        let status = r.status().as_u16();
        assert!(
            status != 404 && status != 405,
            "{method} {path}: HTTP {status} {}",
            r.text().await.unwrap()
        );
        assert!(
            op["responses"][status.to_string()].is_object(),
            "{method} {path}: {status}"
        );
        // Methods the document does not list for this path are not served: 405 naming the
        // one it lists.
        for other in ["get", "post", "put", "delete", "patch", "trace"] {
            if doc["paths"][path][other].is_object() {
                continue;
            }
            let r = app
                .client
                .request(other.to_uppercase().parse().unwrap(), &url)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            assert_eq!(s, 405, "{other} {path}");
            assert_eq!(header_of(r.headers(), "allow"), method.to_uppercase());
        }
    }
}

#[tokio::test]
async fn documented_request_examples_conform_and_are_accepted() {
    let doc = load();
    let app = spawn_app().await;
    let op = operation(&doc, NOTIFY.0, NOTIFY.1);
    let schema = &op["requestBody"]["content"]["application/json"]["schema"];
    // GoSign's two formats, then any other body (answered failed_please_discard).
    let alternatives = schema["anyOf"].as_array().expect("anyOf");
    assert_eq!(alternatives.len(), 3);
    assert!(
        alternatives[2].get("$ref").is_none() && alternatives[2].get("type").is_none(),
        "the last alternative is any body: {}",
        alternatives[2]
    );
    let formats = json!({"oneOf": alternatives[..2]});
    let examples = request_examples(op);
    assert!(examples.len() >= 3, "{examples:?}");
    let env = example_envelope(&doc);
    for (name, example) in &examples {
        assert_conforms(&doc, &formats, example, &format!("request example {name}"));
        let (status, answer) = app.notify(&env, example.to_string()).await;
        assert_eq!(
            (status, answer),
            (200, json!({"outcome": "succeeded"})),
            "example {name}"
        );
    }
    // The examples' documents are real base64 and come back decoded.
    let ev = app.events(&format!("transaction_id={env}")).await;
    assert!(!ev.is_empty());
    let docs: Vec<&Value> = ev
        .iter()
        .filter(|e| e["documents"][0].is_object())
        .collect();
    assert!(!docs.is_empty(), "{ev:#?}");
    assert_eq!(docs[0]["documents"][0]["external_id"], "BGTF-9876-KIDHS");
    assert_eq!(docs[0]["documents"][0]["mime_type"], "application/pdf");
    assert_eq!(docs[0]["documents"][0]["size"], b"%PDF-1.3\n%%EOF\n".len());
    // A body that fits neither format is read (the request schema admits it) and discarded.
    let mut neither = Vec::new();
    let body = json!({"envelopeExternalId": env});
    violations(&doc, &formats, &body, "$", &mut neither);
    assert!(!neither.is_empty());
    assert_conforms(&doc, schema, &body, "a body of neither format");
    let (status, answer) = app
        .notify(&env, json!({"envelopeExternalId": env}).to_string())
        .await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("failed_please_discard"))
    );
}

#[tokio::test]
async fn server_answers_are_documented_and_conform_to_their_schemas() {
    let doc = load();
    let (_app, answers) = answers(&doc).await;
    assert_eq!(answers.len(), 11);
    let mut statuses = BTreeSet::new();
    for a in &answers {
        let op = operation(&doc, a.path, a.method);
        let what = format!("{} ({} {})", a.what, a.method, a.path);
        let response = documented_response(&doc, op, a.status, &what);
        statuses.insert((a.path, a.status));
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{what}: HTTP {} has no JSON schema",
            a.status
        );
        let content_type = a.headers["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("application/json"),
            "{what}: {content_type}"
        );
        // Every property the schema requires is there (and every value fits its schema).
        assert_conforms(&doc, schema, &a.body, &what);
        for header in response["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(h, _)| h)
        {
            assert!(
                a.headers.contains_key(header.as_str()),
                "{what}: no {header} header"
            );
        }
    }
    // Valid and invalid requests of both operations were answered, with every kind of status
    // the notify route has.
    assert_eq!(
        statuses,
        BTreeSet::from([
            (STATUS.0, 200),
            (STATUS.0, 401),
            (NOTIFY.0, 200),
            (NOTIFY.0, 401),
            (NOTIFY.0, 413),
        ])
    );
    let outcome = |w: &str| answer(&answers, w).body["outcome"].clone();
    assert_eq!(outcome("notify"), "succeeded");
    assert_eq!(outcome("duplicate"), "succeeded");
    assert_eq!(outcome("malformed"), "failed_please_discard");
    assert_eq!(outcome("unknown type"), "failed_please_discard");
    assert_eq!(outcome("id mismatch"), "failed_please_discard");
    // The body is not `required` in the 4xx sense: none is read and discarded.
    let op = operation(&doc, NOTIFY.0, NOTIFY.1);
    assert_eq!(op["requestBody"]["required"], false);
    assert_eq!(outcome("notify without a body"), "failed_please_discard");
    assert_eq!(outcome("too large"), "failed_please_retry");
    assert_eq!(outcome("store unwritable"), "failed_please_retry");
}

#[tokio::test]
async fn documented_response_examples_are_what_the_server_answers() {
    let doc = load();
    let (_app, answers) = answers(&doc).await;
    let notify = operation(&doc, NOTIFY.0, NOTIFY.1);
    let status = operation(&doc, STATUS.0, STATUS.1);
    let examples = |op: &Value, code: &str| -> Value {
        let r = resolve(&doc, &op["responses"][code]);
        r["content"]["application/json"]["examples"].clone()
    };
    let ok = examples(notify, "200");
    let named = ok.as_object().expect("named examples of the 200 answer");
    let scenario = [
        ("succeeded", "notify"),
        ("duplicate", "duplicate"),
        ("retry", "store unwritable"),
        ("discardMalformed", "malformed"),
        ("discardUnknownType", "unknown type"),
        ("discardIdMismatch", "id mismatch"),
    ];
    assert_eq!(
        named.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        scenario.iter().map(|(e, _)| *e).collect::<BTreeSet<_>>()
    );
    for (example, what) in scenario {
        let a = answer(&answers, what);
        assert_eq!(a.status, 200, "{what}");
        assert_eq!(
            named[example]["value"], a.body,
            "example {example} vs {what}"
        );
    }
    assert_eq!(
        examples(status, "200")["allOnline"]["value"],
        answer(&answers, "ping").body
    );
    // Every documented example conforms to its own schema.
    for (op, code) in [
        (status, "200"),
        (status, "401"),
        (notify, "200"),
        (notify, "401"),
        (notify, "413"),
    ] {
        let r = resolve(&doc, &op["responses"][code]);
        let media = &r["content"]["application/json"];
        let mut all: Vec<Value> = media["examples"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, e)| e["value"].clone())
            .collect();
        if media["example"].is_object() {
            all.push(media["example"].clone());
        }
        assert!(!all.is_empty(), "{code} has no example");
        for e in all {
            assert_conforms(&doc, &media["schema"], &e, &format!("example of {code}"));
        }
    }
    // 401: the example is the answer to a request without credentials.
    let unauthorized = resolve(&doc, &notify["responses"]["401"]);
    let example = &unauthorized["content"]["application/json"]["example"];
    assert_eq!(
        *example,
        answer(&answers, "notify without credentials").body
    );
    assert_eq!(*example, answer(&answers, "ping without credentials").body);
    // 413: same outcome; the message names the configured limit.
    let too_large = resolve(&doc, &notify["responses"]["413"]);
    let example = &too_large["content"]["application/json"]["example"];
    let a = answer(&answers, "too large");
    assert_eq!(example["outcome"], a.body["outcome"]);
    assert_eq!(example["message"], "body exceeds the limit of 64 MiB");
    assert_eq!(Config::default().vendors.gosign.rest.body_limit_mib, 64);
    assert_eq!(a.body["message"], "body exceeds the limit of 1 MiB");
}

#[tokio::test]
async fn outcome_enum_is_gosigns_contract() {
    let doc = load();
    let outcome = &doc["components"]["schemas"]["NotifyResponse"]["properties"]["outcome"];
    let documented: BTreeSet<&str> = outcome["enum"]
        .as_array()
        .expect("outcome enum")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        documented,
        BTreeSet::from(["succeeded", "failed_please_retry", "failed_please_discard"])
    );
    // The server uses each of them, and nothing else.
    let (_app, answers) = answers(&doc).await;
    let used: BTreeSet<&str> = answers
        .iter()
        .filter(|a| a.path == NOTIFY.0 && a.status != 401)
        .map(|a| a.body["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(used, documented);
}

#[tokio::test]
async fn notification_type_enum_is_what_the_server_accepts() {
    let doc = load();
    let schema = &doc["components"]["schemas"]["NotificationType"];
    let documented: Vec<&str> = schema["enum"]
        .as_array()
        .expect("notificationType enum")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        documented.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "STEP_CLOSED",
            "SIGN_PROCESS_ENDED",
            "SIGN_PROCESS_ENDED_WSUPPL",
            "VA_PROCESS_ENDED",
            "ENVELOPE_REJECTED",
            "PROCESS_CANCELLED",
        ])
    );
    let work_schema = &doc["components"]["schemas"]["WorkNotification"];
    let app = spawn_app().await;
    for t in &documented {
        let env = format!("ENV-{t}");
        let body = work(&env, t);
        assert_conforms(&doc, work_schema, &body, t);
        let (status, answer) = app.notify(&env, body.to_string()).await;
        assert_eq!(
            (status, answer),
            (200, json!({"outcome": "succeeded"})),
            "{t}"
        );
        assert_eq!(
            app.events(&format!("transaction_id={env}")).await.len(),
            1,
            "{t}"
        );
    }
    // Outside the enum: refused by the schema and discarded by the server.
    for t in ["STEP_OPENED", "sign_process_ended", ""] {
        let body = work("ENV-OTHER", t);
        let mut v = Vec::new();
        violations(&doc, work_schema, &body, "$", &mut v);
        assert!(!v.is_empty(), "{t} passes the schema");
        let (status, answer) = app.notify("ENV-OTHER", body.to_string()).await;
        assert_eq!(
            (status, answer),
            (
                200,
                json!({"outcome": "failed_please_discard", "message": "unknown notificationType"})
            ),
            "{t:?}"
        );
    }
    assert!(app
        .nrc
        .wait_for(1, Duration::from_millis(100))
        .await
        .is_empty());
}

#[tokio::test]
async fn envelope_id_length_limit_is_the_documented_one() {
    let doc = load();
    let op = operation(&doc, NOTIFY.0, NOTIFY.1);
    let param = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "enveExtId")
        .expect("enveExtId parameter");
    assert_eq!(param["in"], "path");
    assert_eq!(param["required"], true);
    // The limit is stated, not a maxLength: a longer id is answered in GoSign's contract.
    assert_eq!(param["schema"]["minLength"], 1);
    assert!(param["schema"]["maxLength"].is_null(), "{param}");
    let rule = param["description"].as_str().unwrap();
    assert!(rule.contains("1 to 256 bytes"), "{rule}");
    let max = 256;
    let app = spawn_app().await;
    let longest = "E".repeat(max);
    let (status, answer) = app
        .notify(&longest, work(&longest, "SIGN_PROCESS_ENDED").to_string())
        .await;
    assert_eq!((status, answer), (200, json!({"outcome": "succeeded"})));
    let too_long = "E".repeat(max + 1);
    let (status, answer) = app
        .notify(&too_long, work(&too_long, "SIGN_PROCESS_ENDED").to_string())
        .await;
    assert_eq!(
        (status, answer),
        (
            200,
            json!({"outcome": "failed_please_discard", "message": "envelope id is empty, too long or has control characters"})
        )
    );
}

#[tokio::test]
async fn workability_answers_conform_to_the_document() {
    let doc = load();
    let app = spawn_app_with(|c| {
        c.vendors.gosign.workability.policy =
            signrelay::vendors::gosign::config::WorkabilityPolicy::Registry;
        c.vendors.gosign.workability.unknown_envelopes_workable = false;
    })
    .await;
    assert_eq!(
        app.register("ENV-W1", "zaak-w").await.status().as_u16(),
        201
    );
    for path in [
        "/envelopes/{enveExtId}/managers/{userExtId}/status",
        "/envelopes/{enveExtId}/managers/{userExtId}/for/{originalUserExtId}/status",
    ] {
        let op = operation(&doc, path, "get");
        let json = &documented_response(&doc, op, 200, path)["content"]["application/json"];
        // An id that breaks the documented rules (no maxLength: it is answered, not refused)
        // gets the documented example, exactly.
        let rule = resolve(&doc, &op["parameters"][0]["schema"]);
        assert!(rule["maxLength"].is_null(), "{rule}");
        let too_long = "E".repeat(257);
        let invalid = &json["examples"]["invalidId"]["value"];
        for (envelope, workable, exactly) in [
            ("ENV-W1", true, None),
            ("ENV-UNKNOWN", false, None),
            (too_long.as_str(), false, Some(invalid)),
        ] {
            let concrete_path = concrete(path, op).replace("ABCDE-123456-DEFR", envelope);
            let r = app
                .client
                .get(app.url(&format!("{}{concrete_path}", base(&doc))))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{concrete_path}");
            let v: Value = r.json().await.unwrap();
            assert_conforms(&doc, &json["schema"], &v, &concrete_path);
            assert_eq!(v["workable"], workable, "{concrete_path}: {v}");
            if let Some(example) = exactly {
                assert_eq!(v, *example, "{path}");
            }
        }
    }
}
