//! Real engines for tests, each started on a free loopback port and killed on drop, never a mock:
//! [`RedisServer`] (Debian's `redis-server`, installed by `bash infra/setup.sh test`; with TLS too)
//! and [`PostgresServer`] (PostgreSQL 15, Debian's, a throwaway cluster in a temporary directory);
//! [`S3Server`] (`s3s-fs`, an S3-compatible server persisting to disk); and [`TestCa`], a
//! certificate authority made by `openssl` that a test browser trusts.

mod postgres;
mod s3;
mod tls;
pub use postgres::PostgresServer;
pub use s3::{S3Server, S3_ACCESS_KEY, S3_SECRET_KEY};
pub use tls::TestCa;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port free for both TCP and UDP, for a server a test starts.
///
/// Ports come from 20000–32767, below Linux's ephemeral range (32768–60999), handed out by a
/// process-wide cursor: the kernel's `bind(0)` port, once released, can be handed to another test's
/// outgoing connection or `bind(0)` before the server binds it ("Address already in use"), while
/// no socket takes a port of this range unless asked, and no two calls in a test binary return the
/// same port. The cursor starts at a point derived from the process id so consecutive test binaries
/// do not reuse each other's ports (sockets in TIME_WAIT). Panics when no port of the range binds.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 32_768 - FIRST;
    static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = CURSOR.compare_exchange(u32::MAX, std::process::id().wrapping_mul(2_654_435_761) % COUNT, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..COUNT {
        let port = (FIRST + CURSOR.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        if tcp.is_ok() && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT)
}

/// `redis-server` in the foreground on 127.0.0.1, without persistence (a restart comes back
/// empty, the worst case for the registry); killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl RedisServer {
    /// Starts one on a free port.
    pub fn start() -> RedisServer {
        Self::start_on(free_port(), None)
    }

    /// Starts one on `port` (e.g. the port of one just stopped, to restart it), with
    /// `requirepass` when `password` is given; waits until it accepts connections (≤ 10 s).
    /// Panics when `redis-server` is missing or does not start.
    pub fn start_on(port: u16, password: Option<&str>) -> RedisServer {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        if let Some(p) = password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server: {e} (bash infra/setup.sh test installs it)"));
        RedisServer::listening(child, port)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One serving TLS only, on a free port, with a self-signed certificate for 127.0.0.1 made by
    /// Debian's `openssl` in `dir`. Panics when `openssl` or `redis-server` fails.
    pub fn start_tls(dir: &std::path::Path) -> RedisServer {
        let (cert, key) = (dir.join("redis-cert.pem"), dir.join("redis-key.pem"));
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("openssl: {e}"));
        assert!(made.success(), "openssl could not make a certificate");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--tls-auth-clients", "no", "--tls-cert-file"])
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server: {e}"));
        RedisServer::listening(child, port)
    }

    /// Waits (≤ 10 s) until `child` accepts connections on `port`; panics if it exits or does not.
    fn listening(mut child: Child, port: u16) -> RedisServer {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                panic!("redis-server did not listen on 127.0.0.1:{port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, port }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
