//! The IRC gateway (`[chat] irc_addr`, off by default): IRC clients and bots join `#channel` and
//! talk to the same rooms as the WebSocket users, with the subset of IRC Twitch serves.
//!
//! - Registration: `CAP LS [302]`, `CAP REQ :…` (ACK when every one is offered, else NAK),
//!   `CAP END`; `PASS <token>` (a chat token from `GET /api/v1/chat/{channel}/token`, or a
//!   moderator token; `oauth:` before it is accepted, as Twitch bots send it); `NICK`, `USER`.
//!   The nick is the token's name: 001 names it, and a different `NICK` is answered with a NICK
//!   change to it. No or a bad token: `464` and `ERROR`.
//! - `JOIN #channel` (the token's channel; one channel per connection), `PART`, `PRIVMSG #channel
//!   :text` (moderators also `/ban NAME`, `/timeout NAME [SECONDS]`, `/unban NAME`, `/delete ID`,
//!   `/slow [SECONDS]`, `/slowoff`), `PING`/`PONG`, `QUIT`. Numerics: 001–004, 375/372/376, 353/366,
//!   403, 405, 421, 451, 461, 464, 471, 474, 475.
//! - Bounds: lines ≤ 8,704 bytes (IRCv3 tags + 512), registration within 30 s, a frame written
//!   within 10 s, the hub's per-connection queue; the server pings each minute and drops a client
//!   silent for two minutes.
//!
//! Lines are parsed and built with `irc-proto`; [`render`] maps hub frames to lines (sans-IO).

pub mod render;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use irc_proto::{CapSubCommand, Command, Message};
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufWriter, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;

use crate::hub::{Chat, JoinError, Session};
use crate::identity::Identity;
use crate::protocol::ErrorFrame;
use render::{line, prefix, Caps, CAPABILITIES, SERVER};

/// Longest line read, bytes (8,191 of IRCv3 tags and 512 of message).
pub const MAX_LINE: usize = 8704;
const REGISTRATION: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(60);
/// Unparseable lines tolerated before the connection is closed.
const MAX_BAD_LINES: u32 = 10;

/// Accepts IRC connections on `listener` until `cancel`; at most `max_connections` at once.
pub async fn serve(listener: TcpListener, chat: Chat, max_connections: usize, cancel: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "chat irc: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("onair_chat_refused_total", "code" => "irc_full").increment(1);
            let mut stream = stream;
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(b"ERROR :chat server full\r\n")).await;
            continue;
        };
        let (chat, cancel) = (chat.clone(), cancel.clone());
        tokio::spawn(async move {
            metrics::gauge!("onair_chat_irc_connections").increment(1.0);
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = connection(stream, peer.ip(), chat) => {}
            }
            metrics::gauge!("onair_chat_irc_connections").decrement(1.0);
            drop(slot);
        });
    }
}

/// One channel joined.
struct Joined {
    channel: String,
    session: Session,
}

struct Conn {
    out: BufWriter<WriteHalf<TcpStream>>,
    chat: Chat,
    ip: IpAddr,
    caps: Caps,
    negotiating: bool,
    pass: Option<String>,
    nick: Option<String>,
    user: bool,
    /// After registration: the token's channel and identity.
    identity: Option<(String, Identity)>,
    joined: Option<Joined>,
    bad_lines: u32,
}

/// What a command asks of the connection.
enum Next {
    Continue,
    /// Joined: read frames from this queue.
    Frames(mpsc::Receiver<axum::extract::ws::Utf8Bytes>),
    /// Parted: stop reading frames.
    Parted,
    Quit(&'static str),
}

impl Conn {
    fn nick(&self) -> &str {
        self.nick.as_deref().unwrap_or("*")
    }

    async fn write(&mut self, lines: &[String]) -> bool {
        let flush = async {
            for l in lines {
                self.out.write_all(l.as_bytes()).await?;
            }
            self.out.flush().await
        };
        matches!(tokio::time::timeout(WRITE_TIMEOUT, flush).await, Ok(Ok(())))
    }

    async fn reply(&mut self, command: &str, args: &[&str]) -> bool {
        let nick = self.nick().to_string();
        let mut all = vec![nick.as_str()];
        all.extend_from_slice(args);
        match line(vec![], None, command, &all) {
            Some(l) => self.write(&[l]).await,
            None => true,
        }
    }

