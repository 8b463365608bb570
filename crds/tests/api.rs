//! The generated CRDs against the files checked in, the examples and the
//! must-reject fixtures, evaluated without an API server: CEL rules with
//! kube-cel (the apiserver's CEL libraries, ported), defaults with its
//! structural defaulting. Pattern/range/enum cases need the real API server
//! and are exercised by the apiserver test suite.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail, ensure};
use kube::core::cel::{Validator, apply_defaults, compile_schema};
use openefs_crds::{AccessPoint, FileSystem, FileSystemSpec, crds, stale_crd_files};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema_of(kind: &str) -> Result<Value> {
    let crd = crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .with_context(|| format!("no CRD for kind {kind}"))?;
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .context("CRD without openAPIV3Schema")?;
    Ok(serde_json::to_value(schema)?)
}

fn read_yaml(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    Ok(files)
}

#[test]
fn checked_in_yaml_is_current() {
    let stale = stale_crd_files(&repo_root());
    assert!(
        stale.is_empty(),
        "CRD YAML out of date: {stale:?}; run `cargo run -p openefs-crds --bin crdgen`"
    );
}

/// Paths of the properties (what `kubectl explain` lists as fields) in
/// `schema` without a non-empty description, at any depth: inside objects,
/// array items and map values.
fn undescribed(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let sub_path = format!("{path}.{name}");
            let described = sub
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            if !described {
                out.push(sub_path.clone());
            }
            undescribed(sub, &sub_path, out);
        }
    }
    for nested in ["items", "additionalProperties"] {
        if let Some(sub) = schema.get(nested) {
            undescribed(sub, &format!("{path}.{nested}"), out);
        }
    }
}

#[test]
fn description_walk_finds_gaps() {
    let schema = json!({"properties": {
        "a": {"description": "ok", "properties": {"b": {"type": "string"}}},
        "c": {"description": "ok", "items": {"properties": {"d": {"description": " "}}}},
        "e": {"description": "ok", "additionalProperties": {"properties": {"f": {}}}},
    }});
    let mut missing = Vec::new();
    undescribed(&schema, "X", &mut missing);
    assert_eq!(
        missing,
        ["X.a.b", "X.c.items.d", "X.e.additionalProperties.f"]
    );
}

#[test]
fn every_property_is_described() -> Result<()> {
    for kind in ["FileSystem", "AccessPoint"] {
        let schema = schema_of(kind)?;
        ensure!(
            schema
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.is_empty()),
            "{kind}: no description on the kind"
        );
        let mut missing = Vec::new();
        undescribed(&schema, kind, &mut missing);
        ensure!(
            missing.is_empty(),
            "{kind}: properties without description: {missing:?}"
        );
    }
    Ok(())
}

#[test]
fn every_cel_rule_compiles() -> Result<()> {
    for kind in ["FileSystem", "AccessPoint"] {
        let compiled = compile_schema(&schema_of(kind)?);
        let errors: Vec<String> = compiled
            .compilation_errors()
            .iter()
            .map(|e| e.to_string())
            .collect();
        ensure!(
            errors.is_empty(),
            "{kind}: CEL rules that do not compile: {errors:?}"
        );
    }
    Ok(())
}

/// What the API server stores for `spec` after defaulting must be what the
/// Rust types produce for an empty spec, so that operator and API server agree.
#[test]
fn schema_defaults_equal_serde_defaults() -> Result<()> {
    let fs_object = json!({"apiVersion": "openefs.io/v1alpha1", "kind": "FileSystem",
        "metadata": {"name": "x"}, "spec": {}});
    let defaulted = apply_defaults(&schema_of("FileSystem")?, &fs_object);
    let serde_spec: FileSystemSpec = serde_json::from_value(json!({}))?;
    assert_eq!(defaulted["spec"], serde_json::to_value(&serde_spec)?);

    let ap_object = json!({"apiVersion": "openefs.io/v1alpha1", "kind": "AccessPoint",
        "metadata": {"name": "x"}, "spec": {"fileSystemRef": {"name": "shared"}}});
    let defaulted = apply_defaults(&schema_of("AccessPoint")?, &ap_object);
    let serde_ap: AccessPoint = serde_json::from_value(ap_object)?;
    assert_eq!(defaulted["spec"], serde_json::to_value(&serde_ap.spec)?);
    Ok(())
}

