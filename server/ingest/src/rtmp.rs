//! The RTMP listener: sockets around the sans-IO [`onair_rtmp::ServerSession`].
//!
//! Each connection runs in its own task, so a bad peer can only end its own connection. Limits:
//! the handshake and publish must complete within `handshake_timeout_ms`; a connection silent for
//! `idle_timeout_ms` is closed; at most `max_connections` connections at once; writes to a peer
//! that stops reading time out instead of blocking forever.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onair_rtmp::{Limits, ServerSession, SessionEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::{IngestConfig, RtmpConfig};
use crate::gate::{Gate, Refusal};
use crate::limits::{BitrateLimit, ConnectionLimit};
use crate::publisher::Publisher;
use crate::ingest_error;

/// What every RTMP connection task needs.
#[derive(Debug)]
pub struct RtmpIngest {
    /// Settings and limits.
    config: RtmpConfig,
    /// Protocol-independent ingest settings.
    ingest: IngestConfig,
    /// Admission of publishers.
    gate: Arc<Gate>,
    /// Open connections, capped at `rtmp.max_connections`.
    connections: ConnectionLimit,
}

impl RtmpIngest {
    /// Shared ingest state.
    pub fn new(gate: Arc<Gate>) -> Arc<Self> {
        Arc::new(RtmpIngest {
            connections: ConnectionLimit::new(gate.config().rtmp.max_connections, "onair_rtmp_connections"),
            config: gate.config().rtmp.clone(),
            ingest: gate.config().ingest.clone(),
            gate,
        })
    }

