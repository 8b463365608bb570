//! A real Kubernetes API server for custom resources: the standalone
//! `apiextensions-apiserver` on etcd, both on 127.0.0.1, built from Debian
//! packages by `e2e/scripts/apiserver.sh` (see docs/testing.md). It serves
//! CRDs with their CEL rules, server-side apply, watches, the status
//! subresource and `kubectl explain`, and no core API at all: no `/api`, no
//! Namespaces (any namespace name is accepted without creating it).
//!
//! A test binary normally shares one server, [`ApiServer::shared`], and gives
//! each test its own namespace name ([`namespace`]).
//!
//! The processes belong to exactly one `ApiServer`: they are killed by PID
//! when it is dropped, at process exit (statics are never dropped, so an
//! `atexit` hook does it), on SIGINT/SIGTERM/SIGHUP, and by the kernel
//! (`PR_SET_PDEATHSIG`) when the test process dies any other way.

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak, mpsc};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long etcd and then the server may take to come up on a loaded 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts when a port picked as free was taken before the server bound it.
const START_ATTEMPTS: usize = 3;
const TEMP_PREFIX: &str = "openefs-apiserver-";

/// A running etcd + apiextensions-apiserver pair with its certificates and kubeconfig.
pub struct ApiServer {
    inner: Arc<Inner>,
}

struct Inner {
    /// Holds `kubeconfig`, certificates, logs and the etcd data dir.
    dir: PathBuf,
    bin: PathBuf,
    state: Mutex<State>,
}

struct State {
    children: Vec<Child>,
    temp: Option<TempDir>,
}

/// Every server not yet shut down, for the exit and signal hooks.
static LIVE: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

