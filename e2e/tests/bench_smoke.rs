//! A smoke run of the benchmark driver (`openefs-bench`, docs/benchmarks.md)
//! with tiny parameters, so `make bench` cannot rot unnoticed: the driver
//! must finish and report a figure of both servers for every scenario. No
//! thresholds: the figures of a debug build on a shared machine mean nothing.
//!
//! Needs what `.ci/deps.sh` installs (nfs-ganesha, libnfs, iperf3) and fio
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

/// The nfsd and ganesha figures of table row `name` (`| name | unit | nfsd |
/// ganesha | ratio | better |`), if both are numbers.
fn figures(report: &str, name: &str) -> Option<(f64, f64)> {
    report.lines().find_map(|line| {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || cells[1] != name {
            return None;
        }
        Some((cells[3].parse().ok()?, cells[4].parse().ok()?))
    })
}

#[test]
fn bench_driver_reports_every_figure() -> Result<()> {
    // The work disk rather than a possibly-tmpfs /tmp, as the driver's default.
    let parent = repo_root().join(".cache");
    std::fs::create_dir_all(&parent)?;
    let dir = tempfile::tempdir_in(&parent)?;
    let output = dir.path().join("report.md");
    let run = Command::new(env!("CARGO_BIN_EXE_openefs-bench"))
        .args(["--quick", "--runtime", "1", "--repeats", "1"])
        .args(["--file-mib", "8", "--meta-files", "20"])
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
    for name in FIGURES {
        let (nfsd, ganesha) = figures(&report, name)
            .with_context(|| format!("no figures for {name:?} in the report:\n{report}"))?;
        ensure!(
            nfsd > 0.0 && ganesha > 0.0,
            "{name}: nfsd {nfsd}, ganesha {ganesha}"
        );
    }
    println!("{report}");
    Ok(())
}
