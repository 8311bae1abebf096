//! The chat's WebSocket message format: one JSON object per text frame, `type` naming it.
//! Sans-IO: this module only parses and renders; [`crate::ws`] does the I/O.
//!
//! Client → server:
//! - `{"type":"send","text":"hi"}`: a message to the sender's room (a broadcaster's or
//!   moderator's message goes to every room of the channel);
//! - moderators and the broadcaster only: `{"type":"delete","id":"…"}`,
//!   `{"type":"timeout","user":"NAME","seconds":600}`, `{"type":"ban","user":"NAME"}`,
//!   `{"type":"unban","user":"NAME"}`, `{"type":"slow","seconds":30}` (0 turns slow mode off).
//!
//! Server → client:
//! - `welcome` first: `channel`, `room`, `rooms` (the channel's room count on this node), `user`
//!   (`name`, `role`), `members` (in the room), `slow_s`, `history` (the room's last messages, oldest first);
//! - `message`: `id`, `room` (absent for a channel-wide message), `user`, `role`, `text`, `ts_ms`
//!   (Unix ms the server accepted it);
//! - `deleted`: `id`; `moderation`: `action` (`ban`, `timeout`, `unban`), `user`, `until_ms`;
//!   `slow`: `seconds`; `members`: `room`, `count` (in the room), `channel` (in every room);
//! - `error`: `code` ([`ErrorCode`]), `message` (for people), `retry_after_ms` when waiting helps.
//!
//! Close codes ([`Close`]): 1003 a binary frame, 1007 a frame that is not a valid message, 1009
//! a frame over the size limit, 4001 a missing or invalid token, 4003 banned, 4008 a client that
//! did not read its messages in time (its send queue filled), 4009 the name is in use by another
//! connected user, 4010 (in a cluster) the room is hosted by another node: ask
//! `/api/v1/chat/{channel}/room` again, 4013 the server is full.
//!
//! Messages are plain text: control characters (CR, LF, tabs, …) become spaces, so no message
//! spans lines here or on the IRC gateway; pages must render `text` as text, never as HTML.

use serde::{Deserialize, Serialize};

/// A role in a channel's chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Anyone with a chat token.
    Viewer,
    /// Holds a moderator token of the channel.
    Moderator,
    /// Holds the channel's broadcaster token.
    Broadcaster,
}

impl Role {
    /// Moderators and the broadcaster moderate, speak to every room and have the larger rate limit.
    pub fn moderates(self) -> bool {
        self != Role::Viewer
    }

    /// Its name in the protocol and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Moderator => "moderator",
            Role::Broadcaster => "broadcaster",
        }
    }
}

/// A frame from a client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMessage {
    /// Say something.
    Send {
        /// The message.
        text: String,
    },
    /// Delete a message everywhere (moderators).
    Delete {
        /// The message's id.
        id: String,
    },
    /// Keep `user` out for `seconds` (moderators).
    Timeout {
        /// A connected user's name.
        user: String,
        /// 1 s to 14 days.
        seconds: u64,
    },
    /// Keep `user` out for good (moderators).
    Ban {
        /// A connected user's name, or the name of one banned or timed out before.
        user: String,
    },
    /// Lift a ban or timeout (moderators).
    Unban {
        /// The banned user's name.
        user: String,
    },
    /// Slow mode: viewers may post once per `seconds` (0: off; at most 3600).
    Slow {
        /// Seconds between a viewer's messages.
        seconds: u32,
    },
}

/// Why a request was refused, as `error.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Over the user's or the room's message rate.
    RateLimited,
    /// Slow mode: too soon after the user's last message.
    SlowMode,
    /// Longer than the message limit.
    TooLong,
    /// Nothing but spaces.
    Empty,
    /// Moderation by a viewer.
    Forbidden,
    /// Not a valid message (unknown type, missing field, bad value).
    BadMessage,
    /// No such user (moderation) or message (delete).
    NotFound,
    /// The user is timed out.
    TimedOut,
    /// The user is banned.
    Banned,
    /// No or an invalid token.
    Unauthorized,
    /// Another connected user has this name.
    NameInUse,
    /// The server holds as many chat connections as it may.
    Full,
    /// In a cluster, the room is hosted by another node.
    Moved,
}

