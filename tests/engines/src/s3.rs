//! An S3-compatible server that persists to disk: `s3s-fs` (the `s3s-fs` crate's binary,
//! installed by `bash infra/setup.sh test` with `cargo install`), on a free loopback port, its
//! buckets directories under a temporary root. It can be stopped and started again on the same
//! port and root, so a test sees an outage and that nothing stored before it was lost.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Access key and secret the server accepts.
pub const S3_ACCESS_KEY: &str = "onair-test";
/// See [`S3_ACCESS_KEY`].
pub const S3_SECRET_KEY: &str = "onair-test-secret";

/// A running `s3s-fs`; killed on drop (its data stays in the root until the root is dropped).
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    root: tempfile::TempDir,
    /// Its port.
    pub port: u16,
}

impl S3Server {
    /// Starts one on a free port with an empty bucket `bucket`.
    pub fn start(bucket: &str) -> S3Server {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        std::fs::create_dir_all(root.path().join(bucket)).unwrap_or_else(|e| panic!("bucket dir: {e}"));
        let mut s = S3Server { child: None, root, port: crate::free_port() };
        s.resume();
        s
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The directory the buckets are in.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Kills the server (an outage); [`S3Server::resume`] brings it back with the same data.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts (again) on the same port and root; waits (≤ 10 s) until it accepts connections.
    /// Panics when `s3s-fs` is missing or does not start.
    pub fn resume(&mut self) {
        self.stop();
        let mut child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(self.root.path())
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("s3s-fs: {e} (bash infra/setup.sh test installs it)"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                panic!("s3s-fs did not listen on 127.0.0.1:{}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
