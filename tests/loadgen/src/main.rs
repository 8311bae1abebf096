//! `onair-loadgen`: N simulated LL-HLS viewers against a Media Playlist (or placed by Usher);
//! prints a JSON report.

use std::time::Duration;

use clap::Parser;
use onair_loadgen::{run, LoadConfig};

/// Simulated LL-HLS viewers (blocking reload + Preload Hint), one connection pool each.
#[derive(Debug, Parser)]
#[command(name = "onair-loadgen", version)]
struct Args {
    /// Media Playlist URL(s); viewers are spread over them in turn.
    #[arg(required = true)]
    playlists: Vec<String>,
    /// Simulated viewers.
    #[arg(long, default_value_t = 100)]
    viewers: usize,
    /// Viewers started per second.
    #[arg(long, default_value_t = 200.0)]
    ramp_per_s: f64,
    /// Length of the run, seconds (ramp-up included).
    #[arg(long, default_value_t = 20)]
    duration_s: u64,
    /// HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1 keep-alive.
    #[arg(long)]
    http2: bool,
    /// Ask this playback API first (http://usher/api/v1/playback/CHANNEL); the PLAYLISTS are then
    /// rendition paths such as source/index.m3u8 on the server Usher answers.
    #[arg(long, value_name = "URL")]
    usher: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let report = run(LoadConfig {
        playlists: a.playlists,
        viewers: a.viewers,
        ramp_per_s: a.ramp_per_s,
        duration: Duration::from_secs(a.duration_s),
        http2: a.http2,
        usher: a.usher,
    })
    .await;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
