//! moto server, the AWS emulator the tests run against (Kinesis, S3, Glue, DynamoDB, Athena
//! API). `tests/run` starts one per run and exports `EDGEWAY_MOTO_ENDPOINT`; a test that needs
//! its own (to pause it, say) calls [`Moto::start`].

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_port};

pub const REGION: &str = "us-east-1";

pub struct Moto {
    pub endpoint: String,
    child: Option<Child>,
}

impl Moto {
    /// The run's shared moto server, or a private one when the tests run outside `tests/run`.
    pub async fn shared() -> Moto {
        match std::env::var("EDGEWAY_MOTO_ENDPOINT") {
            Ok(endpoint) if !endpoint.is_empty() => Moto {
                endpoint,
                child: None,
            },
            _ => Self::start().await,
        }
    }

    /// A private moto server on a free loopback port.
    pub async fn start() -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server (pip install 'moto[server]'; tests/run does)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let url = format!("{endpoint}/moto-api/");
        eventually("moto readiness", Duration::from_secs(30), || {
            let req = reqwest::get(url.clone());
            async move {
                req.await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        Moto {
            endpoint,
            child: Some(child),
        }
    }

    /// Freeze the server (SIGSTOP): connections hang, as in a network partition.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Thaw it (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let child = self
            .child
            .as_ref()
            .expect("only a private moto can be paused");
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} moto");
    }

    /// Environment for a process that should talk to this moto.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// Set the same variables in this process (for SDK clients built inside the test).
    pub fn export_env(&self) {
        for (k, v) in self.env() {
            std::env::set_var(k, v);
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(c.id().to_string())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
