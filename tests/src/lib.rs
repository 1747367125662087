//! End-to-end test harness: real `gateway` processes on free loopback ports, real hyper
//! origins in-process, real TLS clients. Nothing here is a fake of a component we ship.

pub mod aws;
pub mod jwt;
pub mod kinesis;
pub mod origin;
pub mod pipeline_util;
pub mod redis;
pub mod tls;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// `N` distinct loopback ports that were free a moment ago: the listeners are held until all
/// are chosen, so the kernel cannot hand the same port out twice (a gateway given one port
/// for two listeners aborts).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("local addr").port())
}

/// Path of a workspace binary built next to this test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the workspace binaries first (tests/run does)",
        path.display()
    );
    path
}

/// Poll `f` until it returns `Some`, or panic after `timeout`. For waiting on other processes
/// (readiness, health checks, file-watch reloads), where no clock can be injected.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A running gateway process; killed on drop.
pub struct Gateway {
    pub child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub policies: PathBuf,
    pub ca_pem: PathBuf,
    log: PathBuf,
}

impl Gateway {
    /// Start `gateway run` on a copy of `files` (name → TOML text) and wait until it is ready.
    pub async fn start(files: &[(&str, &str)]) -> Gateway {
        Self::start_with(files, &[]).await
    }

    pub async fn start_with(files: &[(&str, &str)], extra_args: &[&str]) -> Gateway {
        Self::start_env(files, extra_args, &[]).await
    }

    /// Start with extra arguments and environment (e.g. `Moto::env()`).
    pub async fn start_env(
        files: &[(&str, &str)],
        extra_args: &[&str],
        env: &[(&str, String)],
    ) -> Gateway {
        Self::start_layout(
            |policies| {
                for (name, text) in files {
                    std::fs::write(policies.join(name), text).expect("write policy");
                }
            },
            extra_args,
            env,
        )
        .await
    }

    /// Start with a policy directory that `layout` fills (e.g. the symlinks of a Kubernetes
    /// ConfigMap volume).
    pub async fn start_layout(
        layout: impl FnOnce(&Path),
        extra_args: &[&str],
        env: &[(&str, String)],
    ) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).expect("mkdir");
        layout(&policies);
        let [http, https, admin] = free_ports::<3>().map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let certs = dir.path().join("certs");
        let log = dir.path().join("gateway.log");
        let mut cmd = Command::new(bin("gateway"));
        cmd.arg("run");
        if !extra_args.contains(&"--access-log-dir") {
            cmd.arg("--access-log-dir")
                .arg(dir.path().join("accesslog"));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .arg("--policies")
            .arg(&policies)
            .args(["--http", &http.to_string()])
            .args(["--https", &https.to_string()])
            .args(["--admin", &admin.to_string()])
            .arg("--dev-certs")
            .arg(&certs)
            .arg("--upgrade-sock")
            .arg(dir.path().join("upgrade.sock"))
            .arg("--pid-file")
            .arg(dir.path().join("gateway.pid"))
            .args(["--grace-seconds", "5"])
            .args(extra_args)
            .stdout(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log)
                    .expect("log file"),
            ))
            .spawn()
            .expect("spawn gateway");
        let mut gw = Gateway {
            child,
            http,
            https,
            admin,
            ca_pem: certs.join("ca.pem"),
            dir,
            policies,
            log,
        };
        let admin_url = format!("http://{admin}/readyz");
        let client = reqwest::Client::new();
        let child = &mut gw.child;
        let log_path = gw.log.clone();
        eventually("gateway readiness", Duration::from_secs(20), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "gateway exited early with {status}:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            let req = client.get(&admin_url).send();
            async move { req.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
        })
        .await;
        // Pingora starts each service on its own thread: the admin listener answering does
        // not mean the proxy listeners are bound yet.
        for addr in [gw.http, gw.https] {
            eventually("proxy listener", Duration::from_secs(20), || async move {
                tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
            })
            .await;
        }
        gw
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn access_log_dir(&self) -> PathBuf {
        self.dir.path().join("accesslog")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// Sum of the samples of `name` whose label set contains every `labels` pair.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics().await;
        metric_value(&text, name, labels)
    }

    /// Replace one policy file atomically (write + rename), as editors and deploy tools do.
    pub fn write_policy(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, self.policies.join(name)).expect("rename");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every batch in a local access log: (batch id, access-log records). Records of other
/// kinds (policy changes, [`read_policy_changes`]) are left out.
pub fn read_access_log(dir: &Path) -> Vec<(String, Vec<edgeway_record::AccessLogRecord>)> {
    read_log(dir, |kind, body| {
        (kind == edgeway_record::kind::RecordKind::AccessLog)
            .then(|| edgeway_record::AccessLogRecord::from_bytes(body).expect("valid record"))
    })
}

/// Every policy-change record in a local access log, in log order.
pub fn read_policy_changes(dir: &Path) -> Vec<edgeway_record::policy_change::PolicyChangeRecord> {
    use edgeway_record::policy_change::PolicyChangeRecord;
    read_log(dir, |kind, body| {
        (kind == edgeway_record::kind::RecordKind::PolicyChange)
            .then(|| PolicyChangeRecord::from_body(body).expect("valid policy change"))
    })
    .into_iter()
    .flat_map(|(_, r)| r)
    .collect()
}

/// Every batch of a local log: (batch id, the records `pick` decodes).
fn read_log<T>(
    dir: &Path,
    pick: impl Fn(edgeway_record::kind::RecordKind, &[u8]) -> Option<T>,
) -> Vec<(String, Vec<T>)> {
    use edgeway_record::segment::{Position, SegmentReader};
    let mut r = SegmentReader::new(dir, Position::default());
    let mut out = Vec::new();
    while let Some(frame) = r.next_frame().expect("read log") {
        let key = edgeway_record::kpl::partition_key(&frame.payload).unwrap_or_default();
        let recs = edgeway_record::kpl::deaggregate(&frame.payload)
            .expect("valid aggregate")
            .iter()
            .filter_map(|b| {
                let (kind, body) = edgeway_record::kind::split(b).expect("known record kind");
                pick(kind, body)
            })
            .collect();
        out.push((key, recs));
    }
    out
}

pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}
