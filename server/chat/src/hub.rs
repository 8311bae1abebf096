//! The chat hub of a node: channels → rooms → members, each member a bounded queue of frames.
//!
//! A frame is serialised once and shared (`Utf8Bytes` is reference-counted) by every member it
//! goes to. Delivery never waits: a member whose queue is full is dropped (close 4008), so a slow
//! client costs itself, never its room. Channel-wide events (broadcaster and moderator messages,
//! deletions, bans, timeouts, slow mode) reach every room of the channel.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::distr::{Alphanumeric, SampleString};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, ChannelEvent, Incoming};
use crate::history::RedisHistory;
use crate::config::ChatConfig;
use crate::identity::{ChatTokens, Identity};
use crate::protocol::{clean_text, ChatMessage, Close, ErrorCode, ErrorFrame, Role, ServerMessage, WelcomeUser};
use crate::store::{Ban, ChatStore, StoreError, FOREVER};

/// Longest timeout a moderator may give: 14 days, as Twitch.
pub const MAX_TIMEOUT_S: u64 = 14 * 24 * 3600;
/// A channel with no members is forgotten (its history with it) this long after its last member left.
const IDLE_CHANNEL: Duration = Duration::from_secs(600);

/// Why a join was refused: the close the connection gets.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// No or an invalid token.
    #[error("missing or invalid chat token")]
    Unauthorized,
    /// Banned or timed out until `until_ms` (Unix ms; [`FOREVER`] for a ban).
    #[error("banned")]
    Banned {
        /// End of the ban.
        until_ms: i64,
    },
    /// Another connected user (or a moderator) has this name.
    #[error("name in use")]
    NameInUse,
    /// The node holds `max_connections`.
    #[error("chat server full")]
    Full,
    /// In a cluster, the room asked for is hosted by another node (or no room this node may
    /// host has space): ask the room API again ([`crate::placement`]).
    #[error("this room is on another chat node: ask for a room again")]
    Elsewhere,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl JoinError {
    /// The close a refused connection gets ([`Close::Unauthorized`] when the database failed:
    /// the client may retry).
    pub fn close(&self) -> Close {
        match self {
            JoinError::Unauthorized | JoinError::Store(_) => Close::Unauthorized,
            JoinError::Banned { .. } => Close::Banned,
            JoinError::NameInUse => Close::NameInUse,
            JoinError::Full => Close::Full,
            JoinError::Elsewhere => Close::Moved,
        }
    }
}

/// The cluster as the chat sees it: where rooms are hosted ([`crate::placement`] over the
/// registry's current view). A node without it (one process) hosts every room.
pub trait ChatCluster: Send + Sync + std::fmt::Debug {
    /// True when `room` of `channel` is (or should be) hosted by this node.
    fn hosts_here(&self, channel: &str, room: u32) -> bool;
    /// Places a joiner of `channel` ([`crate::placement::place`] with rooms of `capacity`): the
    /// room and its host's base URL (`http(s)://…`); `None` when no chat node is known.
    fn place(&self, channel: &str, capacity: usize, requested: Option<u32>) -> Option<(u32, String)>;
}

/// How a member is told to go: the first reason set wins.
#[derive(Debug, Default)]
struct Kick {
    token: CancellationToken,
    reason: OnceLock<Close>,
}

impl Kick {
    fn kick(&self, reason: Close) {
        if self.reason.set(reason).is_ok() {
            metrics::counter!("onair_chat_dropped_total", "reason" => reason.label()).increment(1);
        }
        self.token.cancel();
    }
}

struct Member {
    identity: Identity,
    ip: IpAddr,
    tx: mpsc::Sender<Utf8Bytes>,
    kick: Arc<Kick>,
}

struct Room {
    members: HashMap<u64, Member>,
    history: VecDeque<ChatMessage>,
    limiter: DefaultDirectRateLimiter,
}

#[derive(Default)]
struct ChannelState {
    rooms: BTreeMap<u32, Room>,
    slow_s: u32,
    /// Viewer subject → its last accepted message (slow mode).
    last_post: HashMap<String, Instant>,
    bans: Vec<Ban>,
    moderator_names: Vec<String>,
    /// Lower-case name → (subject, connections).
    names: HashMap<String, (String, usize)>,
    /// Since when no member is connected.
    empty_since: Option<Instant>,
    /// Whether the member counts changed since the last announcement.
    counts_changed: bool,
}

