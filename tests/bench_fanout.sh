#!/usr/bin/env bash
# Fan-out figures for the edge tier, one run of everything, printed as ratios:
#   (a) requests/s for one Partial Segment and one Media Playlist: the OnAir origin against nginx
#       serving the same bytes as static files from tmpfs (worker_processes auto), same load tool
#       (wrk, 64 keep-alive connections) and settings;
#   (b) the most simulated LL-HLS viewers (onair-loadgen) one caching tier holds with < 1 % late
#       parts (later than one part target after the origin produced them), no stall and < 1 %
#       errors: an OnAir relay, Varnish (stock request collapsing, infra/cdn/onair.vcl) and nginx
#       (proxy_cache + proxy_cache_lock, infra/cdn/onair-nginx.conf), each in front of the same
#       origin, over HTTP/1.1 and HTTP/2 (h2c), one named rendition (source);
#   (c) RSS per 1,000 viewers, the OnAir relay and Varnish: a fresh process each (memory a larger,
#       failed step left behind would count otherwise: freed memory stays in a process) at the
#       median number of viewers the relay held in (b), over HTTP/1.1 and HTTP/2.
# The origin, its publisher and the tier under test run on core 0, the load on core 1 (taskset);
# each figure is the median of RUNS runs.
# Usage: bash tests/bench_fanout.sh [RUNS] [STEPS] [SECONDS]
#   defaults: 5 runs, steps "250 500 1000 2000 3000 4000 5000 6000", 15 s per step.
#   CI smoke: bash tests/bench_fanout.sh 1 "50 100" 6
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
steps=${2:-"250 500 1000 2000 3000 4000 5000 6000"}
step_s=${3:-15}
source tests/bench_common.sh
command -v wrk >/dev/null && command -v varnishd >/dev/null && command -v nginx >/dev/null \
  || { echo "bench_fanout: needs wrk, varnish and nginx (bash infra/setup.sh test)"; exit 1; }
cargo build --release -q --locked -j2 -p onair --bin onair -p onair-loadgen --bin onair-loadgen
ulimit -n 65536 2>/dev/null || true
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
pin1() { taskset -c 1 "$@"; }

# The origin, with the sample looping into it; loopback load is trusted (no per-address cap).
export ONAIR_HTTP__TRUSTED='["127.0.0.0/8"]' ONAIR_TRANSCODE__ENABLED=false
start_server origin; origin=$http; taskset -cp 0 "$server_pid" >/dev/null
taskset -c 0 ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$fixture" -c copy -f flv "rtmp://127.0.0.1:$rtmp/live/$key" \
  2> "$work/ffmpeg.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$origin/hls/demo/source/index.m3u8" | grep -q EXTINF && break; sleep 0.2; done

