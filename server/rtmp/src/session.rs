//! The server side of an RTMP publishing session (RTMP spec §5.4, §7.2): protocol control messages,
//! NetConnection commands (connect, createStream, releaseStream, FCPublish, FCUnpublish,
//! deleteStream) and NetStream `publish`, in AMF0.
//!
//! The session decides nothing about authorisation: a `publish` becomes
//! [`SessionEvent::PublishRequested`], and the caller answers with [`ServerSession::accept_publish`]
//! or [`ServerSession::reject_publish`].

use std::collections::{HashMap, VecDeque};

use bytes::{Buf, Bytes, BytesMut};
use rml_amf0::Amf0Value;

use crate::chunk::{ChunkDecoder, ChunkEncoder, Limits};
use crate::handshake::Handshake;
use crate::message::{types, Message};
use crate::RtmpError;

/// Our outgoing chunk size in bytes, announced with Set Chunk Size after connect.
const OUT_CHUNK_SIZE: u32 = 4096;
/// Window Acknowledgement Size and peer bandwidth we announce, in bytes.
const WINDOW_SIZE: u32 = 2_500_000;
/// The message stream id handed out by createStream.
const STREAM_ID: u32 = 1;
/// Chunk stream ids for what we send.
const CSID_CONTROL: u8 = 2;
const CSID_COMMAND: u8 = 3;
const CSID_STREAM: u8 = 5;

/// Something the caller has to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// `connect` succeeded for application `app` (the first path segment of the RTMP URL).
    Connected {
        /// Application name, e.g. `live`.
        app: String,
    },
    /// The peer asked to publish. Answer with `accept_publish` or `reject_publish`.
    PublishRequested {
        /// Application from connect.
        app: String,
        /// Stream name (the stream key) with any `?query` removed.
        stream_key: String,
    },
    /// An FLV video tag body (RTMP message type 9) on the published stream.
    Video {
        /// Timestamp in ms (32-bit, wraps).
        timestamp: u32,
        /// The tag body.
        payload: Bytes,
    },
    /// An FLV audio tag body (RTMP message type 8) on the published stream.
    Audio {
        /// Timestamp in ms (32-bit, wraps).
        timestamp: u32,
        /// The tag body.
        payload: Bytes,
    },
    /// The publisher ended the stream (FCUnpublish, deleteStream or closeStream).
    Unpublished,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Handshake,
    Connecting,
    Connected,
    PublishPending,
    Publishing,
    Closed,
}

/// One RTMP server connection's protocol state. Feed it bytes; read back bytes and events.
#[derive(Debug)]
pub struct ServerSession {
    handshake: Handshake,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    input: BytesMut,
    output: Vec<u8>,
    events: VecDeque<SessionEvent>,
    phase: Phase,
    app: String,
    ack_window: u32,
    received: u64,
    last_ack: u64,
    epoch_ms: u32,
}

impl ServerSession {
    /// A session that enforces `limits` on the peer.
    pub fn new(limits: Limits) -> Self {
        ServerSession {
            handshake: Handshake::default(),
            decoder: ChunkDecoder::new(limits),
            encoder: ChunkEncoder::default(),
            input: BytesMut::new(),
            output: Vec::new(),
            events: VecDeque::new(),
            phase: Phase::Handshake,
            app: String::new(),
            ack_window: 0,
            received: 0,
            last_ack: 0,
            epoch_ms: 0,
        }
    }

    /// Sets the time (ms since server start) written into S1. Optional.
    pub fn set_epoch_ms(&mut self, ms: u32) {
        self.epoch_ms = ms;
    }

    /// True once the handshake finished; until then a peer may be no RTMP client at all.
    pub fn handshake_done(&self) -> bool {
        self.handshake.is_done()
    }

