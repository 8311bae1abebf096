//! End-to-end tests live in `tests/`; this crate has no library code.
//!
//! They need `ffmpeg`/`ffprobe`, Python's `m3u8` package and the npm packages under
//! `tests/browser` (hls.js, playwright-core) with Debian's Chromium: `infra/setup.sh` installs them.
