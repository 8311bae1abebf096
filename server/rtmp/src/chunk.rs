//! The RTMP chunk stream (RTMP spec §5.3): reassembles messages from interleaved chunks, and splits
//! outgoing messages into chunks.
//!
//! The decoder never consumes a partial chunk: when the buffer holds less than a whole chunk it
//! returns `Ok(None)` and leaves the bytes for the next call. Every size the peer controls is capped
//! by [`Limits`], so a hostile peer cannot make us allocate more than about
//! `2 × max_message_size` per connection.

use std::collections::HashMap;

use bytes::{Buf, BufMut, BytesMut};

use crate::message::Message;
use crate::RtmpError;

/// Chunk size every RTMP connection starts with (§5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;

/// Caps on what a peer may make us hold. Exceeding one is a fatal [`RtmpError`] for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest chunk size (bytes) a peer may set with Set Chunk Size.
    pub max_chunk_size: u32,
    /// Largest message (bytes) a peer may announce; a 4K key frame is a few MB.
    pub max_message_size: u32,
    /// Largest AMF command or data message (bytes); real ones are under 1 KB. Keeps AMF0 nesting shallow.
    pub max_command_size: u32,
    /// Most distinct chunk stream ids a peer may use (encoders use fewer than 10).
    pub max_chunk_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_chunk_size: 1 << 20, max_message_size: 8 << 20, max_command_size: 16 << 10, max_chunk_streams: 64 }
    }
}

#[derive(Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    /// The timestamp field of the last header: an absolute time for type 0, a delta otherwise.
    ts_field: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    payload: BytesMut,
    has_header: bool,
}

/// Reassembles RTMP messages from chunks.
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: Limits,
    chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
    buffered: usize,
}

impl ChunkDecoder {
    /// A decoder at the default chunk size of 128 bytes.
    pub fn new(limits: Limits) -> Self {
        ChunkDecoder { limits, chunk_size: DEFAULT_CHUNK_SIZE, streams: HashMap::new(), buffered: 0 }
    }

    /// Applies a Set Chunk Size from the peer (§5.4.1). Errors: [`RtmpError::ChunkSize`] for 0, for the
    /// reserved top bit, or above `max_chunk_size`.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), RtmpError> {
        if size == 0 || size > self.limits.max_chunk_size || size & 0x8000_0000 != 0 {
            return Err(RtmpError::ChunkSize { size, limit: self.limits.max_chunk_size });
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Drops the partly received message on chunk stream `csid` (Abort Message, §5.4.2).
    pub fn abort(&mut self, csid: u32) {
        if let Some(cs) = self.streams.get_mut(&csid) {
            self.buffered -= cs.payload.len();
            cs.payload = BytesMut::new();
        }
    }

    /// Decodes chunks from `buf` until one message is complete (returned) or the buffer runs out of
    /// whole chunks (`Ok(None)`, bytes kept). Consumed chunks are removed from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, RtmpError> {
        loop {
            let Some(header) = self.parse_header(buf)? else { return Ok(None) };
            let cs = self.streams.get_mut(&header.csid).ok_or(RtmpError::NoPreviousHeader(header.csid))?;
            let remaining = (header.length as usize).saturating_sub(cs.payload.len());
            let take = remaining.min(self.chunk_size as usize);
            if buf.len() < header.len + take {
                // Not a whole chunk yet: undo nothing, the header state is only committed below.
                return Ok(None);
            }
            buf.advance(header.len);
            header.commit(cs);
            if cs.payload.is_empty() && take > 0 {
                cs.payload.reserve(take);
            }
            cs.payload.put_slice(&buf[..take]);
            buf.advance(take);
            self.buffered += take;
            if self.buffered > 2 * self.limits.max_message_size as usize {
                return Err(RtmpError::MessageTooLarge {
                    size: self.buffered as u32,
                    type_id: cs.type_id,
                    limit: self.limits.max_message_size,
                });
            }
            if cs.payload.len() == cs.length as usize {
                let payload = std::mem::take(&mut cs.payload).freeze();
                self.buffered -= payload.len();
                return Ok(Some(Message {
                    csid: header.csid,
                    timestamp: cs.timestamp,
                    type_id: cs.type_id,
                    stream_id: cs.stream_id,
                    payload,
                }));
            }
        }
    }