struct Channel {
    name: String,
    state: Mutex<ChannelState>,
    viewers: DefaultKeyedRateLimiter<String>,
    moderators: DefaultKeyedRateLimiter<String>,
}

impl Channel {
    fn lock(&self) -> MutexGuard<'_, ChannelState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Inner {
    config: ChatConfig,
    store: ChatStore,
    tokens: ChatTokens,
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    /// Serialises first loads of a channel's bans (a join storm loads them once).
    loading: tokio::sync::Mutex<()>,
    next_conn: AtomicU64,
    next_message: AtomicU64,
    message_prefix: String,
    connections: AtomicUsize,
    clock: DefaultClock,
    /// Other nodes, in a cluster.
    bus: OnceLock<Bus>,
    /// Which rooms are this node's, in a cluster.
    hosts: OnceLock<Arc<dyn ChatCluster>>,
    /// The rooms' history in Redis, in a cluster.
    history: OnceLock<RedisHistory>,
}

impl Inner {
    /// Keeps `message` in the history of `room` (number `n`) of `channel`, here and in Redis.
    fn remember(&self, channel: &str, n: u32, room: &mut Room, message: ChatMessage) {
        let keep = self.config.history;
        if keep == 0 {
            return;
        }
        if let Some(h) = self.history.get() {
            h.append(channel, n, &message);
        }
        while room.history.len() >= keep {
            room.history.pop_front();
        }
        room.history.push_back(message);
    }

    fn allowed(&self, channel: &str, room: u32) -> bool {
        self.hosts.get().is_none_or(|h| h.hosts_here(channel, room))
    }
}

/// A node's chat. Cheap to clone.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat").field("connections", &self.inner.connections.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn quota(messages: u32, window_s: u64) -> Quota {
    let messages = NonZeroU32::new(messages.max(1)).unwrap_or(NonZeroU32::MIN);
    let period = Duration::from_secs(window_s.max(1)) / messages.get();
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(messages)).allow_burst(messages)
}

fn refusal(code: ErrorCode, message: impl Into<String>, retry_after: Option<Duration>) -> ErrorFrame {
    ErrorFrame { code, message: message.into(), retry_after_ms: retry_after.map(|d| d.as_millis() as u64) }
}

