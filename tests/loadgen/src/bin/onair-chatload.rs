//! `onair-chatload`: simulated chat users against an OnAir node; prints one JSON report.

use std::time::Duration;

use clap::Parser;

/// Chat users that each send one message every --interval-ms and measure delivery latency.
#[derive(Debug, Parser)]
struct Args {
    /// The node, http://HOST:PORT.
    #[arg(long)]
    base: String,
    /// The channel.
    #[arg(long, default_value = "demo")]
    channel: String,
    /// Users (WebSocket connections).
    #[arg(long, default_value_t = 2000)]
    users: usize,
    /// Time between one user's messages, ms.
    #[arg(long, default_value_t = 10_000)]
    interval_ms: u64,
    /// Measured seconds, after every user joined.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Add a client that never reads, with this SO_RCVBUF (bytes).
    #[arg(long)]
    stuck_rcvbuf: Option<u32>,
    /// Characters of padding in each message.
    #[arg(long, default_value_t = 0)]
    pad: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let report = onair_loadgen::chat::run(onair_loadgen::chat::ChatLoad {
        base: a.base.trim_end_matches('/').to_string(),
        channel: a.channel,
        users: a.users,
        interval: Duration::from_millis(a.interval_ms.max(1)),
        duration: Duration::from_secs(a.seconds),
        stuck_rcvbuf: a.stuck_rcvbuf,
        pad: a.pad,
    })
    .await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
