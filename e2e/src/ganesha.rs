//! nfs-ganesha, the comparison server nobody here wrote: a private instance
//! exporting one directory over NFSv4 on a loopback port, with its config,
//! log, pid file and recovery state in its own temp dir. Used to prove the
//! kernel-client workloads right and as the benchmark baseline.
//! Needs the Debian packages `nfs-ganesha` and `nfs-ganesha-vfs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::qemu::{free_loopback_port, wait_for_listener};

const BINARY: &str = "ganesha.nfsd";

/// A running ganesha; killed by its PID when dropped.
pub struct Ganesha {
    child: Child,
    port: u16,
    state: TempDir,
}

impl Ganesha {
    /// Starts ganesha exporting `export` as the pseudo-root `/` (NFSv4 only,
    /// AUTH_SYS, no root squash, grace period off) and waits until it listens.
    pub fn start(export: &Path) -> Result<Self> {
        let export = export
            .canonicalize()
            .with_context(|| format!("export directory {}", export.display()))?;
        let state = tempfile::tempdir().context("creating ganesha's state dir")?;
        let recovery = state.path().join("recovery");
        std::fs::create_dir(&recovery)?;
        let port = free_loopback_port()?;
        std::fs::write(
            state.path().join("ganesha.conf"),
            config_text(&export, &recovery, port)?,
        )?;
        let child = launch(state.path(), port)?;
        Ok(Self { child, port, state })
    }

    /// Kills ganesha (SIGKILL, as a crash would) and starts it again on the
    /// same port with the same export and recovery state.
    pub fn restart(&mut self) -> Result<()> {
        self.child.kill().context("killing ganesha")?;
        self.child.wait().context("reaping ganesha")?;
        self.child = launch(self.state.path(), self.port)?;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_path(&self) -> PathBuf {
        self.state.path().join("ganesha.log")
    }
}

fn launch(state: &Path, port: u16) -> Result<Child> {
    let mut child = Command::new(BINARY)
        .arg("-F")
        .arg("-f")
        .arg(state.join("ganesha.conf"))
        .arg("-L")
        .arg(state.join("ganesha.log"))
        .arg("-p")
        .arg(state.join("ganesha.pid"))
        .args(["-N", "NIV_EVENT"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!("starting {BINARY} (Debian packages nfs-ganesha and nfs-ganesha-vfs)")
        })?;
    if let Err(err) = wait_for_listener(port, &mut child, Duration::from_secs(30)) {
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(state.join("ganesha.log")).unwrap_or_default();
        bail!("{err:#}\n--- ganesha log ---\n{log}");
    }
    Ok(child)
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(export: &Path, recovery: &Path, port: u16) -> Result<String> {
    let quoted = |path: &Path| -> Result<String> {
        let text = path.to_str().context("ganesha paths must be UTF-8")?;
        if text.contains('"') {
            bail!("ganesha config cannot quote the path {text:?}");
        }
        Ok(format!("\"{text}\""))
    };
    Ok(format!(
        r#"NFS_CORE_PARAM {{
  NFS_Port = {port};
  Bind_Addr = 127.0.0.1;
  Protocols = 4;
  Enable_NLM = false;
  Enable_RQUOTA = false;
}}
NFSv4 {{
  Graceless = true;
  RecoveryBackend = fs;
  RecoveryRoot = {recovery};
}}
NFS_KRB5 {{ Active_krb5 = false; }}
EXPORT {{
  Export_Id = 1;
  Path = {export};
  Pseudo = "/";
  Access_Type = RW;
  Squash = No_Root_Squash;
  Protocols = 4;
  Transports = TCP;
  SecType = sys;
  FSAL {{ Name = VFS; }}
}}
"#,
        recovery = quoted(recovery)?,
        export = quoted(export)?,
    ))
}
