//! nfs-ganesha, the comparison server nobody here wrote: a private instance
//! exporting one directory over NFSv4 (optionally NFSv3 too) on loopback
//! ports, with its config, log, pid file and recovery state in its own temp
//! dir. Used to prove the kernel-client and libnfs workloads right and as the
//! benchmark baseline.
//! Needs the Debian packages `nfs-ganesha` and `nfs-ganesha-vfs`, and
//! `rpcbind` for NFSv3.
//!
//! Debian's ganesha is built with rpcbind support and exits at startup when it
//! cannot register NFSv3 and MOUNT with rpcbind (NFSv4 registration is
//! optional). Clients never need the portmapper here (libnfs URLs name both
//! ports), so an NFSv3 start borrows one only for that moment: a running
//! rpcbind if there is one, else a private `rpcbind -f` stopped again once
//! ganesha listens (see `with_rpcbind`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::qemu::{free_loopback_port, wait_for_listener};

const BINARY: &str = "ganesha.nfsd";

/// A running ganesha; killed by its PID when dropped.
pub struct Ganesha {
    child: Child,
    port: u16,
    mount_port: Option<u16>,
    state: TempDir,
}

impl Ganesha {
    /// Starts ganesha exporting `export` as the pseudo-root `/` (NFSv4 only,
    /// AUTH_SYS, no root squash, grace period off) and waits until it listens.
    pub fn start(export: &Path) -> Result<Self> {
        Self::start_with(export, false)
    }

    /// As [`Ganesha::start`], and NFSv3 with MOUNT v3 on a port of its own
    /// ([`Ganesha::mount_port`]); a v3 client mounts `/`, the pseudo path
    /// (`Mount_Path_Pseudo`), as a v4 client does. Needs `rpcbind` installed.
    pub fn start_v3(export: &Path) -> Result<Self> {
        Self::start_with(export, true)
    }

    fn start_with(export: &Path, v3: bool) -> Result<Self> {
        let export = export
            .canonicalize()
            .with_context(|| format!("export directory {}", export.display()))?;
        let state = tempfile::tempdir().context("creating ganesha's state dir")?;
        let recovery = state.path().join("recovery");
        std::fs::create_dir(&recovery)?;
        let port = free_loopback_port()?;
        let mount_port = if v3 {
            Some(free_loopback_port()?)
        } else {
            None
        };
        std::fs::write(
            state.path().join("ganesha.conf"),
            config_text(&export, &recovery, port, mount_port)?,
        )?;
        let child = launch(state.path(), port, mount_port)?;
        Ok(Self {
            child,
            port,
            mount_port,
            state,
        })
    }

    /// Kills ganesha (SIGKILL, as a crash would) and starts it again on the
    /// same port with the same export and recovery state.
    pub fn restart(&mut self) -> Result<()> {
        self.child.kill().context("killing ganesha")?;
        self.child.wait().context("reaping ganesha")?;
        self.child = launch(self.state.path(), self.port, self.mount_port)?;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The MOUNT v3 port of a [`Ganesha::start_v3`] server.
    pub fn mount_port(&self) -> Option<u16> {
        self.mount_port
    }

    pub fn log_path(&self) -> PathBuf {
        self.state.path().join("ganesha.log")
    }

    /// The server process (started in the foreground, so the child itself),
    /// for /proc-based measurements (the benchmark).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The configuration this instance runs with, as written to its state
    /// dir (the benchmark publishes it beside its figures).
    pub fn config(&self) -> Result<String> {
        let path = self.state.path().join("ganesha.conf");
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }
}

fn launch(state: &Path, port: u16, mount_port: Option<u16>) -> Result<Child> {
    if mount_port.is_some() {
        with_rpcbind(state, || launch_listening(state, port))
    } else {
        launch_listening(state, port)
    }
}

fn launch_listening(state: &Path, port: u16) -> Result<Child> {
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

/// Where rpcbind listens for local registrations (libtirpc's fixed path).
const RPCBIND_SOCKET: &str = "/run/rpcbind.sock";

/// Runs `start` (a ganesha start that registers NFSv3 and MOUNT) while an
/// rpcbind answers: the running one, or a private `rpcbind -f`, stopped
/// afterwards. One start at a time, across test processes too (a file lock),
/// so no start loses its rpcbind to another test's cleanup, and no two
/// ganeshas register at once (each first unregisters every NFS program).
fn with_rpcbind<T>(state: &Path, start: impl FnOnce() -> Result<T>) -> Result<T> {
    let lock_path = std::env::temp_dir().join("openefs-ganesha-rpcbind.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    // Each call opens the file anew, so threads of one process exclude each
    // other too (flock locks belong to the open file description).
    // SAFETY: flock(2) on a descriptor we own; released when `lock` closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!(
            "locking {}: {}",
            lock_path.display(),
            std::io::Error::last_os_error()
        );
    }
    if UnixStream::connect(RPCBIND_SOCKET).is_ok() {
        return start();
    }
    let log = File::create(state.join("rpcbind.log"))?;
    let mut rpcbind = Command::new("rpcbind")
        .arg("-f")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting rpcbind (Debian package rpcbind), which ganesha needs for NFSv3")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(RPCBIND_SOCKET).is_err() {
        if let Some(status) = rpcbind.try_wait()? {
            let log = std::fs::read_to_string(state.join("rpcbind.log")).unwrap_or_default();
            bail!("rpcbind exited with {status} before listening on {RPCBIND_SOCKET}: {log}");
        }
        if Instant::now() > deadline {
            let _ = rpcbind.kill();
            let _ = rpcbind.wait();
            bail!("rpcbind did not listen on {RPCBIND_SOCKET} within 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let result = start();
    stop_rpcbind(&mut rpcbind);
    result
}

/// SIGTERM first, so rpcbind removes its socket and lock file; SIGKILL if it
/// lingers.
fn stop_rpcbind(rpcbind: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(rpcbind.id()) {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = rpcbind.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = rpcbind.kill();
    let _ = rpcbind.wait();
}

fn config_text(
    export: &Path,
    recovery: &Path,
    port: u16,
    mount_port: Option<u16>,
) -> Result<String> {
    let quoted = |path: &Path| -> Result<String> {
        let text = path.to_str().context("ganesha paths must be UTF-8")?;
        if text.contains('"') {
            bail!("ganesha config cannot quote the path {text:?}");
        }
        Ok(format!("\"{text}\""))
    };
    // NFSv3 over TCP only; v3 clients mount the pseudo path `/` like v4 ones.
    let (protocols, v3_params) = match mount_port {
        Some(mount_port) => (
            "3, 4",
            format!(
                "  MNT_Port = {mount_port};\n  Mount_Path_Pseudo = true;\n  Enable_UDP = false;\n"
            ),
        ),
        None => ("4", String::new()),
    };
    Ok(format!(
        r#"NFS_CORE_PARAM {{
  NFS_Port = {port};
{v3_params}  Bind_Addr = 127.0.0.1;
  Protocols = {protocols};
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
  Protocols = {protocols};
  Transports = TCP;
  SecType = sys;
  FSAL {{ Name = VFS; }}
}}
"#,
        recovery = quoted(recovery)?,
        export = quoted(export)?,
    ))
}
