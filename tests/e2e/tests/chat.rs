//! Chat on a real `onair serve` process, with WebSocket clients from `tokio-tungstenite` (a
//! client nobody here wrote) connecting from many loopback addresses (127.0.0.N), as many users
//! behind many addresses would.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, ServerProcess};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

/// One connected chat user: its send half, and every frame and the close code it received
/// (read by a task of its own).
struct Client {
    tx: SplitSink<Ws, Message>,
    frames: Arc<Mutex<Vec<Value>>>,
    closed: Arc<Mutex<Option<u16>>>,
    room: u64,
    name: String,
}

impl Client {
    async fn send(&mut self, frame: Value) {
        self.tx.send(Message::Text(frame.to_string().into())).await.expect("send");
    }

    fn frames(&self) -> Vec<Value> {
        self.frames.lock().expect("frames").clone()
    }

    /// The texts of the `message` frames it received.
    fn texts(&self) -> Vec<String> {
        self.frames().iter().filter(|f| f["type"] == "message").filter_map(|f| f["text"].as_str().map(str::to_string)).collect()
    }

    fn close_code(&self) -> Option<u16> {
        *self.closed.lock().expect("closed")
    }
}

/// Loopback address number `n` (127.0.0.2 …).
fn addr(n: usize) -> IpAddr {
    IpAddr::from([127, 0, (2 + n / 250) as u8, (2 + n % 250) as u8])
}

/// A chat token for `channel` fetched from `from`.
async fn token(base: &str, channel: &str, from: IpAddr) -> Value {
    let http = reqwest::Client::builder().local_address(from).build().expect("client");
    let r = http.get(format!("{base}/api/v1/chat/{channel}/token")).send().await.expect("token request");
    assert_eq!(r.status(), 200, "token from {from}");
    serde_json::from_str(&r.text().await.expect("body")).expect("json")
}

/// A WebSocket to the chat of `channel` from `from` (with a small receive buffer when given).
async fn connect(port: u16, channel: &str, token: &str, from: IpAddr, room: Option<u32>, rcvbuf: Option<u32>) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    let tcp = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.expect("connect");
    let room = room.map(|r| format!("&room={r}")).unwrap_or_default();
    let url = format!("ws://127.0.0.1:{port}/api/v1/chat/{channel}?token={token}{room}");
    tokio_tungstenite::client_async(url, tcp).await.expect("websocket handshake").0
}

/// Connects and reads the `welcome`; then reads every frame into the client.
async fn join(port: u16, channel: &str, token: &str, from: IpAddr) -> Client {
    match join_room(port, channel, token, from, None).await {
        Ok((client, _)) => client,
        Err(refusal) => panic!("no welcome: {refusal}"),
    }
}

