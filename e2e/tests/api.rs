//! The openefs API against a real Kubernetes API server (e2e/src/apiserver.rs):
//! the generated CRDs, the examples, the must-reject fixtures with the
//! server's own messages, `kubectl explain`, printer columns, server-side
//! apply conflicts and a kube-rs client. The real server is the judge of the
//! CEL rules: it also enforces their cost budget, which no local evaluator does.

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::watcher;
use openefs_crds::{FileSystem, LifecyclePhase};
use openefs_e2e::apiserver::{ApiServer, check, namespace, repo_root};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

/// The shared server with the CRDs from `crds/` and then the chart's copy applied.
fn server() -> Result<&'static ApiServer> {
    static CRDS: OnceLock<Result<Vec<CustomResourceDefinition>, String>> = OnceLock::new();
    let server = ApiServer::shared()?;
    CRDS.get_or_init(|| apply_both_crd_copies(server).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("applying the CRDs: {e}"))?;
    Ok(server)
}

fn apply_both_crd_copies(server: &ApiServer) -> Result<Vec<CustomResourceDefinition>> {
    let mut crds = Vec::new();
    for dir in openefs_crds::crd_dirs(&repo_root()) {
        let files = yaml_files(&dir)?;
        ensure!(!files.is_empty(), "no CRD YAML in {}", dir.display());
        crds = server
            .apply_crds(&files)
            .with_context(|| format!("CRDs from {}", dir.display()))?;
    }
    Ok(crds)
}

/// The CRDs as the server holds them.
fn served_crds(server: &ApiServer) -> Result<Vec<CustomResourceDefinition>> {
    let files = yaml_files(&repo_root().join("crds"))?;
    let mut crds = Vec::new();
    for file in files {
        let out = server.kubectl([
            Path::new("get"),
            Path::new("-o"),
            Path::new("json"),
            Path::new("-f"),
            &file,
        ])?;
        check(&out, "kubectl get of a CRD")?;
        crds.push(serde_json::from_slice(&out.stdout).context("decoding a CRD")?);
    }
    Ok(crds)
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    Ok(files)
}

/// The text after `# expect:` on a fixture's first line.
fn expected_message(file: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect:"))
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .ok_or_else(|| anyhow!("{} does not start with `# expect: <text>`", file.display()))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply_file(server: &ApiServer, ns: &str, file: &Path) -> Result<Output> {
    server.kubectl([
        Path::new("apply"),
        Path::new("-n"),
        Path::new(ns),
        Path::new("-f"),
        file,
    ])
}

/// Refused, with `expected` in the server's message; collects a failure line otherwise.
fn refused_with(out: &Output, expected: &str, what: &str, failures: &mut Vec<String>) {
    if out.status.success() {
        failures.push(format!(
            "{what}: accepted, expected a refusal with {expected:?}"
        ));
    } else if !stderr(out).contains(expected) {
        failures.push(format!(
            "{what}: refused, but the message lacks {expected:?}:\n{}",
            stderr(out)
        ));
    }
}

#[test]
fn crds_from_crds_dir_and_chart_are_established() -> Result<()> {
    let server = server()?;
    let names: BTreeSet<String> = served_crds(server)?
        .into_iter()
        .filter_map(|crd| crd.metadata.name)
        .collect();
    let want: BTreeSet<String> = openefs_crds::crds()
        .into_iter()
        .filter_map(|crd| crd.metadata.name)
        .collect();
    assert_eq!(names, want);
    let resources = server.kubectl(["api-resources", "--api-group=openefs.io", "-o", "name"])?;
    check(&resources, "kubectl api-resources")?;
    assert_eq!(
        stdout(&resources).lines().collect::<BTreeSet<_>>(),
        ["accesspoints.openefs.io", "filesystems.openefs.io"].into()
    );
    Ok(())
}

#[test]
fn every_example_is_accepted() -> Result<()> {
    let server = server()?;
    let ns = namespace("every_example_is_accepted");
    let examples = yaml_files(&repo_root().join("examples"))?;
    ensure!(!examples.is_empty(), "examples/ has no *.yaml");
    let mut failures = Vec::new();
    for file in &examples {
        let out = apply_file(server, &ns, file)?;
        if !out.status.success() {
            failures.push(format!("{}: {}", file.display(), stderr(&out)));
        }
    }
    ensure!(
        failures.is_empty(),
        "examples refused by the API server:\n{}",
        failures.join("\n")
    );
    Ok(())
}

#[test]
fn every_reject_fixture_is_refused_with_its_message() -> Result<()> {
    let server = server()?;
    let ns = namespace("every_reject_fixture_is_refused_with_its_message");
    let fixtures: Vec<PathBuf> = yaml_files(&repo_root().join("crds/tests/reject"))?
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("update-"))
        })
        .collect();
    ensure!(
        !fixtures.is_empty(),
        "crds/tests/reject has no must-reject fixtures"
    );
    let mut failures = Vec::new();
    for file in &fixtures {
        let expected = expected_message(file)?;
        let out = apply_file(server, &ns, file)?;
        refused_with(&out, &expected, &file.display().to_string(), &mut failures);
    }
    ensure!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
    Ok(())
}

