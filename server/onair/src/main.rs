//! `onair`: the command-line front of the OnAir server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use onair_channels::Channels;
use onair_db::Database;
use onair::config::{CliOverrides, ClusterOverrides, Config, RelayOverrides, TlsOverrides};

/// OnAir: live video with LL-HLS. RTMP in, CMAF parts in RAM, LL-HLS out.
#[derive(Debug, Parser)]
#[command(name = "onair", version)]
struct Cli {
    /// TOML configuration file (default: ./onair.toml if present).
    #[arg(long, global = true, env = "ONAIR_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the embedded database (env ONAIR_DATA_DIR).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database shared by the ingest nodes, postgres://USER:PASSWORD@HOST:PORT/DB (env
    /// ONAIR_DATABASE; default: SQLite in the data directory).
    #[arg(long, global = true, value_name = "URL")]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// HTTP listen address (env ONAIR_HTTP_ADDR).
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// RTMP listen address (env ONAIR_RTMP_ADDR).
    #[arg(long)]
    rtmp_addr: Option<SocketAddr>,
    /// SRT listen address, UDP (env ONAIR_SRT_ADDR).
    #[arg(long)]
    srt_addr: Option<SocketAddr>,
    /// Pull channels this node does not ingest from this node (an origin or another relay), e.g.
    /// http://origin:8080; repeat for fallbacks, tried in order (env ONAIR_RELAY__UPSTREAMS='["URL",…]').
    #[arg(long = "upstream", value_name = "URL")]
    upstreams: Vec<String>,
    /// Open no RTMP or SRT listener: only relay (env ONAIR_NO_INGEST=true).
    #[arg(long)]
    no_ingest: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, clap::Args)]
struct TlsArgs {
    /// HTTPS listen address (env ONAIR_TLS__ADDR; default 0.0.0.0:8443), on with --tls-cert and --tls-key.
    #[arg(long)]
    https_addr: Option<SocketAddr>,
    /// PEM certificate chain, leaf first, e.g. fullchain.pem (env ONAIR_TLS__CERT).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate, e.g. privkey.pem (env ONAIR_TLS__KEY).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    fn overrides(&self) -> TlsOverrides {
        TlsOverrides { addr: self.https_addr, cert: self.tls_cert.clone(), key: self.tls_key.clone() }
    }
}

#[derive(Debug, clap::Args)]
struct ClusterArgs {
    /// Cluster registry shared by every node and Usher: redis://[:PASSWORD@]HOST[:PORT][/DB] or
    /// rediss://… (env ONAIR_CLUSTER__REGISTRY; default: this process only).
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
    /// This node's id in the cluster (env ONAIR_CLUSTER__NODE_ID; default HOSTNAME-HTTPPORT).
    #[arg(long)]
    node_id: Option<String>,
}

#[derive(Debug, clap::Args)]
struct UsherArgs {
    /// HTTP listen address (env ONAIR_HTTP_ADDR).
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Cluster registry: redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss://… (env ONAIR_CLUSTER__REGISTRY).
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the all-in-one server (RTMP/SRT ingest + LL-HLS origin; a relay too with --upstream).
    Serve(ServeArgs),
    /// Run a pure edge: relays channels from its --upstream nodes, no ingest (serve --no-ingest).
    Edge(ServeArgs),
    /// Run a standalone Usher: the playback API answered from the cluster registry (--registry).
    Usher(UsherArgs),
    /// Drain the node of this configuration (or --url): it stops taking viewers and publishers,
    /// answers playlists with 503 so players and relays move, leaves the registry and exits.
    Drain {
        /// The node's base URL (default: http://127.0.0.1:PORT of its http_addr).
        #[arg(long)]
        url: Option<String>,
    },
    /// Manage channels and stream keys.
    Channel {
        #[command(subcommand)]
        action: ChannelAction,
    },
    /// Print the effective configuration as TOML.
    Config,
}

