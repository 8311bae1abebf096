//! The SRT listener: MPEG-TS over SRT (what OBS and ffmpeg send to `srt://HOST:9000`) into the
//! same [`Publisher`] as RTMP, so nothing after ingest knows the protocol.
//!
//! Library choice: `srt-tokio` (pure Rust, tokio-native). Its listener hands us each connection
//! request with its `streamid` before answering, so a stream key can be checked and a per-channel
//! passphrase chosen per connection, all without `unsafe` FFI to libsrt's blocking C API.
//!
//! `streamid` forms (both select the stream key): the SRT Access Control syntax
//! `#!::r=live/KEY,m=publish` (draft-sharabayko-srt-01 Appendix B) and the short `publish:live/KEY`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use onair_media::avc::{annexb_nal_units, nal_type, to_avcc};
use onair_media::{AacConfig, AvcConfig, HevcConfig};
use onair_mpegts::{adts, PesPacket, StreamKind, TsDemuxer};
use srt_protocol::settings::KeySettings;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::{ConnectionRequest, SrtIncoming, SrtListener};

use crate::gate::{Gate, Refusal};
use crate::config::SrtConfig;
use crate::limits::{BitrateLimit, ConnectionLimit};
use crate::publisher::{PublishError, Publisher};
use tokio_util::sync::CancellationToken;
use crate::ingest_error;

/// Why a `streamid` was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    /// Neither accepted form.
    #[error("streamid is neither '#!::r=APP/KEY,m=publish' nor 'publish:APP/KEY'")]
    Unrecognised,
    /// The caller wants to receive (m=request): this server only takes publishers over SRT.
    #[error("only m=publish is served over SRT")]
    NotPublish,
}

/// Extracts (application, stream key) from an SRT `streamid`. Errors: [`StreamIdError`].
pub fn parse_stream_id(id: &str) -> Result<(String, String), StreamIdError> {
    let (resource, mode) = if let Some(rest) = id.strip_prefix("publish:") {
        (rest.to_string(), "publish".to_string())
    } else if id.starts_with("#!::") {
        let acl: srt_tokio::access::AccessControlList = id.parse().map_err(|_| StreamIdError::Unrecognised)?;
        let get = |k: &str| acl.0.iter().find(|e| e.key == k).map(|e| e.value.clone());
        // The Access Control syntax defaults to m=request.
        (get("r").ok_or(StreamIdError::Unrecognised)?, get("m").unwrap_or_else(|| "request".into()))
    } else {
        return Err(StreamIdError::Unrecognised);
    };
    if mode != "publish" {
        return Err(StreamIdError::NotPublish);
    }
    let (app, key) = resource.split_once('/').ok_or(StreamIdError::Unrecognised)?;
    if app.is_empty() || key.is_empty() || key.contains('/') {
        return Err(StreamIdError::Unrecognised);
    }
    Ok((app.to_string(), key.to_string()))
}

/// Binds the SRT listener on `addr` (UDP). Returns it with its bound address.
/// Errors: the socket could not be bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(SrtListener, SrtIncoming, SocketAddr)> {
    let udp = tokio::net::UdpSocket::bind(addr).await?;
    let local = udp.local_addr()?;
    let (listener, incoming) = SrtListener::builder().socket(udp).bind(local).await?;
    Ok((listener, incoming, local))
}

/// Accepts SRT publishers.
#[derive(Debug)]
pub struct SrtIngest {
    gate: Arc<Gate>,
    config: SrtConfig,
    max_bitrate_kbps: u64,
    connections: ConnectionLimit,
}

impl SrtIngest {
    /// SRT ingest admitting publishers through `gate`, with the `[srt]` limits.
    pub fn new(gate: Arc<Gate>) -> Arc<Self> {
        let config = gate.config().srt.clone();
        let connections = ConnectionLimit::new(config.max_connections, "onair_srt_connections");
        let max_bitrate_kbps = gate.config().ingest.max_bitrate_kbps;
        Arc::new(SrtIngest { gate, config, max_bitrate_kbps, connections })
    }

