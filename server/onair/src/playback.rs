//! Playback tokens: what `GET /api/v1/playback/{channel}` hands a player, checked on the
//! Multivariant Playlist when `playback.require_token` is set.
//!
//! A token is `EXPIRES.SIGNATURE`: `EXPIRES` is Unix seconds, `SIGNATURE` the lowercase hex
//! HMAC-SHA256 (RFC 2104) of `CHANNEL\nEXPIRES` under `playback.token_secret`. Servers that share
//! the secret accept each other's tokens, so a player can fail over with the token it has.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Signs and checks playback tokens.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
    ttl: Duration,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// No `token` query parameter.
    #[error("missing token")]
    Missing,
    /// Not `EXPIRES.SIGNATURE`, or the signature does not match this channel.
    #[error("invalid token")]
    Invalid,
    /// Past its expiry.
    #[error("expired token")]
    Expired,
}

fn unix_s(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Signer {
    /// A signer with `secret` (or 32 random bytes) and a token lifetime.
    pub fn new(secret: Option<&str>, ttl: Duration) -> Self {
        let key = match secret {
            Some(s) => s.as_bytes().to_vec(),
            None => (0..32).map(|_| rand::random::<u8>()).collect(),
        };
        Signer { key, ttl }
    }

    fn mac(&self, channel: &str, expires: u64) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(format!("{channel}\n{expires}").as_bytes());
        mac
    }

    /// A token for `channel`, valid from `now` for the configured lifetime; returns it and its
    /// expiry (Unix seconds).
    pub fn sign(&self, channel: &str, now: SystemTime) -> (String, u64) {
        let expires = unix_s(now + self.ttl);
        let sig: String = self.mac(channel, expires).finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        (format!("{expires}.{sig}"), expires)
    }

    /// Checks a token for `channel` at `now`. Errors: [`TokenError`].
    pub fn verify(&self, channel: &str, token: Option<&str>, now: SystemTime) -> Result<(), TokenError> {
        let token = token.ok_or(TokenError::Missing)?;
        let (expires, sig) = token.split_once('.').ok_or(TokenError::Invalid)?;
        let expires: u64 = expires.parse().map_err(|_| TokenError::Invalid)?;
        if sig.len() != 64 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Invalid);
        }
        let bytes: Vec<u8> = (0..32).filter_map(|i| u8::from_str_radix(&sig[2 * i..2 * i + 2], 16).ok()).collect();
        self.mac(channel, expires).verify_slice(&bytes).map_err(|_| TokenError::Invalid)?;
        if expires < unix_s(now) {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_per_channel_until_expiry() {
        let s = Signer::new(Some("secret"), Duration::from_secs(60));
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let (t, exp) = s.sign("demo", now);
        assert_eq!(exp, 1_000_060);
        assert_eq!(s.verify("demo", Some(&t), now), Ok(()));
        assert_eq!(s.verify("other", Some(&t), now), Err(TokenError::Invalid));
        assert_eq!(s.verify("demo", Some(&t), now + Duration::from_secs(61)), Err(TokenError::Expired));
        assert_eq!(s.verify("demo", None, now), Err(TokenError::Missing));
        assert_eq!(s.verify("demo", Some("1.zz"), now), Err(TokenError::Invalid));
        // A peer with the same secret accepts it; another secret does not.
        assert_eq!(Signer::new(Some("secret"), Duration::ZERO).verify("demo", Some(&t), now), Ok(()));
        assert_eq!(Signer::new(Some("other"), Duration::ZERO).verify("demo", Some(&t), now), Err(TokenError::Invalid));
        // Tampering with the expiry breaks the signature.
        let forged = format!("9{t}");
        assert_eq!(s.verify("demo", Some(&forged), now), Err(TokenError::Invalid));
    }
}
