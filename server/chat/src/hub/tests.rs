use super::*;

async fn hub(config: ChatConfig) -> (Chat, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = onair_db::Database::open(None, dir.path()).await.expect("db");
    (Chat::new(config, b"test secret", ChatStore::new(db)), dir)
}

fn viewer(n: usize) -> Identity {
    Identity { subject: format!("s{n}"), name: format!("user_{n}"), role: Role::Viewer }
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, n])
}

/// The frames queued so far, parsed.
fn drain(rx: &mut mpsc::Receiver<Utf8Bytes>) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while let Ok(f) = rx.try_recv() {
        out.push(serde_json::from_str(f.as_str()).expect("json"));
    }
    out
}

fn texts(frames: &[serde_json::Value]) -> Vec<String> {
    frames.iter().filter(|f| f["type"] == "message").map(|f| f["text"].as_str().unwrap_or_default().to_string()).collect()
}

#[tokio::test]
async fn rooms_of_200_messages_stay_in_their_room_and_the_broadcaster_reaches_all() {
    let (chat, _dir) = hub(ChatConfig::default()).await;
    let mut members = Vec::new();
    for n in 0..600 {
        members.push(chat.join("demo", viewer(n), ip((n % 250) as u8), None).await.expect("join"));
    }
    assert_eq!(chat.rooms("demo"), vec![(1, 200), (2, 200), (3, 200)]);
    let welcome = drain(&mut members[599].1);
    assert_eq!((welcome[0]["type"].as_str(), welcome[0]["room"].as_u64(), welcome[0]["members"].as_u64()), (Some("welcome"), Some(3), Some(200)));
    for m in &mut members {
        drain(&mut m.1);
    }
    members[250].0.send("hello room 2").expect("send");
    let got: Vec<usize> = members.iter_mut().map(|m| texts(&drain(&mut m.1)).len()).collect();
    assert_eq!(got.iter().sum::<usize>(), 200);
    assert!(got[200..400].iter().all(|&n| n == 1), "every member of room 2 got it");
    let broadcaster = Identity { subject: "mod:b".into(), name: "demo".into(), role: Role::Broadcaster };
    let (b, mut b_rx) = chat.join("demo", broadcaster, ip(1), None).await.expect("join");
    b.send("hello everyone").expect("send");
    assert!(members.iter_mut().all(|m| texts(&drain(&mut m.1)) == ["hello everyone"]));
    assert_eq!(texts(&drain(&mut b_rx)), ["hello everyone"]);
    // A joiner later sees both in its room's history.
    drop(members.pop());
    let (_, mut late) = chat.join("demo", viewer(1000), ip(9), None).await.expect("join");
    let history = drain(&mut late)[0]["history"].as_array().cloned().unwrap_or_default();
    assert_eq!(history.iter().map(|m| m["text"].as_str().unwrap_or_default()).collect::<Vec<_>>(), ["hello everyone"]);
}

#[tokio::test]
async fn a_flooding_viewer_is_rate_limited_and_others_are_not() {
    let (chat, _dir) = hub(ChatConfig::default()).await;
    let (flood, _f) = chat.join("demo", viewer(1), ip(1), None).await.expect("join");
    let (calm, _c) = chat.join("demo", viewer(2), ip(2), None).await.expect("join");
    let results: Vec<_> = (0..30).map(|i| flood.send(&format!("spam {i}"))).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 20, "Twitch's 20 per 30 s");
    let refused = results.iter().find_map(|r| r.as_ref().err()).expect("refusals");
    assert_eq!(refused.code, ErrorCode::RateLimited);
    assert!(refused.retry_after_ms.is_some_and(|ms| ms > 0 && ms <= 1500), "{refused:?}");
    assert!(calm.send("still here").is_ok());
    // Too long, empty.
    assert_eq!(calm.send(&"x".repeat(501)).map_err(|e| e.code), Err(ErrorCode::TooLong));
    assert_eq!(calm.send("\r\n").map_err(|e| e.code), Err(ErrorCode::Empty));
    // Viewers cannot moderate.
    assert_eq!(calm.slow(5).map_err(|e| e.code), Err(ErrorCode::Forbidden));
}

#[tokio::test]
async fn slow_mode_spaces_a_viewers_messages() {
    let (chat, _dir) = hub(ChatConfig::default()).await;
    let (m, _m) = chat.join("demo", Identity { subject: "mod:m".into(), name: "anna".into(), role: Role::Moderator }, ip(1), None).await.expect("join");
    let (v, mut rx) = chat.join("demo", viewer(1), ip(2), None).await.expect("join");
    m.slow(30).expect("slow");
    assert!(drain(&mut rx).iter().any(|f| f["type"] == "slow" && f["seconds"] == 30));
    v.send("one").expect("first");
    let second = v.send("two").expect_err("slow mode");
    assert_eq!(second.code, ErrorCode::SlowMode);
    assert!(second.retry_after_ms.is_some_and(|ms| ms > 29_000));
    // Moderators are not slowed.
    m.send("a").expect("mod");
    m.send("b").expect("mod");
}