    async fn handle(&mut self, message: Message) -> Next {
        match message.command {
            Command::CAP(_, sub, arg, more) => {
                self.cap(sub, arg.or(more)).await;
                Next::Continue
            }
            Command::PASS(p) => {
                self.pass = Some(p.strip_prefix("oauth:").unwrap_or(&p).to_string());
                Next::Continue
            }
            Command::NICK(n) => {
                if self.identity.is_none() {
                    self.nick = Some(n);
                    return self.maybe_register().await;
                }
                let name = self.identity.as_ref().map(|(_, i)| i.name.clone()).unwrap_or_default();
                if n != name {
                    // The nick is the token's name.
                    let _ = self.reply("432", &[&n, "your nick is the name of your chat token"]).await;
                }
                Next::Continue
            }
            Command::USER(..) => {
                self.user = true;
                self.maybe_register().await
            }
            Command::PING(server, _) => {
                let pong = line(vec![], None, "PONG", &[SERVER, &server]);
                self.write(&pong.into_iter().collect::<Vec<_>>()).await;
                Next::Continue
            }
            Command::PONG(..) => Next::Continue,
            Command::QUIT(_) => Next::Quit("quit"),
            _ if self.identity.is_none() => {
                let _ = self.reply("451", &["You have not registered"]).await;
                Next::Continue
            }
            Command::JOIN(channels, _, _) => self.join(&channels).await,
            Command::PART(channels, _) => {
                let Some(j) = self.joined.take_if(|j| channels.split(',').any(|c| c.strip_prefix('#') == Some(j.channel.as_str()))) else {
                    let _ = self.reply("442", &[&channels, "You're not on that channel"]).await;
                    return Next::Continue;
                };
                let part = line(vec![], Some(&prefix(self.nick())), "PART", &[&format!("#{}", j.channel)]);
                self.write(&part.into_iter().collect::<Vec<_>>()).await;
                Next::Parted
            }
            Command::PRIVMSG(target, text) => {
                let Some(j) = self.joined.as_ref().filter(|j| target.strip_prefix('#') == Some(j.channel.as_str())) else {
                    let _ = self.reply("404", &[&target, "Cannot send to channel"]).await;
                    return Next::Continue;
                };
                if let Err(e) = command(&j.session, &text).await {
                    j.session.refuse(&e);
                }
                Next::Continue
            }
            other => {
                let name = String::from(&other);
                let verb = name.split(' ').next().unwrap_or_default().to_string();
                let _ = self.reply("421", &[&verb, "Unknown command"]).await;
                Next::Continue
            }
        }
    }

    async fn cap(&mut self, sub: CapSubCommand, arg: Option<String>) {
        let nick = self.nick().to_string();
        let out = match sub {
            CapSubCommand::LS => {
                self.negotiating = true;
                line(vec![], None, "CAP", &[&nick, "LS", &CAPABILITIES.join(" ")])
            }
            CapSubCommand::LIST => {
                let mut on = Vec::new();
                for (cap, enabled) in CAPABILITIES.iter().zip([self.caps.tags, self.caps.time, self.caps.twitch_tags, self.caps.twitch_commands]) {
                    if enabled {
                        on.push(*cap);
                    }
                }
                line(vec![], None, "CAP", &[&nick, "LIST", &on.join(" ")])
            }
            CapSubCommand::REQ => {
                self.negotiating = true;
                let asked = arg.unwrap_or_default();
                let mut caps = self.caps;
                let ok = asked.split_whitespace().all(|c| caps.enable(c));
                if ok {
                    self.caps = caps;
                }
                line(vec![], None, "CAP", &[&nick, if ok { "ACK" } else { "NAK" }, &asked])
            }
            CapSubCommand::END => {
                self.negotiating = false;
                let _ = self.maybe_register().await;
                None
            }
            _ => None,
        };
        if let Some(l) = out {
            self.write(&[l]).await;
        }
    }

