#!/usr/bin/env bash
# Flash crowd through Usher (release build, transcoding off so the cores go to the cluster): a real
# redis-server as the registry, an origin (ingest role only), three relays and `onair usher`, all on
# core 0 (CLUSTER_CPUS); onair-loadgen on core 1 (LOAD_CPUS) sends VIEWERS simulated LL-HLS viewers (default 1,000) arriving at
# RAMP per second (default 100, so 1,000 in 10 s), each asking Usher's playback API and then
# watching the source rendition on the first server it answers.
#   Run 1: relays of capacity CAPACITY (default 400 viewers each, 1,200 in all): every viewer on a
#          relay; late parts, stalls, the time from each viewer's placement to its first part
#          (p50/max, the first viewers of each relay include its cold pull), each relay's peak
#          viewers against its capacity, and the channel's tree before and after.
#   Run 2: relays of capacity LOW (default 150) with Varnish as the CDN (cluster.cdn_url): the share
#          of viewers that spilled to the CDN, and again each relay's peak against its capacity.
# CLUSTER_CPUS (default 0) and LOAD_CPUS (default 1) are the taskset CPU lists of the cluster's
# processes and of the load generator.
# Usage: bash tests/bench_cluster.sh [VIEWERS] [RAMP] [CAPACITY] [LOW]
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/bench_common.sh
viewers=${1:-1000}; ramp=${2:-100}; capacity=${3:-400}; low=${4:-150}
cluster_cpus=${CLUSTER_CPUS:-0}; load_cpus=${LOAD_CPUS:-1}
duration=$(( viewers / ${ramp%.*} + 15 ))
cargo build --release -q --locked -j2 -p onair --bin onair -p onair-loadgen --bin onair-loadgen
ulimit -n 65536 2>/dev/null || true

# fmt WHAT < JSON: the figures this script prints, from Usher's and onair-loadgen's JSON.
cat > "$work/fmt.py" <<'PY'
import json, sys
what = sys.argv[1]
d = json.load(sys.stdin)
if what == "nodes":
    print(sum(1 for n in d["nodes"] if n["info"]["id"].startswith("relay") or any(c["channel"] == "demo" for c in n["channels"])))
elif what == "loads":
    print(" ".join(f'{n["info"]["id"]}={n["load"]["viewers"]}' for n in d["nodes"]))
elif what == "tree":
    print(", ".join(f'{n["node"]}<-{n["parent"]} ({n["viewers"]} viewers, depth {n["depth"]})' for n in d["nodes"]))
elif what == "report":
    n = sum(d["placements"].values())
    print(f'   placements {d["placements"]}, usher errors {d["usher_errors"]}; parts {d["parts"]}, late {d["late_percent"]:.2f} %, '
          f'stalls {d["stalls"]}, errors {d["errors"]}, part delay p50/p95/p99 {d["delay_ms"][0]:.0f}/{d["delay_ms"][1]:.0f}/{d["delay_ms"][2]:.0f} ms; '
          f'placement to first part p50 {d["first_part_ms"][0]:.0f} ms, max {d["first_part_ms"][1]:.0f} ms')
    print(f'   spilled to the CDN: {100 * d["placements"].get("cdn", 0) / max(1, n):.1f} % of {n}')
PY
fmt() { python3 "$work/fmt.py" "$1"; }

