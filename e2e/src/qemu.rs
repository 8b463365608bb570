//! The real Linux kernel NFS client: Debian's kernel booted under qemu (TCG)
//! from a busybox initramfs, mounting a server that listens on the host's
//! loopback. The guest reaches it as `10.0.2.100:2049` through a qemu user
//! network with `restrict=on`; each guest connection becomes a fresh
//! `socat` to `127.0.0.1:<port>`, so the client's reconnects (e.g. across a
//! server restart) reach whatever listens on that port by then.
//!
//! A workload is a shell script run in the guest with the mount as working
//! directory and the helpers of `e2e/guest/lib.sh`; what it reports comes
//! back as [`GuestOutput`]. `e2e/scripts/kernel.sh` fetches and caches the
//! kernel and the base initramfs; each run only packs its own small archive.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

/// The server's address as the guest sees it.
pub const GUEST_SERVER_ADDR: &str = "10.0.2.100";
/// The guest's own address on the qemu user network.
pub const GUEST_CLIENT_ADDR: &str = "10.0.2.15";

/// Everything a console line the harness understands starts with.
const MARKER: &str = "OPENEFS-";
/// How much of the console a failure message quotes.
const CONSOLE_TAIL_LINES: usize = 60;

/// The host's side of a workload's `pause NAME`; the guest resumes on `Ok`.
pub type PauseHandler<'a> = &'a mut dyn FnMut(&str) -> Result<()>;

/// How a run mounts and what it gives the guest.
pub struct RunOptions<'a> {
    /// File system type for `mount -t`: `nfs4` (or `nfs` for NFSv3).
    pub fs_type: String,
    /// Mount options; the server and client addresses are appended.
    pub mount_options: String,
    /// The server-side path to mount, e.g. `/`.
    pub export_path: String,
    /// Hard limit for the whole boot; qemu is killed when it passes.
    pub timeout: Duration,
    pub memory_mib: u32,
    /// Guest CPUs. One is the default: with two host cores, a second TCG vCPU
    /// competes with the server and measured reads ran 4x slower.
    pub cpus: u32,
    /// Exported to the workload's environment.
    pub env: BTreeMap<String, String>,
    /// Extra files, placed at `/openefs/run/<name>` in the guest.
    pub files: Vec<(String, Vec<u8>)>,
    /// Called when the workload runs `pause NAME` (e.g. to restart the
    /// server); the guest resumes when it returns `Ok`. Without it the guest
    /// resumes at once.
    pub on_pause: Option<PauseHandler<'a>>,
    /// Boot without mounting the server: the workload runs in `/tmp` and
    /// mounts itself (e.g. through the CSI node plugin).
    pub skip_mount: bool,
    /// Host programs for the guest, at `/openefs/bin/<name>` without debug
    /// info: an absolute path, or a name looked up in `$PATH`. Their shared
    /// libraries (as
    /// `ldd` lists them) go to `/openefs/lib`, which the workload's
    /// `LD_LIBRARY_PATH` names, and the dynamic loader to its own path.
    pub binaries: Vec<PathBuf>,
    /// `(host port, guest port)`: `127.0.0.1:<host port>` on the host
    /// reaches `<guest port>` of the guest (qemu `hostfwd`).
    pub host_forwards: Vec<(u16, u16)>,
    /// `(guest address, host port)`: TCP to `<guest address>:2049` in the
    /// guest reaches `127.0.0.1:<host port>`, as the server's address does
    /// (another server for the guest, e.g. one that never answers).
    pub extra_servers: Vec<(Ipv4Addr, u16)>,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        Self {
            fs_type: "nfs4".into(),
            mount_options: "vers=4.1".into(),
            export_path: "/".into(),
            timeout: Duration::from_secs(300),
            memory_mib: 1024,
            cpus: 1,
            env: BTreeMap::new(),
            files: Vec::new(),
            on_pause: None,
            skip_mount: false,
            binaries: Vec::new(),
            host_forwards: Vec::new(),
            extra_servers: Vec::new(),
        }
    }
}

/// One `step`/`expect_*` result of the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// What the guest reported, with its whole console for failure messages.
#[derive(Debug, Default)]
pub struct GuestOutput {
    pub console: String,
    pub steps: Vec<Step>,
    pub metrics: BTreeMap<String, String>,
    /// The workload's exit status (number of failed steps); `None` when the
    /// guest never got there.
    pub rc: Option<i32>,
    /// Guest uptime in seconds when the mount succeeded.
    pub mounted_at: Option<f64>,
    /// Host wall time from starting qemu to its exit.
    pub elapsed: Duration,
}

