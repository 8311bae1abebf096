//! HTTPS: the TLS acceptor of the `[tls]` listener, rustls with the `ring` crypto provider and
//! ALPN `h2` then `http/1.1` (RFC 7301), so browsers get HTTP/2 as Apple's LL-HLS delivery
//! guidance asks. The certificate is reloaded when its files change (a renewal by certbot or
//! cert-manager), without a restart: [`Tls::watch`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

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
/// AEAD cipher suites only: what Mozilla's "intermediate" profile allows), one certificate chain
/// that [`Tls::watch`] replaces when its files change, ALPN `h2` preferred over `http/1.1`.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    current: Arc<Current>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.current.files.cert).field("key", &self.current.files.key).finish()
    }
}

/// The certificate and key files.
#[derive(Debug)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    /// Modification times of both files (through symlinks, as certbot's `live/` directory has
    /// them); `None` for a file that cannot be stat'ed right now.
    fn stamps(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let at = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        (at(&self.cert), at(&self.key))
    }

    /// Reads and checks the pair. Errors: [`TlsError`] naming the file or the pair.
    fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let (cert, key) = (&self.cert, &self.key);
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|source| load_error("certificate", cert, source))?;
        if chain.is_empty() {
            return Err(load_error("certificate", cert, rustls::pki_types::pem::Error::NoItemsFound));
        }
        let private = PrivateKeyDer::from_pem_file(key).map_err(|source| load_error("private key", key, source))?;
        CertifiedKey::from_der(chain, private, provider).map_err(|source| TlsError::Setup { cert: cert.clone(), key: key.clone(), source })
    }
}

/// The certified key every handshake gets: replaced whole by a reload, so a handshake sees the
/// old pair or the new one, never a mix.
#[derive(Debug)]
struct Current {
    files: Files,
    provider: Arc<CryptoProvider>,
    key: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

impl Tls {
    /// Loads `cert` (PEM: the leaf certificate first, then intermediates) and `key` (PEM private
    /// key: PKCS#8, PKCS#1 RSA or SEC1 EC). Errors: [`TlsError`] naming the file that failed, or
    /// both when the key is not the certificate's.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let files = Files { cert: cert.to_owned(), key: key.to_owned() };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = files.load(&provider)?;
        let current = Arc::new(Current { files, provider: provider.clone(), key: RwLock::new(Arc::new(certified)) });
        let setup = |source| TlsError::Setup { cert: cert.to_owned(), key: key.to_owned(), source };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), current })
    }

    /// Runs the server side of the handshake on `io`. The caller bounds it in time. Errors: the
    /// peer's or rustls's reason, as an I/O error.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(&self, io: S) -> std::io::Result<TlsStream<S>> {
        self.acceptor.accept(io).await
    }

    /// Until `stop`: every `every`, looks at the modification times of the certificate and key
    /// files and, when either changed, reads the pair again. A good pair serves every handshake
    /// from then on (connections already open keep theirs); a bad one (a file half written, a
    /// key that is not the certificate's) is logged with the reason, counted in
    /// `onair_tls_reloads_total{outcome="error"}`, and the pair in use stays until the files
    /// change again.
    pub async fn watch(&self, every: Duration, stop: CancellationToken) {
        let files = &self.current.files;
        let mut seen = files.stamps();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let now = files.stamps();
            if now == seen {
                continue;
            }
            seen = now;
            self.reload();
        }
    }

    /// Reads the files again and swaps the pair in when it is good. Returns whether it did.
    fn reload(&self) -> bool {
        let files = &self.current.files;
        match files.load(&self.current.provider) {
            Ok(certified) => {
                *self.current.key.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
                metrics::counter!("onair_tls_reloads_total", "outcome" => "ok").increment(1);
                tracing::info!(cert = %files.cert.display(), key = %files.key.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                metrics::counter!("onair_tls_reloads_total", "outcome" => "error").increment(1);
                tracing::warn!(error = %e, "TLS certificate files changed but cannot be used; still serving the previous certificate");
                false
            }
        }
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

    /// The leaf certificate a handshake would get now.
    fn served_leaf(tls: &Tls) -> Vec<u8> {
        tls.current.key.read().expect("lock").cert[0].to_vec()
    }

    fn leaf_of(chain: &Path) -> Vec<u8> {
        CertificateDer::pem_file_iter(chain).expect("pem").next().expect("leaf").expect("der").to_vec()
    }

    #[tokio::test]
    async fn a_renewed_pair_is_served_and_a_bad_one_keeps_the_previous() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        std::fs::create_dir_all(&old).expect("dir");
        std::fs::create_dir_all(&new).expect("dir");
        let (old, new) = (onair_test_engines::TestCa::make(&old), onair_test_engines::TestCa::make(&new));
        let (cert, key) = (dir.path().join("fullchain.pem"), dir.path().join("privkey.pem"));
        std::fs::copy(&old.cert, &cert).expect("copy");
        std::fs::copy(&old.key, &key).expect("copy");
        let tls = Tls::from_pem_files(&cert, &key).expect("tls");
        assert_eq!(served_leaf(&tls), leaf_of(&old.cert));
        let stop = CancellationToken::new();
        let watcher = tokio::spawn({
            let (tls, stop) = (tls.clone(), stop.clone());
            async move { tls.watch(Duration::from_millis(20), stop).await }
        });
        let wait_for = |want: Vec<u8>| {
            let tls = tls.clone();
            async move {
                for _ in 0..250 {
                    if served_leaf(&tls) == want {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                false
            }
        };
        // Half a renewal: the new certificate with the old key is refused; the old pair stays.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::copy(&new.cert, &cert).expect("copy");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(served_leaf(&tls), leaf_of(&old.cert), "a certificate whose key has not arrived is not served");
        // The key arrives: the new pair is served.
        std::fs::copy(&new.key, &key).expect("copy");
        assert!(wait_for(leaf_of(&new.cert)).await, "the renewed certificate is served");
        // A file replaced by garbage: the pair in use stays.
        std::fs::write(&cert, "truncated").expect("write");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(served_leaf(&tls), leaf_of(&new.cert));
        assert!(!tls.reload(), "garbage is refused");
        stop.cancel();
        watcher.await.expect("watch ends on stop");
    }
}
