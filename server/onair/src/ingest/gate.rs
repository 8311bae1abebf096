//! Admission of publishers, shared by every ingest protocol: stream key → channel, the server-wide
//! publisher cap, one publisher per channel (or takeover), then a [`Publisher`] for the broadcast.

use std::net::SocketAddr;
use std::sync::Arc;

use onair_store::{Store, StoreError};

use crate::channels::{Channel, Channels};
use crate::config::Config;
use crate::ingest::publisher::Publisher;
use crate::observability::ingest_error;

/// Why a publish was refused. Each protocol answers with its own code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No channel has this stream key.
    #[error("unknown stream key")]
    UnknownKey,
    /// The channel has a publisher and takeover is off.
    #[error("channel {0} is already live")]
    AlreadyLive(String),
    /// `ingest.max_publishers` channels are live.
    #[error("the server has its maximum of publishers")]
    ServerFull,
    /// The channel database failed.
    #[error("channel database error")]
    Database,
}

/// Shared admission state.
#[derive(Debug)]
pub struct Gate {
    config: Config,
    channels: Channels,
    store: Arc<Store>,
}

impl Gate {
    /// A gate over `channels` and `store` with the server's configuration.
    pub fn new(config: Config, channels: Channels, store: Arc<Store>) -> Arc<Self> {
        Arc::new(Gate { config, channels, store })
    }

    /// The server configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The channel whose stream key is `key`, if any. Errors: [`Refusal::Database`].
    pub async fn channel(&self, key: &str) -> Result<Option<Channel>, Refusal> {
        self.channels.by_key(key).await.map_err(|e| {
            ingest_error("channel_db");
            tracing::error!(error = %e, "channel database error");
            Refusal::Database
        })
    }

    /// Admits a publisher with stream key `key` from `peer` over `protocol`, logging and counting
    /// a refusal. Errors: [`Refusal`].
    pub async fn admit(&self, key: &str, peer: SocketAddr, protocol: &'static str) -> Result<Publisher, Refusal> {
        let Some(channel) = self.channel(key).await? else {
            ingest_error("bad_stream_key");
            tracing::warn!(%peer, protocol, "publish refused: unknown stream key");
            return Err(Refusal::UnknownKey);
        };
        let ingest = &self.config.ingest;
        let rejoining = self.store.get(&channel.name).is_some_and(|b| b.is_interrupted() || (ingest.takeover && b.is_live()));
        if self.store.live_count() >= ingest.max_publishers && !rejoining {
            ingest_error("too_many_publishers");
            tracing::warn!(%peer, protocol, channel = channel.name, limit = ingest.max_publishers, "publish refused: server has its maximum of publishers");
            return Err(Refusal::ServerFull);
        }
        match self.store.start(&channel.name, ingest.takeover) {
            Ok((broadcast, _session)) => {
                let resumed = !broadcast.renditions().is_empty();
                tracing::info!(%peer, protocol, channel = channel.name, resumed, "publish started");
                metrics::gauge!("onair_live_channels").set(self.store.live_count() as f64);
                let hls = &self.config.hls;
                let cfg = onair_cmaf::PackagerConfig {
                    part_target_ms: hls.part_target_ms,
                    min_segment_ms: hls.min_segment_ms,
                    audio_only_segment_ms: hls.min_target_duration_s * 1000,
                };
                let transcode = self.config.transcode.enabled.then(|| self.config.transcode.clone());
                Ok(Publisher::new(broadcast, cfg, transcode, ingest.reconnect_grace_ms > 0))
            }
            Err(StoreError::AlreadyLive(name)) => {
                ingest_error("already_live");
                tracing::warn!(%peer, protocol, channel = name, "publish refused: channel is already live");
                Err(Refusal::AlreadyLive(name))
            }
        }
    }

    /// Updates the live-channels gauge (after a publisher left).
    pub fn update_live_gauge(&self) {
        metrics::gauge!("onair_live_channels").set(self.store.live_count() as f64);
    }
}
