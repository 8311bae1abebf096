//! A sans-IO MPEG-TS demultiplexer for live ingest (ISO/IEC 13818-1): push the bytes as they
//! arrive (SRT delivers 7 × 188-byte packets per datagram), get complete PES packets out.
//!
//! Only what a live encoder sends is handled: the first program of the PAT, its PMT, and PES
//! streams with PTS/DTS (extended past the 33-bit wrap). Crates considered first: `mpeg2ts` reads
//! from `std::io::Read` (not push-based) and drops the last PES of a stream; `mpeg2ts-reader` is
//! push-based but its macro-generated filter API does not fit a per-connection state machine this
//! small. Every length the input controls is checked; bad bytes give a [`TsError`] count, never a panic.

pub mod adts;

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

/// Size of a TS packet in bytes.
pub const PACKET_SIZE: usize = 188;
/// Largest PES we reassemble, bytes; larger ones are dropped (a 4K key frame is a few MB).
pub const MAX_PES_SIZE: usize = 8 << 20;
/// Elementary streams taken from a PMT; the rest are ignored (an encoder sends two or three).
pub const MAX_STREAMS: usize = 8;
/// PES bytes held across all PIDs at once; a PES that would pass it is dropped.
pub const MAX_BUFFERED_BYTES: usize = 16 << 20;

/// Elementary stream types we recognise (ISO/IEC 13818-1 Table 2-34 and its amendments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// stream_type 0x1b: H.264 in Annex B.
    H264,
    /// stream_type 0x24: HEVC in Annex B.
    Hevc,
    /// stream_type 0x0f: AAC in ADTS.
    AacAdts,
    /// Anything else (the stream_type).
    Other(u8),
}

impl StreamKind {
    fn from_type(t: u8) -> Self {
        match t {
            0x1b => StreamKind::H264,
            0x24 => StreamKind::Hevc,
            0x0f => StreamKind::AacAdts,
            t => StreamKind::Other(t),
        }
    }
}

/// A complete PES packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PesPacket {
    /// Its PID.
    pub pid: u16,
    /// What the PMT says it carries.
    pub kind: StreamKind,
    /// Presentation time, 90 kHz, extended past the 33-bit wrap.
    pub pts: Option<u64>,
    /// Decode time, 90 kHz (equals `pts` when the PES has no DTS).
    pub dts: Option<u64>,
    /// The payload (the elementary stream bytes).
    pub data: Bytes,
}

/// Recoverable problems in the input; the demuxer resynchronises and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    /// Bytes that did not start with the 0x47 sync byte were skipped.
    #[error("lost sync: skipped {0} bytes")]
    LostSync(usize),
    /// A table or PES header was malformed.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A PES grew past [`MAX_PES_SIZE`], or all PIDs together past [`MAX_BUFFERED_BYTES`], and was dropped.
    #[error("PES larger than {MAX_PES_SIZE} bytes (or {MAX_BUFFERED_BYTES} buffered in all) dropped")]
    PesTooLarge,
    /// The PMT listed more than [`MAX_STREAMS`] elementary streams; the extra ones are ignored.
    #[error("PMT lists {0} elementary streams; only the first {MAX_STREAMS} are read")]
    TooManyStreams(usize),
}

#[derive(Debug, Default)]
struct PesAssembly {
    data: BytesMut,
    pts: Option<u64>,
    dts: Option<u64>,
    /// PES_packet_length's payload size, when not 0 (unbounded video PES use 0).
    expected: Option<usize>,
    active: bool,
}

/// Extends 33-bit 90 kHz timestamps to 64 bits, following wraps (every ~26.5 h).
#[derive(Debug, Default, Clone, Copy)]
struct Clock33 {
    last: Option<u64>,
}

impl Clock33 {
    fn extend(&mut self, ts: u64) -> u64 {
        const WRAP: u64 = 1 << 33;
        let out = match self.last {
            None => ts,
            Some(last) => {
                let base = last - last % WRAP;
                [base.wrapping_sub(WRAP), base, base + WRAP]
                    .into_iter()
                    .filter(|b| *b <= u64::MAX - ts)
                    .map(|b| b + ts)
                    .min_by_key(|c| c.abs_diff(last))
                    .unwrap_or(ts)
            }
        };
        self.last = Some(out);
        out
    }
}

/// The demultiplexer state of one TS stream.
#[derive(Debug, Default)]
pub struct TsDemuxer {
    pending: BytesMut,
    pmt_pid: Option<u16>,
    streams: HashMap<u16, StreamKind>,
    pes: HashMap<u16, PesAssembly>,
    clock: Clock33,
    errors: Vec<TsError>,
}