#[test]
fn updates_to_immutable_fields_are_refused() -> Result<()> {
    let server = server()?;
    let ns = namespace("updates_to_immutable_fields_are_refused");
    let befores: Vec<PathBuf> = yaml_files(&repo_root().join("crds/tests/reject"))?
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".before.yaml"))
        .collect();
    ensure!(
        !befores.is_empty(),
        "crds/tests/reject has no update-*.before.yaml"
    );
    let mut failures = Vec::new();
    for before in &befores {
        let after = PathBuf::from(
            before
                .to_string_lossy()
                .replace(".before.yaml", ".after.yaml"),
        );
        let expected = expected_message(&after)?;
        let created = apply_file(server, &ns, before)?;
        if !created.status.success() {
            failures.push(format!(
                "{}: refused: {}",
                before.display(),
                stderr(&created)
            ));
            continue;
        }
        let out = apply_file(server, &ns, &after)?;
        refused_with(&out, &expected, &after.display().to_string(), &mut failures);
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// Dotted paths below `prefix` of every field `kubectl explain` can reach,
/// with the schema's description (arrays of objects are walked through
/// their items, as explain does; map values are not reachable).
fn schema_fields(prefix: &str, schema: &JSONSchemaProps, out: &mut Vec<(String, Option<String>)>) {
    let mut schema = schema;
    while let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
        schema = items;
    }
    for (name, child) in schema.properties.iter().flatten() {
        let path = format!("{prefix}.{name}");
        out.push((path.clone(), child.description.clone()));
        schema_fields(&path, child, out);
    }
}

/// The paths listed by `kubectl explain KIND --recursive` (two spaces of indent per level).
fn recursive_paths(kind: &str, text: &str) -> BTreeSet<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut paths = BTreeSet::new();
    let fields = text
        .split_once("FIELDS:\n")
        .map(|(_, f)| f)
        .unwrap_or_default();
    for line in fields.lines() {
        // Field lines are `name<TAB><type>`; others (such as `enum: a, b`) have no tab.
        let Some((name, _)) = line.trim_start().split_once('\t') else {
            continue;
        };
        let depth = (line.len() - line.trim_start().len()) / 2;
        if depth == 0 {
            continue;
        }
        stack.truncate(depth - 1);
        stack.push(name.to_owned());
        paths.insert(format!("{kind}.{}", stack.join(".")));
    }
    paths
}

/// The DESCRIPTION section of `kubectl explain` output, whitespace-normalised.
fn explain_description(text: &str) -> String {
    let Some((_, rest)) = text.split_once("DESCRIPTION:\n") else {
        return String::new();
    };
    let body: Vec<&str> = rest
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect();
    normalise(&body.join(" "))
}

fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every field of `crd`'s spec and status that `kubectl explain` does not list
/// or shows without the schema's description; and how many fields were checked.
fn explain_failures(
    server: &ApiServer,
    crd: &CustomResourceDefinition,
) -> Result<(usize, Vec<String>)> {
    let kind = crd
        .spec
        .names
        .singular
        .clone()
        .context("CRD without a singular name")?;
    let version = crd.spec.versions.first().context("CRD without versions")?;
    let root = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .context("CRD without a schema")?;
    let mut fields = Vec::new();
    for top in ["spec", "status"] {
        let schema = root.properties.as_ref().and_then(|p| p.get(top));
        let schema = schema.with_context(|| format!("{kind} has no {top}"))?;
        fields.push((format!("{kind}.{top}"), schema.description.clone()));
        schema_fields(&format!("{kind}.{top}"), schema, &mut fields);
    }

    let mut failures = Vec::new();
    let recursive = server.kubectl(["explain", &kind, "--recursive"])?;
    check(&recursive, "kubectl explain --recursive")?;
    let listed = recursive_paths(&kind, &stdout(&recursive));
    for (path, _) in &fields {
        if !listed.contains(path) {
            failures.push(format!(
                "{path}: missing from `kubectl explain {kind} --recursive`"
            ));
        }
    }
    for (path, description) in &fields {
        let Some(description) = description
            .as_deref()
            .map(normalise)
            .filter(|d| !d.is_empty())
        else {
            failures.push(format!("{path}: the schema has no description"));
            continue;
        };
        let out = server.kubectl(["explain", path])?;
        if !out.status.success() {
            failures.push(format!("{path}: kubectl explain failed: {}", stderr(&out)));
            continue;
        }
        let shown = explain_description(&stdout(&out));
        if !shown.contains(&description) {
            failures.push(format!(
                "{path}: explain shows {shown:?}, the schema says {description:?}"
            ));
        }
    }
    Ok((fields.len(), failures))
}