#[tokio::test]
async fn a_ban_reaches_every_room_closes_the_user_and_holds_against_its_address() {
    let config = ChatConfig { room_size: 2, ..ChatConfig::default() };
    let (chat, _dir) = hub(config).await;
    let moderator = Identity { subject: "mod:m".into(), name: "anna".into(), role: Role::Moderator };
    let (m, mut m_rx) = chat.join("demo", moderator, ip(1), None).await.expect("join");
    let mut others = Vec::new();
    for n in 2..6 {
        others.push(chat.join("demo", viewer(n), ip(n as u8), None).await.expect("join"));
    }
    let (troll, mut troll_rx) = chat.join("demo", viewer(9), ip(9), None).await.expect("join");
    assert_eq!(chat.rooms("demo").len(), 3);
    troll.send("bad words").expect("send");
    let id = drain(&mut troll_rx).iter().find(|f| f["type"] == "message").map(|f| f["id"].as_str().unwrap_or_default().to_string()).expect("id");
    m.delete(&id).expect("delete");
    assert_eq!(m.delete(&id).map_err(|e| e.code), Err(ErrorCode::NotFound));
    m.ban("USER_9", None).await.expect("ban");
    assert_eq!(troll.kicked().await, Close::Banned);
    for (_, rx) in &mut others {
        let frames = drain(rx);
        assert!(frames.iter().any(|f| f["type"] == "deleted" && f["id"] == id.as_str()));
        assert!(frames.iter().any(|f| f["type"] == "moderation" && f["action"] == "ban" && f["user"] == "user_9"), "{frames:?}");
    }
    drain(&mut m_rx);
    drop(troll);
    // The same subject, or another subject from the same address, cannot come back.
    assert!(matches!(chat.join("demo", viewer(9), ip(200), None).await, Err(JoinError::Banned { until_ms: FOREVER })));
    assert!(matches!(chat.join("demo", viewer(10), ip(9), None).await, Err(JoinError::Banned { .. })));
    // The ban is stored: a new hub on the same database refuses too.
    let again = Chat::new(ChatConfig::default(), b"test secret", chat.inner.store.clone());
    assert!(matches!(again.join("demo", viewer(9), ip(1), None).await, Err(JoinError::Banned { .. })));
    // Moderators cannot be banned; unknown users are not found; unban lets it back.
    assert_eq!(m.ban("anna", None).await.map_err(|e| e.code), Err(ErrorCode::Forbidden));
    assert_eq!(m.ban("nobody", Some(60)).await.map_err(|e| e.code), Err(ErrorCode::NotFound));
    m.unban("user_9").await.expect("unban");
    assert!(chat.join("demo", viewer(9), ip(9), None).await.is_ok());
}

#[tokio::test]
async fn a_timed_out_viewer_reads_but_cannot_post() {
    let (chat, _dir) = hub(ChatConfig::default()).await;
    let (m, _m) = chat.join("demo", Identity { subject: "mod:m".into(), name: "anna".into(), role: Role::Moderator }, ip(1), None).await.expect("join");
    let (v, mut rx) = chat.join("demo", viewer(1), ip(2), None).await.expect("join");
    m.ban("user_1", Some(600)).await.expect("timeout");
    let e = v.send("let me talk").expect_err("timed out");
    assert_eq!(e.code, ErrorCode::TimedOut);
    assert!(e.retry_after_ms.is_some_and(|ms| ms > 599_000));
    m.send("still readable").expect("send");
    assert!(texts(&drain(&mut rx)).contains(&"still readable".to_string()));
    assert_eq!(m.ban("user_1", Some(0)).await.map_err(|e| e.code), Err(ErrorCode::BadMessage));
}

#[tokio::test]
async fn a_member_that_never_reads_is_dropped_and_the_room_goes_on() {
    let config = ChatConfig { send_queue: 8, user_messages: 1000, room_messages_per_s: 1000, ..ChatConfig::default() };
    let (chat, _dir) = hub(config).await;
    let (_stuck, stuck_rx) = chat.join("demo", viewer(1), ip(1), None).await.expect("join");
    let (talker, mut rx) = chat.join("demo", viewer(2), ip(2), None).await.expect("join");
    for i in 0..20 {
        talker.send(&format!("m{i}")).expect("send");
        drain(&mut rx);
    }
    assert_eq!(_stuck.kicked().await, Close::SlowConsumer);
    assert_eq!(chat.rooms("demo"), vec![(1, 1)], "the stuck member left the room");
    assert!(stuck_rx.len() <= 8, "its queue stayed bounded");
}

