use crate::helpers::*;
use crate::openapi_check::*;

// `openapi/signrelay-api.yaml` (the registry and admin API under /api/v1) against the running
// server: every documented operation is exercised, and every answer the server gives is
// documented for its operation and conforms to its schema. The server serves its contracts.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

const FILE: &str = "signrelay-api.yaml";
const WAIT: Duration = Duration::from_secs(5);

struct ApiAnswer {
    what: String,
    path: &'static str,
    method: &'static str,
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

struct Caller<'a> {
    app: &'a TestApp,
    doc: &'a Value,
    answers: Vec<ApiAnswer>,
}

impl Caller<'_> {
    /// Calls `method path` (a documented path, `concrete` filled in) and keeps the answer.
    async fn call(
        &mut self,
        what: &str,
        (path, method): (&'static str, &'static str),
        concrete: &str,
        body: Option<Vec<u8>>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let url = self.app.url(&format!("{}{concrete}", base(self.doc)));
        let mut req = match method {
            "get" => self.app.client.get(url),
            "put" => self.app.client.put(url),
            "post" => self.app.client.post(url),
            "delete" => self.app.client.delete(url),
            other => panic!("{other}"),
        };
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        if let Some(k) = key {
            req = req.header("X-Api-Key", k);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = r.bytes().await.unwrap().to_vec();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        self.answers.push(ApiAnswer {
            what: what.to_string(),
            path,
            method,
            status,
            content_type,
            body,
        });
        (status, json)
    }
}

const TRANSACTION_PUT: (&str, &str) = ("/transactions/{vendor}/{id}", "put");
const TRANSACTION_GET: (&str, &str) = ("/transactions/{vendor}/{id}", "get");
const TRANSACTION_DELETE: (&str, &str) = ("/transactions/{vendor}/{id}", "delete");
const EVENTS: (&str, &str) = ("/events", "get");
const EVENT: (&str, &str) = ("/events/{id}", "get");
const PAYLOAD: (&str, &str) = ("/events/{id}/payload", "get");
const DOCUMENT: (&str, &str) = ("/events/{id}/documents/{index}", "get");
const DEAD_LETTERS: (&str, &str) = ("/dead-letters", "get");
const REPLAY: (&str, &str) = ("/dead-letters/{id}/replay", "post");
const QUARANTINE: (&str, &str) = ("/quarantine", "get");

/// The documented request example of registerTransaction.
fn example_trigger(doc: &Value) -> Value {
    doc["paths"]["/transactions/{vendor}/{id}"]["put"]["requestBody"]["content"]["application/json"]
        ["examples"]["signing"]["value"]
        .clone()
}