impl ApiServer {
    /// The server shared by all tests of this test binary, started on first use.
    /// Fails (in every test that asks) when it could not be prepared or started.
    pub fn shared() -> Result<&'static ApiServer> {
        static SHARED: OnceLock<Result<ApiServer, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| ApiServer::start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow!("the shared Kubernetes API server is not available: {e}"))
    }

    /// [`ApiServer::shared`], with the openefs CRDs as this build's types
    /// generate them applied (once) and Established.
    pub fn shared_with_openefs_crds() -> Result<&'static ApiServer> {
        static CRDS: OnceLock<Result<(), String>> = OnceLock::new();
        let server = ApiServer::shared()?;
        CRDS.get_or_init(|| server.apply_openefs_crds().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow!("applying the openefs CRDs: {e}"))?;
        Ok(server)
    }

    fn apply_openefs_crds(&self) -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut files = Vec::new();
        for crd in openefs_crds::crds() {
            let path = dir.path().join(openefs_crds::file_name(&crd));
            std::fs::write(&path, openefs_crds::render_yaml(&crd))?;
            files.push(path);
        }
        self.apply_crds(&files)?;
        Ok(())
    }

    /// Builds the server if needed (`apiserver.sh prepare`), then starts a fresh
    /// etcd and server on free loopback ports and waits until it is ready.
    pub fn start() -> Result<ApiServer> {
        let script = script_path();
        let status = Command::new("bash")
            .arg(&script)
            .arg("prepare")
            .status()
            .with_context(|| format!("running {} prepare", script.display()))?;
        if !status.success() {
            bail!(
                "{} prepare failed ({status}); it needs the Debian sid apt source and the tools listed in docs/testing.md",
                script.display()
            );
        }
        install_exit_hooks()?;
        remove_stale_dirs();
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&script) {
                Ok(server) => return Ok(server),
                Err(StartError::PortTaken(e)) => last = Some(e),
                Err(StartError::Other(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no start attempt was made")))
            .context("every attempt found its ports taken")
    }

    fn start_once(script: &Path) -> Result<ApiServer, StartError> {
        let shm = Path::new("/dev/shm");
        let mut builder = tempfile::Builder::new();
        let prefix = format!("{TEMP_PREFIX}{}-", std::process::id());
        builder.prefix(&prefix);
        // etcd preallocates about 120 MB of WAL; tmpfs keeps that off the disk.
        let temp = if shm.is_dir() {
            builder.tempdir_in(shm)
        } else {
            builder.tempdir()
        }
        .context("creating the server's temporary directory")?;
        let dir = temp.path().to_path_buf();
        let bin = script_bin_dir();
        let inner = Arc::new(Inner {
            dir: dir.clone(),
            bin,
            state: Mutex::new(State {
                children: Vec::new(),
                temp: Some(temp),
            }),
        });
        lock(&LIVE).push(Arc::downgrade(&inner));
        let server = ApiServer { inner };

        let started = Instant::now();
        let [port, etcd_client, etcd_peer] = free_ports()?;
        run_script(
            script,
            &["certs".as_ref(), dir.as_os_str(), port.to_string().as_ref()],
        )?;

        server.spawn(
            script,
            "etcd",
            &[
                "exec-etcd",
                &etcd_client.to_string(),
                &etcd_peer.to_string(),
            ],
        )?;
        server.wait_until("etcd accepts connections", || {
            Ok(TcpStream::connect((Ipv4Addr::LOCALHOST, etcd_client)).is_ok())
        })?;
        server.spawn(
            script,
            "apiserver",
            &[
                "exec-apiserver",
                &port.to_string(),
                &etcd_client.to_string(),
            ],
        )?;
        // Plain /readyz stays 500 for ever: its informer-sync check waits on a
        // core/v1 Services informer that this server cannot fill.
        server.wait_until("the API server is ready", || {
            Ok(server
                .kubectl(["get", "--raw", "/readyz?exclude=informer-sync"])?
                .status
                .success())
        })?;
        eprintln!(
            "apiserver: ready on https://127.0.0.1:{port} in {:.2} s ({})",
            started.elapsed().as_secs_f64(),
            dir.display()
        );
        Ok(server)
    }

    fn spawn(&self, script: &Path, name: &str, args: &[&str]) -> Result<()> {
        let log = self.inner.dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        let mut cmd = Command::new("bash");
        cmd.arg(script)
            .arg(args[0])
            .arg(&self.inner.dir)
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = spawn_owned(cmd).with_context(|| format!("starting {name}"))?;
        lock(&self.inner.state).children.push(child);
        Ok(())
    }

    /// Polls `ready` every 100 ms; fails early when one of our processes exited.
    fn wait_until(
        &self,
        what: &str,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ready()? {
                return Ok(());
            }
            if let Some(exited) = self.exited_child()? {
                let logs = self.log_tail();
                let err = anyhow!("waiting until {what}: {exited}\n{logs}");
                return Err(if logs.contains("address already in use") {
                    StartError::PortTaken(err)
                } else {
                    StartError::Other(err)
                });
            }
            if Instant::now() > deadline {
                return Err(StartError::Other(anyhow!(
                    "{what} did not happen within {READY_TIMEOUT:?}\n{}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn exited_child(&self) -> Result<Option<String>> {
        for child in lock(&self.inner.state).children.iter_mut() {
            if let Some(status) = child.try_wait().context("checking a server process")? {
                return Ok(Some(format!("process {} exited: {status}", child.id())));
            }
        }
        Ok(None)
    }

    /// The last lines of both logs, for error messages.
    pub fn log_tail(&self) -> String {
        ["apiserver.log", "etcd.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.inner.dir.join(name)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(25)..].join("\n");
                format!("--- last lines of {name}:\n{tail}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A kubeconfig with the admin client certificate (`O=system:masters`);
    /// the server accepts no anonymous or token access.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.inner.dir.join("kubeconfig")
    }

    /// The directory holding the built `apiextensions-apiserver`, `etcd` and `kubectl`.
    pub fn bin_dir(&self) -> &Path {
        &self.inner.bin
    }

    /// Runs the Debian-built `kubectl` against this server.
    pub fn kubectl<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_with_stdin(args, "")
    }

    /// As [`ApiServer::kubectl`], with `stdin` as its standard input (for `-f -`).
    pub fn kubectl_with_stdin<I, S>(&self, args: I, stdin: &str) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = self
            .kubectl_command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting kubectl")?;
        let mut input = child.stdin.take().context("kubectl has no stdin pipe")?;
        input
            .write_all(stdin.as_bytes())
            .context("writing kubectl's stdin")?;
        drop(input);
        child.wait_with_output().context("waiting for kubectl")
    }

    fn kubectl_command(&self) -> Command {
        let mut cmd = Command::new(self.inner.bin.join("kubectl"));
        // kubectl caches discovery per host:port under ~/.kube; ports here are random.
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig_path())
            .arg("--cache-dir")
            .arg(self.inner.dir.join("kube-cache"));
        cmd
    }

    /// A kube client from the kubeconfig. The server has no `/api`, so use
    /// typed `Api<K>` or pinned kinds; unfiltered `Discovery` fails.
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig =
            Kubeconfig::read_from(self.kubeconfig_path()).context("reading the kubeconfig")?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .context("loading the kubeconfig")?;
        kube::Client::try_from(config).context("building the kube client")
    }

    /// `kubectl apply` of CRD manifests (files or directories), then waits until
    /// every CRD in them is Established. Returns the CRDs as the server has them.
    pub fn apply_crds<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Vec<CustomResourceDefinition>> {
        let files: Vec<&OsStr> = paths
            .iter()
            .flat_map(|p| [OsStr::new("-f"), p.as_ref().as_os_str()])
            .collect();
        let with = |verb: &[&'static str]| -> Vec<&OsStr> {
            verb.iter()
                .map(|v| OsStr::new(*v))
                .chain(files.iter().copied())
                .collect()
        };
        check(
            &self.kubectl(with(&["apply"]))?,
            "kubectl apply of the CRDs",
        )?;
        let timeout = format!("--timeout={}s", READY_TIMEOUT.as_secs());
        let mut wait = with(&["wait", "--for=condition=Established"]);
        wait.push(OsStr::new(&timeout));
        check(
            &self.kubectl(wait)?,
            "waiting for the CRDs to be Established",
        )?;
        let get = self.kubectl(with(&["get", "-o", "json"]))?;
        check(&get, "reading the applied CRDs back")?;
        let list: serde_json::Value =
            serde_json::from_slice(&get.stdout).context("parsing kubectl get -o json")?;
        let items = match list.get("items") {
            Some(items) => items.clone(),
            None => serde_json::Value::Array(vec![list]),
        };
        serde_json::from_value(items).context("decoding the CRDs")
    }
}

/// Fails with kubectl's own output unless it exited successfully.
pub fn check(out: &Output, what: &str) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A namespace name for one test: a DNS label made from the test's name.
/// Namespaces need not (and cannot) be created on this server.
pub fn namespace(test: &str) -> String {
    let mut name: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(60);
    format!("t-{}", name.trim_matches('-'))
}

enum StartError {
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Other(e)
    }
}

impl Inner {
    /// Kills (SIGKILL) and reaps exactly the processes this server started,
    /// then removes its directory. Safe to call more than once.
    fn shutdown(&self) {
        let Ok(mut state) = self.state.try_lock() else {
            // Only at exit or on a signal while another thread holds the lock;
            // PR_SET_PDEATHSIG still ends the processes.
            return;
        };
        for child in state.children.iter_mut() {
            // An error means it was already reaped; nothing else to do.
            let _ = child.kill();
            let _ = child.wait();
        }
        state.children.clear();
        if let Some(temp) = state.temp.take()
            && let Err(e) = temp.close()
        {
            eprintln!("apiserver: removing {}: {e}", self.dir.display());
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.inner.shutdown();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked while holding the lock leaves the data usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn shutdown_all() {
    let live = match LIVE.try_lock() {
        Ok(live) => live.clone(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().clone(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    for inner in live.iter().filter_map(Weak::upgrade) {
        inner.shutdown();
    }
}

extern "C" fn shutdown_all_at_exit() {
    shutdown_all();
}

/// Statics are never dropped, so the shared server is stopped by an `atexit`
/// hook; a signal that would kill the test process stops it first.
fn install_exit_hooks() -> Result<()> {
    static HOOKS: OnceLock<Result<(), String>> = OnceLock::new();
    HOOKS
        .get_or_init(|| {
            // SAFETY: registers a plain extern "C" function without arguments.
            if unsafe { libc::atexit(shutdown_all_at_exit) } != 0 {
                return Err("atexit refused the cleanup hook".to_owned());
            }
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
                .map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("apiserver-signals".into())
                .spawn(move || {
                    if let Some(signal) = signals.forever().next() {
                        shutdown_all();
                        // Dies of the same signal, as without this hook.
                        let _ = signal_hook::low_level::emulate_default_handler(signal);
                        std::process::exit(128 + signal);
                    }
                })
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| anyhow!("installing the API server's exit hooks: {e}"))
}

/// Spawns `cmd` so that the kernel kills it when this process dies.
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, and
/// test threads end with their test, so every child comes from one thread
/// that lives as long as the process.
fn spawn_owned(mut cmd: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: LazyLock<Result<mpsc::Sender<Request>, String>> = LazyLock::new(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("apiserver-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .map(|_| tx)
            .map_err(|e| e.to_string())
    });
    let parent = std::process::id();
    // SAFETY: the closure only makes async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::other("the test process is gone"));
            }
            Ok(())
        });
    }
    let spawner = SPAWNER.as_ref().map_err(|e| io::Error::other(e.clone()))?;
    let (tx, rx) = mpsc::channel();
    spawner
        .send((cmd, tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// Three distinct ports the kernel considers free right now.
fn free_ports() -> Result<[u16; 3]> {
    let listeners = [(); 3].map(|()| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)));
    let mut ports = [0; 3];
    for (port, listener) in ports.iter_mut().zip(listeners) {
        *port = listener
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
    }
    Ok(ports)
}

/// Removes temp dirs left behind by test processes that were SIGKILLed.
fn remove_stale_dirs() {
    for parent in [Path::new("/dev/shm").to_path_buf(), std::env::temp_dir()] {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(TEMP_PREFIX))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                // Best effort: another process may be removing it at the same time.
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn run_script(script: &Path, args: &[&OsStr]) -> Result<()> {
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    check(
        &out,
        &format!("{} {}", script.display(), args[0].to_string_lossy()),
    )
}

/// The repository root, from this crate's location.
pub fn repo_root() -> PathBuf {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR"));
    e2e.parent().unwrap_or(e2e).to_path_buf()
}

fn script_path() -> PathBuf {
    repo_root().join("e2e/scripts/apiserver.sh")
}

/// Where `apiserver.sh` puts the binaries; `OPENEFS_APISERVER_CACHE` moves it, as in the script.
fn script_bin_dir() -> PathBuf {
    std::env::var_os("OPENEFS_APISERVER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/apiserver"))
        .join("bin")
}