#[test]
fn kubectl_explain_describes_every_field() -> Result<()> {
    let server = server()?;
    let mut all = Vec::new();
    for crd in served_crds(server)? {
        let (checked, failures) = explain_failures(server, &crd)?;
        // Both kinds have far more than a handful of fields; fewer means the walk broke.
        ensure!(
            checked >= 10,
            "only {checked} fields found in {:?}",
            crd.metadata.name
        );
        all.extend(failures);
    }
    ensure!(all.is_empty(), "{} fields:\n{}", all.len(), all.join("\n"));
    Ok(())
}

/// The explain check itself, on a CRD of our own with one undescribed field
/// and one nested in an array of objects.
#[test]
fn explain_check_reports_an_undescribed_field() -> Result<()> {
    let server = ApiServer::shared()?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("gadgets.yaml");
    std::fs::write(
        &file,
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.check.example.com}
spec:
  group: check.example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the gadget should be.
            properties:
              size: {type: integer, description: How big it is, in
                  whole units.}
              colour: {type: string}
              parts:
                type: array
                description: Its parts.
                items:
                  type: object
                  properties:
                    name: {type: string, description: Name of the part.}
          status:
            type: object
            description: What the gadget is.
"#,
    )?;
    let crds = server.apply_crds(&[&file])?;
    let (checked, failures) = explain_failures(server, &crds[0])?;
    assert_eq!(checked, 6, "{failures:?}");
    assert_eq!(
        failures,
        ["gadget.spec.colour: the schema has no description"]
    );
    Ok(())
}