/// Connects (asking for `room`) and reads the `welcome`, then every frame into the client;
/// returns the client and its welcome, or the refusal (the error frame and close code).
async fn join_room(port: u16, channel: &str, token: &str, from: IpAddr, room: Option<u32>) -> Result<(Client, Value), String> {
    let mut ws = connect(port, channel, token, from, room, None).await;
    let welcome = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(&t).expect("json"),
        other => return Err(format!("{other:?}")),
    };
    if welcome["type"] != "welcome" {
        let (_, code) = refused(ws).await;
        return Err(format!("{welcome} (close {code:?})"));
    }
    let (tx, mut rx) = ws.split();
    let frames = Arc::new(Mutex::new(Vec::new()));
    let closed = Arc::new(Mutex::new(None));
    let (f, c) = (frames.clone(), closed.clone());
    tokio::spawn(async move {
        while let Some(message) = rx.next().await {
            match message {
                Ok(Message::Text(t)) => f.lock().expect("frames").push(serde_json::from_str(&t).expect("json")),
                Ok(Message::Close(frame)) => {
                    *c.lock().expect("closed") = Some(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(_) => {}
                // The connection was cut (the node died): 1006, as a browser reports it.
                Err(_) => {
                    *c.lock().expect("closed") = Some(1006);
                    break;
                }
            }
        }
    });
    let client = Client { tx, frames, closed, room: welcome["room"].as_u64().unwrap_or(0), name: welcome["user"]["name"].as_str().unwrap_or_default().to_string() };
    Ok((client, welcome))
}

/// Waits (≤ `limit`) until `done` holds.
async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// Waits (≤ `limit`) until the node's metric `series` is `value`; returns its last value.
async fn until_metric(node: &ServerProcess, series: &str, value: f64, limit: Duration) -> f64 {
    let start = Instant::now();
    loop {
        let v = node.metric(series).await;
        if v == value || start.elapsed() > limit {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first frame and the close code a refused connection gets.
async fn refused(mut ws: Ws) -> (Value, Option<u16>) {
    let mut first = Value::Null;
    let mut code = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        match m {
            Message::Text(t) if first.is_null() => first = serde_json::from_str(&t).expect("json"),
            Message::Close(f) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    (first, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_users_in_three_rooms_with_a_broadcaster_a_flood_and_a_ban() {
    let node = ServerProcess::start(free_port(), "");
    let broadcaster_token = node.chat_moderator("demo", None);
    let moderator_token = node.chat_moderator("demo", Some("mod_anna"));
    let (base, port) = (node.base_url(), node.http_port);

    // 600 viewers, ten per address (under the 30 tokens per minute an address may get).
    let started = Instant::now();
    let mut users = Vec::new();
    for n in 0..600 {
        let from = addr(n / 10);
        let t = token(&base, "demo", from).await;
        users.push(join(port, "demo", t["token"].as_str().expect("token"), from).await);
    }
    let mut rooms: BTreeMap<u64, usize> = BTreeMap::new();
    for u in &users {
        *rooms.entry(u.room).or_default() += 1;
    }
    println!("600 users joined in {:.1} s: rooms {rooms:?}", started.elapsed().as_secs_f64());
    assert_eq!(rooms, BTreeMap::from([(1, 200), (2, 200), (3, 200)]));
    // Member counts are announced (every 2 s).
    assert!(until(Duration::from_secs(10), || users[0].frames().iter().any(|f| f["type"] == "members" && f["count"] == 200 && f["channel"] == 600)).await);

    // A viewer's message reaches exactly its room (itself included).
    let speaker = users.iter().position(|u| u.room == 2).expect("someone in room 2");
    users[speaker].send(json!({"type": "send", "text": "hello room 2"})).await;
    let room2 = |users: &[Client]| users.iter().filter(|u| u.texts().contains(&"hello room 2".to_string())).count();
    assert!(until(Duration::from_secs(10), || room2(&users) == 200).await, "delivered to {} users", room2(&users));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(users.iter().all(|u| u.texts().contains(&"hello room 2".to_string()) == (u.room == 2)), "only room 2 got it");

    // The broadcaster's message reaches every room.
    let mut broadcaster = join(port, "demo", &broadcaster_token, addr(100)).await;
    assert_eq!(broadcaster.name, "demo");
    broadcaster.send(json!({"type": "send", "text": "hello everyone"})).await;
    let everyone = |users: &[Client]| users.iter().filter(|u| u.texts().contains(&"hello everyone".to_string())).count();
    assert!(until(Duration::from_secs(10), || everyone(&users) == 600).await, "delivered to {}", everyone(&users));
    let with_role = users[0].frames().into_iter().find(|f| f["text"] == "hello everyone").expect("frame");
    assert_eq!((with_role["role"].as_str(), with_role.get("room")), (Some("broadcaster"), None));

    // A flooding viewer is rate limited (20 per 30 s); a viewer in another room is unaffected.
    let flooder = users.iter().position(|u| u.room == 1).expect("room 1");
    let calm = users.iter().position(|u| u.room == 3).expect("room 3");
    for i in 0..40 {
        users[flooder].send(json!({"type": "send", "text": format!("flood {i}")})).await;
    }
    users[calm].send(json!({"type": "send", "text": "calm in room 3"})).await;
    let limited = |u: &Client| u.frames().iter().filter(|f| f["type"] == "error" && f["code"] == "rate_limited").count();
    assert!(until(Duration::from_secs(10), || limited(&users[flooder]) == 20).await, "{} refusals", limited(&users[flooder]));
    let floods = |u: &Client| u.texts().iter().filter(|t| t.starts_with("flood ")).count();
    assert!(until(Duration::from_secs(10), || users.iter().filter(|u| u.room == 1).all(|u| floods(u) == 20)).await);
    assert!(until(Duration::from_secs(10), || users.iter().filter(|u| u.room == 3).all(|u| u.texts().contains(&"calm in room 3".to_string()))).await);
    assert_eq!(limited(&users[calm]), 0);

    // A moderator bans the flooder: every room is told, the flooder is closed with 4003 and
    // cannot come back, neither with a new token from its address.
    let mut moderator = join(port, "demo", &moderator_token, addr(101)).await;
    let banned = users[flooder].name.clone();
    moderator.send(json!({"type": "ban", "user": banned})).await;
    assert!(until(Duration::from_secs(10), || users[flooder].close_code() == Some(4003)).await, "close {:?}", users[flooder].close_code());
    let told = |users: &[Client]| users.iter().filter(|u| u.frames().iter().any(|f| f["type"] == "moderation" && f["action"] == "ban" && f["user"] == banned.as_str())).count();
    assert!(until(Duration::from_secs(10), || told(&users) == 599).await, "told {}", told(&users));
    let again = token(&base, "demo", addr(flooder / 10)).await;
    let (frame, code) = refused(connect(port, "demo", again["token"].as_str().expect("token"), addr(flooder / 10), None, None).await).await;
    assert_eq!((frame["code"].as_str(), code), (Some("banned"), Some(4003)));
    // A viewer cannot moderate; a bad frame closes with 1007; an invalid token with 4001.
    users[calm].send(json!({"type": "ban", "user": "mod_anna"})).await;
    assert!(until(Duration::from_secs(5), || users[calm].frames().iter().any(|f| f["code"] == "forbidden")).await);
    users[calm].tx.send(Message::Text("not json".into())).await.expect("send");
    assert!(until(Duration::from_secs(5), || users[calm].close_code() == Some(1007)).await, "{:?}", users[calm].close_code());
    let (frame, code) = refused(connect(port, "demo", "forged", addr(102), None, None).await).await;
    assert_eq!((frame["code"].as_str(), code), (Some("unauthorized"), Some(4001)));
    // The banned user's connection and the closed one are gone from the server's count.
    assert!(node.metric("onair_chat_moderation_total{action=\"ban\"}").await >= 1.0);
    assert_eq!(until_metric(&node, "onair_chat_connections", 600.0, Duration::from_secs(10)).await, 600.0);
    drop(users);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_without_growing_the_servers_memory() {
    let node = ServerProcess::start(free_port(), "[chat]\nuser_messages = 1000000\nroom_messages_per_s = 1000000\nsend_queue = 256\n");
    let (base, port) = (node.base_url(), node.http_port);
    // The stuck client: a 4 KiB receive buffer (loopback buffers would otherwise absorb megabytes),
    // and it never reads after the handshake.
    let t = token(&base, "demo", addr(0)).await;
    let stuck = connect(port, "demo", t["token"].as_str().expect("token"), addr(0), None, Some(4096)).await;
    let t = token(&base, "demo", addr(1)).await;
    let mut talker = join(port, "demo", t["token"].as_str().expect("token"), addr(1)).await;
    assert_eq!(until_metric(&node, "onair_chat_connections", 2.0, Duration::from_secs(10)).await, 2.0);
    let before = node.rss_bytes();
    let text = "x".repeat(480);
    let started = Instant::now();
    let mut sent = 0usize;
    // ~20 MB of frames to the stuck client, far more than its queue (256 frames) and buffers.
    while sent < 40_000 {
        talker.send(json!({"type": "send", "text": text})).await;
        sent += 1;
        if sent.is_multiple_of(1000) {
            // Keep pace with what the talker itself receives.
            let seen = talker.texts().len();
            assert!(until(Duration::from_secs(30), || talker.texts().len() + 2000 > sent).await, "talker fell behind: {seen} of {sent}");
        }
    }
    assert!(until(Duration::from_secs(30), || talker.texts().len() == sent).await, "the talker got {} of {sent}", talker.texts().len());
    let dropped = node.metric("onair_chat_dropped_total{reason=\"slow_consumer\"}").await;
    let after = node.rss_bytes();
    println!(
        "{sent} frames ({:.1} MB) in {:.1} s; the never-reading client dropped: {dropped}; server RSS {:.1} MB -> {:.1} MB",
        (sent * (text.len() + 90)) as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        before as f64 / 1e6,
        after as f64 / 1e6
    );
    assert_eq!(dropped, 1.0, "the never-reading client is dropped");
    assert_eq!(until_metric(&node, "onair_chat_connections", 1.0, Duration::from_secs(10)).await, 1.0);
    assert!(talker.close_code().is_none(), "the reading client stays");
    assert!(after < before + 16 * 1024 * 1024, "server memory grew {} bytes", after.saturating_sub(before));
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_irc_bot_and_websocket_users_share_a_room() {
    let irc_port = free_port();
    let node = ServerProcess::start(free_port(), &format!("[chat]\nirc_addr = \"127.0.0.1:{irc_port}\"\n"));
    let (base, port) = (node.base_url(), node.http_port);
    let t = token(&base, "demo", addr(0)).await;
    let mut web = join(port, "demo", t["token"].as_str().expect("token"), addr(0)).await;
    web.send(json!({"type": "send", "text": "hello before irc"})).await;
    assert!(until(Duration::from_secs(5), || web.texts().len() == 1).await);

    // The bot (Python's `irc` package) asks for the name `irc_bot` and connects with `oauth:TOKEN`
    // but NICK `someone_else`: the gateway gives it the token's name.
    let http = reqwest::Client::new();
    let bot: Value = serde_json::from_str(&http.get(format!("{base}/api/v1/chat/demo/token?name=irc_bot")).send().await.expect("token").text().await.expect("body")).expect("json");
    let script = common::repo_root().join("tests/irc/irc_bot.py");
    let args = [irc_port.to_string(), bot["token"].as_str().expect("token").to_string()];
    let run = tokio::process::Command::new("python3")
        .arg(&script)
        .args(["127.0.0.1", &args[0], &args[1], "someone_else", "demo", "hello from irc", "6"])
        .output();
    let bot_run = tokio::spawn(run);
    // The WebSocket user hears the bot, then answers; one answer tries to inject an IRC line.
    assert!(until(Duration::from_secs(15), || web.texts().contains(&"hello from irc".to_string())).await, "{:?}", web.texts());
    let from_bot = web.frames().into_iter().find(|f| f["text"] == "hello from irc").expect("frame");
    assert_eq!((from_bot["user"].as_str(), from_bot["role"].as_str()), (Some("irc_bot"), Some("viewer")));
    web.send(json!({"type": "send", "text": "hi irc; from the web"})).await;
    web.send(json!({"type": "send", "text": "evil\r\nPRIVMSG #demo :injected"})).await;
    let out = bot_run.await.expect("join").expect("python3 (infra/setup.sh test installs the irc package)");
    assert!(out.status.success(), "bot failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    println!("irc bot: {r}");
    assert_eq!(r["nick"], "irc_bot", "the token's name");
    assert_eq!(r["joined"], true);
    assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "{r}");
    let messages = r["messages"].as_array().cloned().unwrap_or_default();
    let texts: Vec<&str> = messages.iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(texts, ["hello before irc", "hi irc; from the web", "evil  PRIVMSG #demo :injected"], "history, then live; no injected line");
    let live = &messages[1];
    assert_eq!(live["nick"], web.name.as_str());
    let tags = &live["tags"];
    assert_eq!(tags["display-name"], web.name.as_str());
    assert!(tags["msgid"].as_str().is_some_and(|id| !id.is_empty()) && tags["msgid"] == tags["id"], "{tags}");
    assert!(tags["time"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')), "server-time: {tags}");
    assert_eq!(tags["room"], "1");
    assert!(messages[0]["tags"]["time"].is_string(), "history keeps its time");
    assert!(node.metric("onair_chat_joins_total").await >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_two_nodes_see_the_broadcaster_and_bans_through_redis() {
    let redis = onair_test_engines::RedisServer::start();
    let node = |port: u16, id: &str| {
        let toml = format!("[playback]\npublic_url = \"http://127.0.0.1:{port}\"\n[chat]\ntoken_secret = \"one secret for the cluster\"\n[cluster]\nreport_interval_ms = 500\n");
        ServerProcess::start_with_args(port, &toml, &["--registry", &redis.url(), "--node-id", id])
    };
    let (a, b) = (node(free_port(), "chat-a"), node(free_port(), "chat-b"));
    let broadcaster_token = a.chat_moderator("demo", None);
    // One viewer on node A, two on node B (each node has its own database).
    let t = token(&a.base_url(), "demo", addr(0)).await;
    let on_a = join(a.http_port, "demo", t["token"].as_str().expect("token"), addr(0)).await;
    let troll_token = token(&b.base_url(), "demo", addr(1)).await["token"].as_str().expect("token").to_string();
    let troll = join(b.http_port, "demo", &troll_token, addr(1)).await;
    let t = token(&b.base_url(), "demo", addr(2)).await;
    let on_b = join(b.http_port, "demo", t["token"].as_str().expect("token"), addr(2)).await;
    let mut broadcaster = join(a.http_port, "demo", &broadcaster_token, addr(3)).await;

    // The broadcaster on A reaches B's room (retried while B's subscription comes up).
    let started = Instant::now();
    let mut n = 0;
    while !on_b.texts().iter().any(|t| t.starts_with("hello both nodes")) && started.elapsed() < Duration::from_secs(15) {
        n += 1;
        broadcaster.send(json!({"type": "send", "text": format!("hello both nodes {n}")})).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let heard = |c: &Client| c.texts().iter().filter(|t| t.starts_with("hello both nodes")).count();
    assert!(heard(&on_b) >= 1, "node B's users hear the broadcaster on A");
    assert!(until(Duration::from_secs(5), || heard(&on_a) == n && heard(&on_b) >= 1 && heard(&troll) >= 1).await);
    let last = format!("hello both nodes {n}");
    assert!(until(Duration::from_secs(5), || on_b.texts().contains(&last)).await);
    // Room messages stay on their node's room.
    assert!(on_b.texts().iter().all(|t| t.starts_with("hello both nodes")));

    // The broadcaster on A bans the troll connected to B: B resolves the name, closes it (4003),
    // and both nodes' users are told; the ban holds on both nodes.
    broadcaster.send(json!({"type": "ban", "user": troll.name})).await;
    assert!(until(Duration::from_secs(10), || troll.close_code() == Some(4003)).await, "troll closed: {:?}", troll.close_code());
    let told = |c: &Client| c.frames().iter().any(|f| f["type"] == "moderation" && f["action"] == "ban" && f["user"] == troll.name.as_str());
    assert!(until(Duration::from_secs(10), || told(&on_a) && told(&on_b)).await, "both nodes told");
    for node in [&b, &a] {
        let (frame, code) = refused(connect(node.http_port, "demo", &troll_token, addr(4), None, None).await).await;
        assert_eq!((frame["code"].as_str(), code), (Some("banned"), Some(4003)), "on {}", node.base_url());
    }
    assert!(a.metric("onair_chat_bus_received_total").await >= 1.0 && b.metric("onair_chat_bus_received_total").await >= 1.0);
}

/// Where `base`'s room API sends a joiner of `channel` (asking for `room`): the room and the HTTP
/// port of the node hosting it.
async fn placed(base: &str, channel: &str, room: Option<u32>) -> Option<(u32, u16)> {
    let ask = room.map(|r| format!("?room={r}")).unwrap_or_default();
    let r = common::client().get(format!("{base}/api/v1/chat/{channel}/room{ask}")).send().await.ok()?;
    assert_eq!(r.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let v: Value = serde_json::from_str(&r.text().await.ok()?).ok()?;
    let ws = url::Url::parse(v["websocket"].as_str()?).ok()?;
    assert_eq!(ws.scheme(), "ws", "{v}");
    assert_eq!(ws.query_pairs().find(|(k, _)| k == "room").map(|(_, r)| r.to_string()), Some(v["room"].to_string()), "{v}");
    Some((v["room"].as_u64()? as u32, ws.port()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_placed_on_nodes_and_keep_their_history_when_their_node_restarts() {
    let redis = onair_test_engines::RedisServer::start();
    let node = |port: u16, id: &str| {
        let toml = format!(
            "[playback]\npublic_url = \"http://127.0.0.1:{port}\"\n[chat]\nroom_size = 3\ntoken_secret = \"one secret for the cluster\"\n\
             [cluster]\nreport_interval_ms = 300\nview_refresh_ms = 250\n"
        );
        ServerProcess::start_with_args(port, &toml, &["--registry", &redis.url(), "--node-id", id])
    };
    let (a, mut b) = (node(free_port(), "chat-a"), node(free_port(), "chat-b"));
    let cluster = |base: String| async move { common::get_text(&format!("{base}/api/v1/cluster")).await.and_then(|t| serde_json::from_str::<Value>(&t).ok()) };
    let started = Instant::now();
    while cluster(a.base_url()).await.and_then(|c| c["nodes"].as_array().map(Vec::len)) != Some(2) {
        assert!(started.elapsed() < Duration::from_secs(15), "node A never saw node B");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Twelve joiners ask node A's room API and connect where it says: four rooms of three,
    // each room on one node, the rooms spread over both nodes.
    let mut clients: Vec<(Client, u16)> = Vec::new();
    for i in 0..12 {
        let (room, port) = placed(&a.base_url(), "demo", None).await.expect("placed");
        let t = token(&a.base_url(), "demo", addr(i)).await;
        let (client, _) = join_room(port, "demo", t["token"].as_str().expect("token"), addr(i), Some(room)).await.expect("joined where placed");
        assert_eq!(client.room, u64::from(room));
        clients.push((client, port));
    }
    let mut rooms: BTreeMap<u64, Vec<u16>> = BTreeMap::new();
    for (c, port) in &clients {
        rooms.entry(c.room).or_default().push(*port);
    }
    println!("rooms and the nodes of their members: {rooms:?} (A {}, B {})", a.http_port, b.http_port);
    assert_eq!(rooms.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(rooms.values().all(|ports| ports.len() == 3 && ports.iter().all(|p| *p == ports[0])), "every room on one node: {rooms:?}");
    let hosts: std::collections::BTreeSet<u16> = rooms.values().map(|p| p[0]).collect();
    assert_eq!(hosts.len(), 2, "rooms on both nodes: {rooms:?}");
    // A node refuses a room another node hosts (close 4010): the client asks again.
    let (room_on_a, _) = rooms.iter().find(|(_, p)| p[0] == a.http_port).expect("a room on A");
    let t = token(&a.base_url(), "demo", addr(40)).await;
    let refusal = join_room(b.http_port, "demo", t["token"].as_str().expect("token"), addr(40), Some(*room_on_a as u32)).await.err().expect("refused");
    assert!(refusal.contains("\"moved\"") && refusal.contains("4010"), "{refusal}");

    // One message per room reaches exactly its room.
    for room in 1..=4u64 {
        let sender = clients.iter_mut().find(|(c, _)| c.room == room).expect("member");
        sender.0.send(json!({"type": "send", "text": format!("hello room {room}")})).await;
    }
    assert!(until(Duration::from_secs(5), || clients.iter().all(|(c, _)| c.texts() == [format!("hello room {}", c.room)])).await, "each room heard its own message only");

    // Node B dies and comes back: its members are cut off, ask node A's room API for their
    // room again and find it — on whichever node hosts it now — with its history.
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.kill_and_restart();
    let moved: Vec<u64> = clients.iter().filter(|(_, p)| *p == b.http_port).map(|(c, _)| c.room).collect();
    assert!(until(Duration::from_secs(5), || clients.iter().filter(|(_, p)| *p == b.http_port).all(|(c, _)| c.close_code().is_some())).await, "B's members were cut off");
    let restarted = Instant::now();
    // (A page asks again after its reconnect delay; by then node A's view has the restarted B's
    // first report, without the rooms it lost: until then those rooms look full.)
    let b_rooms = |c: Option<Value>| c.and_then(|c| c["nodes"].as_array().and_then(|n| n.iter().find(|n| n["info"]["id"] == "chat-b").map(|n| n["chat_rooms"].as_array().map_or(0, Vec::len))));
    while b_rooms(cluster(a.base_url()).await) != Some(0) {
        assert!(restarted.elapsed() < Duration::from_secs(10), "node A never saw the restarted node B");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, room) in moved.iter().enumerate() {
        let t = token(&a.base_url(), "demo", addr(50 + i)).await;
        let welcome = loop {
            assert!(restarted.elapsed() < Duration::from_secs(20), "room {room} not found again");
            if let Some((r, port)) = placed(&a.base_url(), "demo", Some(*room as u32)).await {
                if let Ok((_, welcome)) = join_room(port, "demo", t["token"].as_str().expect("token"), addr(50 + i), Some(r)).await {
                    assert_eq!(u64::from(r), *room);
                    break welcome;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let history: Vec<&str> = welcome["history"].as_array().expect("history").iter().filter_map(|m| m["text"].as_str()).collect();
        assert_eq!(history, [format!("hello room {room}")], "room {room} kept its history");
    }
    println!("B's rooms {moved:?} found again with their history {} ms after the restart", restarted.elapsed().as_millis());
}
