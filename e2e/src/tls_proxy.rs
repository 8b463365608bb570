//! `openefs-csi tls-proxy` as a child process over a tunnel state
//! directory, with `/metrics` on a free loopback port. Killed by its PID on
//! drop; [`TlsProxy::kill`] + [`TlsProxy::start_again`] is a sidecar
//! restart (same state directory, so the same tunnel ports).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::binaries::workspace_binary;
use crate::nfsd::{metric_value, scrape_metrics};
use crate::qemu::{free_loopback_port, wait_for_listener};

pub struct TlsProxy {
    binary: PathBuf,
    state_dir: PathBuf,
    metrics_port: u16,
    log: PathBuf,
    child: Child,
}

impl TlsProxy {
    /// Runs the tunnels of `state_dir`, logging to `log` (appended across
    /// restarts); returns once `/metrics` answers.
    pub fn start(state_dir: &Path, log: PathBuf) -> Result<Self> {
        let binary = workspace_binary("openefs-csi", "openefs-csi")?;
        let metrics_port = free_loopback_port()?;
        let child = Self::launch(&binary, state_dir, metrics_port, &log)?;
        Ok(Self {
            binary,
            state_dir: state_dir.to_owned(),
            metrics_port,
            log,
            child,
        })
    }

    fn launch(binary: &Path, state_dir: &Path, metrics_port: u16, log: &Path) -> Result<Child> {
        let log_file = File::options().create(true).append(true).open(log)?;
        let mut child = Command::new(binary)
            .arg("tls-proxy")
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .args(["--poll-interval", "200ms"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        if let Err(err) = wait_for_listener(metrics_port, &mut child, Duration::from_secs(30)) {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{err:#}\n--- tls-proxy log ---\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        Ok(child)
    }

    /// Waits until a tunnel listens on `port`.
    pub fn wait_for_tunnel(&mut self, port: u16) -> Result<()> {
        wait_for_listener(port, &mut self.child, Duration::from_secs(30))
            .with_context(|| self.log_tail())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as an OOM kill or a node plugin upgrade would, and wait
    /// until the process is gone (its ports are closed then).
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().context("killing tls-proxy")?;
        self.child.wait().context("reaping tls-proxy")?;
        Ok(())
    }

    /// After [`TlsProxy::kill`]: the proxy again over the same state
    /// directory and metrics port.
    pub fn start_again(&mut self) -> Result<()> {
        self.child = Self::launch(&self.binary, &self.state_dir, self.metrics_port, &self.log)?;
        Ok(())
    }

    /// The value of one series (e.g.
    /// `openefs_tls_proxy_connections_total{tunnel="vol"}`); `None` when
    /// absent.
    pub fn metric(&self, series: &str) -> Result<Option<f64>> {
        metric_value(&scrape_metrics(self.metrics_port)?, series)
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- tls-proxy log (last 40 lines) ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