    /// True after `reject_publish`: send the pending output, then close the connection.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Processes bytes received from the peer. Errors are fatal for this connection.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        self.input.extend_from_slice(data);
        if self.phase == Phase::Handshake {
            let step = self.handshake.advance(&mut self.input, self.epoch_ms)?;
            self.output.extend_from_slice(&step.output);
            if !step.done {
                return Ok(());
            }
            self.phase = Phase::Connecting;
        } else {
            self.received += data.len() as u64;
        }
        while self.phase != Phase::Closed {
            let Some(msg) = self.decoder.decode(&mut self.input)? else { break };
            self.handle(msg)?;
        }
        self.maybe_ack();
        Ok(())
    }

    /// Takes the bytes to send to the peer (may be empty).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Next event to act on, in arrival order.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Accepts the pending publish: answers `NetStream.Publish.Start` (§7.2.2.6).
    pub fn accept_publish(&mut self) {
        if self.phase != Phase::PublishPending {
            return;
        }
        self.phase = Phase::Publishing;
        // User Control "Stream Begin" (§6.2, event type 0).
        let mut uc = vec![0, 0];
        uc.extend_from_slice(&STREAM_ID.to_be_bytes());
        self.send(CSID_CONTROL, types::USER_CONTROL, 0, &uc);
        self.on_status("status", "NetStream.Publish.Start", "Publishing started.");
    }

    /// Refuses the pending publish with an error-level onStatus, e.g. code `NetStream.Publish.BadName`
    /// for a stream that is already live or `NetStream.Publish.Denied` for an unknown stream key.
    /// The session is closed afterwards: send the output, then close the socket.
    pub fn reject_publish(&mut self, code: &str, description: &str) {
        self.on_status("error", code, description);
        self.phase = Phase::Closed;
    }

    fn on_status(&mut self, level: &str, code: &str, description: &str) {
        let info = object(&[
            ("level", Amf0Value::Utf8String(level.into())),
            ("code", Amf0Value::Utf8String(code.into())),
            ("description", Amf0Value::Utf8String(description.into())),
        ]);
        self.command(CSID_STREAM, STREAM_ID, vec![s("onStatus"), Amf0Value::Number(0.0), Amf0Value::Null, info]);
    }

    fn maybe_ack(&mut self) {
        if self.ack_window > 0 && self.received - self.last_ack >= u64::from(self.ack_window) {
            self.last_ack = self.received;
            let seq = (self.received & 0xFFFF_FFFF) as u32;
            self.send(CSID_CONTROL, types::ACK, 0, &seq.to_be_bytes());
        }
    }

    fn send(&mut self, csid: u8, type_id: u8, stream_id: u32, payload: &[u8]) {
        self.encoder.encode(&mut self.output, csid, 0, type_id, stream_id, payload);
    }

    fn command(&mut self, csid: u8, stream_id: u32, values: Vec<Amf0Value>) {
        // Serialising values we built ourselves cannot fail.
        if let Ok(bytes) = rml_amf0::serialize(&values) {
            self.send(csid, types::COMMAND_AMF0, stream_id, &bytes);
        }
    }

    fn handle(&mut self, msg: Message) -> Result<(), RtmpError> {
        let be32 = |p: &Bytes| -> Result<u32, RtmpError> {
            if p.len() < 4 {
                return Err(RtmpError::MalformedControl(msg.type_id));
            }
            Ok(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
        };
        match msg.type_id {
            types::SET_CHUNK_SIZE => self.decoder.set_chunk_size(be32(&msg.payload)? & 0x7FFF_FFFF)?,
            types::ABORT => self.decoder.abort(be32(&msg.payload)?),
            types::WINDOW_ACK_SIZE => self.ack_window = be32(&msg.payload)?,
            // Ping Request (event 6) gets a Ping Response (event 7) with the same timestamp.
            types::USER_CONTROL if msg.payload.len() >= 6 && msg.payload[..2] == [0, 6] => {
                let mut resp = vec![0, 7];
                resp.extend_from_slice(&msg.payload[2..6]);
                self.send(CSID_CONTROL, types::USER_CONTROL, 0, &resp);
            }
            types::USER_CONTROL | types::ACK | types::SET_PEER_BANDWIDTH | types::DATA_AMF0 | types::DATA_AMF3 => {}
            types::AUDIO | types::VIDEO if self.phase == Phase::Publishing => {
                let (timestamp, payload) = (msg.timestamp, msg.payload);
                self.events.push_back(if msg.type_id == types::VIDEO {
                    SessionEvent::Video { timestamp, payload }
                } else {
                    SessionEvent::Audio { timestamp, payload }
                });
            }
            types::AUDIO | types::VIDEO => {} // media before publish was accepted: ignore
            types::COMMAND_AMF0 => self.handle_command(&msg.payload)?,
            types::COMMAND_AMF3 => {
                let mut p = msg.payload.clone();
                if p.has_remaining() {
                    p.advance(1);
                }
                self.handle_command(&p)?
            }
            _ => {} // unknown types are ignored, as the spec allows for forward compatibility
        }
        Ok(())
    }

    fn handle_command(&mut self, payload: &[u8]) -> Result<(), RtmpError> {
        let mut reader = payload;
        let values = rml_amf0::deserialize(&mut reader).map_err(|e| RtmpError::Amf(e.to_string()))?;
        let mut it = values.into_iter();
        let name = it.next().and_then(Amf0Value::get_string).ok_or_else(|| RtmpError::Amf("command without name".into()))?;
        let txid = it.next().and_then(Amf0Value::get_number).unwrap_or(0.0);
        let cmd_obj = it.next();
        let args: Vec<Amf0Value> = it.collect();
        match name.as_str() {
            "connect" => {
                if self.phase != Phase::Connecting {
                    return Err(RtmpError::UnexpectedCommand(name));
                }
                let props: HashMap<String, Amf0Value> = cmd_obj.and_then(Amf0Value::get_object_properties).unwrap_or_default();
                self.app = props.get("app").cloned().and_then(Amf0Value::get_string).unwrap_or_default();
                self.app = self.app.trim_end_matches('/').to_string();
                self.send(CSID_CONTROL, types::WINDOW_ACK_SIZE, 0, &WINDOW_SIZE.to_be_bytes());
                let mut bw = WINDOW_SIZE.to_be_bytes().to_vec();
                bw.push(2); // dynamic limit type
                self.send(CSID_CONTROL, types::SET_PEER_BANDWIDTH, 0, &bw);
                self.send(CSID_CONTROL, types::SET_CHUNK_SIZE, 0, &OUT_CHUNK_SIZE.to_be_bytes());
                self.encoder.set_chunk_size(OUT_CHUNK_SIZE);
                let props = object(&[
                    ("fmsVer", s("FMS/3,0,1,123")),
                    ("capabilities", Amf0Value::Number(31.0)),
                ]);
                let info = object(&[
                    ("level", s("status")),
                    ("code", s("NetConnection.Connect.Success")),
                    ("description", s("Connection succeeded.")),
                    ("objectEncoding", Amf0Value::Number(0.0)),
                ]);
                self.command(CSID_COMMAND, 0, vec![s("_result"), Amf0Value::Number(txid), props, info]);
                self.phase = Phase::Connected;
                self.events.push_back(SessionEvent::Connected { app: self.app.clone() });
            }
            "releaseStream" | "FCPublish" => {
                if txid > 0.0 {
                    self.command(CSID_COMMAND, 0, vec![s("_result"), Amf0Value::Number(txid), Amf0Value::Null, Amf0Value::Undefined]);
                }
            }
            "createStream" => {
                self.command(
                    CSID_COMMAND,
                    0,
                    vec![s("_result"), Amf0Value::Number(txid), Amf0Value::Null, Amf0Value::Number(f64::from(STREAM_ID))],
                );
            }
            "publish" => {
                if self.phase != Phase::Connected {
                    return Err(RtmpError::UnexpectedCommand(name));
                }
                let raw = args.into_iter().next().and_then(Amf0Value::get_string).unwrap_or_default();
                let stream_key = raw.split('?').next().unwrap_or_default().to_string();
                self.phase = Phase::PublishPending;
                self.events.push_back(SessionEvent::PublishRequested { app: self.app.clone(), stream_key });
            }
            "FCUnpublish" | "deleteStream" | "closeStream" => {
                if self.phase == Phase::Publishing {
                    self.phase = Phase::Connected;
                    self.events.push_back(SessionEvent::Unpublished);
                }
            }
            "play" | "play2" => {
                let info = object(&[
                    ("level", s("error")),
                    ("code", s("NetStream.Play.Failed")),
                    ("description", s("This server takes RTMP publishers only; watch over HLS.")),
                ]);
                self.command(CSID_STREAM, STREAM_ID, vec![s("onStatus"), Amf0Value::Number(0.0), Amf0Value::Null, info]);
                self.phase = Phase::Closed;
            }
            _ => {
                if txid > 0.0 {
                    self.command(CSID_COMMAND, 0, vec![s("_error"), Amf0Value::Number(txid), Amf0Value::Null, Amf0Value::Null]);
                }
            }
        }
        Ok(())
    }
}