/// Sends `frame` to every member of `room`; drops (close 4008) those whose queue is full and
/// removes them. Returns the deliveries made.
fn deliver(room: &mut Room, frame: &Utf8Bytes) -> u64 {
    let mut delivered = 0;
    room.members.retain(|_, m| match m.tx.try_send(frame.clone()) {
        Ok(()) => {
            delivered += 1;
            true
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            m.kick.kick(Close::SlowConsumer);
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    });
    metrics::counter!("onair_chat_deliveries_total").increment(delivered);
    delivered
}

impl Chat {
    /// A hub with `config`, tokens signed with `secret`, moderators and bans in `store`.
    pub fn new(config: ChatConfig, secret: &[u8], store: ChatStore) -> Chat {
        let tokens = ChatTokens::new(secret, Duration::from_secs(config.token_ttl_s));
        Chat {
            inner: Arc::new(Inner {
                config,
                store,
                tokens,
                channels: Mutex::new(HashMap::new()),
                loading: tokio::sync::Mutex::new(()),
                next_conn: AtomicU64::new(1),
                next_message: AtomicU64::new(1),
                message_prefix: Alphanumeric.sample_string(&mut rand::rng(), 6),
                connections: AtomicUsize::new(0),
                clock: DefaultClock::default(),
                bus: OnceLock::new(),
                hosts: OnceLock::new(),
                history: OnceLock::new(),
            }),
        }
    }

    /// In a cluster: where rooms are hosted, and the rooms' history in Redis. A second call is
    /// ignored.
    pub fn join_cluster(&self, cluster: Arc<dyn ChatCluster>, history: RedisHistory) {
        let _ = self.inner.hosts.set(cluster);
        let _ = self.inner.history.set(history);
    }

    /// True in a cluster (rooms are placed on nodes).
    pub fn clustered(&self) -> bool {
        self.inner.hosts.get().is_some()
    }

    /// In a cluster, the room a joiner of `channel` should join and its host's base URL
    /// ([`ChatCluster::place`]); `None` on a single node (the join places it) or when no chat
    /// node is known.
    pub fn place(&self, channel: &str, requested: Option<u32>) -> Option<(u32, String)> {
        self.inner.hosts.get()?.place(channel, self.inner.config.room_size, requested)
    }

    /// Every room hosted here with members, sorted by (channel, room): what this node reports.
    pub fn hosted(&self) -> Vec<onair_cluster::node::HostedRoom> {
        let channels: Vec<Arc<Channel>> = self.inner.channels.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let mut out: Vec<onair_cluster::node::HostedRoom> = channels
            .iter()
            .flat_map(|ch| {
                let st = ch.lock();
                st.rooms.iter().map(|(n, r)| onair_cluster::node::HostedRoom { channel: ch.name.clone(), room: *n, members: r.members.len() as u64 }).collect::<Vec<_>>()
            })
            .collect();
        out.sort_by(|a, b| a.channel.cmp(&b.channel).then(a.room.cmp(&b.room)));
        out
    }

    /// Its settings.
    pub fn config(&self) -> &ChatConfig {
        &self.inner.config
    }

    /// Its chat tokens.
    pub fn tokens(&self) -> &ChatTokens {
        &self.inner.tokens
    }

    /// Who `token` (a chat token or a moderator token of `channel`) speaks as.
    /// Errors: [`JoinError::Unauthorized`], [`JoinError::Store`].
    pub async fn identify(&self, channel: &str, token: &str) -> Result<Identity, JoinError> {
        match self.identify_any(token).await? {
            (ch, identity) if ch == channel => Ok(identity),
            _ => Err(JoinError::Unauthorized),
        }
    }

    /// The channel `token` (a chat or moderator token) is for, and who it speaks as there.
    /// Errors: [`JoinError::Unauthorized`], [`JoinError::Store`].
    pub async fn identify_any(&self, token: &str) -> Result<(String, Identity), JoinError> {
        if token.starts_with("mod_") {
            return self.inner.store.moderator(token).await?.ok_or(JoinError::Unauthorized);
        }
        self.inner.tokens.verify_any(token).map_err(|_| JoinError::Unauthorized)
    }

    async fn channel(&self, name: &str) -> Result<Arc<Channel>, StoreError> {
        if let Some(c) = self.lookup(name) {
            return Ok(c);
        }
        let _loading = self.inner.loading.lock().await;
        if let Some(c) = self.lookup(name) {
            return Ok(c);
        }
        let bans = self.inner.store.bans(name, now_ms()).await?;
        let moderator_names = self.inner.store.moderator_names(name).await?;
        let config = &self.inner.config;
        let channel = Arc::new(Channel {
            name: name.to_string(),
            state: Mutex::new(ChannelState { bans, moderator_names, ..Default::default() }),
            viewers: RateLimiter::keyed(quota(config.user_messages, config.rate_window_s)),
            moderators: RateLimiter::keyed(quota(config.moderator_messages, config.rate_window_s)),
        });
        self.inner.channels.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), channel.clone());
        Ok(channel)
    }

    fn lookup(&self, name: &str) -> Option<Arc<Channel>> {
        self.inner.channels.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Places `identity`, connecting from `ip`, in a room of `channel` (the one `requested` when it
    /// has space, see [`crate::rooms::place`]; in a cluster only among the rooms this node hosts,
    /// and a room this node opens starts with its history from Redis).
    /// Returns the session and its frames, in order (the `welcome` first). Errors: [`JoinError`].
    pub async fn join(&self, channel: &str, identity: Identity, ip: IpAddr, requested: Option<u32>) -> Result<(Session, mpsc::Receiver<Utf8Bytes>), JoinError> {
        let config = &self.inner.config;
        if self.inner.connections.fetch_add(1, Ordering::Relaxed) >= config.max_connections {
            self.inner.connections.fetch_sub(1, Ordering::Relaxed);
            return Err(JoinError::Full);
        }
        let counted = Counted(self.inner.clone());
        let ch = self.channel(channel).await?;
        let allowed = |n: u32| self.inner.allowed(channel, n);
        if requested.is_some_and(|r| !allowed(r)) {
            return Err(JoinError::Elsewhere);
        }
        // In a cluster the room API chose the room from the whole cluster's rooms: one not open
        // here yet is opened as asked (this node hosts it); else the single node's rule holds.
        let clustered = self.clustered();
        let choose = |st: &ChannelState| -> Option<u32> {
            match requested {
                Some(r) if clustered && !st.rooms.contains_key(&r) => Some(r),
                _ => {
                    let sizes: Vec<(u32, usize)> = st.rooms.iter().map(|(n, r)| (*n, r.members.len())).collect();
                    crate::rooms::place_where(&sizes, config.room_size, requested, allowed)
                }
            }
        };
        // A room this join would open takes its history from Redis first (the room may have
        // been hosted by a node that is gone).
        let mut loaded = None;
        if let Some(history) = self.inner.history.get() {
            let opening = {
                let st = ch.lock();
                choose(&st).filter(|r| !st.rooms.contains_key(r))
            };
            if let Some(room) = opening {
                loaded = Some((room, history.load(channel, room).await));
            }
        }
        let (tx, rx) = mpsc::channel(config.send_queue.max(4));
        let kick = Arc::new(Kick::default());
        let conn = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let room = {
            let mut st = ch.lock();
            st.bans.retain(|b| b.until_ms > now);
            let ip_text = ip.to_string();
            if let Some(b) = st.bans.iter().find(|b| b.subject == identity.subject || (!b.ip.is_empty() && b.ip == ip_text)) {
                return Err(JoinError::Banned { until_ms: b.until_ms });
            }
            let key = identity.name.to_ascii_lowercase();
            if identity.role == Role::Viewer && st.moderator_names.iter().any(|m| m.eq_ignore_ascii_case(&identity.name)) {
                return Err(JoinError::NameInUse);
            }
            if st.names.get(&key).is_some_and(|(subject, _)| *subject != identity.subject) {
                return Err(JoinError::NameInUse);
            }
            let room = choose(&st).ok_or(JoinError::Elsewhere)?;
            st.names.entry(key).or_insert_with(|| (identity.subject.clone(), 0)).1 += 1;
            let per_room = NonZeroU32::new(config.room_messages_per_s.max(1)).unwrap_or(NonZeroU32::MIN);
            let slow_s = st.slow_s;
            let rooms = st.rooms.len() + usize::from(!st.rooms.contains_key(&room));
            let r = st.rooms.entry(room).or_insert_with(|| Room {
                members: HashMap::new(),
                history: loaded.filter(|(n, _)| *n == room).map(|(_, h)| h.into()).unwrap_or_default(),
                limiter: RateLimiter::direct(Quota::per_second(per_room)),
            });
            let welcome = ServerMessage::Welcome {
                channel,
                room,
                rooms,
                user: WelcomeUser { name: identity.name.clone(), role: identity.role },
                members: r.members.len() + 1,
                slow_s,
                history: r.history.make_contiguous(),
            };
            // The queue is new and empty: this cannot be full.
            let _ = tx.try_send(Utf8Bytes::from(welcome.to_json()));
            r.members.insert(conn, Member { identity: identity.clone(), ip, tx: tx.clone(), kick: kick.clone() });
            st.empty_since = None;
            st.counts_changed = true;
            room
        };
        std::mem::forget(counted);
        metrics::counter!("onair_chat_joins_total", "role" => identity.role.as_str()).increment(1);
        Ok((Session { chat: self.clone(), channel: ch, room, conn, identity, tx, kick }, rx))
    }

    /// Applies a channel-wide frame to every room of `channel` here: delivered, and kept in each
    /// room's history when it is a message.
    fn to_every_room(&self, ch: &Channel, frame: &ServerMessage<'_>, history: Option<&ChatMessage>) -> u64 {
        let text = Utf8Bytes::from(frame.to_json());
        let mut st = ch.lock();
        let mut delivered = 0;
        for (n, room) in st.rooms.iter_mut() {
            delivered += deliver(room, &text);
            if let Some(m) = history {
                self.inner.remember(&ch.name, *n, room, m.clone());
            }
        }
        delivered
    }

    /// Applies a channel-wide event to every room of the channel here.
    fn apply(&self, ch: &Channel, event: &ChannelEvent) {
        match event {
            ChannelEvent::Message { message } => {
                self.to_every_room(ch, &ServerMessage::Message(message), Some(message));
            }
            ChannelEvent::Deleted { id } => {
                for (n, room) in ch.lock().rooms.iter_mut() {
                    if let (Some(at), Some(h)) = (room.history.iter().position(|m| m.id == *id), self.inner.history.get()) {
                        h.remove(&ch.name, *n, &room.history[at]);
                    }
                    room.history.retain(|m| m.id != *id);
                }
                self.to_every_room(ch, &ServerMessage::Deleted { id }, None);
            }
            ChannelEvent::Ban { ban, timeout } => {
                {
                    let mut st = ch.lock();
                    st.bans.retain(|b| b.subject != ban.subject);
                    if !timeout {
                        for m in st.rooms.values().flat_map(|r| r.members.values()).filter(|m| m.identity.subject == ban.subject) {
                            m.kick.kick(Close::Banned);
                        }
                    }
                    st.bans.push(ban.clone());
                }
                let until_ms = (ban.until_ms != FOREVER).then_some(ban.until_ms as u64);
                let action = if *timeout { "timeout" } else { "ban" };
                self.to_every_room(ch, &ServerMessage::Moderation { action, user: &ban.name, until_ms }, None);
            }
            ChannelEvent::Unban { user } => {
                ch.lock().bans.retain(|b| !b.name.eq_ignore_ascii_case(user));
                self.to_every_room(ch, &ServerMessage::Moderation { action: "unban", user, until_ms: None }, None);
            }
            ChannelEvent::Slow { seconds } => {
                ch.lock().slow_s = *seconds;
                self.to_every_room(ch, &ServerMessage::Slow { seconds: *seconds }, None);
            }
        }
    }

    /// Applies `event` here and publishes it to the other nodes.
    fn channel_event(&self, ch: &Channel, event: ChannelEvent) {
        self.apply(ch, &event);
        if let Some(bus) = self.inner.bus.get() {
            bus.publish(&ch.name, event);
        }
    }

    /// Joins the cluster's chat bus: publishes this node's channel-wide events and applies the
    /// others' (storing their bans when the database is this node's own) until `incoming` ends.
    /// A second call is ignored.
    pub async fn run_bus(self, bus: Bus, mut incoming: Incoming) {
        if self.inner.bus.set(bus).is_err() {
            return;
        }
        while let Some((channel, event)) = incoming.recv().await {
            metrics::counter!("onair_chat_bus_received_total").increment(1);
            if let ChannelEvent::Ban { ban, timeout } = &event {
                if ban.subject.is_empty() {
                    self.resolve_ban(&channel, ban, *timeout).await;
                    continue;
                }
            }
            if !self.inner.store.shared() {
                let stored = match &event {
                    ChannelEvent::Ban { ban, .. } => self.inner.store.ban(&channel, ban, "cluster", now_ms()).await,
                    ChannelEvent::Unban { user } => self.inner.store.unban(&channel, user).await.map(|_| ()),
                    _ => Ok(()),
                };
                if let Err(e) = stored {
                    tracing::warn!(channel, error = %e, "chat bus: ban from another node not stored");
                }
            }
            if let Some(ch) = self.lookup(&channel) {
                self.apply(&ch, &event);
            }
        }
    }

    /// A ban by name from another node: when the user is connected here, stores it against the
    /// user's subject and address and applies and publishes it resolved; else leaves it to the
    /// node that has the user.
    async fn resolve_ban(&self, channel: &str, by_name: &Ban, timeout: bool) {
        let Some(ch) = self.lookup(channel) else { return };
        let found = ch.lock().rooms.values().flat_map(|r| r.members.values()).find(|m| m.identity.name.eq_ignore_ascii_case(&by_name.name) && !m.identity.role.moderates()).map(|m| Ban {
            subject: m.identity.subject.clone(),
            name: m.identity.name.clone(),
            ip: m.ip.to_string(),
            until_ms: by_name.until_ms,
        });
        let Some(ban) = found else { return };
        if let Err(e) = self.inner.store.ban(channel, &ban, "cluster", now_ms()).await {
            tracing::warn!(channel, error = %e, "chat bus: ban not stored");
        }
        self.channel_event(&ch, ChannelEvent::Ban { ban, timeout });
    }

    /// Announces changed member counts to the rooms, forgets idle channels, trims rate-limiter
    /// state and updates the gauges. Called every couple of seconds by [`Chat::run`].
    pub fn tick(&self) {
        let channels: Vec<Arc<Channel>> = self.inner.channels.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let mut idle = Vec::new();
        let (mut rooms, now) = (0usize, Instant::now());
        for ch in &channels {
            ch.viewers.retain_recent();
            ch.moderators.retain_recent();
            let mut st = ch.lock();
            let window = Duration::from_secs(u64::from(st.slow_s));
            st.last_post.retain(|_, t| now.duration_since(*t) < window);
            rooms += st.rooms.len();
            if st.rooms.is_empty() && st.empty_since.is_some_and(|t| now.duration_since(t) > IDLE_CHANNEL) {
                idle.push(ch.name.clone());
            }
            if !std::mem::take(&mut st.counts_changed) {
                continue;
            }
            let total: usize = st.rooms.values().map(|r| r.members.len()).sum();
            for (n, room) in st.rooms.iter_mut() {
                let frame = Utf8Bytes::from(ServerMessage::Members { room: *n, count: room.members.len(), channel: total }.to_json());
                deliver(room, &frame);
            }
        }
        let mut map = self.inner.channels.lock().unwrap_or_else(|e| e.into_inner());
        for name in idle {
            if map.get(&name).is_some_and(|c| c.lock().rooms.is_empty()) {
                map.remove(&name);
            }
        }
        metrics::gauge!("onair_chat_channels").set(map.len() as f64);
        metrics::gauge!("onair_chat_rooms").set(rooms as f64);
        metrics::gauge!("onair_chat_connections").set(self.inner.connections.load(Ordering::Relaxed) as f64);
    }

    /// Runs [`Chat::tick`] every 2 s until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => self.tick(),
            }
        }
    }

    /// Members of `channel` on this node, per room (room number, members), in room order.
    pub fn rooms(&self, channel: &str) -> Vec<(u32, usize)> {
        self.lookup(channel).map_or_else(Vec::new, |ch| ch.lock().rooms.iter().map(|(n, r)| (*n, r.members.len())).collect())
    }
}