impl GuestOutput {
    fn parse_line(&mut self, line: &str) {
        let Some(at) = line.find(MARKER) else { return };
        let mut words = line[at + MARKER.len()..].trim_end().splitn(2, ' ');
        let kind = words.next().unwrap_or_default();
        let rest = words.next().unwrap_or_default();
        match kind {
            "STEP" => {
                let mut parts = rest.splitn(3, ' ');
                let name = parts.next().unwrap_or_default().to_owned();
                let ok = parts.next() == Some("ok");
                let detail = parts.next().unwrap_or_default().to_owned();
                self.steps.push(Step { name, ok, detail });
            }
            "METRIC" => {
                if let Some((name, value)) = rest.split_once(' ') {
                    self.metrics
                        .insert(name.to_owned(), value.trim().to_owned());
                }
            }
            "MOUNT" => {
                self.mounted_at = rest.strip_prefix("ok ").and_then(|t| t.trim().parse().ok());
            }
            "DONE" => {
                self.rc = rest
                    .strip_prefix("rc=")
                    .and_then(|rc| rc.trim().parse().ok());
            }
            _ => {}
        }
    }

    /// The last lines of the console, for assertion messages.
    pub fn console_tail(&self) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        lines[lines.len().saturating_sub(CONSOLE_TAIL_LINES)..].join("\n")
    }

    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// A metric the workload printed with `metric NAME VALUE`, as a number.
    pub fn metric(&self, name: &str) -> Result<f64> {
        let value = self
            .metrics
            .get(name)
            .ok_or_else(|| anyhow!("guest reported no metric {name}\n{}", self.console_tail()))?;
        value
            .parse()
            .with_context(|| format!("metric {name}={value:?} is not a number"))
    }

    /// Fails unless the named step ran and passed.
    pub fn ensure_step(&self, name: &str) -> Result<()> {
        match self.step(name) {
            Some(Step { ok: true, .. }) => Ok(()),
            Some(Step { detail, .. }) => {
                bail!(
                    "guest step {name} failed: {detail}\n--- console ---\n{}",
                    self.console_tail()
                )
            }
            None => bail!(
                "guest step {name} never ran\n--- console ---\n{}",
                self.console_tail()
            ),
        }
    }

    /// Fails unless the workload finished, every step passed and `expected`
    /// steps all ran (so a workload that stops early cannot pass).
    pub fn ensure_ok(&self, expected: &[&str]) -> Result<()> {
        let failed: Vec<String> = self
            .steps
            .iter()
            .filter(|s| !s.ok)
            .map(|s| format!("  {}: {}", s.name, s.detail))
            .collect();
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|name| self.step(name).is_none())
            .collect();
        if failed.is_empty() && missing.is_empty() && self.rc == Some(0) {
            return Ok(());
        }
        bail!(
            "guest workload failed (rc={:?})\nfailed steps:\n{}\nsteps that never ran: {:?}\n--- console ---\n{}",
            self.rc,
            failed.join("\n"),
            missing,
            self.console_tail()
        )
    }
}

/// Paths printed by `kernel.sh`.
struct Artefacts {
    kernel: PathBuf,
    qemu: PathBuf,
    socat: PathBuf,
}

fn kernel_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kernel.sh")
}

/// Runs `kernel.sh prepare`: installs qemu and the tools when missing,
/// fetches and unpacks Debian's kernel, builds the base initramfs (all
/// cached, so quick after the first time). Returns the kernel's version.
/// [`KernelClient::run`] prepares too; this lets a caller time it apart.
pub fn prepare_kernel() -> Result<String> {
    let script = kernel_script();
    let output = Command::new("bash")
        .arg(&script)
        .arg("prepare")
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        output.status.success(),
        "{} prepare failed: {}\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("KERNEL_VERSION="))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("kernel.sh printed no KERNEL_VERSION: {stdout}"))
}

/// Runs `kernel.sh initrd` (which prepares first) and reads the paths it prints.
fn build_initrd(overlay: &Path, out: &Path) -> Result<Artefacts> {
    let script = kernel_script();
    let output = Command::new("bash")
        .arg(&script)
        .arg("initrd")
        .arg(overlay)
        .arg(out)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        output.status.success(),
        "{} initrd failed: {}",
        script.display(),
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| -> Result<PathBuf> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("kernel.sh printed no {key}: {stdout}"))
    };
    Ok(Artefacts {
        kernel: value("KERNEL")?,
        qemu: value("QEMU")?,
        socat: value("SOCAT")?,
    })
}

