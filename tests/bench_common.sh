# Shared by the tests/bench_*.sh scripts (sourced, not run): a work directory and process list
# cleaned up on exit, a free loopback port, and the OBS-like fixture (the real sample encoded with a
# 2 s GOP and stereo AAC, 15.84 s) that publishers loop with -c copy.
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

fixture=target/bench-bbb-obs-like.mp4
if [ ! -f "$fixture" ]; then
  ffmpeg -hide_banner -loglevel error -y -stream_loop 2 -i ../shared/media/bigbuckbunny.mp4 -t 15.84 \
    -c:v libx264 -preset veryfast -tune zerolatency -g 50 -keyint_min 50 -sc_threshold 0 -b:v 1500k \
    -c:a aac -ac 2 -b:a 128k "$fixture.tmp.mp4"
  mv "$fixture.tmp.mp4" "$fixture"
fi

# start_server [NAME]: runs target/release/onair on free ports (data and log under NAME, for
# several servers in one run); sets http, rtmp, server_pid and key.
start_server() {
  local name=${1:-}
  http=$(free_port); rtmp=$(free_port)
  RUST_LOG=warn target/release/onair serve --data-dir "$work/data$name" --http-addr 127.0.0.1:"$http" \
    --rtmp-addr 127.0.0.1:"$rtmp" --srt-addr 127.0.0.1:"$(free_port)" > "$work/serve$name.log" 2>&1 &
  server_pid=$!; pids+=("$server_pid")
  for _ in $(seq 50); do grep -qs "stream key for channel demo" "$work/serve$name.log" && break; sleep 0.1; done
  key=$(grep -s "stream key for channel demo" "$work/serve$name.log" | awk '{print $NF}')
}
