//! HTTP connections: the accept loop with a server-wide and a per-IP connection cap (trusted
//! networks exempt), hyper's header-read timeout, an idle timeout on every socket, and a
//! graceful drain on shutdown.
//!
//! The idle timeout lives in [`Guarded`], an IO wrapper, because hyper's own timer does not cover
//! the protocol-detection read of the auto (HTTP/1 + h2c) builder, nor a peer that stops reading
//! a response: a socket with no byte read or written for `idle_timeout_ms` (and a first request
//! head not complete within `header_read_timeout_ms`) fails with `TimedOut` and is closed.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use std::convert::Infallible;

use futures::future::FutureExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::config::HttpConfig;
use crate::http::App;
use crate::tls::Tls;

/// How long the drain waits for in-flight responses after shutdown before closing the rest.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `http.max_connections` are open.
    ServerFull,
    /// `http.max_connections_per_ip` are open from this address.
    PerIp,
}

impl Refused {
    fn label(self) -> &'static str {
        match self {
            Refused::ServerFull => "server_full",
            Refused::PerIp => "per_ip",
        }
    }
}

/// Open connections, overall and per client address.
#[derive(Debug)]
pub struct Admission {
    config: HttpConfig,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Admission {
    /// Caps from `config`.
    pub fn new(config: HttpConfig) -> Arc<Self> {
        Arc::new(Admission { config, open: Mutex::new((0, HashMap::new())) })
    }

    /// True for addresses in `http.trusted` (relays, CDNs, load generators): never capped.
    pub fn trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.config.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Admits one more connection from `ip`, or says why not. The ticket gives the slot back on drop.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let ip = ip.to_canonical();
        let exempt = self.trusted(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if !exempt {
            if open.0 >= self.config.max_connections {
                return Err(Refused::ServerFull);
            }
            if open.1.get(&ip).copied().unwrap_or(0) >= self.config.max_connections_per_ip {
                return Err(Refused::PerIp);
            }
        }
        open.0 += 1;
        *open.1.entry(ip).or_insert(0) += 1;
        metrics::gauge!("onair_http_open_connections").set(open.0 as f64);
        Ok(Ticket { admission: self.clone(), ip })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

/// One admitted connection.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
        metrics::gauge!("onair_http_open_connections").set(open.0 as f64);
    }
}

/// A socket that fails with `TimedOut` when no byte moved for the idle timeout, or when the peer
/// sent nothing within the header-read timeout of connecting (from its first byte on, hyper's
/// header-read timer takes over).
pub struct Guarded {
    inner: TcpStream,
    /// Bytes written, server-wide (the node's egress).
    egress: Arc<AtomicU64>,
    idle: Duration,
    /// Deadline for the peer's first byte; `None` once read.
    first_deadline: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl Guarded {
    fn new(inner: TcpStream, config: &HttpConfig, egress: Arc<AtomicU64>) -> Self {
        let idle = Duration::from_millis(config.idle_timeout_ms);
        let first = Instant::now() + Duration::from_millis(config.header_read_timeout_ms);
        let mut g = Guarded { inner, egress, idle, first_deadline: Some(first), timer: Box::pin(tokio::time::sleep(idle)) };
        g.touch();
        g
    }

    fn touch(&mut self) {
        let idle = Instant::now() + self.idle;
        let deadline = self.first_deadline.map_or(idle, |f| f.min(idle));
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().poll(cx).is_ready()
    }

    /// A write's outcome: progress resets the idle timer; a write stalled past it fails.
    fn wrote(&mut self, cx: &mut Context<'_>, r: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
        match r {
            Poll::Ready(r) => {
                if let Ok(n @ 1..) = r {
                    self.egress.fetch_add(n as u64, Ordering::Relaxed);
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(Self::timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn timed_out() -> std::io::Error {
        metrics::counter!("onair_http_errors_total", "kind" => "connection_timeout").increment(1);
        std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle or too slow")
    }
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.first_deadline = None;
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(Self::timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, r)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The socket address of the peer that sent a request (a request extension on every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// A request extension on requests that came over the HTTPS listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverTls;

/// The origin (`scheme://authority`, RFC 6454) a request was addressed to: `https` on the HTTPS
/// listener, else `http`; the authority from the request target (HTTP/2's `:authority`) or the
/// `Host` header (HTTP/1.1). `None` when the request names neither.
pub fn request_origin<B>(request: &hyper::Request<B>) -> Option<String> {
    let scheme = if request.extensions().get::<OverTls>().is_some() { "https" } else { "http" };
    let authority = match request.uri().authority() {
        Some(a) => a.as_str(),
        None => request.headers().get(hyper::header::HOST)?.to_str().ok()?,
    };
    Some(format!("{scheme}://{authority}"))
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops accepting, lets in-flight
/// responses finish for up to 3 s (blocked playlist requests were already answered
/// with 503 by the origin) and returns. With `tls`, every connection first completes a TLS
/// handshake (within `header_read_timeout_ms`; ALPN `h2` or `http/1.1`). Every request carries a
/// [`PeerAddr`] extension; every byte written to a socket (TLS records included) is added to `egress`.
pub async fn serve(listener: TcpListener, app: App, config: HttpConfig, shutdown: CancellationToken, egress: Arc<AtomicU64>, tls: Option<Tls>) {
    let admission = Admission::new(config.clone());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.header_read_timeout_ms))
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(config.max_streams_per_connection);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let handshake_limit = Duration::from_millis(config.header_read_timeout_ms);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    metrics::counter!("onair_http_errors_total", "kind" => "accept").increment(1);
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let ticket = match admission.admit(peer.ip()) {
            Ok(t) => t,
            Err(why) => {
                refuse(stream, peer, why, tls.is_some());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let io = Guarded::new(stream, &config, egress.clone());
        let app = app.clone();
        let secure = tls.is_some();
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| app.call(request, peer, secure).map(Ok::<_, Infallible>));
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let _ticket = ticket;
            let ended = match tls {
                None => watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned()).await,
                Some(tls) => {
                    let stream = match tokio::time::timeout(handshake_limit, tls.accept(io)).await {
                        Ok(Ok(stream)) => stream,
                        failed => {
                            metrics::counter!("onair_http_errors_total", "kind" => "tls_handshake").increment(1);
                            let why = failed.map_or_else(|_| "timed out".to_owned(), |r| r.err().map(|e| e.to_string()).unwrap_or_default());
                            tracing::debug!(%peer, error = %why, "TLS handshake failed");
                            return;
                        }
                    };
                    let alpn = match crate::tls::negotiated(&stream) {
                        Some(b"h2") => "h2",
                        Some(_) => "http/1.1",
                        None => "none",
                    };
                    metrics::counter!("onair_http_tls_connections_total", "alpn" => alpn).increment(1);
                    watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned()).await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown()).await.is_err() {
        tracing::info!("HTTP drain limit reached; closing the remaining connections");
    }
}

/// Answers a refused connection with a bare 503 (so a player tries another server) and closes it,
/// off the accept loop and within one second. On the TLS listener the connection is only closed
/// (a plaintext answer would be garbage to a TLS client, and a handshake costs what the cap saves).
fn refuse(mut stream: TcpStream, peer: SocketAddr, why: Refused, tls: bool) {
    metrics::counter!("onair_http_refused_total", "reason" => why.label()).increment(1);
    tracing::debug!(%peer, reason = why.label(), "HTTP connection refused");
    if tls {
        return;
    }
    tokio::spawn(async move {
        let reply = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nCache-Control: no-store\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n";
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply)).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(per_ip: usize, total: usize, trusted: &[&str]) -> HttpConfig {
        HttpConfig {
            max_connections: total,
            max_connections_per_ip: per_ip,
            trusted: trusted.iter().map(|t| t.parse().expect("cidr")).collect(),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn caps_per_ip_and_overall_with_trusted_networks_exempt() {
        let a = Admission::new(config(2, 3, &["10.0.0.0/8"]));
        let ip1: IpAddr = "192.0.2.1".parse().expect("ip");
        let ip2: IpAddr = "192.0.2.2".parse().expect("ip");
        let t1 = a.admit(ip1).expect("1");
        let _t2 = a.admit(ip1).expect("2");
        assert_eq!(a.admit(ip1).err(), Some(Refused::PerIp));
        let _t3 = a.admit(ip2).expect("3");
        assert_eq!(a.admit(ip2).err(), Some(Refused::ServerFull));
        // A relay in a trusted network is never capped.
        let relay: IpAddr = "10.1.2.3".parse().expect("ip");
        let relays: Vec<_> = (0..10).map(|_| a.admit(relay).expect("trusted")).collect();
        assert_eq!(a.open(), 13);
        drop(relays);
        drop(t1);
        assert!(a.admit(ip1).is_ok(), "a slot came back");
        // IPv4-mapped IPv6 addresses count as their IPv4 address.
        let b = Admission::new(config(1, 10, &[]));
        let _v4 = b.admit(ip1).expect("v4");
        assert_eq!(b.admit("::ffff:192.0.2.1".parse().expect("ip")).err(), Some(Refused::PerIp));
    }
}
