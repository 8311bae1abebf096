//! The cluster on loopback with a real `redis-server` as the registry: an origin (ingest role
//! only), two relays in two regions and a standalone `onair usher`, all separate `onair`
//! processes; ffmpeg publishes the sample to the origin. Usher places viewers by locality (the
//! client address from a trusted proxy's `X-Forwarded-For`), then on the relay that already holds
//! the channel, never on the origin; forgets a relay killed with SIGKILL within a few seconds; and
//! keeps answering from its last view while Redis restarts, after which every node registers again.

mod common;

use std::time::{Duration, Instant};

use common::*;
use onair_test_engines::{PostgresServer, RedisServer};

const SECRET: &str = "cluster-test-secret";

/// The tests here run one at a time: each runs several servers and ffmpeg.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A node's configuration, playback tokens signed with the shared [`SECRET`] and `extra` in
/// `[playback]`.
fn node_toml(port: u16, region: &str, roles: &str, extra: &str) -> String {
    node_toml_playback(port, region, roles, &format!("token_secret = \"{SECRET}\"\n{extra}"))
}

/// A node's configuration with `playback` as its `[playback]` settings (besides `public_url`).
fn node_toml_playback(port: u16, region: &str, roles: &str, playback: &str) -> String {
    format!(
        "[playback]\npublic_url = \"http://127.0.0.1:{port}\"\n{playback}\n\
         [cluster]\nregion = \"{region}\"\nroles = {roles}\nreport_interval_ms = 500\nentry_ttl_ms = 3000\nview_refresh_ms = 250\n"
    )
}