# run NAME RELAY_CAPACITY [CDN]: one cluster, one crowd; prints its figures.
run() {
  local name=$1 cap=$2 cdn=${3:-}
  local dir="$work/$name"; mkdir -p "$dir"
  local redis_port; redis_port=$(free_port)
  taskset -c "$cluster_cpus" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$dir/redis.log" 2>&1 & pids+=($!)
  local registry="redis://127.0.0.1:$redis_port"
  sleep 0.3
  local common="[transcode]\nenabled = false\n[playback]\ntoken_secret = \"bench\"\n[http]\ntrusted = [\"127.0.0.1/32\"]\n"
  local origin rtmp; origin=$(free_port); rtmp=$(free_port)
  printf "$common[cluster]\nroles = [\"ingest\"]\n" > "$dir/origin.toml"
  ONAIR_PLAYBACK__PUBLIC_URL="http://127.0.0.1:$origin" RUST_LOG=warn taskset -c "$cluster_cpus" target/release/onair --config "$dir/origin.toml" \
    --data-dir "$dir/origin" serve --http-addr 127.0.0.1:"$origin" --rtmp-addr 127.0.0.1:"$rtmp" --srt-addr 127.0.0.1:"$(free_port)" \
    --registry "$registry" --node-id origin > "$dir/origin.log" 2>&1 & pids+=($!)
  for _ in $(seq 100); do grep -qs "stream key for channel demo" "$dir/origin.log" && break; sleep 0.1; done
  local key; key=$(grep -s "stream key for channel demo" "$dir/origin.log" | awk '{print $NF}')
  taskset -c "$cluster_cpus" ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$fixture" -c copy -f flv "rtmp://127.0.0.1:$rtmp/live/$key" \
    > "$dir/ffmpeg.log" 2>&1 & pids+=($!)
  local relays=()
  for r in 1 2 3; do
    local port; port=$(free_port); relays+=("$port")
    printf "$common[cluster]\nroles = [\"relay\"]\ncapacity_viewers = $cap\n" > "$dir/relay$r.toml"
    ONAIR_PLAYBACK__PUBLIC_URL="http://127.0.0.1:$port" RUST_LOG=warn taskset -c "$cluster_cpus" target/release/onair --config "$dir/relay$r.toml" \
      --data-dir "$dir/relay$r" edge --http-addr 127.0.0.1:"$port" --registry "$registry" --node-id "relay-$r" > "$dir/relay$r.log" 2>&1 & pids+=($!)
  done
  local cdn_line=""
  if [ -n "$cdn" ]; then
    local vport; vport=$(free_port)
    sed -e "s/\.port = \"8080\"/.port = \"$origin\"/" infra/cdn/onair.vcl > "$dir/onair.vcl"
    taskset -c "$cluster_cpus" varnishd -F -j none -n "$dir/varnish" -a 127.0.0.1:"$vport" -f "$dir/onair.vcl" -s malloc,512m \
      -p thread_pool_max=5000 > "$dir/varnish.log" 2>&1 & pids+=($!)
    cdn_line="cdn_url = \"http://127.0.0.1:$vport\"\n"
  fi
  local usher; usher=$(free_port)
  printf "$common[cluster]\nview_refresh_ms = 250\n$cdn_line" > "$dir/usher.toml"
  RUST_LOG=warn taskset -c "$cluster_cpus" target/release/onair --config "$dir/usher.toml" usher --http-addr 127.0.0.1:"$usher" --registry "$registry" \
    > "$dir/usher.log" 2>&1 & pids+=($!)
  for _ in $(seq 150); do
    n=$(curl -s "http://127.0.0.1:$usher/api/v1/cluster" | fmt nodes 2>/dev/null || echo 0)
    [ "$n" -ge 4 ] && break; sleep 0.2
  done
  sleep 3
  echo "== $name: ${viewers} viewers at ${ramp}/s, relays of capacity $cap${cdn:+, Varnish as the CDN}; cluster on CPU $cluster_cpus, load on CPU $load_cpus"
  echo "   tree before: $(curl -s "http://127.0.0.1:$usher/api/v1/channels/demo/tree" | fmt tree)"
  # Each node's peak viewers while the crowd runs (its reports, every 0.5 s): raw JSON lines,
  # read after the run (a Python start per poll would cost the measured cores more than curl).
  ( while true; do curl -s "http://127.0.0.1:$usher/api/v1/cluster"; echo; sleep 0.5; done ) > "$dir/cluster.jsonl" &
  local poller=$!
  taskset -c "$load_cpus" target/release/onair-loadgen --usher "http://127.0.0.1:$usher/api/v1/playback/demo" --viewers "$viewers" --ramp-per-s "$ramp" \
    --duration-s "$duration" source/index.m3u8 > "$dir/report.json"
  sleep 1; kill "$poller" 2>/dev/null || true
  grep '^{' "$dir/cluster.jsonl" | while IFS= read -r line; do echo "$line" | fmt loads 2>/dev/null; done > "$dir/loads.log"
  echo "   tree after:  $(curl -s "http://127.0.0.1:$usher/api/v1/channels/demo/tree" | fmt tree)"
  fmt report < "$dir/report.json"
  python3 - "$dir/loads.log" "$cap" <<'EOF'
import sys
peak = {}
for line in open(sys.argv[1]):
    for kv in line.split():
        k, v = kv.split("=")
        peak[k] = max(peak.get(k, 0), int(v))
cap = int(sys.argv[2])
relays = {k: v for k, v in sorted(peak.items()) if k.startswith("relay")}
print(f"   peak viewers per relay (capacity {cap}): {relays}; above capacity: {[k for k, v in relays.items() if v > cap] or 'none'}")
EOF
}

run crowd "$capacity"
run spill "$low" cdn
