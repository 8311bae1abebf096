//! Hub frames ([`crate::protocol`] JSON) as IRC lines, sans-IO. Lines are built with
//! `irc-proto`, which escapes tag values (IRCv3 message-tags: `;`, space, `\`, CR, LF), and chat
//! text has no control characters ([`crate::protocol::clean_text`]), so no frame becomes two lines.

use irc_proto::message::Tag;
use irc_proto::Message;
use serde_json::Value;

/// The capabilities the gateway offers (`CAP LS`): IRCv3 `message-tags` (with `msgid`) and
/// `server-time`, and Twitch's `twitch.tv/tags` (display-name, badges, `id`, `tmi-sent-ts`) and
/// `twitch.tv/commands` (CLEARCHAT, CLEARMSG, ROOMSTATE).
pub const CAPABILITIES: [&str; 4] = ["message-tags", "server-time", "twitch.tv/tags", "twitch.tv/commands"];

/// The server's name in prefixes and numerics.
pub const SERVER: &str = "onair";

/// Which capabilities a client enabled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// `message-tags`.
    pub tags: bool,
    /// `server-time`.
    pub time: bool,
    /// `twitch.tv/tags`.
    pub twitch_tags: bool,
    /// `twitch.tv/commands`.
    pub twitch_commands: bool,
}

impl Caps {
    /// Enables `cap`; false when it is not one of [`CAPABILITIES`].
    pub fn enable(&mut self, cap: &str) -> bool {
        match cap {
            "message-tags" => self.tags = true,
            "server-time" => self.time = true,
            "twitch.tv/tags" => self.twitch_tags = true,
            "twitch.tv/commands" => self.twitch_commands = true,
            _ => return false,
        }
        true
    }
}

/// `nick!nick@nick.onair`.
pub fn prefix(nick: &str) -> String {
    format!("{nick}!{nick}@{nick}.{SERVER}")
}

