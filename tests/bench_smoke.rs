//! Smoke run of the whole-service benchmark: `signrelay-bench --quick` starts signrelay and the
//! no-op endpoint, drives them, prints its table, and every callback signrelay acknowledged
//! reaches the NRC stand-in. Speed is what the benchmark measures; it is never asserted here.

use std::process::Command;

#[test]
fn quick_bench_prints_its_table_and_every_acknowledged_outcome_reaches_the_nrc() {
    let out = Command::new(env!("CARGO_BIN_EXE_signrelay-bench"))
        .arg("--quick")
        .output()
        .expect("signrelay-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "signrelay-bench failed:\n{stdout}\n{stderr}"
    );
    for row in [
        "| figure",
        "signrelay / no-op",
        "callback ack → NRC receipt",
        "backlog drain",
        "drain at a limited NRC",
        "errors caused at the limited NRC",
        "peak RSS",
        "CPU per acknowledged, relayed callback",
        "no-op CPU per answered callback",
        "fill: maximum rate at its start / end",
        "fill: RSS at 1 000 callbacks/s, start / end",
    ] {
        assert!(stdout.contains(row), "no `{row}` in the table:\n{stdout}");
    }
    assert!(
        stdout.contains("every acknowledged outcome reached the NRC: yes"),
        "{stdout}"
    );
    assert!(stdout.contains("missing at the NRC: 0;"), "{stdout}");
    assert!(
        stdout.contains("terminal outcomes of the fill missing at the NRC: 0 of"),
        "{stdout}"
    );
}
