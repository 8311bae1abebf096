//! `[chat]` settings.

use std::path::Path;

use rand::distr::{Alphanumeric, SampleString};

/// `[chat]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Serve chat (`/api/v1/chat/…`) on this node.
    pub enabled: bool,
    /// Members per room before a new room opens.
    pub room_size: usize,
    /// Messages a joiner receives from its room's past (the last N).
    pub history: usize,
    /// Longest message, characters.
    pub max_message_chars: usize,
    /// A viewer's messages per `rate_window_s` (Twitch: 20 per 30 s).
    pub user_messages: u32,
    /// A moderator's or the broadcaster's messages per `rate_window_s` (Twitch: 100).
    pub moderator_messages: u32,
    /// The window of those limits, seconds.
    pub rate_window_s: u64,
    /// Viewer messages per second one room accepts (a burst of as many).
    pub room_messages_per_s: u32,
    /// Frames queued for one connection; a client that lets it fill is dropped (close 4008).
    pub send_queue: usize,
    /// Most chat connections on this node (close 4013 beyond).
    pub max_connections: usize,
    /// HS256 secret of chat tokens, the same on every node of a cluster. Default: a random one
    /// kept in `DATA_DIR/chat.secret` (tokens survive a restart of this node).
    pub token_secret: Option<String>,
    /// Chat token lifetime, seconds.
    pub token_ttl_s: u64,
    /// Chat tokens one client address may get per minute.
    pub tokens_per_minute: u32,
    /// Listen address of the IRC gateway (e.g. `0.0.0.0:6667`); none: off (the default).
    pub irc_addr: Option<std::net::SocketAddr>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            enabled: true,
            room_size: 200,
            history: 50,
            max_message_chars: 500,
            user_messages: 20,
            moderator_messages: 100,
            rate_window_s: 30,
            room_messages_per_s: 50,
            send_queue: 256,
            max_connections: 20_000,
            token_secret: None,
            token_ttl_s: 24 * 3600,
            tokens_per_minute: 30,
            irc_addr: None,
        }
    }
}

/// File of the generated chat token secret in the data directory.
pub const SECRET_FILE: &str = "chat.secret";

impl ChatConfig {
    /// The token secret: `token_secret`, else the one in `data_dir/chat.secret`, created (mode
    /// 0600) when missing. Errors: the file cannot be read or written.
    pub fn secret(&self, data_dir: &Path) -> std::io::Result<Vec<u8>> {
        if let Some(s) = &self.token_secret {
            return Ok(s.as_bytes().to_vec());
        }
        let path = data_dir.join(SECRET_FILE);
        match std::fs::read(&path) {
            Ok(s) if s.len() >= 32 => return Ok(s),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(data_dir)?;
        let secret = Alphanumeric.sample_string(&mut rand::rng(), 48);
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
        file.write_all(secret.as_bytes())?;
        Ok(secret.into_bytes())
    }
}