/// Gives back a connection slot unless forgotten.
struct Counted(Arc<Inner>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One member's connection to a room; leaves the room when dropped.
pub struct Session {
    chat: Chat,
    channel: Arc<Channel>,
    room: u32,
    conn: u64,
    identity: Identity,
    tx: mpsc::Sender<Utf8Bytes>,
    kick: Arc<Kick>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("channel", &self.channel.name).field("room", &self.room).field("name", &self.identity.name).finish_non_exhaustive()
    }
}

impl Session {
    /// The room it is in.
    pub fn room(&self) -> u32 {
        self.room
    }

    /// Who it speaks as.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Resolves when the member must go (a full queue, a ban); the reason.
    pub async fn kicked(&self) -> Close {
        self.kick.token.cancelled().await;
        self.kick.reason.get().copied().unwrap_or(Close::SlowConsumer)
    }

    /// Queues `error` for this member only (dropping it when its queue is full).
    pub fn refuse(&self, error: &ErrorFrame) {
        metrics::counter!("onair_chat_refused_total", "code" => error.code.label()).increment(1);
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(Utf8Bytes::from(ServerMessage::Error(error).to_json())) {
            self.kick.kick(Close::SlowConsumer);
        }
    }

    fn new_message(&self, room: Option<u32>, text: String) -> ChatMessage {
        let n = self.chat.inner.next_message.fetch_add(1, Ordering::Relaxed);
        ChatMessage {
            id: format!("{}{n:x}", self.chat.inner.message_prefix),
            room,
            user: self.identity.name.clone(),
            role: self.identity.role,
            text,
            ts_ms: now_ms() as u64,
        }
    }

