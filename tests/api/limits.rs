//! Request bodies: slow uploads are cut off at the minimum rate and never keep a large
//! callback waiting; large and chunked bodies are spooled to disk, not memory.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use signrelay::testkit::nrc::NrcStandIn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// What a raw chunked upload got back.
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    body: String,
    after: Duration,
}

/// Posts `chunks` with `Transfer-Encoding: chunked` over a raw connection, one every `pace`
/// (none: as fast as the server reads), while reading the answer; returns once the server
/// answered or closed, or after `bound`.
async fn chunked_post(
    addr: &str,
    path: &str,
    chunks: impl Iterator<Item = Vec<u8>> + Send + 'static,
    pace: Option<Duration>,
    bound: Duration,
) -> Answer {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: signrelay\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for c in chunks {
            if let Some(p) = pace {
                tokio::time::sleep(p).await;
            }
            let mut frame = format!("{:x}\r\n", c.len()).into_bytes();
            frame.extend_from_slice(&c);
            frame.extend_from_slice(b"\r\n");
            if wr.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(bound, async {
        let mut chunk = [0u8; 8192];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let text = String::from_utf8_lossy(&buf);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                });
                if len.is_some_and(|n| body.len() >= n) {
                    return;
                }
            }
        }
    })
    .await;
    let after = started.elapsed();
    writer.abort();
    let text = String::from_utf8_lossy(&buf).into_owned();
    Answer {
        status: text.get(9..12).and_then(|s| s.parse().ok()),
        body: text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
        after,
    }
}

/// Two authenticated clients trickle chunked bodies at 1 KiB/s. They are cut off at the
/// minimum rate (16 KiB per 2 s window here) with GoSign's "retry", and meanwhile a 2 MiB
/// callback is recorded at once: a slow upload holds no large-body slot (those are taken only
/// once a body is complete), and waiting for one would not count against its own time limit.
/// (Both slots were once held by the trickles for their whole time limit, and a legitimate
/// 2 MiB callback waited 118 s.)
#[tokio::test]
async fn slow_uploads_are_cut_off_and_never_delay_a_large_callback() {
    let app = spawn_app_with(|c| {
        c.server.body_min_rate_kib = 16;
        c.server.body_rate_window_secs = 2;
        c.vendors.gosign.rest.large_bodies_in_flight = 2;
    })
    .await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let trickle = |tx: &'static str| {
        let addr = addr.clone();
        // Over 1 MiB at once first (a large body for sure), then 1 KiB a second.
        let mut first = work(tx, "SIGN_PROCESS_ENDED").to_string();
        first.truncate(first.len() - 1);
        first.push_str(r#","documents":[{"docExternalId":"D","content":{"data":""#);
        first.push_str(&"A".repeat(1536 * 1024));
        let chunks =
            std::iter::once(first.into_bytes()).chain(std::iter::repeat_n(vec![b'A'; 1024], 120));
        async move {
            chunked_post(
                &addr,
                &format!("/gosign/rest/envelopes/{tx}/notify"),
                chunks,
                Some(Duration::from_secs(1)),
                Duration::from_secs(20),
            )
            .await
        }
    };
    let (slow_a, slow_b, fast) = tokio::join!(trickle("SLOW-A"), trickle("SLOW-B"), async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let tx = "BIG-2MIB";
        let mut body = work(tx, "SIGN_PROCESS_ENDED");
        body["documents"] = json!([{"docExternalId": "D1",
            "content": {"mimeType": "application/pdf", "data": b64(&pdf_bytes(3 << 19))}}]);
        let body = body.to_string();
        assert!(body.len() > 2 << 20);
        let started = Instant::now();
        let answer = app.notify(tx, body).await;
        (answer, started.elapsed())
    });
    let ((status, answer), took) = fast;
    assert_eq!((status, &answer), (200, &json!({"outcome": "succeeded"})));
    assert!(
        took < Duration::from_secs(3),
        "a 2 MiB callback waited {took:?} beside two slow uploads"
    );
    for slow in [&slow_a, &slow_b] {
        assert_eq!(slow.status, Some(200), "{slow:?}");
        let v: Value = serde_json::from_str(&slow.body).unwrap();
        assert_eq!(
            v,
            json!({"outcome": "failed_please_retry", "message": "body was not received completely"})
        );
        // Cut off at the minimum rate: after the first window that brought too little (the
        // first one brought 1.5 MiB), not at the 120 s time limit.
        assert!(
            slow.after >= Duration::from_secs(2) && slow.after < Duration::from_secs(7),
            "{slow:?}"
        );
    }
    assert_eq!(app.events("").await.len(), 1);
    // Their spool files are gone.
    let spools = std::fs::read_dir(app.store_path.join("payloads"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".spool"))
        .count();
    assert_eq!(spools, 0);
    app.stop().await;
}

/// A process's memory, KiB: (VmRSS, RssAnon).
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("RssAnon:"))
}

/// Samples `pid`'s memory every 10 ms while `work` runs: the peaks (VmRSS, RssAnon), KiB.
async fn peak_memory<T>(pid: u32, work: impl std::future::Future<Output = T>) -> (T, u64, u64) {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut rss, mut anon) = (0, 0);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (r, a) = memory_kib(pid);
                (rss, anon) = (rss.max(r), anon.max(a));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (rss, anon)
        })
    };
    let out = work.await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (rss, anon) = sampler.await.unwrap();
    (out, rss, anon)
}

