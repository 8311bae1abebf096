#!/usr/bin/env bash
# Measures the live slice on this machine and prints the figures the live-slice issue asks for:
#   1. ingest-to-part-available latency (RTMP message arrival -> its part servable), p50/p95, from /metrics;
#   2. end-to-end latency (EXT-X-PROGRAM-DATE-TIME against the wall clock) of the OnAir Wasm player and of
#      hls.js on OnAir, and of hls.js on a peer in the same run: FFmpeg's own HLS muxer (1 s fMP4 segments,
#      the best it does) served by a static server;
#   3. RSS of the onair process with one live channel.
# The server runs on its defaults (transcoding on); ONAIR_TRANSCODE__ENABLED=false measures the source only.
# Usage: bash tests/bench_latency.sh [SECONDS_OF_PLAYBACK]   (default 20). Needs infra/setup.sh done.
set -euo pipefail
cd "$(dirname "$0")/.."
PLAY=${1:-20}
cargo build --release -q -p onair
source tests/bench_common.sh
start_server
peer=$(free_port)

ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$fixture" -c copy -f flv "rtmp://127.0.0.1:$rtmp/live/$key" &
pids+=($!)
# The peer: the same input through FFmpeg's HLS muxer, served as static files.
mkdir -p "$work/peer"
ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$fixture" -c copy -f hls -hls_time 1 \
  -hls_segment_type fmp4 -hls_list_size 6 -hls_flags delete_segments+program_date_time+independent_segments \
  "$work/peer/index.m3u8" &
pids+=($!)
(cd "$work/peer" && exec python3 -m http.server "$peer" --bind 127.0.0.1 > /dev/null 2>&1) &
pids+=($!)
sleep 6

play() { node tests/browser/hlsjs-play.mjs "$1" "$2" "$PLAY"; }
play "http://127.0.0.1:$http/" "http://127.0.0.1:$http/hls/demo/master.m3u8" > "$work/onair.json"
play "http://127.0.0.1:$peer/" "http://127.0.0.1:$peer/index.m3u8" > "$work/peer.json"
node tests/browser/onair-play.mjs "http://127.0.0.1:$http/watch/demo" "$PLAY" > "$work/player.json"

curl -s "http://127.0.0.1:$http/metrics" > "$work/metrics.txt"
rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$server_pid/status)

python3 - "$work" "$rss_kb" <<'PY'
import json, re, sys
work, rss_kb = sys.argv[1], int(sys.argv[2])
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))] if xs else float("nan")
def latency(name):
    d = json.load(open(f"{work}/{name}.json"))
    s = d["samples"]
    # Skip the first quarter: start-up, before the player settles on its target.
    lat = [x["pdtLatency"] for x in s[len(s) // 4:] if x["pdtLatency"] is not None]
    return pct(lat, 0.5), pct(lat, 0.95), d["stalls"], d["firstFrameMs"]
m = open(f"{work}/metrics.txt").read()
# The source rendition's summary: ingest-to-part of the passed-through video.
q = {}
for labels, v in re.findall(r'onair_ingest_to_part_seconds\{([^}]*)\} ([0-9.e+-]+)', m):
    if 'rendition="source"' in labels:
        q[float(re.search(r'quantile="([0-9.]+)"', labels).group(1))] = float(v)
o50, o95, ostalls, ofirst = latency("onair")
w = json.load(open(f"{work}/player.json"))["onair"]
ws = [x for x in w["samples"] if x["latency"] is not None]
wl = [x["latency"] for x in ws[len(ws) // 4:]]
w50, w95 = pct(wl, 0.5), pct(wl, 0.95)
print(f"OnAir Wasm player on OnAir LL-HLS: p50 {w50:.3f} s, p95 {w95:.3f} s (stalls {w['last']['stalls']}, first frame {w['firstFrameMs']:.0f} ms, target {w['last']['targetLatency']:.2f} s)")
p50, p95, pstalls, pfirst = latency("peer")
print(f"ingest-to-part latency: p50 {q.get(0.5, float('nan'))*1000:.1f} ms, p95 {q.get(0.95, float('nan'))*1000:.1f} ms")
print(f"hls.js latency on OnAir LL-HLS:   p50 {o50:.3f} s, p95 {o95:.3f} s (stalls {ostalls}, first frame {ofirst:.0f} ms)")
print(f"hls.js latency on ffmpeg HLS 1 s: p50 {p50:.3f} s, p95 {p95:.3f} s (stalls {pstalls}, first frame {pfirst:.0f} ms)")
print(f"latency ratio hls.js on OnAir / on ffmpeg-HLS: p50 {o50/p50:.2f}, p95 {o95/p95:.2f}")
print(f"latency ratio OnAir player / hls.js, both on OnAir: p50 {w50/o50:.2f}, p95 {w95/o95:.2f}")
print(f"onair RSS with one live channel: {rss_kb/1024:.1f} MiB")
PY