/// Single-quotes a value for the guest's `sh`.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn env_file(opts: &RunOptions<'_>) -> Result<String> {
    let mount_options = [
        opts.mount_options.as_str(),
        &format!("addr={GUEST_SERVER_ADDR},clientaddr={GUEST_CLIENT_ADDR}"),
    ]
    .iter()
    .filter(|o| !o.is_empty())
    .copied()
    .collect::<Vec<_>>()
    .join(",");
    let mut env = BTreeMap::from([
        ("MOUNT_TYPE".to_owned(), opts.fs_type.clone()),
        ("MOUNT_OPTS".to_owned(), mount_options),
        (
            "MOUNT_SRC".to_owned(),
            format!("{GUEST_SERVER_ADDR}:{}", opts.export_path),
        ),
    ]);
    if opts.skip_mount {
        env.insert("SKIP_MOUNT".to_owned(), "1".to_owned());
    }
    if !opts.binaries.is_empty() {
        env.insert("LD_LIBRARY_PATH".to_owned(), GUEST_LIB_DIR.to_owned());
    }
    for (key, value) in &opts.env {
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        ensure!(
            valid,
            "guest environment variable name {key:?} is not a shell name"
        );
        ensure!(
            !env.contains_key(key),
            "guest environment variable {key} is reserved"
        );
        env.insert(key.clone(), value.clone());
    }
    Ok(env
        .iter()
        .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
        .collect())
}

/// Where [`RunOptions::binaries`] go in the guest.
pub const GUEST_BIN_DIR: &str = "/openefs/bin";
/// Where their shared libraries go.
const GUEST_LIB_DIR: &str = "/openefs/lib";

/// `program` itself when it is a path, else its first match in `$PATH`.
fn find_program(program: &Path) -> Result<PathBuf> {
    if program.components().count() > 1 {
        return Ok(program.to_owned());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("{} is not in $PATH", program.display()))
}

/// The shared libraries `ldd` lists for `binary`, and its dynamic loader
/// (the line without `=>`); none for a static binary.
fn shared_libraries(binary: &Path) -> Result<(Vec<PathBuf>, Option<PathBuf>)> {
    let ldd = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&ldd.stdout);
    if !ldd.status.success() {
        // ldd's answer for a static binary; anything else is an error.
        ensure!(
            text.contains("not a dynamic executable")
                || String::from_utf8_lossy(&ldd.stderr).contains("not a dynamic executable"),
            "ldd {}: {}",
            binary.display(),
            ldd.status
        );
        return Ok((Vec::new(), None));
    }
    let mut libraries = Vec::new();
    let mut loader = None;
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x…)"; the vdso has no file.
        match line.split_once("=>") {
            Some((_, rest)) => {
                if let Some(path) = rest
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/'))
                {
                    libraries.push(PathBuf::from(path));
                }
            }
            None => {
                if let Some(path) = line
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/'))
                {
                    loader = Some(PathBuf::from(path));
                }
            }
        }
    }
    Ok((libraries, loader))
}

/// Copies `binaries` and what they load into the run's overlay.
fn add_binaries(overlay: &Path, binaries: &[PathBuf]) -> Result<()> {
    let bin_dir = overlay.join(GUEST_BIN_DIR.trim_start_matches('/'));
    let lib_dir = overlay.join(GUEST_LIB_DIR.trim_start_matches('/'));
    std::fs::create_dir_all(&bin_dir)?;
    std::fs::create_dir_all(&lib_dir)?;
    let copy = |from: &Path, to: &Path| -> Result<()> {
        // fs::copy follows symlinks and keeps the mode bits.
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} for the guest", from.display()))?;
        Ok(())
    };
    for binary in binaries {
        let path = find_program(binary)?;
        let name = path
            .file_name()
            .with_context(|| format!("no file name in {}", path.display()))?;
        // Without debug info: a debug build of a workspace binary is
        // hundreds of MB, which the guest would unpack into its RAM.
        let status = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(bin_dir.join(name))
            .arg(&path)
            .status()
            .context("running strip (binutils)")?;
        ensure!(status.success(), "strip {}: {status}", path.display());
        let (libraries, loader) = shared_libraries(&path)?;
        for library in libraries {
            let name = library
                .file_name()
                .with_context(|| format!("no file name in {}", library.display()))?;
            copy(&library, &lib_dir.join(name))?;
        }
        if let Some(loader) = loader {
            // The loader is found by the absolute path written in the binary.
            let at = overlay.join(loader.strip_prefix("/")?);
            if let Some(parent) = at.parent() {
                std::fs::create_dir_all(parent)?;
            }
            copy(&loader, &at)?;
        }
    }
    Ok(())
}

