#!/usr/bin/env bash
# Ingest-to-part latency with parts closed on their last frame (the default) against parts closed
# on the next frame's arrival (hls.close_parts_early = false), in the same run: two release servers
# side by side, each with the same input published over RTMP, transcoding off so only packaging
# differs. Prints p50/p95 of RTMP message arrival -> part servable for the source and audio renditions.
# Usage: bash tests/bench_part_close.sh [SECONDS]   (default 30). Needs infra/setup.sh done.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${1:-30}
cargo build --release -q -p onair
source tests/bench_common.sh
export ONAIR_TRANSCODE__ENABLED=false
start_server early; early_http=$http
ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$fixture" -c copy -f flv "rtmp://127.0.0.1:$rtmp/live/$key" 2>/dev/null &
pids+=($!)
ONAIR_HLS__CLOSE_PARTS_EARLY=false start_server late; late_http=$http
ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$fixture" -c copy -f flv "rtmp://127.0.0.1:$rtmp/live/$key" 2>/dev/null &
pids+=($!)
sleep "$SECONDS_RUN"
curl -s "http://127.0.0.1:$early_http/metrics" > "$work/early.txt"
curl -s "http://127.0.0.1:$late_http/metrics" > "$work/late.txt"
python3 - "$work" <<'PY'
import re, sys
work = sys.argv[1]
def quantiles(name):
    m = open(f"{work}/{name}.txt").read()
    out = {}
    for labels, v in re.findall(r'onair_ingest_to_part_seconds\{([^}]*)\} ([0-9.e+-]+)', m):
        r = re.search(r'rendition="([^"]+)"', labels); q = re.search(r'quantile="([^"]+)"', labels)
        if r and q:
            out.setdefault(r.group(1), {})[float(q.group(1))] = float(v) * 1000
    return out
early, late = quantiles("early"), quantiles("late")
for r in ("source", "audio"):
    e, l = early.get(r, {}), late.get(r, {})
    print(f"ingest-to-part {r:6}: closed on last frame p50 {e.get(0.5, float('nan')):.1f} ms, p95 {e.get(0.95, float('nan')):.1f} ms | "
          f"closed on next frame p50 {l.get(0.5, float('nan')):.1f} ms, p95 {l.get(0.95, float('nan')):.1f} ms | "
          f"p50 ratio {e.get(0.5, float('nan')) / l.get(0.5, float('nan')):.2f}")
PY