    /// Parses (without consuming) the basic and message header at the front of `buf`.
    fn parse_header(&mut self, buf: &[u8]) -> Result<Option<Header>, RtmpError> {
        let Some(&b0) = buf.first() else { return Ok(None) };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(None),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + 256 * u32::from(b2), 3),
                _ => return Ok(None),
            },
            n => (u32::from(n), 1),
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        if buf.len() < pos + header_len {
            return Ok(None);
        }
        if !self.streams.contains_key(&csid) {
            if self.streams.len() >= self.limits.max_chunk_streams {
                return Err(RtmpError::TooManyChunkStreams(self.limits.max_chunk_streams));
            }
            if fmt != 0 {
                return Err(RtmpError::NoPreviousHeader(csid));
            }
            self.streams.insert(csid, ChunkStream::default());
        }
        let prev = &self.streams[&csid];
        if fmt != 0 && !prev.has_header {
            return Err(RtmpError::NoPreviousHeader(csid));
        }
        let h = &buf[pos..pos + header_len];
        let be24 = |b: &[u8]| u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let mut header = Header {
            csid,
            fmt,
            len: 0,
            ts_field: prev.ts_field,
            extended: prev.extended,
            length: prev.length,
            type_id: prev.type_id,
            stream_id: prev.stream_id,
        };
        if fmt <= 2 {
            header.ts_field = be24(&h[0..3]);
            header.extended = header.ts_field == 0xFF_FFFF;
        }
        if fmt <= 1 {
            header.length = be24(&h[3..6]);
            header.type_id = h[6];
        }
        if fmt == 0 {
            header.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
        }
        pos += header_len;
        if header.extended {
            let Some(ext) = buf.get(pos..pos + 4) else { return Ok(None) };
            let ext = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]);
            // Type 3 chunks repeat the extended field; only a fresh header changes the timestamp field.
            if fmt <= 2 {
                header.ts_field = ext;
            }
            pos += 4;
        }
        header.len = pos;
        let limit = match header.type_id {
            crate::message::types::COMMAND_AMF0
            | crate::message::types::COMMAND_AMF3
            | crate::message::types::DATA_AMF0
            | crate::message::types::DATA_AMF3 => self.limits.max_command_size,
            _ => self.limits.max_message_size,
        };
        if header.length > limit {
            return Err(RtmpError::MessageTooLarge { size: header.length, type_id: header.type_id, limit });
        }
        if fmt != 3 && !prev.payload.is_empty() {
            // A new header in the middle of a message (only type 3 may continue one): start over.
            self.abort(csid);
        }
        Ok(Some(header))
    }
}

/// A parsed chunk header, applied to its chunk stream only once the whole chunk is present.
#[derive(Debug)]
struct Header {
    csid: u32,
    fmt: u8,
    len: usize,
    ts_field: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

impl Header {
    fn commit(&self, cs: &mut ChunkStream) {
        let starts_message = cs.payload.is_empty();
        match self.fmt {
            0 => cs.timestamp = self.ts_field,
            1 | 2 => cs.timestamp = cs.timestamp.wrapping_add(self.ts_field),
            // Type 3 starting a new message repeats the previous delta (FFmpeg and librtmp agree).
            _ if starts_message => cs.timestamp = cs.timestamp.wrapping_add(self.ts_field),
            _ => {}
        }
        cs.ts_field = self.ts_field;
        cs.extended = self.extended;
        cs.length = self.length;
        cs.type_id = self.type_id;
        cs.stream_id = self.stream_id;
        cs.has_header = true;
    }
}

/// Splits outgoing messages into chunks: a type 0 header on the first chunk, type 3 on the rest.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        ChunkEncoder { chunk_size: DEFAULT_CHUNK_SIZE }
    }
}