/// A notify body of about `mib` MiB in 256 KiB chunks, made while sent (the test holds none
/// of it): a WorkNotification with one document of base64 text.
fn streamed_notify(tx: &str, mib: usize) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
    let mut head = work(tx, "SIGN_PROCESS_ENDED").to_string();
    head.truncate(head.len() - 1);
    head.push_str(
        r#","documents":[{"docExternalId":"D1","content":{"mimeType":"application/pdf","data":""#,
    );
    let tail = br#""}}]}"#.to_vec();
    std::iter::once(head.into_bytes())
        .chain((0..mib * 4).map(|i| {
            // 256 KiB of base64 (a multiple of 4 characters: one valid text).
            let raw: Vec<u8> = (0..192 * 1024).map(|j| ((i * 7 + j) % 251) as u8).collect();
            b64(&raw).into_bytes()
        }))
        .chain(std::iter::once(tail))
}

/// RSS bound, stated: four bodies at once cost the process no more than this over its
/// baseline, in anonymous memory (what a request buffers), whatever their size.
const BOUND_ANON_MIB: u64 = 40;

/// Four 64 MiB chunked bodies arrive at once at the real binary. Over the limit, each is read
/// to the limit and answered 413; within it, each is recorded. Either way a request buffers
/// a small constant in memory: the bodies are spooled into the payload archive (and parsed
/// from a map of their file, at most `large_bodies_in_flight` at a time). Measured from
/// /proc/<pid>/status; once +90 MiB per request were observed, 281 MiB with four at once.
#[tokio::test]
async fn four_64_mib_chunked_bodies_at_once_stay_within_a_small_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let nrc = NrcStandIn::start(NRC_CLIENT, NRC_SECRET, true)
        .await
        .unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let store = dir.path().join("store");
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, serve_toml(&addr, &store, &nrc.url, 2, 2)).unwrap();
    let mut child = spawn_serve(&config, &dir.path().join("serve.log"));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "signrelay did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id();
    let run =
        async {
            // Warm up: a first callback, so that what is measured is the bodies alone.
            let (_, rss0, anon0) = peak_memory(pid, async {
                chunked_post(
                    &addr,
                    "/gosign/rest/envelopes/WARM/notify",
                    streamed_notify("WARM", 2),
                    None,
                    Duration::from_secs(60),
                )
                .await
            })
            .await;
            let four = |mib: usize, prefix: &'static str| {
                let addr = addr.clone();
                futures_util::future::join_all((0..4).map(move |i| {
                    let tx = format!("{prefix}-{i}");
                    let addr = addr.clone();
                    async move {
                        chunked_post(
                            &addr,
                            &format!("/gosign/rest/envelopes/{tx}/notify"),
                            streamed_notify(&tx, mib),
                            None,
                            Duration::from_secs(120),
                        )
                        .await
                    }
                }))
            };
            // Over the limit (65 MiB each).
            let (over, rss_over, anon_over) = peak_memory(pid, four(65, "OVER")).await;
            for a in &over {
                assert_eq!(a.status, Some(413), "{a:?}");
            }
            // Within it (60 MiB each).
            let (within, rss_in, anon_in) = peak_memory(pid, four(60, "IN")).await;
            for a in &within {
                assert_eq!(a.status, Some(200), "{a:?}");
                assert_eq!(
                    serde_json::from_str::<Value>(&a.body).unwrap(),
                    json!({"outcome": "succeeded"})
                );
            }
            let mib = |kib: u64| kib / 1024;
            eprintln!(
            "baseline: RSS {} MiB, anon {} MiB; four over the limit: peak RSS {} MiB, anon {} MiB; \
             four within it: peak RSS {} MiB, anon {} MiB",
            mib(rss0), mib(anon0), mib(rss_over), mib(anon_over), mib(rss_in), mib(anon_in)
        );
            assert!(
            anon_over < anon0 + BOUND_ANON_MIB * 1024 && rss_over < rss0 + BOUND_ANON_MIB * 1024,
            "four bodies over the limit: RSS {} MiB, anon {} MiB over a baseline of {} / {} MiB",
            mib(rss_over), mib(anon_over), mib(rss0), mib(anon0)
        );
            assert!(
                anon_in < anon0 + BOUND_ANON_MIB * 1024,
                "four bodies within the limit: anon {} MiB over a baseline of {} MiB",
                mib(anon_in),
                mib(anon0)
            );
            // Mapped while parsed: at most two 60 MiB files at once (file pages, not buffers).
            assert!(
                rss_in < rss0 + (BOUND_ANON_MIB + 2 * 61) * 1024,
                "RSS {} MiB",
                mib(rss_in)
            );
        };
    run.await;
    // Recorded intact, and no spool file is left.
    let names: Vec<String> = std::fs::read_dir(store.join("payloads"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".spool")).count(),
        0,
        "{names:?}"
    );
    let r = client
        .get(format!("http://{addr}/api/v1/events?transaction_id=IN-3"))
        .header("X-Api-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["events"][0]["documents"][0]["size"],
        60 * 4 * 192 * 1024,
        "{v}"
    );
    let _ = child.kill();
    let _ = child.wait();
    drop(nrc);
}