    /// Accepts connections until `shutdown` is cancelled.
    pub async fn run(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.cancelled() => return,
            };
            let (stream, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "RTMP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = self.connections.try_take() else {
                ingest_error("too_many_connections");
                tracing::warn!(%peer, limit = self.config.max_connections, "RTMP connection refused: too many connections");
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let _slot = slot; // given back even if the task panics
                let _ = stream.set_nodelay(true);
                if let Err(reason) = this.connection(stream, peer).await {
                    tracing::info!(%peer, "RTMP connection closed: {reason}");
                }
            });
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_chunk_size: self.config.max_chunk_size,
            max_message_size: self.config.max_message_size,
            max_chunk_streams: self.config.max_chunk_streams,
            ..Limits::default()
        }
    }

    /// Runs one connection to its end; the error string says why it ended.
    async fn connection(&self, mut stream: TcpStream, peer: SocketAddr) -> Result<(), String> {
        let mut session = ServerSession::new(self.limits());
        let mut publisher: Option<Publisher> = None;
        let mut buf = vec![0u8; 64 * 1024];
        let mut bitrate = BitrateLimit::new(self.ingest.max_bitrate_kbps, Duration::from_secs(5));
        let mut session_rx: Option<tokio::sync::watch::Receiver<onair_store::BroadcastState>> = None;
        let opened = Instant::now();
        let handshake_limit = Duration::from_millis(self.config.handshake_timeout_ms);
        let idle_limit = Duration::from_millis(self.config.idle_timeout_ms);
        let result = loop {
            let limit = if publisher.is_none() {
                match handshake_limit.checked_sub(opened.elapsed()) {
                    Some(left) => left.min(idle_limit),
                    None => {
                        ingest_error("handshake_timeout");
                        break Err("did not start publishing within the handshake timeout".to_string());
                    }
                }
            } else {
                idle_limit
            };
            let taken_over = async {
                match session_rx.as_mut() {
                    Some(rx) => {
                        let _ = rx.changed().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let read = tokio::select! {
                r = tokio::time::timeout(limit, stream.read(&mut buf)) => r,
                _ = taken_over => {
                    if publisher.as_ref().is_some_and(|p| !p.owns_broadcast()) {
                        ingest_error("taken_over");
                        break Err("another publisher took the channel over".to_string());
                    }
                    session_rx = publisher.as_ref().map(|p| p.broadcast().subscribe_state());
                    continue;
                }
            };
            let n = match read {
                Ok(Ok(0)) => break Ok(()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => break Err(format!("read error: {e}")),
                Err(_) => {
                    ingest_error(if publisher.is_some() { "idle_timeout" } else { "handshake_timeout" });
                    break Err("timed out waiting for data".to_string());
                }
            };
            let received = Instant::now();
            if let Some(p) = &publisher {
                metrics::counter!("onair_ingest_bytes_total", "channel" => p.broadcast().channel().to_string()).increment(n as u64);
            }
            if let Some(rate) = bitrate.record(received, n as u64) {
                ingest_error("bitrate_exceeded");
                break Err(format!("ingest bit rate {} kbit/s is above the limit of {} kbit/s", rate / 1000, self.ingest.max_bitrate_kbps));
            }
            if let Err(e) = session.feed(&buf[..n]) {
                ingest_error("rtmp_protocol");
                let _ = self.flush(&mut stream, &mut session).await;
                break Err(format!("protocol error: {e}"));
            }
            let mut refused = None;
            while let Some(event) = session.poll_event() {
                match event {
                    SessionEvent::Connected { app } => tracing::debug!(%peer, app, "RTMP connect"),
                    SessionEvent::PublishRequested { app, stream_key } => {
                        publisher = self.authorize(&mut session, peer, &app, &stream_key).await;
                        session_rx = publisher.as_ref().map(|p| p.broadcast().subscribe_state());
                    }
                    SessionEvent::Video { timestamp, payload } => {
                        if let Some(p) = publisher.as_mut() {
                            if let Err(e) = p.on_video(timestamp, &payload, received) {
                                refused = Some(e);
                                break;
                            }
                        }
                    }
                    SessionEvent::Audio { timestamp, payload } => {
                        if let Some(p) = publisher.as_mut() {
                            if let Err(e) = p.on_audio(timestamp, &payload, received) {
                                refused = Some(e);
                                break;
                            }
                        }
                    }
                    SessionEvent::Unpublished => {
                        if let Some(p) = publisher.take() {
                            tracing::info!(%peer, channel = p.broadcast().channel(), "publish ended by the encoder");
                            p.finish();
                        }
                    }
                }
            }
            if let Some(e) = refused {
                ingest_error(e.kind());
                let channel = publisher.as_ref().map(|p| p.broadcast().channel().to_string());
                tracing::warn!(%peer, channel, error = %e, "publisher disconnected");
                break Err(format!("publish refused: {e}"));
            }
            if let Err(e) = self.flush(&mut stream, &mut session).await {
                break Err(e);
            }
            if session.is_closed() {
                break Err("publish refused".to_string());
            }
        };
        if let Some(p) = publisher.take() {
            tracing::info!(%peer, channel = p.broadcast().channel(), grace_ms = self.ingest.reconnect_grace_ms, "publisher disconnected; waiting for it to come back");
            p.interrupt();
        }
        self.gate.update_live_gauge();
        result
    }

    /// Writes pending protocol output; a peer that does not read within the idle timeout is dropped.
    async fn flush(&self, stream: &mut TcpStream, session: &mut ServerSession) -> Result<(), String> {
        let out = session.take_output();
        if out.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(Duration::from_millis(self.config.idle_timeout_ms), stream.write_all(&out)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write error: {e}")),
            Err(_) => {
                ingest_error("write_timeout");
                Err("peer stopped reading".to_string())
            }
        }
    }

    /// Checks app and stream key and starts the broadcast; answers the publish either way.
    async fn authorize(&self, session: &mut ServerSession, peer: SocketAddr, app: &str, key: &str) -> Option<Publisher> {
        if app != self.config.app {
            ingest_error("bad_app");
            tracing::warn!(%peer, app, expected = self.config.app, "publish refused: unknown application");
            session.reject_publish("NetStream.Publish.BadName", "Unknown application; publish to rtmp://HOST/live/STREAM_KEY.");
            return None;
        }
        match self.gate.admit(key, peer, "rtmp").await {
            Ok(p) => {
                session.accept_publish();
                Some(p)
            }
            Err(refusal) => {
                let (code, text) = match refusal {
                    Refusal::UnknownKey => ("NetStream.Publish.Denied", "Unknown stream key."),
                    Refusal::AlreadyLive(_) => ("NetStream.Publish.BadName", "This channel is already live."),
                    Refusal::ServerFull => ("NetStream.Publish.Denied", "This server takes no more publishers right now."),
                    Refusal::Database => ("NetStream.Publish.Denied", "Server error, try again."),
                    Refusal::LiveElsewhere { .. } => ("NetStream.Publish.BadName", "This channel is already live on another server."),
                    Refusal::LeaseUnavailable => ("NetStream.Publish.Denied", "Server error, try again."),
                };
                session.reject_publish(code, text);
                None
            }
        }
    }
}

