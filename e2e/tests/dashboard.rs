//! The Grafana dashboard (`charts/openefs/dashboards/openefs.json`) against
//! the metrics the components really export: every `openefs_*` name its
//! queries use must be a sample name of an exported family (a counter's
//! `_total`, a histogram's `_bucket`/`_sum`/`_count`, a gauge's own name),
//! and every exported family must have a panel. The names come from a
//! running openefs-nfsd's `/metrics` and from nfsd's, the operator's and
//! the tls-proxy's registries after one recording of each kind (labelled
//! families without a series are not listed). The JSON must parse, and every panel must query
//! the `${datasource}` template variable.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use openefs_csi::tls_proxy::metrics::Direction;
use openefs_e2e::apiserver::repo_root;
use openefs_e2e::nfsd::Nfsd;
use openefs_nfsd::metrics::{Outcome, Reclaimed};
use serde_json::Value;

const DATASOURCE: &str = "${datasource}";

/// Family name → type, from the `# TYPE` lines of an exposition.
fn families(page: &str) -> BTreeMap<String, String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some((name.to_owned(), kind.trim().to_owned()))
        })
        .collect()
}

/// The sample names a family of `kind` exposes, as PromQL names them.
fn sample_names(family: &str, kind: &str) -> Vec<String> {
    match kind {
        "counter" => vec![format!("{family}_total")],
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{family}{s}"))
            .collect(),
        _ => vec![family.to_owned()],
    }
}

/// Every `openefs_*` identifier in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("openefs_") {
        // Part of a longer identifier (e.g. a label value): not a name.
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// Every PromQL string of the dashboard: panel targets and query variables.
fn queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) if s.contains("openefs_") => out.push(s.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// Panels, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

#[test]
fn dashboard_queries_only_exported_metrics() -> Result<()> {
    let path = repo_root().join("charts/openefs/dashboards/openefs.json");
    let text = std::fs::read_to_string(&path)?;
    let dashboard: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;

    // The data source is a template variable, so the dashboard imports
    // into any Grafana.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .context("no templating.list")?;
    ensure!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no datasource variable of type prometheus"
    );
    let mut ids = BTreeSet::new();
    let mut graphs = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        ensure!(!title.is_empty(), "a panel without a title: {panel}");
        let id = panel["id"].as_u64().context("a panel without an id")?;
        ensure!(ids.insert(id), "panel id {id} is used twice");
        if panel["type"] == "row" {
            continue;
        }
        graphs += 1;
        ensure!(
            panel["datasource"]["uid"] == DATASOURCE,
            "panel {title:?} does not use {DATASOURCE}"
        );
        let targets = panel["targets"].as_array().context("no targets")?;
        ensure!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            ensure!(
                target["datasource"]["uid"] == DATASOURCE,
                "a query of {title:?} does not use {DATASOURCE}"
            );
            ensure!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "an empty query in {title:?}"
            );
        }
    }
    ensure!(graphs >= 10, "only {graphs} panels");

    // What the components export. A labelled family is only listed once it
    // has a series, so each registry records one of everything through its
    // public API first.
    let dir = tempfile::tempdir()?;
    let export = dir.path().join("export");
    std::fs::create_dir(&export)?;
    let nfsd = Nfsd::start(&export, dir.path().join("nfsd.log"))?;
    let mut exported = families(&nfsd.metrics()?);
    let served = exported.len();
    let took = Duration::from_millis(1);
    let server = openefs_nfsd::metrics::Metrics::default();
    server.op_done("READ", Outcome::Ok, took);
    server.reclaimed(Reclaimed::Open);
    exported.extend(families(&server.encode()?));
    let nfsd_families = exported.len();
    let operator = openefs_operator::metrics::Metrics::default();
    operator.reconciled("FileSystem", Ok(()), took);
    exported.extend(families(&operator.encode()?));
    let proxy = openefs_csi::tls_proxy::metrics::Metrics::default();
    proxy.bytes("t", Direction::ToServer).inc();
    proxy.connection_opened("t", true);
    proxy.handshake_failed("t");
    exported.extend(families(&proxy.encode()?));
    ensure!(
        served >= 15 && nfsd_families >= served + 3 && exported.len() >= nfsd_families + 8,
        "too few metric families found: {exported:?}"
    );
    let known: BTreeMap<String, &str> = exported
        .iter()
        .flat_map(|(family, kind)| {
            sample_names(family, kind)
                .into_iter()
                .map(move |name| (name, family.as_str()))
        })
        .collect();

    let mut exprs = Vec::new();
    queries(&dashboard, &mut exprs);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let unknown: Vec<&String> = used.iter().filter(|n| !known.contains_key(*n)).collect();
    ensure!(
        unknown.is_empty(),
        "the dashboard queries metrics nothing exports: {unknown:?}\nexported: {:?}",
        known.keys().collect::<Vec<_>>()
    );
    let shown: BTreeSet<&str> = used.iter().filter_map(|n| known.get(n).copied()).collect();
    let missing: Vec<&String> = exported
        .keys()
        .filter(|f| !shown.contains(f.as_str()))
        .collect();
    ensure!(
        missing.is_empty(),
        "exported metric families without a panel: {missing:?}"
    );
    println!(
        "dashboard: {graphs} panels, {} queries, {} metric names, all {} exported families shown",
        exprs.len(),
        used.len(),
        exported.len()
    );
    Ok(())
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (op, le) (rate(openefs_nfsd_operation_duration_seconds_bucket{instance=~"$instance", x="my_openefs_y"}[5m]))) / openefs_nfsd_connections"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "openefs_nfsd_connections",
            "openefs_nfsd_operation_duration_seconds_bucket"
        ]
    );
    let fam = families("# HELP a_b x\n# TYPE a_b counter\na_b_total 1\n# TYPE h histogram\n");
    assert_eq!(fam.get("a_b").map(String::as_str), Some("counter"));
    assert_eq!(sample_names("a_b", "counter"), ["a_b_total"]);
    assert_eq!(
        sample_names("h", "histogram"),
        ["h_bucket", "h_sum", "h_count"]
    );
    assert_eq!(sample_names("g", "gauge"), ["g"]);
}