/// An ES256 key pair made by Debian's `openssl` in `dir`: (private key, PKCS#8 PEM; public key, PEM).
fn es256_keys(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (private, public) = (dir.join("playback.key"), dir.join("playback.pub"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let p = private.display().to_string();
    run(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &p]);
    run(&["pkey", "-in", &p, "-pubout", "-out", &public.display().to_string()]);
    (private, public)
}

/// A `redis-server` and an origin (ingest role only, region `region`, node id `origin`)
/// registered in it, publishing the sample until the publisher is dropped.
async fn registry_and_origin(region: &str) -> (RedisServer, ServerProcess, Publisher) {
    registry_and_origin_with(region, "").await
}

/// As [`registry_and_origin`], with `playback` settings (e.g. `require_token = true`).
async fn registry_and_origin_with(region: &str, playback: &str) -> (RedisServer, ServerProcess, Publisher) {
    registry_and_origin_playback(region, &format!("token_secret = \"{SECRET}\"\n{playback}")).await
}

/// As [`registry_and_origin`], with `playback` as the origin's whole `[playback]` settings.
async fn registry_and_origin_playback(region: &str, playback: &str) -> (RedisServer, ServerProcess, Publisher) {
    let redis = RedisServer::start();
    let port = free_port();
    let origin = ServerProcess::start_with_args(port, &node_toml_playback(port, region, "[\"ingest\"]", playback), &["--registry", &redis.url(), "--node-id", "origin"]);
    let publisher = Publisher::start(&obs_like_fixture(), &origin.rtmp_url());
    if playback.contains("require_token") {
        // Its playlists need a token: watch its channel list (open) for both renditions, then
        // give it two segments.
        let list = format!("{}/api/v1/channels", origin.base_url());
        wait_for("the origin lists demo's renditions", Duration::from_secs(60), || async {
            get_text(&list).await.is_some_and(|t| t.contains("\"source\"") && t.contains("\"audio\""))
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    } else {
        wait_renditions_at(&origin.base_url(), "demo", &["source", "audio"], 2).await;
    }
    (redis, origin, publisher)
}

/// `GET {usher}/api/v1/playback/demo?explain=1` as a trusted proxy forwarding for `client`.
async fn ask(usher: &str, client: &str) -> (u16, serde_json::Value) {
    let response = common::client()
        .get(format!("{usher}/api/v1/playback/demo?explain=1"))
        .header("x-forwarded-for", client)
        .send()
        .await
        .expect("playback API");
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.text().await.unwrap_or_default()).unwrap_or_default())
}

fn first(answer: &serde_json::Value) -> String {
    answer["candidates"][0]["node"].as_str().unwrap_or("").to_string()
}

fn offered(answer: &serde_json::Value) -> Vec<String> {
    answer["candidates"].as_array().map(|c| c.iter().filter_map(|c| c["node"].as_str().map(String::from)).collect()).unwrap_or_default()
}

async fn cluster_view(usher: &str) -> serde_json::Value {
    let text = get_text(&format!("{usher}/api/v1/cluster")).await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}

/// Node ids in Usher's view, and those holding `demo`.
async fn nodes_and_holders(usher: &str) -> (Vec<String>, Vec<String>) {
    let view = cluster_view(usher).await;
    let nodes = view["nodes"].as_array().cloned().unwrap_or_default();
    let id = |n: &serde_json::Value| n["info"]["id"].as_str().unwrap_or("").to_string();
    let holders = nodes.iter().filter(|n| n["channels"].as_array().is_some_and(|c| c.iter().any(|c| c["channel"] == "demo"))).map(id).collect();
    (nodes.iter().map(id).collect(), holders)
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, limit: Duration, mut check: impl FnMut() -> F) -> Duration {
    let t0 = Instant::now();
    while !check().await {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn usher_places_viewers_by_region_then_holder_and_survives_node_and_redis_failures() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (mut redis, origin, _publisher) = registry_and_origin("eu").await;
    let registry = redis.url();
    let (eu_port, us_port, usher_port) = (free_port(), free_port(), free_port());
    let relay = |port: u16, region: &str, id: &str| {
        // Relays check the token Usher signed (shared secret) on every request. Their own
        // playback API (asked below) grows no tree either.
        let toml = node_toml(port, region, "[\"relay\"]", "require_token = true").replace("[cluster]\n", "[cluster]\nwarm_lookahead_s = 0\n");
        ServerProcess::start_with_args(port, &toml, &["--no-ingest", "--upstream", &origin.base_url(), "--registry", &registry, "--node-id", id])
    };
    let eu = relay(eu_port, "eu", "relay-eu");
    let mut us = relay(us_port, "us", "relay-us");
    // Placement rules only: no warm-ahead growth here (it would make both relays holders;
    // `the_tree_grows_ahead_of_a_crowd` tests it).
    let usher_toml = format!(
        "[playback]\ntoken_secret = \"{SECRET}\"\nrequire_token = true\n[http]\ntrusted = [\"127.0.0.1/32\"]\n\
         [cluster]\nview_refresh_ms = 250\nwarm_lookahead_s = 0\n[cluster.regions]\neu = [\"192.0.2.0/24\"]\nus = [\"198.51.100.0/24\"]\n"
    );
    let usher = ServerProcess::usher(usher_port, &usher_toml, &["--registry", &registry]);
    let u = usher.base_url();
    let registered = wait_for("three nodes registered, the origin holding demo", Duration::from_secs(20), || async {
        let (nodes, holders) = nodes_and_holders(&u).await;
        nodes == ["origin", "relay-eu", "relay-us"] && holders == ["origin"]
    })
    .await;
    eprintln!("Usher saw the origin and both relays {} ms after the last one started", registered.as_millis());

    // Locality: each region's client goes to its region's relay first; the origin (ingest role
    // only) is never offered, and the explanation says why.
    let (status, from_us) = ask(&u, "198.51.100.7").await;
    assert_eq!(status, 200, "{from_us}");
    assert_eq!(first(&from_us), "relay-us", "{from_us}");
    assert_eq!(from_us["explain"]["region"], "us");
    let (_, from_eu) = ask(&u, "192.0.2.7").await;
    assert_eq!(offered(&from_eu), ["relay-eu", "relay-us"], "{from_eu}");
    let origin_score = from_eu["explain"]["scores"].as_array().and_then(|s| s.iter().find(|s| s["node"] == "origin").cloned()).unwrap_or_default();
    assert_eq!(origin_score["excluded"], "no_relay_role", "{from_eu}");
    // A client claiming an address directly (not through a trusted proxy) is placed by its socket
    // address: the header of an untrusted peer is ignored (the relay sees 127.0.0.1, no region).
    let direct = client().get(format!("{}/api/v1/playback/demo?explain=1", eu.base_url())).header("x-forwarded-for", "198.51.100.7").send().await.expect("api");
    let direct: serde_json::Value = serde_json::from_str(&direct.text().await.expect("body")).expect("json");
    assert_eq!(direct["explain"]["client"], "127.0.0.1", "{direct}");

    // A viewer plays from relay-us with Usher's token: relay-us now holds demo and counts one viewer.
    let token = from_us["token"].as_str().expect("token").to_string();
    let base = from_us["candidates"][0]["base_url"].as_str().expect("base_url").to_string();
    let refused = client().get(format!("{base}/hls/demo/master.m3u8")).send().await.expect("master").status();
    assert_eq!(refused.as_u16(), 403, "the relay requires the token");
    let master = client().get(format!("{base}/t/{token}/hls/demo/master.m3u8")).send().await.expect("master");
    assert_eq!(master.status().as_u16(), 200);
    let viewer = tokio::spawn({
        let base = base.clone();
        async move {
            loop {
                let _ = client().get(format!("{base}/t/{token}/hls/demo/source/index.m3u8")).header("x-playback-session-id", "viewer-1").send().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let held = wait_for("relay-us reported holding demo with its viewer", Duration::from_secs(10), || async {
        let view = cluster_view(&u).await;
        view["nodes"].as_array().is_some_and(|nodes| {
            nodes.iter().any(|n| n["info"]["id"] == "relay-us" && n["channels"].as_array().is_some_and(|c| c.iter().any(|c| c["channel"] == "demo" && c["viewers"] == 1)))
        })
    })
    .await;
    eprintln!("relay-us reported demo and its viewer {} ms after the first request", held.as_millis());
    // A client of no known region now goes to the holder.
    let (_, anywhere) = ask(&u, "203.0.113.9").await;
    assert_eq!(first(&anywhere), "relay-us", "{anywhere}");
    viewer.abort();

    // SIGKILL relay-us: Usher stops offering it once its entry expires (3 s after its last report).
    us.child.kill().expect("kill relay-us");
    let mut n = 0u32;
    let gone = wait_for("Usher stopped offering the killed relay", Duration::from_secs(6), || {
        // A new client each time: one client polling this fast would be rate limited.
        n += 1;
        let client = format!("198.51.100.{}", 10 + n % 200);
        let u = u.clone();
        async move {
            let (status, a) = ask(&u, &client).await;
            status == 200 && !offered(&a).contains(&"relay-us".to_string())
        }
    })
    .await;
    eprintln!("Usher stopped offering relay-us {} ms after its SIGKILL (entry ttl 3000 ms, report every 500 ms)", gone.as_millis());
    assert!(gone <= Duration::from_millis(4500), "took {gone:?}");
    let (_, after) = ask(&u, "198.51.100.8").await;
    assert_eq!(offered(&after), ["relay-eu"], "{after}");

    // Redis restarts (empty: no persistence). Meanwhile Usher answers from its last view and says
    // so; afterwards every live node registers again.
    let port = redis.port;
    drop(redis);
    let stale = wait_for("Usher reports the registry down", Duration::from_secs(5), || async { usher.metric("onair_registry_up").await == 0.0 }).await;
    let (status, during) = ask(&u, "192.0.2.9").await;
    assert_eq!((status, first(&during)), (200, "relay-eu".to_string()), "answers from the last view: {during}");
    redis = RedisServer::start_on(port, None);
    // Right after the restart the registry is empty until the next reports: Usher keeps its view.
    let (status, restarted) = ask(&u, "192.0.2.10").await;
    assert_eq!((status, first(&restarted)), (200, "relay-eu".to_string()), "{restarted}");
    eprintln!("Redis down: Usher noticed in {} ms and kept answering from its last view", stale.as_millis());
    let back = wait_for("nodes registered again after the Redis restart", Duration::from_secs(10), || async {
        let (nodes, holders) = nodes_and_holders(&u).await;
        cluster_view(&u).await["registry_up"] == true && nodes == ["origin", "relay-eu"] && holders.contains(&"origin".to_string())
    })
    .await;
    assert_eq!(usher.metric("onair_registry_up").await, 1.0);
    eprintln!("after the Redis restart, Usher saw the origin and relay-eu again {} ms later", back.as_millis());
    assert!(usher.metric("onair_usher_decisions_total").await >= 6.0);

    // One client asking far faster than 10 requests/s (burst 20) is refused with 429 and
    // Retry-After, others are not.
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(ask(&u, "192.0.2.200").await.0);
    }
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert!(limited >= 10 && statuses[..15].iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(ask(&u, "192.0.2.201").await.0, 200);
    assert!(usher.metric("onair_playback_rate_limited_total").await >= limited as f64);
    drop((eu, origin, redis));
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_spill_to_the_cdn_when_relays_fill_and_never_beyond_capacity_with_signed_playback() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Every node requires a playback token on every request: relays sign their own upstream pulls.
    let (redis, origin, _publisher) = registry_and_origin_with("eu", "require_token = true").await;
    let registry = redis.url();
    let (a_port, b_port, usher_port) = (free_port(), free_port(), free_port());
    // Two small relays (5 viewers each) and Varnish, standing in for the CDN, in front of the origin.
    let relay = |port: u16, id: &str| {
        let toml = node_toml(port, "eu", "[\"relay\"]", "require_token = true").replace("[cluster]\n", "[cluster]\ncapacity_viewers = 5\n");
        ServerProcess::start_with_args(port, &toml, &["--no-ingest", "--upstream", &origin.base_url(), "--registry", &registry, "--node-id", id])
    };
    let (_a, _b) = (relay(a_port, "relay-a"), relay(b_port, "relay-b"));
    let cdn = Varnish::start(origin.http_port);
    let usher_toml = format!("[playback]\ntoken_secret = \"{SECRET}\"\nrequire_token = true\n[cluster]\nview_refresh_ms = 250\ncdn_url = \"{}\"\n", cdn.base_url());
    let usher = ServerProcess::usher(usher_port, &usher_toml, &["--registry", &registry]);
    let u = usher.base_url();
    wait_for("three nodes registered", Duration::from_secs(20), || async { nodes_and_holders(&u).await.0.len() == 3 }).await;

    // 20 viewers arrive at once (within one report interval): the relays take viewers until both
    // are at the overflow load (0.8 of 5) or full, the rest go to the CDN first.
    let mut firsts: Vec<String> = Vec::new();
    let mut answers = Vec::new();
    for i in 0..20 {
        let (status, a) = ask(&u, &format!("127.0.0.{}", 10 + i)).await;
        assert_eq!(status, 200, "{a}");
        firsts.push(first(&a));
        answers.push(a);
    }
    let count = |id: &str| firsts.iter().filter(|f| *f == id).count();
    eprintln!(
        "20 viewers through Usher, relays of capacity 5: relay-a {}, relay-b {}, CDN {} ({:.0} % spilled)",
        count("relay-a"),
        count("relay-b"),
        count("cdn"),
        100.0 * count("cdn") as f64 / 20.0
    );
    assert!(count("relay-a") <= 5 && count("relay-b") <= 5, "a relay was filled past its capacity: {firsts:?}");
    assert!(count("relay-a") >= 4 && count("relay-b") >= 4, "the CDN took viewers while a relay had room: {firsts:?}");
    assert_eq!(count("cdn") + count("relay-a") + count("relay-b"), 20);
    assert!(usher.metric("onair_usher_decisions_total{outcome=\"cdn\"}").await >= count("cdn") as f64);
    // A spilled viewer plays through the CDN: Multivariant Playlist with Usher's token, the Media
    // Playlist, and a part that the second viewer gets from the cache.
    let spilled = answers.iter().find(|a| first(a) == "cdn").expect("a spilled viewer");
    assert_eq!(spilled["candidates"][0]["base_url"], cdn.base_url().as_str());
    let token = spilled["token"].as_str().expect("a token").to_string();
    assert!(answers.iter().all(|a| a["token"] == token.as_str()), "viewers of one channel within one bucket share the token");
    let cdn_base = cdn.base_url();
    let base = format!("{cdn_base}/t/{token}");
    let master = get_text(&format!("{base}/hls/demo/master.m3u8")).await.expect("master via the CDN");
    assert!(master.contains("source/index.m3u8"), "{master}");
    let playlist = get_text(&format!("{base}/hls/demo/source/index.m3u8")).await.expect("media playlist via the CDN");
    let part = playlist.lines().filter_map(|l| l.split("URI=\"").nth(1)).filter_map(|r| r.split('"').next()).find(|u| u.starts_with("part")).expect("a part").to_string();
    let url = format!("{base}/hls/demo/source/{part}");
    // Without a token, with a tampered one, or with another channel's: 403 at the origin behind
    // the CDN, not cached (a second try reaches the origin again).
    let refused_before = origin.metric("onair_playback_token_refusals_total").await;
    let tampered = format!("{}x", &token[..token.len() - 1]);
    for bad in [format!("{cdn_base}/hls/demo/source/{part}"), format!("{cdn_base}/t/{tampered}/hls/demo/source/{part}"), format!("{cdn_base}/t/{token}/hls/other/master.m3u8")] {
        for _ in 0..2 {
            let r = client().get(&bad).send().await.expect("refused request");
            assert_eq!(r.status().as_u16(), 403, "{bad}");
        }
    }
    let refused = origin.metric("onair_playback_token_refusals_total").await - refused_before;
    eprintln!("signed playback: 6 requests without, with a tampered or another channel's token: 403, {refused} reached the origin (not cached)");
    assert!(refused >= 6.0, "a refusal was cached: {refused}");
    // A relay plays with the token and pulls from the token-requiring origin with its own.
    let relay_base = answers.iter().find(|a| first(a) == "relay-a").and_then(|a| a["candidates"][0]["base_url"].as_str()).expect("relay-a").to_string();
    assert_eq!(client().get(format!("{relay_base}/hls/demo/master.m3u8")).send().await.expect("relay").status().as_u16(), 403);
    let relayed = get_text(&format!("{relay_base}/t/{token}/hls/demo/source/index.m3u8")).await.expect("media playlist via relay-a");
    assert!(relayed.contains("#EXT-X-PART:"), "{relayed}");
    let first_fetch = client().get(&url).send().await.expect("part");
    assert_eq!(first_fetch.status().as_u16(), 200);
    let second = client().get(&url).send().await.expect("part again");
    let xv = second.headers().get("x-varnish").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(xv.split_whitespace().count(), 2, "second fetch was not a cache hit (X-Varnish: {xv})");
    drop((origin, redis));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_publisher_per_key_across_origins_and_takeover_after_a_kill() {
    let _one = ONE_AT_A_TIME.lock().await;
    let redis = RedisServer::start();
    let registry = redis.url();
    // Both origins share their channels and stream keys in PostgreSQL.
    let pg = PostgresServer::start();
    let database = pg.url();
    let (a_port, b_port) = (free_port(), free_port());
    let origin = |port: u16, id: &str| {
        ServerProcess::start_with_args(port, &node_toml(port, "eu", "[\"ingest\", \"relay\"]", ""), &["--registry", &registry, "--node-id", id, "--database", &database])
    };
    let a = origin(a_port, "origin-a");
    let b = origin(b_port, "origin-b");
    assert!(!a.key.is_empty(), "origin-a created the demo channel");
    let key = a.key.clone();
    let url_b = format!("rtmp://127.0.0.1:{}/live/{key}", b.rtmp_port);
    let mut publisher_a = Publisher::start(&obs_like_fixture(), &a.rtmp_url());
    wait_renditions_at(&a.base_url(), "demo", &["source", "audio"], 1).await;

    // While origin-a is alive with its publisher, origin-b refuses the key.
    let refused = publish_once(&obs_like_fixture(), &url_b, 3, None).await;
    assert!(!refused.status.success(), "origin-b accepted a key live on origin-a");
    assert!(b.metric("onair_errors_total{kind=\"live_elsewhere\"}").await >= 1.0);
    assert!(b.log().contains("live on another node"), "{}", b.log());

    // A viewer watches the channel on origin-b, which (with the relay role too) relays it from
    // origin-a meanwhile.
    let playlist_b = format!("{}/hls/demo/source/index.m3u8", b.base_url());
    wait_for("origin-b relays the channel", Duration::from_secs(10), || async { get_text(&playlist_b).await.is_some_and(|p| p.contains("#EXT-X-PART:")) }).await;
    let viewer = tokio::spawn(async move {
        loop {
            let _ = get_text(&playlist_b).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    // The publisher drops from origin-a (origin-a alive, the broadcast in its reconnect grace
    // period) and reconnects to origin-b, as OBS does to its backup server: the lease was released
    // with the publisher, so origin-b takes it at once, in place of its relayed copy.
    publisher_a.kill();
    let url_a = a.rtmp_url();
    let retrying_b = RetryingPublisher::start(&url_b);
    let moved = wait_live(&b, Duration::from_secs(10)).await;
    eprintln!("publisher moved from origin-a to origin-b: live there {} ms after it dropped from origin-a", moved.as_millis());
    assert!(moved <= Duration::from_millis(3000), "{moved:?}");
    wait_for("origin-b stops relaying the channel it now ingests", Duration::from_secs(5), || async { b.metric("onair_relay_taken_over_total").await >= 1.0 }).await;
    viewer.abort();
    // Now origin-a refuses the key.
    assert!(!publish_once(&obs_like_fixture(), &url_a, 3, None).await.status.success(), "origin-a accepted a key live on origin-b");

    // kill -9 origin-b: its lease expires (3 s after its last renewal) and origin-a accepts the
    // publisher, which retries as OBS does.
    let mut b = b;
    drop(retrying_b);
    b.child.kill().expect("kill origin-b");
    let _retrying_a = RetryingPublisher::start(&url_a);
    let accepted = wait_live(&a, Duration::from_secs(15)).await;
    eprintln!(
        "kill -9 of origin-b: origin-a had the publisher live {} ms after the kill (lease ttl 3000 ms, renewed every 1000 ms; publisher retrying every 0.3 s)",
        accepted.as_millis()
    );
    assert!(accepted >= Duration::from_millis(1500), "origin-a took the key before origin-b's lease could have expired: {accepted:?}");
    assert!(accepted <= Duration::from_millis(5000), "{accepted:?}");
    drop((a, b, redis, pg));
}

/// ffmpeg publishing to `url`, started again 300 ms after each exit (as OBS retries a refused or
/// dropped connection); stops on drop.
struct RetryingPublisher {
    task: tokio::task::JoinHandle<()>,
    current: std::sync::Arc<std::sync::Mutex<Option<Publisher>>>,
}

impl RetryingPublisher {
    fn start(url: &str) -> RetryingPublisher {
        let url = url.to_string();
        let current = std::sync::Arc::new(std::sync::Mutex::new(None::<Publisher>));
        let slot = current.clone();
        let task = tokio::spawn(async move {
            loop {
                *slot.lock().expect("slot") = Some(Publisher::start(&obs_like_fixture(), &url));
                while slot.lock().expect("slot").as_mut().is_some_and(|p| p.child.try_wait().ok().flatten().is_none()) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        RetryingPublisher { task, current }
    }
}

impl Drop for RetryingPublisher {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(mut p) = self.current.lock().unwrap_or_else(|e| e.into_inner()).take() {
            p.kill();
        }
    }
}

/// Waits until `server` has a publisher attached (its `onair_live_channels` gauge; its channel
/// list would also show channels live elsewhere in the cluster); returns the time taken.
async fn wait_live(server: &ServerProcess, limit: Duration) -> Duration {
    wait_for(&format!("a publisher live on {}", server.base_url()), limit, || async { server.metric("onair_live_channels").await >= 1.0 }).await
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_find_the_origin_in_the_registry_and_follow_the_publisher_to_a_new_origin() {
    let _one = ONE_AT_A_TIME.lock().await;
    let redis = RedisServer::start();
    let registry = redis.url();
    let channels = tempfile::tempdir().expect("tempdir");
    let data = channels.path().to_str().expect("path").to_string();
    let (a_port, b_port, r_port) = (free_port(), free_port(), free_port());
    let origin = |port: u16, id: &str| {
        ServerProcess::start_with_args(port, &node_toml(port, "eu", "[\"ingest\"]", ""), &["--registry", &registry, "--node-id", id, "--data-dir", &data])
    };
    let mut a = origin(a_port, "origin-a");
    let b = origin(b_port, "origin-b");
    let url_b = format!("rtmp://127.0.0.1:{}/live/{}", b.rtmp_port, a.key);
    let publisher_a = RetryingPublisher::start(&a.rtmp_url());
    wait_renditions_at(&a.base_url(), "demo", &["source", "audio"], 2).await;
    // A relay with no configured upstream: it finds the channel's holder in the registry.
    let relay = ServerProcess::start_with_args(r_port, &node_toml(r_port, "eu", "[\"relay\"]", ""), &["--no-ingest", "--registry", &registry, "--node-id", "relay"]);
    let r = relay.base_url();
    wait_for("relay registered", Duration::from_secs(10), || async { get_text(&format!("{r}/api/v1/cluster")).await.is_some_and(|t| t.contains("\"relay\"") && t.contains("origin-a")) }).await;
    wait_renditions_at(&r, "demo", &["source", "audio"], 2).await;
    let tree = |base: String| async move { serde_json::from_str::<serde_json::Value>(&get_text(&format!("{base}/api/v1/channels/demo/tree")).await.unwrap_or_default()).unwrap_or_default() };
    let parent_of_relay = |t: &serde_json::Value| t["nodes"].as_array().and_then(|n| n.iter().find(|n| n["node"] == "relay")).map(|n| n["parent"].clone()).unwrap_or_default();
    wait_for("the tree shows the relay under origin-a", Duration::from_secs(5), || {
        let t = tree(r.clone());
        async move { parent_of_relay(&t.await) == "origin-a" }
    })
    .await;
    eprintln!("tree before: {}", tree(r.clone()).await);

    // A viewer on the relay follows the live edge.
    let edge = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Instant, (u64, u32), bool)>::new()));
    let watcher = tokio::spawn({
        let (r, edge) = (r.clone(), edge.clone());
        async move {
            loop {
                if let Some(p) = get_text(&format!("{r}/hls/demo/source/index.m3u8")).await {
                    if p.contains("#EXT-X-MEDIA-SEQUENCE:") {
                        edge.lock().expect("edge").push((Instant::now(), live_edge(&p), p.contains("#EXT-X-DISCONTINUITY")));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kill -9 origin-a; the publisher reconnects to origin-b (retrying as OBS does), which takes the
    // key once origin-a's lease expires; the relay moves to origin-b, found in the registry.
    a.child.kill().expect("kill origin-a");
    drop(publisher_a);
    let killed = Instant::now();
    let _publisher_b = RetryingPublisher::start(&url_b);
    wait_live(&b, Duration::from_secs(15)).await;
    let live_on_b = killed.elapsed();
    let before = edge.lock().expect("edge").iter().filter(|(t, _, _)| *t < killed).map(|(_, e, _)| *e).max().expect("edge before the kill");
    let resumed = wait_for("the relay's playlist advances again", Duration::from_secs(20), || {
        let edge = edge.clone();
        async move { edge.lock().expect("edge").iter().any(|(t, e, _)| *t > killed && *e > before) }
    })
    .await;
    let stall = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    watcher.abort();
    let samples = edge.lock().expect("edge").clone();
    let after = samples.last().map(|s| s.1).expect("samples");
    assert!(samples.windows(2).all(|w| w[1].1 >= w[0].1), "the relay's live edge went backwards");
    let last = get_text(&format!("{r}/hls/demo/source/index.m3u8")).await.unwrap_or_default();
    assert!(samples.last().is_some_and(|s| s.2), "no EXT-X-DISCONTINUITY after the origin changed:\n{last}\n{}", relay.log());
    let t = tree(r.clone()).await;
    assert_eq!(parent_of_relay(&t), "origin-b", "{t}");
    eprintln!("tree after: {t}");
    eprintln!(
        "origin kill -9 with the publisher moving to origin-b: live on origin-b after {} ms, the relay's playlist advanced again {} ms after the kill (waited {} ms for it after origin-b was live); live edge {before:?} -> {after:?}, one discontinuity",
        live_on_b.as_millis(),
        stall.as_millis(),
        resumed.as_millis()
    );
    drop((b, relay, redis, channels));
}

#[tokio::test(flavor = "multi_thread")]
async fn hlsjs_follows_content_steering_to_the_server_usher_ranks_first() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (redis, origin, _publisher) = registry_and_origin("far").await;
    let registry = redis.url();
    let (far_port, near_port) = (free_port(), free_port());
    // Loopback clients are in region "near"; relay-far is not, relay-near is.
    let relay = |port: u16, region: &str, id: &str| {
        let toml = format!("{}[cluster.regions]\nnear = [\"127.0.0.0/8\"]\n", node_toml(port, region, "[\"relay\"]", ""));
        ServerProcess::start_with_args(port, &toml, &["--no-ingest", "--registry", &registry, "--node-id", id])
    };
    let far = relay(far_port, "far", "relay-far");
    let near = relay(near_port, "near", "relay-near");
    wait_for("both relays registered", Duration::from_secs(15), || async {
        let t = get_text(&format!("{}/api/v1/cluster", far.base_url())).await.unwrap_or_default();
        t.contains("\"relay-near\"") && t.contains("\"relay-far\"") && t.contains("\"origin\"")
    })
    .await;
    let master = get_text(&format!("{}/hls/demo/master.m3u8", far.base_url())).await.expect("master");
    let server_uri = format!("{}/api/v1/steering/demo?base=relay-far", far.base_url());
    assert!(master.contains(&format!("#EXT-X-CONTENT-STEERING:SERVER-URI=\"{server_uri}\",PATHWAY-ID=\"relay-far\"")), "{master}");
    assert!(master.contains("STABLE-VARIANT-ID=\"source\",PATHWAY-ID=\"relay-far\""), "{master}");
    let manifest: serde_json::Value = serde_json::from_str(&get_text(&server_uri).await.expect("steering manifest")).expect("json");
    assert_eq!(manifest["VERSION"], 1);
    assert_eq!(manifest["PATHWAY-PRIORITY"][0], "relay-near", "{manifest}");
    assert_eq!(manifest["PATHWAY-CLONES"][0]["URI-REPLACEMENT"]["PER-VARIANT-URIS"]["source"], format!("{}/hls/demo/source/index.m3u8", near.base_url()));
    eprintln!("steering manifest for a loopback client of relay-far: {manifest}");

    // hls.js loads relay-far's Multivariant Playlist and moves to relay-near, which Usher ranks first.
    let report = play_hlsjs_at(&format!("{}/", far.base_url()), &format!("{}/hls/demo/master.m3u8", far.base_url()), 20, None).await;
    let played = played_seconds(&report);
    assert!(played >= 12.0, "hls.js played {played:.1} s: {}", report["errors"]);
    let near_viewers = near.metric("onair_viewers").await;
    let steered = near.metric("onair_steering_decisions_total").await + far.metric("onair_steering_decisions_total").await;
    eprintln!("hls.js played {played:.1} s; relay-near counted {near_viewers} viewer(s) after steering ({steered} steering manifests served)");
    assert!(near_viewers >= 1.0, "hls.js never reached relay-near; relay-far log: {}", far.log());
    assert!(steered >= 1.0);

    // The OnAir player, given relay-far's Multivariant Playlist directly (no playback API), follows
    // the steering manifest to relay-near too.
    let src = format!("{}/hls/demo/master.m3u8", far.base_url());
    let report = play_with_onair(&format!("{}/watch/demo?src={src}", far.base_url()), 20, &[]).await;
    let last = &report["onair"]["last"];
    let latencies = samples(&report["onair"], "latency", 10.0);
    eprintln!(
        "OnAir player with steering: server {}, steered {}, failovers {}, stalls {}; latency p50 {:.3} s after 10 s (origin -> relay-near -> player)",
        last["server"],
        last["steered"],
        last["failovers"],
        last["stalls"],
        if latencies.is_empty() { f64::NAN } else { percentile(&latencies, 50.0) }
    );
    assert!(last["server"].as_str().is_some_and(|s| s.contains(&format!(":{near_port}/"))), "OnAir player not on relay-near: {last}");
    assert!(last["steered"].as_u64().unwrap_or(0) >= 1, "{last}");
    assert!(last["stalls"].as_u64().unwrap_or(99) <= 1, "{last}");

    // The cluster page (any node) lists the three nodes and draws demo's tree: origin, then the relays.
    let script = repo_root().join("tests/browser/cluster-page.mjs");
    let mut cmd = std::process::Command::new("node");
    cmd.arg(script).args([far.base_url(), screenshot_dir().display().to_string(), "3".into()]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("node")).await.expect("join");
    assert!(out.status.success(), "cluster page: {}", String::from_utf8_lossy(&out.stderr));
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(page["nodes"], serde_json::json!(["origin", "relay-far", "relay-near"]), "{page}");
    let demo = page["trees"]["demo"].as_array().cloned().unwrap_or_default();
    assert_eq!(demo.first().and_then(|v| v.as_str()), Some("origin"), "{page}");
    assert!(demo.iter().any(|v| v == "relay-near"), "{page}");
    assert!(page["errors"].as_array().is_some_and(|e| e.is_empty()), "{page}");
    eprintln!("cluster page: {page} (screenshot {}/cluster.png)", screenshot_dir().display());
    drop((origin, far, near, redis));
}

/// `onair drain --url URL` with admin token `token`; (success, stdout + stderr).
async fn onair_drain(url: &str, token: &str) -> (bool, String) {
    let mut cmd = std::process::Command::new(onair_binary());
    // Defaults and the token from the environment (no onair.toml in the temp directory).
    cmd.args(["drain", "--url", url]).env("ONAIR_ADMIN__TOKEN", token).env_remove("ONAIR_CONFIG").current_dir(std::env::temp_dir());
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("onair drain")).await.expect("join");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_relay_hands_its_viewers_over_and_exits() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (redis, origin, _publisher) = registry_and_origin("eu").await;
    let registry = redis.url();
    let (a_port, b_port, usher_port) = (free_port(), free_port(), free_port());
    let relay = |port: u16, id: &str| {
        let toml = format!("{}[admin]\ntoken = \"drain-me\"\n", node_toml(port, "eu", "[\"relay\"]", ""));
        ServerProcess::start_with_args(port, &toml, &["--no-ingest", "--registry", &registry, "--node-id", id])
    };
    let mut a = relay(a_port, "relay-a");
    let b = relay(b_port, "relay-b");
    let usher = ServerProcess::usher(usher_port, &format!("[playback]\ntoken_secret = \"{SECRET}\"\n[cluster]\nview_refresh_ms = 250\n"), &["--registry", &registry]);
    let u = usher.base_url();
    wait_for("three nodes registered", Duration::from_secs(20), || async { nodes_and_holders(&u).await.0.len() == 3 }).await;

    // Six viewers, each on its first candidate, moving to the next on any failed playlist request
    // (as the OnAir player does); each records every move.
    let (first_answer_status, first_answer) = ask(&u, "127.0.0.1").await;
    assert_eq!(first_answer_status, 200);
    let drained_first = first(&first_answer);
    let (drained, other) = if drained_first == "relay-a" { (a_port, b_port) } else { (b_port, a_port) };
    let candidates = vec![format!("http://127.0.0.1:{drained}"), format!("http://127.0.0.1:{other}")];
    let moves = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(usize, Instant, String)>::new()));
    let viewers: Vec<_> = (0..6)
        .map(|v| {
            let (candidates, moves) = (candidates.clone(), moves.clone());
            tokio::spawn(async move {
                let mut at = 0;
                loop {
                    let ok = client()
                        .get(format!("{}/hls/demo/source/index.m3u8", candidates[at]))
                        .header("x-playback-session-id", format!("viewer-{v}"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if !ok {
                        at = (at + 1) % candidates.len();
                        moves.lock().expect("moves").push((v, Instant::now(), candidates[at].clone()));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        })
        .collect();
    let base_drained = format!("http://127.0.0.1:{drained}");
    let drained_server = if drained == a_port { &a } else { &b };
    wait_for("six viewers on the relay to drain", Duration::from_secs(10), || async { drained_server.metric("onair_viewers").await >= 6.0 }).await;
    moves.lock().expect("moves").clear();

    // A wrong token is refused; the right one drains.
    let (ok, out) = onair_drain(&base_drained, "wrong").await;
    assert!(!ok && out.contains("401"), "{out}");
    let t0 = Instant::now();
    let (ok, out) = onair_drain(&base_drained, "drain-me").await;
    assert!(ok, "{out}");
    let exited = t0.elapsed();
    eprintln!("onair drain: {}", out.trim());
    // Every viewer moved once, to the other relay.
    wait_for("every viewer moved", Duration::from_secs(30), || async { moves.lock().expect("moves").iter().map(|m| m.0).collect::<std::collections::HashSet<_>>().len() == 6 }).await;
    let all_moved = t0.elapsed();
    let m = moves.lock().expect("moves").clone();
    for v in 0..6 {
        let mine: Vec<_> = m.iter().filter(|x| x.0 == v).collect();
        assert_eq!(mine.len(), 1, "viewer {v} moved {} times: {mine:?}", mine.len());
        assert!(mine[0].2.ends_with(&other.to_string()));
    }
    // Usher stopped offering the drained relay within a view refresh (it left the registry).
    let mut n = 0;
    let gone = wait_for("Usher stopped offering the drained relay", Duration::from_secs(2), || {
        n += 1;
        let (u, client, node) = (u.clone(), format!("127.0.0.{}", 2 + n % 200), drained_first.clone());
        async move { !offered(&ask(&u, &client).await.1).contains(&node) }
    })
    .await;
    let other_server = if drained == a_port { &b } else { &a };
    wait_for("the other relay counts the six viewers", Duration::from_secs(5), || async { other_server.metric("onair_viewers").await >= 6.0 }).await;
    eprintln!(
        "drain of {drained_first} with 6 viewers: node exited {} ms after the request, every viewer on the other relay within {} ms, each moved once; Usher stopped offering it within {} ms",
        exited.as_millis(),
        all_moved.as_millis(),
        (exited + gone).as_millis()
    );
    for v in viewers {
        v.abort();
    }
    let status = if drained == a_port { a.child.try_wait() } else { Ok(None) };
    if drained == a_port {
        assert!(status.ok().flatten().is_some_and(|s| s.success()), "relay-a exited cleanly");
    }
    drop((origin, b, usher, redis));
    let _ = a.child.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_onair_player_moves_to_another_relay_when_its_relay_is_killed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (redis, origin, _publisher) = registry_and_origin("eu").await;
    let registry = redis.url();
    let relay = |port: u16, id: &str| ServerProcess::start_with_args(port, &node_toml(port, "eu", "[\"relay\"]", ""), &["--no-ingest", "--registry", &registry, "--node-id", id]);
    let (a_port, b_port) = (free_port(), free_port());
    let (a, b) = (relay(a_port, "relay-a"), relay(b_port, "relay-b"));
    wait_for("both relays registered", Duration::from_secs(15), || async {
        let t = get_text(&format!("{}/api/v1/cluster", a.base_url())).await.unwrap_or_default();
        t.contains("\"relay-a\"") && t.contains("\"relay-b\"")
    })
    .await;
    // The watch page asks relay-a's playback API (Usher over the registry): both relays are
    // candidates; the player plays the first and, 10 s in, that relay is killed with SIGKILL.
    let pids = format!("{}={},{}={}", a.base_url(), a.child.id(), b.base_url(), b.child.id());
    let report = play_with_onair(&format!("{}/watch/demo", a.base_url()), 25, &["--kill-at".into(), "10".into(), "--pids".into(), pids]).await;
    let onair = &report["onair"];
    let kill = &onair["kill"];
    assert!(!kill.is_null(), "the relay in use was found and killed: {onair}");
    let (switched, frozen, played) = (
        kill["switchedAfter"].as_f64().unwrap_or(f64::MAX),
        kill["frozenSeconds"].as_f64().unwrap_or(f64::MAX),
        kill["playedAfter"].as_f64().unwrap_or(0.0),
    );
    eprintln!(
        "kill -9 of {} under the OnAir player: on the other relay {switched:.2} s after the kill, picture still for at most {frozen:.2} s, {} stall(s), played {played:.1} s after",
        kill["server"], onair["last"]["stalls"]
    );
    assert!(switched < 2.0, "moved after {switched:.2} s");
    assert!(frozen < 2.0, "stood still {frozen:.2} s");
    assert!(onair["last"]["stalls"].as_u64().unwrap_or(99) <= 1, "{}", onair["last"]);
    assert!(played > 10.0, "{played:.1} s");
    drop((a, b, origin, redis));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tree_grows_ahead_of_a_crowd() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Signed playback with ES256: the origin and Usher sign, the relays hold only the public key
    // (they verify tokens and cannot make one), so a warm request brings the relay its token.
    let keys = tempfile::tempdir().expect("tempdir");
    let (private, public) = es256_keys(keys.path());
    let signing = format!("token_private_key = \"{}\"\ntoken_public_key = \"{}\"\nrequire_token = true\n", private.display(), public.display());
    let verifying = format!("token_public_key = \"{}\"\nrequire_token = true\n", public.display());
    let (redis, origin, _publisher) = registry_and_origin_playback("eu", &signing).await;
    let registry = redis.url();
    let relay = |port: u16, id: &str| {
        let toml = node_toml_playback(port, "eu", "[\"relay\"]", &verifying).replace("[cluster]\n", "[cluster]\ncapacity_viewers = 10\n");
        ServerProcess::start_with_args(port, &toml, &["--no-ingest", "--registry", &registry, "--node-id", id])
    };
    let (a, b) = (relay(free_port(), "relay-a"), relay(free_port(), "relay-b"));
    let usher_port = free_port();
    let usher_toml = format!("[playback]\n{signing}[http]\ntrusted = [\"127.0.0.1/32\"]\n[cluster]\nview_refresh_ms = 250\nshrink_after_s = 3\n");
    let usher = ServerProcess::usher(usher_port, &usher_toml, &["--registry", &registry]);
    let u = usher.base_url();
    wait_for("three nodes registered", Duration::from_secs(20), || async { nodes_and_holders(&u).await.0.len() == 3 }).await;
    assert_eq!(nodes_and_holders(&u).await.1, ["origin"], "no relay holds the channel before the crowd");

    // Eight viewers within a second (none of them plays: only Usher's decisions act): the holders
    // cannot take 1.6 arrivals/s for 5 s, so Usher asks the relays to warm the channel.
    let t0 = Instant::now();
    let mut firsts = Vec::new();
    for i in 0..8 {
        let (status, a) = ask(&u, &format!("127.0.0.{}", 20 + i)).await;
        assert_eq!(status, 200, "{a}");
        firsts.push(first(&a));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for("both relays hold the channel", Duration::from_secs(8), || async {
        let holders = nodes_and_holders(&u).await.1;
        holders.contains(&"relay-a".to_string()) && holders.contains(&"relay-b".to_string())
    })
    .await;
    let both = t0.elapsed();
    let grown = usher.metric("onair_usher_tree_grown_total").await;
    let warm = |s: &ServerProcess| {
        let base = s.base_url();
        async move {
            let text = get_text(&format!("{base}/metrics")).await.unwrap_or_default();
            let value = |series: &str| text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).unwrap_or(0.0);
            (value("onair_relay_warm_seconds_count"), value("onair_relay_warm_seconds_sum"))
        }
    };
    let ((a_count, a_sum), (b_count, b_sum)) = (warm(&a).await, warm(&b).await);
    eprintln!(
        "8 arrivals in 0.8 s: placed on {firsts:?}; Usher grew the tree {grown} time(s); Usher's view showed both relays holding the channel {} ms after the first decision (reports every 500 ms); warm time relay-a {:.0} ms ({a_count}), relay-b {:.0} ms ({b_count}); tree: {}",
        both.as_millis(),
        if a_count > 0.0 { 1000.0 * a_sum / a_count } else { f64::NAN },
        if b_count > 0.0 { 1000.0 * b_sum / b_count } else { f64::NAN },
        get_text(&format!("{u}/api/v1/channels/demo/tree")).await.unwrap_or_default()
    );
    assert_eq!(grown, 2.0, "Usher asks each relay once");
    assert!(a_count >= 1.0 && b_count >= 1.0, "both relays warmed: {a_count} {b_count}");
    // A warmed relay has the parts before any viewer asks: first part within 1 s of the decision.
    assert!(a_sum / a_count <= 1.0 && b_sum / b_count <= 1.0, "warm took {a_sum}/{a_count} s and {b_sum}/{b_count} s");
    // A viewer with Usher's token plays from a relay that checks it with the public key alone.
    let (_, answer) = ask(&u, "127.0.0.30").await;
    let token = answer["token"].as_str().expect("a playback token").to_string();
    for relay in [&a, &b] {
        let playlist = format!("{}/t/{token}/hls/demo/source/index.m3u8", relay.base_url());
        assert!(get_text(&playlist).await.is_some_and(|p| p.contains("#EXT-X-PART:")), "{playlist}");
        let refused = common::client().get(format!("{}/hls/demo/source/index.m3u8", relay.base_url())).send().await.expect("get");
        assert_eq!(refused.status(), 403, "no token, no playlist");
    }

    // The crowd never came (no viewer plays): one relay could take all the channel's viewers, so
    // after the cool-down (3 s here) Usher retires the other from the channel and offers it no
    // more, in the playback API and in the Steering Manifest.
    let quiet = Instant::now();
    wait_for("Usher retires one relay", Duration::from_secs(10), || async { usher.metric("onair_usher_tree_shrunk_total").await == 1.0 }).await;
    let (_, answer) = ask(&u, "127.0.0.40").await;
    let retired: Vec<String> = answer["explain"]["scores"].as_array().into_iter().flatten().filter(|s| s["excluded"] == "retired").filter_map(|s| s["node"].as_str().map(String::from)).collect();
    eprintln!("Usher retired {retired:?} {} ms after the arrivals stopped; it offers {:?}", quiet.elapsed().as_millis(), offered(&answer));
    assert_eq!(retired.len(), 1, "{answer}");
    assert!(!offered(&answer).contains(&retired[0]), "{answer}");
    let manifest: serde_json::Value = serde_json::from_str(&get_text(&format!("{u}/api/v1/steering/demo?base=relay-a")).await.expect("steering manifest")).expect("json");
    let priority = manifest["PATHWAY-PRIORITY"].as_array().cloned().unwrap_or_default();
    assert!(!priority.is_empty() && !priority.iter().any(|p| p == retired[0].as_str()), "the Steering Manifest still ranks {}: {manifest}", retired[0]);
    drop((a, b, usher, origin, redis));
}

/// The whole cluster at once, as an operator runs it: Redis (registry), PostgreSQL (channels and
/// keys), one origin, three relays, a standalone Usher and Varnish as the CDN, every node
/// requiring signed playback; ffmpeg publishes the sample to the origin; the OnAir player in
/// Chromium asks Usher (the watch page's `?base=`), plays from the relay it is given, and its
/// latency is printed.
#[tokio::test(flavor = "multi_thread")]
async fn the_whole_cluster_plays_in_chromium_through_usher_from_a_relay() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (redis, pg) = (RedisServer::start(), PostgresServer::start());
    let (registry, database) = (redis.url(), pg.url());
    let signed = "require_token = true";
    let origin_port = free_port();
    let origin = ServerProcess::start_with_args(
        origin_port,
        &node_toml(origin_port, "eu", "[\"ingest\"]", signed),
        &["--registry", &registry, "--node-id", "origin", "--database", &database],
    );
    assert!(!origin.key.is_empty(), "the origin created demo in PostgreSQL");
    let _publisher = Publisher::start(&obs_like_fixture(), &origin.rtmp_url());
    let relays: Vec<ServerProcess> = ["relay-a", "relay-b", "relay-c"]
        .iter()
        .map(|id| {
            let port = free_port();
            ServerProcess::start_with_args(port, &node_toml(port, "eu", "[\"relay\"]", signed), &["--no-ingest", "--registry", &registry, "--node-id", id])
        })
        .collect();
    let cdn = Varnish::start(origin.http_port);
    let usher_toml = format!("[playback]\ntoken_secret = \"{SECRET}\"\n{signed}\n[cluster]\nview_refresh_ms = 250\ncdn_url = \"{}\"\n", cdn.base_url());
    let usher = ServerProcess::usher(free_port(), &usher_toml, &["--registry", &registry]);
    let u = usher.base_url();
    wait_for("four nodes registered, the origin holding demo", Duration::from_secs(60), || async {
        let (nodes, holders) = nodes_and_holders(&u).await;
        nodes.len() == 4 && holders.contains(&"origin".to_string())
    })
    .await;
    let (status, answer) = ask(&u, "127.0.0.1").await;
    assert_eq!(status, 200, "{answer}");
    let offered = offered(&answer);
    eprintln!("Usher offers {offered:?} for demo (explain: {})", answer["explain"]);
    assert!(offered.first().is_some_and(|n| n.starts_with("relay-")), "a relay first: {offered:?}");
    assert!(answer["token"].as_str().is_some_and(|t| !t.is_empty()), "a playback token: {answer}");

    // The watch page of any relay, its player pointed at Usher's playback API.
    let page = format!("{}/watch/demo?base={u}", relays[0].base_url());
    let report = play_with_onair(&page, 25, &[]).await;
    let last = &report["onair"]["last"];
    let latencies = samples(&report["onair"], "latency", 10.0);
    let server = last["server"].as_str().unwrap_or("").to_string();
    let on_relay = relays.iter().any(|r| server.starts_with(&r.base_url()));
    eprintln!(
        "whole cluster (Redis, PostgreSQL, origin, 3 relays, Usher, Varnish; signed playback): the OnAir player played from {server}, \
         latency p50 {:.3} s / p95 {:.3} s after 10 s, stalls {}, failovers {}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 95.0),
        last["stalls"],
        last["failovers"]
    );
    assert!(on_relay, "the player plays from a relay: {last}");
    assert!(server.contains("/t/"), "on tokened URLs: {server}");
    assert!(latencies.len() > 20, "the player kept playing: {} samples", latencies.len());
    assert!(percentile(&latencies, 50.0) < 3.0, "latency {:.2} s", percentile(&latencies, 50.0));
    assert!(last["stalls"].as_u64().unwrap_or(99) <= 1, "{last}");
    let (_, holders) = nodes_and_holders(&u).await;
    eprintln!("demo's holders after the viewer: {holders:?}");
    assert!(holders.iter().any(|h| h.starts_with("relay-")), "a relay pulled demo: {holders:?}");
    drop((relays, origin, cdn, redis, pg));
}
