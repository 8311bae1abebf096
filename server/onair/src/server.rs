//! Starting the all-in-one server: channel database, RTMP listener, HTTP listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use onair_store::{Store, TimelineConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::channels::{Channel, ChannelError, Channels};
use crate::config::Config;
use crate::ingest::gate::Gate;
use crate::ingest::rtmp::RtmpIngest;
use crate::observability::{prometheus, CountingListener};

/// Errors from starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// "HTTP", "RTMP" or "SRT".
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The channel database failed.
    #[error(transparent)]
    Channels(#[from] ChannelError),
}

/// A running server. Dropping it stops the listeners.
#[derive(Debug)]
pub struct Running {
    /// Bound HTTP address (useful when configured with port 0).
    pub http_addr: SocketAddr,
    /// Bound RTMP address.
    pub rtmp_addr: SocketAddr,
    /// Bound SRT address (UDP).
    pub srt_addr: SocketAddr,
    /// The `demo` channel, created on first start; `Some` only when it was created by this start.
    pub created_demo: Option<Channel>,
    /// The channel database.
    pub channels: Channels,
    /// The in-RAM store.
    pub store: Arc<Store>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits until a listener task ends (they run until the process stops).
    pub async fn wait(mut self) {
        if let Some(t) = self.tasks.pop() {
            let _ = t.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Opens the channel database (creating channel `demo` if there are no channels yet), binds both
/// listeners and spawns their tasks. Errors: [`StartError`].
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let _ = prometheus();
    let channels = Channels::open(&config.data_dir).await?;
    let created_demo = if channels.list().await?.is_empty() { Some(channels.create("demo").await?) } else { None };
    let store = Arc::new(Store::new(TimelineConfig {
        part_target: f64::from(config.hls.part_target_ms) / 1000.0,
        min_target_duration: config.hls.min_target_duration_s,
        window_segments: config.hls.window_segments,
    }));
    let http = TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| StartError::Bind { what: "HTTP", addr: config.http_addr, source })?;
    let rtmp = TcpListener::bind(config.rtmp_addr)
        .await
        .map_err(|source| StartError::Bind { what: "RTMP", addr: config.rtmp_addr, source })?;
    let http_addr = http.local_addr().map_err(|source| StartError::Bind { what: "HTTP", addr: config.http_addr, source })?;
    let rtmp_addr = rtmp.local_addr().map_err(|source| StartError::Bind { what: "RTMP", addr: config.rtmp_addr, source })?;
    let (srt_listener, srt_incoming, srt_addr) =
        crate::ingest::srt::bind(config.srt_addr).await.map_err(|source| StartError::Bind { what: "SRT", addr: config.srt_addr, source })?;
    let gate = Gate::new(config.clone(), channels.clone(), store.clone());
    let ingest = RtmpIngest::new(gate.clone());
    let srt = crate::ingest::srt::SrtIngest::new(gate.clone());
    let web = crate::http::Web {
        playback: config.playback.clone(),
        signer: crate::playback::Signer::new(config.playback.token_secret.as_deref(), Duration::from_secs(config.playback.token_ttl_s)),
        player_dir: config.web.player_dir.clone(),
    };
    if !config.web.player_dir.join("onair_player.js").exists() {
        tracing::warn!(dir = %config.web.player_dir.display(), "the Wasm player is not built; the watch page will not play (run: bash infra/setup.sh)");
    }
    let app = crate::http::app(store.clone(), web);
    let sweeper_store = store.clone();
    let grace = Duration::from_millis(config.ingest.reconnect_grace_ms);
    let tasks = vec![
        tokio::spawn(async move {
            // Interrupted broadcasts end after the grace period; ended ones stay readable for a
            // minute so players can finish, then are freed.
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                for channel in sweeper_store.sweep(grace, Duration::from_secs(60)) {
                    tracing::info!(channel, "publisher did not come back within the grace period; broadcast ended");
                    metrics::gauge!("onair_live_channels").set(sweeper_store.live_count() as f64);
                }
            }
        }),
        tokio::spawn(ingest.run(rtmp)),
        tokio::spawn(srt.run(srt_listener, srt_incoming)),
        tokio::spawn(async move {
            if let Err(e) = axum::serve(CountingListener(http), app).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }),
    ];
    tracing::info!(%http_addr, %rtmp_addr, %srt_addr, data_dir = %config.data_dir.display(), "OnAir is up");
    Ok(Running { http_addr, rtmp_addr, srt_addr, created_demo, channels, store, tasks })
}
