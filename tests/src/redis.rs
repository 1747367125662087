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
    tls: Option<Tls>,
    cluster: bool,
}

/// Certificate, key and CA (PEM files) of a TLS-only Redis.
#[derive(Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl Redis {
    /// Start a throwaway redis-server (no persistence) and wait until it answers PING.
    pub async fn start() -> Redis {
        Self::start_with(None).await
    }

    /// A Redis that speaks only TLS (`rediss://`), with this certificate.
    pub async fn start_tls(tls: Tls) -> Redis {
        Self::start_with(Some(tls)).await
    }

    /// A node with cluster mode on, not yet part of a cluster (see [`create_cluster`]).
    pub async fn start_cluster_node() -> Redis {
        Self::start_inner(None, true).await
    }

    async fn start_with(tls: Option<Tls>) -> Redis {
        Self::start_inner(tls, false).await
    }

    async fn start_inner(tls: Option<Tls>, cluster: bool) -> Redis {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut r = Redis {
            addr,
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            tls,
            cluster,
        };
        r.spawn().await;
        r
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{}/", self.addr)
    }

    fn cli_command(&self) -> Command {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()]);
        if let Some(t) = &self.tls {
            c.arg("--tls").arg("--cacert").arg(&t.ca);
        }
        c
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.log_path()).expect("redis log");
        let port = self.addr.port().to_string();
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => {
                cmd.args(["--bind", "127.0.0.1", "--port", &port]);
            }
            Some(t) => {
                cmd.args(["--bind", "127.0.0.1", "--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(&t.cert)
                    .arg("--tls-key-file")
                    .arg(&t.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&t.ca)
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .arg("--cluster-config-file")
                .arg(self.dir.path().join("nodes.conf"));
        }
        let child = cmd
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
        if self.tls.is_some() {
            let mut probe = self.cli_command();
            probe.arg("PING");
            eventually(
                "redis-server PING over TLS",
                Duration::from_secs(10),
                || {
                    let ok = probe
                        .output()
                        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG");
                    async move { ok.then_some(()) }
                },
            )
            .await;
            return;
        }
        eventually(
            "redis-server PING",
            Duration::from_secs(10),
            || async move { ping(addr).await.then_some(()) },
        )
        .await;
    }

    /// Run one command through `redis-cli` and return its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self
            .cli_command()
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

/// Join cluster-mode nodes into one Redis Cluster (slots spread, no replicas) and wait until
/// every node reports `cluster_state:ok`.
pub async fn create_cluster(nodes: &[&Redis]) {
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("run redis-cli --cluster create");
    assert!(
        out.status.success(),
        "redis-cli --cluster create: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for n in nodes {
        eventually("cluster_state:ok", Duration::from_secs(20), || {
            let ok = n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok");
            async move { ok.then_some(()) }
        })
        .await;
    }
}
