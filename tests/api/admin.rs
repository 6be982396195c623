use crate::helpers::*;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use signrelay::testkit::nrc::Behaviour;

const WAIT: Duration = Duration::from_secs(5);
const PROBLEM_JSON: &str = "application/problem+json";

fn tx_path(tx: &str) -> String {
    format!("/api/v1/transactions/gosign/{tx}")
}

/// A request with the admin key; returns status, content type and JSON body.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<String>,
    key: Option<&str>,
) -> (u16, String, reqwest::header::HeaderMap, Value) {
    let mut rb = app.client.request(method, app.url(path));
    if let Some(k) = key {
        rb = rb.header("X-Api-Key", k);
    }
    if let Some(b) = body {
        rb = rb.header("Content-Type", "application/json").body(b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, ct, headers, body)
}

async fn put_trigger(app: &TestApp, tx: &str, trigger: &Value) -> (u16, String, Value) {
    let (s, ct, _, v) = call(
        app,
        reqwest::Method::PUT,
        &tx_path(tx),
        Some(trigger.to_string()),
        Some(ADMIN_KEY),
    )
    .await;
    (s, ct, v)
}

async fn notify_ok(app: &TestApp, envelope: &str, body: &Value) {
    let (status, answer) = app.notify(envelope, body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "succeeded", "{answer}");
}

fn names(problem: &Value) -> Vec<String> {
    problem["invalidParams"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_transaction_is_registered_updated_read_and_withdrawn() {
    let app = spawn_app().await;
    let tx = "2opbDxqSB8BX3137ulqdw2q9_Mw=";

    let (s, _, v) = put_trigger(&app, tx, &trigger("zaak-1")).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["released_events"], 0);
    assert_eq!(v["registration"]["vendor"], "gosign");
    assert_eq!(v["registration"]["transaction_id"], tx);
    assert_eq!(v["registration"]["trigger"], trigger("zaak-1"));

    let (s, v) = app.admin_get(&tx_path(tx)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["trigger"], trigger("zaak-1"));
    assert_eq!(v["transaction_id"], tx);
    assert!(v["registered_at"].is_string());

    // A second PUT updates.
    let (s, _, v) = put_trigger(&app, tx, &trigger("zaak-2")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["released_events"], 0);
    let (s, v) = app.admin_get(&tx_path(tx)).await;
    assert_eq!(s, 200);
    assert_eq!(v["trigger"]["zaak"]["url"], zaak_url("zaak-2"));

    // Another transaction is unaffected.
    let (s, _, _) = put_trigger(&app, "other", &trigger("zaak-3")).await;
    assert_eq!(s, 201);

    let del = |tx: &str| {
        let app = &app;
        let path = tx_path(tx);
        async move { call(app, reqwest::Method::DELETE, &path, None, Some(ADMIN_KEY)).await }
    };
    let (s, _, _, _) = del(tx).await;
    assert_eq!(s, 204);
    let (s, ct, _, v) = del(tx).await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(ct, PROBLEM_JSON);
    assert_eq!(v["status"], 404);
    let (s, v) = app.admin_get(&tx_path(tx)).await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["type"], "urn:signrelay:problem:not-found");
    let (s, v) = app.admin_get(&tx_path("other")).await;
    assert_eq!(s, 200);
    assert_eq!(v["trigger"]["zaak"]["url"], zaak_url("zaak-3"));
}

#[tokio::test]
async fn invalid_trigger_messages_are_refused_as_problems() {
    let app = spawn_app().await;

    let mut no_zaak = trigger("z");
    no_zaak.as_object_mut().unwrap().remove("zaak");
    let (s, ct, v) = put_trigger(&app, "tx-1", &no_zaak).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(ct, PROBLEM_JSON);
    assert_eq!(v["status"], 400);
    assert_eq!(v["type"], "urn:signrelay:problem:invalid-json");
    // A missing field is named, so the case application knows what to send.
    assert_eq!(v["invalidParams"][0]["name"], "zaak", "{v}");
    assert_eq!(v["invalidParams"][0]["code"], "required", "{v}");

    let mut ftp = trigger("z");
    ftp["zaak"]["url"] = json!("ftp://zaken.example.nl/zaken/1");
    let (s, ct, v) = put_trigger(&app, "tx-1", &ftp).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(ct, PROBLEM_JSON);
    assert_eq!(v["type"], "urn:signrelay:problem:validation-error");
    assert_eq!(names(&v), ["zaak.url"]);
    assert_eq!(v["invalidParams"][0]["code"], "invalid-url");

    let mut relative = trigger("z");
    relative["zaak"]["url"] = json!("/zaken/1");
    let (s, _, v) = put_trigger(&app, "tx-1", &relative).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(names(&v), ["zaak.url"]);

    let mut no_docs = trigger("z");
    no_docs["documenten"] = json!([]);
    let (s, ct, v) = put_trigger(&app, "tx-1", &no_docs).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(ct, PROBLEM_JSON);
    assert_eq!(names(&v), ["documenten"]);
    assert_eq!(v["invalidParams"][0]["code"], "required");

    // Several faults are reported together.
    let mut both = no_docs.clone();
    both["zaak"]["url"] = json!("mailto:x@example.nl");
    let (s, _, v) = put_trigger(&app, "tx-1", &both).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(names(&v), ["zaak.url", "documenten"]);

    let (s, ct, _, v) = call(
        &app,
        reqwest::Method::PUT,
        &tx_path("tx-1"),
        Some(r#"{"naam": "x", "#.into()),
        Some(ADMIN_KEY),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(ct, PROBLEM_JSON);
    assert_eq!(v["type"], "urn:signrelay:problem:invalid-json");
    assert!(v.get("invalidParams").is_none(), "{v}");

    // Nothing was registered.
    let (s, _) = app.admin_get(&tx_path("tx-1")).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn unknown_vendor_and_bad_transaction_ids() {
    let app = spawn_app().await;
    let (s, ct, _, v) = call(
        &app,
        reqwest::Method::PUT,
        "/api/v1/transactions/docusign/tx-1",
        Some(trigger("z").to_string()),
        Some(ADMIN_KEY),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(ct, PROBLEM_JSON);
    assert_eq!(v["type"], "urn:signrelay:problem:unknown-vendor");
    let (s, v) = app.admin_get("/api/v1/transactions/docusign/tx-1").await;
    assert_eq!(s, 404);
    assert_eq!(v["type"], "urn:signrelay:problem:unknown-vendor");

    // Control characters and over-long ids are not transaction ids.
    for bad in ["a%01b".to_string(), "x".repeat(257)] {
        let (s, ct, v) = put_trigger(&app, &bad, &trigger("z")).await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(ct, PROBLEM_JSON);
        assert_eq!(v["type"], "urn:signrelay:problem:invalid-transaction-id");
    }
    let (s, _, v) = put_trigger(&app, &"x".repeat(256), &trigger("z")).await;
    assert_eq!(s, 201, "{v}");
}

#[tokio::test]
async fn admin_routes_require_the_api_key() {
    let app = spawn_app().await;
    let (s, _, _) = put_trigger(&app, "tx-kept", &trigger("z")).await;
    assert_eq!(s, 201);
    let id = uuid::Uuid::new_v4();
    let routes: Vec<(reqwest::Method, String, Option<String>)> = vec![
        (reqwest::Method::GET, "/api/v1/events".into(), None),
        (reqwest::Method::GET, format!("/api/v1/events/{id}"), None),
        (
            reqwest::Method::GET,
            format!("/api/v1/events/{id}/payload"),
            None,
        ),
        (reqwest::Method::GET, "/api/v1/dead-letters".into(), None),
        (
            reqwest::Method::POST,
            format!("/api/v1/dead-letters/{id}/replay"),
            None,
        ),
        (reqwest::Method::GET, "/api/v1/quarantine".into(), None),
        (reqwest::Method::GET, tx_path("tx-kept"), None),
        (reqwest::Method::DELETE, tx_path("tx-kept"), None),
        (
            reqwest::Method::PUT,
            tx_path("tx-new"),
            Some(trigger("z").to_string()),
        ),
    ];
    let n = routes.len() as f64;
    for (key, code) in [
        (None, "credentials_missing"),
        (Some("wrong-key-0123456789"), "credentials_invalid"),
        (Some(""), "credentials_invalid"),
    ] {
        for (method, path, body) in &routes {
            let (s, ct, headers, v) = call(&app, method.clone(), path, body.clone(), key).await;
            assert_eq!(s, 401, "{method} {path} with {key:?}: {v}");
            assert_eq!(ct, PROBLEM_JSON, "{method} {path}");
            assert_eq!(
                headers
                    .get("www-authenticate")
                    .and_then(|h| h.to_str().ok()),
                Some(r#"ApiKey realm="signrelay""#),
                "{method} {path}"
            );
            assert_eq!(v["status"], 401);
            assert_eq!(v["type"], format!("urn:signrelay:problem:{code}"), "{v}");
        }
    }

    // Refused requests changed nothing.
    let (s, _) = app.admin_get(&tx_path("tx-kept")).await;
    assert_eq!(s, 200);
    let (s, _) = app.admin_get(&tx_path("tx-new")).await;
    assert_eq!(s, 404);

    let m = app.metrics().await;
    let count = |reason: &str| {
        m.lines()
            .find(|l| {
                l.starts_with("signrelay_auth_failures_total{")
                    && l.contains(r#"surface="admin""#)
                    && l.contains(&format!(r#"reason="{reason}""#))
            })
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    assert_eq!(count("credentials_missing"), Some(n), "{m}");
    assert_eq!(count("credentials_invalid"), Some(2.0 * n), "{m}");
}

/// Four transactions in known states: delivered (2), parked, not relayed (progress).
async fn seeded_events(app: &TestApp) -> Vec<Value> {
    for (tx, zaak) in [("tx-a", "zaak-a"), ("tx-b", "zaak-b")] {
        let (s, _, v) = put_trigger(app, tx, &trigger(zaak)).await;
        assert_eq!(s, 201, "{v}");
    }
    notify_ok(app, "tx-a", &work("tx-a", "STEP_CLOSED")).await;
    notify_ok(app, "tx-a", &work("tx-a", "SIGN_PROCESS_ENDED")).await;
    notify_ok(app, "tx-b", &work("tx-b", "PROCESS_CANCELLED")).await;
    notify_ok(app, "tx-c", &work("tx-c", "SIGN_PROCESS_ENDED")).await;
    assert_eq!(app.nrc.wait_for(2, WAIT).await.len(), 2);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = app.events("").await;
        let delivered = all
            .iter()
            .filter(|e| e["relay"]["state"] == "delivered")
            .count();
        if delivered == 2 {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never delivered: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn txs(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["transaction_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn events_can_be_filtered_and_paged() {
    let app = spawn_app().await;
    let all = seeded_events(&app).await;
    assert_eq!(all.len(), 4, "{all:#?}");
    // In the order they were recorded.
    assert_eq!(txs(&all), ["tx-a", "tx-a", "tx-b", "tx-c"]);
    assert_eq!(all[0]["outcome"]["kind"], "progress");
    assert_eq!(
        all[0]["relay"],
        json!({"state": "not_relayed", "why": "progress"})
    );

    assert_eq!(
        txs(&app.events("transaction_id=tx-a").await),
        ["tx-a", "tx-a"]
    );
    assert_eq!(app.events("transaction_id=tx-zzz").await.len(), 0);
    assert_eq!(app.events("vendor=gosign").await.len(), 4);
    assert_eq!(app.events("vendor=posten").await.len(), 0);
    let (s, v) = app.admin_get("/api/v1/events?vendor=docusign").await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["type"], "urn:signrelay:problem:unknown-vendor");

    assert_eq!(txs(&app.events("state=delivered").await), ["tx-a", "tx-b"]);
    assert_eq!(txs(&app.events("state=parked").await), ["tx-c"]);
    assert_eq!(txs(&app.events("state=not_relayed").await), ["tx-a"]);
    assert_eq!(app.events("state=dead_lettered").await.len(), 0);
    assert_eq!(
        txs(&app
            .events("state=delivered&transaction_id=tx-b&vendor=gosign")
            .await),
        ["tx-b"]
    );

    // Pagination: `next_after` is the cursor for the next page.
    let (s, page1) = app.admin_get("/api/v1/events?limit=3").await;
    assert_eq!(s, 200);
    let p1 = page1["events"].as_array().unwrap().clone();
    assert_eq!(ids(&p1), ids(&all[..3]));
    assert_eq!(page1["next_after"], all[2]["id"]);
    let (_, page2) = app
        .admin_get(&format!(
            "/api/v1/events?limit=3&after={}",
            page1["next_after"].as_str().unwrap()
        ))
        .await;
    let p2 = page2["events"].as_array().unwrap().clone();
    assert_eq!(ids(&p2), ids(&all[3..]));
    assert_eq!(page2["next_after"], all[3]["id"]);
    let (_, page3) = app
        .admin_get(&format!(
            "/api/v1/events?limit=3&after={}",
            page2["next_after"].as_str().unwrap()
        ))
        .await;
    assert_eq!(page3, json!({"next_after": null, "events": []}));
    // Cursor and filter together.
    let (_, v) = app
        .admin_get(&format!(
            "/api/v1/events?transaction_id=tx-a&limit=1&after={}",
            all[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(ids(v["events"].as_array().unwrap()), ids(&all[1..2]));
}

#[tokio::test]
async fn one_event_by_id() {
    let app = spawn_app().await;
    let all = seeded_events(&app).await;
    let e = all.iter().find(|e| e["transaction_id"] == "tx-b").unwrap();
    let id = e["id"].as_str().unwrap();

    let (s, v) = app.admin_get(&format!("/api/v1/events/{id}")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(&v, e);
    assert_eq!(v["vendor"], "gosign");
    assert_eq!(v["surface"], "gosign.rest");
    assert_eq!(
        v["outcome"],
        json!({"kind": "aborted", "reason": "ingetrokken"})
    );
    assert_eq!(v["relay"]["state"], "delivered");
    assert_eq!(v["relay"]["attempts"], 1);

    // The raw payload is kept as received.
    let r = app
        .client
        .get(app.url(&format!("/api/v1/events/{id}/payload")))
        .header("X-Api-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        work("tx-b", "PROCESS_CANCELLED")
    );

    let (s, ct, _, v) = call(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/events/{}", uuid::Uuid::new_v4()),
        None,
        Some(ADMIN_KEY),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(ct, PROBLEM_JSON);

    let (s, ct, _, v) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/events/not-a-uuid",
        None,
        Some(ADMIN_KEY),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(ct, PROBLEM_JSON);
    assert_eq!(v["type"], "urn:signrelay:problem:invalid-id");
}

// --- the offline CLI -------------------------------------------------------------------------

/// A config file that points the CLI at `store`.
fn write_config(dir: &Path, store: &Path) -> PathBuf {
    let file = dir.join("signrelay-cli.toml");
    let path = toml::Value::String(store.display().to_string());
    std::fs::write(&file, format!("[store]\npath = {path}\n")).unwrap();
    file
}

async fn cli(args: &[&str], config: &Path) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_signrelay"));
    cmd.args(args).arg("--config").arg(config);
    for (k, _) in std::env::vars() {
        if k.starts_with("SIGNRELAY") {
            cmd.env_remove(k);
        }
    }
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("the CLI finished in time")
        .expect("the CLI runs")
}

#[tokio::test]
async fn cli_lists_and_replays_dead_letters_of_a_stopped_instance() {
    // The offline CLI on a stopped instance's sled directory; the PostgreSQL store's CLI runs beside live instances.
    if !only_on(Backend::Sled) {
        return;
    }
    let app = spawn_app().await;
    app.nrc.poison("tx-dl");
    let (s, _, _) = put_trigger(&app, "tx-dl", &trigger("zaak-dl")).await;
    assert_eq!(s, 201);
    notify_ok(&app, "tx-dl", &work("tx-dl", "SIGN_PROCESS_ENDED")).await;
    let ev = app
        .wait_events("tx-dl", WAIT, |ev| {
            ev.len() == 1 && ev[0]["relay"]["state"] == "dead_lettered"
        })
        .await;
    let event_id = ev[0]["id"].as_str().unwrap().to_string();

    let (nrc, dir, store_path) = app.stop().await;
    let dir = dir.expect("temporary store");
    let config = write_config(dir.path(), &store_path);

    let out = cli(&["dlq", "list"], &config).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["event_id"], event_id.as_str());
    assert_eq!(lines[0]["transaction_id"], "tx-dl");
    assert_eq!(lines[0]["vendor"], "gosign");
    assert_eq!(lines[0]["nrc_status"], 400);

    nrc.cure("tx-dl");
    nrc.set_behaviour(Behaviour::Accept);
    let out = cli(&["dlq", "replay", "--all"], &config).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("replayed {event_id}"));

    let out = cli(&["dlq", "list"], &config).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    let out = cli(&["events", "--transaction-id", "tx-dl"], &config).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let e: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(e["relay"], json!({"state": "pending"}));
    assert!(nrc.received().is_empty());

    let mut app = spawn_on(test_config(&store_path, &nrc.url), nrc).await;
    app.dir = Some(dir);
    let got = app.nrc.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["kenmerken"]["transaction_id"], "tx-dl");
    assert_eq!(got[0].body["resourceUrl"], zaak_url("zaak-dl"));
    app.wait_events("tx-dl", WAIT, |ev| ev[0]["relay"]["state"] == "delivered")
        .await;
    assert_eq!(
        app.nrc.wait_for(2, Duration::from_millis(300)).await.len(),
        1
    );
    let (_, dl) = app.admin_get("/api/v1/dead-letters").await;
    assert_eq!(dl, json!({"dead_letters": []}));
}

#[tokio::test]
async fn cli_refuses_the_store_of_a_running_instance() {
    // The offline CLI on a stopped instance's sled directory; the PostgreSQL store's CLI runs beside live instances.
    if !only_on(Backend::Sled) {
        return;
    }
    let app = spawn_app().await;
    let config = write_config(app.dir.as_ref().unwrap().path(), &app.store_path);
    for args in [&["dlq", "list"][..], &["dlq", "replay", "--all"][..]] {
        let out = cli(args, &config).await;
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out.stderr);
        assert!(err.contains("in use by a running signrelay"), "{err}");
        assert!(err.contains("admin API"), "{err}");
        assert!(err.contains("/api/v1/dead-letters"), "{err}");
    }
    // The instance is unharmed.
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn cli_without_an_id_or_all_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let config = write_config(dir.path(), &store);
    let out = cli(&["dlq", "replay"], &config).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("give a dead letter id or --all"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn bad_event_queries_are_problems_and_only_after_authentication() {
    let app = spawn_app().await;
    for q in ["after=nope", "limit=abc", "limit=0", "limit=1001"] {
        let r = app
            .client
            .get(app.url(&format!("/api/v1/events?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            401,
            "{q}: unauthenticated callers learn nothing"
        );
        let (s, v) = app.admin_get(&format!("/api/v1/events?{q}")).await;
        assert_eq!(s, 400, "{q}: {v}");
        assert_eq!(v["type"], "urn:signrelay:problem:invalid-query", "{q}");
    }
}

#[tokio::test]
async fn oversized_trigger_messages_are_a_problem() {
    let app = spawn_app().await;
    let mut t = trigger("z");
    t["naam"] = json!("x".repeat(200 * 1024));
    let r = app
        .client
        .put(app.url("/api/v1/transactions/gosign/tx-big"))
        .header("X-Api-Key", ADMIN_KEY)
        .json(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["type"], "urn:signrelay:problem:too-large");
    let (s, _) = app.admin_get("/api/v1/transactions/gosign/tx-big").await;
    assert_eq!(s, 404, "nothing registered");
}
