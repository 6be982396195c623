//! Retention and the bounds of the config: nothing acknowledged loses its payload whatever the
//! retention, absurd durations and sizes are refused by name, registrations (personal data)
//! are purged once their transaction is over.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::helpers::*;

/// Runs `signrelay check-config` on the test's serve config with `key` (dotted) set to `value`.
fn check_config_with(dir: &Path, key: &str, value: toml::Value) -> Output {
    let mut cfg: toml::Value = toml::from_str(&serve_toml(
        "127.0.0.1:0",
        &dir.join("store"),
        "http://127.0.0.1:9/api/v1",
        2,
        2,
    ))
    .unwrap();
    let (path, leaf) = key.rsplit_once('.').unwrap();
    let mut at = &mut cfg;
    for part in path.split('.') {
        at = at
            .as_table_mut()
            .unwrap()
            .entry(part)
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    at.as_table_mut().unwrap().insert(leaf.into(), value);
    let file = dir.join(format!("{key}.toml"));
    std::fs::write(&file, toml::to_string(&cfg).unwrap()).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_signrelay"));
    cmd.arg("check-config").arg("--config").arg(&file);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SIGNRELAY") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("check-config runs")
}

/// A retention of 200 000 000 000 days once passed `check-config` and then purged every
/// delivered event within a second (a failed conversion fell back to zero). Every duration and
/// size past its bounds is refused now, naming its key.
#[test]
fn absurd_durations_and_sizes_are_refused_by_check_config_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ok = check_config_with(dir.path(), "store.retention_days", 30.into());
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let huge = toml::Value::Integer(200_000_000_000);
    let max = toml::Value::Integer(i64::MAX);
    for (key, value) in [
        ("store.retention_days", huge.clone()),
        ("store.retention_days", max.clone()),
        ("store.purge_interval_secs", 0.into()),
        ("store.purge_interval_secs", huge.clone()),
        ("store.min_free_mib", max.clone()),
        ("store.cache_mib", max.clone()),
        ("relay.backoff_max_secs", max.clone()),
        ("relay.give_up_after_hours", huge.clone()),
        ("relay.park_timeout_hours", max.clone()),
        ("relay.timeout_secs", huge.clone()),
        ("server.client_timeout_secs", max.clone()),
        ("server.api_body_limit_kib", max.clone()),
        ("gosign.rest.body_limit_mib", huge.clone()),
        ("gosign.rest.large_bodies_in_flight", 0.into()),
        ("gosign.workability.timeout_ms", max.clone()),
    ] {
        let out = check_config_with(dir.path(), key, value.clone());
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{key} = {value} passed check-config");
        assert!(
            err.contains(&format!("{key} = {value} is out of bounds")),
            "{key} = {value}: {err}"
        );
    }
}