/// Kills qemu by its PID when a run ends early (timeout, error, panic).
struct Guest(Child);

impl Drop for Guest {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

enum Event {
    Line(String),
    Closed,
}

fn forward_lines(
    stream: impl Read + Send + 'static,
    prefix: &'static str,
    tx: mpsc::Sender<Event>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = format!("{prefix}{}", line.trim_end_matches(['\r', '\n']));
                    if tx.send(Event::Line(line)).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Event::Closed);
    });
}

fn resume(stdin: &mut ChildStdin) -> Result<()> {
    stdin
        .write_all(b"continue\n")
        .and_then(|()| stdin.flush())
        .context("answering the guest's pause")
}

/// The kernel client harness.
pub struct KernelClient;

impl KernelClient {
    /// Boots a guest that mounts the server on `127.0.0.1:server_port`, runs
    /// `workload`, and returns what it reported. Errors only when the harness
    /// itself fails or the guest times out; check the result with
    /// [`GuestOutput::ensure_ok`].
    pub fn run(server_port: u16, workload: &str, mut opts: RunOptions<'_>) -> Result<GuestOutput> {
        let work = tempfile::tempdir().context("creating the run's temp dir")?;
        let run_dir = work.path().join("overlay/openefs/run");
        std::fs::create_dir_all(&run_dir)?;
        std::fs::write(run_dir.join("env"), env_file(&opts)?)?;
        std::fs::write(run_dir.join("workload.sh"), workload)?;
        for (name, data) in &opts.files {
            ensure!(
                !name.is_empty() && !name.contains('/') && name != "env" && name != "workload.sh",
                "guest file name {name:?} must be a plain name other than env/workload.sh"
            );
            std::fs::write(run_dir.join(name), data)?;
        }
        add_binaries(&work.path().join("overlay"), &opts.binaries)?;
        let initrd = work.path().join("initrd.cpio");
        let artefacts = build_initrd(&work.path().join("overlay"), &initrd)?;

        let mut netdev = format!(
            "user,id=n0,restrict=on,guestfwd=tcp:{GUEST_SERVER_ADDR}:2049-cmd:{} - TCP:127.0.0.1:{server_port}",
            artefacts.socat.display()
        );
        for (addr, port) in &opts.extra_servers {
            netdev.push_str(&format!(
                ",guestfwd=tcp:{addr}:2049-cmd:{} - TCP:127.0.0.1:{port}",
                artefacts.socat.display()
            ));
        }
        for (host, guest) in &opts.host_forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        let started = Instant::now();
        let mut child = Command::new(&artefacts.qemu)
            .args(["-accel", "tcg", "-nographic", "-no-reboot"])
            .args([
                "-m",
                &opts.memory_mib.to_string(),
                "-smp",
                &opts.cpus.to_string(),
            ])
            .arg("-kernel")
            .arg(&artefacts.kernel)
            .arg("-initrd")
            .arg(&initrd)
            // quiet: kernel messages would interleave with the markers; the
            // guest prints the NFS-related dmesg lines itself when a step fails.
            .args(["-append", "console=ttyS0 panic=-1 quiet"])
            .args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", artefacts.qemu.display()))?;
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().context("qemu stdout")?;
        let stderr = child.stderr.take().context("qemu stderr")?;
        let mut stdin = child.stdin.take().context("qemu stdin")?;
        forward_lines(stdout, "", tx.clone());
        forward_lines(stderr, "qemu: ", tx);
        let mut guest = Guest(child);

        let deadline = started + opts.timeout;
        let mut out = GuestOutput::default();
        let mut open_streams = 2;
        while open_streams > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Event::Line(line)) => {
                    out.parse_line(&line);
                    if let Some(at) = line.find("OPENEFS-PAUSE ") {
                        let name = line[at + "OPENEFS-PAUSE ".len()..].trim().to_owned();
                        if let Some(on_pause) = opts.on_pause.as_mut() {
                            on_pause(&name)
                                .with_context(|| format!("host side of pause {name}"))?;
                        }
                        resume(&mut stdin)?;
                    }
                    out.console.push_str(&line);
                    out.console.push('\n');
                }
                Ok(Event::Closed) => open_streams -= 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    drop(guest);
                    bail!(
                        "guest did not finish within {:?}\n--- console ---\n{}",
                        opts.timeout,
                        out.console_tail()
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = guest.0.wait().context("waiting for qemu")?;
        out.elapsed = started.elapsed();
        ensure!(
            status.success(),
            "qemu exited with {status}\n--- console ---\n{}",
            out.console_tail()
        );
        Ok(out)
    }
}