    /// Says `text`: to the member's room, or to every room when it moderates. Errors (sent back
    /// as `error`): too long or empty, over the user's or room's rate, slow mode, timed out.
    pub fn send(&self, text: &str) -> Result<(), ErrorFrame> {
        let inner = &self.chat.inner;
        let text = clean_text(text, inner.config.max_message_chars).map_err(|code| match code {
            ErrorCode::TooLong => refusal(code, format!("messages are at most {} characters", inner.config.max_message_chars), None),
            _ => refusal(code, "nothing to send", None),
        })?;
        let ch = &self.channel;
        let limiter = if self.identity.role.moderates() { &ch.moderators } else { &ch.viewers };
        if let Err(not_until) = limiter.check_key(&self.identity.subject) {
            let wait = not_until.wait_time_from(inner.clock.now());
            return Err(refusal(ErrorCode::RateLimited, "you are sending messages too quickly", Some(wait)));
        }
        if self.identity.role.moderates() {
            let message = self.new_message(None, text);
            metrics::counter!("onair_chat_messages_total", "scope" => "channel").increment(1);
            self.chat.channel_event(ch, ChannelEvent::Message { message });
            return Ok(());
        }
        let now = Instant::now();
        let mut st = ch.lock();
        let now_ms = now_ms();
        if let Some(b) = st.bans.iter().find(|b| b.subject == self.identity.subject && b.until_ms > now_ms) {
            let left = Duration::from_millis((b.until_ms - now_ms) as u64);
            return Err(refusal(ErrorCode::TimedOut, "you are timed out in this channel", Some(left)));
        }
        let slow = Duration::from_secs(u64::from(st.slow_s));
        if let Some(last) = st.last_post.get(&self.identity.subject).filter(|t| now.duration_since(**t) < slow) {
            return Err(refusal(ErrorCode::SlowMode, format!("slow mode: one message every {} s", st.slow_s), Some(slow - now.duration_since(*last))));
        }
        let Some(room) = st.rooms.get_mut(&self.room) else { return Ok(()) };
        if let Err(not_until) = room.limiter.check() {
            let wait = not_until.wait_time_from(inner.clock.now());
            return Err(refusal(ErrorCode::RateLimited, "this room is busy: try again in a moment", Some(wait)));
        }
        let message = self.new_message(Some(self.room), text);
        deliver(room, &Utf8Bytes::from(ServerMessage::Message(&message).to_json()));
        inner.remember(&ch.name, self.room, room, message);
        if st.slow_s > 0 {
            st.last_post.insert(self.identity.subject.clone(), now);
        }
        metrics::counter!("onair_chat_messages_total", "scope" => "room").increment(1);
        Ok(())
    }