impl ChunkEncoder {
    /// Sets the chunk size for the following messages; send a Set Chunk Size message first.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.max(1);
    }

    /// Appends the chunks of one message to `out`. `csid` must be in 2..=63.
    pub fn encode(&self, out: &mut Vec<u8>, csid: u8, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        let extended = timestamp >= 0xFF_FFFF;
        let ts_field = if extended { 0xFF_FFFF } else { timestamp };
        out.push(csid & 0x3f);
        out.extend_from_slice(&ts_field.to_be_bytes()[1..]);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.push(type_id);
        out.extend_from_slice(&stream_id.to_le_bytes());
        if extended {
            out.extend_from_slice(&timestamp.to_be_bytes());
        }
        let mut chunks = payload.chunks(self.chunk_size as usize);
        if let Some(first) = chunks.next() {
            out.extend_from_slice(first);
        }
        for chunk in chunks {
            out.push(0xC0 | (csid & 0x3f));
            if extended {
                out.extend_from_slice(&timestamp.to_be_bytes());
            }
            out.extend_from_slice(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(dec: &mut ChunkDecoder, bytes: &[u8]) -> Result<Vec<Message>, RtmpError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = vec![];
        while let Some(m) = dec.decode(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn round_trips_multi_chunk_message() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut wire = vec![];
        ChunkEncoder::default().encode(&mut wire, 6, 1234, 9, 1, &payload);
        let mut dec = ChunkDecoder::new(Limits::default());
        // Feed byte by byte: the decoder must wait for whole chunks.
        let mut buf = BytesMut::new();
        let mut got = None;
        for b in &wire {
            buf.put_u8(*b);
            if let Some(m) = dec.decode(&mut buf).expect("decode") {
                got = Some(m);
            }
        }
        let m = got.expect("one message");
        assert_eq!((m.csid, m.timestamp, m.type_id, m.stream_id), (6, 1234, 9, 1));
        assert_eq!(&m.payload[..], &payload[..]);
    }

    #[test]
    fn extended_timestamps_and_deltas() {
        let mut wire = vec![];
        let enc = ChunkEncoder::default();
        enc.encode(&mut wire, 4, 0x0100_0000, 8, 1, b"abc");
        // Type 2 header (delta 40) then a type 3 new message repeating the delta.
        wire.extend_from_slice(&[0x80 | 4, 0, 0, 40, b'd']);
        let mut dec = ChunkDecoder::new(Limits::default());
        let msgs = decode_all(&mut dec, &wire).expect("decode");
        // The type 2 chunk reuses length 3, so "d" alone is not a whole message yet.
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].timestamp, 0x0100_0000);
        let mut wire2 = vec![0x80 | 4, 0, 0, 40, b'd', b'e', b'f', 0xC0 | 4, b'g', b'h', b'i'];
        let mut dec = ChunkDecoder::new(Limits::default());
        let mut first = vec![];
        enc.encode(&mut first, 4, 1000, 8, 1, b"abc");
        first.append(&mut wire2);
        let msgs = decode_all(&mut dec, &first).expect("decode");
        assert_eq!(msgs.iter().map(|m| m.timestamp).collect::<Vec<_>>(), vec![1000, 1040, 1080]);
    }

    #[test]
    fn caps_are_enforced() {
        let limits = Limits { max_chunk_size: 4096, max_message_size: 1000, max_command_size: 100, max_chunk_streams: 2 };
        let mut dec = ChunkDecoder::new(limits);
        assert!(matches!(dec.set_chunk_size(1 << 20), Err(RtmpError::ChunkSize { .. })));
        assert!(dec.set_chunk_size(0).is_err());
        let mut wire = vec![];
        ChunkEncoder::default().encode(&mut wire, 3, 0, 9, 1, &[0; 2000]);
        assert!(matches!(decode_all(&mut dec, &wire), Err(RtmpError::MessageTooLarge { .. })));

        let mut dec = ChunkDecoder::new(limits);
        let mut wire = vec![];
        ChunkEncoder::default().encode(&mut wire, 3, 0, 20, 0, &[0; 200]);
        assert!(matches!(decode_all(&mut dec, &wire), Err(RtmpError::MessageTooLarge { type_id: 20, .. })));

        let mut dec = ChunkDecoder::new(limits);
        let mut wire = vec![];
        for csid in 3..6 {
            ChunkEncoder::default().encode(&mut wire, csid, 0, 9, 1, b"x");
        }
        assert_eq!(decode_all(&mut dec, &wire), Err(RtmpError::TooManyChunkStreams(2)));
    }

    #[test]
    fn continuation_without_header_is_an_error() {
        let mut dec = ChunkDecoder::new(Limits::default());
        assert_eq!(decode_all(&mut dec, &[0xC3, 1, 2, 3]), Err(RtmpError::NoPreviousHeader(3)));
    }
}
