//! `openefs-nfsd` as a child process on a free loopback port, for tests that
//! point a real client at it. Killed by its PID on drop.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::binaries::workspace_binary;
use crate::pki;
use crate::qemu::{free_loopback_port, wait_for_listener_at};

pub struct Nfsd {
    binary: PathBuf,
    export: PathBuf,
    place: Place,
    port: u16,
    metrics_port: u16,
    args: Vec<String>,
    log: PathBuf,
    child: Child,
}

/// A server's TLS material as the operator's `<fs-id>-tls` Secret holds it:
/// a new CA and a certificate for `names` it signed, written into a
/// directory as `tls.crt`, `tls.key` and `ca.crt`.
pub struct TlsFiles {
    pub ca: pki::Ca,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `ca.crt`, what clients verify the server against.
    pub ca_cert: PathBuf,
}

impl TlsFiles {
    /// nfsd's flags serving TLS with these files.
    fn args(&self) -> Vec<String> {
        let (cert, key) = (self.cert.to_string_lossy(), self.key.to_string_lossy());
        ["--tls-cert", &cert, "--tls-key", &key]
            .map(str::to_owned)
            .to_vec()
    }

    pub fn write(dir: &Path, ca_name: &str, names: &[&str]) -> Self {
        let ca = pki::Ca::new(ca_name);
        let leaf = ca.server(names);
        Self {
            cert: pki::write(dir, "tls.crt", &leaf.cert),
            key: pki::write(dir, "tls.key", &leaf.key),
            ca_cert: pki::write(dir, "ca.crt", &ca.pem),
            ca,
        }
    }
}

/// Where nfsd runs: on the host's loopback, or in a network namespace on an
/// address of it (the benchmark's shaped link, [`crate::netns`]).
#[derive(Clone, Debug)]
struct Place {
    netns: Option<String>,
    addr: Ipv4Addr,
}

impl Place {
    const LOOPBACK: Self = Self {
        netns: None,
        addr: Ipv4Addr::LOCALHOST,
    };
}

impl Nfsd {
    /// As [`Nfsd::start_with_tls`], in network namespace `netns` listening
    /// on `addr` (its metrics too: the host cannot reach the namespace's
    /// loopback).
    pub fn start_with_tls_in(
        netns: &str,
        addr: Ipv4Addr,
        export: &Path,
        log: PathBuf,
        tls: &TlsFiles,
    ) -> Result<Self> {
        let place = Place {
            netns: Some(netns.to_owned()),
            addr,
        };
        Self::start_at(place, export, log, tls.args())
    }

    /// As [`Nfsd::start_with_args`], serving TLS with `tls` too.
    pub fn start_with_tls(
        export: &Path,
        log: PathBuf,
        tls: &TlsFiles,
        args: &[&str],
    ) -> Result<Self> {
        let mut all = tls.args();
        all.extend(args.iter().map(|a| a.to_string()));
        Self::start_at(Place::LOOPBACK, export, log, all)
    }

    /// Serves `export`, logging to `log` (appended across restarts).
    pub fn start(export: &Path, log: PathBuf) -> Result<Self> {
        Self::start_with_args(export, log, &[])
    }

    /// As [`Nfsd::start`], with more command-line flags (e.g. `--lease-time`).
    pub fn start_with_args(export: &Path, log: PathBuf, args: &[&str]) -> Result<Self> {
        let args = args.iter().map(|a| a.to_string()).collect();
        Self::start_at(Place::LOOPBACK, export, log, args)
    }

    fn start_at(place: Place, export: &Path, log: PathBuf, args: Vec<String>) -> Result<Self> {
        let binary = workspace_binary("openefs-nfsd", "openefs-nfsd")?;
        // In a new namespace every port is free; the host's free ones are too.
        let port = free_loopback_port()?;
        let metrics_port = free_loopback_port()?;
        let child = Self::launch(&binary, &place, export, port, metrics_port, &args, &log)?;
        Ok(Self {
            binary,
            export: export.to_owned(),
            place,
            port,
            metrics_port,
            args,
            log,
            child,
        })
    }

