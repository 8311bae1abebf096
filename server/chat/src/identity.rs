//! Who speaks in chat.
//!
//! - **Viewers** hold a chat token: a JSON Web Token (RFC 7519, HS256 with the chat secret) that
//!   `GET /api/v1/chat/{channel}/token` hands out with a guest name (or a name the viewer asked
//!   for). Claims: `sub` a random subject (what bans hold against), `name`, `ch` the channel,
//!   `exp` Unix seconds.
//! - **The broadcaster and moderators** hold a per-channel moderator token (`mod_` + 32
//!   alphanumerics) made by `onair channel moderator`; the database keeps its SHA-256 only. It is
//!   not the stream key, which must never reach a browser.
//!
//! Names are 3–25 of `A-Z a-z 0-9 _`, compared without case. A viewer cannot take the channel's
//! name (the broadcaster's), a moderator's name, or a reserved one; the hub also refuses a name
//! another connected user holds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::protocol::Role;

/// Who a connection speaks as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Stable id: the chat token's `sub`, or `mod:` + the moderator token's hash prefix.
    pub subject: String,
    /// Display name.
    pub name: String,
    /// Role in the channel.
    pub role: Role,
}

/// Names the system keeps for itself.
const RESERVED: [&str; 6] = ["onair", "system", "admin", "moderator", "broadcaster", "server"];

/// Whether `name` is 3–25 of `A-Z a-z 0-9 _`.
pub fn valid_name(name: &str) -> bool {
    (3..=25).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether a viewer may call itself `name` in `channel` (valid, not the channel's, not reserved).
pub fn viewer_may_use(name: &str, channel: &str) -> bool {
    valid_name(name) && !name.eq_ignore_ascii_case(channel) && !RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r))
}

/// A guest name: `guest_` and 7 random lower-case letters and digits (36⁷ ≈ 7.8·10¹⁰ names: two
/// of 10,000 connected guests share one with a chance below 0.1 %; the hub refuses the second,
/// close 4009, and the page asks for another name).
pub fn guest_name() -> String {
    let mut rng = rand::rng();
    let tail: String = (0..7).map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)])).collect();
    format!("guest_{tail}")
}

/// A fresh moderator token: `mod_` + 32 alphanumerics (~190 bits).
pub fn new_moderator_token() -> String {
    format!("mod_{}", Alphanumeric.sample_string(&mut rand::rng(), 32))
}

/// The hex SHA-256 of a moderator token, as stored.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claims {
    sub: String,
    name: String,
    ch: String,
    exp: u64,
}

/// Why a chat token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Malformed, bad signature, expired, or for another channel.
    #[error("invalid or expired chat token")]
    Invalid,
    /// The name is not one a viewer may use here.
    #[error("the name {0:?} is not available: use 3-25 of A-Z, a-z, 0-9 and _, not the channel's name")]
    Name(String),
}

/// A viewer's chat token, as handed out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChatToken {
    /// The JWT.
    pub token: String,
    /// The name it speaks as.
    pub name: String,
    /// Expiry, Unix ms.
    pub expires_at_ms: u64,
}

/// Signs and checks chat tokens (HS256).
#[derive(Clone)]
pub struct ChatTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for ChatTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTokens").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl ChatTokens {
    /// Tokens signed with `secret` (every node of a cluster needs the same), valid `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        ChatTokens { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), ttl }
    }

    /// A token for `channel` named `name` (a guest name when `None`), with a fresh subject.
    /// Errors: [`TokenError::Name`] for a name a viewer may not use.
    pub fn issue(&self, channel: &str, name: Option<&str>, now: SystemTime) -> Result<ChatToken, TokenError> {
        let name = match name {
            Some(n) if viewer_may_use(n, channel) => n.to_string(),
            Some(n) => return Err(TokenError::Name(n.to_string())),
            None => guest_name(),
        };
        let exp = now.checked_add(self.ttl).unwrap_or(now).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = Claims { sub: Alphanumeric.sample_string(&mut rand::rng(), 16), name: name.clone(), ch: channel.to_string(), exp };
        // HS256 signing of these claims cannot fail.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default();
        Ok(ChatToken { token, name, expires_at_ms: exp * 1000 })
    }

    /// The viewer a token names in `channel`. Errors: [`TokenError::Invalid`].
    pub fn verify(&self, token: &str, channel: &str) -> Result<Identity, TokenError> {
        match self.verify_any(token)? {
            (ch, identity) if ch == channel => Ok(identity),
            _ => Err(TokenError::Invalid),
        }
    }

    /// The channel a token is for and the viewer it names (the IRC gateway learns the channel
    /// only at JOIN). Errors: [`TokenError::Invalid`].
    pub fn verify_any(&self, token: &str) -> Result<(String, Identity), TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|_| TokenError::Invalid)?.claims;
        if !viewer_may_use(&claims.name, &claims.ch) {
            return Err(TokenError::Invalid);
        }
        Ok((claims.ch, Identity { subject: claims.sub, name: claims.name, role: Role::Viewer }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_a_viewer_of_one_channel() {
        let tokens = ChatTokens::new(b"secret", Duration::from_secs(60));
        let now = SystemTime::now();
        let t = tokens.issue("demo", None, now).expect("issue");
        assert!(t.name.starts_with("guest_") && valid_name(&t.name));
        let id = tokens.verify(&t.token, "demo").expect("valid");
        assert_eq!((id.name.as_str(), id.role), (t.name.as_str(), Role::Viewer));
        // Another channel, another key, an expired token, garbage: refused.
        assert_eq!(tokens.verify(&t.token, "other"), Err(TokenError::Invalid));
        assert_eq!(ChatTokens::new(b"other", Duration::from_secs(60)).verify(&t.token, "demo"), Err(TokenError::Invalid));
        let old = tokens.issue("demo", Some("alice"), now - Duration::from_secs(120)).expect("issue");
        assert_eq!(tokens.verify(&old.token, "demo"), Err(TokenError::Invalid));
        assert_eq!(tokens.verify("x.y.z", "demo"), Err(TokenError::Invalid));
        // Each token has its own subject.
        let again = tokens.issue("demo", Some("alice"), now).expect("issue");
        assert_ne!(tokens.verify(&again.token, "demo").expect("valid").subject, id.subject);
    }

    #[test]
    fn viewers_cannot_take_the_broadcasters_or_reserved_names() {
        let tokens = ChatTokens::new(b"secret", Duration::from_secs(60));
        for bad in ["demo", "DEMO", "Onair", "ab", "a b c", "x\r\nPRIVMSG", &"a".repeat(26)] {
            assert!(matches!(tokens.issue("demo", Some(bad), SystemTime::now()), Err(TokenError::Name(_))), "{bad:?}");
        }
        assert!(tokens.issue("demo", Some("Alice_99"), SystemTime::now()).is_ok());
        assert_eq!(token_hash("mod_x").len(), 64);
        assert!(new_moderator_token().starts_with("mod_"));
    }
}
