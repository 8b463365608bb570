//! The Helm chart and the example manifests, checked by real tools:
//! `helm lint` and `helm template` (helm from e2e/scripts/helm.sh), every
//! core object through `kubernetes-validate --strict` for the oldest and
//! newest supported Kubernetes versions, and every openefs object through
//! a server-side dry run on the real API server with the CRDs installed.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context, Result, bail, ensure};
use openefs_e2e::apiserver::{ApiServer, check, repo_root};
use serde::Deserialize;

/// Oldest and newest Kubernetes versions the chart supports (docs/install.md).
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn chart_dir() -> PathBuf {
    repo_root().join("charts/openefs")
}

fn helm() -> Result<PathBuf> {
    let out = Command::new("bash")
        .arg(repo_root().join("e2e/scripts/helm.sh"))
        .output()
        .context("running e2e/scripts/helm.sh")?;
    check(&out, "e2e/scripts/helm.sh")?;
    let path = String::from_utf8(out.stdout)?.trim().to_owned();
    Ok(PathBuf::from(path))
}

fn run(command: &mut Command, what: &str) -> Result<Output> {
    let out = command
        .output()
        .with_context(|| format!("running {what}"))?;
    check(&out, what)?;
    Ok(out)
}

/// `helm template` of the chart with `args` (values files, --set ...).
fn render(helm: &Path, args: &[&str]) -> Result<String> {
    let out = run(
        Command::new(helm)
            .args(["template", "openefs", "--namespace", "openefs-system"])
            .arg(chart_dir())
            .args(args),
        &format!("helm template {}", args.join(" ")),
    )?;
    Ok(String::from_utf8(out.stdout)?)
}

/// One document of a multi-document YAML stream, with its kind.
struct Document {
    api_version: String,
    kind: String,
    yaml: String,
}

fn documents(stream: &str) -> Result<Vec<Document>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(stream) {
        let value = serde_yaml::Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        let field = |name: &str| {
            value
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .with_context(|| format!("a document without {name}: {value:?}"))
        };
        out.push(Document {
            api_version: field("apiVersion")?,
            kind: field("kind")?,
            yaml: serde_yaml::to_string(&value)?,
        });
    }
    Ok(out)
}

/// Checks every document: openefs kinds by a server-side dry run against
/// the CRDs, the rest with kubernetes-validate. Only ServiceMonitor (a
/// third-party CRD) is left unchecked. Returns the kinds checked.
fn validate(label: &str, stream: &str) -> Result<Vec<String>> {
    let docs = documents(stream)?;
    ensure!(!docs.is_empty(), "{label}: nothing rendered");
    let dir = tempfile::tempdir()?;
    let mut core = Vec::new();
    let mut kinds = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        kinds.push(doc.kind.clone());
        if doc.api_version.starts_with("openefs.io/") {
            let server = ApiServer::shared_with_openefs_crds()?;
            let out =
                server.kubectl_with_stdin(["apply", "--dry-run=server", "-f", "-"], &doc.yaml)?;
            check(&out, &format!("{label}: dry run of {}", doc.kind))?;
        } else if doc.api_version.starts_with("monitoring.coreos.com/") {
            println!("{label}: {} not validated (third-party CRD)", doc.kind);
        } else {
            let path = dir.path().join(format!("{i:02}-{}.yaml", doc.kind));
            std::fs::write(&path, &doc.yaml)?;
            core.push(path);
        }
    }
    let validator = repo_root().join(".cache/venv/bin/kubernetes-validate");
    ensure!(
        validator.is_file(),
        "{} is missing: run `bash .ci/deps.sh`",
        validator.display()
    );
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(&validator)
            .args(["--strict", "--quiet", "-k", version])
            .args(&core)
            .output()?;
        if !out.status.success() {
            bail!(
                "{label}: kubernetes-validate --strict -k {version} rejected objects:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(kinds)
}

#[test]
fn chart_lints_and_renders_valid_objects() -> Result<()> {
    let helm = helm()?;
    let all_on = chart_dir().join("ci/all-on-values.yaml");
    let all_on = all_on.to_str().context("path")?;
    run(
        Command::new(&helm).arg("lint").arg(chart_dir()),
        "helm lint",
    )?;
    run(
        Command::new(&helm)
            .args(["lint", "-f", all_on])
            .arg(chart_dir()),
        "helm lint (all on)",
    )?;

    let kinds = validate("default values", &render(&helm, &[])?)?;
    for kind in [
        "CSIDriver",
        "DaemonSet",
        "Deployment",
        "StorageClass",
        "FileSystem",
    ] {
        ensure!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    let rendered = render(&helm, &["-f", all_on])?;
    let kinds = validate("all on", &rendered)?;
    ensure!(
        kinds.iter().any(|k| k == "ServiceMonitor"),
        "no ServiceMonitor in {kinds:?}"
    );
    // The dashboard's ConfigMap carries the file unchanged, with the label
    // Grafana's sidecar selects on.
    let dashboard = documents(&rendered)?
        .into_iter()
        .find(|d| d.kind == "ConfigMap" && d.yaml.contains("grafana_dashboard"))
        .context("no dashboard ConfigMap")?;
    let dashboard: serde_yaml::Value = serde_yaml::from_str(&dashboard.yaml)?;
    ensure!(dashboard["metadata"]["labels"]["grafana_dashboard"].as_str() == Some("1"));
    ensure!(dashboard["metadata"]["namespace"].as_str() == Some("monitoring"));
    let shipped: serde_json::Value = serde_json::from_str(
        dashboard["data"]["openefs.json"]
            .as_str()
            .context("no openefs.json in the ConfigMap")?,
    )?;
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        chart_dir().join("dashboards/openefs.json"),
    )?)?;
    ensure!(
        shipped == file,
        "the ConfigMap's dashboard differs from the file"
    );
    Ok(())
}

