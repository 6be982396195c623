//! Retention and the bounds of the config: nothing acknowledged loses its payload whatever the
//! retention, absurd durations and sizes are refused by name, registrations (personal data)
//! are purged once their transaction is over.

use std::path::Path;
use std::process::Output;

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