#[tokio::test]
async fn the_api_document_describes_every_answer_the_server_gives() {
    let doc = load(FILE);
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(base(&doc), "/api/v1");
    assert_eq!(
        doc["components"]["securitySchemes"]["apiKey"]["name"], "X-Api-Key",
        "the default admin.auth header"
    );
    let app = spawn_app().await;
    app.nrc.poison("ENV-DEAD");
    let mut c = Caller {
        app: &app,
        doc: &doc,
        answers: Vec::new(),
    };
    let key = Some(ADMIN_KEY);
    let trigger = serde_json::to_vec(&example_trigger(&doc)).unwrap();

    // The registry.
    for tx in ["ENV-A", "ENV-DEAD"] {
        let path = format!("/transactions/gosign/{tx}");
        let (s, v) = c
            .call(
                "register",
                TRANSACTION_PUT,
                &path,
                Some(trigger.clone()),
                key,
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, _) = c
        .call(
            "register again",
            TRANSACTION_PUT,
            "/transactions/gosign/ENV-A",
            Some(trigger.clone()),
            key,
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = c
        .call(
            "registration",
            TRANSACTION_GET,
            "/transactions/gosign/ENV-A",
            None,
            key,
        )
        .await;
    assert_eq!(
        (s, v["trigger"]["naam"].as_str()),
        (200, Some("Ondertekening besluit"))
    );
    let mut invalid = example_trigger(&doc);
    invalid["zaak"]["url"] = json!("ftp://x");
    let mut missing = example_trigger(&doc);
    missing.as_object_mut().unwrap().remove("zaak");
    for (what, path, body, key, expect) in [
        (
            "not JSON",
            "/transactions/gosign/ENV-B",
            b"{".to_vec(),
            key,
            400,
        ),
        (
            "a field missing",
            "/transactions/gosign/ENV-B",
            serde_json::to_vec(&missing).unwrap(),
            key,
            400,
        ),
        (
            "an invalid field",
            "/transactions/gosign/ENV-B",
            serde_json::to_vec(&invalid).unwrap(),
            key,
            400,
        ),
        (
            "unknown vendor",
            "/transactions/acme/ENV-B",
            trigger.clone(),
            key,
            404,
        ),
        (
            "bad transaction id",
            "/transactions/gosign/a%0Ab",
            trigger.clone(),
            key,
            400,
        ),
        (
            "no credentials",
            "/transactions/gosign/ENV-B",
            trigger.clone(),
            None,
            401,
        ),
        (
            "too large",
            "/transactions/gosign/ENV-B",
            vec![b' '; 200 * 1024],
            key,
            413,
        ),
    ] {
        let (s, v) = c.call(what, TRANSACTION_PUT, path, Some(body), key).await;
        assert_eq!(s, expect, "{what}: {v}");
    }
    let (s, _) = c
        .call(
            "unknown registration",
            TRANSACTION_GET,
            "/transactions/gosign/ENV-B",
            None,
            key,
        )
        .await;
    assert_eq!(s, 404);

    // Callbacks: one delivered with a document inline, one the NRC refuses, one unprocessable.
    let mut done = work("ENV-A", "SIGN_PROCESS_ENDED");
    done["documents"] = json!([{"docExternalId": "DOC-1", "content": {"mimeType": "application/pdf", "data": b64(b"%PDF-1.4 signed")}}]);
    assert_eq!(app.notify("ENV-A", done.to_string()).await.0, 200);
    assert_eq!(
        app.notify(
            "ENV-DEAD",
            work("ENV-DEAD", "SIGN_PROCESS_ENDED").to_string()
        )
        .await
        .0,
        200
    );
    assert_eq!(app.notify("ENV-Q", "{not json").await.0, 200);
    delivered_event(&app, "ENV-A").await;
    app.wait_events("ENV-DEAD", WAIT, |ev| {
        ev.iter().any(|e| e["relay"]["state"] == "dead_lettered")
    })
    .await;

    // Events.
    let (s, v) = c.call("events", EVENTS, "/events", None, key).await;
    assert_eq!(s, 200);
    let id_a = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["transaction_id"] == "ENV-A")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (what, q, expect) in [
        (
            "events by state",
            "/events?state=delivered&vendor=gosign",
            200,
        ),
        (
            "events by transaction",
            "/events?transaction_id=ENV-A&limit=1",
            200,
        ),
        ("next page", &format!("/events?after={id_a}") as &str, 200),
        ("bad limit", "/events?limit=0", 400),
        ("unknown vendor in a query", "/events?vendor=acme", 400),
        ("events without credentials", "/events", 401),
    ] {
        let k = if what.contains("without") { None } else { key };
        let (s, v) = c.call(what, EVENTS, q, None, k).await;
        assert_eq!(s, expect, "{what}: {v}");
    }
    let unknown = "0190c8a2-6f1e-7a3b-8c4d-5e6f7a8b9c0d";
    let (s, _) = c
        .call("event", EVENT, &format!("/events/{id_a}"), None, key)
        .await;
    assert_eq!(s, 200);
    let (s, _) = c.call("not an id", EVENT, "/events/nope", None, key).await;
    assert_eq!(s, 400);
    let (s, _) = c
        .call(
            "unknown event",
            EVENT,
            &format!("/events/{unknown}"),
            None,
            key,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = c
        .call(
            "payload",
            PAYLOAD,
            &format!("/events/{id_a}/payload"),
            None,
            key,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = c
        .call(
            "unknown payload",
            PAYLOAD,
            &format!("/events/{unknown}/payload"),
            None,
            key,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = c
        .call(
            "document",
            DOCUMENT,
            &format!("/events/{id_a}/documents/0"),
            None,
            key,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(c.answers.last().unwrap().body, b"%PDF-1.4 signed");
    let (s, _) = c
        .call(
            "no such document",
            DOCUMENT,
            &format!("/events/{id_a}/documents/7"),
            None,
            key,
        )
        .await;
    assert_eq!(s, 404);

    // Dead letters and the quarantine.
    let (s, v) = c
        .call("dead letters", DEAD_LETTERS, "/dead-letters", None, key)
        .await;
    assert_eq!(s, 200);
    let dead = v["dead_letters"][0]["id"].as_str().unwrap().to_string();
    app.nrc.cure("ENV-DEAD");
    let (s, v) = c
        .call(
            "replay",
            REPLAY,
            &format!("/dead-letters/{dead}/replay"),
            None,
            key,
        )
        .await;
    assert_eq!((s, v["event_id"].as_str()), (202, Some(dead.as_str())));
    let (s, _) = c
        .call(
            "replay again",
            REPLAY,
            &format!("/dead-letters/{dead}/replay"),
            None,
            key,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = c
        .call(
            "replay of no id",
            REPLAY,
            "/dead-letters/nope/replay",
            None,
            key,
        )
        .await;
    assert_eq!(s, 400);
    let (s, v) = c
        .call("quarantine", QUARANTINE, "/quarantine", None, key)
        .await;
    assert_eq!(
        (s, v["quarantine"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    let q = v["quarantine"][0]["id"].as_str().unwrap().to_string();
    let (s, _) = c
        .call(
            "quarantined payload",
            PAYLOAD,
            &format!("/events/{q}/payload"),
            None,
            key,
        )
        .await;
    assert_eq!(s, 200);

    // Withdrawal.
    let (s, _) = c
        .call(
            "withdraw",
            TRANSACTION_DELETE,
            "/transactions/gosign/ENV-A",
            None,
            key,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = c
        .call(
            "withdraw again",
            TRANSACTION_DELETE,
            "/transactions/gosign/ENV-A",
            None,
            key,
        )
        .await;
    assert_eq!(s, 404);

    // Every answer is documented for its operation, and its body conforms.
    for a in &c.answers {
        let what = format!("{} ({} {} → {})", a.what, a.method, a.path, a.status);
        assert_answer_documented(
            &doc,
            (a.path, a.method),
            a.status,
            &a.content_type,
            &a.body,
            &what,
        );
    }
    // And every documented operation was exercised.
    let exercised: BTreeSet<(&str, &str)> = c.answers.iter().map(|a| (a.path, a.method)).collect();
    for (path, method, _) in operations(&doc) {
        assert!(
            exercised.contains(&(path.as_str(), method.as_str())),
            "{method} {path} is documented but never exercised here"
        );
    }
    delivered_event(&app, "ENV-DEAD").await;
}

#[tokio::test]
async fn the_server_serves_its_contracts() {
    let app = spawn_app().await;
    for (name, file) in [
        ("signrelay-api.yaml", "openapi/signrelay-api.yaml"),
        ("gosign-rest.yaml", "openapi/gosign-rest.yaml"),
    ] {
        let r = app
            .client
            .get(app.url(&format!("/openapi/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{name}");
        assert!(header_of(r.headers(), "content-type").starts_with("application/yaml"));
        let served = r.text().await.unwrap();
        let shipped =
            std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(served, shipped, "{name}");
    }
    let r = app
        .client
        .get(app.url("/openapi/../Cargo.toml"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = app
        .client
        .get(app.url("/openapi/secrets.yaml"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(
        header_of(r.headers(), "content-type"),
        "application/problem+json"
    );
}
