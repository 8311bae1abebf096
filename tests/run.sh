#!/usr/bin/env bash
# The whole test suite: installs what the tests need (infra/setup.sh), then runs every Rust test,
# unit and end to end (ffmpeg, ffprobe, the m3u8 parser and hls.js in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh
cargo test --workspace --locked -j2
