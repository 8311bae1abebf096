//! Playback tokens: JSON Web Tokens (RFC 7519) that `GET /api/v1/playback/{channel}` hands a
//! player when `playback.require_token` is set, and that every node then checks on every
//! playlist and media request.
//!
//! A token travels in a path prefix, `/t/{TOKEN}/hls/{channel}/…`, so the playlists' relative
//! URIs carry it without rewriting. Claims: `sub` = the channel, `exp` = expiry in Unix seconds,
//! rounded up to `playback.token_bucket_s` so that every viewer of a channel within one bucket
//! gets the same token and a CDN caches one copy per channel per bucket, not one per viewer.
//! Algorithms (RFC 7518 §3): HS256 with the shared `playback.token_secret`, or ES256 with
//! `token_private_key` to sign and `token_public_key` to verify, so a node that only checks
//! tokens holds no signing key. A broadcaster's own backend can mint tokens with any JWT library.
//!
//! A relay's upstream requests carry a token too: one it signs itself when it holds a signing
//! key, else the latest valid token one of its viewers presented for that channel.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

/// Checked tokens kept (token → channel, expiry), so a token is verified once, not per part.
const VERIFIED_CAPACITY: u64 = 100_000;

/// The claims OnAir signs and checks.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claims {
    /// The channel the token plays.
    sub: String,
    /// Expiry, Unix seconds.
    exp: u64,
}

/// Where the keys come from (`[playback]`).
#[derive(Debug, Clone, Default)]
pub struct Keys<'a> {
    /// HS256 shared secret.
    pub secret: Option<&'a str>,
    /// ES256 signing key: a PEM file, PKCS#8 (`openssl pkcs8 -topk8 -nocrypt`).
    pub private_key: Option<&'a Path>,
    /// ES256 verifying key: a PEM file (`openssl ec -pubout`).
    pub public_key: Option<&'a Path>,
}

/// Why the keys are unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key file is not a PEM key of the expected kind.
    #[error("{path} is not a P-256 {kind} key in PEM: {source}")]
    Pem {
        /// The file.
        path: String,
        /// "private (PKCS#8)" or "public".
        kind: &'static str,
        /// The parser's error.
        source: jsonwebtoken::errors::Error,
    },
    /// An ES256 private key without its public key, or both a secret and ES256 keys.
    #[error("playback tokens: set token_secret (HS256), or token_public_key (ES256, with token_private_key to sign), not both")]
    Mixed,
}

/// Signs and checks playback tokens.
#[derive(Clone)]
pub struct Signer {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    ttl: Duration,
    bucket_s: u64,
    /// Tokens minted, per channel: ES256 signatures are randomised, so re-signing would give
    /// each viewer a different URL (and a CDN a different cache key).
    minted: moka::sync::Cache<String, (u64, String)>,
    verified: moka::sync::Cache<String, (String, u64)>,
    /// The latest valid token each channel's viewers presented (for upstream requests).
    presented: moka::sync::Cache<String, String>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("algorithm", &self.algorithm).field("signs", &self.encoding.is_some()).finish_non_exhaustive()
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// No token (`playback.require_token` is set).
    #[error("missing token")]
    Missing,
    /// Malformed, wrong signature or algorithm, or for another channel.
    #[error("invalid token")]
    Invalid,
    /// Past its expiry.
    #[error("expired token")]
    Expired,
}

impl TokenError {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Invalid => "invalid",
            TokenError::Expired => "expired",
        }
    }
}

fn unix_s(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read { path: path.display().to_string(), source })
}

