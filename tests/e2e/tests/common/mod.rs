//! Shared harness: an in-process `onair` server on loopback ports, a real ffmpeg publisher, and
//! helpers to read what the server serves.
#![allow(dead_code, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use onair::config::Config;

/// The repository root (tests/e2e/../..).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// `../shared/media` beside the checkout.
pub fn shared_media(name: &str) -> PathBuf {
    let p = repo_root().join("../shared/media").join(name);
    assert!(p.exists(), "missing sample media {}", p.display());
    p
}

/// Encodes three loops (15.84 s) of the real sample (Big Buck Bunny) once into
/// `target/tmp/{name}` with the ffmpeg output options `args` (codecs, rates, key frames), so tests
/// can publish it with `-c copy -stream_loop -1` at no CPU cost. Concurrent callers wait for one
/// encode.
pub fn sample_fixture(name: &str, args: &[&str]) -> PathBuf {
    static ENCODING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = ENCODING.lock().unwrap_or_else(|e| e.into_inner());
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    if !out.exists() {
        let tmp = out.with_extension("tmp.mp4");
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "2", "-i"])
            .arg(shared_media("bigbuckbunny.mp4"))
            .args(["-t", "15.84"])
            .args(args)
            .args(["-c:a", "aac", "-ac", "2", "-b:a", "128k"])
            .arg(&tmp)
            .env("SVT_LOG", "1")
            .status()
            .expect("ffmpeg must be installed (infra/setup.sh)");
        assert!(status.success(), "encoding the fixture {name} failed");
        std::fs::rename(&tmp, &out).expect("rename fixture");
    }
    out
}

/// The sample encoded the way OBS would send it: x264 720p25 with a key frame every 2 s, stereo AAC.
pub fn obs_like_fixture() -> PathBuf {
    sample_fixture(
        "bbb-obs-like-v1.mp4",
        &["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-b:v", "1500k"],
    )
}

