//! Where a node gets the channels it does not ingest: the hook a relay implements, so that the
//! same routes serve local and relayed channels.

use std::sync::Arc;

use futures::future::BoxFuture;
use onair_hls::{MultivariantPlaylist, RenditionReport};
use onair_store::{Broadcast, Rendition};

/// Why a relayed channel or rendition cannot be served now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// No upstream has the channel (or the rendition): 404, not cached (it may go live any moment).
    #[error("no upstream has this channel or rendition")]
    NotFound,
    /// Every upstream failed or timed out: 503 (the client tries another server), not cached.
    #[error("every upstream is unreachable")]
    UpstreamDown,
    /// The upstream sent a playlist or media this node cannot use (truncated, malformed, or not
    /// numbered as an OnAir node numbers it): 502, not cached.
    #[error("the upstream sent a playlist or media this relay cannot use")]
    BadUpstream,
    /// The relay holds as many channels as it may (`relay.max_channels`): 503, not cached.
    #[error("this relay is at its channel limit")]
    Full,
}

/// A held rendition and its broadcast, as the routes serve them.
pub type Held = (Arc<Broadcast>, Arc<Rendition>);

/// A source of channels this node does not ingest (a relay pulling them from its upstreams).
/// The origin routes ask it about any channel the store does not hold, and tell it about every
/// request for one it does, so it can release channels nobody watches.
pub trait Upstream: Send + Sync + std::fmt::Debug {
    /// The Multivariant Playlist of a relayed `channel`, mirrored from the upstream (BANDWIDTH
    /// and CODECS as the origin measured them). Errors: [`Unavailable::NotFound`] when the
    /// channel is this node's own (ingested here) or no upstream has it,
    /// [`Unavailable::UpstreamDown`] when the upstreams could not be asked.
    fn multivariant<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<MultivariantPlaylist, Unavailable>>;

    /// Starts pulling `rendition` of `channel` if it is not pulled yet, and resolves once the
    /// store holds it (its init segment and first parts imported). Concurrent callers share one
    /// pull. Errors: [`Unavailable`].
    fn rendition<'a>(&'a self, channel: &'a str, rendition: &'a str) -> BoxFuture<'a, Result<Held, Unavailable>>;

    /// A request for a held rendition of `channel`: keeps a relayed channel from being released.
    /// Does nothing for channels ingested here.
    fn touch(&self, channel: &str, rendition: &str);

    /// Rendition Reports (RFC 8216bis §4.4.5.4) for the renditions of a relayed `channel` that
    /// this node does not pull, as the upstream last reported them; URIs relative to a Media
    /// Playlist (`../{name}/index.m3u8`).
    fn reports(&self, channel: &str) -> Vec<RenditionReport>;

    /// The absolute URL of `rest` (e.g. `dvr.m3u8`) under `channel` on the upstream this node
    /// pulls it from (the first that may have it when not pulled yet), with the viewer's playback
    /// `token` in its path when the request had one, else this node's own upstream token if it
    /// has one. `None` when no upstream is known for the channel. Used to send DVR requests
    /// toward the node that records the channel.
    fn upstream_url(&self, channel: &str, rest: &str, token: Option<&str>) -> Option<String>;
}