    /// Answers connection requests until `shutdown` is cancelled; each runs in its own task.
    pub async fn run(self: Arc<Self>, _listener: SrtListener, mut incoming: SrtIncoming, shutdown: CancellationToken) {
        loop {
            let request = tokio::select! {
                r = incoming.incoming().next() => r,
                _ = shutdown.cancelled() => return,
            };
            let Some(request) = request else { return };
            let peer = request.remote();
            let Some(slot) = self.connections.try_take() else {
                ingest_error("too_many_connections");
                tracing::warn!(%peer, limit = self.connections.limit(), "SRT connection refused: too many connections");
                let _ = request.reject(RejectReason::Server(ServerRejectReason::Overload)).await;
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let _slot = slot; // given back even if the task panics
                if let Err(reason) = this.connection(request).await {
                    tracing::info!(%peer, "SRT connection closed: {reason}");
                }
            });
        }
    }

    async fn reject(request: ConnectionRequest, reason: ServerRejectReason, kind: &'static str, why: String) -> Result<(), String> {
        ingest_error(kind);
        let _ = request.reject(RejectReason::Server(reason)).await;
        Err(format!("refused: {why}"))
    }

    async fn connection(&self, request: ConnectionRequest) -> Result<(), String> {
        let peer = request.remote();
        let stream_id = request.stream_id().map(|s| s.to_string()).unwrap_or_default();
        let (app, key) = match parse_stream_id(&stream_id) {
            Ok(v) => v,
            Err(e) => {
                let reason = match e {
                    StreamIdError::NotPublish => ServerRejectReason::BadMode,
                    StreamIdError::Unrecognised => ServerRejectReason::BadRequest,
                };
                return Self::reject(request, reason, "bad_stream_id", e.to_string()).await;
            }
        };
        if app != self.config.app {
            return Self::reject(request, ServerRejectReason::Notfound, "bad_app", format!("unknown application {app:?}")).await;
        }
        let channel = match self.gate.channel(&key).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                tracing::warn!(%peer, protocol = "srt", "publish refused: unknown stream key");
                return Self::reject(request, ServerRejectReason::Unauthorized, "bad_stream_key", "unknown stream key".into()).await;
            }
            Err(_) => return Self::reject(request, ServerRejectReason::InternalServerError, "channel_db", "channel database error".into()).await,
        };
        // Refusals that need no handshake get their SRT reject code; admission itself waits until
        // the caller proved it has the passphrase, so a wrong one can never touch a live broadcast.
        if let Some(refusal) = self.gate.precheck(&channel.name) {
            return Self::reject(request, reject_reason(&refusal), refusal.kind(), refusal.to_string()).await;
        }
        let key_settings = match channel.srt_passphrase {
            Some(p) => match p.try_into() {
                Ok(passphrase) => Some(KeySettings { key_size: request.key_size(), passphrase }),
                Err(_) => None,
            },
            None => None,
        };
        let handshake = Duration::from_millis(self.config.handshake_timeout_ms);
        let mut socket = match tokio::time::timeout(handshake, request.accept(key_settings)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                ingest_error("srt_handshake");
                tracing::warn!(%peer, channel = channel.name, "SRT handshake failed (wrong or missing passphrase?): {e}");
                return Err(format!("handshake failed (wrong or missing passphrase?): {e}"));
            }
            Err(_) => {
                ingest_error("handshake_timeout");
                return Err("handshake did not complete in time".into());
            }
        };
        let publisher = self.gate.admit(&key, peer, "srt").await.map_err(|r| format!("refused after the handshake: {r}"))?;
        let mut state = publisher.broadcast().subscribe_state();
        let channel_name = publisher.broadcast().channel().to_string();
        let idle = Duration::from_millis(self.config.idle_timeout_ms);
        let mut bitrate = BitrateLimit::new(self.max_bitrate_kbps, Duration::from_secs(5));
        let mut session = TsSession::new(publisher);
        let result = loop {
            let next = tokio::select! {
                n = tokio::time::timeout(idle, socket.next()) => n,
                _ = state.changed() => {
                    if session.publisher.owns_broadcast() {
                        continue;
                    }
                    ingest_error("taken_over");
                    break Err("another publisher took the channel over".to_string());
                }
            };
            let data = match next {
                Err(_) => {
                    ingest_error("idle_timeout");
                    break Err("timed out waiting for data".to_string());
                }
                Ok(None) => break Ok(()),
                Ok(Some(Err(e))) => break Err(format!("receive error: {e}")),
                Ok(Some(Ok((_, data)))) => data,
            };
            let received = Instant::now();
            metrics::counter!("onair_ingest_bytes_total", "channel" => channel_name.clone()).increment(data.len() as u64);
            if let Some(rate) = bitrate.record(received, data.len() as u64) {
                ingest_error("bitrate_exceeded");
                tracing::warn!(%peer, channel = channel_name, kbps = rate / 1000, "publisher disconnected: bit rate above the limit");
                break Err(format!("ingest bit rate {} kbit/s is above the limit of {} kbit/s", rate / 1000, self.max_bitrate_kbps));
            }
            if let Err(e) = session.push(&data, received) {
                ingest_error(e.kind());
                tracing::warn!(%peer, channel = channel_name, error = %e, "publisher disconnected");
                break Err(format!("publish refused: {e}"));
            }
        };
        // SRT has no "unpublish" message: a closed or lost connection may come back within the grace period.
        session.finish();
        self.gate.update_live_gauge();
        result
    }
}