/// A line: `command` with `args` (the last one may hold spaces), from `source` (default the
/// server), with `tags`. `None` when irc-proto refuses the arguments (cannot happen for the
/// names and texts the hub lets through).
pub fn line(tags: Vec<Tag>, source: Option<&str>, command: &str, args: &[&str]) -> Option<String> {
    let tags = (!tags.is_empty()).then_some(tags);
    Message::with_tags(tags, Some(source.unwrap_or(SERVER)), command, args.to_vec()).ok().map(|m| m.to_string())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (IRCv3 server-time).
pub fn server_time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn tag(key: &str, value: impl Into<String>) -> Tag {
    Tag(key.to_string(), Some(value.into()))
}

/// A chat message (`message` frame or history entry) as a PRIVMSG to `#channel`.
pub fn privmsg(m: &Value, channel: &str, caps: Caps) -> Option<String> {
    let (user, text) = (m["user"].as_str()?, m["text"].as_str()?);
    let (id, ts) = (m["id"].as_str().unwrap_or_default(), m["ts_ms"].as_u64().unwrap_or_default());
    let role = m["role"].as_str().unwrap_or("viewer");
    let mut tags = Vec::new();
    if caps.tags {
        tags.push(tag("msgid", id));
    }
    if caps.time {
        tags.push(tag("time", server_time(ts)));
    }
    if caps.twitch_tags {
        let badges = match role {
            "broadcaster" => "broadcaster/1",
            "moderator" => "moderator/1",
            _ => "",
        };
        tags.extend([
            tag("badges", badges),
            tag("display-name", user),
            tag("id", id),
            tag("mod", if role == "moderator" { "1" } else { "0" }),
            tag("tmi-sent-ts", ts.to_string()),
        ]);
        if let Some(room) = m["room"].as_u64() {
            tags.push(tag("room", room.to_string()));
        }
    }
    line(tags, Some(&prefix(user)), "PRIVMSG", &[&format!("#{channel}"), text])
}

/// The lines a hub frame becomes for the client `nick` in `#channel`: its own messages are not
/// echoed (IRC does not echo), member counts and the welcome are not lines.
pub fn frame(f: &Value, channel: &str, nick: &str, caps: Caps) -> Vec<String> {
    let target = format!("#{channel}");
    let notice = |tags: Vec<Tag>, text: &str| line(tags, None, "NOTICE", &[&target, text]);
    let out = match f["type"].as_str().unwrap_or_default() {
        "message" if f["user"].as_str().is_some_and(|u| u.eq_ignore_ascii_case(nick)) => None,
        "message" => privmsg(f, channel, caps),
        "deleted" if caps.twitch_commands => line(vec![tag("target-msg-id", f["id"].as_str().unwrap_or_default())], None, "CLEARMSG", &[&target, ""]),
        "deleted" => notice(vec![], &format!("a moderator deleted message {}", f["id"].as_str().unwrap_or_default())),
        "moderation" => {
            let (action, user) = (f["action"].as_str().unwrap_or_default(), f["user"].as_str().unwrap_or_default());
            let seconds = f["until_ms"].as_u64().map(|until| until.saturating_sub(chrono::Utc::now().timestamp_millis().max(0) as u64).div_ceil(1000));
            match (action, caps.twitch_commands) {
                ("unban", _) => notice(vec![], &format!("{user} may chat again")),
                (_, true) => line(seconds.map(|s| vec![tag("ban-duration", s.to_string())]).unwrap_or_default(), None, "CLEARCHAT", &[&target, user]),
                ("timeout", false) => notice(vec![], &format!("{user} was timed out for {} s", seconds.unwrap_or(0))),
                _ => notice(vec![], &format!("{user} was banned")),
            }
        }
        "slow" => {
            let seconds = f["seconds"].as_u64().unwrap_or(0);
            if caps.twitch_commands {
                line(vec![tag("slow", seconds.to_string())], None, "ROOMSTATE", &[&target])
            } else {
                notice(vec![], &format!("slow mode: {seconds} s"))
            }
        }
        "error" => {
            let tags = if caps.twitch_tags || caps.tags { vec![tag("msg-id", f["code"].as_str().unwrap_or_default())] } else { vec![] };
            notice(tags, f["message"].as_str().unwrap_or_default())
        }
        _ => None,
    };
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALL: Caps = Caps { tags: true, time: true, twitch_tags: true, twitch_commands: true };

    #[test]
    fn messages_carry_the_tags_the_client_asked_for() {
        let m = json!({"type": "message", "id": "ab1", "room": 2, "user": "anna", "role": "moderator", "text": "hi there", "ts_ms": 1_700_000_000_123u64});
        assert_eq!(frame(&m, "demo", "bob", Caps::default()), [":anna!anna@anna.onair PRIVMSG #demo :hi there\r\n"]);
        assert_eq!(
            frame(&m, "demo", "bob", ALL),
            ["@msgid=ab1;time=2023-11-14T22:13:20.123Z;badges=moderator/1;display-name=anna;id=ab1;mod=1;tmi-sent-ts=1700000000123;room=2 :anna!anna@anna.onair PRIVMSG #demo :hi there\r\n"]
        );
        // Its own message is not echoed.
        assert!(frame(&m, "demo", "Anna", ALL).is_empty());
    }

    #[test]
    fn tag_values_are_escaped_and_text_cannot_break_the_line() {
        let f = json!({"type": "error", "code": "rate limited; x\r\nQUIT", "message": "slow down"});
        assert_eq!(frame(&f, "demo", "bob", ALL), ["@msg-id=rate\\slimited\\:\\sx\\r\\nQUIT :onair NOTICE #demo :slow down\r\n"]);
        // The hub's text never holds CR/LF; a display name cannot either (names are [A-Za-z0-9_]).
        let m = json!({"type": "message", "id": "1", "user": "eve", "role": "viewer", "text": crate::protocol::clean_text("a\r\nPRIVMSG #x :b", 500).expect("text"), "ts_ms": 0});
        let lines = frame(&m, "demo", "bob", Caps::default());
        assert_eq!(lines, [":eve!eve@eve.onair PRIVMSG #demo :a  PRIVMSG #x :b\r\n"]);
    }

    #[test]
    fn moderation_becomes_twitch_commands_or_notices() {
        let ban = json!({"type": "moderation", "action": "ban", "user": "troll"});
        assert_eq!(frame(&ban, "demo", "bob", ALL), [":onair CLEARCHAT #demo troll\r\n"]);
        assert_eq!(frame(&ban, "demo", "bob", Caps::default()), [":onair NOTICE #demo :troll was banned\r\n"]);
        let del = json!({"type": "deleted", "id": "ab1"});
        assert_eq!(frame(&del, "demo", "bob", ALL), ["@target-msg-id=ab1 :onair CLEARMSG #demo :\r\n"]);
        let slow = json!({"type": "slow", "seconds": 30});
        assert_eq!(frame(&slow, "demo", "bob", ALL), ["@slow=30 :onair ROOMSTATE #demo\r\n"]);
        assert!(frame(&json!({"type": "members", "room": 1, "count": 3, "channel": 3}), "demo", "bob", ALL).is_empty());
    }
}
