//! HTTPS: the TLS acceptor of the `[tls]` listener, rustls with the `ring` crypto provider and
//! ALPN `h2` then `http/1.1` (RFC 7301), so browsers get HTTP/2 as Apple's LL-HLS delivery
//! guidance asks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable or holds no certificate / private key.
    #[error("TLS {what} {path}: {source}")]
    Load {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The PEM reader's reason.
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the pair: a key type it cannot sign with, or a key that does not match the
    /// leaf certificate.
    #[error("TLS certificate {cert} with key {key}: {source}")]
    Setup {
        /// The certificate chain file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// A TLS server configuration: TLS 1.2 and 1.3 with rustls's safe defaults (ECDHE key exchange,
/// AEAD cipher suites only: what Mozilla's "intermediate" profile allows), one certificate chain,
/// ALPN `h2` preferred over `http/1.1`.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Loads `cert` (PEM: the leaf certificate first, then intermediates) and `key` (PEM private
    /// key: PKCS#8, PKCS#1 RSA or SEC1 EC). Errors: [`TlsError`] naming the file that failed.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|source| load_error("certificate", cert, source))?;
        if chain.is_empty() {
            return Err(load_error("certificate", cert, rustls::pki_types::pem::Error::NoItemsFound));
        }
        let private = PrivateKeyDer::from_pem_file(key).map_err(|source| load_error("private key", key, source))?;
        let setup = |source| TlsError::Setup { cert: cert.to_owned(), key: key.to_owned(), source };
        let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(setup)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)) })
    }

    /// Runs the server side of the handshake on `io`. The caller bounds it in time. Errors: the
    /// peer's or rustls's reason, as an I/O error.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(&self, io: S) -> std::io::Result<TlsStream<S>> {
        self.acceptor.accept(io).await
    }
}

fn load_error(what: &'static str, path: &Path, source: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Load { what, path: path.to_owned(), source }
}

/// The protocol ALPN selected on `stream` (`h2`, `http/1.1`), if any.
pub fn negotiated<S>(stream: &TlsStream<S>) -> Option<&[u8]> {
    stream.get_ref().1.alpn_protocol()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_empty_files_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a PEM file\n").expect("write");
        let missing = dir.path().join("missing.pem");
        let err = Tls::from_pem_files(&missing, &empty).expect_err("missing certificate");
        assert!(err.to_string().contains("certificate") && err.to_string().contains("missing.pem"), "{err}");
        let err = Tls::from_pem_files(&empty, &empty).expect_err("no certificate in the file");
        assert!(err.to_string().contains("certificate") && err.to_string().contains("empty.pem"), "{err}");
    }
}