/// A loopback port that was free a moment ago, for a server under test.
pub fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .context("binding an ephemeral loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`, or
/// `child` exits, or `timeout` passes.
pub fn wait_for_listener(port: u16, child: &mut Child, timeout: Duration) -> Result<()> {
    wait_for_listener_at(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port), child, timeout)
}

/// As [`wait_for_listener`], on any address.
pub fn wait_for_listener_at(
    listen: SocketAddrV4,
    child: &mut Child,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let port = listen.port();
    let addr = listen.into();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("server exited with {status} before listening on port {port}");
        }
        ensure!(
            Instant::now() < deadline,
            "nothing listens on {listen} after {timeout:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_markers_behind_terminal_noise() {
        let mut out = GuestOutput::default();
        for line in [
            "\x1bc\x1b[?7l\x1b[2JOPENEFS-BOOTED 4.48",
            "OPENEFS-MOUNT ok 8.61",
            "OPENEFS-STEP read ok",
            "OPENEFS-STEP enoent fail expected 'No such file' got 'x y'",
            "OPENEFS-METRIC write_mbps 5.2",
            "OPENEFS-DONE rc=1",
        ] {
            out.parse_line(line);
        }
        assert_eq!(out.mounted_at, Some(8.61));
        assert_eq!(out.rc, Some(1));
        assert_eq!(out.metric("write_mbps").ok(), Some(5.2));
        assert!(out.ensure_step("read").is_ok());
        let err = out.ensure_step("enoent").unwrap_err().to_string();
        assert!(err.contains("expected 'No such file' got 'x y'"), "{err}");
        let err = out.ensure_ok(&["read", "never"]).unwrap_err().to_string();
        assert!(err.contains("enoent") && err.contains("\"never\""), "{err}");
    }

    #[test]
    fn ok_needs_done_and_every_expected_step() {
        let mut out = GuestOutput::default();
        out.parse_line("OPENEFS-STEP a ok");
        assert!(out.ensure_ok(&["a"]).is_err(), "no DONE line yet");
        out.parse_line("OPENEFS-DONE rc=0");
        assert!(out.ensure_ok(&["a"]).is_ok());
        assert!(out.ensure_ok(&["a", "b"]).is_err());
    }

    #[test]
    fn env_file_quotes_values_and_rejects_bad_names() {
        let mut opts = RunOptions::default();
        opts.env.insert("DATA".into(), "it's".into());
        let env = env_file(&opts).unwrap();
        assert!(env.contains("export DATA='it'\\''s'\n"), "{env}");
        assert!(env.contains("export MOUNT_OPTS='vers=4.1,addr=10.0.2.100,clientaddr=10.0.2.15'"));
        assert!(env.contains("export MOUNT_SRC='10.0.2.100:/'"));
        opts.env.insert("BAD NAME".into(), String::new());
        assert!(env_file(&opts).is_err());
        opts.env.clear();
        opts.env.insert("MOUNT_OPTS".into(), String::new());
        assert!(env_file(&opts).is_err());
        opts.env.clear();
        assert!(!env_file(&opts).unwrap().contains("SKIP_MOUNT"));
        opts.skip_mount = true;
        opts.binaries.push("env".into());
        let env = env_file(&opts).unwrap();
        assert!(env.contains("export SKIP_MOUNT='1'\n"), "{env}");
        assert!(
            env.contains("export LD_LIBRARY_PATH='/openefs/lib'\n"),
            "{env}"
        );
    }

    #[test]
    fn binaries_come_with_their_libraries() {
        let overlay = tempfile::tempdir().unwrap();
        // coreutils' env is dynamically linked on every Debian host.
        add_binaries(overlay.path(), &["env".into()]).unwrap();
        assert!(overlay.path().join("openefs/bin/env").is_file());
        let libs: Vec<String> = std::fs::read_dir(overlay.path().join("openefs/lib"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(libs.iter().any(|l| l.starts_with("libc.so")), "{libs:?}");
        let (_, loader) = shared_libraries(&find_program(Path::new("env")).unwrap()).unwrap();
        let loader = loader.expect("a dynamic loader");
        assert!(
            overlay
                .path()
                .join(loader.strip_prefix("/").unwrap())
                .is_file()
        );
        assert!(find_program(Path::new("no-such-program-here")).is_err());
    }
}
