//! A smoke run of the benchmark driver (`openefs-bench`, docs/benchmarks.md)
//! with tiny parameters, so `make bench` cannot rot unnoticed: the driver
//! must finish and report a figure of both servers for every scenario. No
//! thresholds: the figures of a debug build on a shared machine mean nothing.
//!
//! Needs what `.ci/deps.sh` installs (nfs-ganesha, libnfs, iperf3, stunnel4) and fio
//! from `e2e/scripts/fio.sh` (cached; built on first use).

use std::process::Command;

use anyhow::{Context, Result, ensure};
use openefs_e2e::apiserver::repo_root;

/// Rows the report must carry with a number on both sides.
const FIGURES: [&str; 8] = [
    "seq write 1 MiB",
    "seq read 1 MiB",
    "rand write 4 KiB",
    "rand read 4 KiB",
    "metadata create",
    "metadata stat",
    "metadata remove",
    "peak RSS (VmHWM)",
];

/// The numbers in `columns` (0-based cells of `| name | unit | … |`; 3 and
/// 4 are the two compared sides) of table row `name`, if all are numbers.
fn figures(report: &str, name: &str, columns: &[usize]) -> Option<Vec<f64>> {
    report.lines().find_map(|line| {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || cells[1] != name {
            return None;
        }
        columns
            .iter()
            .map(|&c| cells.get(c)?.parse().ok())
            .collect()
    })
}

/// Runs the driver with tiny parameters and `extra` flags; its report.
fn smoke_run(extra: &[&str]) -> Result<String> {
    // The work disk rather than a possibly-tmpfs /tmp, as the driver's default.
    let parent = repo_root().join(".cache");
    std::fs::create_dir_all(&parent)?;
    let dir = tempfile::tempdir_in(&parent)?;
    let output = dir.path().join("report.md");
    let run = Command::new(env!("CARGO_BIN_EXE_openefs-bench"))
        .args(["--quick", "--runtime", "1", "--repeats", "1"])
        .args(["--file-mib", "8", "--meta-files", "20"])
        .args(extra)
        .arg("--dir")
        .arg(dir.path())
        .arg("--output")
        .arg(&output)
        .output()
        .context("running openefs-bench")?;
    let stderr = String::from_utf8_lossy(&run.stderr);
    ensure!(
        run.status.success(),
        "openefs-bench failed with {}:\n{stderr}",
        run.status
    );
    let report = std::fs::read_to_string(&output).context("reading the report")?;
    println!("{report}");
    Ok(report)
}

/// Every row of `names` has a positive number in each of `columns`.
fn ensure_columns(report: &str, names: &[&str], columns: &[usize]) -> Result<()> {
    for &name in names {
        let values = figures(report, name, columns).with_context(|| {
            format!(
                "no figures for {name:?} in the report:
{report}"
            )
        })?;
        ensure!(values.iter().all(|&v| v > 0.0), "{name}: {values:?}");
    }
    Ok(())
}

/// Every row of `names` has a positive number on both compared sides.
fn ensure_figures(report: &str, names: &[&str]) -> Result<()> {
    ensure_columns(report, names, &[3, 4])
}

#[test]
fn bench_driver_reports_every_figure() -> Result<()> {
    ensure_figures(&smoke_run(&[])?, &FIGURES)
}

/// `--encryption`: plain and encrypted nfsd side by side (the encrypted
/// one's data file laid out through NFS, as it must be).
#[test]
fn encryption_bench_reports_every_figure() -> Result<()> {
    ensure_figures(
        &smoke_run(&["--encryption"])?,
        &[
            "seq write 1 MiB",
            "seq read 1 MiB",
            "rand write 4 KiB (1 job)",
            "rand write 4 KiB (4 jobs)",
            "rand read 4 KiB (1 job)",
            "rand read 4 KiB (4 jobs)",
            "CPU per GiB moved (data scenarios)",
            "peak RSS (VmHWM)",
        ],
    )
}

/// `--tls`: one nfsd reached in plaintext, through `openefs-csi tls-proxy`
/// and through stunnel4; the tunnels' costs have no plaintext column.
#[test]
fn tls_bench_reports_every_figure() -> Result<()> {
    ensure_tls_figures(&smoke_run(&["--tls"])?)
}

/// `--tls --link-mbit`: the same with nfsd in a network namespace behind a
/// shaped veth link (needs root, as CI runs).
#[test]
fn tls_bench_over_a_shaped_link_reports_every_figure() -> Result<()> {
    let report = smoke_run(&["--tls", "--link-mbit", "1000"])?;
    ensure!(
        report.contains("shaped to 1000 Mbit/s"),
        "the report does not name the link:\n{report}"
    );
    ensure_tls_figures(&report)
}

fn ensure_tls_figures(report: &str) -> Result<()> {
    ensure_columns(
        report,
        &[
            "seq write 1 MiB",
            "seq read 1 MiB",
            "rand read 4 KiB (1 job)",
            "rand read 4 KiB (4 jobs)",
        ],
        &[3, 4, 5],
    )?;
    ensure_columns(
        report,
        &["CPU per GiB moved (data scenarios)", "peak RSS (VmHWM)"],
        &[4, 5],
    )
}
