//! A real `redis-server` per test, on a free loopback port, that a test may kill and restart
//! (on the same port) to exercise what the gateway does while Redis is away.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_port};

pub struct Redis {
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Start a throwaway redis-server (no persistence) and wait until it answers PING.
    pub async fn start() -> Redis {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut r = Redis {
            addr,
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        r.spawn().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.log_path()).expect("redis log");
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.addr.port().to_string(),
            ])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn redis-server (scripts/ensure-deps installs it)");
        self.child = Some(child);
        let addr = self.addr;
        eventually(
            "redis-server PING",
            Duration::from_secs(10),
            || async move { ping(addr).await.then_some(()) },
        )
        .await;
    }

    /// Run one command through `redis-cli` and return its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Kill the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freeze (SIGSTOP) or thaw (SIGCONT) the server: connections stay open and nothing
    /// answers, as with a hung or partitioned Redis.
    pub fn pause(&self, paused: bool) {
        let Some(c) = &self.child else { return };
        let sig = if paused { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill {sig} redis-server failed");
    }

    /// Start it again on the same port (empty: no persistence).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a Redis server answers `PING` at `addr`.
pub async fn ping(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf).await, Ok(n) if buf[..n].starts_with(b"+PONG"))
}
