use crate::helpers::*;

// Posten signering: the signer's browser at the exit URLs, the status fetch and confirmation,
// and status polling, against a Posten stand-in over real TLS that requires the organisation
// certificate (certificates made in the test), up to what the NRC stand-in receives.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use signrelay::config::{Config, Secret};
use signrelay::testkit::posten::{
    self as stand_in_xml, Behaviour, CertificateFiles, Certificates, Finish, PostenStandIn,
    P12_PASSWORD,
};

const ORG: &str = "123456789";
const WAIT: Duration = Duration::from_secs(10);

struct Posten {
    stand_in: PostenStandIn,
    files: CertificateFiles,
    _dir: tempfile::TempDir,
}

async fn posten() -> Posten {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certificates::generate().unwrap();
    let files = certs.write(dir.path()).unwrap();
    let stand_in = PostenStandIn::start(&certs, ORG).await.unwrap();
    Posten {
        stand_in,
        files,
        _dir: dir,
    }
}

/// Posten on, against the stand-in, with the organisation certificate as PEM.
fn with_posten(p: &Posten, c: &mut Config) {
    let s = &mut c.vendors.posten;
    s.enabled = true;
    s.api_url = p.stand_in.api_url.clone();
    s.organization_number = ORG.into();
    s.ca_certificate_pem = Some(p.files.ca.clone());
    s.client_certificate_pem = Some(p.files.client_cert.clone());
    s.client_key_pem = Some(p.files.client_key.clone());
    s.redirect_wait_ms = 1500;
    s.backoff_initial_ms = 20;
    s.backoff_max_secs = 1;
    s.timeout_secs = 2;
}

async fn posten_app(p: &Posten, adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(|c| {
        with_posten(p, c);
        adjust(c);
    })
    .await
}

/// Registers a Posten job's reference with its status URL; the zaak url.
async fn register_job(app: &TestApp, reference: &str, status_url: &str) -> String {
    let zaak = format!("zaak-{reference}");
    let mut t = trigger(&zaak);
    t["vendor"] = json!({"status_url": status_url});
    let r = app
        .client
        .put(app.url(&format!("/api/v1/transactions/posten/{reference}")))
        .header("X-Api-Key", ADMIN_KEY)
        .json(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    zaak_url(&zaak)
}

/// A browser that does not follow redirects (each step is checked).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// `GET` as the signer's browser; the status, the headers and the body.
async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = browser().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.text().await.unwrap())
}

fn exit_url(app: &TestApp, reference: &str, exit: &str, token: &str) -> String {
    app.url(&format!(
        "/posten/direct/{reference}/{exit}?status_query_token={token}"
    ))
}

/// What a page or redirect must never carry.
fn assert_guarded(h: &reqwest::header::HeaderMap, what: &str) {
    assert!(h.get("set-cookie").is_none(), "{what} sets a cookie");
    assert_eq!(header_of(h, "cache-control"), "no-store", "{what}");
    assert_eq!(header_of(h, "referrer-policy"), "no-referrer", "{what}");
}

fn status_calls(p: &Posten) -> usize {
    p.stand_in
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/status"))
        .count()
}