#[test]
fn chart_wires_the_storage_class_to_the_default_file_system() -> Result<()> {
    let helm = helm()?;
    let rendered = render(&helm, &[])?;
    let class = documents(&rendered)?
        .into_iter()
        .find(|d| d.kind == "StorageClass")
        .context("no StorageClass")?;
    let class: serde_yaml::Value = serde_yaml::from_str(&class.yaml)?;
    assert_eq!(class["provisioner"].as_str(), Some("csi.openefs.io"));
    assert_eq!(
        class["parameters"]["fileSystemName"].as_str(),
        Some("shared")
    );
    assert_eq!(
        class["parameters"]["fileSystemNamespace"].as_str(),
        Some("openefs-system")
    );

    // Without a FileSystem to point at, the StorageClass cannot work: the
    // chart says so instead of rendering a broken one.
    let out = Command::new(&helm)
        .args(["template", "openefs"])
        .arg(chart_dir())
        .args(["--set", "defaultFileSystem.create=false"])
        .output()?;
    ensure!(
        !out.status.success(),
        "rendered a StorageClass without a FileSystem"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        stderr.contains("storageClass.parameters.fileSystemName is required"),
        "{stderr}"
    );
    render(
        &helm,
        &[
            "--set",
            "defaultFileSystem.create=false",
            "--set",
            "storageClass.parameters.fileSystemName=team-fs",
        ],
    )?;
    Ok(())
}

#[test]
fn values_outside_the_schema_are_refused() -> Result<()> {
    let helm = helm()?;
    for (set, what) in [
        ("csi.fsGroupPolicy=Sometimes", "fsGroupPolicy"),
        ("csi.controller.replicas=0", "replicas"),
        ("storageClass.reclaimPolicy=Recycle", "reclaimPolicy"),
        ("operator.httpPort=99999", "httpPort"),
        ("grafanaDashboard.namespace=Not_A_Name", "namespace"),
    ] {
        let out = Command::new(&helm)
            .args(["template", "openefs"])
            .arg(chart_dir())
            .args(["--set", set])
            .output()?;
        ensure!(!out.status.success(), "--set {set} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            stderr.contains("values don't meet the specifications of the schema")
                && stderr.contains(what),
            "--set {set}: {stderr}"
        );
    }
    Ok(())
}

#[test]
fn example_manifests_are_valid() -> Result<()> {
    let dir = repo_root().join("docs/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    ensure!(files.len() >= 3, "too few examples: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        validate(&file.display().to_string(), &text)?;
    }
    Ok(())
}
