//! The one definition of "a viewer" in OnAir, used for node load (Usher), relay channel counts
//! and the channel directory's view counts:
//!
//! **A viewer is a playback session that fetched one of the channel's Media Playlists (answer
//! 200) from this node within the last [`SESSION_WINDOW`].** A session is named by the request's
//! `X-Playback-Session-Id` header when it carries one (Apple's players send it; the load
//! generator sends one per simulated viewer), and otherwise by the pair (client address,
//! `User-Agent`): every LL-HLS player polls its Media Playlist several times a second, so a
//! session that stops polling stops counting one window later. A cluster's count of a channel is
//! the sum over its nodes. A relay pulling from a node (User-Agent `onair-relay/…`) is not a
//! viewer of it. Viewers behind a CDN reach the node only as the CDN's few requests: they count
//! only through the OnAir player's heartbeat (`GET /api/v1/heartbeat/{channel}?session=ID`, every
//! 10 s, uncached), which names its session by the player's own id; the heartbeat's (client
//! address, `User-Agent`) pair is then covered by that session, so the same player polling this
//! node directly is not counted twice.
//!
//! Memory is bounded: at most [`MAX_SESSIONS`] sessions are tracked per node; beyond that new
//! sessions are not counted (metric `onair_viewer_sessions_untracked_total`).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A session stops counting this long after its last Media Playlist request.
pub const SESSION_WINDOW: Duration = Duration::from_secs(30);

/// Most sessions tracked at once on one node.
pub const MAX_SESSIONS: usize = 500_000;

/// What names a session on a request.
#[derive(Debug, Clone, Copy)]
pub enum SessionKey<'a> {
    /// The `X-Playback-Session-Id` header's value.
    Header(&'a str),
    /// The client's address and `User-Agent` (empty when absent).
    Client(IpAddr, &'a str),
}

#[derive(Debug, Default)]
struct Tracked {
    /// channel → session hash → last seen.
    channels: HashMap<String, HashMap<u64, Instant>>,
    total: usize,
    /// Client sessions (address, `User-Agent`) covered by a heartbeat's session → its last heartbeat.
    covered: HashMap<u64, Instant>,
}

/// The viewer sessions seen on this node.
#[derive(Debug)]
pub struct Sessions {
    hasher: RandomState,
    window: Duration,
    tracked: Mutex<Tracked>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(SESSION_WINDOW)
    }
}

impl Sessions {
    /// Sessions that expire `window` after their last request.
    pub fn new(window: Duration) -> Self {
        Sessions { hasher: RandomState::new(), window, tracked: Mutex::new(Tracked::default()) }
    }

    /// The session `key` names, as a number (hashed with this node's random key).
    pub fn session(&self, key: SessionKey<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        match key {
            SessionKey::Header(id) => (0u8, id).hash(&mut h),
            SessionKey::Client(ip, agent) => (1u8, ip.to_canonical(), agent).hash(&mut h),
        }
        h.finish()
    }

    /// Records a heartbeat of the player session `session` (a [`SessionKey::Header`]) watching
    /// `channel`, sent from the client session `client` (a [`SessionKey::Client`]): `session`
    /// counts, and `client`'s own playlist requests stop counting while the heartbeats go on.
    pub fn heartbeat(&self, channel: &str, session: u64, client: u64, now: Instant) {
        {
            let mut t = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
            if t.covered.len() < MAX_SESSIONS || t.covered.contains_key(&client) {
                t.covered.insert(client, now);
            }
            if let Some(sessions) = t.channels.get_mut(channel) {
                if sessions.remove(&client).is_some() {
                    t.total -= 1;
                }
            }
        }
        self.seen(channel, session, now);
    }

    /// Records that `session` ([`Sessions::session`]) fetched a Media Playlist of `channel` at `now`.
    pub fn seen(&self, channel: &str, session: u64, now: Instant) {
        let hash = session;
        let mut t = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        if t.covered.get(&hash).is_some_and(|last| now.saturating_duration_since(*last) < self.window) {
            return;
        }
        let full = t.total >= MAX_SESSIONS;
        let sessions = match t.channels.get_mut(channel) {
            Some(s) => s,
            None if full => return untracked(),
            None => t.channels.entry(channel.to_string()).or_default(),
        };
        if let Some(last) = sessions.get_mut(&hash) {
            *last = now;
        } else if full {
            untracked();
        } else {
            sessions.insert(hash, now);
            t.total += 1;
        }
    }

    /// Viewers per channel at `now` (sessions seen within the window), sorted by channel;
    /// forgets expired sessions.
    pub fn counts(&self, now: Instant) -> Vec<(String, u64)> {
        let mut t = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.window;
        t.covered.retain(|_, last| now.saturating_duration_since(*last) < window);
        t.channels.retain(|_, sessions| {
            sessions.retain(|_, last| now.saturating_duration_since(*last) < window);
            !sessions.is_empty()
        });
        t.total = t.channels.values().map(HashMap::len).sum();
        let mut out: Vec<(String, u64)> = t.channels.iter().map(|(c, s)| (c.clone(), s.len() as u64)).collect();
        out.sort();
        out
    }
}

fn untracked() {
    metrics::counter!("onair_viewer_sessions_untracked_total").increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_viewer_is_a_session_seen_within_the_window() {
        let s = Sessions::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        // The same session polling many times is one viewer.
        for i in 0..20 {
            s.seen("demo", s.session(SessionKey::Client(ip, "hls.js")), t0 + Duration::from_millis(200 * i));
        }
        // Another browser on the same address, and two header-named sessions.
        s.seen("demo", s.session(SessionKey::Client(ip, "Firefox")), t0);
        s.seen("demo", s.session(SessionKey::Header("a")), t0);
        s.seen("demo", s.session(SessionKey::Header("b")), t0);
        s.seen("other", s.session(SessionKey::Header("a")), t0);
        assert_eq!(s.counts(t0 + Duration::from_secs(1)), vec![("demo".into(), 4), ("other".into(), 1)]);
        // Only the polling session is still within the window 10 s after t0 + 3.8 s.
        assert_eq!(s.counts(t0 + Duration::from_millis(13_000)), vec![("demo".into(), 1)]);
        assert_eq!(s.counts(t0 + Duration::from_secs(20)), vec![]);
    }

    #[test]
    fn a_heartbeating_player_is_one_viewer_even_when_it_polls_directly() {
        let s = Sessions::new(Duration::from_secs(30));
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let client = s.session(SessionKey::Client(ip, "Chrome"));
        s.seen("demo", client, t0);
        // Two tabs of the same browser: two heartbeating sessions, the polling pair covered.
        s.heartbeat("demo", s.session(SessionKey::Header("tab-1")), client, t0);
        s.heartbeat("demo", s.session(SessionKey::Header("tab-2")), client, t0);
        s.seen("demo", client, t0 + Duration::from_secs(1));
        assert_eq!(s.counts(t0 + Duration::from_secs(2)), vec![("demo".into(), 2)]);
        // Heartbeats stop: the tabs leave the count a window later.
        assert_eq!(s.counts(t0 + Duration::from_secs(31)), vec![]);
    }
}