#[tokio::test]
async fn each_exit_sends_the_browser_to_its_page_and_the_outcome_to_the_nrc() {
    let p = posten().await;
    // The organisation certificate as PKCS#12 here (PEM in the other tests).
    let (api, ca, p12) = (
        p.stand_in.api_url.clone(),
        p.files.ca.clone(),
        p.files.client_p12.clone(),
    );
    let app = spawn_app_with(move |c| {
        let s = &mut c.vendors.posten;
        s.enabled = true;
        s.api_url = api;
        s.organization_number = ORG.into();
        s.ca_certificate_pem = Some(ca);
        s.client_pkcs12 = Some(p12);
        s.client_pkcs12_password = Some(Secret::Inline(P12_PASSWORD.into()));
        s.backoff_initial_ms = 20;
        s.backoff_max_secs = 1;
    })
    .await;
    for (reference, finish, exit, page, actie, reden, title) in [
        (
            "REF-SIGNED",
            Finish::Signed,
            "completion",
            "voltooid",
            "OndertekenenVoltooid",
            None,
            "Ondertekening voltooid",
        ),
        (
            "REF-REJECTED",
            Finish::Rejected,
            "rejection",
            "afgebroken",
            "OndertekenenAfgebroken",
            Some("geweigerd door ondertekenaar"),
            "Ondertekening niet voltooid",
        ),
        (
            "REF-EXPIRED",
            Finish::Expired,
            "rejection",
            "afgebroken",
            "OndertekenenAfgebroken",
            Some("verlopen"),
            "Ondertekening niet voltooid",
        ),
        (
            "REF-FAILED",
            Finish::Failed,
            "error",
            "fout",
            "OndertekenenAfgebroken",
            Some("technische fout"),
            "Er ging iets mis",
        ),
    ] {
        let (id, status_url) = p.stand_in.direct_job(reference, 2);
        let zaak = register_job(&app, reference, &status_url).await;
        let token = p.stand_in.finish_direct(id, finish);
        let url = exit_url(&app, reference, exit, &token);
        let (status, h, _) = get(&url).await;
        assert_eq!(status, 303, "{reference}");
        assert_guarded(&h, reference);
        let to = header_of(&h, "location").to_string();
        assert_eq!(to, format!("/posten/landing/{page}?transactie={reference}"));
        assert!(!to.contains(&token));
        let (status, h, body) = get(&app.url(&to)).await;
        assert_eq!(status, 200);
        assert_guarded(&h, &to);
        assert!(header_of(&h, "content-type").starts_with("text/html"));
        assert!(body.contains(title) && body.contains(reference), "{body}");
        assert!(
            body.contains("<html lang=\"nl\">") && !body.contains("http"),
            "no external assets: {body}"
        );
        delivered_event(&app, reference).await;
        assert_notified(&app, reference, &zaak, actie, reden);
        // Reload and a second tab: the same page, nothing fetched or relayed again.
        let calls = status_calls(&p);
        for _ in 0..2 {
            let (status, h, _) = get(&url).await;
            assert_eq!((status, header_of(&h, "location")), (303, to.as_str()));
        }
        assert_eq!(status_calls(&p), calls, "{reference}: fetched again");
        assert_eq!(received_for(&app, reference).len(), 1);
        // Confirmed to Posten.
        let confirmed = eventually(WAIT, || {
            p.stand_in
                .confirmed()
                .iter()
                .any(|(_, j)| *j == id)
                .then_some(())
        })
        .await;
        assert!(confirmed.is_some(), "{reference} not confirmed");
    }
    // The event keeps the signed documents' links (for fetching them, never more than needed).
    let ev = &app.events("transaction_id=REF-SIGNED").await[0];
    let docs = ev["documents"].as_array().unwrap();
    assert_eq!(docs[0]["external_id"], "pades");
    assert!(docs[0]["url"].as_str().unwrap().ends_with("/pades"));
    assert_eq!(docs.len(), 3, "{docs:?}");
    // The token is nowhere the admin API shows.
    let (_, events) = app.admin_get("/api/v1/events?vendor=posten").await;
    assert!(!events.to_string().contains("sqt-"), "{events}");
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "signrelay_callbacks_total",
            &[
                ("vendor", "posten"),
                ("surface", "posten.exit"),
                ("result", "recorded")
            ]
        ),
        Some(4.0)
    );
}

