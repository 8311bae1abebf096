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

use crate::ingest::gate::{Gate, Refusal};
use crate::ingest::publisher::Publisher;
use crate::observability::ingest_error;

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
}

impl SrtIngest {
    /// SRT ingest admitting publishers through `gate`.
    pub fn new(gate: Arc<Gate>) -> Arc<Self> {
        Arc::new(SrtIngest { gate })
    }

    /// Answers connection requests forever; each accepted one runs in its own task.
    pub async fn run(self: Arc<Self>, _listener: SrtListener, mut incoming: SrtIncoming) {
        while let Some(request) = incoming.incoming().next().await {
            let this = self.clone();
            tokio::spawn(async move {
                let peer = request.remote();
                if let Err(reason) = this.connection(request).await {
                    tracing::info!(%peer, "SRT connection closed: {reason}");
                }
            });
        }
    }

    async fn connection(&self, request: ConnectionRequest) -> Result<(), String> {
        let peer = request.remote();
        let stream_id = request.stream_id().map(|s| s.to_string()).unwrap_or_default();
        let app_expected = self.gate.config().rtmp.app.clone();
        let (app, key) = match parse_stream_id(&stream_id) {
            Ok(v) => v,
            Err(e) => {
                ingest_error("bad_stream_id");
                let reason = match e {
                    StreamIdError::NotPublish => ServerRejectReason::BadMode,
                    StreamIdError::Unrecognised => ServerRejectReason::BadRequest,
                };
                let _ = request.reject(RejectReason::Server(reason)).await;
                return Err(format!("refused: {e}"));
            }
        };
        if app != app_expected {
            ingest_error("bad_app");
            let _ = request.reject(RejectReason::Server(ServerRejectReason::Notfound)).await;
            return Err(format!("refused: unknown application {app:?}"));
        }
        // The passphrase is the channel's; look it up before admitting.
        let passphrase = match self.gate.channel(&key).await {
            Ok(Some(c)) => c.srt_passphrase,
            Ok(None) => None,
            Err(_) => {
                let _ = request.reject(RejectReason::Server(ServerRejectReason::InternalServerError)).await;
                return Err("refused: channel database error".into());
            }
        };
        let publisher = match self.gate.admit(&key, peer, "srt").await {
            Ok(p) => p,
            Err(refusal) => {
                let reason = match refusal {
                    Refusal::UnknownKey => ServerRejectReason::Unauthorized,
                    Refusal::AlreadyLive(_) => ServerRejectReason::Conflict,
                    Refusal::ServerFull => ServerRejectReason::Overload,
                    Refusal::Database => ServerRejectReason::InternalServerError,
                };
                let _ = request.reject(RejectReason::Server(reason)).await;
                return Err(format!("refused: {refusal}"));
            }
        };
        let key_settings = match passphrase {
            Some(p) => match p.try_into() {
                Ok(passphrase) => Some(KeySettings { key_size: request.key_size(), passphrase }),
                Err(_) => None,
            },
            None => None,
        };
        let mut socket = match request.accept(key_settings).await {
            Ok(s) => s,
            Err(e) => {
                // Wrong or missing passphrase, or the caller went away. A broadcast that never had
                // media ends; one being resumed stays open for the rest of its grace period.
                ingest_error("srt_handshake");
                if publisher.broadcast().renditions().is_empty() {
                    publisher.finish();
                } else {
                    publisher.interrupt();
                }
                return Err(format!("handshake failed (wrong or missing passphrase?): {e}"));
            }
        };
        let idle = Duration::from_millis(self.gate.config().rtmp.idle_timeout_ms);
        let mut session = TsSession::new(publisher);
        let result = loop {
            let next = tokio::time::timeout(idle, socket.next()).await;
            match next {
                Err(_) => {
                    ingest_error("idle_timeout");
                    break Err("timed out waiting for data".to_string());
                }
                Ok(None) => break Ok(()),
                Ok(Some(Err(e))) => break Err(format!("receive error: {e}")),
                Ok(Some(Ok((_, data)))) => {
                    let channel = session.publisher.broadcast().channel().to_string();
                    metrics::counter!("onair_ingest_bytes_total", "channel" => channel).increment(data.len() as u64);
                    session.push(&data, Instant::now());
                    if !session.publisher.owns_broadcast() {
                        ingest_error("taken_over");
                        break Err("another publisher took the channel over".to_string());
                    }
                }
            }
        };
        // SRT has no "unpublish" message: a closed or lost connection may come back within the grace period.
        session.finish();
        self.gate.update_live_gauge();
        result
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

    fn push(&mut self, data: &[u8], received: Instant) {
        for pes in self.demuxer.push(data) {
            self.pes(pes, received);
        }
        for e in self.demuxer.take_errors() {
            self.publisher.warn("MPEG-TS", &e);
        }
    }

    fn finish(mut self) {
        for pes in self.demuxer.flush() {
            self.pes(pes, Instant::now());
        }
        self.publisher.interrupt();
    }

    fn pes(&mut self, pes: PesPacket, received: Instant) {
        let (Some(pts), Some(dts)) = (pes.pts, pes.dts) else {
            self.publisher.warn("PES without timestamps", &pes.pid);
            return;
        };
        let result = match pes.kind {
            StreamKind::H264 => self.video(&pes.data, pts, dts, received),
            StreamKind::Hevc => self.hevc_video(&pes.data, pts, dts, received),
            StreamKind::AacAdts => self.audio(&pes.data, pts, received),
            other => {
                self.publisher.warn("unsupported elementary stream", &format!("{other:?}"));
                Ok(())
            }
        };
        if let Err(e) = result {
            ingest_error("packaging");
            tracing::warn!(error = %e, "packaging failed");
        }
    }

    fn video(&mut self, data: &[u8], pts: u64, dts: u64, received: Instant) -> Result<(), crate::ingest::publisher::PublishError> {
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
    fn hevc_video(&mut self, data: &[u8], pts: u64, dts: u64, received: Instant) -> Result<(), crate::ingest::publisher::PublishError> {
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

    fn audio(&mut self, data: &[u8], pts: u64, received: Instant) -> Result<(), crate::ingest::publisher::PublishError> {
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