/// The SRT reject code for an admission refusal.
fn reject_reason(refusal: &Refusal) -> ServerRejectReason {
    match refusal {
        Refusal::UnknownKey => ServerRejectReason::Unauthorized,
        Refusal::AlreadyLive(_) => ServerRejectReason::Conflict,
        Refusal::ServerFull => ServerRejectReason::Overload,
        Refusal::Database | Refusal::LeaseUnavailable => ServerRejectReason::InternalServerError,
        Refusal::LiveElsewhere { .. } => ServerRejectReason::Conflict,
    }
}

/// MPEG-TS elementary streams → the publisher: H.264 access units and ADTS AAC frames.
struct TsSession {
    publisher: Publisher,
    demuxer: TsDemuxer,
    /// The parameter sets the video track was configured with (H.264: SPS, PPS; HEVC: VPS, SPS, PPS).
    parameter_sets: Option<Vec<Vec<u8>>>,
    audio_config: Option<[u8; 2]>,
}

impl TsSession {
    fn new(publisher: Publisher) -> Self {
        TsSession { publisher, demuxer: TsDemuxer::new(), parameter_sets: None, audio_config: None }
    }

    fn push(&mut self, data: &[u8], received: Instant) -> Result<(), PublishError> {
        for pes in self.demuxer.push(data) {
            self.pes(pes, received)?;
        }
        for e in self.demuxer.take_errors() {
            self.publisher.warn("MPEG-TS", &e);
        }
        Ok(())
    }

    fn finish(mut self) {
        for pes in self.demuxer.flush() {
            if self.pes(pes, Instant::now()).is_err() {
                break;
            }
        }
        self.publisher.interrupt();
    }

    fn pes(&mut self, pes: PesPacket, received: Instant) -> Result<(), PublishError> {
        let (Some(pts), Some(dts)) = (pes.pts, pes.dts) else {
            self.publisher.warn("PES without timestamps", &pes.pid);
            return Ok(());
        };
        match pes.kind {
            StreamKind::H264 => self.video(&pes.data, pts, dts, received),
            StreamKind::Hevc => self.hevc_video(&pes.data, pts, dts, received),
            StreamKind::AacAdts => self.audio(&pes.data, pts, received),
            other => {
                self.publisher.warn("unsupported elementary stream", &format!("{other:?}"));
                Ok(())
            }
        }
    }

    fn video(&mut self, data: &[u8], pts: u64, dts: u64, received: Instant) -> Result<(), PublishError> {
        let units = annexb_nal_units(data);
        let kind = |u: &&[u8]| u.first().map(|b| b & 0x1f);
        let sps = units.iter().find(|u| kind(u) == Some(nal_type::SPS));
        let pps = units.iter().find(|u| kind(u) == Some(nal_type::PPS));
        if let (Some(sps), Some(pps)) = (sps, pps) {
            let sets = vec![sps.to_vec(), pps.to_vec()];
            if self.parameter_sets.as_ref() != Some(&sets) {
                match AvcConfig::from_parameter_sets(sps, pps) {
                    Ok(cfg) => {
                        self.publisher.set_video_config(cfg)?;
                        self.parameter_sets = Some(sets);
                    }
                    Err(e) => self.publisher.warn("bad H.264 parameter sets", &e),
                }
            }
        }
        let keyframe = units.iter().any(|u| kind(u) == Some(nal_type::IDR));
        let samples: Vec<&[u8]> =
            units.iter().copied().filter(|u| !matches!(kind(u), Some(nal_type::SPS | nal_type::PPS | nal_type::AUD))).collect();
        if samples.is_empty() {
            return Ok(());
        }
        let cts = pts.saturating_sub(dts).min(i32::MAX as u64) as i32;
        self.publisher.video_frame(dts, cts, keyframe, Bytes::from(to_avcc(&samples)), received)
    }