#[test]
fn kubectl_get_shows_the_printer_columns() -> Result<()> {
    let server = server()?;
    let ns = namespace("kubectl_get_shows_the_printer_columns");
    let manifest =
        "apiVersion: openefs.io/v1alpha1\nkind: FileSystem\nmetadata:\n  name: columns\nspec: {}\n";
    check(
        &server.kubectl_with_stdin(["apply", "-n", &ns, "-f", "-"], manifest)?,
        "creating a FileSystem",
    )?;
    let status =
        json!({"status": {"phase": "Available", "endpoint": "columns.example.svc"}}).to_string();
    let patch = server.kubectl([
        "patch",
        "fs",
        "columns",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ])?;
    check(&patch, "patching the status")?;

    let crd = served_crds(server)?
        .into_iter()
        .find(|c| c.spec.names.kind == "FileSystem")
        .context("no FileSystem CRD")?;
    let columns = crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default();
    ensure!(
        !columns.is_empty(),
        "the FileSystem CRD has no printer columns"
    );
    for (wide, args) in [
        (false, vec!["get", "fs", "-n", &ns]),
        (true, vec!["get", "fs", "-n", &ns, "-o", "wide"]),
    ] {
        let out = server.kubectl(&args)?;
        check(&out, "kubectl get fs")?;
        let text = stdout(&out);
        let header: Vec<&str> = text
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let want: Vec<String> = std::iter::once("NAME".to_owned())
            .chain(
                columns
                    .iter()
                    .filter(|c| wide || c.priority.unwrap_or(0) == 0)
                    .map(|c| c.name.to_uppercase()),
            )
            .collect();
        assert_eq!(header, want, "kubectl {}", args.join(" "));
        let row = text.lines().nth(1).context("kubectl get fs shows no row")?;
        for value in ["columns", "Available", "columns.example.svc"] {
            assert!(
                row.split_whitespace().any(|v| v == value),
                "{value} missing from {row:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn server_side_apply_by_two_managers_conflicts() -> Result<()> {
    let server = server()?;
    let ns = namespace("server_side_apply_by_two_managers_conflicts");
    let manifest = |mode: &str| {
        format!(
            "apiVersion: openefs.io/v1alpha1\nkind: FileSystem\nmetadata:\n  name: ssa\nspec:\n  throughputMode: {mode}\n"
        )
    };
    let apply = |manager: &str, mode: &str, force: bool| {
        let mut args = vec![
            "apply",
            "--server-side",
            "--field-manager",
            manager,
            "-n",
            &ns,
            "-f",
            "-",
        ];
        if force {
            args.push("--force-conflicts");
        }
        server.kubectl_with_stdin(args, &manifest(mode))
    };
    check(
        &apply("team-a", "bursting", false)?,
        "the first manager's apply",
    )?;
    let conflict = apply("team-b", "elastic", false)?;
    ensure!(
        !conflict.status.success(),
        "the second manager's apply was accepted without --force-conflicts"
    );
    let message = stderr(&conflict);
    for part in [
        "Apply failed with 1 conflict",
        "conflict with \"team-a\"",
        ".spec.throughputMode",
    ] {
        ensure!(
            message.contains(part),
            "the conflict message lacks {part:?}: {message}"
        );
    }
    check(&apply("team-b", "elastic", true)?, "the forced apply")?;
    let out = server.kubectl([
        "get",
        "fs",
        "ssa",
        "-n",
        &ns,
        "-o",
        "json",
        "--show-managed-fields",
    ])?;
    check(&out, "reading the FileSystem back")?;
    let fs: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(fs["spec"]["throughputMode"], "elastic");
    let owner = fs["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["fieldsV1"]["f:spec"].get("f:throughputMode").is_some())
        .and_then(|m| m["manager"].as_str());
    assert_eq!(owner, Some("team-b"));
    Ok(())
}

#[tokio::test]
async fn kube_client_with_pinned_kinds_creates_patches_status_and_watches() -> Result<()> {
    let server = server()?;
    let ns = namespace("kube_client_with_pinned_kinds");
    let client = server.client().await?;

    let gvk = GroupVersionKind::gvk("openefs.io", "v1alpha1", "FileSystem");
    let (resource, caps) = kube::discovery::pinned_kind(&client, &gvk).await?;
    assert_eq!(resource.plural, "filesystems");
    assert!(
        caps.subresources.iter().any(|(r, _)| r.plural == "status"),
        "{caps:?}"
    );
    // Legacy /apis lists CRD groups only with apiserver.sh's patch.
    let group = kube::discovery::group(&client, "openefs.io").await?;
    assert_eq!(group.preferred_version_or_latest(), "v1alpha1");

    let api: Api<FileSystem> = Api::namespaced(client, &ns);
    let fs: FileSystem = serde_json::from_value(json!({
        "apiVersion": "openefs.io/v1alpha1", "kind": "FileSystem",
        "metadata": {"name": "kube-client"}, "spec": {"throughputMode": "elastic"}
    }))?;
    let created = api.create(&PostParams::default(), &fs).await?;
    let generation = created.metadata.generation.context("no generation")?;

    let status = json!({"status": {"phase": "Available", "observedGeneration": generation}});
    api.patch_status(
        "kube-client",
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await?;
    let got = api.get("kube-client").await?;
    let got_status = got.status.context("no status after the status patch")?;
    assert_eq!(got_status.phase, Some(LifecyclePhase::Available));
    assert_eq!(got_status.observed_generation, Some(generation));
    assert_eq!(
        got.metadata.generation,
        Some(generation),
        "a status write must not bump generation"
    );

    // A change made by kubectl reaches a kube-runtime watcher.
    let config = watcher::Config::default().fields("metadata.name=kube-client");
    let mut events = watcher(api.clone(), config).boxed();
    let label = server.kubectl(["label", "fs", "kube-client", "-n", &ns, "seen-by=kubectl"])?;
    check(&label, "kubectl label")?;
    let labelled = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.next().await {
            if let watcher::Event::Apply(fs) | watcher::Event::InitApply(fs) = event?
                && fs
                    .metadata
                    .labels
                    .unwrap_or_default()
                    .get("seen-by")
                    .map(String::as_str)
                    == Some("kubectl")
            {
                return Ok::<_, anyhow::Error>(true);
            }
        }
        Ok(false)
    })
    .await
    .context("the watcher saw no change within 30 s")??;
    ensure!(labelled, "the watch ended before the label arrived");
    Ok(())
}

#[test]
fn reject_fixture_expectations_are_read_strictly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "# expect: is immutable\nkind: X\n")?;
    assert_eq!(expected_message(&good)?, "is immutable");
    for bad in ["kind: X\n", "# expect:\nkind: X\n", ""] {
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, bad)?;
        if expected_message(&file).is_ok() {
            bail!("accepted a fixture without an expectation: {bad:?}");
        }
    }
    Ok(())
}