    fn moderator(&self) -> Result<(), ErrorFrame> {
        if self.identity.role.moderates() {
            Ok(())
        } else {
            Err(refusal(ErrorCode::Forbidden, "only the broadcaster and moderators may do that", None))
        }
    }

    /// Deletes message `id` from every room's history and tells every room. Errors: not a
    /// moderator, no such message in the history.
    pub fn delete(&self, id: &str) -> Result<(), ErrorFrame> {
        self.moderator()?;
        let found = self.channel.lock().rooms.values().any(|r| r.history.iter().any(|m| m.id == id));
        if !found {
            return Err(refusal(ErrorCode::NotFound, "no such message", None));
        }
        metrics::counter!("onair_chat_moderation_total", "action" => "delete").increment(1);
        self.chat.channel_event(&self.channel, ChannelEvent::Deleted { id: id.to_string() });
        Ok(())
    }

    /// Bans `user` (`seconds: None`) or times it out, in the database and here; a banned user's
    /// connections are closed (4003), a timed-out one stays and reads. Both hold against the
    /// user's token subject and its client address: no new connection from either until the end
    /// (others already connected from that address stay: an address may be a whole school's NAT). Errors: not a moderator,
    /// no such user connected or banned before, a moderator as the target, a bad duration, the
    /// database.
    pub async fn ban(&self, user: &str, seconds: Option<u64>) -> Result<(), ErrorFrame> {
        self.moderator()?;
        if seconds.is_some_and(|s| s == 0 || s > MAX_TIMEOUT_S) {
            return Err(refusal(ErrorCode::BadMessage, format!("a timeout is 1 to {MAX_TIMEOUT_S} seconds"), None));
        }
        let now = now_ms();
        let target = {
            let st = self.channel.lock();
            let connected = st.rooms.values().flat_map(|r| r.members.values()).find(|m| m.identity.name.eq_ignore_ascii_case(user));
            match connected {
                Some(m) if m.identity.role.moderates() => return Err(refusal(ErrorCode::Forbidden, "moderators cannot be banned", None)),
                Some(m) => Some(Ban { subject: m.identity.subject.clone(), name: m.identity.name.clone(), ip: m.ip.to_string(), until_ms: 0 }),
                None => st.bans.iter().find(|b| b.name.eq_ignore_ascii_case(user)).cloned(),
            }
        };
        let until_ms = match seconds {
            Some(s) => now.saturating_add((s * 1000) as i64),
            None => FOREVER,
        };
        let Some(mut ban) = target else {
            // Maybe connected to another node: the node that has the user resolves the name, stores
            // the ban and tells every node.
            if let Some(bus) = self.chat.inner.bus.get() {
                let unresolved = Ban { subject: String::new(), name: user.to_string(), ip: String::new(), until_ms };
                bus.publish(&self.channel.name, ChannelEvent::Ban { ban: unresolved, timeout: seconds.is_some() });
                return Ok(());
            }
            return Err(refusal(ErrorCode::NotFound, format!("{user} is not here"), None));
        };
        ban.until_ms = until_ms;
        if let Err(e) = self.chat.inner.store.ban(&self.channel.name, &ban, &self.identity.name, now).await {
            tracing::warn!(channel = %self.channel.name, error = %e, "chat: ban not stored");
            return Err(refusal(ErrorCode::BadMessage, "the ban could not be stored: try again", None));
        }
        let action = if seconds.is_some() { "timeout" } else { "ban" };
        metrics::counter!("onair_chat_moderation_total", "action" => action).increment(1);
        tracing::info!(channel = %self.channel.name, user = %ban.name, by = %self.identity.name, action, "chat moderation");
        self.chat.channel_event(&self.channel, ChannelEvent::Ban { ban, timeout: seconds.is_some() });
        Ok(())
    }

