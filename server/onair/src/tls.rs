//! HTTPS: the TLS acceptor of the `[tls]` listener, OpenSSL with ALPN `h2` then `http/1.1`
//! (RFC 7301), so browsers get HTTP/2 as Apple's LL-HLS delivery guidance asks.
//!
//! OpenSSL rather than rustls: the RTMP crate's HMAC dependency pins `subtle` to 2.4 while
//! rustls needs ≥ 2.5, and Cargo holds one semver-compatible version per crate. OpenSSL is
//! already linked for the database and Redis TLS clients.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use openssl::ssl::{AlpnError, SslAcceptor, SslFiletype, SslMethod};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;

/// ALPN protocols offered, in preference order, in the wire format (length-prefixed).
const ALPN: &[u8] = b"\x02h2\x08http/1.1";

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable or not a certificate chain / private key, or the key does
    /// not match the certificate.
    #[error("TLS {what} {path}: {source}")]
    Load {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// OpenSSL's reason.
        source: openssl::error::ErrorStack,
    },
    /// OpenSSL could not build the acceptor.
    #[error("TLS setup: {0}")]
    Setup(#[from] openssl::error::ErrorStack),
}

/// A TLS server configuration: Mozilla's "intermediate" protocol and cipher settings (TLS 1.2
/// and 1.3), one certificate chain, ALPN `h2` preferred over `http/1.1`.
#[derive(Clone)]
pub struct Tls {
    acceptor: Arc<SslAcceptor>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Loads `cert` (PEM: the leaf certificate first, then intermediates) and `key` (PEM private
    /// key, PKCS#8 or traditional). Errors: [`TlsError`] naming the file that failed.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
        b.set_certificate_chain_file(cert).map_err(|source| TlsError::Load { what: "certificate", path: cert.to_owned(), source })?;
        b.set_private_key_file(key, SslFiletype::PEM).map_err(|source| TlsError::Load { what: "private key", path: key.to_owned(), source })?;
        b.check_private_key().map_err(|source| TlsError::Load { what: "private key", path: key.to_owned(), source })?;
        b.set_alpn_select_callback(|_, offered| openssl::ssl::select_next_proto(ALPN, offered).ok_or(AlpnError::NOACK));
        Ok(Tls { acceptor: Arc::new(b.build()) })
    }

    /// Runs the server side of the handshake on `io`. The caller bounds it in time. Errors: the
    /// peer's or OpenSSL's reason, as an I/O error.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(&self, io: S) -> std::io::Result<SslStream<S>> {
        let ssl = openssl::ssl::Ssl::new(self.acceptor.context()).map_err(std::io::Error::other)?;
        let mut stream = SslStream::new(ssl, io).map_err(std::io::Error::other)?;
        Pin::new(&mut stream).accept().await.map_err(std::io::Error::other)?;
        Ok(stream)
    }
}

/// The protocol ALPN selected on `stream` (`h2`, `http/1.1`), if any.
pub fn negotiated<S>(stream: &SslStream<S>) -> Option<&[u8]> {
    stream.ssl().selected_alpn_protocol()
}
