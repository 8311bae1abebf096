//! Broadcasts (one per live channel) and the store that indexes them by channel name.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::rendition::{Rendition, RenditionInfo, TimelineConfig};

/// Errors from starting a broadcast.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The channel already has a live (not ended) broadcast.
    #[error("channel {0} is already live")]
    AlreadyLive(String),
}

/// One publish session of a channel: its renditions, live until [`Broadcast::end`].
#[derive(Debug)]
pub struct Broadcast {
    channel: String,
    started: SystemTime,
    config: TimelineConfig,
    renditions: RwLock<Vec<Arc<Rendition>>>,
    ended_at: RwLock<Option<SystemTime>>,
}

/// A line of the live-channel directory.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastInfo {
    /// Channel name.
    pub channel: String,
    /// When the publish started.
    pub started: SystemTime,
    /// False once the publisher left.
    pub live: bool,
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

    /// Adds a rendition, or replaces the one with the same name (a new codec configuration).
    pub fn add_rendition(&self, info: RenditionInfo, init: Bytes) -> Arc<Rendition> {
        let r = Arc::new(Rendition::new(info, init, self.config));
        let mut list = self.renditions.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = list.iter_mut().find(|x| x.info().name == r.info().name) {
            old.end();
            *old = r.clone();
        } else {
            list.push(r.clone());
        }
        r
    }

    /// Ends rendition `name` and removes it from the broadcast (a failed transcode rung).
    pub fn remove_rendition(&self, name: &str) {
        let mut list = self.renditions.write().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = list.iter().position(|r| r.info().name == name) {
            list.remove(pos).end();
        }
    }

    /// The rendition called `name`.
    pub fn rendition(&self, name: &str) -> Option<Arc<Rendition>> {
        self.renditions().into_iter().find(|r| r.info().name == name)
    }

    /// All renditions, video first in the order added.
    pub fn renditions(&self) -> Vec<Arc<Rendition>> {
        self.renditions.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Ends the broadcast: every rendition's playlist gets EXT-X-ENDLIST.
    pub fn end(&self) {
        *self.ended_at.write().unwrap_or_else(|e| e.into_inner()) = Some(SystemTime::now());
        for r in self.renditions() {
            r.end();
        }
    }

    /// True until [`Broadcast::end`].
    pub fn is_live(&self) -> bool {
        self.ended_at.read().unwrap_or_else(|e| e.into_inner()).is_none()
    }

    fn ended_before(&self, t: SystemTime) -> bool {
        self.ended_at.read().unwrap_or_else(|e| e.into_inner()).is_some_and(|e| e < t)
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

    /// Starts a broadcast on `channel`, replacing an ended one.
    /// Errors: [`StoreError::AlreadyLive`] while another broadcast of the channel is live.
    pub fn start(&self, channel: &str) -> Result<Arc<Broadcast>, StoreError> {
        let mut map = self.broadcasts.write().unwrap_or_else(|e| e.into_inner());
        if map.get(channel).is_some_and(|b| b.is_live()) {
            return Err(StoreError::AlreadyLive(channel.to_string()));
        }
        let b = Arc::new(Broadcast {
            channel: channel.to_string(),
            started: SystemTime::now(),
            config: self.config,
            renditions: RwLock::new(Vec::new()),
            ended_at: RwLock::new(None),
        });
        map.insert(channel.to_string(), b.clone());
        Ok(b)
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
                renditions: b.renditions().iter().map(|r| r.info().name.clone()).collect(),
            })
            .collect();
        out.sort_by(|a, b| a.channel.cmp(&b.channel));
        out
    }

    /// Number of live broadcasts.
    pub fn live_count(&self) -> usize {
        self.broadcasts.read().unwrap_or_else(|e| e.into_inner()).values().filter(|b| b.is_live()).count()
    }

    /// Drops broadcasts that ended more than `linger` ago, freeing their media.
    pub fn sweep(&self, linger: Duration) {
        let cutoff = SystemTime::now().checked_sub(linger).unwrap_or(SystemTime::UNIX_EPOCH);
        self.broadcasts.write().unwrap_or_else(|e| e.into_inner()).retain(|_, b| !b.ended_before(cutoff));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_live_broadcast_per_channel() {
        let store = Store::new(TimelineConfig::default());
        let b = store.start("demo").expect("start");
        assert_eq!(store.start("demo").err(), Some(StoreError::AlreadyLive("demo".into())));
        assert_eq!(store.live_count(), 1);
        b.end();
        assert_eq!(store.live_count(), 0);
        let b2 = store.start("demo").expect("restart after end");
        assert!(b2.is_live());
        b2.end();
        store.sweep(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        store.sweep(Duration::ZERO);
        assert!(store.get("demo").is_none());
    }
}
