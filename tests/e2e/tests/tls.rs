//! HTTPS (`[tls]`): HTTP/2 and HTTP/1.1 over TLS by ALPN beside plain HTTP (which speaks h2c
//! with prior knowledge), a certificate from a test CA made by `openssl`, clients that verify it
//! (Debian's curl with nghttp2, and Debian's Chromium trusting the CA through its NSS store), LL-HLS
//! blocking reloads over h2, and the OnAir player and hls.js playing over h2 in Chromium.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use onair_test_engines::TestCa;

/// `onair serve` with HTTPS on a free port, its certificate signed by `ca`; `extra` appended.
fn https_server(ca: &TestCa, extra: &str) -> (ServerProcess, u16) {
    let https_port = free_port();
    let toml = format!("[tls]\naddr = \"127.0.0.1:{https_port}\"\ncert = \"{}\"\nkey = \"{}\"\n{extra}", ca.cert.display(), ca.key.display());
    (ServerProcess::start(free_port(), &toml), https_port)
}

/// A response as curl saw it.
struct Curled {
    /// `%{http_version}`: "2", "1.1".
    version: String,
    status: u16,
    body: String,
    elapsed: Duration,
}

/// Debian's curl (nghttp2, OpenSSL) fetching `url` with `args` (e.g. `--http2`, `--http1.1`,
/// `--http2-prior-knowledge`), trusting `ca` when given. `None` when curl fails (e.g. the
/// certificate does not verify).
async fn curl(url: &str, args: &[&str], ca: Option<&TestCa>) -> Option<Curled> {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "15", "-o", "-", "-w", "\n%{http_version} %{http_code}"]).args(args).arg(url);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(&ca.ca_cert);
    }
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("curl")).await.expect("join");
    let elapsed = started.elapsed();
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n')?;
    let (version, status) = tail.split_once(' ')?;
    Some(Curled { version: version.to_string(), status: status.parse().ok()?, body: body.to_string(), elapsed })
}

#[tokio::test(flavor = "multi_thread")]
async fn https_negotiates_h2_and_http1_by_alpn_and_plain_http_speaks_h2c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::make(dir.path());
    let (server, https_port) = https_server(&ca, "[http]\nheader_read_timeout_ms = 1500\n");
    let _publisher = Publisher::start(&obs_like_fixture(), &server.rtmp_url());
    wait_renditions_at(&server.base_url(), "demo", &["source", "audio"], 2).await;
    let base = format!("https://localhost:{https_port}");
    let alpn = |p: &str| format!("onair_http_tls_connections_total{{alpn=\"{p}\"}}");
    let (h2_before, h1_before) = (server.metric(&alpn("h2")).await, server.metric(&alpn("http/1.1")).await);

    // HTTP/2 over TLS: the Multivariant Playlist, then a blocking reload for the next part.
    let r = curl(&format!("{base}/hls/demo/master.m3u8"), &["--http2"], Some(&ca)).await.expect("h2 over TLS");
    assert_eq!((r.status, r.version.as_str()), (200, "2"));
    assert!(r.body.starts_with("#EXTM3U"), "{}", r.body);
    let playlist = format!("{base}/hls/demo/source/index.m3u8");
    let (msn, part) = live_edge(&curl(&playlist, &["--http2"], Some(&ca)).await.expect("media playlist").body);
    let r = curl(&format!("{playlist}?_HLS_msn={msn}&_HLS_part={}", part + 1), &["--http2"], Some(&ca)).await.expect("blocking reload over h2");
    assert_eq!((r.status, r.version.as_str()), (200, "2"));
    let edge = live_edge(&r.body);
    assert!(edge > (msn, part), "the reload returned a playlist with the asked-for part: {edge:?} after {:?}", (msn, part));
    assert!(r.elapsed < Duration::from_secs(3), "blocked {:?}", r.elapsed);
    let reload = r.elapsed;

    // The playback API over h2 (no Host header, only :authority) offers this node's HTTPS origin.
    let r = curl(&format!("{base}/api/v1/playback/demo"), &["--http2"], Some(&ca)).await.expect("playback API");
    let answer: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(answer["candidates"][0]["base_url"], serde_json::json!(base), "{answer}");

    // HTTP/1.1 over TLS for a client that offers only it.
    let r = curl(&format!("{base}/hls/demo/master.m3u8"), &["--http1.1"], Some(&ca)).await.expect("http/1.1 over TLS");
    assert_eq!((r.status, r.version.as_str()), (200, "1.1"));

    // Plain HTTP: h2c with prior knowledge.
    let r = curl(&format!("{}/hls/demo/master.m3u8", server.base_url()), &["--http2-prior-knowledge"], None).await.expect("h2c");
    assert_eq!((r.status, r.version.as_str()), (200, "2"));

    // A client that does not trust the CA refuses the certificate.
    assert!(curl(&format!("{base}/healthz"), &["--http2"], None).await.is_none(), "a certificate of an unknown CA must not verify");

    let (h2_after, h1_after) = (server.metric(&alpn("h2")).await, server.metric(&alpn("http/1.1")).await);
    assert!(h2_after >= h2_before + 4.0 && h1_after > h1_before, "TLS connections by ALPN: h2 {h2_before}->{h2_after}, http/1.1 {h1_before}->{h1_after}");

    // Plaintext to the TLS port, and a peer that never starts the handshake: closed, counted.
    let handshake_errors = "onair_http_errors_total{kind=\"tls_handshake\"}";
    let errors_before = server.metric(handshake_errors).await;
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", https_port)).expect("connect");
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    plain.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"), "plaintext HTTP on the TLS port must not be served");
    let silent_at = Instant::now();
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", https_port)).expect("connect");
    silent.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let closed = silent.read(&mut [0u8; 16]);
    let silent_for = silent_at.elapsed();
    assert!(matches!(closed, Ok(0)) || closed.is_err(), "{closed:?}");
    assert!(silent_for < Duration::from_secs(6), "a silent peer is closed by the handshake limit (1.5 s here), not after {silent_for:?}");
    let errors = server.metric(handshake_errors).await - errors_before;
    assert!(errors >= 2.0, "both bad handshakes counted: {errors}");
    eprintln!("HTTPS: h2 and http/1.1 by ALPN, h2c on plain HTTP; blocking reload over h2 answered in {reload:?}; silent TLS peer closed after {silent_for:?}");
}