/// `store.retention_days = 0`, a purge every second, the relay off, and clients sending
/// callbacks with an 80 KiB document (a payload file each) for several seconds: every
/// acknowledged callback keeps its payload. (The orphan sweep once took the retention as its
/// age and deleted files whose batch had not committed yet: 2 of 14 215 in 60 s with 16
/// clients; `a_payload_file_waiting_for_its_batch_survives_a_sweep` in the store's tests hits
/// that window every time.)
#[tokio::test]
async fn retention_zero_never_takes_the_payload_of_an_acknowledged_callback() {
    const CLIENTS: usize = 8;
    let app = spawn_app_with(|c| {
        c.store.retention_days = 0;
        c.store.purge_interval_secs = 1;
        c.relay.enabled = false;
    })
    .await;
    let document = b64(&pdf_bytes(80 * 1024));
    let until = std::time::Instant::now() + Duration::from_secs(6);
    let acknowledged = futures_util::future::join_all((0..CLIENTS).map(|c| {
        let (app, document) = (&app, &document);
        async move {
            let mut txs = Vec::new();
            let mut i = 0;
            while std::time::Instant::now() < until {
                let tx = format!("RET0-{c}-{i}");
                let mut body = work(&tx, "SIGN_PROCESS_ENDED");
                body["documents"] = serde_json::json!([{"docExternalId": "DOC-1",
                    "content": {"mimeType": "application/pdf", "data": document}}]);
                let (status, answer) = app.notify(&tx, body.to_string()).await;
                assert_eq!(status, 200, "{answer}");
                if answer["outcome"] == "succeeded" {
                    txs.push(tx);
                }
                i += 1;
            }
            txs
        }
    }))
    .await
    .concat();
    // Let a few more purges run over what is there.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(acknowledged.len() > 50, "only {}", acknowledged.len());
    let mut after = None;
    let mut checked = 0;
    loop {
        let q = match after {
            Some(a) => format!("limit=1000&after={a}"),
            None => "limit=1000".into(),
        };
        let events = app.events(&q).await;
        let Some(last) = events.last() else { break };
        after = Some(last["id"].as_str().unwrap().to_string());
        for e in &events {
            let r = app
                .client
                .get(app.url(&format!(
                    "/api/v1/events/{}/payload",
                    e["id"].as_str().unwrap()
                )))
                .header("X-Api-Key", ADMIN_KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "payload of {e}");
            assert!(r.bytes().await.unwrap().len() > 80 * 1024);
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        acknowledged.len(),
        "every acknowledged callback is an event"
    );
    eprintln!("{checked} acknowledged callbacks, every payload kept");
    app.stop().await;
}

/// The workability verdict of `tx` (registry policy: withdrawn → not workable, never
/// registered → workable).
async fn workable(app: &TestApp, tx: &str) -> bool {
    let r = app
        .client
        .get(app.url(&format!("/gosign/rest/envelopes/{tx}/managers/u1/status")))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    v["workable"].as_bool().expect("a verdict")
}

async fn registered(app: &TestApp, tx: &str) -> bool {
    let (s, _) = app
        .admin_get(&format!("/api/v1/transactions/gosign/{tx}"))
        .await;
    s == 200
}

/// Registrations hold the owner's and signers' names and e-mail addresses. Once the
/// transaction's outcome has been delivered and the retention has passed, or once it was
/// withdrawn and the retention has passed, the registration (and its tombstone) is purged;
/// one still waiting for its outcome, or whose outcome could not be delivered yet, stays.
#[tokio::test]
async fn registrations_are_purged_once_their_transaction_is_over() {
    let app = spawn_app_with(|c| {
        c.store.retention_days = 0;
        c.store.purge_interval_secs = 1;
        c.vendors.gosign.workability.policy =
            signrelay::vendors::gosign::config::WorkabilityPolicy::Registry;
    })
    .await;
    let (done, withdrawn, open, undelivered) = ("REG-DONE", "REG-GONE", "REG-OPEN", "REG-HELD");
    for tx in [done, withdrawn, open, undelivered] {
        register_tx(&app, "gosign", tx).await;
    }
    let (s, _) = app
        .notify(done, work(done, "SIGN_PROCESS_ENDED").to_string())
        .await;
    assert_eq!(s, 200);
    // (Not read back as an event: with a retention of 0 it may be purged any second.)
    assert_eq!(app.nrc.wait_for(1, Duration::from_secs(5)).await.len(), 1);
    // The NRC refuses the next outcome: it stays pending, and so does its registration.
    app.nrc
        .set_behaviour(signrelay::testkit::nrc::Behaviour::Fail {
            status: 503,
            retry_after: None,
        });
    let (_, answer) = app
        .notify(
            undelivered,
            work(undelivered, "SIGN_PROCESS_ENDED").to_string(),
        )
        .await;
    assert_eq!(answer["outcome"], "succeeded");
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/transactions/gosign/{withdrawn}")))
        .header("X-Api-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(
        !workable(&app, withdrawn).await,
        "the tombstone says withdrawn"
    );

    // A few purges later.
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while registered(&app, done).await || !workable(&app, withdrawn).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the registration of a delivered transaction, or a tombstone, was never purged"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The tombstone went too: the envelope is unknown now, not withdrawn.
    assert!(!registered(&app, withdrawn).await);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(registered(&app, open).await, "no outcome yet: kept");
    assert!(
        registered(&app, undelivered).await,
        "outcome not delivered: kept"
    );
    // Delivered at last, it goes too.
    app.nrc
        .set_behaviour(signrelay::testkit::nrc::Behaviour::Accept);
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while registered(&app, undelivered).await {
        assert!(std::time::Instant::now() < deadline, "kept after delivery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A late repeat of the delivered outcome is still known as one (the outcome dedup
    // outlives the registration) and is not relayed again.
    let (_, answer) = app
        .notify(done, work(done, "ENVELOPE_REJECTED").to_string())
        .await;
    assert_eq!(answer["outcome"], "succeeded");
    let got = app.nrc.wait_for(3, Duration::from_millis(1500)).await;
    assert_eq!(received_for(&app, done).len(), 1, "{got:#?}");
    app.stop().await;
}
