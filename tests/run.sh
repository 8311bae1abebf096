#!/usr/bin/env bash
# The whole test suite: installs what the tests need (infra/setup.sh), enforces the workspace lints
# (clippy with warnings as errors, rustdoc with warnings as errors), runs every Rust test, unit and
# end to end (ffmpeg, ffprobe, the m3u8 parser and hls.js in headless Chromium) without stopping at
# the first failing binary, then a short fuzz smoke run (tests/fuzz), and ends with one line that
# totals every test binary's result.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
phase() { echo "== tests/run.sh: $1 at +$(( $(date +%s) - started )) s"; }
phase setup
bash infra/setup.sh test
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
phase clippy
cargo clippy --workspace --all-targets --locked -j2 -- -D warnings || status=$?
phase rustdoc
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked -j2 || status=$?
phase "cargo test"
cargo test --workspace --locked -j2 --no-fail-fast 2>&1 | tee "$log" || status=$?
if [ "$status" -eq 0 ]; then
  phase "fuzz smoke"
  bash tests/fuzz/smoke.sh || status=$?
fi
phase done
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