impl Signer {
    /// A signer from `keys` (none: HS256 with 32 random bytes, so tokens do not outlive the
    /// process), issuing tokens valid `ttl` rounded up to a multiple of `bucket` (≥ 1 s).
    /// Errors: [`KeyError`].
    pub fn new(keys: &Keys<'_>, ttl: Duration, bucket: Duration) -> Result<Self, KeyError> {
        let (algorithm, encoding, decoding) = match (keys.secret, keys.private_key, keys.public_key) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) | (None, Some(_), None) => return Err(KeyError::Mixed),
            (None, private, Some(public)) => {
                let pem = |path: &Path, kind, source| KeyError::Pem { path: path.display().to_string(), kind, source };
                let decoding = DecodingKey::from_ec_pem(&read(public)?).map_err(|e| pem(public, "public", e))?;
                let encoding = match private {
                    Some(p) => Some(EncodingKey::from_ec_pem(&read(p)?).map_err(|e| pem(p, "private (PKCS#8)", e))?),
                    None => None,
                };
                (Algorithm::ES256, encoding, decoding)
            }
            (secret, None, None) => {
                let key: Vec<u8> = match secret {
                    Some(s) => s.as_bytes().to_vec(),
                    None => (0..32).map(|_| rand::random::<u8>()).collect(),
                };
                (Algorithm::HS256, Some(EncodingKey::from_secret(&key)), DecodingKey::from_secret(&key))
            }
        };
        fn cache<V: Clone + Send + Sync + 'static>(n: u64, live: Duration) -> moka::sync::Cache<String, V> {
            moka::sync::Cache::builder().max_capacity(n).time_to_live(live).build()
        }
        let live = ttl + bucket;
        Ok(Signer { algorithm, encoding, decoding, ttl, bucket_s: bucket.as_secs().max(1), minted: cache(10_000, live), verified: cache(VERIFIED_CAPACITY, live), presented: cache(10_000, live) })
    }

    /// The signer `[playback]` describes. Errors: [`KeyError`].
    pub fn from_config(c: &crate::config::PlaybackConfig) -> Result<Self, KeyError> {
        let keys = Keys { secret: c.token_secret.as_deref(), private_key: c.token_private_key.as_deref(), public_key: c.token_public_key.as_deref() };
        Signer::new(&keys, Duration::from_secs(c.token_ttl_s), Duration::from_secs(c.token_bucket_s))
    }

    /// Whether this node holds a signing key (HS256 secret or ES256 private key).
    pub fn signs(&self) -> bool {
        self.encoding.is_some()
    }

    /// A token for `channel` valid from `now` for the lifetime, its expiry rounded up to the
    /// bucket; returns it and its expiry (Unix seconds), or `None` on a verify-only node.
    pub fn sign(&self, channel: &str, now: SystemTime) -> Option<(String, u64)> {
        let key = self.encoding.as_ref()?;
        let expires = (unix_s(now + self.ttl)).div_ceil(self.bucket_s) * self.bucket_s;
        if let Some((exp, token)) = self.minted.get(channel).filter(|(exp, _)| *exp == expires) {
            return Some((token, exp));
        }
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &Claims { sub: channel.to_string(), exp: expires }, key)
            .inspect_err(|e| tracing::error!(error = %e, "cannot sign a playback token"))
            .ok()?;
        self.minted.insert(channel.to_string(), (expires, token.clone()));
        Some((token, expires))
    }

    /// Checks `token` for `channel` at `now` (no leeway: the bucket already rounds expiry up).
    /// Errors: [`TokenError`].
    pub fn verify(&self, channel: &str, token: Option<&str>, now: SystemTime) -> Result<(), TokenError> {
        let token = token.ok_or(TokenError::Missing)?;
        let (sub, exp) = match self.verified.get(token) {
            Some(known) => known,
            None => {
                let mut validation = Validation::new(self.algorithm);
                validation.validate_exp = false; // checked below, against `now`
                validation.validate_aud = false;
                validation.set_required_spec_claims(&["exp", "sub"]);
                let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                })?;
                self.verified.insert(token.to_string(), (data.claims.sub.clone(), data.claims.exp));
                (data.claims.sub, data.claims.exp)
            }
        };
        if sub != channel {
            return Err(TokenError::Invalid);
        }
        if exp <= unix_s(now) {
            return Err(TokenError::Expired);
        }
        self.presented.insert(channel.to_string(), token.to_string());
        Ok(())
    }

    /// The token for this node's own requests to an upstream for `channel`: one it signs, else
    /// the latest valid one a viewer presented; `None` when it has neither.
    pub fn upstream_token(&self, channel: &str, now: SystemTime) -> Option<String> {
        match self.sign(channel, now) {
            Some((token, _)) => Some(token),
            None => self.presented.get(channel).filter(|t| self.verify(channel, Some(t), now).is_ok()),
        }
    }
}

