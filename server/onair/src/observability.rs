//! Logs (`tracing`) and Prometheus metrics.
//!
//! Metric names (all prefixed `onair_`):
//! - `live_channels` (gauge), `rtmp_connections`, `srt_connections`, `http_open_connections` (gauges);
//! - `http_refused_total{reason}` (`per_ip`, `server_full`): connections answered 503 at accept;
//! - `transcode_rungs` (gauge): rungs encoding server-wide; `transcode_rungs_refused_total` (over the
//!   budget), `transcode_rungs_dropped_total{reason}` (not cheaper than the source);
//! - `ingest_bytes_total{channel}` (counter; `rate()` gives the ingest bitrate);
//! - `parts_produced_total{rendition}` (counter), `ingest_to_part_seconds` (summary: from the RTMP
//!   message's arrival to its part being servable);
//! - `playlist_requests_total{kind}` with kind `blocking`, `non_blocking` or `multivariant`,
//!   `playlist_block_seconds`, `hinted_part_wait_seconds` (summaries), `http_media_bytes_total`;
//! - `errors_total{kind}` (ingest) and `http_errors_total{kind}` (HTTP);
//! - `target_duration_raised_total`: an encoder's GOP made a segment longer than the target duration;
//! - transcoding: `transcode_dropped_frames_total{rendition,reason}`, `transcode_lag_seconds`,
//!   `transcode_errors_total{kind}`;
//! - `playlist_renders_total`: Media Playlists rendered (each distinct one once, however many
//!   requests it answers);
//! - relays: `relay_requests_total{outcome}` (`held`: answered from this node's store, `pulled`:
//!   the rendition had to be pulled first), `relay_coalesced_waits_total` (requests that waited on a
//!   pull already under way), `relay_upstream_requests_total{kind,outcome}`,
//!   `relay_upstream_bytes_total{kind}`, `relay_failovers_total`, `relay_errors_total{kind}`,
//!   `relay_part_delay_seconds` (import time minus the origin's production time), `relay_channels`,
//!   `relay_renditions{channel}`, `relay_timeline_changes_total` (a rendition continued after a
//!   discontinuity because its new upstream is on another timeline); egress is
//!   `http_media_bytes_total`;
//! - cluster: `viewers` (this node's viewer sessions), `egress_mbps` (HTTP bytes sent, last report
//!   interval), `cluster_nodes` (nodes in the registry view), `registry_up` (1 when the last registry
//!   read succeeded), `registry_view_age_seconds`, `registry_errors_total{kind}` (`publish`,
//!   `snapshot`, `decode`), `usher_decisions_total{outcome}`, `steering_decisions_total{outcome}` (Steering
//!   Manifests served), `playback_requests_total`,
//!   `playback_rate_limited_total`, `viewer_sessions_untracked_total`, `lease_lost_total` (a
//!   publish lease found taken by another node: the local publisher was stopped),
//!   `admin_refused_total{reason}`, `usher_tree_grown_total` (warm requests sent),
//!   `relay_warm_seconds` (a relay's time to hold a channel it was asked to warm).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle (`None` if another
/// recorder was installed first by the embedding program).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|_| handle)
        })
        .as_ref()
}

/// Starts `tracing` output to stderr, filtered by `RUST_LOG` (default `info`). Safe to call twice.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr).try_init();
}