/// A running in-process server with its own data directory.
pub struct TestServer {
    pub running: onair::server::Running,
    pub key: String,
    pub http: SocketAddr,
    pub rtmp: SocketAddr,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A server without transcoding (the live-slice tests; keeps CPU for the parallel tests).
    pub async fn start() -> TestServer {
        Self::start_with(|c| c.transcode.enabled = false).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            rtmp_addr: "127.0.0.1:0".parse().expect("addr"),
            srt_addr: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        tweak(&mut config);
        let running = onair::server::start(&config).await.expect("server starts");
        let key = running.created_demo.as_ref().expect("demo channel created").stream_key.clone();
        TestServer { http: running.http_addr, rtmp: running.rtmp_addr.expect("RTMP listener"), key, running, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// As [`metric_at`] on this server (whose recorder the binary's other in-process servers share).
    pub async fn metric(&self, series: &str) -> f64 {
        metric_at(&self.url(""), series).await
    }

    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{}", self.rtmp, key)
    }

    /// An SRT publish URL with `streamid` (not shell-quoted: passed straight to ffmpeg).
    pub fn srt_url(&self, stream_id: &str, extra: &str) -> String {
        format!("srt://{}?streamid={stream_id}{extra}", self.running.srt_addr.expect("SRT listener"))
    }

    /// Starts ffmpeg publishing the OBS-like fixture in a loop, in real time.
    pub fn publish(&self) -> Publisher {
        Publisher::start(&obs_like_fixture(), &self.rtmp_url(&self.key))
    }

    /// Waits until the source and audio playlists list at least `segments` complete segments.
    pub async fn wait_segments(&self, channel: &str, segments: usize) {
        self.wait_renditions(channel, &["source", "audio"], segments).await;
    }

    /// Waits until each of `renditions` lists at least `segments` complete segments.
    pub async fn wait_renditions(&self, channel: &str, renditions: &[&str], segments: usize) {
        wait_renditions_at(&self.url(""), channel, renditions, segments).await;
    }
}

/// The sample as HEVC 720p25 (libx265, `hev1` sample entry), a key frame every 2 s.
pub fn hevc_fixture() -> PathBuf {
    sample_fixture(
        "bbb-hevc-v1.mp4",
        &["-c:v", "libx265", "-preset", "ultrafast", "-b:v", "1500k", "-x265-params", "keyint=50:min-keyint=50:scenecut=0:info=0:log-level=error", "-tag:v", "hev1"],
    )
}

/// An ffmpeg process publishing over RTMP; killed on drop.
pub struct Publisher {
    pub child: Child,
}

impl Publisher {
    pub fn start(input: &Path, url: &str) -> Publisher {
        let format = if url.starts_with("srt://") { "mpegts" } else { "flv" };
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(input)
            .args(["-c", "copy", "-f", format, url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg must be installed");
        Publisher { child }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Publishes `input` (looped) to `url` (FLV for rtmp://, MPEG-TS for srt://) for at most `seconds`,
/// at `rate` × real time (None: as fast as possible), and returns how ffmpeg ended.
pub async fn publish_once(input: &Path, url: &str, seconds: u32, rate: Option<u32>) -> std::process::Output {
    let format = if url.starts_with("srt://") { "mpegts" } else { "flv" };
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error"]);
    if let Some(r) = rate {
        cmd.args(["-readrate", &r.to_string()]);
    }
    cmd.args(["-stream_loop", "-1", "-t", &seconds.to_string(), "-i"]).arg(input).args(["-c", "copy", "-f", format, url]);
    tokio::task::spawn_blocking(move || cmd.output().expect("ffmpeg")).await.expect("join")
}

/// Reads `playlist_url` with the ffmpeg CLI for `seconds` of video and audio (decoding both);
/// returns (media seconds decoded, video frames). Panics if ffmpeg fails.
pub async fn decode_with_ffmpeg(playlist_url: &str, seconds: u32) -> (f64, u64) {
    let (url, t) = (playlist_url.to_string(), seconds.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-i", &url, "-t", &t, "-map", "0:v", "-map", "0:a", "-f", "null", "-"])
            .args(["-progress", "pipe:1"])
            .output()
            .expect("ffmpeg")
    })
    .await
    .expect("join");
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let max_of = |key: &str| stdout.lines().filter_map(|l| l.strip_prefix(key)).filter_map(|v| v.trim().parse::<u64>().ok()).max().unwrap_or(0);
    (max_of("out_time_us=") as f64 / 1e6, max_of("frame="))
}

/// Asserts that a blocking request for the next part of the live channel is answered promptly.
pub async fn live_channel_is_healthy(server: &TestServer) {
    let playlist = server.url("/hls/demo/source/index.m3u8");
    let text = get_text(&playlist).await.expect("playlist");
    let (msn, part) = live_edge(&text);
    let t = Instant::now();
    let r = client().get(format!("{playlist}?_HLS_msn={msn}&_HLS_part={}", part + 1)).send().await.expect("blocking");
    assert_eq!(r.status(), 200);
    assert!(t.elapsed() < Duration::from_millis(1500), "next part took {:?}", t.elapsed());
}

/// Plays the demo channel's Multivariant Playlist with hls.js in headless Chromium for `seconds`
/// (`mode` "switch" forces a level change every 2.5 s) and returns the script's JSON report.
pub async fn play_with_hlsjs(server: &TestServer, seconds: u32, mode: Option<&str>) -> serde_json::Value {
    play_hlsjs_at(&server.url("/"), &server.url("/hls/demo/master.m3u8"), seconds, mode).await
}

/// hls.js in Chromium on page `page` playing `playlist` for `seconds` (`mode`: see
/// hlsjs-play.mjs); its report.
pub async fn play_hlsjs_at(page: &str, playlist: &str, seconds: u32, mode: Option<&str>) -> serde_json::Value {
    let script = repo_root().join("tests/browser/hlsjs-play.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(script).args([page.to_string(), playlist.to_string(), seconds.to_string()]);
    cmd.args(mode);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("node")).await.expect("join");
    assert!(out.status.success(), "hls.js run failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Media seconds hls.js played during a [`play_with_hlsjs`] run (last minus first `currentTime`).
pub fn played_seconds(report: &serde_json::Value) -> f64 {
    let samples = report["samples"].as_array().cloned().unwrap_or_default();
    let at = |s: Option<&serde_json::Value>| s.and_then(|s| s["currentTime"].as_f64()).unwrap_or(0.0);
    at(samples.last()) - at(samples.first())
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

pub async fn get_text(url: &str) -> Option<String> {
    let r = client().get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// Parses a playlist with the independent Python `m3u8` package (tests/e2e/parse_playlist.py).
pub fn parse_with_m3u8(url: &str) -> serde_json::Value {
    let script = repo_root().join("tests/e2e/parse_playlist.py");
    let out = Command::new("python3").arg(script).arg(url).output().expect("python3");
    assert!(out.status.success(), "m3u8 parser failed on {url}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("parser json")
}

/// Last segment's MSN and last part index from a Media Playlist's text.
pub fn live_edge(playlist: &str) -> (u64, u32) {
    let mut msn: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("media sequence");
    let mut part: i64 = -1;
    let mut last_msn = msn;
    let mut last_part = 0;
    for line in playlist.lines() {
        if line.starts_with("#EXT-X-PART:") {
            part += 1;
            last_msn = msn;
            last_part = part as u32;
        } else if line.starts_with("#EXTINF") {
            msn += 1;
            part = -1;
        }
    }
    (last_msn, last_part)
}

/// Where browser tests save screenshots: `target/screenshots/` (kept as CI artifacts).
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir.canonicalize().expect("screenshot dir")
}

/// Plays `watch_url` (the server's watch page, i.e. the OnAir Wasm player) in headless Chromium
/// for `seconds` with tests/browser/onair-play.mjs and returns its JSON report.
pub async fn play_with_onair(watch_url: &str, seconds: u32, extra: &[String]) -> serde_json::Value {
    play_with_onair_home(watch_url, seconds, extra, None).await
}

/// As [`play_with_onair`], with the browser's `HOME` set to `home` (e.g. a trust store that trusts
/// a test CA, `TestCa::browser_home`).
pub async fn play_with_onair_home(watch_url: &str, seconds: u32, extra: &[String], home: Option<&Path>) -> serde_json::Value {
    let script = repo_root().join("tests/browser/onair-play.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(script).args([watch_url.to_string(), seconds.to_string()]).args(extra);
    if let Some(home) = home {
        cmd.env("HOME", home);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("node")).await.expect("join");
    assert!(out.status.success(), "player run failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(report["onair"]["error"].is_null(), "player failed: {}", report["onair"]);
    report
}

/// The `key` field (e.g. `latency`, s) of each sample of a player report (`report["onair"]` or
/// `report["hlsjs"]`) taken at or after `from_t` seconds into the run.
pub fn samples(report: &serde_json::Value, key: &str, from_t: f64) -> Vec<f64> {
    let list = report["samples"].as_array().cloned().unwrap_or_default();
    list.iter().filter(|s| s["t"].as_f64().unwrap_or(0.0) >= from_t).filter_map(|s| s[key].as_f64()).collect()
}

/// The `p`-th percentile (0–100) of `values` (nearest rank).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// The `onair` binary of this checkout, built on first use (debug profile); `E2E_ONAIR_BIN` names
/// another build instead (e.g. the commit before a fix, to see a test fail there).
pub fn onair_binary() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut guard = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = guard.as_ref() {
        return p.clone();
    }
    if let Some(bin) = std::env::var_os("E2E_ONAIR_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.exists(), "E2E_ONAIR_BIN {} does not exist", bin.display());
        *guard = Some(bin.clone());
        return bin;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "--locked", "-j2", "-p", "onair", "--bin", "onair"])
        .current_dir(repo_root())
        .status()
        .expect("cargo");
    assert!(status.success(), "building onair failed");
    let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../debug/onair");
    assert!(bin.exists(), "no binary at {}", bin.display());
    *guard = Some(bin.clone());
    bin
}

pub use onair_test_engines::free_port;

/// `onair serve` as a separate process (so a test can SIGKILL it), with its own data directory.
pub struct ServerProcess {
    pub child: Child,
    pub http_port: u16,
    pub rtmp_port: u16,
    pub srt_port: u16,
    pub key: String,
    /// Its stderr (the tracing log).
    pub log_path: PathBuf,
    config_path: PathBuf,
    /// (subcommand, args, ready line) it was started with.
    launched: (String, Vec<String>, String),
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `onair serve` on the given HTTP port (RTMP and SRT on free ports), with `extra_toml`
    /// appended to its configuration file, transcoding off unless `extra_toml` has a
    /// `[transcode]` table; waits for its stream-key line.
    pub fn start(http_port: u16, extra_toml: &str) -> ServerProcess {
        Self::start_with_args(http_port, extra_toml, &[])
    }

    /// As [`ServerProcess::start`], with `args` after `serve` (e.g. `--no-ingest`, `--upstream URL`);
    /// waits for the line naming the watch URLs. `key` is empty when the node printed none.
    pub fn start_with_args(http_port: u16, extra_toml: &str, args: &[&str]) -> ServerProcess {
        Self::launch("serve", http_port, extra_toml, args, "watch http")
    }

    /// `onair usher` with `args` (e.g. `--registry URL`) and `extra_toml`; waits for its
    /// "usher http" line.
    pub fn usher(http_port: u16, extra_toml: &str, args: &[&str]) -> ServerProcess {
        Self::launch("usher", http_port, extra_toml, args, "usher http")
    }

    fn launch(subcommand: &str, http_port: u16, extra_toml: &str, args: &[&str], ready: &str) -> ServerProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rtmp_port, srt_port) = (free_port(), free_port());
        let transcode = if extra_toml.contains("[transcode]") { "" } else { "[transcode]\nenabled = false\n" };
        let config = format!(
            "http_addr = \"127.0.0.1:{http_port}\"\nrtmp_addr = \"127.0.0.1:{rtmp_port}\"\nsrt_addr = \"127.0.0.1:{srt_port}\"\n\
             data_dir = \"{}\"\n{extra_toml}\n{transcode}",
            dir.path().display()
        );
        let config_path = dir.path().join("onair.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log_path = dir.path().join("onair.log");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (child, key) = Self::spawn(&config_path, &log_path, subcommand, &args, ready);
        ServerProcess { child, http_port, rtmp_port, srt_port, key, log_path, config_path, launched: (subcommand.into(), args, ready.into()), _dir: dir }
    }

    /// SIGKILLs the process and starts it again on the same configuration and data directory
    /// (the log continues in the same file); waits until it is ready.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (subcommand, args, ready) = self.launched.clone();
        let (child, _) = Self::spawn(&self.config_path, &self.log_path, &subcommand, &args, &ready);
        self.child = child;
    }

    fn spawn(config_path: &Path, log_path: &Path, subcommand: &str, args: &[String], ready: &str) -> (Child, String) {
        use std::io::{BufRead, BufReader};
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).expect("log file");
        let mut child = Command::new(onair_binary())
            .arg("--config")
            .arg(config_path)
            .arg(subcommand)
            .args(args)
            .env("RUST_LOG", "warn,onair_relay=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("onair");
        let stdout = child.stdout.take().expect("stdout");
        let ready = ready.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut key = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(k) = line.strip_prefix("stream key for channel demo: ") {
                    key = k.trim().to_string();
                }
                if line.starts_with(&ready) {
                    let _ = tx.send(key.clone());
                }
            }
        });
        let Ok(key) = rx.recv_timeout(Duration::from_secs(60)) else {
            let status = child.try_wait().ok().flatten();
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            panic!("onair did not start (exit: {status:?}); its log:\n{log}");
        };
        (child, key)
    }

    /// Creates channel `name` (with an SRT passphrase when given) through the `onair channel
    /// create` CLI on this node's database; returns its stream key.
    pub fn create_channel(&self, name: &str, srt_passphrase: Option<&str>) -> String {
        let mut cmd = Command::new(onair_binary());
        cmd.arg("--config").arg(&self.config_path).args(["channel", "create", name]);
        if let Some(p) = srt_passphrase {
            cmd.args(["--srt-passphrase", p]);
        }
        let out = cmd.env("RUST_LOG", "warn").output().expect("onair channel create");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let prefix = format!("stream key for channel {name}: ");
        let key = stdout.lines().find_map(|l| l.strip_prefix(&prefix));
        key.unwrap_or_else(|| panic!("no stream key printed: {stdout} {}", String::from_utf8_lossy(&out.stderr))).trim().to_string()
    }

    /// Creates a chat moderator token for `channel` (the broadcaster's without `name`) through
    /// `onair channel moderator`; returns it.
    pub fn chat_moderator(&self, channel: &str, name: Option<&str>) -> String {
        let mut cmd = Command::new(onair_binary());
        cmd.arg("--config").arg(&self.config_path).args(["channel", "moderator", channel]);
        cmd.args(name);
        let out = cmd.env("RUST_LOG", "warn").output().expect("onair channel moderator");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let token = stdout.lines().find_map(|l| l.rsplit_once("): ").map(|(_, t)| t.trim().to_string()));
        token.unwrap_or_else(|| panic!("no moderator token printed: {stdout} {}", String::from_utf8_lossy(&out.stderr)))
    }

    /// The resident memory of the process, bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        kb.unwrap_or(0) * 1024
    }

    /// An SRT publish URL with `streamid` (not shell-quoted: passed straight to ffmpeg).
    pub fn srt_url(&self, stream_id: &str, extra: &str) -> String {
        format!("srt://127.0.0.1:{}?streamid={stream_id}{extra}", self.srt_port)
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Its data directory (database, archive).
    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The value of the Prometheus counter or gauge `series` (the exact text before the value,
    /// e.g. `onair_relay_failovers_total`), summed over its lines; 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_at(&self.base_url(), series).await
    }

    pub fn rtmp_url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live/{}", self.rtmp_port, self.key)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the Prometheus counter or gauge `series` (the exact text before the value, labels
/// included or not) on the node at `base`, summed over its lines; 0 when absent. In-process
/// servers share one recorder per test binary: compare values before and after, on series no
/// other test of the binary touches.
pub async fn metric_at(base: &str, series: &str) -> f64 {
    let text = get_text(&format!("{base}/metrics")).await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `onair_errors_total{kind}` for each of `kinds` on the node at `base` (see [`metric_at`]).
pub async fn error_counts(base: &str, kinds: &[&str]) -> Vec<f64> {
    let mut counts = Vec::with_capacity(kinds.len());
    for kind in kinds {
        counts.push(metric_at(base, &format!("onair_errors_total{{kind=\"{kind}\"}}")).await);
    }
    counts
}

/// Asserts each of `kinds` counted more errors at `base` than `before` (from [`error_counts`]).
pub async fn assert_errors_counted(base: &str, kinds: &[&str], before: &[f64]) {
    let after = error_counts(base, kinds).await;
    for ((kind, b), a) in kinds.iter().zip(before).zip(after) {
        assert!(a > *b, "onair_errors_total{{kind=\"{kind}\"}} did not move ({b} -> {a})");
    }
}

/// Waits (up to 60 s) until the Multivariant Playlist of `channel` on the server at `base`
/// (e.g. `http://127.0.0.1:8080`) names each of `renditions` and each lists at least `segments`
/// complete segments.
pub async fn wait_renditions_at(base: &str, channel: &str, renditions: &[&str], segments: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = async {
            let master = get_text(&format!("{base}/hls/{channel}/master.m3u8")).await?;
            for rendition in renditions {
                if !master.contains(&format!("{rendition}/index.m3u8")) {
                    return None;
                }
                let media = get_text(&format!("{base}/hls/{channel}/{rendition}/index.m3u8")).await?;
                if media.matches("#EXTINF").count() < segments {
                    return None;
                }
            }
            Some(())
        }
        .await;
        if ok.is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "{base}: channel {channel} did not reach {segments} segments");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An RTMP publisher built on the `rml_rtmp` crate's client session (a third-party RTMP
/// implementation), for messages ffmpeg cannot send: Enhanced RTMP, hostile configuration changes.
pub struct RtmpClient {
    sock: std::net::TcpStream,
    session: rml_rtmp::sessions::ClientSession,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RtmpClient {
    /// Connects to `addr`, completes the handshake and `connect`, and publishes stream key `key`
    /// on app `live`. Panics if the server refuses.
    pub fn publish(addr: SocketAddr, key: &str) -> RtmpClient {
        use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
        use rml_rtmp::sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType};
        use std::io::{Read, Write};
        let mut sock = std::net::TcpStream::connect(addr).expect("connect");
        sock.set_nodelay(true).expect("nodelay");
        let mut hs = Handshake::new(PeerType::Client);
        sock.write_all(&hs.generate_outbound_p0_and_p1().expect("c0c1")).expect("write");
        let mut buf = vec![0u8; 8192];
        let mut pending = loop {
            let n = sock.read(&mut buf).expect("read");
            assert!(n > 0, "server closed during the handshake");
            match hs.process_bytes(&buf[..n]).expect("handshake") {
                HandshakeProcessResult::InProgress { response_bytes } => sock.write_all(&response_bytes).expect("write"),
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    sock.write_all(&response_bytes).expect("write");
                    break remaining_bytes;
                }
            }
        };
        let (mut session, _) = ClientSession::new(ClientSessionConfig::new()).expect("session");
        let send = |sock: &mut std::net::TcpStream, r: ClientSessionResult| {
            if let ClientSessionResult::OutboundResponse(p) = r {
                sock.write_all(&p.bytes).expect("write");
            }
        };
        // Feeds input until an event that `want` accepts is raised.
        let mut wait_for = |sock: &mut std::net::TcpStream, session: &mut ClientSession, want: fn(&ClientSessionEvent) -> bool| loop {
            let input = if pending.is_empty() {
                let n = sock.read(&mut buf).expect("read");
                assert!(n > 0, "server closed the connection");
                buf[..n].to_vec()
            } else {
                std::mem::take(&mut pending)
            };
            let mut done = false;
            for r in session.handle_input(&input).expect("input") {
                match r {
                    ClientSessionResult::RaisedEvent(e) => {
                        assert!(!matches!(e, ClientSessionEvent::ConnectionRequestRejected { .. }), "rejected: {e:?}");
                        done |= want(&e);
                    }
                    other => send(sock, other),
                }
            }
            if done {
                return;
            }
        };
        send(&mut sock, session.request_connection("live".into()).expect("connect"));
        wait_for(&mut sock, &mut session, |e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted));
        send(&mut sock, session.request_publishing(key.to_string(), PublishRequestType::Live).expect("publish"));
        wait_for(&mut sock, &mut session, |e| matches!(e, ClientSessionEvent::PublishRequestAccepted));
        // Drain what the server sends from now on, so its window never fills; note when it hangs up.
        let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (mut reader, flag) = (sock.try_clone().expect("clone"), closed.clone());
        std::thread::spawn(move || {
            while matches!(reader.read(&mut [0u8; 4096]), Ok(n) if n > 0) {}
            flag.store(true, std::sync::atomic::Ordering::Release);
        });
        RtmpClient { sock, session, closed }
    }

    /// Sends one FLV video (`video`) or audio tag body with timestamp `ms`.
    pub fn send(&mut self, ms: u64, video: bool, body: bytes::Bytes) -> std::io::Result<()> {
        use std::io::Write;
        let ts = rml_rtmp::time::RtmpTimestamp::new(ms as u32);
        let r = if video { self.session.publish_video_data(body, ts, false) } else { self.session.publish_audio_data(body, ts, false) };
        match r.map_err(|e| std::io::Error::other(format!("{e:?}")))? {
            rml_rtmp::sessions::ClientSessionResult::OutboundResponse(p) => self.sock.write_all(&p.bytes),
            _ => Ok(()),
        }
    }

    /// True once the server closed the connection.
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Debian's Varnish in the foreground on a free loopback port, in front of `backend_port`, with
/// the operator VCL of `infra/cdn/onair.vcl` (stock request collapsing); killed on drop.
pub struct Varnish {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Varnish {
    pub fn start(backend_port: u16) -> Varnish {
        let dir = tempfile::tempdir().expect("tempdir");
        let vcl = std::fs::read_to_string(repo_root().join("infra/cdn/onair.vcl")).expect("VCL");
        let vcl_path = dir.path().join("onair.vcl");
        std::fs::write(&vcl_path, vcl.replace(".port = \"8080\"", &format!(".port = \"{backend_port}\""))).expect("write VCL");
        let port = free_port();
        let child = Command::new("varnishd")
            .args(["-F", "-j", "none", "-s", "malloc,256m", "-a", &format!("127.0.0.1:{port}"), "-n"])
            .arg(dir.path().join("work"))
            .arg("-f")
            .arg(&vcl_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("varnishd must be installed (infra/setup.sh test)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "varnishd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Varnish { child, port, _dir: dir }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Varnish {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