impl ErrorCode {
    /// Its name in the protocol, also the metric label.
    pub fn label(self) -> &'static str {
        match self {
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SlowMode => "slow_mode",
            ErrorCode::TooLong => "too_long",
            ErrorCode::Empty => "empty",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TimedOut => "timed_out",
            ErrorCode::Banned => "banned",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NameInUse => "name_in_use",
            ErrorCode::Full => "full",
            ErrorCode::Moved => "moved",
        }
    }
}

/// An `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorFrame {
    /// What went wrong.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// When waiting helps: how long, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// A chat message as sent to clients (and kept in history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Unique in the channel: what `delete` names.
    pub id: String,
    /// Its room; `None` for a channel-wide message (broadcaster, moderators).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<u32>,
    /// The sender's name.
    pub user: String,
    /// The sender's role.
    pub role: Role,
    /// The text (one line, no control characters).
    pub text: String,
    /// When the server accepted it, Unix ms.
    pub ts_ms: u64,
}

/// The user a `welcome` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WelcomeUser {
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// A frame to a client.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage<'a> {
    /// First frame of a connection.
    Welcome {
        /// The channel.
        channel: &'a str,
        /// The room it was placed in (1, 2, …).
        room: u32,
        /// Rooms of the channel on this node.
        rooms: usize,
        /// Who the connection speaks as.
        user: WelcomeUser,
        /// Members of the room, this one included.
        members: usize,
        /// Slow mode, seconds (0: off).
        slow_s: u32,
        /// The room's last messages, oldest first.
        history: &'a [ChatMessage],
    },
    /// A chat message.
    Message(&'a ChatMessage),
    /// A message was deleted.
    Deleted {
        /// Its id.
        id: &'a str,
    },
    /// A ban, timeout or unban.
    Moderation {
        /// `ban`, `timeout` or `unban`.
        action: &'a str,
        /// The user's name.
        user: &'a str,
        /// End of the timeout or ban, Unix ms (absent for an unban or a permanent ban).
        #[serde(skip_serializing_if = "Option::is_none")]
        until_ms: Option<u64>,
    },
    /// Slow mode changed.
    Slow {
        /// Seconds between a viewer's messages (0: off).
        seconds: u32,
    },
    /// Member counts.
    Members {
        /// The room.
        room: u32,
        /// Members of the room.
        count: usize,
        /// Members of every room of the channel on this node.
        channel: usize,
    },
    /// A refusal.
    Error(&'a ErrorFrame),
}

impl ServerMessage<'_> {
    /// The frame's JSON text.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: no maps with non-string keys, no custom impls.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A close code and reason the server sends ([RFC 6455 §7.4](https://www.rfc-editor.org/rfc/rfc6455#section-7.4)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// 1003: a binary frame.
    Binary,
    /// 1007: a frame that is not a valid message.
    Invalid,
    /// 1009: a frame over the size limit.
    TooBig,
    /// 4001: no or an invalid token.
    Unauthorized,
    /// 4003: banned or timed out.
    Banned,
    /// 4008: the client did not read its messages in time.
    SlowConsumer,
    /// 4009: the name is in use.
    NameInUse,
    /// 4010: in a cluster, the room is hosted by another node: ask for a room again.
    Moved,
    /// 4013: the server is full.
    Full,
}

impl Close {
    /// The close code.
    pub fn code(self) -> u16 {
        match self {
            Close::Binary => 1003,
            Close::Invalid => 1007,
            Close::TooBig => 1009,
            Close::Unauthorized => 4001,
            Close::Banned => 4003,
            Close::SlowConsumer => 4008,
            Close::NameInUse => 4009,
            Close::Moved => 4010,
            Close::Full => 4013,
        }
    }

