#!/usr/bin/env bash
# The recorder's cost on the live path, measured: a channel with the full ladder (transcoding on,
# every rendition recorded) published for SECONDS twice in one run, once with the archive off and
# once with it on (each on a fresh server), and prints
#   1. ingest-to-part-available latency (RTMP message arrival -> its part servable), p50/p95 of
#      every rendition, without and with recording, and their ratio;
#   2. disk write amplification: bytes the onair process wrote to the block device (/proc/PID/io
#      write_bytes: chunk files, the index, fsyncs) and bytes the recorder appended, over the bytes
#      ingested (RTMP payload), for the recording run.
# Usage: bash tests/bench_archive.sh [SECONDS]   (default 30). Needs infra/setup.sh done.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_LIVE=${1:-30}
cargo build --release -q -p onair
source tests/bench_common.sh

run() {
  local name=$1 enabled=$2
  ONAIR_ARCHIVE__ENABLED=$enabled start_server "$name"
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -t "$SECONDS_LIVE" -i "$fixture" -c copy -f flv "rtmp://127.0.0.1:$rtmp/live/$key" &
  local pub=$!; pids+=("$pub")
  wait "$pub" || true
  sleep 3
  curl -s "http://127.0.0.1:$http/metrics" > "$work/metrics-$name.txt"
  awk '/^write_bytes/ {print $2}' "/proc/$server_pid/io" > "$work/io-$name.txt"
  du -sb "$work/data$name/archive" 2>/dev/null | awk '{print $1}' > "$work/disk-$name.txt" || echo 0 > "$work/disk-$name.txt"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
}
run off false
run on true

python3 - "$work" <<'PY'
import re, sys
work = sys.argv[1]
def metrics(name):
    return open(f"{work}/metrics-{name}.txt").read()
def quantiles(m):
    out = {}
    for labels, v in re.findall(r'onair_ingest_to_part_seconds\{([^}]*)\} ([0-9.e+-]+)', m):
        r = re.search(r'rendition="([^"]+)"', labels).group(1)
        q = float(re.search(r'quantile="([0-9.]+)"', labels).group(1))
        out.setdefault(r, {})[q] = float(v) * 1000
    return out
def total(m, series):
    return sum(float(v) for v in re.findall(rf'^{series}(?:{{[^}}]*}})? ([0-9.e+-]+)$', m, re.M))
off, on = quantiles(metrics("off")), quantiles(metrics("on"))
print("ingest -> part available (ms), without / with recording, same run:")
print(f"  {'rendition':10} {'p50 off':>8} {'p50 on':>8} {'ratio':>6}   {'p95 off':>8} {'p95 on':>8} {'ratio':>6}")
for r in sorted(set(off) & set(on)):
    a50, b50, a95, b95 = off[r].get(0.5, 0), on[r].get(0.5, 0), off[r].get(0.95, 0), on[r].get(0.95, 0)
    print(f"  {r:10} {a50:8.1f} {b50:8.1f} {b50 / a50 if a50 else float('nan'):6.2f}   {a95:8.1f} {b95:8.1f} {b95 / a95 if a95 else float('nan'):6.2f}")
m = metrics("on")
ingested = total(m, "onair_ingest_bytes_total")
appended = total(m, "onair_archive_bytes_total")
written = int(open(f"{work}/io-on.txt").read().strip() or 0)
disk = int(open(f"{work}/disk-on.txt").read().strip() or 0)
segments = total(m, "onair_archive_segments_total")
gaps = total(m, "onair_archive_gaps_total")
print(f"recorded: {segments:.0f} segments, {gaps:.0f} gaps; {disk / 1e6:.1f} MB in the archive directory")
if ingested:
    print(f"write amplification: recorder appended {appended / ingested:.2f}x, process wrote to disk {written / ingested:.2f}x the {ingested / 1e6:.1f} MB ingested")
    print("  (above 1x because the ladder's renditions are recorded beside the source they are encoded from)")
PY
