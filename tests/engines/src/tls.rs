//! A test certificate authority made with Debian's `openssl` command, and a browser trust store
//! that trusts it (NSS, as Chromium on Linux reads it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A CA and one server certificate it signed for `localhost` and `127.0.0.1`, as PEM files in a
/// directory the caller owns.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate (the trust anchor clients add).
    pub ca_cert: PathBuf,
    /// The server's certificate chain (leaf, then the CA).
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    dir: PathBuf,
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.stdout(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
}

impl TestCa {
    /// Makes the CA (EC P-256, valid 2 days) and the server certificate in `dir`. Panics when
    /// `openssl` is missing or fails.
    pub fn make(dir: &Path) -> TestCa {
        let p = |name: &str| dir.join(name);
        let openssl = |args: &[&str]| {
            let mut c = Command::new("openssl");
            c.current_dir(dir).args(args);
            c
        };
        run(&mut openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca-key.pem"]), "openssl CA key");
        run(
            &mut openssl(&["req", "-x509", "-new", "-key", "ca-key.pem", "-days", "2", "-subj", "/CN=OnAir test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.pem"]),
            "openssl CA certificate",
        );
        run(&mut openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server-key.ec.pem"]), "openssl server key");
        run(&mut openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", "server-key.ec.pem", "-out", "server-key.pem"]), "openssl pkcs8");
        run(&mut openssl(&["req", "-new", "-key", "server-key.pem", "-subj", "/CN=localhost", "-out", "server.csr"]), "openssl CSR");
        std::fs::write(p("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n").expect("server.ext");
        run(
            &mut openssl(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server-leaf.pem"]),
            "openssl sign",
        );
        let chain = [std::fs::read(p("server-leaf.pem")).expect("leaf"), std::fs::read(p("ca.pem")).expect("ca")].concat();
        std::fs::write(p("server-chain.pem"), chain).expect("chain");
        TestCa { ca_cert: p("ca.pem"), cert: p("server-chain.pem"), key: p("server-key.pem"), dir: dir.to_owned() }
    }

    /// The CA certificate's PEM bytes.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca_cert).expect("CA certificate")
    }

    /// A home directory whose NSS database (`.pki/nssdb`) trusts this CA for TLS servers: run
    /// Chromium with `HOME` set to it. Made with `certutil` (Debian's `libnss3-tools`).
    pub fn browser_home(&self) -> PathBuf {
        let home = self.dir.join("home");
        let db = home.join(".pki/nssdb");
        std::fs::create_dir_all(&db).expect("nssdb dir");
        let db_arg = format!("sql:{}", db.display());
        run(Command::new("certutil").args(["-N", "-d", &db_arg, "--empty-password"]), "certutil -N");
        run(Command::new("certutil").args(["-A", "-d", &db_arg, "-n", "onair-test-ca", "-t", "C,,"]).arg("-i").arg(&self.ca_cert), "certutil -A");
        home
    }
}