    /// HEVC in Annex B (stream_type 0x24): in-band VPS/SPS/PPS configure the track; IRAP pictures
    /// (NAL types 16–23) are key frames.
    fn hevc_video(&mut self, data: &[u8], pts: u64, dts: u64, received: Instant) -> Result<(), PublishError> {
        use onair_media::hevc::{hevc_nal_type, nal_type as hevc};
        let units = annexb_nal_units(data);
        let find = |t: u8| units.iter().find(|u| hevc_nal_type(u) == Some(t));
        if let (Some(vps), Some(sps), Some(pps)) = (find(hevc::VPS), find(hevc::SPS), find(hevc::PPS)) {
            let sets = vec![vps.to_vec(), sps.to_vec(), pps.to_vec()];
            if self.parameter_sets.as_ref() != Some(&sets) {
                match HevcConfig::from_parameter_sets(vps, sps, pps) {
                    Ok(cfg) => {
                        self.publisher.set_hevc_config(cfg)?;
                        self.parameter_sets = Some(sets);
                    }
                    Err(e) => self.publisher.warn("bad HEVC parameter sets", &e),
                }
            }
        }
        let keyframe = units.iter().any(|u| hevc_nal_type(u).is_some_and(|t| (hevc::BLA_W_LP..=hevc::RSV_IRAP_23).contains(&t)));
        let samples: Vec<&[u8]> = units
            .iter()
            .copied()
            .filter(|u| !matches!(hevc_nal_type(u), Some(hevc::VPS | hevc::SPS | hevc::PPS | hevc::AUD)))
            .collect();
        if samples.is_empty() {
            return Ok(());
        }
        let cts = pts.saturating_sub(dts).min(i32::MAX as u64) as i32;
        self.publisher.video_frame(dts, cts, keyframe, Bytes::from(to_avcc(&samples)), received)
    }

    fn audio(&mut self, data: &[u8], pts: u64, received: Instant) -> Result<(), PublishError> {
        for (i, frame) in adts::frames(data).into_iter().enumerate() {
            if self.audio_config != Some(frame.audio_specific_config) {
                match AacConfig::parse(&frame.audio_specific_config) {
                    Ok(cfg) => {
                        self.publisher.set_audio_config(cfg)?;
                        self.audio_config = Some(frame.audio_specific_config);
                    }
                    Err(e) => {
                        self.publisher.warn("bad ADTS header", &e);
                        continue;
                    }
                }
            }
            let rate = AacConfig::parse(&frame.audio_specific_config).map(|c| u64::from(c.sample_rate)).unwrap_or(48_000);
            let ticks = pts + i as u64 * 1024 * 90_000 / rate;
            self.publisher.audio_frame(ticks / 90, Bytes::copy_from_slice(frame.payload), received)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_forms() {
        let want = Ok(("live".to_string(), "KEY123".to_string()));
        assert_eq!(parse_stream_id("#!::r=live/KEY123,m=publish"), want);
        assert_eq!(parse_stream_id("#!::m=publish,r=live/KEY123"), want);
        assert_eq!(parse_stream_id("publish:live/KEY123"), want);
        assert_eq!(parse_stream_id("#!::r=live/KEY123"), Err(StreamIdError::NotPublish));
        assert_eq!(parse_stream_id("#!::r=live/KEY123,m=request"), Err(StreamIdError::NotPublish));
        assert_eq!(parse_stream_id("live/KEY123"), Err(StreamIdError::Unrecognised));
        assert_eq!(parse_stream_id("publish:KEY123"), Err(StreamIdError::Unrecognised));
        assert_eq!(parse_stream_id("publish:live/"), Err(StreamIdError::Unrecognised));
        assert_eq!(parse_stream_id(""), Err(StreamIdError::Unrecognised));
    }
}