#[tokio::test]
async fn forged_and_malformed_exit_urls_get_a_plain_error_page() {
    let p = posten().await;
    let app = posten_app(&p, |_| {}).await;
    let (id, status_url) = p.stand_in.direct_job("REF-X", 1);
    register_job(&app, "REF-X", &status_url).await;
    p.stand_in.finish_direct(id, Finish::Signed);
    // A token Posten never issued: Posten refuses it, the browser ends on the error page.
    let (status, h, _) = get(&exit_url(
        &app,
        "REF-X",
        "completion",
        "sqt-forged-0123456789",
    ))
    .await;
    assert_eq!(
        (status, header_of(&h, "location")),
        (303, "/posten/landing/ongeldig")
    );
    let (status, h, body) = get(&app.url("/posten/landing/ongeldig")).await;
    assert_eq!(status, 200);
    assert!(header_of(&h, "content-type").starts_with("text/html"));
    assert!(body.contains("Deze link is ongeldig of verlopen"), "{body}");
    for (path, expect) in [
        ("/posten/direct/REF-X/completion", 400),
        (
            "/posten/direct/REF-X/completion?status_query_token=%3Cscript%3E",
            400,
        ),
        (
            "/posten/direct/REF-X/completion?status_query_token=a&status_query_token=b",
            400,
        ),
        (
            "/posten/direct/REF-X/elsewhere?status_query_token=sqt-0123456789",
            404,
        ),
        (
            "/posten/direct/%2E%2E/completion?status_query_token=sqt-0123456789",
            404,
        ),
        ("/posten/nothing/here", 404),
        ("/posten/landing/unknown", 404),
    ] {
        let (status, h, body) = get(&app.url(path)).await;
        assert_eq!(status, expect, "{path}");
        assert!(
            header_of(&h, "content-type").starts_with("text/html"),
            "{path}"
        );
        assert!(body.contains("Deze link is ongeldig"), "{path}: {body}");
        assert!(
            !body.contains("REF-X") && !body.contains("script"),
            "{path}: {body}"
        );
        assert_guarded(&h, path);
    }
    assert!(app
        .nrc
        .wait_for(1, Duration::from_millis(300))
        .await
        .is_empty());
    // The forged token's fetch is a dead letter with Posten's answer, its token not shown.
    let (_, dl) = app.admin_get("/api/v1/dead-letters").await;
    let dl = dl["dead_letters"].as_array().unwrap().clone();
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(
        (dl[0]["party"].as_str(), dl[0]["status"].as_u64()),
        (Some("posten"), Some(403))
    );
    assert!(!Value::Array(dl).to_string().contains("sqt-forged"));
}

#[tokio::test]
async fn a_slow_or_down_posten_never_keeps_the_browser_waiting() {
    let p = posten().await;
    let app = posten_app(&p, |_| {}).await;
    for (reference, behaviour) in [
        ("REF-SLOW", Behaviour::Slow(Duration::from_secs(4))),
        ("REF-DOWN", Behaviour::Down),
    ] {
        let (id, status_url) = p.stand_in.direct_job(reference, 1);
        let zaak = register_job(&app, reference, &status_url).await;
        let token = p.stand_in.finish_direct(id, Finish::Signed);
        p.stand_in.behave(behaviour);
        let started = Instant::now();
        let (status, h, _) = get(&exit_url(&app, reference, "completion", &token)).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{reference}: the browser waited {:?}",
            started.elapsed()
        );
        assert_eq!(
            (status, header_of(&h, "location")),
            (
                303,
                format!("/posten/landing/in_behandeling?transactie={reference}").as_str()
            )
        );
        let (_, _, body) = get(&app.url(header_of(&h, "location"))).await;
        assert!(body.contains("Uw ondertekening wordt verwerkt"), "{body}");
        p.stand_in.behave(Behaviour::Normal);
        // The fetch goes on as a job until Posten answers.
        app.wait_events(reference, Duration::from_secs(15), |ev| {
            ev.iter().any(|e| e["relay"]["state"] == "delivered")
        })
        .await;
        assert_notified(&app, reference, &zaak, "OndertekenenVoltooid", None);
    }
}

#[tokio::test]
async fn a_case_application_landing_page_gets_the_transaction_and_outcome() {
    let p = posten().await;
    let app = posten_app(&p, |c| {
        c.vendors.posten.landing.completed_url =
            Some("https://zaken.gemeente.example/ondertekend?bron=posten".into());
    })
    .await;
    let (id, status_url) = p.stand_in.direct_job("REF-LAND", 1);
    register_job(&app, "REF-LAND", &status_url).await;
    let token = p.stand_in.finish_direct(id, Finish::Signed);
    let (status, h, _) = get(&exit_url(&app, "REF-LAND", "completion", &token)).await;
    assert_eq!(
        (status, header_of(&h, "location")),
        (303, "https://zaken.gemeente.example/ondertekend?bron=posten&transactie=REF-LAND&uitkomst=voltooid")
    );
}