    async fn maybe_register(&mut self) -> Next {
        if self.identity.is_some() || self.negotiating || !self.user || self.nick.is_none() {
            return Next::Continue;
        }
        let Some(pass) = self.pass.clone() else {
            let _ = self.reply("464", &["Password required: PASS oauth:CHAT_TOKEN (GET /api/v1/chat/CHANNEL/token)"]).await;
            return Next::Quit("no password");
        };
        let (channel, identity) = match self.chat.identify_any(&pass).await {
            Ok(found) => found,
            Err(_) => {
                metrics::counter!("onair_chat_refused_total", "code" => "irc_unauthorized").increment(1);
                let _ = self.reply("464", &["Login authentication failed"]).await;
                return Next::Quit("bad password");
            }
        };
        let asked = self.nick.clone().unwrap_or_default();
        let mut lines = Vec::new();
        if asked != identity.name {
            lines.extend(line(vec![], Some(&prefix(&asked)), "NICK", &[&identity.name]));
        }
        let name = identity.name.clone();
        self.nick = Some(name.clone());
        let welcome = [
            ("001", format!("Welcome to OnAir chat, {name}")),
            ("002", format!("Your host is {SERVER}")),
            ("003", "This server is OnAir".to_string()),
            ("375", "-".to_string()),
            ("372", format!("You may join #{channel}")),
            ("376", ">".to_string()),
        ];
        for (numeric, text) in welcome {
            lines.extend(line(vec![], None, numeric, &[&name, &text]));
        }
        lines.extend(line(vec![], None, "004", &[&name, SERVER, env!("CARGO_PKG_VERSION"), "o", "o"]));
        self.identity = Some((channel, identity));
        if self.write(&lines).await {
            Next::Continue
        } else {
            Next::Quit("write failed")
        }
    }