    /// The close reason (≤ 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            Close::Binary => "binary frames are not chat messages",
            Close::Invalid => "not a chat message",
            Close::TooBig => "frame too large",
            Close::Unauthorized => "missing or invalid chat token",
            Close::Banned => "banned from this channel",
            Close::SlowConsumer => "messages were not read in time",
            Close::NameInUse => "name in use",
            Close::Moved => "this room is on another chat node: ask for a room again",
            Close::Full => "chat server full",
        }
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Close::Binary => "binary",
            Close::Invalid => "invalid",
            Close::TooBig => "too_big",
            Close::Unauthorized => "unauthorized",
            Close::Banned => "banned",
            Close::SlowConsumer => "slow_consumer",
            Close::NameInUse => "name_in_use",
            Close::Moved => "moved",
            Close::Full => "full",
        }
    }
}

/// Parses a client's text frame. Errors: the parser's message, for an
/// [`ErrorCode::BadMessage`] reply.
pub fn parse(text: &str) -> Result<ClientMessage, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// A message's text made one clean line: control characters (CR, LF, tab, …) become spaces,
/// runs of spaces stay, leading and trailing spaces go. Errors: [`ErrorCode::Empty`] when nothing
/// is left, [`ErrorCode::TooLong`] over `max_chars` characters (Unicode scalar values).
pub fn clean_text(text: &str, max_chars: usize) -> Result<String, ErrorCode> {
    let cleaned: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        return Err(ErrorCode::Empty);
    }
    if cleaned.chars().count() > max_chars {
        return Err(ErrorCode::TooLong);
    }
    Ok(cleaned.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_and_refuse_what_they_do_not_know() {
        assert_eq!(parse(r#"{"type":"send","text":"hi"}"#), Ok(ClientMessage::Send { text: "hi".into() }));
        assert_eq!(parse(r#"{"type":"timeout","user":"bob","seconds":60}"#), Ok(ClientMessage::Timeout { user: "bob".into(), seconds: 60 }));
        assert_eq!(parse(r#"{"type":"slow","seconds":0}"#), Ok(ClientMessage::Slow { seconds: 0 }));
        for bad in [r#"{"type":"shout","text":"x"}"#, r#"{"type":"send"}"#, r#"{"type":"send","text":"x","room":2}"#, "hi", r#"{"type":"timeout","user":"b","seconds":-1}"#] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_is_one_clean_line_within_the_limit() {
        assert_eq!(clean_text("  hi\r\nPRIVMSG #x :owned\t!  ", 500).as_deref(), Ok("hi  PRIVMSG #x :owned !"));
        assert_eq!(clean_text("\r\n \u{7}", 500), Err(ErrorCode::Empty));
        assert_eq!(clean_text(&"é".repeat(500), 500).map(|t| t.chars().count()), Ok(500));
        assert_eq!(clean_text(&"é".repeat(501), 500), Err(ErrorCode::TooLong));
    }

    #[test]
    fn server_frames_render_as_documented() {
        let m = ChatMessage { id: "a1".into(), room: None, user: "demo".into(), role: Role::Broadcaster, text: "<b>hi</b>".into(), ts_ms: 5 };
        assert_eq!(
            ServerMessage::Message(&m).to_json(),
            r#"{"type":"message","id":"a1","user":"demo","role":"broadcaster","text":"<b>hi</b>","ts_ms":5}"#
        );
        let e = ErrorFrame { code: ErrorCode::RateLimited, message: "slow down".into(), retry_after_ms: Some(1500) };
        assert_eq!(ServerMessage::Error(&e).to_json(), r#"{"type":"error","code":"rate_limited","message":"slow down","retry_after_ms":1500}"#);
        assert_eq!(ServerMessage::Members { room: 2, count: 3, channel: 9 }.to_json(), r#"{"type":"members","room":2,"count":3,"channel":9}"#);
    }
}