# (a) One part and one Media Playlist, OnAir vs nginx static from tmpfs.
static=$(mktemp -d /dev/shm/onair-bench.XXXX); trap 'cleanup; rm -rf "$static"' EXIT
nport=$(free_port)
playlist_url="http://127.0.0.1:$origin/hls/demo/source/index.m3u8"
# The newest part of the live playlist, and the same bytes for nginx: picked again for each run,
# since a part leaves the live window (and answers 404) a few segments later.
pick_part() {
  curl -sf "$playlist_url" > "$static/index.m3u8"
  part=$(grep -o 'part[0-9]*\.m4s' "$static/index.m3u8" | tail -n 1)
  curl -sf "http://127.0.0.1:$origin/hls/demo/source/$part" > "$static/$part"
  chmod 644 "$static"/*
}
pick_part
cat > "$work/nginx-static.conf" <<EOF
daemon off; worker_processes auto; pid $work/nginx-static.pid; error_log $work/nginx-static.err;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$nport; root $static; types { application/vnd.apple.mpegurl m3u8; video/mp4 m4s; } } }
EOF
chmod 755 "$work" "$static"; chmod 644 "$static"/*
taskset -c 0 nginx -c "$work/nginx-static.conf" & pids+=($!)
sleep 0.5
cmp -s <(curl -sf "http://127.0.0.1:$nport/$part") "$static/$part" || { echo "nginx does not serve the part"; exit 1; }
# Requests/s of successful answers only (wrk counts errors too: a run with any is refused).
rps() {
  local out; out=$(pin1 wrk -t1 -c64 -d5s -H 'Accept-Encoding: identity' "$1")
  if echo "$out" | grep -q "Non-2xx"; then echo "wrk got errors from $1: $out" >&2; exit 1; fi
  echo "$out" | awk '/Requests\/sec/ {print $2}'
}
declare -A a
for r in $(seq "$runs"); do
  pick_part
  a[op]+="$(rps "http://127.0.0.1:$origin/hls/demo/source/$part") "
  a[np]+="$(rps "http://127.0.0.1:$nport/$part") "
  a[ol]+="$(rps "$playlist_url") "
  a[nl]+="$(rps "http://127.0.0.1:$nport/index.m3u8") "
done
m() { echo "${a[$1]}" | tr ' ' '\n' | grep . | median; }
echo "(a) requests/s, median of $runs: part OnAir $(m op) vs nginx $(m np) (ratio $(echo "$(m op) $(m np)" | awk '{printf "%.2f", $1/$2}')); \
Media Playlist OnAir $(m ol) vs nginx $(m nl) (ratio $(echo "$(m ol) $(m nl)" | awk '{printf "%.2f", $1/$2}'))"

# (b) The tiers in front of the same origin.
relay1=$(free_port); relay2=$(free_port)
RUST_LOG=warn taskset -c 0 target/release/onair --data-dir "$work/relay" edge --http-addr 127.0.0.1:"$relay1" \
  --upstream "http://127.0.0.1:$origin" > "$work/relay.log" 2>&1 &
relay_pid=$!; pids+=($relay_pid)
vport=$(free_port)
sed -e "s/\.port = \"8080\"/.port = \"$origin\"/" infra/cdn/onair.vcl > "$work/onair.vcl"
taskset -c 0 varnishd -F -j none -n "$work/varnish" -a 127.0.0.1:"$vport" -f "$work/onair.vcl" -s malloc,512m \
  -p feature=+http2 -p thread_pool_max=5000 > "$work/varnish.log" 2>&1 & pids+=($!)
ngx1=$(free_port); ngx2=$(free_port)
mkdir -p "$work/nginx-cache"; chmod 777 "$work/nginx-cache"
sed -e "s#/var/cache/nginx/onair#$work/nginx-cache#" -e "s/127.0.0.1:8080/127.0.0.1:$origin/" \
  -e "s/listen 8090;/listen 127.0.0.1:$ngx1; listen 127.0.0.1:$ngx2 http2;/" infra/cdn/onair-nginx.conf > "$work/nginx-cdn.inc"
cat > "$work/nginx-cdn.conf" <<EOF
daemon off; worker_processes auto; worker_rlimit_nofile 65536; pid $work/nginx-cdn.pid; error_log $work/nginx-cdn.err;
events { worker_connections 20000; }
http { access_log off; include $work/nginx-cdn.inc; }
EOF
taskset -c 0 nginx -c "$work/nginx-cdn.conf" & pids+=($!)
sleep 1
for p in "$relay1" "$vport" "$ngx1"; do
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$p/hls/demo/source/index.m3u8" > /dev/null && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:$p/hls/demo/source/index.m3u8" > /dev/null \
    || { echo "tier on port $p does not serve the channel"; for f in "$work"/relay.log "$work"/varnish.log "$work"/nginx-cdn.err; do echo "== $f"; tail -n 5 "$f"; done; exit 1; }
done

# holds URL PROTO NAME: the largest step with < 1 % late, no stall, < 1 % errors (0 if none).
holds() {
  local best=0 flag=""; [ "$2" = h2 ] && flag=--http2
  for n in $steps; do
    pin1 target/release/onair-loadgen --viewers "$n" --ramp-per-s 1000 --duration-s "$step_s" $flag "$1" > "$work/step.json" || true
    local out; out=$(cat "$work/step.json")
    local ok; ok=$(echo "$out" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(int(r["late_percent"] < 1 and r["stalls"] == 0 and r["errors"] <= 0.01 * max(r["parts"], 1) and r["parts"] > 0))')
    echo "    $3 $2 $n viewers: $out" >> "$work/steps.log"
    [ "$ok" = 1 ] || break
    best=$n
  done
  echo "$best"
}
declare -A b
for r in $(seq "$runs"); do
  for proto in h1 h2; do
    b[onair_$proto]+="$(holds "http://127.0.0.1:$relay1/hls/demo/source/index.m3u8" $proto onair) "
    b[varnish_$proto]+="$(holds "http://127.0.0.1:$vport/hls/demo/source/index.m3u8" $proto varnish) "
    if [ $proto = h1 ]; then np=$ngx1; else np=$ngx2; fi
    b[nginx_$proto]+="$(holds "http://127.0.0.1:$np/hls/demo/source/index.m3u8" $proto nginx) "
  done
done
mb() { echo "${b[$1]}" | tr ' ' '\n' | grep . | median; }
for proto in h1 h2; do
  o=$(mb onair_$proto); v=$(mb varnish_$proto); n=$(mb nginx_$proto)
  echo "(b) $proto: most viewers with < 1 % late parts, median of $runs: OnAir relay $o, Varnish $v, nginx $n \
(OnAir/Varnish $(echo "$o $v" | awk '{printf "%.2f", ($2>0)?$1/$2:0}'), OnAir/nginx $(echo "$o $n" | awk '{printf "%.2f", ($2>0)?$1/$2:0}'))"
done
# (c) A fresh process per tier and protocol (the OnAir relay, and Varnish for comparison), idle and
# then under the median number of viewers the OnAir relay held in (b); peak RSS sampled every 0.5 s,
# over the process and its children (Varnish's manager and cache worker).
tree_rss_kib() { local t; t=$(awk '/VmRSS/ {print $2}' "/proc/$1/status"); for c in $(pgrep -P "$1"); do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$c/status" 2>/dev/null || echo 0))); done; echo "$t"; }
# fresh_rss KIND PROTO VIEWERS: sets rss_line (run in this shell, not $(...), so the process it
# starts is in pids and stopped by cleanup if the script is interrupted).
fresh_rss() {
  local port flag="" pid; port=$(free_port); [ "$2" = h2 ] && flag=--http2
  if [ "$1" = onair ]; then
    RUST_LOG=warn taskset -c 0 target/release/onair --data-dir "$work/fresh-$2" edge --http-addr 127.0.0.1:"$port" \
      --upstream "http://127.0.0.1:$origin" > "$work/fresh-$2.log" 2>&1 &
  else
    taskset -c 0 varnishd -F -j none -n "$work/fresh-varnish-$2" -a 127.0.0.1:"$port" -f "$work/onair.vcl" -s malloc,512m \
      -p feature=+http2 -p thread_pool_max=5000 > "$work/fresh-varnish-$2.log" 2>&1 &
  fi
  pid=$!; pids+=($pid)
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/hls/demo/source/index.m3u8" > /dev/null && break; sleep 0.2; done
  sleep 1
  local idle peak now lg late; idle=$(tree_rss_kib "$pid"); peak=$idle
  pin1 target/release/onair-loadgen --viewers "$3" --ramp-per-s 1000 --duration-s "$step_s" $flag \
    "http://127.0.0.1:$port/hls/demo/source/index.m3u8" > "$work/rss-step.json" &
  lg=$!
  while kill -0 "$lg" 2>/dev/null; do now=$(tree_rss_kib "$pid"); [ "$now" -gt "$peak" ] && peak=$now; sleep 0.5; done
  wait "$lg" || true
  late=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["late_percent"], 2))' "$work/rss-step.json")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rss_line="idle $((idle / 1024)) MiB, peak $((peak / 1024)) MiB ($late % late): $(( (peak - idle) * 1000 / $3 / 1024 )) MiB per 1,000 viewers"
}
for proto in h1 h2; do
  n=$(mb onair_$proto); [ "$n" -gt 0 ] || continue
  fresh_rss onair $proto "$n"; onair_line=$rss_line
  fresh_rss varnish $proto "$n"
  echo "(c) $proto, $n viewers on a fresh process: OnAir relay $onair_line; Varnish $rss_line"
done
echo "per-step reports:"; cat "$work/steps.log"
