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
    /// Another node of the cluster holds the channel's publish lease (its publisher is live
    /// there).
    #[error("channel {channel} is live on node {node}")]
    LiveElsewhere {
        /// The channel.
        channel: String,
        /// The node holding the lease.
        node: String,
    },
    /// The cluster registry could not be asked whether the channel is live elsewhere.
    #[error("cannot confirm that the channel is not live elsewhere (cluster registry unreachable)")]
    LeaseUnavailable,
}

/// Why a [`PublishLease`] was not granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseRefusal {
    /// Another node holds it.
    HeldBy(String),
    /// The registry did not answer.
    Unavailable,
}

/// Cluster-wide exclusivity of a stream key (a lease in the cluster registry), asked before a
/// publisher is admitted on this node; the implementation renews it while the publisher is live
/// here and gives it up when it leaves.
pub trait PublishLease: Send + Sync + std::fmt::Debug {
    /// Takes (or keeps) the lease of `channel` for this node. Errors: [`LeaseRefusal`].
    fn acquire<'a>(&'a self, channel: &'a str) -> futures::future::BoxFuture<'a, Result<(), LeaseRefusal>>;
}

impl Refusal {
    /// The `onair_errors_total{kind}` label.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::UnknownKey => "bad_stream_key",
            Refusal::AlreadyLive(_) => "already_live",
            Refusal::ServerFull => "too_many_publishers",
            Refusal::Database => "channel_db",
            Refusal::LiveElsewhere { .. } => "live_elsewhere",
            Refusal::LeaseUnavailable => "lease_unavailable",
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
    lease: Option<Arc<dyn PublishLease>>,
}

impl Gate {
    /// A gate over `channels` and `store` with the ingest settings; with `lease`, a publisher is
    /// admitted only with the channel's cluster-wide lease.
    pub fn new(config: IngestSettings, channels: Channels, store: Arc<Store>, lease: Option<Arc<dyn PublishLease>>) -> Arc<Self> {
        let budget = RungBudget::new(config.transcode.max_rungs);
        Arc::new(Gate { config, channels, store, budget, lease })
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
        // A channel this node relays is live elsewhere: the cluster's publish lease decides.
        let broadcast = self.store.get(channel).filter(|b| !b.is_relayed());
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
        if let Some(lease) = &self.lease {
            match lease.acquire(&channel.name).await {
                Ok(()) => {}
                Err(LeaseRefusal::HeldBy(node)) => {
                    ingest_error("live_elsewhere");
                    tracing::warn!(%peer, protocol, channel = channel.name, node, "publish refused: the channel is live on another node");
                    return Err(Refusal::LiveElsewhere { channel: channel.name, node });
                }
                Err(LeaseRefusal::Unavailable) => {
                    ingest_error("lease_unavailable");
                    tracing::warn!(%peer, protocol, channel = channel.name, "publish refused: the cluster registry cannot confirm the channel is not live elsewhere");
                    return Err(Refusal::LeaseUnavailable);
                }
            }
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