    /// Lifts `user`'s ban or timeout. Errors: not a moderator, not banned, the database.
    pub async fn unban(&self, user: &str) -> Result<(), ErrorFrame> {
        self.moderator()?;
        match self.chat.inner.store.unban(&self.channel.name, user).await {
            Ok(0) => return Err(refusal(ErrorCode::NotFound, format!("{user} is not banned"), None)),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(channel = %self.channel.name, error = %e, "chat: unban not stored");
                return Err(refusal(ErrorCode::BadMessage, "the unban could not be stored: try again", None));
            }
        }
        metrics::counter!("onair_chat_moderation_total", "action" => "unban").increment(1);
        self.chat.channel_event(&self.channel, ChannelEvent::Unban { user: user.to_string() });
        Ok(())
    }

    /// Slow mode for every room: viewers post at most once per `seconds` (0: off, ≤ 3600).
    pub fn slow(&self, seconds: u32) -> Result<(), ErrorFrame> {
        self.moderator()?;
        if seconds > 3600 {
            return Err(refusal(ErrorCode::BadMessage, "slow mode is 0 to 3600 seconds", None));
        }
        metrics::counter!("onair_chat_moderation_total", "action" => "slow").increment(1);
        self.chat.channel_event(&self.channel, ChannelEvent::Slow { seconds });
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.chat.inner.connections.fetch_sub(1, Ordering::Relaxed);
        let mut st = self.channel.lock();
        if let Some(room) = st.rooms.get_mut(&self.room) {
            room.members.remove(&self.conn);
            if room.members.is_empty() {
                st.rooms.remove(&self.room);
            }
        }
        let key = self.identity.name.to_ascii_lowercase();
        if let Some((_, n)) = st.names.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                st.names.remove(&key);
            }
        }
        st.counts_changed = true;
        if st.rooms.is_empty() {
            st.empty_since = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests;