    fn launch(
        binary: &Path,
        place: &Place,
        export: &Path,
        port: u16,
        metrics_port: u16,
        args: &[String],
        log: &Path,
    ) -> Result<Child> {
        let log_file = File::options().create(true).append(true).open(log)?;
        // `ip netns exec` execs the program, so the child's PID is nfsd's.
        let mut command = match &place.netns {
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns]).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let addr = place.addr;
        let mut child = command
            .arg("serve")
            .arg("--export")
            .arg(export)
            .arg("--listen")
            .arg(format!("{addr}:{port}"))
            .arg("--metrics-listen")
            .arg(format!("{addr}:{metrics_port}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let listen = SocketAddrV4::new(addr, port);
        if let Err(err) = wait_for_listener_at(listen, &mut child, Duration::from_secs(30)) {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{err:#}\n--- nfsd log ---\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        Ok(child)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `address:port` of the NFS listener.
    pub fn endpoint(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.place.addr, self.port)
    }

    /// The server process's id (to SIGSTOP it as a hung server, or to read
    /// its memory and CPU from /proc in the benchmark).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash or a rescheduled pod would (handles must survive
    /// without any help from a clean shutdown), then the same server again
    /// on the same ports.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.start_again()
    }

    /// SIGKILL, and wait until the process is gone: whatever it had not
    /// written to the export or the state directory is lost.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().context("killing nfsd")?;
        self.child.wait().context("reaping nfsd")?;
        Ok(())
    }

    /// After [`Nfsd::kill`]: the same server again on the same ports.
    pub fn start_again(&mut self) -> Result<()> {
        self.child = Self::launch(
            &self.binary,
            &self.place,
            &self.export,
            self.port,
            self.metrics_port,
            &self.args,
            &self.log,
        )?;
        Ok(())
    }

    /// The last lines of the server's log, for a failing test's context.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- nfsd log (last 40 lines) ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// The Prometheus text of `GET /metrics`.
    pub fn metrics(&self) -> Result<String> {
        scrape_metrics_at(SocketAddrV4::new(self.place.addr, self.metrics_port))
    }

    /// `openefs_nfsd_operations_total{op=OP,status=STATUS}`, 0 when absent.
    pub fn operations(&self, op: &str, status: &str) -> Result<u64> {
        let series = format!(r#"openefs_nfsd_operations_total{{op="{op}",status="{status}"}}"#);
        Ok(self.metric(&series)?.map_or(0, |v| v as u64))
    }

    /// The value of one series, named with its labels exactly as the page
    /// prints it (e.g. `openefs_nfsd_grace_active`); `None` when absent.
    pub fn metric(&self, series: &str) -> Result<Option<f64>> {
        metric_value(&self.metrics()?, series)
    }
}

/// The Prometheus text of `GET /metrics` on `127.0.0.1:port`. One HTTP/1.0
/// request with `Connection: close` on a blocking socket is all it takes; an
/// HTTP client crate would add a runtime to these synchronous tests.
pub fn scrape_metrics(port: u16) -> Result<String> {
    scrape_metrics_at(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

fn scrape_metrics_at(addr: SocketAddrV4) -> Result<String> {
    let mut conn = TcpStream::connect(addr).context("connecting to the metrics endpoint")?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut page = String::new();
    conn.read_to_string(&mut page)
        .context("reading the metrics page")?;
    ensure!(
        page.starts_with("HTTP/1.1 200") || page.starts_with("HTTP/1.0 200"),
        "metrics endpoint answered: {}",
        page.lines().next().unwrap_or_default()
    );
    Ok(page)
}

/// The value of one series of a metrics page, named with its labels exactly
/// as the page prints it; `None` when absent.
pub fn metric_value(page: &str, series: &str) -> Result<Option<f64>> {
    let key = format!("{series} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .with_context(|| format!("metric value {v:?}"))
        })
        .transpose()
}

impl Drop for Nfsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
