//! fio, the standard storage benchmark, with its NFS engine (libnfs): built
//! from Debian's source package by `e2e/scripts/fio.sh` (Debian's binary has
//! no NFS engine) and run with `--output-format=json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::Deserialize;

use crate::apiserver::repo_root;
use crate::command::output_within;

/// The cached fio binary, built on first use (about a minute) by
/// `fio.sh prepare`, once per test process. `OPENEFS_FIO` names another
/// binary with the nfs engine.
pub fn binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("OPENEFS_FIO") {
        return Ok(PathBuf::from(path));
    }
    static PREPARED: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);
    let mut prepared = PREPARED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    prepared
        .get_or_insert_with(|| prepare().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn prepare() -> Result<PathBuf> {
    let script = repo_root().join("e2e/scripts/fio.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("prepare")
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        out.status.success(),
        "{} prepare failed: {}",
        script.display(),
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("FIO="))
        .map(PathBuf::from)
        .with_context(|| format!("{} printed no FIO= line", script.display()))
}

/// What fio reports, as far as the tests read it.
#[derive(Debug, Deserialize)]
pub struct Report {
    #[serde(rename = "fio version")]
    pub version: String,
    pub jobs: Vec<Job>,
}

#[derive(Debug, Deserialize)]
pub struct Job {
    pub jobname: String,
    /// The job's errno; fio sets it (e.g. `EILSEQ`) when verification fails.
    pub error: i32,
    pub read: Direction,
    pub write: Direction,
}

#[derive(Debug, Deserialize)]
pub struct Direction {
    pub io_bytes: u64,
    /// Bytes per second.
    pub bw_bytes: u64,
    pub iops: f64,
    /// Milliseconds.
    pub runtime: u64,
    /// Completion latency; absent from reports of directions that did no I/O
    /// in some fio versions.
    #[serde(default)]
    pub clat_ns: Option<Latency>,
}

impl Direction {
    pub fn mb_per_s(&self) -> f64 {
        self.bw_bytes as f64 / 1e6
    }

    /// The completion-latency percentile `p` (one of fio's
    /// `--percentile_list`, by default including 50 and 99) in µs.
    pub fn clat_percentile_us(&self, p: f64) -> Option<f64> {
        self.clat_ns
            .as_ref()?
            .percentile
            .iter()
            .find_map(|(k, ns)| {
                let key: f64 = k.parse().ok()?;
                ((key - p).abs() < 1e-6).then_some(ns / 1e3)
            })
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Latency {
    /// Percentile (fio's text, e.g. `"99.000000"`) → nanoseconds.
    #[serde(default)]
    pub percentile: BTreeMap<String, f64>,
}

/// A finished fio run: its exit status, its report when it wrote one, and
/// its stderr (where the engine and the verifier log failures).
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub report: Option<Report>,
    pub stderr: String,
}

impl Run {
    /// The report of a run that exited 0 with every job's error 0.
    pub fn ensure_ok(&self) -> Result<&Report> {
        let report = self
            .report
            .as_ref()
            .filter(|_| self.success)
            .with_context(|| format!("fio failed; stderr:\n{}", self.stderr))?;
        for job in &report.jobs {
            ensure!(
                job.error == 0,
                "fio job {} ended with error {}; stderr:\n{}",
                job.jobname,
                job.error,
                self.stderr
            );
        }
        Ok(report)
    }
}

/// Runs fio with `args` (job options as `--name=value`) in `work`, writing
/// the JSON report to a file there so nothing else fio prints can corrupt
/// it; fio also leaves its verify state files (`*-verify.state`, written
/// when verification fails) in its working directory.
pub fn run(args: &[String], work: &Path, timeout: Duration) -> Result<Run> {
    let fio = binary()?;
    let json = work.join("fio.json");
    let _ = std::fs::remove_file(&json);
    let out = output_within(
        Command::new(&fio)
            .current_dir(work)
            .args(args)
            .arg("--output-format=json")
            .arg(format!("--output={}", json.display())),
        timeout,
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = match std::fs::read(&json) {
        Ok(text) if !text.is_empty() => Some(parse(&text).with_context(|| {
            format!("parsing fio's report {}; stderr:\n{stderr}", json.display())
        })?),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!("reading {}: {e}", json.display()),
    };
    Ok(Run {
        success: out.status.success(),
        report,
        stderr,
    })
}

/// fio may put notes before the JSON object in its output file; the report
/// starts at the first `{` at the start of a line.
fn parse(text: &[u8]) -> Result<Report> {
    let start = text
        .iter()
        .enumerate()
        .position(|(i, &b)| b == b'{' && (i == 0 || text[i - 1] == b'\n'))
        .context("no JSON object in fio's output")?;
    Ok(serde_json::from_slice(&text[start..])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report_behind_notes() {
        let text = br#"note: both iodepth >= 1 and synchronous I/O engine are selected
{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "verify",
      "error" : 84,
      "read" : { "io_bytes" : 1048576, "bw_bytes" : 2000000, "iops" : 30.5, "runtime" : 512 },
      "write" : { "io_bytes" : 0, "bw_bytes" : 0, "iops" : 0.0, "runtime" : 0 }
    }
  ]
}
"#;
        let report = parse(text).unwrap();
        assert_eq!(report.version, "fio-3.33");
        assert_eq!(report.jobs[0].error, 84);
        assert_eq!(report.jobs[0].read.io_bytes, 1_048_576);
        assert!((report.jobs[0].read.mb_per_s() - 2.0).abs() < 1e-9);
        assert!(parse(b"fio: no JSON here\n").is_err());
        assert_eq!(report.jobs[0].read.clat_percentile_us(50.0), None);
    }

    #[test]
    fn reads_completion_latency_percentiles() {
        let report = parse(
            br#"{"fio version":"x","jobs":[{"jobname":"j","error":0,
            "read":{"io_bytes":4096,"bw_bytes":1,"iops":1,"runtime":1,
              "clat_ns":{"min":1,"percentile":{"50.000000":250880,"99.000000":1236992}}},
            "write":{"io_bytes":0,"bw_bytes":0,"iops":0,"runtime":0}}]}"#,
        )
        .unwrap();
        let read = &report.jobs[0].read;
        assert_eq!(read.clat_percentile_us(50.0), Some(250.88));
        assert_eq!(read.clat_percentile_us(99.0), Some(1236.992));
        assert_eq!(read.clat_percentile_us(99.9), None);
    }

    #[test]
    fn a_failed_job_is_not_ok() {
        let report = parse(
            br#"{"fio version":"x","jobs":[{"jobname":"j","error":84,
            "read":{"io_bytes":0,"bw_bytes":0,"iops":0,"runtime":0},
            "write":{"io_bytes":0,"bw_bytes":0,"iops":0,"runtime":0}}]}"#,
        )
        .unwrap();
        let run = Run {
            success: true,
            report: Some(report),
            stderr: "verify: bad header".into(),
        };
        let err = run.ensure_ok().unwrap_err().to_string();
        assert!(
            err.contains("error 84") && err.contains("bad header"),
            "{err}"
        );
    }
}