fn s(v: &str) -> Amf0Value {
    Amf0Value::Utf8String(v.to_string())
}

fn object(pairs: &[(&str, Amf0Value)]) -> Amf0Value {
    Amf0Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::HANDSHAKE_SIZE;

    fn cmd(values: Vec<Amf0Value>, stream_id: u32) -> Vec<u8> {
        let mut out = vec![];
        let body = rml_amf0::serialize(&values).expect("amf");
        ChunkEncoder::default().encode(&mut out, 3, 0, types::COMMAND_AMF0, stream_id, &body);
        out
    }

    fn decode_replies(bytes: &[u8]) -> Vec<Vec<Amf0Value>> {
        // Skip S0+S1+S2 when present; our replies use 4096-byte chunks after connect.
        let mut dec = ChunkDecoder::new(Limits::default());
        let mut buf = BytesMut::from(bytes);
        let mut out = vec![];
        while let Ok(Some(m)) = dec.decode(&mut buf) {
            if m.type_id == types::SET_CHUNK_SIZE {
                let _ = dec.set_chunk_size(u32::from_be_bytes([m.payload[0], m.payload[1], m.payload[2], m.payload[3]]));
            }
            if m.type_id == types::COMMAND_AMF0 {
                out.push(rml_amf0::deserialize(&mut &m.payload[..]).expect("amf"));
            }
        }
        out
    }

    fn connected_session() -> ServerSession {
        let mut sess = ServerSession::new(Limits::default());
        let mut hs = vec![3u8];
        hs.extend_from_slice(&[0; HANDSHAKE_SIZE]);
        hs.extend_from_slice(&[0; HANDSHAKE_SIZE]);
        sess.feed(&hs).expect("handshake");
        assert_eq!(sess.take_output().len(), 1 + 2 * HANDSHAKE_SIZE);
        sess.feed(&cmd(vec![s("connect"), Amf0Value::Number(1.0), object(&[("app", s("live"))])], 0)).expect("connect");
        assert_eq!(sess.poll_event(), Some(SessionEvent::Connected { app: "live".into() }));
        let replies = decode_replies(&sess.take_output());
        assert_eq!(replies[0][0], s("_result"));
        sess
    }

    #[test]
    fn publish_flow_accept() {
        let mut sess = connected_session();
        sess.feed(&cmd(vec![s("createStream"), Amf0Value::Number(2.0), Amf0Value::Null], 0)).expect("createStream");
        sess.feed(&cmd(vec![s("publish"), Amf0Value::Number(3.0), Amf0Value::Null, s("key123?x=1"), s("live")], 1)).expect("publish");
        assert_eq!(sess.poll_event(), Some(SessionEvent::PublishRequested { app: "live".into(), stream_key: "key123".into() }));
        sess.accept_publish();
        let out = sess.take_output();
        let mut dec = ChunkDecoder::new(Limits::default());
        dec.set_chunk_size(OUT_CHUNK_SIZE).expect("size");
        let mut buf = BytesMut::from(&out[..]);
        let mut codes = vec![];
        while let Ok(Some(m)) = dec.decode(&mut buf) {
            if m.type_id == types::COMMAND_AMF0 {
                codes.push(format!("{:?}", rml_amf0::deserialize(&mut &m.payload[..]).expect("amf")));
            }
        }
        assert!(codes.iter().any(|c| c.contains("NetStream.Publish.Start")), "{codes:?}");
        let mut video = vec![];
        ChunkEncoder::default().encode(&mut video, 6, 40, types::VIDEO, 1, b"\x17\x01\0\0\0frame");
        sess.feed(&video).expect("video");
        assert_eq!(sess.poll_event(), Some(SessionEvent::Video { timestamp: 40, payload: Bytes::from_static(b"\x17\x01\0\0\0frame") }));
        sess.feed(&cmd(vec![s("FCUnpublish"), Amf0Value::Number(4.0), Amf0Value::Null, s("key123")], 0)).expect("unpublish");
        assert_eq!(sess.poll_event(), Some(SessionEvent::Unpublished));
    }

    #[test]
    fn publish_flow_reject_closes() {
        let mut sess = connected_session();
        sess.feed(&cmd(vec![s("publish"), Amf0Value::Number(3.0), Amf0Value::Null, s("bad")], 1)).expect("publish");
        assert!(matches!(sess.poll_event(), Some(SessionEvent::PublishRequested { .. })));
        sess.reject_publish("NetStream.Publish.Denied", "unknown stream key");
        assert!(sess.is_closed());
        let mut dec = ChunkDecoder::new(Limits::default());
        dec.set_chunk_size(OUT_CHUNK_SIZE).expect("size");
        let out = sess.take_output();
        let m = dec.decode(&mut BytesMut::from(&out[..])).expect("decode").expect("message");
        let v = rml_amf0::deserialize(&mut &m.payload[..]).expect("amf");
        assert!(format!("{v:?}").contains("NetStream.Publish.Denied"));
    }

    #[test]
    fn publish_before_connect_is_an_error() {
        let mut sess = ServerSession::new(Limits::default());
        let mut hs = vec![3u8];
        hs.extend_from_slice(&[0; 2 * HANDSHAKE_SIZE]);
        sess.feed(&hs).expect("handshake");
        let r = sess.feed(&cmd(vec![s("publish"), Amf0Value::Number(3.0), Amf0Value::Null, s("k")], 1));
        assert_eq!(r, Err(RtmpError::UnexpectedCommand("publish".into())));
    }

    #[test]
    fn garbage_commands_are_errors_not_panics() {
        let mut sess = connected_session();
        let mut out = vec![];
        ChunkEncoder::default().encode(&mut out, 3, 0, types::COMMAND_AMF0, 0, &[0x0f, 0x00]);
        assert!(matches!(sess.feed(&out), Err(RtmpError::Amf(_))));
    }
}
