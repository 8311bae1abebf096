#!/usr/bin/env bash
# Fault figures for the hardening issue, from the tests in tests/e2e/tests/hardening.rs run one at
# a time in release (so the RSS each prints is that test's server alone) with a larger flood:
#   - slowloris + idle HTTP flood: connections held and refused, the live channel's next-part wait
#     p50/p95 before and during it, a new viewer's first request, RSS before/after;
#   - a publisher without key frames and a reconfiguration storm: when they are refused, RSS;
#   - SRT: a wrong passphrase with takeover on, the bit-rate cap; SIGTERM with a blocked viewer.
# Usage: bash tests/bench_faults.sh [FLOOD_CONNECTIONS]   (default 5000). Needs infra/setup.sh done.
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_FLOOD_CONNECTIONS=${1:-5000}
export BENCH_FLOOD_PER_IP=$((BENCH_FLOOD_CONNECTIONS * 4 / 5))
tests=(slowloris_and_idle_floods_do_not_stop_the_live_channel a_publisher_without_key_frames_is_disconnected
  a_reconfiguration_storm_is_refused srt_wrong_passphrase_with_takeover_leaves_the_live_publisher_alone
  srt_publishers_get_the_bit_rate_and_connection_caps sigterm_answers_blocked_viewers_with_503_and_exits)
cargo test --release -q -j2 -p onair-e2e --test hardening --no-run
for t in "${tests[@]}"; do
  cargo test --release -q -j2 -p onair-e2e --test hardening -- --exact "$t" --nocapture 2>&1 \
    | grep -E '^(http flood|idle keep-alive|no-IDR|reconfiguration storm|srt wrong|SRT publisher|SIGTERM)|FAILED|panicked' || true
done
