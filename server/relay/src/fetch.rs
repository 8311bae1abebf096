//! Requests to upstream nodes: one pooled keep-alive client (HTTP/1.1, or HTTP/2 by ALPN over
//! TLS to an `https://` upstream), bounded bodies, timeouts, and the upstream's
//! `onair-produced-at` header read back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use onair_origin::PRODUCED_AT;

/// Largest upstream body accepted (a part, a segment, an init segment or a playlist), bytes.
pub const MAX_BODY: usize = 32 << 20;

/// Why an upstream request failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// Connecting, sending or reading failed (the upstream died or reset the connection).
    #[error("upstream unreachable: {0}")]
    Transport(String),
    /// No answer within the time allowed.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The upstream answered with this status.
    #[error("upstream answered {0}")]
    Status(u16),
    /// The body is larger than [`MAX_BODY`].
    #[error("upstream body over {MAX_BODY} bytes")]
    TooLarge,
}

impl FetchError {
    /// The metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Transport(_) => "transport",
            FetchError::Timeout(_) => "timeout",
            FetchError::Status(404) => "status_404",
            FetchError::Status(_) => "status",
            FetchError::TooLarge => "too_large",
        }
    }
}

/// A successful upstream response.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The body.
    pub body: Bytes,
    /// `onair-produced-at` (Unix ms), when the upstream sent it.
    pub produced_at: Option<SystemTime>,
}

/// The HTTP client of a relay.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
}

impl Fetcher {
    /// A client connecting within `connect_timeout`, trusting the system's certificate
    /// authorities and the PEM certificates in `extra_roots` for `https://` upstreams. Errors:
    /// a certificate that does not parse; the TLS/HTTP stack failed to initialise.
    pub fn new(connect_timeout: Duration, extra_roots: Option<&[u8]>) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = extra_roots {
            for root in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("onair-relay/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Fetcher { client })
    }

    /// GETs `url` within `timeout`; `kind` labels the metrics (`playlist`, `part`, `init`).
    /// Counted in `onair_relay_upstream_requests_total{kind,outcome}` and
    /// `onair_relay_upstream_bytes_total{kind}`. Errors: [`FetchError`].
    pub async fn get(&self, url: &str, timeout: Duration, kind: &'static str) -> Result<Fetched, FetchError> {
        let result = tokio::time::timeout(timeout, self.get_inner(url)).await.unwrap_or(Err(FetchError::Timeout(timeout)));
        let outcome = match &result {
            Ok(f) => {
                metrics::counter!("onair_relay_upstream_bytes_total", "kind" => kind).increment(f.body.len() as u64);
                "ok"
            }
            Err(e) => e.kind(),
        };
        metrics::counter!("onair_relay_upstream_requests_total", "kind" => kind, "outcome" => outcome).increment(1);
        result
    }

    async fn get_inner(&self, url: &str) -> Result<Fetched, FetchError> {
        let mut resp = self.client.get(url).send().await.map_err(|e| FetchError::Transport(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(FetchError::TooLarge);
        }
        let produced_at = resp
            .headers()
            .get(PRODUCED_AT)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        if resp.content_length().is_some() {
            let body = resp.bytes().await.map_err(|e| FetchError::Transport(e.to_string()))?;
            return Ok(Fetched { body, produced_at });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Transport(e.to_string()))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body: Bytes::from(body), produced_at })
    }
}
