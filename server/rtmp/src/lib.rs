//! A sans-IO RTMP server: feed it the bytes a publisher sends, take out the bytes to answer and the
//! events to act on. It never touches a socket, so tests drive it with byte strings.
//!
//! Layers, after Adobe's "RTMP Specification 1.0" (2012):
//! - [`handshake`]: C0/C1/C2 against S0/S1/S2 (§5.2);
//! - [`chunk`]: the chunk stream (§5.3) with hard caps on chunk size, message size and chunk streams;
//! - [`session`]: message dispatch, protocol control messages (§5.4) and the NetConnection /
//!   NetStream commands of a publisher (§7.2) encoded in AMF0 (via `rml_amf0`).
//!
//! The contract: call [`ServerSession::feed`] with whatever arrived, then send
//! [`ServerSession::take_output`] and handle each [`SessionEvent`] from [`ServerSession::poll_event`].
//! A returned [`RtmpError`] is fatal for that connection only; close it.

pub mod chunk;
pub mod handshake;
pub mod message;
pub mod session;

pub use chunk::{ChunkDecoder, ChunkEncoder, Limits};
pub use message::Message;
pub use session::{ServerSession, SessionEvent};

/// Errors that end an RTMP connection. Each names what the peer did wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtmpError {
    /// C0 asked for a protocol version other than 3 (§5.2.2).
    #[error("unsupported RTMP version {0} in C0 (expected 3)")]
    BadVersion(u8),
    /// The peer set a chunk size of 0, with the reserved top bit set, or above our cap (§5.4.1).
    #[error("chunk size {size} is invalid or above the limit {limit}")]
    ChunkSize {
        /// Requested chunk size in bytes.
        size: u32,
        /// Our cap in bytes.
        limit: u32,
    },
    /// A message header announced more bytes than our cap allows.
    #[error("message of {size} bytes (type {type_id}) exceeds the limit {limit}")]
    MessageTooLarge {
        /// Announced message length in bytes.
        size: u32,
        /// Message type id.
        type_id: u8,
        /// Our cap in bytes.
        limit: u32,
    },
    /// The peer opened more chunk streams than our cap allows.
    #[error("more than {0} chunk streams")]
    TooManyChunkStreams(usize),
    /// A type 1, 2 or 3 chunk arrived on a chunk stream that never had a type 0 header (§5.3.1.2).
    #[error("chunk stream {0} continues a message it never started")]
    NoPreviousHeader(u32),
    /// A protocol control message had the wrong length (§5.4).
    #[error("malformed protocol control message type {0}")]
    MalformedControl(u8),
    /// An AMF0 command could not be decoded.
    #[error("malformed AMF0 command: {0}")]
    Amf(String),
    /// The peer sent a command that makes no sense at this point (e.g. publish before connect).
    #[error("unexpected command {0}")]
    UnexpectedCommand(String),
}
