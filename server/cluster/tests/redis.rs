//! The Redis registry against a real `redis-server` (Debian's), started on a free loopback port:
//! reports are shared, expire by themselves, survive nothing they should not, and a restarted
//! Redis sees every node again at its next report while a down one fails fast.

use std::time::{Duration, Instant};

use onair_cluster::node::{HeldChannel, Load, NodeInfo, NodeReport, Roles};
use onair_cluster::{Lease, Registry};
use onair_test_engines::{free_port, RedisServer};

fn report(id: &str, channels: &[&str]) -> NodeReport {
    NodeReport {
        info: NodeInfo {
            id: id.into(),
            base_url: Some(format!("http://{id}:8080")),
            region: "eu".into(),
            zone: "eu-a".into(),
            roles: Roles { ingest: false, relay: true, chat: true },
            capacity_viewers: 1000,
            capacity_egress_mbps: 1000.0,
            cost: 1.0,
        },
        load: Load { viewers: 3, egress_mbps: 1.5, cpu: 0.25 },
        channels: channels
            .iter()
            .map(|c| HeldChannel { channel: (*c).into(), renditions: vec!["source".into(), "audio".into()], origin: false, live: true, viewers: 3, started_at_ms: 1, upstream: None })
            .collect(),
        chat_rooms: Vec::new(),
        reported_at_ms: now_ms(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn ids(v: &[NodeReport]) -> Vec<&str> {
    v.iter().map(|n| n.info.id.as_str()).collect()
}

#[tokio::test]
async fn reports_are_shared_expire_and_come_back_after_a_redis_restart() {
    let port = free_port();
    let redis = RedisServer::start_on(port, None);
    // Two nodes and an Usher, each with its own connection.
    let (a, b, usher) = (Registry::redis(&redis.url()).expect("a"), Registry::redis(&redis.url()).expect("b"), Registry::redis(&redis.url()).expect("usher"));
    let ttl = Duration::from_millis(800);
    a.publish(&report("relay-a", &["demo"]), ttl, now_ms()).await.expect("publish a");
    b.publish(&report("relay-b", &[]), ttl, now_ms()).await.expect("publish b");
    let view = usher.snapshot(now_ms()).await.expect("snapshot");
    assert_eq!(ids(&view), vec!["relay-a", "relay-b"]);
    assert_eq!(view[0], report("relay-a", &["demo"]).with_time(view[0].reported_at_ms), "a report survives the round trip");

    // b stops reporting (a kill -9): gone after its ttl, a keeps reporting and stays.
    let t0 = Instant::now();
    loop {
        a.publish(&report("relay-a", &["demo"]), ttl, now_ms()).await.expect("publish a");
        let view = usher.snapshot(now_ms()).await.expect("snapshot");
        if ids(&view) == vec!["relay-a"] {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "relay-b did not expire: {:?}", ids(&view));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expired_after = t0.elapsed();
    assert!(expired_after >= Duration::from_millis(500), "expired too early: {expired_after:?}");
    eprintln!("a silent node left the registry {} ms after its last report (ttl {} ms)", expired_after.as_millis(), ttl.as_millis());

    // A graceful stop withdraws at once.
    a.withdraw("relay-a").await.expect("withdraw");
    assert!(usher.snapshot(now_ms()).await.expect("snapshot").is_empty());

    // Redis goes down: operations fail within about the command timeout, never hang.
    a.publish(&report("relay-a", &["demo"]), ttl, now_ms()).await.expect("publish a");
    drop(redis);
    let t = Instant::now();
    assert!(a.publish(&report("relay-a", &["demo"]), ttl, now_ms()).await.is_err());
    assert!(usher.snapshot(now_ms()).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(5), "failures took {:?}", t.elapsed());

    // Redis comes back empty (no persistence): the next reports register again, same connections.
    let redis = RedisServer::start_on(port, None);
    let t = Instant::now();
    loop {
        let _ = a.publish(&report("relay-a", &["demo"]), ttl, now_ms()).await;
        let _ = b.publish(&report("relay-b", &[]), ttl, now_ms()).await;
        if let Ok(view) = usher.snapshot(now_ms()).await {
            if ids(&view) == vec!["relay-a", "relay-b"] {
                break;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(10), "nodes did not re-register after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("after a Redis restart, both nodes were registered again {} ms later", t.elapsed().as_millis());
    drop(redis);
}

#[tokio::test]
async fn a_password_protected_redis() {
    let port = free_port();
    let redis = RedisServer::start_on(port, Some("s3cret"));
    let wrong = Registry::redis(&format!("redis://:nope@127.0.0.1:{port}")).expect("url");
    let err = wrong.publish(&report("x", &[]), Duration::from_secs(1), now_ms()).await.expect_err("wrong password");
    assert!(!err.to_string().contains("nope"), "{err}");
    let right = Registry::redis(&format!("redis://:s3cret@127.0.0.1:{port}")).expect("url");
    right.publish(&report("x", &[]), Duration::from_secs(5), now_ms()).await.expect("publish");
    assert_eq!(ids(&right.snapshot(now_ms()).await.expect("snapshot")), vec!["x"]);
    assert!(!right.describe().contains("s3cret"));
    drop(redis);
}

trait WithTime {
    fn with_time(self, t: u64) -> Self;
}

impl WithTime for NodeReport {
    fn with_time(mut self, t: u64) -> Self {
        self.reported_at_ms = t;
        self
    }
}

#[tokio::test]
async fn publish_leases_are_exclusive_expire_and_bump_the_epoch() {
    let redis = RedisServer::start();
    let (a, b) = (Registry::redis(&redis.url()).expect("a"), Registry::redis(&redis.url()).expect("b"));
    let ttl = Duration::from_millis(600);
    let Lease::Held(e1) = a.acquire("demo", "origin-a", ttl).await.expect("a") else { panic!("a must get the lease") };
    assert_eq!(a.acquire("demo", "origin-a", ttl).await.expect("a again"), Lease::Held(e1), "a holder keeps its epoch");
    assert_eq!(b.acquire("demo", "origin-b", ttl).await.expect("b"), Lease::HeldBy("origin-a".into()));
    // Renewed, it outlives its ttl; b stays refused.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(a.renew("demo", "origin-a", e1, ttl).await.expect("renew"));
    }
    assert_eq!(b.acquire("demo", "origin-b", ttl).await.expect("b"), Lease::HeldBy("origin-a".into()));
    // a stops renewing (a kill -9): b gets it after the ttl, with a higher epoch; a's renewal fails.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let Lease::Held(e2) = b.acquire("demo", "origin-b", ttl).await.expect("b") else { panic!("b must get the expired lease") };
    assert!(e2 > e1);
    assert!(!a.renew("demo", "origin-a", e1, ttl).await.expect("renew"), "a stale holder cannot renew");
    // A release by a stale holder does nothing; b's own release frees the key at once.
    a.release("demo", "origin-a", e1).await.expect("release");
    assert_eq!(a.acquire("demo", "origin-a", ttl).await.expect("a"), Lease::HeldBy("origin-b".into()));
    b.release("demo", "origin-b", e2).await.expect("release");
    let Lease::Held(e3) = a.acquire("demo", "origin-a", ttl).await.expect("a") else { panic!("released") };
    assert!(e3 > e2);
    // Other channels are independent.
    assert!(matches!(b.acquire("other", "origin-b", ttl).await.expect("other"), Lease::Held(_)));
}

#[tokio::test]
async fn a_registry_over_tls() {
    let dir = std::env::temp_dir().join(format!("onair-redis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let redis = RedisServer::start_tls(&dir);
    // Self-signed here: `#insecure` skips verification (a real deployment's certificate chains to
    // the system trust store and needs no fragment).
    let r = Registry::redis(&format!("rediss://127.0.0.1:{}/#insecure", redis.port)).expect("url");
    r.publish(&report("tls-node", &["demo"]), Duration::from_secs(5), now_ms()).await.expect("publish over TLS");
    assert_eq!(ids(&r.snapshot(now_ms()).await.expect("snapshot over TLS")), vec!["tls-node"]);
    // Plain TCP to the TLS port fails rather than hangs.
    let plain = Registry::redis(&format!("redis://127.0.0.1:{}", redis.port)).expect("url");
    assert!(plain.publish(&report("x", &[]), Duration::from_secs(1), now_ms()).await.is_err());
    // Verification on: the self-signed certificate is refused.
    let strict = Registry::redis(&format!("rediss://127.0.0.1:{}", redis.port)).expect("url");
    assert!(strict.publish(&report("x", &[]), Duration::from_secs(1), now_ms()).await.is_err(), "an untrusted certificate was accepted");
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}