/// A relay's upstream requests carry [`Signer::upstream_token`].
impl onair_relay::UpstreamAuth for Signer {
    fn token(&self, channel: &str) -> Option<String> {
        self.upstream_token(channel, SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgCGuJql/iqezbfc8b
XosDYDou2Vt+7vyRRjfFMP4EdhGhRANCAAQMtCx8g/Rp4WsI+65pY1eplMloU/rE
Z68wLRDrMLhPqVsmYaYim7Wa5tECUh/MVMFz+1U36rtEBA/JJprdZwRo
-----END PRIVATE KEY-----
";
    const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEDLQsfIP0aeFrCPuuaWNXqZTJaFP6
xGevMC0Q6zC4T6lbJmGmIpu1mubRAlIfzFTBc/tVN+q7RAQPySaa3WcEaA==
-----END PUBLIC KEY-----
";
    const MIN: Duration = Duration::from_secs(60);

    fn hs(secret: &str) -> Signer {
        Signer::new(&Keys { secret: Some(secret), ..Keys::default() }, MIN, MIN).expect("signer")
    }

    #[test]
    fn hs256_tokens_are_per_channel_bucketed_and_expire() {
        let s = hs("secret");
        let now = UNIX_EPOCH + Duration::from_secs(1_000_010);
        let (t, exp) = s.sign("demo", now).expect("signs");
        assert_eq!(exp, 1_000_080, "now + 60 s, rounded up to the minute");
        // The whole bucket gets the same token: one CDN cache key per channel per bucket.
        assert_eq!(s.sign("demo", now + Duration::from_secs(9)).map(|x| x.0), Some(t.clone()));
        assert_eq!(s.verify("demo", Some(&t), now), Ok(()));
        assert_eq!(s.verify("other", Some(&t), now), Err(TokenError::Invalid));
        assert_eq!(s.verify("demo", Some(&t), now + Duration::from_secs(70)), Err(TokenError::Expired));
        assert_eq!(s.verify("demo", None, now), Err(TokenError::Missing));
        assert_eq!(s.verify("demo", Some("1.ab"), now), Err(TokenError::Invalid));
        // A peer with the same secret accepts it; another secret does not.
        assert_eq!(hs("secret").verify("demo", Some(&t), now), Ok(()));
        assert_eq!(hs("other").verify("demo", Some(&t), now), Err(TokenError::Invalid));
        // Tampering with the payload breaks the signature.
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        parts[1] = parts[1].replace('A', "B");
        assert_eq!(hs("secret").verify("demo", Some(&parts.join(".")), now), Err(TokenError::Invalid));
    }

    #[test]
    fn es256_verifies_with_the_public_key_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (private, public) = (dir.path().join("p.pem"), dir.path().join("pub.pem"));
        std::fs::write(&private, PRIVATE).expect("write");
        std::fs::write(&public, PUBLIC).expect("write");
        let signer = Signer::new(&Keys { private_key: Some(&private), public_key: Some(&public), ..Keys::default() }, MIN, MIN).expect("signer");
        let checker = Signer::new(&Keys { public_key: Some(&public), ..Keys::default() }, MIN, MIN).expect("checker");
        let now = SystemTime::now();
        let (t, _) = signer.sign("demo", now).expect("signs");
        assert!(t.starts_with("eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.") || t.starts_with("eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9."), "{t}");
        assert_eq!(signer.sign("demo", now).map(|x| x.0), Some(t.clone()), "minted once per bucket");
        assert!(!checker.signs() && checker.sign("demo", now).is_none());
        assert_eq!(checker.upstream_token("demo", now), None);
        assert_eq!(checker.verify("demo", Some(&t), now), Ok(()));
        // A verify-only relay forwards what its viewers presented.
        assert_eq!(checker.upstream_token("demo", now), Some(t.clone()));
        // An HS256 token is refused by an ES256 node (no algorithm confusion).
        let (hs_token, _) = hs("secret").sign("demo", now).expect("signs");
        assert_eq!(checker.verify("demo", Some(&hs_token), now), Err(TokenError::Invalid));
        assert!(matches!(Signer::new(&Keys { private_key: Some(&private), ..Keys::default() }, MIN, MIN), Err(KeyError::Mixed)));
        assert!(matches!(Signer::new(&Keys { public_key: Some(&private), ..Keys::default() }, MIN, MIN), Err(KeyError::Pem { .. })));
    }
}
