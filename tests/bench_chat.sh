#!/usr/bin/env bash
# Chat under load, measured on one node: USERS WebSocket connections (default 2,000) in rooms of
# 200, each user sending one message every 10 s: ~200 messages/s, each delivered to its room of 200
# (~40,000 deliveries/s). Prints delivered/s and the delivery latency (p50/p99/max, send to receive
# on the same clock); then halves the interval (doubling the load) until p99 passes 1 s or the
# interval reaches 100 ms, and prints each step. Last, one client that never reads, with a 4 KiB
# SO_RCVBUF (loopback buffers would otherwise absorb megabytes), in a room of 200 sending ~13 MB in
# 30 s, is shown dropped (its queue filled: onair_chat_dropped_total{reason="slow_consumer"}) while
# the others are served, with the server's resident memory before and after.
# The per-user and per-room rate limits are lifted for the run (they would refuse the raised load).
# Usage: bash tests/bench_chat.sh [USERS] [SECONDS]   (defaults 2000, 20). Needs infra/setup.sh done.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-2000}
SECONDS_RUN=${2:-20}
cargo build --release -q -p onair -p onair-loadgen
source tests/bench_common.sh
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

export ONAIR_CHAT__USER_MESSAGES=1000000 ONAIR_CHAT__ROOM_MESSAGES_PER_S=1000000 ONAIR_CHAT__TOKENS_PER_MINUTE=1000000
export ONAIR_HTTP__MAX_CONNECTIONS_PER_IP=100000
start_server chat
base="http://127.0.0.1:$http"
metric() { curl -s "$base/metrics" | awk -v s="$1" 'index($0, s) == 1 { v += $NF } END { print v + 0 }'; }

run() {
  target/release/onair-chatload --base "$base" --users "$USERS" --interval-ms "$1" --seconds "${3:-$SECONDS_RUN}" ${2:+--stuck-rcvbuf $2}
}
cat > "$work/report.py" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); interval = int(sys.argv[2])
print(f"{r['joined']:>6} users  rooms {len(r['rooms']):>3} (largest {max(r['rooms'].values())})  1 msg/{interval / 1000:g} s each  "
      f"sent {r['sent'] / r['seconds']:8.0f}/s  delivered {r['delivered_per_s']:9.0f}/s  "
      f"latency p50 {r['p50_ms']:6.0f} ms  p99 {r['p99_ms']:6.0f} ms  max {r['max_ms']:6.0f} ms  refused {r['refused']}  closed {r['closed']}")
print("P99", r["p99_ms"])
PY
report() { python3 "$work/report.py" "$1" "$2"; }

echo "== $USERS users, rooms of 200, one message per user every 10 s, ${SECONDS_RUN} s =="
interval=10000
while :; do
  out=$(report "$(run "$interval")" "$interval")
  echo "$out" | grep -v '^P99'
  p99=$(echo "$out" | awk '/^P99/ {print $2}')
  if python3 -c "import sys; sys.exit(0 if float('$p99') > 1000 else 1)" || [ "$interval" -le 100 ]; then
    echo "p99 passed 1 s (or the interval reached 100 ms) at one message per user every $interval ms"
    break
  fi
  interval=$((interval / 2))
done

echo "== a client that never reads (SO_RCVBUF 4096) in a room of 200 sending 450-character messages, 4 per user per second, 30 s =="
dropped0=$(metric 'onair_chat_dropped_total{reason="slow_consumer"}')
rss0=$(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")
r=$(target/release/onair-chatload --base "$base" --users 200 --interval-ms 250 --seconds 30 --pad 450 --stuck-rcvbuf 4096)
python3 "$work/report.py" "$r" 250 | grep -v '^P99'
dropped1=$(metric 'onair_chat_dropped_total{reason="slow_consumer"}')
rss1=$(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")
echo "slow consumers dropped: $((${dropped1%.*} - ${dropped0%.*})) (the never-reading client); server RSS ${rss0} kB -> ${rss1} kB"
