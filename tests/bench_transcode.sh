#!/usr/bin/env bash
# Transcoder benchmark (not a timed test). In one run, on the same input:
#   1. fps of the OnAir ladder (decode once, scale + libx264 per rung; transcoder/examples/ladder_fps.rs)
#      against the ffmpeg CLI doing the same ladder (-filter_complex split + scale, same x264 settings, -f null);
#   2. CPU used by `onair serve` for one live 720p25 input transcoded to its rungs (480p, 360p);
#   3. how much later a transcoded rung's parts become available than the source's (blocking reloads).
# Usage: bash tests/bench_transcode.sh. Needs `bash infra/setup.sh test`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p onair
cargo build --release -q -p onair-transcoder --example ladder_fps
source tests/bench_common.sh
# 1080p25 real footage (Big Buck Bunny scaled up), 10.56 s, key frame every 2 s, no B-frames, AUDs.
input=target/bench-bbb-1080p.h264
if [ ! -f "$input" ]; then
  ffmpeg -hide_banner -loglevel error -y -stream_loop 1 -i ../shared/media/bigbuckbunny.mp4 -an -vf scale=1920:1080 \
    -c:v libx264 -preset veryfast -bf 0 -g 50 -keyint_min 50 -sc_threshold 0 -b:v 6000k \
    -bsf:v h264_metadata=aud=insert -f h264 "$input.tmp" && mv "$input.tmp" "$input"
fi

echo "== ladder fps on 1080p25 input (rungs 1280x720 3000k, 854x480 1200k, 640x360 600k; x264 veryfast/zerolatency)"
read -r frames secs onair_fps rungs < <(target/release/examples/ladder_fps "$input")
x264="-preset veryfast -tune zerolatency -bf 0 -x264-params scenecut=0:rc-lookahead=0"
start=$(date +%s.%N)
# shellcheck disable=SC2086
ffmpeg -hide_banner -loglevel error -y -i "$input" -filter_complex \
  "[0:v]split=3[a][b][c];[a]scale=1280:720[o1];[b]scale=854:480[o2];[c]scale=640:360[o3]" \
  -map "[o1]" -c:v libx264 $x264 -b:v 3000k -maxrate 3000k -bufsize 3000k -f null - \
  -map "[o2]" -c:v libx264 $x264 -b:v 1200k -maxrate 1200k -bufsize 1200k -f null - \
  -map "[o3]" -c:v libx264 $x264 -b:v 600k -maxrate 600k -bufsize 600k -f null -
end=$(date +%s.%N)
ffmpeg_fps=$(python3 -c "print(f'{$frames/($end-$start):.1f}')")
echo "OnAir ladder:  $frames frames in $secs s = $onair_fps fps ($rungs)"
echo "ffmpeg CLI:    $frames frames in $(python3 -c "print(f'{$end-$start:.3f}')") s = $ffmpeg_fps fps"
python3 -c "print(f'ratio OnAir/ffmpeg: {$onair_fps/$ffmpeg_fps:.2f}')"

echo "== live: CPU and added latency for one 720p25 input transcoded to 480p + 360p"
start_server
ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$fixture" -c copy -f flv "rtmp://127.0.0.1:$rtmp/live/$key" &
pids+=($!)
sleep 8
python3 - "$http" "$server_pid" <<'PY'
import re, sys, threading, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
base = f"http://127.0.0.1:{port}/hls/demo"
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / 100.0  # utime + stime in clock ticks (100 Hz)
def edge(text):
    msn = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1)); part = -1; last = (msn, 0)
    for line in text.splitlines():
        if line.startswith("#EXT-X-PART:"):
            part += 1; last = (msn, part)
        elif line.startswith("#EXTINF"):
            msn += 1; part = -1
    return last
c0, t0 = cpu(), time.time()
time.sleep(20)
c1, t1 = cpu(), time.time()
print(f"onair CPU for one live 720p25 input with 2 rungs: {100*(c1-c0)/(t1-t0):.0f}% of one core")
gaps = []
for _ in range(20):
    m, p = edge(urllib.request.urlopen(f"{base}/source/index.m3u8").read().decode())
    done = {}
    def fetch(r):
        urllib.request.urlopen(f"{base}/{r}/index.m3u8?_HLS_msn={m}&_HLS_part={p+1}").read()
        done[r] = time.time()
    ts = [threading.Thread(target=fetch, args=(r,)) for r in ("source", "480p")]
    [t.start() for t in ts]; [t.join() for t in ts]
    gaps.append((done["480p"] - done["source"]) * 1000)
gaps.sort()
print(f"480p part available after the source's: p50 {gaps[len(gaps)//2]:.0f} ms, max {gaps[-1]:.0f} ms (part target 200 ms)")
PY
