//! Where the process keeps its upgrade socket and pid file, and the pid file itself.
//!
//! The upgrade socket hands the listening sockets to the next binary: whoever can connect
//! to it can take over the gateway's ports. So it lives in a private directory (mode 0700),
//! by default `$XDG_RUNTIME_DIR/edgeway` or `run/` beside the access-log directory, and a
//! socket path in a world-writable directory (such as `/tmp`) is refused, where another user
//! could create it first. The pid file is written by the gateway itself, atomically, and
//! removed at exit when it still names this process.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("cannot create the private directory {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is writable by other users (mode {mode:o}), expected a private directory (0700) for the upgrade socket and pid file", path.display())]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error("{} is in a world-writable directory, where another user could create it first; choose a private directory", path.display())]
    WorldWritable { path: PathBuf },
    #[error("cannot write the pid file {}: {source}", path.display())]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The default private directory: `$XDG_RUNTIME_DIR/edgeway` when set, else `run/` beside
/// the access-log directory.
pub fn default_dir(xdg_runtime_dir: Option<&Path>, access_log_dir: &Path) -> PathBuf {
    match xdg_runtime_dir {
        Some(x) if !x.as_os_str().is_empty() => x.join("edgeway"),
        _ => access_log_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("run"),
    }
}

/// Create `dir` with mode 0700 if missing; refuse it when others may write to it.
pub fn ensure_private(dir: &Path) -> Result<(), RunDirError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| RunDirError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
    let meta = std::fs::metadata(dir).map_err(|source| RunDirError::Create {
        path: dir.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(RunDirError::NotPrivate {
            path: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Refuse a socket (or pid file) path whose directory anyone may write to.
pub fn check_not_world_writable(path: &Path) -> Result<(), RunDirError> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match std::fs::metadata(parent) {
        Ok(m) if m.mode() & 0o002 != 0 => Err(RunDirError::WorldWritable {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// A pid file this process wrote; removed on drop if it still names this process (after an
/// upgrade the next process has replaced it).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Write this process's id to `path` atomically (temporary file, fsync, rename).
    pub fn write(path: &Path) -> Result<PidFile, RunDirError> {
        let err = |source| RunDirError::PidFile {
            path: path.to_path_buf(),
            source,
        };
        let pid = std::process::id();
        let tmp = path.with_extension(format!("tmp.{pid}"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(err)?;
        writeln!(f, "{pid}").map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)?;
        Ok(PidFile {
            path: path.to_path_buf(),
            pid,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            == Some(self.pid);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_private_and_created_0700() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            default_dir(Some(&t.path().join("xdg")), Path::new("data/accesslog")),
            t.path().join("xdg/edgeway")
        );
        assert_eq!(
            default_dir(None, Path::new("data/accesslog")),
            Path::new("data/run")
        );
        assert_eq!(
            default_dir(None, Path::new("accesslog")),
            Path::new("./run")
        );
        let dir = t.path().join("a/run");
        ensure_private(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // An existing directory others may write to is refused.
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            ensure_private(&open),
            Err(RunDirError::NotPrivate { .. })
        ));
        assert!(matches!(
            check_not_world_writable(&open.join("upgrade.sock")),
            Err(RunDirError::WorldWritable { .. })
        ));
        check_not_world_writable(&dir.join("upgrade.sock")).unwrap();
    }

    #[test]
    fn the_pid_file_names_this_process_until_dropped() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("gateway.pid");
        let pid = PidFile::write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        drop(pid);
        assert!(!path.exists());
        // Replaced by the next process (an upgrade): left alone on drop.
        let pid = PidFile::write(&path).unwrap();
        std::fs::write(&path, "999999\n").unwrap();
        drop(pid);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "999999\n");
    }
}