#[derive(Debug, Subcommand)]
enum ChannelAction {
    /// Create a channel and print its stream key.
    Create {
        /// Channel name: 1-64 of a-z, 0-9, _ and -.
        name: String,
        /// SRT passphrase (10-79 characters) publishers of this channel must encrypt with.
        #[arg(long)]
        srt_passphrase: Option<String>,
    },
    /// List channels with their stream keys.
    List,
    /// Give the channel a new stream key and print it (the old key is refused from now on; a
    /// publisher already live stays until it disconnects).
    RotateKey {
        /// The channel.
        name: String,
    },
    /// Delete the channel (its stream key is refused from now on).
    Delete {
        /// The channel.
        name: String,
    },
    /// Create a chat token for the channel's broadcaster, or with NAME for a moderator; printed
    /// once (the database keeps its hash). It moderates the channel's chat: never the stream key.
    Moderator {
        /// The channel.
        channel: String,
        /// The moderator's chat name (3-25 of A-Z, a-z, 0-9 and _); none: the broadcaster's token.
        name: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    onair::observability::init_logging();
    let cli = Cli::parse();
    let mut overrides = CliOverrides { data_dir: cli.data_dir.clone(), database: cli.database.clone(), ..Default::default() };
    if let Command::Serve(args) | Command::Edge(args) = &cli.command {
        overrides.http_addr = args.http_addr;
        overrides.rtmp_addr = args.rtmp_addr;
        overrides.srt_addr = args.srt_addr;
        let edge = matches!(cli.command, Command::Edge(_));
        overrides.no_ingest = (args.no_ingest || edge).then_some(true);
        overrides.relay = (!args.upstreams.is_empty()).then(|| RelayOverrides { upstreams: args.upstreams.clone() });
        overrides.cluster = ClusterOverrides { registry: args.cluster.registry.clone(), node_id: args.cluster.node_id.clone() };
        overrides.tls = args.tls.overrides();
    }
    if let Command::Usher(args) = &cli.command {
        overrides.http_addr = args.http_addr;
        overrides.cluster.registry = args.registry.clone();
        overrides.tls = args.tls.overrides();
    }
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    if matches!(cli.command, Command::Edge(_)) && config.relay.upstreams.is_empty() && config.cluster.registry.is_none() {
        anyhow::bail!("onair edge needs at least one --upstream URL (or relay.upstreams in the configuration), or a --registry to find channels in");
    }
    match cli.command {
        Command::Config => print!("{}", config.to_toml()),
        Command::Channel { action } => {
            let db = Database::open(config.database.as_deref(), &config.data_dir).await?;
            let channels = Channels::new(db.clone());
            match action {
                ChannelAction::Create { name, srt_passphrase } => {
                    let c = channels.create_with(&name, srt_passphrase.as_deref()).await?;
                    println!("stream key for channel {}: {}", c.name, c.stream_key);
                }
                ChannelAction::List => {
                    for c in channels.list().await? {
                        println!("{}\t{}", c.name, c.stream_key);
                    }
                }
                ChannelAction::RotateKey { name } => {
                    let c = channels.rotate_key(&name).await?.with_context(|| format!("no channel {name}"))?;
                    println!("stream key for channel {}: {}", c.name, c.stream_key);
                }
                ChannelAction::Delete { name } => {
                    anyhow::ensure!(channels.delete(&name).await?, "no channel {name}");
                    println!("channel {name} deleted");
                }
                ChannelAction::Moderator { channel, name } => {
                    channels.by_name(&channel).await?.with_context(|| format!("no channel {channel}: `onair channel create {channel}` first"))?;
                    let (name, role) = match name {
                        Some(n) => (n, onair_chat::protocol::Role::Moderator),
                        None => (channel.clone(), onair_chat::protocol::Role::Broadcaster),
                    };
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
                    let token = onair_chat::ChatStore::new(db).create_moderator(&channel, &name, role, now).await?;
                    println!("chat {} token for channel {channel} ({name}): {token}", role.as_str());
                }
            }
        }
        Command::Drain { url } => drain(&config, url).await?,
        Command::Usher(_) => {
            let mut running = onair::server::start_usher(&config).await.context("starting Usher")?;
            let host = config.public_host.clone().unwrap_or_else(|| display_host(running.http_addr));
            println!("usher http://{host}:{}/api/v1/playback/CHANNEL (playback API), /api/v1/cluster (nodes)", running.http_addr.port());
            if let Some(https) = running.https_addr {
                println!("https://{host}:{}/ (HTTP/2 and HTTP/1.1 over TLS)", https.port());
            }
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM handler")?;
            tokio::select! {
                failed = running.wait() => failed.context("Usher stopped")?,
                _ = tokio::signal::ctrl_c() => running.shutdown().await,
                _ = terminate.recv() => running.shutdown().await,
            }
        }
        Command::Serve(_) | Command::Edge(_) => {
            let mut running = onair::server::start(&config).await.context("starting the server")?;
            let http_host = config.public_host.clone().unwrap_or_else(|| display_host(running.http_addr));
            if let (Some(rtmp), Some(srt)) = (running.rtmp_addr, running.srt_addr) {
                print_ingest(&config, &running, rtmp, srt);
            }
            if let Some(relay) = &running.relay {
                match relay.upstreams() {
                    list if list.is_empty() => println!("relaying channels from the nodes the cluster registry shows holding them"),
                    list => println!("relaying channels from {}", list.join(", ")),
                }
            }
            let http_port = running.http_addr.port();
            println!("watch http://{http_host}:{http_port}/ (channels), http://{http_host}:{http_port}/watch/CHANNEL (player), http://{http_host}:{http_port}/hls/CHANNEL/master.m3u8 (LL-HLS)");
            if let Some(https) = running.https_addr {
                println!("watch https://{http_host}:{}/watch/CHANNEL (HTTP/2 and HTTP/1.1 over TLS)", https.port());
            }
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM handler")?;
            let drain = running.drain_signal();
            tokio::select! {
                failed = running.wait() => {
                    failed.context("the server stopped")?;
                }
                _ = tokio::signal::ctrl_c() => running.shutdown().await,
                _ = terminate.recv() => running.shutdown().await,
                _ = drain.cancelled() => running.shutdown().await,
            }
        }
    }
    Ok(())
}

/// `onair drain`: asks the node to drain (admin API, bearer `admin.token`), then waits until it
/// stopped answering or `admin.drain_timeout_s` passed.
async fn drain(config: &Config, url: Option<String>) -> anyhow::Result<()> {
    let token = config.admin.token.as_deref().context("onair drain needs admin.token (the node's admin bearer token) in the configuration")?;
    let base = url.unwrap_or_else(|| format!("http://127.0.0.1:{}", config.http_addr.port()));
    let base = base.trim_end_matches('/');
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
    let started = std::time::Instant::now();
    let response = http.post(format!("{base}/admin/v1/drain")).bearer_auth(token).send().await.with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    if status != reqwest::StatusCode::ACCEPTED {
        anyhow::bail!("{base} refused the drain: {status} {}", response.text().await.unwrap_or_default().trim());
    }
    println!("{base} is draining");
    let limit = std::time::Duration::from_secs(config.admin.drain_timeout_s);
    while started.elapsed() < limit {
        if http.get(format!("{base}/healthz")).send().await.is_err() {
            println!("{base} stopped answering {} ms after the drain request", started.elapsed().as_millis());
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("{base} still answers {} s after the drain request", limit.as_secs())
}

/// Prints where and how to publish.
fn print_ingest(config: &Config, running: &onair::server::Running, rtmp: SocketAddr, srt: SocketAddr) {
    let host = config.public_host.clone().unwrap_or_else(|| display_host(rtmp));
    let rtmp_url = format!("rtmp://{host}:{}/{}", rtmp.port(), config.rtmp.app);
    match &running.created_demo {
        Some(demo) => {
            println!("stream key for channel demo: {}", demo.stream_key);
            println!("OBS: Settings > Stream > Service: Custom...  Server: {rtmp_url}  Stream Key: {}", demo.stream_key);
            println!(
                "ffmpeg: ffmpeg -re -i INPUT -c:v libx264 -preset veryfast -tune zerolatency -g 50 -c:a aac -f flv {rtmp_url}/{}",
                demo.stream_key
            );
        }
        None => println!("channels exist already: `onair channel list` shows their stream keys"),
    }
    println!(
        "publish to {rtmp_url}/STREAM_KEY or srt://{host}:{}?streamid=publish:{}/STREAM_KEY",
        srt.port(),
        config.rtmp.app,
    );
}

fn display_host(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        addr.ip().to_string()
    }
}
