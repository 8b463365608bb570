//! `openefs-operator run --only-custom-resources` as a process against the
//! real Kubernetes API server (apiextensions-apiserver, see docs/testing.md),
//! driven with the real `kubectl`. The server has no core API, so the part
//! of the operator that would manage each FileSystem's NFS server is played
//! by the test: it reports the `BackingStorageReady` and `ServerReady`
//! conditions with server-side apply under its own field manager, as that
//! part will.

use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};
use openefs_crds::{AccessPoint, AccessPointId, FileSystem, FileSystemId, LifecyclePhase, names};
use openefs_e2e::apiserver::{ApiServer, check, namespace};
use openefs_e2e::binaries::workspace_binary;

/// Generous for a loaded 2-core machine; the watches normally answer in
/// well under a second.
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// One operator process watching one namespace; killed (by its PID) when
/// dropped unless [`Operator::terminate`] stopped it.
struct Operator {
    // A mutex so that probes can read the log while `wait_for` checks the
    // process is alive.
    child: Mutex<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Operator {
    fn start(server: &ApiServer, ns: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("operator.log");
        let out = File::create(&log)?;
        let child = Command::new(workspace_binary("openefs-operator", "openefs-operator")?)
            .args([
                "--log",
                "openefs_operator=debug,info",
                "run",
                "--only-custom-resources",
                "--http-address",
                "127.0.0.1:0",
            ])
            .arg("--kubeconfig")
            .arg(server.kubeconfig_path())
            .args(["--namespace", ns])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting openefs-operator run")?;
        Ok(Self {
            child: Mutex::new(child),
            log,
            _dir: dir,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Reconciles of `kind`/`name` that found the status already right and
    /// wrote nothing.
    fn unchanged_reconciles(&self, kind: &str, name: &str) -> usize {
        let (kind, name) = (format!("kind=\"{kind}\""), format!("name=\"{name}\""));
        self.log()
            .lines()
            .filter(|l| {
                l.contains(&kind) && l.contains(&name) && l.contains("status_patched=false")
            })
            .count()
    }

    /// `GET path` on the operator's HTTP endpoint (its address is in the
    /// log): the status code and the body.
    fn http_get(&self, path: &str) -> Result<(u16, String)> {
        use std::io::{Read, Write};
        let log = self.log();
        let address = log
            .lines()
            .find(|l| l.contains("serving /metrics"))
            .and_then(|l| l.split("address=").nth(1))
            .and_then(|a| a.split_whitespace().next())
            .with_context(|| format!("no HTTP address in the log\n{log}"))?;
        let mut stream = std::net::TcpStream::connect(address)?;
        stream.set_read_timeout(Some(WAIT))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: operator\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let code = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("not an HTTP response: {response}"))?;
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        Ok((code, body.to_owned()))
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn alive(&self) -> Result<()> {
        if let Some(status) = self.child().try_wait()? {
            bail!("openefs-operator exited: {status}\n{}", self.log());
        }
        Ok(())
    }

    /// SIGTERM, then the exit status once it has stopped by itself.
    fn terminate(&self) -> Result<ExitStatus> {
        let pid = libc::pid_t::try_from(self.child().id())?;
        // SAFETY: plain kill(2) of the child this struct spawned and has not reaped.
        ensure!(
            unsafe { libc::kill(pid, libc::SIGTERM) } == 0,
            "kill(SIGTERM) failed"
        );
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child().try_wait()? {
                return Ok(status);
            }
            ensure!(
                Instant::now() < deadline,
                "no exit within {WAIT:?} of SIGTERM\n{}",
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Polls `probe` until it returns `Some`, failing with the last observation
/// (and the operator's log) after [`WAIT`].
async fn wait_for<T, F, Fut>(operator: &Operator, what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Result<T, String>>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        operator.alive()?;
        let last = match probe().await? {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        if Instant::now() > deadline {
            bail!(
                "{what}: not within {WAIT:?}; last seen: {last}\n--- operator log:\n{}",
                operator.log()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn kubectl(server: &ApiServer, ns: &str, args: &[&str]) -> Result<String> {
    let out = server.kubectl(["-n", ns].iter().chain(args))?;
    check(&out, &format!("kubectl {}", args.join(" ")))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kubectl_apply(server: &ApiServer, ns: &str, manifest: &str) -> Result<()> {
    let out = server.kubectl_with_stdin(["-n", ns, "apply", "-f", "-"], manifest)?;
    check(&out, "kubectl apply")
}

fn file_system_manifest(name: &str) -> String {
    format!(
        "apiVersion: openefs.io/v1alpha1\nkind: FileSystem\nmetadata: {{name: {name}}}\nspec: {{}}\n"
    )
}

fn access_point_manifest(name: &str, fs: &str) -> String {
    format!(
        "apiVersion: openefs.io/v1alpha1\nkind: AccessPoint\nmetadata: {{name: {name}}}\n\
         spec: {{fileSystemRef: {{name: {fs}}}, rootDirectory: {{path: /{name}}}}}\n"
    )
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// `Ready`'s status and reason, or a description of what is missing.
fn ready_of(conditions: &[Condition]) -> Result<(String, String, Time), String> {
    condition(conditions, "Ready")
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone(),
                c.last_transition_time.clone(),
            )
        })
        .ok_or_else(|| format!("no Ready condition in {conditions:?}"))
}

/// Plays the part of the operator that manages the NFS server's core
/// objects: it owns `BackingStorageReady` and `ServerReady`.
async fn report_server_ready(api: &Api<FileSystem>, name: &str) -> Result<()> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let condition = |type_: &str, reason: &str| Condition {
        type_: type_.into(),
        status: "True".into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: now.clone(),
    };
    let body = serde_json::json!({
        "apiVersion": names::API_GROUP_VERSION,
        "kind": "FileSystem",
        "status": {"conditions": [
            condition("BackingStorageReady", "Bound"),
            condition("ServerReady", "Serving"),
        ]},
    });
    api.patch_status(
        name,
        &PatchParams::apply("openefs-e2e-server-stand-in"),
        &Patch::Apply(body),
    )
    .await
    .context("reporting the server ready")?;
    Ok(())
}

#[tokio::test]
async fn access_point_becomes_ready_when_its_file_system_is_available() -> Result<()> {
    let server = ApiServer::shared_with_openefs_crds()?;
    let client: Client = server.client().await?;
    let ns = namespace("operator_access_point_ready");
    let operator = Operator::start(server, &ns)?;
    let fss: Api<FileSystem> = Api::namespaced(client.clone(), &ns);
    let aps: Api<AccessPoint> = Api::namespaced(client, &ns);

    // An AccessPoint whose FileSystem does not exist yet.
    kubectl_apply(server, &ns, &access_point_manifest("web", "shared"))?;
    let ap = wait_for(
        &operator,
        "AccessPoint status FileSystemNotFound",
        || async {
            let ap = aps.get("web").await?;
            let status = ap.status.clone().unwrap_or_default();
            Ok(match ready_of(&status.conditions) {
                Ok((s, r, _)) if s == "False" && r == "FileSystemNotFound" => Ok(ap),
                other => Err(format!("{other:?}")),
            })
        },
    )
    .await?;
    let status = ap.status.clone().context("status")?;
    assert_eq!(status.access_point_id, Some(AccessPointId::of(&ap)?));
    assert_eq!(status.observed_generation, ap.metadata.generation);
    assert_eq!(status.phase, Some(LifecyclePhase::Creating));
    assert!(
        ap.finalizers()
            .iter()
            .any(|f| f == names::ACCESSPOINT_FINALIZER)
    );

    // Its FileSystem appears: ids and endpoint, Creating until the server is ready.
    kubectl_apply(server, &ns, &file_system_manifest("shared"))?;
    let fs = wait_for(&operator, "FileSystem status", || async {
        let fs = fss.get("shared").await?;
        Ok(match fs.status.as_ref().map(|s| ready_of(&s.conditions)) {
            Some(Ok(_)) => Ok(fs),
            other => Err(format!("{other:?}")),
        })
    })
    .await?;
    let status = fs.status.clone().context("status")?;
    let id = FileSystemId::of(&fs)?;
    assert_eq!(
        status.endpoint,
        Some(format!("{id}.{ns}.svc.cluster.local"))
    );
    assert_eq!(status.file_system_id, Some(id));
    assert_eq!(status.phase, Some(LifecyclePhase::Creating));
    assert_eq!(status.observed_generation, Some(1));
    let (ready, reason, _) = ready_of(&status.conditions).map_err(|e| anyhow!(e))?;
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("False", "BackingStorageNotReady")
    );
    assert!(
        fs.finalizers()
            .iter()
            .any(|f| f == names::FILESYSTEM_FINALIZER)
    );

    // The watch on FileSystems re-reconciles the AccessPoint.
    let not_ready_since = wait_for(&operator, "AccessPoint FileSystemNotReady", || async {
        let status = aps.get("web").await?.status.unwrap_or_default();
        Ok(match ready_of(&status.conditions) {
            Ok((s, r, t)) if s == "False" && r == "FileSystemNotReady" => Ok(t),
            other => Err(format!("{other:?}")),
        })
    })
    .await?;

    // Transition times have one-second resolution: make a flip visible.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    report_server_ready(&fss, "shared").await?;
    let fs = wait_for(&operator, "FileSystem Available", || async {
        let fs = fss.get("shared").await?;
        let status = fs.status.clone().unwrap_or_default();
        Ok(match (status.phase, ready_of(&status.conditions)) {
            (Some(LifecyclePhase::Available), Ok((s, _, _))) if s == "True" => Ok(fs),
            other => Err(format!("{other:?}")),
        })
    })
    .await?;
    let status = fs.status.context("status")?;
    // The operator's apply left the stand-in's conditions alone.
    for type_ in ["BackingStorageReady", "ServerReady"] {
        let c = condition(&status.conditions, type_).with_context(|| format!("{type_} gone"))?;
        assert_eq!(c.status, "True");
    }
    let degraded = condition(&status.conditions, "Degraded").context("no Degraded")?;
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("False", "AsExpected")
    );

    let ready_since = wait_for(&operator, "AccessPoint Ready", || async {
        let status = aps.get("web").await?.status.unwrap_or_default();
        Ok(match (status.phase, ready_of(&status.conditions)) {
            (Some(LifecyclePhase::Available), Ok((s, r, t))) if s == "True" && r == "Available" => {
                Ok(t)
            }
            other => Err(format!("{other:?}")),
        })
    })
    .await?;
    assert!(
        ready_since.0 > not_ready_since.0,
        "a flip must move lastTransitionTime"
    );
    Ok(())
}

#[tokio::test]
async fn kubectl_changes_are_seen_and_resyncs_change_nothing() -> Result<()> {
    let server = ApiServer::shared_with_openefs_crds()?;
    let client: Client = server.client().await?;
    let ns = namespace("operator_generation_and_resync");
    let operator = Operator::start(server, &ns)?;
    let fss: Api<FileSystem> = Api::namespaced(client, &ns);

    kubectl_apply(server, &ns, &file_system_manifest("shared"))?;
    let since = wait_for(&operator, "FileSystem status", || async {
        let status = fss.get("shared").await?.status.unwrap_or_default();
        Ok(
            match (status.observed_generation, ready_of(&status.conditions)) {
                (Some(1), Ok((_, _, t))) => Ok(t),
                other => Err(format!("{other:?}")),
            },
        )
    })
    .await?;
    // The status write itself comes back as a watch event; wait for that
    // reconcile, which must find nothing to do.
    wait_for(&operator, "a reconcile without a write", || async {
        let n = operator.unchanged_reconciles("FileSystem", "shared");
        Ok(if n > 0 {
            Ok(())
        } else {
            Err("none yet".to_owned())
        })
    })
    .await?;
    // Let any event still queued from the creation drain before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = operator.unchanged_reconciles("FileSystem", "shared");

    // A metadata-only change: one reconcile, no status patch, times kept.
    let touched: FileSystem = serde_json::from_str(&kubectl(
        server,
        &ns,
        &[
            "annotate",
            "filesystem",
            "shared",
            "example.com/touched=1",
            "-o",
            "json",
        ],
    )?)?;
    wait_for(&operator, "the reconcile after the annotation", || async {
        let n = operator.unchanged_reconciles("FileSystem", "shared");
        Ok(if n > baseline {
            Ok(())
        } else {
            Err(format!("{n} unchanged reconciles"))
        })
    })
    .await?;
    let fs = fss.get("shared").await?;
    assert_eq!(
        fs.resource_version(),
        touched.resource_version(),
        "a no-op resync wrote"
    );
    let status = fs.status.context("status")?;
    assert_eq!(
        ready_of(&status.conditions).map_err(|e| anyhow!(e))?.2,
        since
    );

    // A spec change with kubectl: observedGeneration follows, no flip.
    kubectl(
        server,
        &ns,
        &[
            "patch",
            "filesystem",
            "shared",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"policy":{"readOnly":true}}}"#,
        ],
    )?;
    let status = wait_for(&operator, "observedGeneration 2", || async {
        let status = fss.get("shared").await?.status.unwrap_or_default();
        Ok(match status.observed_generation {
            Some(2) => Ok(status),
            other => Err(format!("observedGeneration {other:?}")),
        })
    })
    .await?;
    let ready = condition(&status.conditions, "Ready").context("no Ready")?;
    assert_eq!(ready.observed_generation, Some(2));
    assert_eq!(
        ready.last_transition_time, since,
        "no flip, so no transition"
    );

    // The HTTP endpoint counted those reconciles and reports ready.
    assert_eq!(operator.http_get("/healthz")?.0, 200);
    assert_eq!(operator.http_get("/readyz")?.0, 200);
    let (code, metrics) = operator.http_get("/metrics")?;
    assert_eq!(code, 200);
    let ok_reconciles = metrics
        .lines()
        .find(|l| {
            l.starts_with(r#"openefs_operator_reconciles_total{kind="FileSystem",result="ok"}"#)
        })
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok())
        .with_context(|| format!("no FileSystem reconcile count in\n{metrics}"))?;
    ensure!(ok_reconciles >= 3, "{ok_reconciles} reconciles counted");
    Ok(())
}

#[tokio::test]
async fn file_system_deletion_waits_for_its_access_points() -> Result<()> {
    let server = ApiServer::shared_with_openefs_crds()?;
    let client: Client = server.client().await?;
    let ns = namespace("operator_deletion_waits");
    let operator = Operator::start(server, &ns)?;
    let fss: Api<FileSystem> = Api::namespaced(client.clone(), &ns);
    let aps: Api<AccessPoint> = Api::namespaced(client, &ns);

    kubectl_apply(
        server,
        &ns,
        &[
            file_system_manifest("shared"),
            access_point_manifest("a", "shared"),
            access_point_manifest("b", "shared"),
        ]
        .join("---\n"),
    )?;
    for name in ["a", "b"] {
        wait_for(&operator, "AccessPoint reconciled", || async {
            let ap = aps.get(name).await?;
            Ok(match ap.status {
                Some(_)
                    if ap
                        .finalizers()
                        .iter()
                        .any(|f| f == names::ACCESSPOINT_FINALIZER) =>
                {
                    Ok(())
                }
                _ => Err(format!("{:?} {:?}", ap.metadata.finalizers, ap.status)),
            })
        })
        .await?;
    }
    wait_for(&operator, "FileSystem finalizer", || async {
        let fs = fss.get("shared").await?;
        Ok(match fs.finalizers() {
            f if f.iter().any(|f| f == names::FILESYSTEM_FINALIZER) => Ok(()),
            f => Err(format!("{f:?}")),
        })
    })
    .await?;

    kubectl(
        server,
        &ns,
        &["delete", "filesystem", "shared", "--wait=false"],
    )?;
    let held = |waiting_for: &'static str| {
        let fss = fss.clone();
        move || {
            let fss = fss.clone();
            async move {
                let Some(fs) = fss.get_opt("shared").await? else {
                    bail!("the FileSystem went while AccessPoints {waiting_for} remain");
                };
                let status = fs.status.unwrap_or_default();
                let ready = condition(&status.conditions, "Ready");
                Ok(match (status.phase, ready) {
                    (Some(LifecyclePhase::Deleting), Some(c))
                        if c.reason == "AccessPointsExist" && c.message.ends_with(waiting_for) =>
                    {
                        Ok(())
                    }
                    (phase, c) => Err(format!("{phase:?} {c:?}")),
                })
            }
        }
    };
    wait_for(&operator, "deletion held by a and b", held(": a, b")).await?;
    // Held, not merely slow: still there after a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_for(&operator, "deletion still held by a and b", held(": a, b")).await?;

    // kubectl delete waits until the operator has released the AccessPoint.
    kubectl(
        server,
        &ns,
        &["delete", "accesspoint", "a", "--timeout=30s"],
    )?;
    wait_for(&operator, "deletion held by b", held(": b")).await?;
    kubectl(
        server,
        &ns,
        &["delete", "accesspoint", "b", "--timeout=30s"],
    )?;
    wait_for(&operator, "FileSystem deleted", || async {
        Ok(match fss.get_opt("shared").await? {
            None => Ok(()),
            Some(fs) => Err(format!("still there: {:?}", fs.status)),
        })
    })
    .await?;

    // SIGTERM ends the process cleanly.
    let status = operator.terminate()?;
    ensure!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        operator.log()
    );
    ensure!(
        operator.log().contains("controllers stopped"),
        "{}",
        operator.log()
    );
    Ok(())
}

/// Managing the core objects needs the nfsd image: without it (and without
/// --only-custom-resources) the operator says so instead of starting.
#[test]
fn run_without_an_nfsd_image_refuses_to_start() -> Result<()> {
    let out = Command::new(workspace_binary("openefs-operator", "openefs-operator")?)
        .args(["run", "--kubeconfig", "/nonexistent"])
        .env_remove("OPENEFS_ONLY_CUSTOM_RESOURCES")
        .env_remove("OPENEFS_NFSD_IMAGE")
        .output()?;
    ensure!(!out.status.success(), "started without an nfsd image");
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(stderr.contains("--nfsd-image"), "{stderr}");
    Ok(())
}
