//! Simulated chat users: each fetches a chat token, joins the channel's chat over WebSocket and
//! sends one message every `interval` (at a random phase); every received message's delivery
//! latency is measured from the send time it carries (`t=<Unix ms>`: the same machine's clock).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChatLoad {
    /// The node's base URL, `http://HOST:PORT`.
    pub base: String,
    /// The channel.
    pub channel: String,
    /// Users (connections).
    pub users: usize,
    /// Time between one user's messages.
    pub interval: Duration,
    /// Measured time, after every user joined.
    pub duration: Duration,
    /// Add one client that never reads, with this `SO_RCVBUF` (bytes).
    pub stuck_rcvbuf: Option<u32>,
    /// Characters of padding after each message's send time.
    pub pad: usize,
}

/// What was seen.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ChatReport {
    /// Users that joined.
    pub joined: usize,
    /// Users per room.
    pub rooms: BTreeMap<u64, usize>,
    /// Seconds measured.
    pub seconds: f64,
    /// Messages sent.
    pub sent: u64,
    /// Messages received (every member of the sender's room, the sender included).
    pub delivered: u64,
    /// Deliveries per second.
    pub delivered_per_s: f64,
    /// Delivery latency, ms: p50, p99, max.
    pub p50_ms: f64,
    /// p99.
    pub p99_ms: f64,
    /// max.
    pub max_ms: f64,
    /// Error frames received (rate limits, …).
    pub refused: u64,
    /// Connections closed by the server.
    pub closed: u64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

async fn token(http: &reqwest::Client, base: &str, channel: &str) -> anyhow::Result<String> {
    let text = http.get(format!("{base}/api/v1/chat/{channel}/token")).send().await?.error_for_status()?.text().await?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["token"].as_str().map(str::to_string).ok_or_else(|| anyhow::anyhow!("no token in {text}"))
}

fn ws_url(base: &str, channel: &str, token: &str) -> String {
    format!("{}/api/v1/chat/{channel}?token={token}", base.replacen("http", "ws", 1))
}

/// Runs the load. Errors: a token or a connection that fails while joining.
pub async fn run(load: ChatLoad) -> anyhow::Result<ChatReport> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    // The never-reading client joins first: it lands in the first room, which the others fill.
    let _stuck = match load.stuck_rcvbuf {
        Some(size) => {
            let t = token(&http, &load.base, &load.channel).await?;
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_recv_buffer_size(size)?;
            let addr = load.base.trim_start_matches("http://").parse::<std::net::SocketAddr>()?;
            let tcp = socket.connect(addr).await?;
            Some(tokio_tungstenite::client_async(ws_url(&load.base, &load.channel, &t), tcp).await?.0)
        }
        None => None,
    };
    let mut sockets = Vec::with_capacity(load.users);
    let mut rooms = BTreeMap::new();
    for _ in 0..load.users {
        let t = token(&http, &load.base, &load.channel).await?;
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&load.base, &load.channel, &t)).await?;
        let welcome = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<serde_json::Value>(&t)?,
            other => anyhow::bail!("no welcome: {other:?}"),
        };
        *rooms.entry(welcome["room"].as_u64().unwrap_or(0)).or_insert(0) += 1;
        sockets.push(ws);
    }
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let (sent, delivered, refused, closed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = Instant::now() + Duration::from_millis(500);
    let end = start + load.duration;
    let mut tasks = Vec::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let (mut tx, mut rx) = ws.split();
        let (lat, del, refu, clo, meas) = (latencies.clone(), delivered.clone(), refused.clone(), closed.clone(), measuring.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(m)) = rx.next().await {
                match m {
                    Message::Text(t) => {
                        let Ok(f) = serde_json::from_str::<serde_json::Value>(&t) else { continue };
                        match f["type"].as_str() {
                            Some("message") => {
                                let sent_ms = f["text"].as_str().and_then(|t| t.strip_prefix("t=")).and_then(|t| t.split(' ').next()).and_then(|t| t.parse::<u64>().ok());
                                if let (Some(s), true) = (sent_ms, meas.load(Ordering::Relaxed)) {
                                    del.fetch_add(1, Ordering::Relaxed);
                                    let ms = now_ms().saturating_sub(s) as u32;
                                    lat.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
                                }
                            }
                            Some("error") => {
                                refu.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {}
                        }
                    }
                    Message::Close(_) => {
                        clo.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    _ => {}
                }
            }
        }));
        let (sent, interval, users, pad) = (sent.clone(), load.interval, load.users.max(1), "x".repeat(load.pad));
        tasks.push(tokio::spawn(async move {
            // Spread the users' sends over the interval.
            let phase = interval.mul_f64(i as f64 / users as f64);
            tokio::time::sleep_until((start + phase).into()).await;
            let mut every = tokio::time::interval(interval);
            loop {
                every.tick().await;
                if Instant::now() >= end {
                    break;
                }
                let text = format!("t={} from user {i} {pad}", now_ms());
                let frame = serde_json::json!({"type": "send", "text": text}).to_string();
                if tx.send(Message::Text(frame.into())).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            let _ = tx.close().await;
        }));
    }
    tokio::time::sleep_until(start.into()).await;
    measuring.store(true, Ordering::Relaxed);
    let measured = Instant::now();
    tokio::time::sleep_until((end + Duration::from_secs(2)).into()).await;
    let seconds = measured.elapsed().as_secs_f64() - 2.0;
    measuring.store(false, Ordering::Relaxed);
    for t in &tasks {
        t.abort();
    }
    let mut l = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
    l.sort_unstable();
    let q = |p: f64| l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).copied().unwrap_or(0) as f64;
    let delivered = delivered.load(Ordering::Relaxed);
    Ok(ChatReport {
        joined: load.users,
        rooms,
        seconds,
        sent: sent.load(Ordering::Relaxed),
        delivered,
        delivered_per_s: delivered as f64 / seconds.max(0.001),
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        max_ms: l.last().copied().unwrap_or(0) as f64,
        refused: refused.load(Ordering::Relaxed),
        closed: closed.load(Ordering::Relaxed),
    })
}
