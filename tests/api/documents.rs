//! The documents step against a DRC/ZRC stand-in that behaves like Open Zaak: signed
//! documents become exactly one new version each before the NRC hears of a completion.

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use signrelay::documents::DocumentsMode;
use signrelay::testkit::drc::{Behaviour, DrcStandIn};

use crate::helpers::*;

/// A DRC stand-in knowing signrelay's (default, the NRC's) client, parts of `chunk` bytes.
async fn start_drc(chunk: u64) -> DrcStandIn {
    DrcStandIn::start(NRC_CLIENT, NRC_SECRET, chunk)
        .await
        .unwrap()
}

/// signrelay with GoSign's documents uploaded, fast retries.
async fn app_uploading(adjust: impl FnOnce(&mut signrelay::config::Config)) -> TestApp {
    spawn_app_with(|c| {
        c.vendors.gosign.documents = DocumentsMode::Upload;
        c.drc.backoff_initial_ms = 20;
        c.drc.backoff_max_secs = 1;
        c.drc.request_timeout_secs = 2;
        c.drc.bronorganisatie = Some("123456782".into());
        adjust(c);
    })
    .await
}

/// A DRC stand-in, signrelay uploading GoSign's documents, and `names` in the DRC registered
/// as transaction `tx`: the zaak URL.
async fn setup(tx: &str, names: &[&str]) -> (DrcStandIn, TestApp, Vec<Doc>, String) {
    let drc = start_drc(4 << 20).await;
    let app = app_uploading(|_| {}).await;
    let docs = add_docs(&drc, names);
    let zaak = register_docs(&app, &drc, tx, &docs).await;
    (drc, app, docs, zaak)
}

/// A document in the DRC, as the case application made it and gave it to GoSign.
pub struct Doc {
    pub uuid: String,
    pub url: String,
    pub name: String,
}

pub fn add_docs(drc: &DrcStandIn, names: &[&str]) -> Vec<Doc> {
    names
        .iter()
        .map(|n| {
            let (uuid, url) = drc.add_document(n, b"PK\x03\x04 unsigned docx");
            Doc {
                uuid,
                url,
                name: n.to_string(),
            }
        })
        .collect()
}

/// A trigger naming `docs` (version 1) and a zaak at the stand-in's ZRC.
pub fn trigger_for(drc: &DrcStandIn, docs: &[Doc]) -> Value {
    let zaak = format!("{}/zaken/{}", drc.zaken, uuid::Uuid::new_v4());
    let mut t = trigger("x");
    t["zaak"]["url"] = json!(zaak);
    t["documenten"] = docs
        .iter()
        .map(|d| json!({"uuid": d.uuid, "url": d.url, "titel": d.name, "versie": 1, "bestandsnaam": d.name}))
        .collect();
    t
}

