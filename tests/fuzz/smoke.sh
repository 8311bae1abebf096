#!/usr/bin/env bash
# Fuzz smoke run for CI: replays the regression inputs, then fuzzes every target for
# FUZZ_SECONDS (default 5) from the committed seeds. Longer local runs: FUZZ_SECONDS=600 bash tests/fuzz/smoke.sh
#
# cargo-fuzz passes -Z flags to rustc; RUSTC_BOOTSTRAP=1 lets the machine's stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-5}
for target in $(cargo fuzz list --fuzz-dir .); do
  if [ -d "regressions/$target" ]; then
    cargo fuzz run --fuzz-dir . "$target" regressions/"$target"/* -- -runs=0 >/dev/null 2>&1 \
      || { echo "fuzz: regression input of $target fails"; exit 1; }
  fi
  work=$(mktemp -d)
  out=$(cargo fuzz run --fuzz-dir . "$target" "$work" "seeds/$target" -- -max_total_time="$seconds" 2>&1) \
    || { echo "$out" | tail -30; echo "fuzz: $target crashed"; rm -rf "$work"; exit 1; }
  echo "fuzz: $target: $(echo "$out" | grep -E '^Done' | tail -1)"
  rm -rf "$work"
done
