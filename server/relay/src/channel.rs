//! One relayed channel: which upstream it comes from now (and moving to the next when that one
//! fails), its mirrored Multivariant Playlist, the publish session its imports write under, the
//! upstream's Rendition Reports, and the renditions being pulled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use onair_hls::{MediaPlaylist, MultivariantPlaylist, RenditionReport};
use onair_origin::Unavailable;
use onair_store::{Session, SessionRef};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fetch::{FetchError, Fetched};
use crate::pull::PullError;
use crate::Shared;

/// The channel's Multivariant Playlist as the relay knows it.
#[derive(Debug, Clone)]
pub(crate) enum Master {
    /// Being fetched.
    Pending,
    /// Mirrored from the upstream.
    Ready(Arc<MultivariantPlaylist>),
    /// No upstream has it, or none answered.
    Failed(Unavailable),
}

/// A rendition being pulled.
#[derive(Debug)]
pub(crate) struct RenditionPull {
    /// `None` until the first import; then the store's rendition, or why it could not be pulled.
    pub ready: watch::Sender<Option<Result<Arc<onair_store::Rendition>, Unavailable>>>,
    /// Last viewer request, ms since the relay started.
    pub last_request: AtomicU64,
    /// Cancelled to release it: the pull stops and the rendition leaves the store.
    pub stop: CancellationToken,
}

/// A relayed channel.
#[derive(Debug)]
pub(crate) struct ChannelPull {
    pub name: String,
    pub shared: Arc<Shared>,
    /// Base URL of the upstream the channel comes from now.
    upstream: RwLock<String>,
    /// Serialises failovers, so that renditions failing together move once.
    failing_over: tokio::sync::Mutex<()>,
    pub master: watch::Sender<Master>,
    session: Mutex<Option<Session>>,
    session_ref: Mutex<Option<SessionRef>>,
    pub renditions: Mutex<HashMap<String, Arc<RenditionPull>>>,
    /// The upstream's Rendition Reports by URI, from the latest Media Playlist of each pulled rendition.
    reports: Mutex<HashMap<String, RenditionReport>>,
    /// Last viewer request, ms since the relay started.
    pub last_request: AtomicU64,
    /// Cancelled when the channel is released or the relay stops.
    pub stop: CancellationToken,
    /// (generation, this node's Media Sequence Numbers minus the upstream's): 0 until the channel
    /// moves to an upstream on another timeline (a publisher that moved to another origin); the
    /// renditions share it so they stay aligned, and each move bumps the generation.
    pub msn_shift: Mutex<(u64, i64)>,
}

