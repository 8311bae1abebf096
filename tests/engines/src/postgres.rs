//! A throwaway PostgreSQL cluster: `initdb` into a temporary directory, `postgres` on a free
//! loopback port, stopped (immediate shutdown) and deleted on drop.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A PostgreSQL server on 127.0.0.1 with one superuser `onair` (trust authentication on
/// loopback), durability off (`fsync=off`: tests need speed, not crash safety). PostgreSQL
/// refuses to run as root, so under root it runs as the `postgres` user (Debian's package makes it).
#[derive(Debug)]
pub struct PostgresServer {
    child: Child,
    dir: tempfile::TempDir,
    /// Its port.
    pub port: u16,
}

/// The directory holding `initdb`, `postgres` and `pg_isready`: the newest
/// `/usr/lib/postgresql/N/bin` (Debian's layout), else the `PATH`.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn tool(bin: &Option<PathBuf>, name: &str) -> PathBuf {
    bin.as_ref().map_or_else(|| PathBuf::from(name), |b| b.join(name))
}

/// `(uid, gid)` of the `postgres` user from `/etc/passwd`.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let mut fields = line.split(':').skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// A command that runs as `user` when given (we are root), as ourselves otherwise.
fn command(program: &Path, user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd.stdin(Stdio::null());
    cmd
}

impl PostgresServer {
    /// Initialises and starts one on a free port; waits until it accepts queries (≤ 30 s).
    /// Panics when PostgreSQL is missing or does not start (its log is in the panic message).
    pub fn start() -> PostgresServer {
        let bin = bin_dir();
        let root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let user = if root { Some(postgres_user().unwrap_or_else(|| panic!("running as root and there is no postgres user to run PostgreSQL as"))) } else { None };
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", dir.path().display()));
        }
        let data = dir.path().join("data");
        let init = command(&tool(&bin, "initdb"), user)
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "onair", "-E", "UTF8", "--locale=C", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("initdb: {e} (PostgreSQL 15 is on the image; Debian's postgresql package)"));
        assert!(init.status.success(), "initdb failed: {}", String::from_utf8_lossy(&init.stderr));
        let port = crate::free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap_or_else(|e| panic!("log file: {e}"));
        let mut child = command(&tool(&bin, "postgres"), user)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("postgres: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(tool(&bin, "pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                let log = std::fs::read_to_string(dir.path().join("postgres.log")).unwrap_or_default();
                panic!("PostgreSQL did not start on 127.0.0.1:{port}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        PostgresServer { child, dir, port }
    }

    /// `postgres://onair@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://onair@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, the postmaster stops its backends before exiting.
        let stopped = Command::new("kill").args(["-QUIT", &self.child.id().to_string()]).status().is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
