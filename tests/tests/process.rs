//! Process files: the gateway writes its own pid file and refuses an upgrade socket where
//! another user could plant one.

use std::process::Command;
use std::time::Duration;

use e2e::origin::Origin;
use e2e::{eventually, Gateway};

#[tokio::test]
async fn the_pid_file_is_written_at_start_and_removed_at_exit() {
    let a = Origin::start("a").await;
    let clusters = format!("[cluster.a]\nendpoints = [\"{}\"]\n", a.addr);
    let routes = "[[route]]\nname = \"all\"\ncluster = \"a\"\n";
    let gw = Gateway::start(&[("c.toml", &clusters), ("r.toml", routes)]).await;
    let pid_path = gw.dir.path().join("gateway.pid");
    let pid = std::fs::read_to_string(&pid_path).expect("pid file written by the gateway");
    assert_eq!(pid.trim(), gw.child.id().to_string());
    gw.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let mut gw = gw;
        let s = gw.child.wait();
        (s, gw)
    })
    .await
    .unwrap()
    .0
    .unwrap();
    assert!(status.success(), "{status}");
    eventually("pid file removed", Duration::from_secs(5), || {
        let gone = !pid_path.exists();
        async move { gone.then_some(()) }
    })
    .await;
}

/// `gateway run` in `dir` on a one-cluster policy, with `args` after the common ones; it is
/// expected to refuse to start.
fn run_refused(dir: &std::path::Path, args: &[&std::ffi::OsStr]) -> String {
    let policies = dir.join("p");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("c.toml"),
        "[cluster.a]\nendpoints = [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    let out = Command::new(e2e::bin("gateway"))
        .current_dir(dir)
        .arg("run")
        .arg("--policies")
        .arg(&policies)
        .args(["--http", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--access-log-dir")
        .arg(dir.join("log"))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_upgrade_socket_in_a_world_writable_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (sock, pid) = (open.join("upgrade.sock"), dir.path().join("gateway.pid"));
    let err = run_refused(
        dir.path(),
        &[
            "--https".as_ref(),
            "".as_ref(),
            "--upgrade-sock".as_ref(),
            sock.as_os_str(),
            "--pid-file".as_ref(),
            pid.as_os_str(),
        ],
    );
    assert!(
        err.contains("upgrade.sock is in a world-writable directory"),
        "{err}"
    );
    assert!(!pid.exists());
}

#[test]
fn https_without_a_certificate_is_refused_unless_dev_certs_are_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_refused(dir.path(), &["--https".as_ref(), "127.0.0.1:0".as_ref()]);
    assert!(err.contains("needs a certificate"), "{err}");
    assert!(
        !dir.path().join("certs").exists(),
        "no development certificate was generated"
    );
}
