//! Broadcasts (one per live channel) and the store that indexes them by channel name.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;

use crate::rendition::{Rendition, RenditionInfo, TimelineConfig};

/// Errors from starting a broadcast.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The channel already has a live (not ended) broadcast.
    #[error("channel {0} is already live")]
    AlreadyLive(String),
}

/// A channel's live broadcast: its renditions, live until [`Broadcast::end`]. A publisher that
/// drops [`interrupts`](Broadcast::interrupt) it; one that comes back on the same key within the
/// grace period resumes it (same playlists, after a discontinuity).
#[derive(Debug)]
pub struct Broadcast {
    channel: String,
    started: SystemTime,
    config: TimelineConfig,
    renditions: RwLock<Vec<Arc<Rendition>>>,
    state: RwLock<State>,
    /// Id of the publish session writing into it; bumped on every resume or takeover.
    session: watch::Sender<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Live,
    Interrupted(SystemTime),
    Ended(SystemTime),
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

    /// Adds a rendition; if one of that name exists (a resumed publish, or a new codec
    /// configuration), it continues after a discontinuity with the new init segment instead.
    pub fn add_rendition(&self, info: RenditionInfo, init: Bytes) -> Arc<Rendition> {
        let mut list = self.renditions.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = list.iter().find(|x| x.name() == info.name) {
            existing.restart(info, init);
            return existing.clone();
        }
        let r = Arc::new(Rendition::new(info, init, self.config));
        list.push(r.clone());
        r
    }

    /// Ends rendition `name` and removes it from the broadcast (a failed transcode rung).
    pub fn remove_rendition(&self, name: &str) {
        let mut list = self.renditions.write().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = list.iter().position(|r| r.name() == name) {
            list.remove(pos).end();
        }
    }

    /// The rendition called `name`.
    pub fn rendition(&self, name: &str) -> Option<Arc<Rendition>> {
        self.renditions().into_iter().find(|r| r.name() == name)
    }

    /// All renditions, video first in the order added.
    pub fn renditions(&self) -> Vec<Arc<Rendition>> {
        self.renditions.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn state(&self) -> State {
        *self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, s: State) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Id of the publish session that owns the broadcast now.
    pub fn session(&self) -> u64 {
        *self.session.borrow()
    }

    /// Sees the session id change when another publisher takes the broadcast over.
    pub fn subscribe_session(&self) -> watch::Receiver<u64> {
        self.session.subscribe()
    }

    /// Ends the broadcast: every rendition's playlist gets EXT-X-ENDLIST.
    pub fn end(&self) {
        if !matches!(self.state(), State::Ended(_)) {
            self.set_state(State::Ended(SystemTime::now()));
        }
        for r in self.renditions() {
            r.end();
        }
    }

    /// The publisher is gone but may come back: playlists stay open (no EXT-X-ENDLIST) until the
    /// publisher resumes or [`Store::sweep`] ends the broadcast after the grace period.
    pub fn interrupt(&self) {
        if self.state() == State::Live {
            self.set_state(State::Interrupted(SystemTime::now()));
        }
    }

    /// True while a publisher is attached.
    pub fn is_live(&self) -> bool {
        self.state() == State::Live
    }

    /// True between [`Broadcast::interrupt`] and a resume or the end.
    pub fn is_interrupted(&self) -> bool {
        matches!(self.state(), State::Interrupted(_))
    }
}

/// All broadcasts by channel name.
#[derive(Debug, Default)]
pub struct Store {
    config: TimelineConfig,
    broadcasts: RwLock<HashMap<String, Arc<Broadcast>>>,
}

impl Store {
    /// An empty store whose renditions use `config`.
    pub fn new(config: TimelineConfig) -> Self {
        Store { config, broadcasts: RwLock::new(HashMap::new()) }
    }

    /// Starts a broadcast on `channel` and returns it with the new session's id: resumes an
    /// interrupted one (its renditions continue after a discontinuity as the publisher re-declares
    /// its tracks), takes over a live one when `takeover` is set (the old session sees
    /// [`Broadcast::subscribe_session`] change and must stop writing), or replaces an ended one.
    /// Errors: [`StoreError::AlreadyLive`] while another publisher is attached and `takeover` is off.
    pub fn start(&self, channel: &str, takeover: bool) -> Result<(Arc<Broadcast>, u64), StoreError> {
        let mut map = self.broadcasts.write().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.get(channel) {
            match b.state() {
                State::Live if !takeover => return Err(StoreError::AlreadyLive(channel.to_string())),
                State::Live | State::Interrupted(_) => {
                    b.set_state(State::Live);
                    let session = b.session() + 1;
                    b.session.send_replace(session);
                    return Ok((b.clone(), session));
                }
                State::Ended(_) => {}
            }
        }
        let b = Arc::new(Broadcast {
            channel: channel.to_string(),
            started: SystemTime::now(),
            config: self.config,
            renditions: RwLock::new(Vec::new()),
            state: RwLock::new(State::Live),
            session: watch::Sender::new(1),
        });
        map.insert(channel.to_string(), b.clone());
        Ok((b, 1))
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
                renditions: b.renditions().iter().map(|r| r.name()).collect(),
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
            if let State::Interrupted(at) = b.state() {
                if older(at, grace) {
                    b.end();
                    ended.push(b.channel.clone());
                }
            }
        }
        map.retain(|_, b| !matches!(b.state(), State::Ended(at) if older(at, linger)));
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_live_broadcast_per_channel() {
        let store = Store::new(TimelineConfig::default());
        let (b, session) = store.start("demo", false).expect("start");
        assert_eq!(session, 1);
        assert_eq!(store.start("demo", false).err(), Some(StoreError::AlreadyLive("demo".into())));
        assert_eq!(store.live_count(), 1);
        b.end();
        assert_eq!(store.live_count(), 0);
        let (b2, _) = store.start("demo", false).expect("restart after end");
        assert!(b2.is_live());
        b2.end();
        store.sweep(Duration::ZERO, Duration::ZERO);
        assert!(store.get("demo").is_none());
    }

    #[test]
    fn interrupted_broadcast_resumes_or_ends_after_grace() {
        let store = Store::new(TimelineConfig::default());
        let (b, _) = store.start("demo", false).expect("start");
        b.interrupt();
        assert!(b.is_interrupted() && !b.is_live());
        assert_eq!(store.live_count(), 0);
        let (resumed, session) = store.start("demo", false).expect("resume");
        assert!(Arc::ptr_eq(&b, &resumed) && resumed.is_live() && session == 2);
        let watcher = resumed.subscribe_session();
        let (taken, session) = store.start("demo", true).expect("takeover");
        assert!(Arc::ptr_eq(&b, &taken) && session == 3);
        assert!(watcher.has_changed().unwrap_or(false));
        resumed.interrupt();
        assert!(store.sweep(Duration::from_secs(60), Duration::from_secs(60)).is_empty());
        assert_eq!(store.sweep(Duration::ZERO, Duration::from_secs(60)), vec!["demo".to_string()]);
        assert!(!b.is_live() && !b.is_interrupted());
        let (fresh, _) = store.start("demo", false).expect("new broadcast");
        assert!(!Arc::ptr_eq(&b, &fresh));
    }
}
