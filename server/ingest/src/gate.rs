//! Admission of publishers, shared by every ingest protocol: stream key → channel, the server-wide
//! publisher cap, one publisher per channel (or takeover), then a [`Publisher`] for the broadcast.

use std::net::SocketAddr;
use std::sync::Arc;

use onair_store::{Store, StoreError};

use onair_channels::{Channel, Channels};
use onair_cmaf::PackagerConfig;

use crate::config::{IngestConfig, RtmpConfig, SrtConfig, TranscodeConfig};
use crate::ladder::RungBudget;
use crate::publisher::{PublishPolicy, Publisher};
use crate::ingest_error;

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

impl Refusal {
    /// The `onair_errors_total{kind}` label.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::UnknownKey => "bad_stream_key",
            Refusal::AlreadyLive(_) => "already_live",
            Refusal::ServerFull => "too_many_publishers",
            Refusal::Database => "channel_db",
        }
    }
}

/// Everything ingest is configured with.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Protocol-independent behaviour and limits.
    pub ingest: IngestConfig,
    /// RTMP listener limits.
    pub rtmp: RtmpConfig,
    /// SRT listener limits.
    pub srt: SrtConfig,
    /// The ABR ladder.
    pub transcode: TranscodeConfig,
    /// How media is cut into parts and segments.
    pub packager: PackagerConfig,
}

/// Shared admission state.
#[derive(Debug)]
pub struct Gate {
    config: IngestSettings,
    channels: Channels,
    store: Arc<Store>,
    budget: RungBudget,
}

impl Gate {
    /// A gate over `channels` and `store` with the ingest settings.
    pub fn new(config: IngestSettings, channels: Channels, store: Arc<Store>) -> Arc<Self> {
        let budget = RungBudget::new(config.transcode.max_rungs);
        Arc::new(Gate { config, channels, store, budget })
    }

    /// The ingest settings.
    pub fn config(&self) -> &IngestSettings {
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

    /// The refusal [`Gate::admit`] would give channel `channel` now for being live or the server
    /// being full, if any, without changing anything (a protocol that must finish a handshake
    /// before admitting uses it to answer with its own refusal code first).
    pub fn precheck(&self, channel: &str) -> Option<Refusal> {
        let ingest = &self.config.ingest;
        let broadcast = self.store.get(channel);
        if broadcast.as_ref().is_some_and(|b| b.is_live()) && !ingest.takeover {
            return Some(Refusal::AlreadyLive(channel.to_string()));
        }
        let rejoining = broadcast.is_some_and(|b| b.is_interrupted() || (ingest.takeover && b.is_live()));
        (self.store.live_count() >= ingest.max_publishers && !rejoining).then_some(Refusal::ServerFull)
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
        if self.precheck(&channel.name) == Some(Refusal::ServerFull) {
            ingest_error("too_many_publishers");
            tracing::warn!(%peer, protocol, channel = channel.name, limit = ingest.max_publishers, "publish refused: server has its maximum of publishers");
            return Err(Refusal::ServerFull);
        }
        match self.store.start(&channel.name, ingest.takeover) {
            Ok(session) => {
                let resumed = !session.broadcast().renditions().is_empty();
                tracing::info!(%peer, protocol, channel = channel.name, resumed, "publish started");
                metrics::gauge!("onair_live_channels").set(self.store.live_count() as f64);
                let policy = PublishPolicy {
                    packager: self.config.packager,
                    transcode: self.config.transcode.enabled.then(|| self.config.transcode.clone()),
                    budget: self.budget.clone(),
                    resumable: ingest.reconnect_grace_ms > 0,
                    max_reconfigurations_per_minute: ingest.max_reconfigurations_per_minute,
                };
                Ok(Publisher::new(session, policy))
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
