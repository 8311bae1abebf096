#!/usr/bin/env bash
# Installs everything OnAir's build and tests need on Debian 12 (idempotent; run as root or with sudo):
#   - Debian packages: ffmpeg (publisher and reader in tests), chromium (hls.js tests), nodejs/npm, python3-pip;
#   - PyPI: m3u8 (the independent playlist parser used by the tests);
#   - npm: hls.js and playwright-core under tests/browser (no browser download: Debian's Chromium is used).
# Rust crates are fetched by cargo itself.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(ffmpeg chromium nodejs npm python3-pip pkg-config)
missing=()
for p in "${packages[@]}"; do
  # nodejs/npm/pip may come from elsewhere on the image; only install what is absent.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
    python3-pip) python3 -m pip --version >/dev/null 2>&1 && continue ;;
  esac
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import m3u8' 2>/dev/null; then
  echo "setup: installing the m3u8 Python package"
  python3 -m pip install -q --disable-pip-version-check m3u8==6.0.0 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages m3u8==6.0.0
fi

if [ ! -d tests/browser/node_modules/hls.js ] || [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "setup: installing npm packages for the browser tests"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: done"
