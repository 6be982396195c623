#!/usr/bin/env bash
# Fuzzes each cargo-fuzz target for a few seconds, when cargo-fuzz is installed (with nightly,
# or else the stable toolchain under RUSTC_BOOTSTRAP=1); otherwise says why and exits 0 (the
# corpus regression test, tests/fuzz_corpus.rs, runs in every `cargo test` regardless). The
# first build takes about 10 minutes on 2 cores (everything instrumented), later ones seconds.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     default: 10 seconds each, every target
#   FUZZ_REQUIRED=1 fuzz/run.sh           a missing toolchain is an error, not a skip
#   FUZZ_INSTALL=1 fuzz/run.sh            installs cargo-fuzz from crates.io when it is missing
#
# New inputs go to fuzz/corpus-new/<target>/ (not checked in); crashes to
# fuzz/artifacts/<target>/, with the command that reproduces them. A fixed crash's input
# belongs in fuzz/corpus/<target>/, so that the regression test keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-10}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(gosign_json soap_envelope jwt_header_claims)
fi

skip() {
  echo "fuzz: skipped: $1" >&2
  if [ "${FUZZ_REQUIRED:-0}" = 1 ]; then exit 1; fi
  exit 0
}

command -v cargo >/dev/null || skip "cargo is not installed"
# cargo-fuzz needs nightly compiler flags (-Zsanitizer). Without a nightly toolchain, the
# machine's stable one is told to accept them (RUSTC_BOOTSTRAP=1; seen to work with 1.95).
if command -v rustup >/dev/null && rustup toolchain list | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  echo "fuzz: no nightly toolchain; using $(rustc --version) with RUSTC_BOOTSTRAP=1" >&2
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  if [ "${FUZZ_INSTALL:-0}" = 1 ]; then
    cargo install cargo-fuzz --locked
  else
    skip "cargo-fuzz is not installed (cargo install cargo-fuzz --locked, or FUZZ_INSTALL=1)"
  fi
fi

echo "fuzz: building ${targets[*]}"
for t in "${targets[@]}"; do
  "${fuzz[@]}" build "$t"
done
for t in "${targets[@]}"; do
  mkdir -p "corpus-new/$t" "artifacts/$t"
  echo "fuzz: $t for ${secs}s"
  # The first corpus directory receives new inputs; the checked-in seeds stay as they are.
  "${fuzz[@]}" run "$t" "corpus-new/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "fuzz: ${#targets[@]} targets, ${secs}s each, no crash"