#[tokio::test]
async fn a_signer_back_before_posten_finished_is_asked_about_again() {
    let p = posten().await;
    let app = posten_app(&p, |c| c.vendors.posten.ceremony_settle_secs = 60).await;
    let (id, status_url) = p.stand_in.direct_job("REF-EARLY", 1);
    let zaak = register_job(&app, "REF-EARLY", &status_url).await;
    // The browser comes back while Posten has not finished: "wordt verwerkt", asked again.
    let early = p.stand_in.early_token();
    let (status, h, _) = get(&exit_url(&app, "REF-EARLY", "completion", &early)).await;
    assert_eq!(
        (status, header_of(&h, "location")),
        (303, "/posten/landing/in_behandeling?transactie=REF-EARLY")
    );
    let asked = eventually(WAIT, || (status_calls(&p) >= 3).then_some(())).await;
    assert!(asked.is_some(), "{} status calls", status_calls(&p));
    assert!(received_for(&app, "REF-EARLY").is_empty());
    // Once it has, the signer's next visit (with Posten's token) brings the outcome.
    let token = p.stand_in.finish_direct(id, Finish::Signed);
    let (status, h, _) = get(&exit_url(&app, "REF-EARLY", "completion", &token)).await;
    assert_eq!(
        (status, header_of(&h, "location")),
        (303, "/posten/landing/voltooid?transactie=REF-EARLY")
    );
    delivered_event(&app, "REF-EARLY").await;
    assert_notified(&app, "REF-EARLY", &zaak, "OndertekenenVoltooid", None);
}