/// Registers `tx` with [`trigger_for`]; returns the zaak URL.
async fn register_docs(app: &TestApp, drc: &DrcStandIn, tx: &str, docs: &[Doc]) -> String {
    let t = trigger_for(drc, docs);
    let zaak = t["zaak"]["url"].as_str().unwrap().to_string();
    let r = app
        .client
        .put(app.url(&format!("/api/v1/transactions/gosign/{tx}")))
        .header("X-Api-Key", ADMIN_KEY)
        .json(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    zaak
}

/// GoSign's completion with the signed documents inline, each with the id GoSign was given.
pub fn completion(tx: &str, signed: &[(&str, &[u8])]) -> String {
    let mut v = work(tx, "SIGN_PROCESS_ENDED");
    v["documents"] = signed
        .iter()
        .map(|(id, bytes)| json!({"docExternalId": id, "content": {"mimeType": "application/pdf", "data": b64(bytes)}}))
        .collect();
    v.to_string()
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

async fn dead_letters(app: &TestApp) -> Vec<Value> {
    let (s, v) = app.admin_get("/api/v1/dead-letters").await;
    assert_eq!(s, 200, "{v}");
    v["dead_letters"].as_array().cloned().unwrap()
}

async fn wait_dead_letter(app: &TestApp, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(d) = dead_letters(app).await.into_iter().next() {
            return d;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The DRC's writes (lock, PATCH, part, unlock, create) and their times.
fn writes(drc: &DrcStandIn) -> Vec<signrelay::testkit::drc::Call> {
    drc.calls()
        .into_iter()
        .filter(|c| c.method != "GET" && (200..300).contains(&c.status))
        .collect()
}

#[tokio::test]
async fn a_completion_puts_each_signed_document_in_once_before_the_nrc_hears_of_it() {
    let tx = "DOCS-ONE";
    let (drc, app, docs, zaak) = setup(tx, &["besluit.docx", "bijlage.odt"]).await;
    let signed = [pdf_bytes(40_000), pdf_bytes(12_345)];
    // GoSign sends them in another order than the trigger's: matched by id.
    let body = completion(
        tx,
        &[(&docs[1].uuid, &signed[1]), (&docs[0].uuid, &signed[0])],
    );
    // While the DRC is slow the event shows that it waits on the documents.
    drc.set_behaviour(Behaviour::Slow(Duration::from_millis(400)));
    let (status, _) = app.notify(tx, body).await;
    assert_eq!(status, 200);
    let ev = app
        .wait_events(tx, Duration::from_secs(5), |ev| {
            ev.iter().any(|e| e["relay"]["step"] == "documents")
        })
        .await;
    assert_eq!(
        ev[0]["relay"],
        json!({"state": "pending", "step": "documents"})
    );
    assert!(app.nrc.received().is_empty());
    drc.set_behaviour(Behaviour::Normal);
    delivered_event(&app, tx).await;
    assert_notified(&app, tx, &zaak, "OndertekenenVoltooid", None);

    let today = chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    for (doc, bytes, pdf) in [
        (&docs[0], &signed[0], "besluit.pdf"),
        (&docs[1], &signed[1], "bijlage.pdf"),
    ] {
        let versions = drc.versions(&doc.uuid);
        assert_eq!(versions.len(), 2, "exactly one new version of {}", doc.name);
        let v = &versions[1];
        assert_eq!(v.content.as_deref(), Some(bytes.as_slice()));
        assert_eq!(v.bestandsnaam, pdf);
        assert_eq!(v.formaat, "application/pdf");
        assert_eq!(v.bestandsomvang, Some(bytes.len() as u64));
        assert_eq!(
            v.integriteit,
            Some(json!({"algoritme": "sha_256", "waarde": sha256_hex(bytes), "datum": today}))
        );
        assert!(!drc.is_locked(&doc.uuid), "the lock is released");
    }
    // Every DRC write happened before the NRC's notification.
    let last_write = writes(&drc).last().unwrap().at;
    let notified = received_for(&app, tx)[0].at;
    assert!(last_write < notified, "{last_write} !< {notified}");
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "signrelay_documents_total",
            &[("vendor", "gosign"), ("result", "uploaded")]
        ),
        Some(2.0)
    );
    assert!(metric(
        &m,
        "signrelay_jobs_total",
        &[("party", "drc"), ("result", "done")]
    )
    .is_some());
    for (op, n) in [("lock", 2.0), ("patch", 2.0), ("unlock", 2.0)] {
        let labels = [("component", "DRC"), ("operation", op), ("result", "ok")];
        assert_eq!(
            metric(&m, "signrelay_drc_requests_total", &labels),
            Some(n),
            "{op}"
        );
    }
    // The staged files are gone once the step is done.
    let staged = app.store_path.join("signed");
    let left: Vec<_> = std::fs::read_dir(&staged)
        .map(|d| d.filter_map(Result::ok).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn an_abort_uploads_nothing_and_is_notified_at_once() {
    let tx = "DOCS-ABORT";
    let (drc, app, docs, zaak) = setup(tx, &["besluit.docx"]).await;
    let mut v = work(tx, "ENVELOPE_REJECTED");
    v["note"] = json!("niet akkoord");
    let (status, _) = app.notify(tx, v.to_string()).await;
    assert_eq!(status, 200);
    delivered_event(&app, tx).await;
    let got = received_for(&app, tx);
    assert_eq!(got[0].body["actie"], "OndertekenenAfgebroken");
    assert_eq!(got[0].body["resourceUrl"], zaak);
    assert!(drc.calls().is_empty(), "{:?}", drc.calls());
    assert_eq!(drc.versions(&docs[0].uuid).len(), 1);
}

#[tokio::test]
async fn a_lock_held_by_someone_else_is_waited_for_and_never_broken() {
    let tx = "DOCS-LOCKED";
    let (drc, app, docs, _zaak) = setup(tx, &["besluit.docx"]).await;
    drc.lock_as_other(&docs[0].uuid);
    let signed = pdf_bytes(5_000);
    app.notify(tx, completion(tx, &[(&docs[0].uuid, &signed)]))
        .await;
    // Retried with backoff while the other client holds the lock.
    let tried = eventually(Duration::from_secs(5), || {
        let gets = drc.calls().iter().filter(|c| c.method == "GET").count();
        (gets >= 3).then_some(gets)
    })
    .await;
    assert!(tried.is_some(), "{:?}", drc.calls());
    assert!(app.nrc.received().is_empty());
    assert_eq!(drc.versions(&docs[0].uuid).len(), 1);
    assert!(
        drc.is_locked(&docs[0].uuid),
        "the other client's lock stays"
    );
    assert!(
        !drc.calls().iter().any(|c| c.path.ends_with("/unlock")),
        "never unlocks someone else's lock"
    );
    let ev = app.events(&format!("transaction_id={tx}")).await;
    assert_eq!(
        ev[0]["relay"],
        json!({"state": "pending", "step": "documents"})
    );
    // Released: the upload goes on.
    drc.force_unlock(&docs[0].uuid);
    delivered_event(&app, tx).await;
    assert_eq!(drc.versions(&docs[0].uuid).len(), 2);
    assert_eq!(received_for(&app, tx).len(), 1);
}

#[tokio::test]
async fn a_drc_outage_is_retried_and_a_refusal_is_a_dead_letter_with_the_drc_s_answer() {
    let tx = "DOCS-OUTAGE";
    let (drc, app, docs, _zaak) = setup(tx, &["besluit.docx"]).await;
    drc.set_behaviour(Behaviour::Fail {
        status: 503,
        retry_after: None,
    });
    let signed = pdf_bytes(3_000);
    app.notify(tx, completion(tx, &[(&docs[0].uuid, &signed)]))
        .await;
    let failed = eventually(Duration::from_secs(5), || {
        (drc.calls().iter().filter(|c| c.status == 503).count() >= 2).then_some(())
    })
    .await;
    assert!(failed.is_some());
    assert!(app.nrc.received().is_empty());
    drc.set_behaviour(Behaviour::Normal);
    delivered_event(&app, tx).await;
    assert_eq!(drc.versions(&docs[0].uuid).len(), 2);
    let m = app.metrics().await;
    let failed = [
        ("component", "DRC"),
        ("operation", "get"),
        ("result", "5xx"),
    ];
    assert!(metric(&m, "signrelay_drc_requests_total", &failed).unwrap_or(0.0) >= 2.0);

    // A scope the DRC administrator forgot: 403, dead-lettered with the DRC's answer, the
    // document left unlocked; replayed once granted.
    let tx = "DOCS-NO-SCOPE";
    let docs = add_docs(&drc, &["brief.docx"]);
    register_docs(&app, &drc, tx, &docs).await;
    drc.revoke_scope(NRC_CLIENT, "documenten.bijwerken");
    app.notify(tx, completion(tx, &[(&docs[0].uuid, &signed)]))
        .await;
    let dl = wait_dead_letter(&app, Duration::from_secs(5)).await;
    assert_eq!(dl["party"], "drc", "{dl}");
    assert_eq!(dl["task"], "documents", "{dl}");
    assert_eq!(dl["status"], 403, "{dl}");
    assert!(
        dl["body"].as_str().unwrap().contains("permission_denied"),
        "{dl}"
    );
    assert!(
        dl["reason"].as_str().unwrap().contains("autorisaties"),
        "{dl}"
    );
    assert!(
        !drc.is_locked(&docs[0].uuid),
        "the lock is released before giving up"
    );
    assert_eq!(drc.versions(&docs[0].uuid).len(), 1);
    let ev = app.events(&format!("transaction_id={tx}")).await;
    assert_eq!(ev[0]["relay"]["state"], "dead_lettered");
    assert!(received_for(&app, tx).is_empty());
}

#[tokio::test]
async fn a_replayed_documents_step_goes_on_from_where_it_failed() {
    let tx = "DOCS-REPLAY";
    let (drc, app, docs, zaak) = setup(tx, &["a.docx", "b.docx"]).await;
    // The second document is more confidential than signrelay's Applicatie may see: 403 (as
    // Open Zaak answers); the first made it.
    drc.set_vertrouwelijkheid(&docs[1].uuid, "geheim");
    drc.limit_client(NRC_CLIENT, "zaakvertrouwelijk");
    let signed = [pdf_bytes(2_000), pdf_bytes(2_100)];
    app.notify(
        tx,
        completion(
            tx,
            &[(&docs[0].uuid, &signed[0]), (&docs[1].uuid, &signed[1])],
        ),
    )
    .await;
    let dl = wait_dead_letter(&app, Duration::from_secs(5)).await;
    assert_eq!(dl["status"], 403, "{dl}");
    assert_eq!(
        drc.versions(&docs[0].uuid).len(),
        2,
        "the first document is in"
    );
    assert_eq!(drc.versions(&docs[1].uuid).len(), 1);
    drc.grant_all(NRC_CLIENT);
    let (s, v) = app
        .admin_post(&format!(
            "/api/v1/dead-letters/{}/replay",
            dl["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 202, "{v}");
    delivered_event(&app, tx).await;
    assert_notified(&app, tx, &zaak, "OndertekenenVoltooid", None);
    assert_eq!(drc.versions(&docs[0].uuid).len(), 2, "not written twice");
    assert_eq!(drc.versions(&docs[1].uuid).len(), 2);
}

#[tokio::test]
async fn a_document_edited_while_it_was_signed_is_dead_lettered_not_overwritten() {
    let tx = "DOCS-EDITED";
    let (drc, app, docs, _zaak) = setup(tx, &["besluit.docx"]).await;
    drc.edit(&docs[0].uuid, b"edited meanwhile");
    let signed = pdf_bytes(3_000);
    app.notify(tx, completion(tx, &[(&docs[0].uuid, &signed)]))
        .await;
    let dl = wait_dead_letter(&app, Duration::from_secs(5)).await;
    let reason = dl["reason"].as_str().unwrap();
    assert!(
        reason.contains("document gewijzigd tijdens ondertekenen"),
        "{reason}"
    );
    assert!(reason.contains("versie 2"), "{reason}");
    assert_eq!(dl["party"], "drc");
    assert_eq!(drc.versions(&docs[0].uuid).len(), 2, "nothing written");
    assert!(!drc.is_locked(&docs[0].uuid));
    assert!(app.nrc.received().is_empty());
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "signrelay_documents_total",
            &[("vendor", "gosign"), ("result", "newer_version")]
        ),
        Some(1.0)
    );

    // Configured to upload anyway: the signed version goes on top of the edit.
    let drc2 = start_drc(4 << 20).await;
    let app2 = app_uploading(|c| {
        c.drc.on_newer_version = signrelay::documents::OnNewerVersion::Upload;
    })
    .await;
    let docs = add_docs(&drc2, &["besluit.docx"]);
    register_docs(&app2, &drc2, tx, &docs).await;
    drc2.edit(&docs[0].uuid, b"edited meanwhile");
    app2.notify(tx, completion(tx, &[(&docs[0].uuid, &signed)]))
        .await;
    delivered_event(&app2, tx).await;
    let v = drc2.versions(&docs[0].uuid);
    assert_eq!(v.len(), 3);
    assert_eq!(v[2].content.as_deref(), Some(signed.as_slice()));
}

#[tokio::test]
async fn a_large_document_goes_in_parts_and_a_signed_file_that_matches_nothing_is_refused() {
    // Parts of 100 000 bytes above 64 KiB: a 1 MB document in 11 parts.
    let drc = start_drc(100_000).await;
    let app = app_uploading(|c| {
        c.drc.parts_above_kib = 64;
        c.store.purge_interval_secs = 1;
    })
    .await;
    let docs = add_docs(&drc, &["groot.docx"]);
    let tx = "DOCS-LARGE";
    register_docs(&app, &drc, tx, &docs).await;
    let signed = pdf_bytes(1_050_000);
    app.notify(tx, completion(tx, &[(&docs[0].uuid, &signed)]))
        .await;
    delivered_event(&app, tx).await;
    let v = drc.versions(&docs[0].uuid);
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].content.as_deref(), Some(signed.as_slice()));
    let parts = drc
        .calls()
        .iter()
        .filter(|c| c.method == "PUT" && c.status == 200)
        .count();
    assert_eq!(parts, 11);
    assert!(!drc.is_locked(&docs[0].uuid));

    // Two documents, one signed file that is neither's by id: refused, nothing written.
    let docs = add_docs(&drc, &["a.docx", "b.docx"]);
    let tx = "DOCS-NOMATCH";
    register_docs(&app, &drc, tx, &docs).await;
    app.notify(tx, completion(tx, &[("someone-else", &signed)]))
        .await;
    let dl = wait_dead_letter(&app, Duration::from_secs(5)).await;
    let reason = dl["reason"].as_str().unwrap();
    assert!(
        reason.contains("documenten[0]") && reason.contains("geen ondertekend bestand"),
        "{reason}"
    );
    assert_eq!(drc.versions(&docs[0].uuid).len(), 1);
    assert_eq!(drc.versions(&docs[1].uuid).len(), 1);
    // Staged files stay while their event may be replayed, and go once it has no step left
    // (here: an event the store no longer has).
    let signed = app.store_path.join("signed");
    let kept = signed.join(dl["event_id"].as_str().unwrap());
    assert!(kept.join("manifest.json").exists());
    let orphan = signed.join(uuid::Uuid::now_v7().to_string());
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("0.bin"), b"signed bytes").unwrap();
    let swept = eventually(Duration::from_secs(5), || (!orphan.exists()).then_some(())).await;
    assert!(swept.is_some(), "the orphan's files stay");
    assert!(
        kept.join("manifest.json").exists(),
        "a dead letter's files are kept"
    );
}

#[tokio::test]
async fn a_vendor_without_a_source_cannot_be_configured_to_upload() {
    let mut cfg = test_config(
        std::path::Path::new("/tmp/unused"),
        "http://127.0.0.1:1/api/v1",
    );
    cfg.vendors.throwaway.documents = DocumentsMode::Upload;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("throwaway.documents = \"upload\""), "{err}");
}

/// Registers a PKIsigning dossier naming `docs` and an evidence type; returns the zaak URL.
async fn register_dossier(app: &TestApp, drc: &DrcStandIn, id: &str, docs: &[Doc]) -> String {
    let mut t = trigger_for(drc, docs);
    t["bewijs_informatieobjecttype"] = json!(EVIDENCE_TYPE);
    let r = app
        .client
        .put(app.url(&format!("/api/v1/transactions/pkisigning/{id}")))
        .header("X-Api-Key", ADMIN_KEY)
        .json(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    t["zaak"]["url"].as_str().unwrap().to_string()
}

const EVIDENCE_TYPE: &str = "https://catalogi.example.nl/api/v1/informatieobjecttypen/bewijs";

#[tokio::test]
async fn a_pkisigning_dossier_s_signed_pdfs_and_evidence_go_into_the_drc_and_the_zaak() {
    use signrelay::testkit::pkisigning::PkisigningStandIn;
    let drc = start_drc(4 << 20).await;
    let pki = PkisigningStandIn::start(crate::pkisigning::CLIENT, crate::pkisigning::CLIENT_SECRET)
        .await
        .unwrap();
    let app = crate::pkisigning::pki_app(&pki, |c| {
        c.vendors.pkisigning.documents = DocumentsMode::Upload;
        c.drc.backoff_initial_ms = 20;
        c.drc.backoff_max_secs = 1;
        c.drc.bronorganisatie = Some("123456782".into());
        // The first evidence create is applied but never answered: a retry must find it.
        c.drc.upload_timeout_secs = 1;
    })
    .await;
    let docs = add_docs(&drc, &["besluit.docx", "bijlage.docx"]);
    let id = uuid::Uuid::new_v4().to_string();
    pki.dossier(&id, "Completed", "key-1");
    let (besluit, bijlage) = (pdf_bytes(30_000), pdf_bytes(20_000));
    let audit = pdf_bytes(4_000);
    let xml = b"<signatures><signature/></signatures>".to_vec();
    // Names as the case application uploaded them; the zip's order is not the trigger's.
    pki.dossier_files(
        &id,
        vec![
            ("Bijlage.pdf".into(), bijlage.clone()),
            ("AuditTrail.pdf".into(), audit.clone()),
            ("besluit.pdf".into(), besluit.clone()),
            ("signatures.xml".into(), xml.clone()),
        ],
    );
    let zaak = register_dossier(&app, &drc, &id, &docs).await;
    drc.hang_after(signrelay::testkit::drc::Op::Create);
    let r = app
        .client
        .post(app.url("/pkisigning/webhook"))
        .json(&pki.webhook_body(&id, "Completed", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    drc.wait_for_call(
        |c| c.method == "POST" && c.path.ends_with("/enkelvoudiginformatieobjecten"),
        Duration::from_secs(10),
    )
    .await
    .expect("an evidence document is created");
    drc.answer_again();
    let ev = delivered_event(&app, &id).await;
    assert_eq!(ev["outcome"]["kind"], "completed");
    assert_notified(&app, &id, &zaak, "OndertekenenVoltooid", None);
    for (doc, bytes) in [(&docs[0], &besluit), (&docs[1], &bijlage)] {
        let v = drc.versions(&doc.uuid);
        assert_eq!(v.len(), 2, "{}", doc.name);
        assert_eq!(v[1].content.as_deref(), Some(bytes.as_slice()));
    }
    // Evidence: one document each, created once (the unanswered create found again by its
    // identificatie), of the trigger's type, linked to the zaak.
    let created = drc.created();
    assert_eq!(created.len(), 2, "{created:#?}");
    let mut contents: Vec<Vec<u8>> = created
        .iter()
        .map(|c| c.version.content.clone().unwrap())
        .collect();
    contents.sort();
    let mut want = vec![audit.clone(), xml.clone()];
    want.sort();
    assert_eq!(contents, want);
    for c in &created {
        assert_eq!(c.informatieobjecttype, EVIDENCE_TYPE);
        assert!(c.identificatie.starts_with("SR-"), "{}", c.identificatie);
        assert!(c.identificatie.len() <= 40);
        let sha = sha256_hex(c.version.content.as_deref().unwrap());
        assert_eq!(c.version.integriteit.as_ref().unwrap()["waarde"], sha);
    }
    let links = drc.links();
    assert_eq!(links.len(), 2);
    for c in &created {
        assert!(links.contains(&(zaak.clone(), c.url.clone())), "{links:?}");
    }
    let last_write = writes(&drc).last().unwrap().at;
    assert!(last_write < received_for(&app, &id)[0].at);
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "signrelay_documents_total",
            &[("vendor", "pkisigning"), ("result", "evidence")]
        ),
        Some(2.0)
    );
    assert!(pki
        .calls()
        .iter()
        .any(|c| c.kind == "download" && c.status == 200));
}

#[tokio::test]
async fn a_posten_job_s_pades_and_xades_go_into_the_drc_and_the_zaak() {
    use signrelay::testkit::posten::{default_xades, Certificates, Finish, PostenStandIn};
    let drc = start_drc(4 << 20).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = Certificates::generate().unwrap();
    let files = certs.write(dir.path()).unwrap();
    let posten = PostenStandIn::start(&certs, "123456789").await.unwrap();
    let api = posten.api_url.clone();
    let app = app_uploading(move |c| {
        c.vendors.gosign.documents = DocumentsMode::Off;
        let s = &mut c.vendors.posten;
        s.enabled = true;
        s.documents = DocumentsMode::Upload;
        s.api_url = api;
        s.organization_number = "123456789".into();
        s.ca_certificate_pem = Some(files.ca.clone());
        s.client_certificate_pem = Some(files.client_cert.clone());
        s.client_key_pem = Some(files.client_key.clone());
        s.backoff_initial_ms = 20;
        s.backoff_max_secs = 1;
    })
    .await;
    let docs = add_docs(&drc, &["besluit.docx"]);
    let reference = "POSTEN-DOCS";
    let (job, status_url) = posten.direct_job(reference, 2);
    let mut t = trigger_for(&drc, &docs);
    t["vendor"] = json!({"status_url": status_url});
    t["bewijs_informatieobjecttype"] = json!(EVIDENCE_TYPE);
    let zaak = t["zaak"]["url"].as_str().unwrap().to_string();
    let r = app
        .client
        .put(app.url(&format!("/api/v1/transactions/posten/{reference}")))
        .header("X-Api-Key", ADMIN_KEY)
        .json(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let pades = pdf_bytes(25_000);
    posten.set_pades(job, pades.clone());
    let token = posten.finish_direct(job, Finish::Signed);
    // The signer's browser comes back; signrelay fetches the status and then the documents.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    browser
        .get(app.url(&format!(
            "/posten/direct/{reference}/completion?status_query_token={token}"
        )))
        .send()
        .await
        .unwrap();
    let ev = app
        .wait_events(reference, Duration::from_secs(10), |ev| {
            ev.iter().any(|e| e["relay"]["state"] == "delivered")
        })
        .await;
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_notified(&app, reference, &zaak, "OndertekenenVoltooid", None);
    let v = drc.versions(&docs[0].uuid);
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].content.as_deref(), Some(pades.as_slice()));
    assert_eq!(v[1].bestandsnaam, "besluit.pdf");
    // Each signer's XAdES is evidence in the zaak.
    let created = drc.created();
    assert_eq!(created.len(), 2);
    let mut got: Vec<Vec<u8>> = created
        .iter()
        .map(|c| c.version.content.clone().unwrap())
        .collect();
    got.sort();
    let mut want = vec![default_xades(job, 1), default_xades(job, 2)];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(drc.links().len(), 2);
    assert!(drc.links().iter().all(|(z, _)| *z == zaak));
}