/// The `reports` of renditions not in `pulled`, their LAST-MSN moved by `msn_shift` (LAST-PART
/// counts within the segment: unchanged).
fn unpulled_reports<'a>(reports: impl Iterator<Item = &'a RenditionReport>, pulled: &[String], msn_shift: i64) -> Vec<RenditionReport> {
    reports
        .filter(|r| !pulled.iter().any(|n| r.uri == format!("../{n}/index.m3u8")))
        .map(|r| RenditionReport { last_msn: r.last_msn.saturating_add_signed(msn_shift), ..r.clone() })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ChannelPull {
    pub fn new(name: &str, shared: Arc<Shared>) -> Self {
        let stop = shared.shutdown.child_token();
        ChannelPull {
            name: name.to_string(),
            upstream: RwLock::new(String::new()),
            failing_over: tokio::sync::Mutex::new(()),
            master: watch::Sender::new(Master::Pending),
            session: Mutex::new(None),
            session_ref: Mutex::new(None),
            renditions: Mutex::new(HashMap::new()),
            reports: Mutex::new(HashMap::new()),
            last_request: AtomicU64::new(shared.now_ms()),
            stop,
            msn_shift: Mutex::new((0, 0)),
            shared,
        }
    }

    /// Base URL of the current upstream.
    pub fn upstream(&self) -> String {
        self.upstream.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn touch(&self) {
        self.last_request.store(self.shared.now_ms(), Ordering::Relaxed);
    }

    /// Rendition Reports for the renditions not pulled here, in this node's numbering (the
    /// channel's Media Sequence Number shift applied, as to the renditions it pulls).
    pub fn reports(&self) -> Vec<RenditionReport> {
        let shift = lock(&self.msn_shift).1;
        let pulled: Vec<String> = lock(&self.renditions).keys().cloned().collect();
        unpulled_reports(lock(&self.reports).values(), &pulled, shift)
    }

    /// Keeps the Rendition Reports of `playlist` (a Media Playlist of rendition `from`).
    pub fn note_reports(&self, playlist: &MediaPlaylist) {
        let mut reports = lock(&self.reports);
        for r in &playlist.rendition_reports {
            reports.insert(r.uri.clone(), r.clone());
        }
    }

    /// The session reference rendition pulls claim their writers with.
    pub fn session_ref(&self) -> Option<SessionRef> {
        lock(&self.session_ref).clone()
    }

    /// Starts the local broadcast. Errors: [`Unavailable::NotFound`] if a publisher ingests the
    /// channel on this node (the local broadcast wins).
    pub fn start_session(&self) -> Result<(), Unavailable> {
        let session = self.shared.store.start_relayed(&self.name).map_err(|_| Unavailable::NotFound)?;
        *lock(&self.session_ref) = Some(session.reference());
        *lock(&self.session) = Some(session);
        Ok(())
    }

    /// The upstream ended the broadcast: so does this node (EXT-X-ENDLIST everywhere).
    pub fn end(&self) {
        if let Some(s) = lock(&self.session).as_ref() {
            if s.end() {
                tracing::info!(channel = self.name, "upstream ended the broadcast");
            }
        }
    }

    /// True when the store's broadcast of the channel is no longer the one this pull writes: a
    /// publisher on this node took the channel over.
    pub fn replaced(&self) -> bool {
        let current = self.shared.store.get(&self.name);
        lock(&self.session).as_ref().is_some_and(|s| !current.is_some_and(|b| Arc::ptr_eq(&b, s.broadcast())))
    }

    /// True once the broadcast ended here.
    pub fn ended(&self) -> bool {
        lock(&self.session).as_ref().is_some_and(|s| !s.owns())
    }

    /// Drops the channel from the store (nobody watches it).
    pub fn release(&self) {
        self.stop.cancel();
        if let Some(s) = lock(&self.session).take() {
            self.shared.store.release(s);
        }
        *lock(&self.session_ref) = None;
    }

    /// Finds the first upstream, in order (the control plane's routes, then the configured list)
    /// starting after `after` (all of them, from the first, when `None`), that has the channel's
    /// Multivariant Playlist; makes it current. Errors: [`Unavailable::NotFound`] when every
    /// upstream answered 404 (or there is none), [`Unavailable::UpstreamDown`] when some could
    /// not be asked.
    pub async fn find_upstream(&self, after: Option<&str>) -> Result<MultivariantPlaylist, Unavailable> {
        let list = self.shared.upstreams_for(&self.name);
        let start = after.and_then(|a| list.iter().position(|u| u == a)).map_or(0, |i| i + 1);
        let mut down = false;
        for i in 0..list.len() {
            let base = &list[(start + i) % list.len()];
            let url = self.shared.channel_url(base, &self.name, "master.m3u8");
            match self.shared.fetcher.get(&url, self.shared.probe_timeout(), "playlist").await {
                Ok(f) => match MultivariantPlaylist::parse(&String::from_utf8_lossy(&f.body)) {
                    Ok(m) if !m.variants.is_empty() => {
                        *self.upstream.write().unwrap_or_else(|e| e.into_inner()) = base.clone();
                        return Ok(m);
                    }
                    Ok(_) | Err(_) => {
                        crate::count_error("bad_multivariant");
                        tracing::warn!(channel = self.name, upstream = base, "upstream sent an unusable Multivariant Playlist");
                        down = true;
                    }
                },
                Err(FetchError::Status(404)) => {}
                Err(e) => {
                    tracing::debug!(channel = self.name, upstream = base, error = %e, "upstream cannot give the channel");
                    down = true;
                }
            }
        }
        Err(if down { Unavailable::UpstreamDown } else { Unavailable::NotFound })
    }

    /// The current upstream `from` failed: moves to the next one that has the channel, once for
    /// every rendition that saw it fail. Counted in `onair_relay_failovers_total`.
    pub async fn failover(&self, from: &str, why: &FetchError) {
        let _one = self.failing_over.lock().await;
        if self.upstream() != from {
            return;
        }
        match self.find_upstream(Some(from)).await {
            Ok(_) if self.upstream() != from => {
                metrics::counter!("onair_relay_failovers_total").increment(1);
                tracing::warn!(channel = self.name, from, to = self.upstream(), error = %why, "upstream failed; moved to the next");
            }
            _ => {
                tracing::warn!(channel = self.name, upstream = from, error = %why, "upstream failed and no other has the channel; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }

    /// GETs `path` (below `/hls/{channel}/`) from the current upstream within `timeout`. A
    /// transport error, a 5xx, or a timeout that a quick probe confirms, moves the channel to the
    /// next upstream. Errors: [`PullError::Fetch`].
    pub async fn get(&self, path: String, timeout: Duration, kind: &'static str) -> Result<Fetched, PullError> {
        let base = self.upstream();
        let url = self.shared.channel_url(&base, &self.name, &path);
        let started = Instant::now();
        match self.shared.fetcher.get(&url, timeout, kind).await {
            Ok(f) => Ok(f),
            Err(e) => {
                let dead = match &e {
                    FetchError::Transport(_) => true,
                    FetchError::Status(s) => *s >= 500 && *s != 503 || *s == 503 && started.elapsed() < timeout / 2,
                    FetchError::Timeout(_) => !self.alive(&base).await,
                    FetchError::TooLarge => false,
                };
                if dead {
                    self.failover(&base, &e).await;
                }
                Err(PullError::Fetch(e))
            }
        }
    }

    /// True if `base` answers a non-blocking request for the channel quickly (the publisher may
    /// simply have paused).
    async fn alive(&self, base: &str) -> bool {
        let url = self.shared.channel_url(base, &self.name, "master.m3u8");
        self.shared.fetcher.get(&url, self.shared.probe_timeout(), "playlist").await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_of_renditions_not_pulled_follow_the_channels_shift() {
        let report = |name: &str, last_msn: u64| RenditionReport { uri: format!("../{name}/index.m3u8"), last_msn, last_part: 2 };
        let upstream = [report("source", 10), report("audio", 11), report("480p", 9)];
        let got = unpulled_reports(upstream.iter(), &["source".to_string()], 0);
        assert_eq!(got, [report("audio", 11), report("480p", 9)]);
        // After a move to an origin numbering from 3, this node continues from 140: +137.
        let got = unpulled_reports([report("audio", 4)].iter(), &[], 137);
        assert_eq!(got, [report("audio", 141)]);
    }
}