/// True when every key and value of `part` is in `whole`: a typed round
/// trip that lost a field (a typo, a field the types do not know) fails.
fn is_subset(part: &Value, whole: &Value) -> bool {
    match (part, whole) {
        (Value::Object(p), Value::Object(w)) => p
            .iter()
            .all(|(k, v)| w.get(k).is_some_and(|wv| is_subset(v, wv))),
        (Value::Array(p), Value::Array(w)) => {
            p.len() == w.len() && p.iter().zip(w).all(|(a, b)| is_subset(a, b))
        }
        (Value::Number(p), Value::Number(w)) => p.as_f64() == w.as_f64(),
        _ => part == whole,
    }
}

fn typed_round_trip(object: &Value) -> Result<Value> {
    Ok(match object["kind"].as_str() {
        Some("FileSystem") => {
            serde_json::to_value(serde_json::from_value::<FileSystem>(object.clone())?)?
        }
        Some("AccessPoint") => {
            serde_json::to_value(serde_json::from_value::<AccessPoint>(object.clone())?)?
        }
        other => bail!("unexpected kind {other:?}"),
    })
}

#[test]
fn examples_are_typed_and_pass_the_cel_rules() -> Result<()> {
    let validator = Validator::new();
    let examples = yaml_files(&repo_root().join("examples"))?;
    ensure!(
        examples.len() >= 5,
        "expected the five examples, found {examples:?}"
    );
    for path in examples {
        let object = read_yaml(&path)?;
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let typed = typed_round_trip(&object).with_context(|| format!("{}", path.display()))?;
        ensure!(
            is_subset(&object, &typed),
            "{}: fields lost by the types",
            path.display()
        );
        validator
            .validate(&schema_of(&kind)?, &object, None)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn expectation(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path)?;
    let first = text.lines().next().unwrap_or_default();
    first
        .strip_prefix("# expect: ")
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "{}: first line must be `# expect: <message>`",
                path.display()
            )
        })
}

fn cel_messages(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(rules) = map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
            {
                out.extend(
                    rules
                        .iter()
                        .filter_map(|r| r["message"].as_str().map(str::to_owned)),
                );
            }
            map.values().for_each(|v| cel_messages(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| cel_messages(v, out)),
        _ => {}
    }
}

/// The API server's own messages for OpenAPI schema violations; fixtures
/// expecting these are checked by the apiserver test suite.
const SCHEMA_MESSAGES: [&str; 7] = [
    "should match",
    "should be greater than or equal to",
    "should be less than or equal to",
    "Unsupported value",
    "unknown field",
    "Required value",
    "must have at most",
];

#[test]
fn reject_fixtures_fail_with_their_expected_message() -> Result<()> {
    let validator = Validator::new();
    let dir = repo_root().join("crds/tests/reject");
    let mut cel_cases = 0;
    for path in yaml_files(&dir)? {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let object = read_yaml(&path)?;
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let schema = schema_of(&kind)?;
        if let Some(stem) = name.strip_suffix(".before.yaml") {
            validator
                .validate(&schema, &object, None)
                .map_err(|e| anyhow::anyhow!("{name} must be valid: {e}"))?;
            ensure!(
                dir.join(format!("{stem}.after.yaml")).exists(),
                "{name} has no .after.yaml"
            );
            continue;
        }
        let expect = expectation(&path)?;
        let mut messages = Vec::new();
        cel_messages(&schema, &mut messages);
        if !messages.iter().any(|m| m.contains(&expect)) {
            ensure!(
                SCHEMA_MESSAGES.iter().any(|m| expect.contains(m)),
                "{name}: `{expect}` is neither a CEL rule message nor a known schema message"
            );
            continue;
        }
        let old = match name.strip_suffix(".after.yaml") {
            Some(stem) => Some(read_yaml(&dir.join(format!("{stem}.before.yaml")))?),
            None => None,
        };
        let result = validator.validate(&schema, &object, old.as_ref());
        let Err(errors) = result else {
            bail!("{name}: accepted, expected `{expect}`");
        };
        ensure!(
            errors.to_string().contains(&expect),
            "{name}: expected `{expect}`, got `{errors}`"
        );
        cel_cases += 1;
    }
    ensure!(
        cel_cases >= 12,
        "only {cel_cases} CEL fixtures were checked"
    );
    Ok(())
}
