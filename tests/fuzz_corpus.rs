//! The fuzz corpora as a regression test: every input in `fuzz/corpus/<target>/` goes through
//! the same harness as the cargo-fuzz targets (`fuzz/harness.rs`), and none may panic. This
//! runs in every `cargo test`, without nightly or cargo-fuzz. (Plain `#[test]`s: the JWT
//! harness drives its own single-threaded runtime.)

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect()
}

#[test]
fn every_corpus_input_runs_through_its_harness_without_panic() {
    let mut panicked = Vec::new();
    for target in harness::TARGETS {
        let inputs = corpus(target);
        assert!(
            inputs.len() >= 10,
            "{target}: only {} seeds in fuzz/corpus/{target}",
            inputs.len()
        );
        for (path, data) in inputs {
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(|| harness::run(target, &data));
            let took = started.elapsed();
            if outcome.is_err() {
                panicked.push(format!("{target}: {}", path.display()));
            }
            assert!(
                took < Duration::from_secs(2),
                "{target}: {} took {took:?}",
                path.display()
            );
        }
    }
    assert!(panicked.is_empty(), "panicked on:\n{}", panicked.join("\n"));
}

/// The JWT target reaches signrelay's key lookup without any network: a well-formed token
/// with an allowed alg and a plausible kid is refused for want of keys, at once, every time.
#[test]
fn jwt_harness_checks_tokens_without_network_and_accepts_none() {
    use actix_web::http::header::AUTHORIZATION;
    use signrelay::auth::jwt::TokenFailure;
    use signrelay::auth::AuthFailure;
    let token = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/jwt_header_claims/azure_v2_rs256.txt"),
    )
    .unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        let req = actix_web::test::TestRequest::default()
            .insert_header((AUTHORIZATION, format!("Bearer {}", token.trim())))
            .to_http_request();
        let checked = harness::runtime().block_on(harness::jwt_auth().check(&req));
        assert_eq!(
            checked,
            Err(AuthFailure::Token(TokenFailure::KeysUnavailable))
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
