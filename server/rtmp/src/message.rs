//! RTMP messages: what the chunk stream carries (RTMP spec §6.1).

use bytes::Bytes;

/// Message type ids (RTMP spec §5.4 and §7.1).
pub mod types {
    /// Set Chunk Size (§5.4.1).
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message (§5.4.2).
    pub const ABORT: u8 = 2;
    /// Acknowledgement (§5.4.3).
    pub const ACK: u8 = 3;
    /// User Control Message (§6.2).
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size (§5.4.4).
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth (§5.4.5).
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data: one FLV audio tag body (§7.1.4).
    pub const AUDIO: u8 = 8;
    /// Video data: one FLV video tag body (§7.1.5).
    pub const VIDEO: u8 = 9;
    /// Data message in AMF3 (§7.1.2).
    pub const DATA_AMF3: u8 = 15;
    /// Command message in AMF3 (§7.1.1): a 0 byte, then AMF0.
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message in AMF0, e.g. `@setDataFrame onMetaData` (§7.1.2).
    pub const DATA_AMF0: u8 = 18;
    /// Command message in AMF0 (§7.1.1).
    pub const COMMAND_AMF0: u8 = 20;
}

/// One complete RTMP message, reassembled from its chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Chunk stream id it arrived on.
    pub csid: u32,
    /// Timestamp in milliseconds, already resolved from deltas and extended timestamps (32-bit, wraps).
    pub timestamp: u32,
    /// Message type id, see [`types`].
    pub type_id: u8,
    /// Message stream id (0 for NetConnection, the created stream's id for NetStream).
    pub stream_id: u32,
    /// The message payload.
    pub payload: Bytes,
}
