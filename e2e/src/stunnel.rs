//! stunnel4 (Debian) in client mode as a child process: the anchor the
//! TLS benchmark (`openefs-bench --tls`) compares `openefs-csi tls-proxy`
//! with, configured as the proxy works: TLS 1.3 only, the server
//! certificate verified against the file system's CA and name, TCP_NODELAY
//! on both sides. Killed by its PID on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::qemu::wait_for_listener;

/// One client tunnel: 127.0.0.1:`accept_port` → TLS → `server`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tunnel {
    pub accept_port: u16,
    /// `host:port` of the TLS server.
    pub server: String,
    /// The name the server certificate must be valid for (also the SNI).
    pub server_name: String,
    /// PEM CA the server certificate must chain to.
    pub ca: PathBuf,
}

impl Tunnel {
    /// stunnel's configuration: in the foreground (so the PID is the
    /// process that works), no PID file, logging to stderr.
    pub fn config(&self) -> String {
        format!(
            "foreground = yes\n\
             pid =\n\
             syslog = no\n\
             debug = notice\n\
             \n\
             [nfs]\n\
             client = yes\n\
             accept = 127.0.0.1:{}\n\
             connect = {}\n\
             sslVersion = TLSv1.3\n\
             verifyChain = yes\n\
             CAfile = {}\n\
             checkHost = {}\n\
             sni = {}\n\
             socket = l:TCP_NODELAY=1\n\
             socket = r:TCP_NODELAY=1\n",
            self.accept_port,
            self.server,
            self.ca.display(),
            self.server_name,
            self.server_name,
        )
    }
}

pub struct Stunnel {
    log: PathBuf,
    child: Child,
}

impl Stunnel {
    /// Writes the configuration into `dir` and runs stunnel4 on it; returns
    /// once the tunnel's port accepts connections.
    pub fn start(tunnel: &Tunnel, dir: &Path) -> Result<Self> {
        let conf = dir.join("stunnel.conf");
        std::fs::write(&conf, tunnel.config())
            .with_context(|| format!("writing {}", conf.display()))?;
        let log = dir.join("stunnel.log");
        let log_file = File::create(&log)?;
        let mut child = Command::new("stunnel4")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("starting stunnel4 (Debian package stunnel4; make bench installs it)")?;
        if let Err(err) = wait_for_listener(tunnel.accept_port, &mut child, Duration::from_secs(30))
        {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{err:#}\n--- stunnel log ---\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Ok(Self { log, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- stunnel log (last 40 lines) ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_tls13_client_verifying_chain_and_name() {
        let conf = Tunnel {
            accept_port: 4049,
            server: "127.0.0.1:2049".into(),
            server_name: "fs.openefs.test".into(),
            ca: "/etc/openefs/tls/ca.crt".into(),
        }
        .config();
        let lines: Vec<&str> = conf.lines().collect();
        for want in [
            "foreground = yes",
            "client = yes",
            "accept = 127.0.0.1:4049",
            "connect = 127.0.0.1:2049",
            "sslVersion = TLSv1.3",
            "verifyChain = yes",
            "CAfile = /etc/openefs/tls/ca.crt",
            "checkHost = fs.openefs.test",
            "sni = fs.openefs.test",
            "socket = r:TCP_NODELAY=1",
        ] {
            assert!(lines.contains(&want), "{want:?} missing from\n{conf}");
        }
        // Global options come before the service section.
        let section = lines.iter().position(|l| *l == "[nfs]").unwrap();
        let foreground = lines.iter().position(|l| *l == "foreground = yes").unwrap();
        assert!(foreground < section, "{conf}");
    }
}
