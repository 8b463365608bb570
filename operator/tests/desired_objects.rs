//! The core objects the operator computes for a FileSystem: golden files
//! (`tests/golden/<case>.objects.yaml` and `defaults.servicemonitor.yaml`,
//! rewritten with `UPDATE_GOLDEN=1`)
//! and validation against the real Kubernetes schemas with
//! `kubernetes-validate --strict` (installed by `.ci/deps.sh`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};
use openefs_crds::FileSystem;
use openefs_operator::desired::{self, DesiredObjects, OperatorSettings};
use serde::Serialize;

/// The oldest and newest Kubernetes versions the generated objects must be
/// valid for (docs/operator.md, "Supported Kubernetes versions").
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// The golden cases: `<case>.filesystem.yaml` in, `<case>.objects.yaml` out.
const CASES: [&str; 5] = [
    "defaults",
    "provisioned",
    "encrypted-secret",
    "encrypted-kms",
    "mtls",
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn settings() -> OperatorSettings {
    OperatorSettings::new("ghcr.io/openefs/openefs-nfsd:0.1.0")
}

fn filesystem(case: &str) -> Result<FileSystem> {
    let path = golden_dir().join(format!("{case}.filesystem.yaml"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn desired_for(case: &str) -> Result<DesiredObjects> {
    Ok(desired::objects(
        &filesystem(case)?,
        &[],
        &settings(),
        None,
    )?)
}

/// Each object as `(file name, YAML document)`, in apply order.
fn documents(objects: &DesiredObjects) -> Result<Vec<(String, String)>> {
    fn doc(kind: &str, object: &impl Serialize) -> Result<(String, String)> {
        Ok((format!("{kind}.yaml"), serde_yaml::to_string(object)?))
    }
    Ok(vec![
        doc("persistentvolumeclaim", &objects.backing_pvc)?,
        doc("configmap", &objects.config_map)?,
        doc("service-headless", &objects.headless_service)?,
        doc("service", &objects.service)?,
        doc("statefulset", &objects.stateful_set)?,
        doc("poddisruptionbudget", &objects.pod_disruption_budget)?,
    ])
}

/// Compares `rendered` with the golden file `name`, or rewrites it under
/// `UPDATE_GOLDEN=1`; returns the path when it differs.
fn check_golden(name: &str, rendered: &str) -> Result<Option<PathBuf>> {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, rendered).with_context(|| format!("{}", path.display()))?;
        return Ok(None);
    }
    if std::fs::read_to_string(&path).ok().as_deref() == Some(rendered) {
        return Ok(None);
    }
    eprintln!(
        "--- {} differs; the objects now are:\n{rendered}",
        path.display()
    );
    Ok(Some(path))
}

#[test]
fn desired_objects_match_the_golden_files() -> Result<()> {
    let mut stale = Vec::new();
    for case in CASES {
        let rendered: String = documents(&desired_for(case)?)?
            .into_iter()
            .map(|(_, yaml)| format!("---\n{yaml}"))
            .collect();
        stale.extend(check_golden(&format!("{case}.objects.yaml"), &rendered)?);
    }
    ensure!(
        stale.is_empty(),
        "golden files differ (rerun with UPDATE_GOLDEN=1 and review the diff): {stale:?}"
    );
    Ok(())
}

/// The ServiceMonitor is not in the objects above: it is applied only where
/// its CRD exists, and kubernetes-validate knows no schema for it.
#[test]
fn the_service_monitor_matches_its_golden_file() -> Result<()> {
    let fs = filesystem("defaults")?;
    let rendered = serde_yaml::to_string(&desired::service_monitor(&fs)?)?;
    let stale = check_golden("defaults.servicemonitor.yaml", &rendered)?;
    ensure!(
        stale.is_none(),
        "golden file differs (rerun with UPDATE_GOLDEN=1 and review the diff): {stale:?}"
    );
    Ok(())
}

#[test]
fn desired_objects_are_valid_for_the_supported_kubernetes_versions() -> Result<()> {
    let validate =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/venv/bin/kubernetes-validate");
    ensure!(
        validate.is_file(),
        "{} is missing: run `bash .ci/deps.sh` (or `make deps`)",
        validate.display()
    );
    let dir = tempfile::tempdir()?;
    let mut files = Vec::new();
    for case in CASES {
        for (name, yaml) in documents(&desired_for(case)?)? {
            let path = dir.path().join(format!("{case}-{name}"));
            std::fs::write(&path, yaml)?;
            files.push(path);
        }
    }
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(&validate)
            .args(["--strict", "--quiet", "-k", version])
            .args(&files)
            .output()
            .with_context(|| format!("running {}", validate.display()))?;
        if !out.status.success() {
            bail!(
                "kubernetes-validate --strict -k {version} rejected the objects ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}
