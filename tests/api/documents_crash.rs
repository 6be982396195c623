//! The documents step across SIGKILL, with the real binary: killed right after the DRC applied
//! each of signrelay's writes and before signrelay recorded the answer, then restarted on the
//! same store. The notification is never lost and no document gets a second new version; a
//! lock whose id the kill lost goes to an operator. And a large document goes to the DRC with
//! bounded memory, measured on the process.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use signrelay::testkit::drc::{DrcStandIn, Op};
use signrelay::testkit::nrc::NrcStandIn;

use crate::crash::Instance;
use crate::documents::{add_docs, completion, trigger_for};
use crate::helpers::*;

fn documents_toml(parts_above_kib: u64, lost_lock_after_secs: u64) -> String {
    format!(
        r#"
[gosign]
documents = "upload"

[drc]
backoff_initial_ms = 20
backoff_max_secs = 1
request_timeout_secs = 60
parts_above_kib = {parts_above_kib}
lost_lock_after_secs = {lost_lock_after_secs}
"#
    )
}

async fn start(dir: &Path, nrc: &NrcStandIn, label: &str, more: &str) -> Instance {
    Instance::start_with(dir, &dir.join("store"), &nrc.url, label, more).await
}

async fn register(i: &Instance, tx: &str, trigger: &Value) {
    let r = i
        .client
        .put(i.url(&format!("/api/v1/transactions/gosign/{tx}")))
        .header("X-Api-Key", ADMIN_KEY)
        .json(trigger)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

async fn complete(i: &Instance, tx: &str, body: String) {
    let r = i
        .client
        .post(i.url(&format!("/gosign/rest/envelopes/{tx}/notify")))
        .header("Content-Type", "application/json")
        .timeout(Duration::from_secs(60))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
}

fn notified(nrc: &NrcStandIn, tx: &str) -> usize {
    nrc.received()
        .iter()
        .filter(|r| r.body["kenmerken"]["transaction_id"] == tx)
        .count()
}

fn is_write(op: Op, c: &signrelay::testkit::drc::Call) -> bool {
    let ok = (200..300).contains(&c.status);
    ok && match op {
        Op::Lock => c.method == "POST" && c.path.ends_with("/lock"),
        Op::Unlock => c.method == "POST" && c.path.ends_with("/unlock"),
        Op::Patch => c.method == "PATCH",
        Op::Part => c.method == "PUT",
        Op::Create => c.method == "POST" && c.path.ends_with("enkelvoudiginformatieobjecten"),
        Op::Link => c.path.ends_with("zaakinformatieobjecten"),
    }
}

#[tokio::test]
async fn sigkill_after_each_drc_write_neither_loses_the_notification_nor_writes_twice() {
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    // Parts of 50 000 bytes; documents above 64 KiB go in parts.
    let drc = DrcStandIn::start(NRC_CLIENT, NRC_SECRET, 50_000)
        .await
        .unwrap();
    for (label, op, size) in [
        ("patch-inline", Op::Patch, 10_000),
        ("patch-parts", Op::Patch, 150_000),
        ("part", Op::Part, 150_000),
        ("unlock", Op::Unlock, 10_000),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let docs = add_docs(&drc, &["besluit.docx"]);
        let tx = format!("KILL-{label}");
        let signed = pdf_bytes(size);
        drc.hang_after(op);
        let a = start(
            dir.path(),
            &nrc,
            &format!("{label}-a"),
            &documents_toml(64, 900),
        )
        .await;
        register(&a, &tx, &trigger_for(&drc, &docs)).await;
        complete(&a, &tx, completion(&tx, &[(&docs[0].uuid, &signed)])).await;
        drc.wait_for_call(|c| is_write(op, c), Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("{label}: no {op:?}:\n{}", a.log_tail()));
        a.kill();
        drc.answer_again();
        let b = start(
            dir.path(),
            &nrc,
            &format!("{label}-b"),
            &documents_toml(64, 900),
        )
        .await;
        let got = eventually(Duration::from_secs(30), || {
            (notified(&nrc, &tx) > 0).then_some(())
        })
        .await;
        assert!(got.is_some(), "{label}: never notified:\n{}", b.log_tail());
        let versions = drc.versions(&docs[0].uuid);
        assert_eq!(versions.len(), 2, "{label}: exactly one new version");
        assert_eq!(
            versions[1].content.as_deref(),
            Some(signed.as_slice()),
            "{label}"
        );
        assert!(
            !drc.is_locked(&docs[0].uuid),
            "{label}: the lock is released"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(notified(&nrc, &tx), 1, "{label}");
        b.kill();
    }
}

#[tokio::test]
async fn a_lock_whose_answer_a_sigkill_lost_is_handed_to_an_operator_never_broken() {
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    let drc = DrcStandIn::start(NRC_CLIENT, NRC_SECRET, 50_000)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let docs = add_docs(&drc, &["besluit.docx"]);
    let tx = "KILL-LOCK";
    let signed = pdf_bytes(10_000);
    drc.hang_after(Op::Lock);
    let a = start(dir.path(), &nrc, "lock-a", &documents_toml(64, 1)).await;
    register(&a, tx, &trigger_for(&drc, &docs)).await;
    complete(&a, tx, completion(tx, &[(&docs[0].uuid, &signed)])).await;
    drc.wait_for_call(|c| is_write(Op::Lock, c), Duration::from_secs(20))
        .await
        .expect("a lock");
    a.kill();
    drc.answer_again();
    let b = start(dir.path(), &nrc, "lock-b", &documents_toml(64, 1)).await;
    let dead = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r: Value = b
                .client
                .get(b.url("/api/v1/dead-letters"))
                .header("X-Api-Key", ADMIN_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(d) = r["dead_letters"].as_array().and_then(|a| a.first()) {
                break d.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "{}", b.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let reason = dead["reason"].as_str().unwrap();
    assert!(
        reason.contains("ontgrendel het document in de DRC"),
        "{reason}"
    );
    assert!(drc.is_locked(&docs[0].uuid), "never broken by signrelay");
    assert_eq!(drc.versions(&docs[0].uuid).len(), 1);
    assert_eq!(notified(&nrc, tx), 0);
    // The operator unlocks it in the DRC and replays.
    drc.force_unlock(&docs[0].uuid);
    let r = b
        .client
        .post(b.url(&format!(
            "/api/v1/dead-letters/{}/replay",
            dead["id"].as_str().unwrap()
        )))
        .header("X-Api-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    eventually(Duration::from_secs(20), || {
        (notified(&nrc, tx) == 1).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("never notified:\n{}", b.log_tail()));
    assert_eq!(drc.versions(&docs[0].uuid).len(), 2);
    assert!(!drc.is_locked(&docs[0].uuid));
}

/// A field of `/proc/{pid}/status` in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test]
async fn a_large_document_goes_into_the_drc_in_parts_with_bounded_memory() {
    const SIZE: usize = 48 << 20;
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    // Parts of 8 MiB, as a DRC configured for chunked uploads would make them.
    let drc = DrcStandIn::start(NRC_CLIENT, NRC_SECRET, 8 << 20)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let more = format!(
        "{}\n[gosign.rest]\nbody_limit_mib = 96\n",
        documents_toml(1024, 900)
    );
    let i = start(dir.path(), &nrc, "large", &more).await;
    let docs = add_docs(&drc, &["groot.docx"]);
    let tx = "LARGE-DOC";
    let trig = trigger_for(&drc, &docs);
    let signed = pdf_bytes(SIZE);
    let body = completion(tx, &[(&docs[0].uuid, &signed)]);
    let pid = i.pid();
    let base = status_kib(pid, "RssAnon:").unwrap();
    // Sample the process's anonymous memory (its heap: what it allocates) until the NRC is
    // notified. File-backed pages (the archived payload, read through a memory map) are page
    // cache the kernel reclaims; they are reported, not bounded.
    let done = Arc::new(AtomicBool::new(false));
    let peak_now = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let done = done.clone();
        let peak_now = peak_now.clone();
        tokio::spawn(async move {
            let (mut anon, mut hwm) = (0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                anon = anon.max(status_kib(pid, "RssAnon:").unwrap_or(0));
                peak_now.store(anon, Ordering::Relaxed);
                hwm = hwm.max(status_kib(pid, "VmHWM:").unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (anon, hwm)
        })
    };
    // Received first (parked until registered), then the documents step: each phase's peak.
    complete(&i, tx, body).await;
    let receive_peak = peak_now.load(Ordering::Relaxed);
    register(&i, tx, &trig).await;
    let got = eventually(Duration::from_secs(120), || {
        (notified(&nrc, tx) == 1).then_some(())
    })
    .await;
    done.store(true, Ordering::Relaxed);
    let (peak_anon, hwm) = sampler.await.unwrap();
    assert!(got.is_some(), "never notified:\n{}", i.log_tail());
    let v = drc.versions(&docs[0].uuid);
    assert_eq!(v.len(), 2);
    assert!(
        v[1].content.as_deref() == Some(signed.as_slice()),
        "the document arrived intact"
    );
    let parts = drc
        .calls()
        .iter()
        .filter(|c| c.method == "PUT" && c.status == 200)
        .count();
    assert_eq!(parts, 6, "48 MiB in parts of 8 MiB");
    let grew = peak_anon.saturating_sub(base);
    eprintln!(
        "large document: {} MiB; anonymous memory {} MiB at rest, peak {} MiB receiving, \
         {} MiB overall (+{} MiB); peak RSS with file-backed pages {} MiB",
        SIZE >> 20,
        base >> 10,
        receive_peak >> 10,
        peak_anon >> 10,
        grew >> 10,
        hwm >> 10
    );
    assert!(
        grew < (SIZE as u64 >> 10) / 4,
        "anonymous memory grew {grew} KiB for a {} KiB document",
        SIZE >> 10
    );
}

#[tokio::test]
async fn sigkill_after_an_evidence_document_is_created_or_linked_makes_it_once() {
    use signrelay::testkit::pkisigning::PkisigningStandIn;
    const CLIENT: &str = "signrelay-pki";
    const SECRET: &str = "pki-client-secret-value";
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    let drc = DrcStandIn::start(NRC_CLIENT, NRC_SECRET, 50_000)
        .await
        .unwrap();
    let pki = PkisigningStandIn::start(CLIENT, SECRET).await.unwrap();
    let more = format!(
        r#"{}bronorganisatie = "123456782"

[pkisigning]
enabled = true
documents = "upload"
api_url = "{}"
token_url = "{}"
allow_insecure_http = true
client_id = "{CLIENT}"
client_secret = "{SECRET}"
backoff_initial_ms = 20
backoff_max_secs = 1
timeout_secs = 2
verify_settle_secs = 0

[pkisigning.auth]
method = "none"
"#,
        documents_toml(64, 900).replace("[gosign]\ndocuments = \"upload\"\n", ""),
        pki.api_url,
        pki.token_url
    );
    for (label, op) in [("create", Op::Create), ("link", Op::Link)] {
        let dir = tempfile::tempdir().unwrap();
        let docs = add_docs(&drc, &["besluit.docx"]);
        let id = uuid::Uuid::new_v4().to_string();
        pki.dossier(&id, "Completed", "key");
        let signed = pdf_bytes(12_000);
        pki.dossier_files(
            &id,
            vec![
                ("besluit.pdf".into(), signed.clone()),
                ("AuditTrail.pdf".into(), pdf_bytes(3_000)),
            ],
        );
        let mut t = trigger_for(&drc, &docs);
        t["bewijs_informatieobjecttype"] =
            serde_json::json!("https://catalogi.example.nl/iot/bewijs");
        let zaak = t["zaak"]["url"].as_str().unwrap().to_string();
        let before = drc.created().len();
        drc.hang_after(op);
        let a = start(dir.path(), &nrc, &format!("evidence-{label}-a"), &more).await;
        let r = a
            .client
            .put(a.url(&format!("/api/v1/transactions/pkisigning/{id}")))
            .header("X-Api-Key", ADMIN_KEY)
            .json(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let r = a
            .client
            .post(a.url("/pkisigning/webhook"))
            .json(&pki.webhook_body(&id, "Completed", ""))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        drc.wait_for_call(|c| is_write(op, c), Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("{label}: no {op:?}:\n{}", a.log_tail()));
        a.kill();
        drc.answer_again();
        let b = start(dir.path(), &nrc, &format!("evidence-{label}-b"), &more).await;
        eventually(Duration::from_secs(30), || {
            (notified(&nrc, &id) > 0).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{label}: never notified:\n{}", b.log_tail()));
        let created = &drc.created()[before..];
        assert_eq!(created.len(), 1, "{label}: the evidence document once");
        let linked: Vec<_> = drc
            .links()
            .into_iter()
            .filter(|(z, _)| *z == zaak)
            .collect();
        assert_eq!(
            linked,
            vec![(zaak.clone(), created[0].url.clone())],
            "{label}"
        );
        assert_eq!(drc.versions(&docs[0].uuid).len(), 2, "{label}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(notified(&nrc, &id), 1, "{label}");
        b.kill();
    }
}
