//! Broadcasts (one per live channel), their lifecycle state machine, and the store that indexes
//! them by channel name.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use bytes::Bytes;

use crate::rendition::{Rendition, RenditionInfo, TimelineConfig};
use crate::writer::Session;

/// Errors from starting a broadcast.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The channel already has a live (not ended) broadcast.
    #[error("channel {0} is already live")]
    AlreadyLive(String),
}

/// Where a broadcast is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A publisher is attached.
    Live,
    /// The publisher's connection dropped at this time; it may come back within the grace period.
    Interrupted(SystemTime),
    /// Over at this time: every playlist has EXT-X-ENDLIST.
    Ended(SystemTime),
}

/// A broadcast's whole lifecycle state, changed in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastState {
    /// Live, interrupted or ended.
    pub phase: Phase,
    /// Id of the publish session that owns the broadcast; bumped on every resume or takeover.
    pub session: u64,
}

/// A channel's live broadcast: its renditions and its [`BroadcastState`]. Only the owning
/// [`Session`] changes the state (or the store's sweep, for an interrupted one past its grace period).
#[derive(Debug)]
pub struct Broadcast {
    channel: String,
    started: SystemTime,
    config: TimelineConfig,
    renditions: RwLock<Vec<Arc<Rendition>>>,
    pub(crate) state: watch::Sender<BroadcastState>,
    /// The store's change counter (see [`Store::subscribe_changes`]).
    changes: Arc<watch::Sender<u64>>,
    /// Mirrored from another node ([`Store::start_relayed`]), not published here.
    relayed: bool,
}

/// A line of the live-channel directory.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastInfo {
    /// Channel name.
    pub channel: String,
    /// When the publish started.
    pub started: SystemTime,
    /// True while a publisher is attached.
    pub live: bool,
    /// True while the publisher is gone but may come back (within the grace period).
    pub reconnecting: bool,
    /// Rendition names.
    pub renditions: Vec<String>,
}

impl Broadcast {
    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// When the publish started (wall clock).
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// True for a broadcast mirrored from another node (a relay's), false for one published here.
    pub fn is_relayed(&self) -> bool {
        self.relayed
    }

    /// The rendition called `name`.
    pub fn rendition(&self, name: &str) -> Option<Arc<Rendition>> {
        self.read_renditions().iter().find(|r| r.name() == name).cloned()
    }

    /// Bytes of media its renditions hold (see [`Rendition::bytes_held`]).
    pub fn bytes_held(&self) -> u64 {
        self.read_renditions().iter().map(|r| r.bytes_held()).sum()
    }

    /// All renditions, video first in the order added.
    pub fn renditions(&self) -> Vec<Arc<Rendition>> {
        self.read_renditions().clone()
    }