#[tokio::test]
async fn a_refused_client_certificate_loses_nothing_and_reaches_nothing() {
    let p = posten().await;
    let (cert, key) = (p.files.stranger_cert.clone(), p.files.stranger_key.clone());
    let app = posten_app(&p, move |c| {
        c.vendors.posten.client_certificate_pem = Some(cert);
        c.vendors.posten.client_key_pem = Some(key);
    })
    .await;
    let (id, status_url) = p.stand_in.direct_job("REF-STRANGER", 1);
    register_job(&app, "REF-STRANGER", &status_url).await;
    let token = p.stand_in.finish_direct(id, Finish::Signed);
    let (status, h, _) = get(&exit_url(&app, "REF-STRANGER", "completion", &token)).await;
    assert_eq!(
        (status, header_of(&h, "location")),
        (
            303,
            "/posten/landing/in_behandeling?transactie=REF-STRANGER"
        )
    );
    // The handshake fails: Posten's API never sees a request; the fetch stays queued.
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = app.metrics().await;
        let retried = metric(
            &metrics,
            "signrelay_jobs_total",
            &[("party", "posten"), ("result", "retry")],
        );
        if retried.is_some_and(|n| n >= 2.0) {
            break;
        }
        assert!(Instant::now() < deadline, "never retried: {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(p.stand_in.calls().is_empty(), "{:?}", p.stand_in.calls());
    assert!(app.events("vendor=posten").await.is_empty());
    let (_, ready) = app.admin_get("/api/v1/dead-letters").await;
    assert_eq!(ready["dead_letters"], json!([]));
}

#[tokio::test]
async fn polling_never_comes_early_and_a_change_reported_twice_is_relayed_once() {
    let p = posten().await;
    p.stand_in
        .pacing(Duration::from_millis(800), Duration::from_millis(500));
    let app = posten_app(&p, |c| {
        c.vendors.posten.poll_portal = true;
        c.vendors.posten.poll_direct = true;
    })
    .await;
    let zaak = register_tx(&app, "posten", "REF-PORTAL").await;
    let zaak2 = register_tx(&app, "posten", "REF-PORTAL-2").await;
    p.stand_in.queue_portal_change(
        Some("REF-PORTAL"),
        "COMPLETED_SUCCESSFULLY",
        &["SIGNED", "SIGNED"],
        None,
    );
    p.stand_in.queue_portal_change(
        Some("REF-PORTAL-2"),
        "FAILED",
        &["SIGNED", "REJECTED", "EXPIRED", "NOT_APPLICABLE"],
        None,
    );
    delivered_event(&app, "REF-PORTAL").await;
    delivered_event(&app, "REF-PORTAL-2").await;
    assert_notified(&app, "REF-PORTAL", &zaak, "OndertekenenVoltooid", None);
    assert_notified(
        &app,
        "REF-PORTAL-2",
        &zaak2,
        "OndertekenenAfgebroken",
        Some("geweigerd door ondertekenaar; verlopen"),
    );
    // The same change again (as Posten queues an unconfirmed one): recorded as a duplicate,
    // confirmed again, not relayed again.
    p.stand_in.queue_portal_change(
        Some("REF-PORTAL"),
        "COMPLETED_SUCCESSFULLY",
        &["SIGNED", "SIGNED"],
        None,
    );
    let again = eventually(WAIT, || (p.stand_in.confirmed().len() >= 3).then_some(())).await;
    assert!(again.is_some(), "{:?}", p.stand_in.confirmed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(received_for(&app, "REF-PORTAL").len(), 1);
    assert_eq!(app.events("transaction_id=REF-PORTAL").await.len(), 1);
    // Polls of both queues, none before its permitted time.
    assert_eq!(p.stand_in.early_polls(), 0, "{:#?}", p.stand_in.calls());
    let polls: Vec<_> = p
        .stand_in
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/signature-jobs"))
        .collect();
    assert!(polls.iter().any(|c| c.path.contains("/portal/")));
    assert!(polls.iter().any(|c| c.path.contains("/direct/")));
    for pair in polls
        .windows(2)
        .filter(|w| w[0].path == w[1].path && w[0].status == 204)
    {
        assert!(
            pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(750),
            "polled again {:?} after an empty answer",
            pair[1].at.duration_since(pair[0].at)
        );
    }
}

#[tokio::test]
async fn a_job_reported_by_exit_url_and_by_polling_is_one_notification() {
    let p = posten().await;
    p.stand_in
        .pacing(Duration::from_millis(500), Duration::from_secs(60));
    let app = posten_app(&p, |c| c.vendors.posten.poll_direct = true).await;
    let (id, status_url) = p.stand_in.direct_job("REF-BOTH", 1);
    let zaak = register_job(&app, "REF-BOTH", &status_url).await;
    let token = p.stand_in.finish_direct(id, Finish::Signed);
    p.stand_in.queue_direct_change(id, None);
    let (status, _, _) = get(&exit_url(&app, "REF-BOTH", "completion", &token)).await;
    assert_eq!(status, 303);
    let both = eventually(WAIT, || {
        (p.stand_in
            .confirmed()
            .iter()
            .filter(|(_, j)| *j == id)
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    assert!(
        both.is_some(),
        "reported twice, confirmed twice: {:?}",
        p.stand_in.confirmed()
    );
    delivered_event(&app, "REF-BOTH").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_notified(&app, "REF-BOTH", &zaak, "OndertekenenVoltooid", None);
}

/// Runs `xmllint --schema` on a file; `None` when xmllint is not installed.
fn xmllint(schema: &Path, file: &Path) -> Option<(bool, String)> {
    let out = std::process::Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(schema)
        .arg(file)
        .output()
        .ok()?;
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn every_posten_message_the_tests_use_validates_against_postens_schemas() {
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/posten/xsd");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/posten/examples");
    let dir = tempfile::tempdir().unwrap();
    let base = "https://api.signering.posten.no/api/123456789";
    let signers = |v: &[&str]| -> Vec<(String, String)> {
        v.iter()
            .enumerate()
            .map(|(i, s)| (format!("signer-{i}"), s.to_string()))
            .collect()
    };
    let mut fixtures: Vec<(&str, String)> = vec![
        (
            "direct.xsd",
            stand_in_xml::direct_status_xml(
                1,
                Some("REF-1"),
                "COMPLETED_SUCCESSFULLY",
                &signers(&["SIGNED", "SIGNED"]),
                base,
            ),
        ),
        (
            "direct.xsd",
            stand_in_xml::direct_status_xml(
                2,
                Some("REF-2"),
                "FAILED",
                &signers(&["REJECTED", "NOT_APPLICABLE"]),
                base,
            ),
        ),
        (
            "direct.xsd",
            stand_in_xml::direct_status_xml(3, None, "IN_PROGRESS", &signers(&["WAITING"]), base),
        ),
        (
            "portal.xsd",
            stand_in_xml::portal_change_xml(
                4,
                Some("REF-4"),
                "COMPLETED_SUCCESSFULLY",
                &["SIGNED"],
                base,
            ),
        ),
        (
            "portal.xsd",
            stand_in_xml::portal_change_xml(
                5,
                None,
                "FAILED",
                &["SIGNED", "REJECTED", "EXPIRED", "NOT_APPLICABLE"],
                base,
            ),
        ),
        (
            "direct.xsd",
            stand_in_xml::error_xml("INVALID_STATUS_QUERY_TOKEN", "Invalid status query token"),
        ),
        (
            "direct.xsd",
            stand_in_xml::error_xml("SIGNING_CEREMONY_NOT_COMPLETED", "not completed"),
        ),
    ];
    for (schema, example) in [
        ("direct.xsd", "direct/status-response.xml"),
        ("direct.xsd", "direct/multiple_signers/status-response.xml"),
        ("portal.xsd", "portal/status-change-response.xml"),
    ] {
        fixtures.push((
            schema,
            std::fs::read_to_string(examples.join(example)).unwrap(),
        ));
    }
    let mut checked = 0;
    for (i, (schema, xml)) in fixtures.iter().enumerate() {
        // What signrelay reads of it, it reads (the errors are Posten's <error>).
        if xml.contains("<error ") {
            assert!(signrelay::vendors::posten::xml::error_code(xml.as_bytes()).is_some());
        } else {
            signrelay::vendors::posten::xml::parse(xml.as_bytes()).unwrap();
        }
        let file = dir.path().join(format!("fixture-{i}.xml"));
        std::fs::write(&file, xml).unwrap();
        match xmllint(&xsd.join(schema), &file) {
            Some((ok, err)) => {
                assert!(
                    ok,
                    "fixture {i} does not validate against {schema}: {err}\n{xml}"
                );
                checked += 1;
            }
            None => {
                assert!(
                    std::env::var_os("SIGNRELAY_REQUIRE_POSTEN_TOOLS").is_none(),
                    "xmllint is required (Debian: libxml2-utils)"
                );
                eprintln!("xmllint not installed: Posten fixtures not validated");
                return;
            }
        }
    }
    assert_eq!(checked, fixtures.len());
}

/// Chromium, headless, as the probe of this machine starts it; `None` when not installed.
fn chromium_dump_dom(url: &str) -> Option<String> {
    let profile = tempfile::tempdir().ok()?;
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn the_landing_pages_in_a_real_browser() {
    let p = posten().await;
    let app = posten_app(&p, |_| {}).await;
    let (id, status_url) = p.stand_in.direct_job("REF-BROWSER", 1);
    register_job(&app, "REF-BROWSER", &status_url).await;
    let token = p.stand_in.finish_direct(id, Finish::Rejected);
    let url = exit_url(&app, "REF-BROWSER", "rejection", &token);
    let dom = match tokio::task::spawn_blocking(move || chromium_dump_dom(&url))
        .await
        .unwrap()
    {
        Some(d) => d,
        None => {
            assert!(
                std::env::var_os("SIGNRELAY_REQUIRE_POSTEN_TOOLS").is_none(),
                "chromium is required (Debian: chromium)"
            );
            eprintln!("chromium not installed: landing pages not checked in a browser");
            return;
        }
    };
    // The redirect chain ended on the refusal page, with its text and the transaction.
    assert!(
        dom.contains("<h1>Ondertekening niet voltooid</h1>"),
        "{dom}"
    );
    assert!(dom.contains("REF-BROWSER"), "{dom}");
    assert!(!dom.contains(&token), "{dom}");
    // A forged exit URL ends on the plain error page.
    let forged = exit_url(&app, "REF-BROWSER", "completion", "sqt-forged-0123456789");
    let dom = tokio::task::spawn_blocking(move || chromium_dump_dom(&forged))
        .await
        .unwrap()
        .unwrap();
    assert!(
        dom.contains("<h1>Deze link is ongeldig of verlopen</h1>"),
        "{dom}"
    );
}

#[tokio::test]
async fn a_restart_never_polls_before_the_permitted_time() {
    let p = posten().await;
    p.stand_in
        .pacing(Duration::from_secs(3), Duration::from_secs(60));
    let app = posten_app(&p, |c| c.vendors.posten.poll_portal = true).await;
    let polls = |p: &Posten| {
        p.stand_in
            .calls()
            .into_iter()
            .filter(|c| c.path.ends_with("/portal/signature-jobs"))
            .collect::<Vec<_>>()
    };
    let first = eventually(WAIT, || polls(&p).first().cloned())
        .await
        .expect("polled");
    assert_eq!(first.status, 204);
    // Restarted on the same store within the wait Posten asked for.
    let (nrc, dir, store) = app.stop().await;
    let mut cfg = test_config(&store, &nrc.url);
    with_posten(&p, &mut cfg);
    cfg.vendors.posten.poll_portal = true;
    let mut app = spawn_on(cfg, nrc).await;
    app.dir = dir;
    let second = eventually(Duration::from_secs(8), || polls(&p).get(1).cloned())
        .await
        .expect("polled again after the restart");
    assert!(
        second.at.duration_since(first.at) >= Duration::from_secs(3),
        "polled again {:?} after an empty answer that asked for 3 s",
        second.at.duration_since(first.at)
    );
    assert_eq!(p.stand_in.early_polls(), 0);
    app.stop().await;
}