#[tokio::test]
async fn names_cannot_be_shared_or_taken_from_moderators() {
    let (chat, _dir) = hub(ChatConfig::default()).await;
    let (_a, _) = chat.join("demo", viewer(1), ip(1), None).await.expect("join");
    let impostor = Identity { subject: "other".into(), name: "USER_1".into(), role: Role::Viewer };
    assert!(matches!(chat.join("demo", impostor, ip(2), None).await, Err(JoinError::NameInUse)));
    // The same subject on a second tab is fine.
    assert!(chat.join("demo", viewer(1), ip(1), None).await.is_ok());
    chat.inner.store.create_moderator("other", "anna", Role::Moderator, 0).await.expect("moderator");
    let fake = Identity { subject: "x".into(), name: "Anna".into(), role: Role::Viewer };
    assert!(matches!(chat.join("other", fake, ip(3), None).await, Err(JoinError::NameInUse)));
}

#[tokio::test]
async fn connections_are_capped() {
    let (chat, _dir) = hub(ChatConfig { max_connections: 2, ..ChatConfig::default() }).await;
    let a = chat.join("demo", viewer(1), ip(1), None).await.expect("join");
    let _b = chat.join("demo", viewer(2), ip(1), None).await.expect("join");
    assert!(matches!(chat.join("demo", viewer(3), ip(1), None).await, Err(JoinError::Full)));
    drop(a);
    assert!(chat.join("demo", viewer(3), ip(1), None).await.is_ok());
}

/// A cluster where this node hosts the odd rooms.
#[derive(Debug)]
struct OddRooms;

impl ChatCluster for OddRooms {
    fn hosts_here(&self, _channel: &str, room: u32) -> bool {
        room % 2 == 1
    }

    fn place(&self, _channel: &str, _capacity: usize, requested: Option<u32>) -> Option<(u32, String)> {
        Some((requested.unwrap_or(1), "http://here".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_joins_keep_to_this_nodes_rooms_and_a_room_opens_with_its_history() {
    let redis = onair_test_engines::RedisServer::start();
    let config = ChatConfig { room_size: 2, ..ChatConfig::default() };
    let (chat, _dir) = hub(config.clone()).await;
    let cancel = CancellationToken::new();
    chat.join_cluster(Arc::new(OddRooms), RedisHistory::new(&redis.url(), config.history, cancel.clone()).expect("history"));
    assert!(chat.clustered());
    assert!(matches!(chat.join("demo", viewer(0), ip(1), Some(2)).await, Err(JoinError::Elsewhere)), "room 2 is another node's");
    let mut members = Vec::new();
    for n in 0..3 {
        members.push(chat.join("demo", viewer(n), ip(1), None).await.expect("join"));
    }
    assert_eq!(chat.rooms("demo"), vec![(1, 2), (3, 1)], "room 2 is skipped");
    assert_eq!(chat.hosted().iter().map(|r| (r.room, r.members)).collect::<Vec<_>>(), [(1, 2), (3, 1)]);
    members[2].0.send("kept in redis").expect("send");
    members[2].0.send("deleted later").expect("send");
    let id = drain(&mut members[2].1).iter().filter(|f| f["text"] == "deleted later").map(|f| f["id"].as_str().unwrap_or_default().to_string()).next().expect("id");
    let moderator = Identity { subject: "mod:m".into(), name: "moddy".into(), role: Role::Moderator };
    let (m, _m_rx) = chat.join("demo", moderator, ip(2), None).await.expect("join");
    m.delete(&id).expect("delete");
    // Another node opening room 3 (its host is gone) finds the room's history in Redis.
    let (other, _dir2) = hub(config.clone()).await;
    other.join_cluster(Arc::new(OddRooms), RedisHistory::new(&redis.url(), config.history, cancel.clone()).expect("history"));
    let start = std::time::Instant::now();
    let history = loop {
        let (session, mut rx) = other.join("demo", viewer(9), ip(3), Some(3)).await.expect("join");
        let h: Vec<String> = drain(&mut rx)[0]["history"].as_array().into_iter().flatten().filter_map(|m| m["text"].as_str().map(str::to_string)).collect();
        drop(session);
        if h == ["kept in redis"] || start.elapsed() > Duration::from_secs(5) {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(history, ["kept in redis"], "the deleted message is gone from Redis too");
    cancel.cancel();
}