    fn read_renditions(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Rendition>>> {
        self.renditions.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The rendition `info.name`, created with `info` and `init` (as init id `init_id`) if absent;
    /// if it existed, the pair comes back unused.
    pub(crate) fn rendition_or_insert(&self, info: RenditionInfo, init: Bytes, init_id: u64) -> (Arc<Rendition>, Option<(RenditionInfo, Bytes)>) {
        let mut list = self.renditions.write().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = list.iter().find(|r| r.name() == info.name) {
            return (r.clone(), Some((info, init)));
        }
        let r = Arc::new(Rendition::new(info, init, init_id, self.config));
        list.push(r.clone());
        self.changes.send_modify(|n| *n += 1);
        (r, None)
    }

    /// Ends rendition `name` and removes it from the broadcast.
    pub(crate) fn remove_rendition(&self, name: &str) {
        let mut list = self.renditions.write().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = list.iter().position(|r| r.name() == name) {
            list.remove(pos).end();
        }
    }

    /// The lifecycle state now.
    pub fn state(&self) -> BroadcastState {
        *self.state.borrow()
    }

    /// Sees every state change: a takeover (the session id moves), an interruption, the end.
    pub fn subscribe_state(&self) -> watch::Receiver<BroadcastState> {
        self.state.subscribe()
    }

    /// Changes the phase to `to` if `from` accepts the current state; true if it changed. The
    /// check and the change are one step (under the watch channel's lock).
    pub(crate) fn transition(&self, from: impl FnOnce(&BroadcastState) -> bool, to: Phase) -> bool {
        let changed = self.state.send_if_modified(|s| {
            if from(s) {
                s.phase = to;
                true
            } else {
                false
            }
        });
        if changed && matches!(to, Phase::Ended(_)) {
            for r in self.renditions() {
                r.end();
            }
        }
        changed
    }

    /// True while a publisher is attached.
    pub fn is_live(&self) -> bool {
        self.state().phase == Phase::Live
    }

    /// True between an interruption and a resume or the end.
    pub fn is_interrupted(&self) -> bool {
        matches!(self.state().phase, Phase::Interrupted(_))
    }

    /// True once ended.
    pub fn is_ended(&self) -> bool {
        matches!(self.state().phase, Phase::Ended(_))
    }
}

/// All broadcasts by channel name.
#[derive(Debug, Default)]
pub struct Store {
    config: TimelineConfig,
    broadcasts: RwLock<HashMap<String, Arc<Broadcast>>>,
    changes: Arc<watch::Sender<u64>>,
}

impl Store {
    /// An empty store whose renditions use `config`.
    pub fn new(config: TimelineConfig) -> Self {
        Store { config, broadcasts: RwLock::new(HashMap::new()), changes: Arc::new(watch::Sender::new(0)) }
    }

    /// A counter that moves whenever a broadcast starts or a broadcast gains a rendition: a
    /// subscriber of the whole store (the archive's recorder) wakes on it and looks at
    /// [`Store::get`]/[`Broadcast::renditions`] instead of polling.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every broadcast held (live, interrupted or recently ended), in no particular order.
    pub fn broadcasts(&self) -> Vec<Arc<Broadcast>> {
        self.broadcasts.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Starts a publish session on `channel`: resumes an interrupted broadcast (its renditions
    /// continue after a discontinuity as the publisher re-declares its tracks), takes over a live
    /// one when `takeover` is set (the old session's writers are refused from then on), or starts
    /// a new broadcast in place of an ended one or of one relayed from another node (the relay
    /// notices and stops pulling it).
    /// Errors: [`StoreError::AlreadyLive`] while another publisher is attached and `takeover` is off.
    pub fn start(&self, channel: &str, takeover: bool) -> Result<Session, StoreError> {
        self.start_as(channel, takeover, false)
    }

    /// As [`Store::start`] without takeover, for a broadcast this node mirrors from another (a
    /// relay): [`Broadcast::is_relayed`] tells it from one published here (the archive records
    /// only those).
    pub fn start_relayed(&self, channel: &str) -> Result<Session, StoreError> {
        self.start_as(channel, false, true)
    }

    fn start_as(&self, channel: &str, takeover: bool, relayed: bool) -> Result<Session, StoreError> {
        let mut map = self.broadcasts.write().unwrap_or_else(|e| e.into_inner());
        // A publisher here replaces a copy relayed from another node (that node's publisher is
        // gone, or the cluster's lease would have refused this one): a new broadcast.
        if let Some(b) = map.get(channel).filter(|b| !b.relayed || relayed) {
            let mut refused = false;
            let mut session = 0;
            b.state.send_if_modified(|s| match s.phase {
                Phase::Live if !takeover => {
                    refused = true;
                    false
                }
                Phase::Live | Phase::Interrupted(_) => {
                    s.phase = Phase::Live;
                    s.session += 1;
                    session = s.session;
                    true
                }
                Phase::Ended(_) => false,
            });
            if refused {
                return Err(StoreError::AlreadyLive(channel.to_string()));
            }
            if session > 0 {
                return Ok(Session::new(b.clone(), session));
            }
        }
        let b = Arc::new(Broadcast {
            channel: channel.to_string(),
            started: SystemTime::now(),
            config: self.config,
            renditions: RwLock::new(Vec::new()),
            state: watch::Sender::new(BroadcastState { phase: Phase::Live, session: 1 }),
            changes: self.changes.clone(),
            relayed,
        });
        map.insert(channel.to_string(), b.clone());
        self.changes.send_modify(|n| *n += 1);
        Ok(Session::new(b, 1))
    }

    /// Removes `session`'s broadcast from the store if the session still owns it (a relay
    /// releasing a channel nobody watches): its media is freed once the last reader lets go, and
    /// its playlists get no EXT-X-ENDLIST (the broadcast did not end; this node stopped holding it).
    /// Returns true if it removed it.
    pub fn release(&self, session: Session) -> bool {
        let mut map = self.broadcasts.write().unwrap_or_else(|e| e.into_inner());
        let channel = session.broadcast().channel();
        let owned = session.owns() && map.get(channel).is_some_and(|b| Arc::ptr_eq(b, session.broadcast()));
        if owned {
            map.remove(channel);
        }
        owned
    }

    /// The current (live or recently ended) broadcast of `channel`.
    pub fn get(&self, channel: &str) -> Option<Arc<Broadcast>> {
        self.broadcasts.read().unwrap_or_else(|e| e.into_inner()).get(channel).cloned()
    }

    /// Directory of broadcasts, sorted by channel name.
    pub fn list(&self) -> Vec<BroadcastInfo> {
        let map = self.broadcasts.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<BroadcastInfo> = map
            .values()
            .map(|b| BroadcastInfo {
                channel: b.channel.clone(),
                started: b.started,
                live: b.is_live(),
                reconnecting: b.is_interrupted(),
                renditions: b.read_renditions().iter().map(|r| r.name().to_string()).collect(),
            })
            .collect();
        out.sort_by(|a, b| a.channel.cmp(&b.channel));
        out
    }

    /// Number of live broadcasts.
    pub fn live_count(&self) -> usize {
        self.broadcasts.read().unwrap_or_else(|e| e.into_inner()).values().filter(|b| b.is_live()).count()
    }

    /// Ends broadcasts interrupted for longer than `grace` (their playlists get EXT-X-ENDLIST), and
    /// drops broadcasts that ended more than `linger` ago, freeing their media. Returns the channels ended now.
    pub fn sweep(&self, grace: Duration, linger: Duration) -> Vec<String> {
        let now = SystemTime::now();
        let older = |t: SystemTime, d: Duration| now.duration_since(t).unwrap_or_default() >= d;
        let mut ended = Vec::new();
        let mut map = self.broadcasts.write().unwrap_or_else(|e| e.into_inner());
        for b in map.values() {
            if b.transition(|s| matches!(s.phase, Phase::Interrupted(at) if older(at, grace)), Phase::Ended(now)) {
                ended.push(b.channel.clone());
            }
        }
        map.retain(|_, b| !matches!(b.state().phase, Phase::Ended(at) if older(at, linger)));
        ended
    }
}