/// `onair serve` with `[tls]` naming `cert` and `key`: its stderr, after it refused to start.
fn refused_start(dir: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> String {
    let config = dir.join("onair.toml");
    let toml = format!(
        "http_addr = \"127.0.0.1:0\"\nrtmp_addr = \"127.0.0.1:0\"\nsrt_addr = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.display(),
        cert.display(),
        key.display()
    );
    std::fs::write(&config, toml).expect("config");
    let out = std::process::Command::new(onair_binary()).arg("--config").arg(&config).arg("serve").env("RUST_LOG", "warn").output().expect("onair");
    assert!(!out.status.success(), "started with certificate {} and key {}", cert.display(), key.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_certificate_or_a_key_that_does_not_match_stops_the_start_with_the_file_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.pem");
    let stderr = refused_start(dir.path(), &missing, &missing);
    assert!(stderr.contains("TLS certificate") && stderr.contains("nope.pem"), "the error names the file: {stderr}");
    // The CA's own key (SEC1 EC) with the server's certificate: a key rustls reads, but not the
    // certificate's.
    let ca = TestCa::make(dir.path());
    let stderr = refused_start(dir.path(), &ca.cert, &dir.path().join("ca-key.pem"));
    assert!(stderr.contains("TLS certificate") && stderr.contains("ca-key.pem"), "the error names the pair: {stderr}");
}

/// A renewal as certbot or cert-manager does it (new files in place, the key first): the running
/// server serves the new certificate to new connections within its check interval, no restart,
/// and a half-written pair on the way is refused while the old certificate keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (old_dir, new_dir) = (dir.path().join("old"), dir.path().join("new"));
    std::fs::create_dir_all(&old_dir).expect("dir");
    std::fs::create_dir_all(&new_dir).expect("dir");
    let (old, new) = (TestCa::make(&old_dir), TestCa::make(&new_dir));
    let (cert, key) = (dir.path().join("fullchain.pem"), dir.path().join("privkey.pem"));
    std::fs::copy(&old.cert, &cert).expect("copy");
    std::fs::copy(&old.key, &key).expect("copy");
    let https_port = free_port();
    let toml = format!("[tls]\naddr = \"127.0.0.1:{https_port}\"\ncert = \"{}\"\nkey = \"{}\"\nreload_check_ms = 250\n", cert.display(), key.display());
    let server = ServerProcess::start(free_port(), &toml);
    let healthz = format!("https://localhost:{https_port}/healthz");
    let answered = |ca: &'static str| {
        let (url, ca) = (healthz.clone(), if ca == "old" { old.clone() } else { new.clone() });
        async move { curl(&url, &["--http2"], Some(&ca)).await.is_some_and(|r| r.status == 200) }
    };
    assert!(answered("old").await, "the first certificate is served");
    assert!(!answered("new").await, "a client trusting only the new CA refuses the first certificate");
    let (ok, failed) = ("onair_tls_reloads_total{outcome=\"ok\"}", "onair_tls_reloads_total{outcome=\"error\"}");

    // Half a renewal: the new certificate, the old key. Refused, counted; the old pair serves.
    replace(&new.cert, &cert);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric(failed).await < 1.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.metric(failed).await, 1.0, "the mismatched pair is counted once");
    assert!(answered("old").await, "the old pair keeps serving while the key has not arrived");

    // The key arrives: new connections get the new certificate.
    let renewed = Instant::now();
    replace(&new.key, &key);
    let mut took = None;
    while renewed.elapsed() < Duration::from_secs(10) {
        if answered("new").await {
            took = Some(renewed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = took.expect("the renewed certificate is served within 10 s");
    assert!(!answered("old").await, "the old certificate is no longer served");
    assert_eq!(server.metric(ok).await, 1.0);
    eprintln!("TLS renewal: the new certificate served {took:?} after the key was replaced (check every 250 ms); the half-written pair was refused and the old one kept");
}

/// Replaces `to` with a copy of `from` the way renewal tools do: a new file renamed over the old.
fn replace(from: &std::path::Path, to: &std::path::Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).expect("copy");
    std::fs::rename(&tmp, to).expect("rename");
}

/// Debian's Chromium, trusting the test CA, plays the OnAir player's watch page and hls.js over
/// HTTPS: every media request goes over h2.
#[tokio::test(flavor = "multi_thread")]
async fn the_onair_player_and_hlsjs_play_over_http2_in_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::make(dir.path());
    let home = ca.browser_home();
    let (server, https_port) = https_server(&ca, "");
    let _publisher = Publisher::start(&obs_like_fixture(), &server.rtmp_url());
    wait_renditions_at(&server.base_url(), "demo", &["source", "audio"], 2).await;
    let base = format!("https://localhost:{https_port}");
    let extra = ["--hlsjs".to_string(), format!("{base}/hls/demo/master.m3u8")];
    let report = play_with_onair_home(&format!("{base}/watch/demo"), 20, &extra, Some(&home)).await;
    let (onair, hlsjs) = (&report["onair"], &report["hlsjs"]);
    let (onair_latency, hlsjs_latency) = (samples(onair, "latency", 8.0), samples(hlsjs, "latency", 8.0));
    eprintln!(
        "over HTTPS: OnAir player protocols {} latency p50 {:.3} s, stalls {}; hls.js protocols {} latency p50 {:.3} s; server {}",
        onair["protocols"],
        percentile(&onair_latency, 50.0),
        onair["last"]["stalls"],
        hlsjs["protocols"],
        percentile(&hlsjs_latency, 50.0),
        onair["last"]["server"]
    );
    assert!(onair["last"]["server"].as_str().is_some_and(|s| s.starts_with(&base)), "the player plays from the HTTPS origin: {}", onair["last"]);
    for (who, r) in [("OnAir player", onair), ("hls.js", hlsjs)] {
        let protocols = r["protocols"].as_object().cloned().unwrap_or_default();
        let h2 = protocols.get("h2").and_then(|v| v.as_u64()).unwrap_or(0);
        let http1 = protocols.get("http/1.1").and_then(|v| v.as_u64()).unwrap_or(0);
        assert!(h2 >= 20 && http1 == 0, "{who}: every request over h2: {}", r["protocols"]);
        let played = samples(r, "currentTime", 0.0);
        assert!(played.last().copied().unwrap_or(0.0) - played.first().copied().unwrap_or(0.0) > 10.0, "{who} played: {played:?}");
    }
    assert!(percentile(&onair_latency, 50.0) < 2.0 && percentile(&hlsjs_latency, 50.0) < 3.0, "latency over h2");
    assert!(onair["last"]["stalls"].as_u64().unwrap_or(99) <= 1, "{}", onair["last"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_pulls_its_upstream_over_https_with_http2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::make(dir.path());
    let (origin, https_port) = https_server(&ca, "");
    let _publisher = Publisher::start(&obs_like_fixture(), &origin.rtmp_url());
    wait_renditions_at(&origin.base_url(), "demo", &["source", "audio"], 2).await;
    let upstream = format!("https://localhost:{https_port}");
    let h2 = "onair_http_tls_connections_total{alpn=\"h2\"}";
    let h2_before = origin.metric(h2).await;
    // A relay trusting the cluster's CA pulls over TLS; one without it refuses the certificate.
    let trusting = ServerProcess::start_with_args(free_port(), &format!("[relay]\nupstream_ca = \"{}\"\n", ca.ca_cert.display()), &["--no-ingest", "--upstream", &upstream]);
    let wary = ServerProcess::start_with_args(free_port(), "", &["--no-ingest", "--upstream", &upstream]);
    let playlist = get_text(&format!("{}/hls/demo/source/index.m3u8", trusting.base_url())).await.expect("the relay serves the channel");
    let part = playlist.lines().filter_map(|l| l.split("URI=\"").nth(1)).filter_map(|u| u.split('"').next()).rfind(|u| u.starts_with("part")).expect("a part").to_string();
    let via_relay = client().get(format!("{}/hls/demo/source/{part}", trusting.base_url())).send().await.expect("get").bytes().await.expect("body");
    let direct = client().get(format!("{}/hls/demo/source/{part}", origin.base_url())).send().await.expect("get").bytes().await.expect("body");
    assert!(!direct.is_empty() && via_relay == direct, "{part}: {} bytes through the relay, {} direct", via_relay.len(), direct.len());
    let h2_after = origin.metric(h2).await;
    eprintln!("relay over HTTPS: {part} ({} bytes) identical; origin's h2 TLS connections {h2_before} -> {h2_after}", direct.len());
    assert!(h2_after > h2_before, "the relay's upstream connection negotiated h2");
    let refused = client().get(format!("{}/hls/demo/source/index.m3u8", wary.base_url())).send().await.expect("get");
    assert!(refused.status().is_server_error() || refused.status() == 404, "an untrusted upstream certificate: {}", refused.status());
    assert!(wary.metric("onair_relay_upstream_requests_total{kind=\"playlist\",outcome=\"transport\"}").await >= 1.0, "counted as a transport error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_onair_player_plays_over_http2_in_firefox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::make(dir.path());
    let (server, https_port) = https_server(&ca, "");
    let _publisher = Publisher::start(&obs_like_fixture(), &server.rtmp_url());
    wait_renditions_at(&server.base_url(), "demo", &["source", "audio"], 2).await;
    let alpn = |p: &str| format!("onair_http_tls_connections_total{{alpn=\"{p}\"}}");
    let script = repo_root().join("tests/browser/firefox-play.mjs");
    let mut cmd = std::process::Command::new("node");
    cmd.arg(script).args([format!("https://localhost:{https_port}/watch/demo"), "20".into(), ca.ca_cert.display().to_string()]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("node")).await.expect("join");
    assert!(out.status.success(), "Firefox run failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let times: Vec<f64> = r["samples"].as_array().expect("samples").iter().filter_map(|s| s["currentTime"].as_f64()).filter(|t| *t > 0.0).collect();
    let played = times.last().unwrap_or(&0.0) - times.first().unwrap_or(&0.0);
    let latencies = samples(&r, "latency", 8.0);
    let (h2, h1) = (server.metric(&alpn("h2")).await, server.metric(&alpn("http/1.1")).await);
    eprintln!(
        "{} over HTTPS: played {played:.1} s, latency p50 {:.3} s, stalls {}; playlist and media requests by protocol {}; TLS connections h2 {h2}, http/1.1 {h1} (the chat's WebSocket)",
        r["userAgent"],
        percentile(&latencies, 50.0),
        r["last"]["stalls"],
        r["protocols"]
    );
    assert!(r["userAgent"].as_str().unwrap_or("").contains("Firefox"));
    assert!(played > 12.0, "played only {played:.1} s");
    assert!(r["last"]["stalls"].as_u64().unwrap_or(u64::MAX) <= 1, "stalls: {}", r["last"]["stalls"]);
    assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "page errors: {}", r["errors"]);
    let by_protocol = r["protocols"].as_object().cloned().unwrap_or_default();
    assert!(by_protocol.get("h2").and_then(|n| n.as_u64()).unwrap_or(0) >= 50 && by_protocol.len() == 1, "every playlist and media request over h2: {by_protocol:?}");
    assert!(h2 >= 1.0, "an h2 connection");
}