    async fn join(&mut self, channels: &str) -> Next {
        let Some((channel, identity)) = self.identity.clone() else { return Next::Continue };
        let wanted: Vec<&str> = channels.split(',').collect();
        if wanted.len() != 1 || self.joined.is_some() {
            let _ = self.reply("405", &[channels, "One channel per connection"]).await;
            return Next::Continue;
        }
        if wanted[0].strip_prefix('#') != Some(channel.as_str()) {
            let _ = self.reply("475", &[wanted[0], "Cannot join channel: your chat token is for another channel"]).await;
            return Next::Continue;
        }
        let target = format!("#{channel}");
        let (session, mut frames) = match self.chat.join(&channel, identity, self.ip, None).await {
            Ok(joined) => joined,
            Err(e) => {
                let (numeric, text) = match e {
                    JoinError::Banned { .. } => ("474", "Cannot join channel: you are banned"),
                    JoinError::Full => ("471", "Cannot join channel: the chat server is full"),
                    JoinError::NameInUse => ("433", "Nickname is already in use"),
                    JoinError::Elsewhere => ("471", "Cannot join channel: no room on this chat server has space; try another server"),
                    _ => ("475", "Cannot join channel"),
                };
                let _ = self.reply(numeric, &[&target, text]).await;
                return Next::Continue;
            }
        };
        let nick = self.nick().to_string();
        let mut lines: Vec<String> = Vec::new();
        lines.extend(line(vec![], Some(&prefix(&nick)), "JOIN", &[&target]));
        lines.extend(line(vec![], None, "353", &[&nick, "=", &target, &nick]));
        lines.extend(line(vec![], None, "366", &[&nick, &target, "End of /NAMES list"]));
        // The welcome carries the room's history: replayed as PRIVMSGs (with their server-time).
        if let Ok(welcome) = frames.try_recv() {
            let welcome: Value = serde_json::from_str(welcome.as_str()).unwrap_or_default();
            if self.caps.twitch_commands {
                let slow = welcome["slow_s"].as_u64().unwrap_or(0).to_string();
                lines.extend(line(vec![irc_proto::message::Tag("slow".into(), Some(slow))], None, "ROOMSTATE", &[&target]));
            }
            for m in welcome["history"].as_array().into_iter().flatten() {
                lines.extend(render::privmsg(m, &channel, self.caps));
            }
        }
        self.joined = Some(Joined { channel, session });
        if self.write(&lines).await {
            Next::Frames(frames)
        } else {
            Next::Quit("write failed")
        }
    }
}

/// A PRIVMSG's text: a moderation command (`/ban`, `/timeout`, `/unban`, `/delete`, `/slow`,
/// `/slowoff`, also with `.`) or a message.
async fn command(session: &Session, text: &str) -> Result<(), ErrorFrame> {
    let mut words = text.split_whitespace();
    let verb = words.next().unwrap_or_default();
    let verb = verb.strip_prefix('/').or_else(|| verb.strip_prefix('.'));
    let (first, second) = (words.next(), words.next());
    match (verb, first) {
        (Some("ban"), Some(user)) => session.ban(user, None).await,
        (Some("timeout"), Some(user)) => session.ban(user, Some(second.and_then(|s| s.parse().ok()).unwrap_or(600))).await,
        (Some("unban" | "untimeout"), Some(user)) => session.unban(user).await,
        (Some("delete"), Some(id)) => session.delete(id),
        (Some("slow"), seconds) => session.slow(seconds.and_then(|s| s.parse().ok()).unwrap_or(30)),
        (Some("slowoff"), _) => session.slow(0),
        _ => session.send(text),
    }
}

async fn next_frame(frames: &mut Option<mpsc::Receiver<axum::extract::ws::Utf8Bytes>>) -> Option<axum::extract::ws::Utf8Bytes> {
    match frames {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn kicked(joined: &Option<Joined>) -> crate::protocol::Close {
    match joined {
        Some(j) => j.session.kicked().await,
        None => std::future::pending().await,
    }
}

async fn connection(stream: TcpStream, ip: IpAddr, chat: Chat) {
    let (read, write) = tokio::io::split(stream);
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_LINE));
    let mut conn = Conn {
        out: BufWriter::new(write),
        chat,
        ip,
        caps: Caps::default(),
        negotiating: false,
        pass: None,
        nick: None,
        user: false,
        identity: None,
        joined: None,
        bad_lines: 0,
    };
    let mut frames = None;
    let registration = tokio::time::sleep(REGISTRATION);
    tokio::pin!(registration);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut silent = 0u32;
    let reason: &str = loop {
        tokio::select! {
            close = kicked(&conn.joined) => {
                break close.reason();
            }
            frame = next_frame(&mut frames) => {
                let Some(frame) = frame else { break "dropped" };
                let (Some(j), Ok(value)) = (conn.joined.as_ref(), serde_json::from_str::<Value>(frame.as_str())) else { continue };
                let out = render::frame(&value, &j.channel, conn.nick(), conn.caps);
                if !conn.write(&out).await {
                    break "write timeout";
                }
            }
            _ = &mut registration, if conn.identity.is_none() => break "registration timeout",
            _ = ping.tick() => {
                silent += 1;
                if silent > 2 {
                    break "ping timeout";
                }
                let ping = line(vec![], None, "PING", &[SERVER]);
                conn.write(&ping.into_iter().collect::<Vec<_>>()).await;
            }
            read = lines.next() => {
                silent = 0;
                let text = match read {
                    Some(Ok(t)) => t,
                    Some(Err(_)) => {
                        metrics::counter!("onair_chat_bad_frames_total", "kind" => "irc_line").increment(1);
                        break "line too long";
                    }
                    None => break "closed",
                };
                if text.is_empty() {
                    continue;
                }
                let message = match text.parse::<Message>() {
                    Ok(m) => m,
                    Err(_) => {
                        metrics::counter!("onair_chat_bad_frames_total", "kind" => "irc_parse").increment(1);
                        conn.bad_lines += 1;
                        if conn.bad_lines > MAX_BAD_LINES {
                            break "too many bad lines";
                        }
                        let _ = conn.reply("421", &["*", "Unparseable line"]).await;
                        continue;
                    }
                };
                match conn.handle(message).await {
                    Next::Continue => {}
                    Next::Frames(rx) => frames = Some(rx),
                    Next::Parted => frames = None,
                    Next::Quit(why) => break why,
                }
            }
        }
    };
    tracing::debug!(%ip, nick = conn.nick(), reason, "chat irc: closing");
    let error = line(vec![], None, "ERROR", &[&format!("Closing link: {reason}")]);
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.write(&error.into_iter().collect::<Vec<_>>())).await;
}