impl TsDemuxer {
    /// A demuxer waiting for a PAT.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `data` and returns the PES packets it completed.
    pub fn push(&mut self, data: &[u8]) -> Vec<PesPacket> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            let Some(start) = self.pending.iter().position(|b| *b == 0x47) else {
                if !self.pending.is_empty() {
                    self.errors.push(TsError::LostSync(self.pending.len()));
                    self.pending.clear();
                }
                break;
            };
            if start > 0 {
                self.errors.push(TsError::LostSync(start));
                let _ = self.pending.split_to(start);
            }
            if self.pending.len() < PACKET_SIZE {
                break;
            }
            let packet = self.pending.split_to(PACKET_SIZE).freeze();
            self.packet(&packet, &mut out);
        }
        out
    }

    /// Emits the PES packets still being assembled (end of stream).
    pub fn flush(&mut self) -> Vec<PesPacket> {
        let pids: Vec<u16> = self.pes.keys().copied().collect();
        pids.into_iter().filter_map(|pid| self.finish_pes(pid)).collect()
    }

    /// Problems seen since the last call (for logs and metrics).
    pub fn take_errors(&mut self) -> Vec<TsError> {
        std::mem::take(&mut self.errors)
    }

    fn packet(&mut self, p: &Bytes, out: &mut Vec<PesPacket>) {
        let pusi = p[1] & 0x40 != 0;
        let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
        let afc = (p[3] >> 4) & 0x3;
        let mut pos = 4;
        if afc == 2 || afc == 0 {
            return; // adaptation field only, or reserved
        }
        if afc == 3 {
            pos += 1 + usize::from(p[4]);
            if pos > PACKET_SIZE {
                self.errors.push(TsError::Malformed("adaptation field"));
                return;
            }
        }
        let payload = p.slice(pos..);
        if pid == 0 {
            if pusi {
                self.pat(&payload);
            }
        } else if Some(pid) == self.pmt_pid {
            if pusi {
                self.pmt(&payload);
            }
        } else if self.streams.contains_key(&pid) {
            if pusi {
                if let Some(done) = self.finish_pes(pid) {
                    out.push(done);
                }
                self.start_pes(pid, &payload);
            } else {
                self.continue_pes(pid, &payload);
            }
            let complete = self.pes.get(&pid).is_some_and(|a| a.active && a.expected.is_some_and(|e| a.data.len() >= e));
            if complete {
                if let Some(done) = self.finish_pes(pid) {
                    out.push(done);
                }
            }
        }
    }

    /// The section after the pointer field, bounded by section_length; `None` if malformed.
    fn section<'a>(&mut self, payload: &'a [u8], table_id: u8) -> Option<&'a [u8]> {
        let pointer = usize::from(*payload.first()?);
        let s = payload.get(1 + pointer..)?;
        if s.len() < 3 || s[0] != table_id {
            self.errors.push(TsError::Malformed("PSI section"));
            return None;
        }
        let len = usize::from(s[1] & 0x0f) << 8 | usize::from(s[2]);
        // Without the 4-byte CRC at the end.
        let body = s.get(3..3 + len)?.get(..len.checked_sub(4)?)?;
        Some(body)
    }

    fn pat(&mut self, payload: &[u8]) {
        let Some(body) = self.section(payload, 0x00) else { return };
        // 5 bytes of header (transport_stream_id .. last_section_number), then 4-byte entries.
        for entry in body.get(5..).unwrap_or_default().chunks_exact(4) {
            let program = u16::from(entry[0]) << 8 | u16::from(entry[1]);
            if program != 0 {
                self.pmt_pid = Some(u16::from(entry[2] & 0x1f) << 8 | u16::from(entry[3]));
                return;
            }
        }
    }

    fn pmt(&mut self, payload: &[u8]) {
        let Some(body) = self.section(payload, 0x02) else { return };
        if body.len() < 9 {
            self.errors.push(TsError::Malformed("PMT"));
            return;
        }
        let info_len = usize::from(body[7] & 0x0f) << 8 | usize::from(body[8]);
        let mut rest = body.get(9 + info_len..).unwrap_or_default();
        let mut streams = HashMap::new();
        let mut listed = 0;
        while rest.len() >= 5 {
            let kind = StreamKind::from_type(rest[0]);
            let pid = u16::from(rest[1] & 0x1f) << 8 | u16::from(rest[2]);
            let es_info = usize::from(rest[3] & 0x0f) << 8 | usize::from(rest[4]);
            listed += 1;
            if streams.len() < MAX_STREAMS {
                streams.insert(pid, kind);
            }
            rest = rest.get(5 + es_info..).unwrap_or_default();
        }
        if listed > MAX_STREAMS {
            self.errors.push(TsError::TooManyStreams(listed));
        }
        // A new PMT replaces the old one: PIDs no longer listed drop their buffers.
        self.pes.retain(|pid, _| streams.contains_key(pid));
        self.streams = streams;
    }

    /// PES bytes buffered over every PID.
    fn buffered(&self) -> usize {
        self.pes.values().map(|a| a.data.len()).sum()
    }

    fn start_pes(&mut self, pid: u16, payload: &[u8]) {
        if self.buffered() + payload.len() > MAX_BUFFERED_BYTES {
            self.errors.push(TsError::PesTooLarge);
            self.pes.remove(&pid);
            return;
        }
        let a = self.pes.entry(pid).or_default();
        *a = PesAssembly::default();
        if payload.len() < 9 || payload[..3] != [0, 0, 1] {
            self.errors.push(TsError::Malformed("PES header"));
            return;
        }
        let packet_len = usize::from(payload[4]) << 8 | usize::from(payload[5]);
        let flags = payload[7] >> 6;
        let header_len = usize::from(payload[8]);
        let Some(data) = payload.get(9 + header_len..) else {
            self.errors.push(TsError::Malformed("PES header length"));
            return;
        };
        let ts = |b: &[u8]| -> Option<u64> {
            let b = b.get(..5)?;
            Some(
                (u64::from(b[0] >> 1) & 0x07) << 30
                    | u64::from(b[1]) << 22
                    | (u64::from(b[2]) >> 1) << 15
                    | u64::from(b[3]) << 7
                    | u64::from(b[4]) >> 1,
            )
        };
        let opt = &payload[9..9 + header_len];
        let pts = if flags & 0b10 != 0 { ts(opt).map(|t| self.clock.extend(t)) } else { None };
        let dts = if flags == 0b11 { opt.get(5..).and_then(ts).map(|t| self.clock.extend(t)) } else { pts };
        a.pts = pts;
        a.dts = dts;
        a.expected = packet_len.checked_sub(3 + header_len).filter(|_| packet_len != 0);
        a.data.extend_from_slice(data);
        a.active = true;
    }

    fn continue_pes(&mut self, pid: u16, payload: &[u8]) {
        let others = self.buffered();
        let Some(a) = self.pes.get_mut(&pid).filter(|a| a.active) else { return };
        if a.data.len() + payload.len() > MAX_PES_SIZE || others + payload.len() > MAX_BUFFERED_BYTES {
            self.errors.push(TsError::PesTooLarge);
            *a = PesAssembly::default();
            return;
        }
        a.data.extend_from_slice(payload);
    }

    fn finish_pes(&mut self, pid: u16) -> Option<PesPacket> {
        let a = self.pes.get_mut(&pid)?;
        if !a.active || a.data.is_empty() {
            return None;
        }
        let mut data = std::mem::take(&mut a.data).freeze();
        if let Some(e) = a.expected {
            data.truncate(e);
        }
        a.active = false;
        let kind = *self.streams.get(&pid)?;
        Some(PesPacket { pid, kind, pts: a.pts, dts: a.dts, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_extends_past_33_bits() {
        let mut c = Clock33::default();
        assert_eq!(c.extend((1 << 33) - 100), (1 << 33) - 100);
        assert_eq!(c.extend(50), (1 << 33) + 50);
        assert_eq!(c.extend(20), (1 << 33) + 20);
    }

    /// A TS packet on `pid` with `payload` (padded with 0xff), PUSI set when `start`.
    fn packet(pid: u16, start: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x47, (u8::from(start) << 6) | (pid >> 8) as u8, pid as u8, 0x10];
        p.extend_from_slice(payload);
        p.resize(PACKET_SIZE, 0xff);
        p
    }

    /// A PMT section listing `pids` as H.264 streams (CRC not checked by the demuxer).
    fn pmt(pids: impl Iterator<Item = u16>) -> Vec<u8> {
        let entries: Vec<u8> = pids.flat_map(|pid| [0x1b, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0]).collect();
        let len = 9 + entries.len() + 4;
        let mut s = vec![0, 0x02, 0xb0 | (len >> 8) as u8, len as u8, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0];
        s.extend_from_slice(&entries);
        s.extend_from_slice(&[0; 4]);
        s
    }

    #[test]
    fn streams_and_buffered_bytes_are_bounded() {
        let mut d = TsDemuxer::new();
        // PAT: program 1 on PMT PID 0x100.
        d.push(&packet(0, true, &[0, 0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xe1, 0x00, 0, 0, 0, 0]));
        d.push(&packet(0x100, true, &pmt(0x200..0x220)));
        assert_eq!(d.streams.len(), MAX_STREAMS);
        assert!(d.take_errors().contains(&TsError::TooManyStreams(32)));
        // Unbounded PES (length 0) on every stream, never finished: the total stays capped.
        let header = [0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1];
        for pid in 0x200..0x208u16 {
            d.push(&packet(pid, true, &header));
        }
        let body = vec![0u8; PACKET_SIZE - 4];
        let mut chunk = Vec::new();
        for pid in 0x200..0x208u16 {
            for _ in 0..50 {
                chunk.extend_from_slice(&packet(pid, false, &body));
            }
        }
        for _ in 0..(3 * MAX_BUFFERED_BYTES / chunk.len()) {
            d.push(&chunk);
            assert!(d.buffered() <= MAX_BUFFERED_BYTES);
        }
        assert!(d.take_errors().contains(&TsError::PesTooLarge));
    }

    #[test]
    fn garbage_is_skipped_without_panicking() {
        let mut d = TsDemuxer::new();
        let mut junk = vec![0u8; 1000];
        junk.extend_from_slice(&[0x47; 400]);
        assert!(d.push(&junk).is_empty());
        assert!(!d.take_errors().is_empty());
        // A PUSI packet on an unknown PID with a truncated PES header.
        let mut p = vec![0x47, 0x41, 0x00, 0x10, 0, 0, 1];
        p.resize(PACKET_SIZE, 0xff);
        assert!(d.push(&p).is_empty());
    }
}
