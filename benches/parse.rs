//! Parsing and normalization of each payload kind signrelay receives (`cargo bench`).
//!
//! Each benchmark takes a body as it arrives on the wire to the normalized `Notification`
//! (with its dedup key) or the fields the handler acts on. The whole-service benchmark is the
//! `signrelay-bench` binary.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use signrelay::testkit::gosign::{soap_status_request, soap_work_notification, work_notification};
use signrelay::vendors::gosign::{legalbus, model, soap as gosign_soap};
use signrelay::vendors::soap;

const ENVELOPE: &str = "ENV-1001";

fn extended() -> String {
    serde_json::json!({
        "externalId": ENVELOPE,
        "status": "STO",
        "previousStatus": "REJ",
        "note": "bedrag klopt niet",
        "completedAt": 1_763_888_400_000i64,
        "process": {"liveStatus": [{"status": "REJ", "endedAt": 1_763_888_300_000i64}]}
    })
    .to_string()
}

fn operation_done() -> String {
    r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><e:OperationDone xmlns:e="http://www.infocert.it/legalbus/schema/evelopeevent"><OperationDoneEvent><ID>42</ID><command>insertEnvelope</command><extId>ENV-1001</extId><details/><returnStatus><code>return_status_envelope_already_exists</code><message>envelope already exists</message></returnStatus></OperationDoneEvent></e:OperationDone></s:Body></s:Envelope>"#.to_string()
}

/// A 1 MiB document, base64 as GoSign sends it inline.
fn mib_document() -> String {
    let pdf: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    base64::engine::general_purpose::STANDARD.encode(pdf)
}

fn rest(c: &mut Criterion) {
    let doc = mib_document();
    let cases = [
        (
            "rest/work_notification",
            work_notification(ENVELOPE, "SIGN_PROCESS_ENDED", None, None),
        ),
        (
            "rest/work_notification_1mib_document",
            work_notification(ENVELOPE, "SIGN_PROCESS_ENDED", None, Some(&doc)),
        ),
        ("rest/extended", extended()),
    ];
    let mut g = c.benchmark_group("gosign");
    for (name, body) in &cases {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| {
                let n = model::parse_json(ENVELOPE, black_box(body.as_bytes())).unwrap();
                black_box(n.dedup_key());
                n
            })
        });
    }
    g.finish();
}

fn soap_surfaces(c: &mut Criterion) {
    let doc = mib_document();
    let work = [
        (
            "soap/work_notification",
            soap_work_notification(ENVELOPE, "SIGN_PROCESS_ENDED", None),
        ),
        (
            "soap/work_notification_1mib_document",
            soap_work_notification(ENVELOPE, "SIGN_PROCESS_ENDED", Some(&doc)),
        ),
    ];
    let mut g = c.benchmark_group("gosign");
    for (name, body) in &work {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| {
                let req = soap::parse(black_box(body.as_bytes())).unwrap();
                let n = gosign_soap::notification(&req.operation).unwrap();
                black_box(n.dedup_key());
                n
            })
        });
    }

    let envelopes: Vec<String> = (0..10).map(|i| format!("ENV-{i:04}")).collect();
    let status = soap_status_request(&envelopes);
    g.throughput(Throughput::Bytes(status.len() as u64));
    g.bench_function("soap/get_envelope_external_status_request", |b| {
        b.iter(|| {
            let req = soap::parse(black_box(status.as_bytes())).unwrap();
            let op = &req.operation;
            // What the handler reads: the user and the envelopes asked about.
            let user = op.child_text("userExtId").map(str::to_string);
            let asked: Vec<(String, Option<String>)> = op
                .children
                .iter()
                .filter(|c| c.name.starts_with("envelopeExtId"))
                .map(|c| {
                    (
                        c.text.trim().to_string(),
                        c.attr("fromUserExtId").map(str::to_string),
                    )
                })
                .collect();
            (user, asked)
        })
    });

    let done = operation_done();
    g.throughput(Throughput::Bytes(done.len() as u64));
    g.bench_function("legalbus/operation_done", |b| {
        b.iter(|| {
            let req = soap::parse(black_box(done.as_bytes())).unwrap();
            let d = legalbus::parse(&req.operation).unwrap();
            legalbus::outcome(&d)
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = rest, soap_surfaces
}
criterion_main!(benches);
