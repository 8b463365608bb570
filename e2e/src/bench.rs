//! The benchmark behind `make bench` (binary `openefs-bench`): openefs-nfsd
//! and nfs-ganesha side by side in one run, on directories of the same file
//! system, through the same userspace client (libnfs, NFSv3) with the same
//! parameters, plus the machine's ceilings (loopback TCP, local disk) measured
//! in that run. Every figure is a median over repeats, and what is compared
//! is the same-run ratio, since the machines here are shared and noisy.
//!
//! Data path: fio's nfs engine ([`crate::fio`]). Metadata: `e2e/bench/nfs-meta.c`,
//! a small libnfs program (fio 3.33's nfs engine has no stat or unlink).
//! Memory and CPU of each server: sampled from `/proc/PID/{status,stat}`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use openefs_csi::tls_proxy::spec::{TunnelSpec, write as write_tunnel};

use crate::apiserver::repo_root;
use crate::command::output_within;
use crate::fio;
use crate::ganesha::Ganesha;
use crate::libnfs::Server;
use crate::netns::{NETNS_ADDR, ShapedLink};
use crate::nfsd::{Nfsd, TlsFiles};
use crate::qemu::free_loopback_port;
use crate::stunnel::{self, Stunnel};
use crate::tls_proxy::TlsProxy;

const GIB: f64 = (1u64 << 30) as f64;
/// The file every data scenario works on, in each server's export.
const DATA_FILE: &str = "bench.dat";

/// What one run measures, and how long.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Duration of each fio run (time-based).
    pub runtime: Duration,
    /// Runs of each scenario per server; figures are their medians.
    pub repeats: usize,
    /// Size of the data file (sequential and random I/O alike).
    pub file_size: u64,
    /// Concurrent clients (fio jobs, one libnfs connection each) of the
    /// random-I/O scenarios.
    pub jobs: u32,
    /// Calls each client keeps in flight on its connection in the
    /// random-I/O scenarios.
    pub iodepth: u32,
    /// Whether `--tls` adds its queued run ([`TLS_QUEUE_DEPTH`] calls in
    /// flight). Not in smoke runs: fio 3.33's nfs engine at depth has hung
    /// once (the CI smoke run over a 1 Gbit/s link through stunnel: the
    /// job in `poll` with its socket gone), and a smoke run must not.
    pub tls_queued_run: bool,
    /// Concurrent clients of the performance-mode comparison's aggregate
    /// IOPS runs ([`run_modes`]).
    pub many_jobs: u32,
    /// Files created, stat'ed and removed by the metadata scenario.
    pub meta_files: u64,
    /// Size of each of those files.
    pub meta_file_size: u64,
}

impl Params {
    /// The issue's parameters: 2 GiB file, ≥20 s per run, 3 repeats, 4 jobs,
    /// 10,000 files of 4 KiB.
    pub fn full() -> Self {
        Self {
            runtime: Duration::from_secs(20),
            repeats: 3,
            file_size: 2 << 30,
            jobs: 4,
            iodepth: 1,
            tls_queued_run: true,
            many_jobs: 16,
            meta_files: 10_000,
            meta_file_size: 4096,
        }
    }

    /// A smoke run of about a minute: proves every step works, measures little.
    pub fn quick() -> Self {
        Self {
            runtime: Duration::from_secs(3),
            repeats: 1,
            file_size: 64 << 20,
            jobs: 4,
            iodepth: 1,
            tls_queued_run: false,
            many_jobs: 16,
            meta_files: 500,
            meta_file_size: 4096,
        }
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        format!(
            "runtime {} s per fio run, {} repeat(s) (medians), data file {} MiB, \
             1 MiB sequential blocks (1 job), 4 KiB random blocks ({} jobs), iodepth 1, \
             metadata {} files of {} B",
            self.runtime.as_secs(),
            self.repeats,
            self.file_size >> 20,
            self.jobs,
            self.meta_files,
            self.meta_file_size
        )
    }
}

/// The data-path scenarios, each one fio run against one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    SeqWrite,
    SeqRead,
    RandWrite,
    RandRead,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::SeqWrite,
        Scenario::SeqRead,
        Scenario::RandWrite,
        Scenario::RandRead,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::SeqWrite => "seq write 1 MiB",
            Scenario::SeqRead => "seq read 1 MiB",
            Scenario::RandWrite => "rand write 4 KiB",
            Scenario::RandRead => "rand read 4 KiB",
        }
    }

    fn rw(self) -> &'static str {
        match self {
            Scenario::SeqWrite => "write",
            Scenario::SeqRead => "read",
            Scenario::RandWrite => "randwrite",
            Scenario::RandRead => "randread",
        }
    }

    fn is_write(self) -> bool {
        matches!(self, Scenario::SeqWrite | Scenario::RandWrite)
    }

    fn is_random(self) -> bool {
        matches!(self, Scenario::RandWrite | Scenario::RandRead)
    }

    /// fio's job options for this scenario against the export at `nfs_url`.
    /// Sequential runs keep one call in flight; random ones
    /// `params.iodepth`, which is 1 but in the TLS comparison's queued run:
    /// fio 3.33's nfs engine (libnfs 4.0) fails writes and verification
    /// with more in flight (docs/testing.md), so concurrency mostly comes
    /// from jobs, each with its own libnfs context and TCP connection.
    pub fn fio_args(self, nfs_url: &str, params: &Params) -> Vec<String> {
        let (bs, jobs, iodepth) = if self.is_random() {
            ("4k", params.jobs, params.iodepth)
        } else {
            ("1m", 1, 1)
        };
        let mut args = vec![
            format!("--name={}", self.rw()),
            "--ioengine=nfs".into(),
            format!("--nfs_url={nfs_url}"),
            format!("--filename={DATA_FILE}"),
            format!("--rw={}", self.rw()),
            format!("--bs={bs}"),
            format!("--size={}", params.file_size),
            format!("--numjobs={jobs}"),
            format!("--iodepth={iodepth}"),
            "--group_reporting".into(),
            "--time_based".into(),
            format!("--runtime={}s", params.runtime.as_secs().max(1)),
        ];
        if self.is_random() {
            // No coverage map: a time-based random run should not slow down
            // as the map fills.
            args.push("--norandommap".into());
        }
        args
    }
}

/// Which way a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// One figure, per server, one value per repeat.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub unit: &'static str,
    pub better: Better,
    pub nfsd: Vec<f64>,
    pub ganesha: Vec<f64>,
    /// nfsd in performance mode maxIO ([`run_modes`] only; `nfsd` is the
    /// default mode, generalPurpose).
    pub nfsd_max_io: Vec<f64>,
    /// nfsd through `openefs-csi tls-proxy` ([`run_tls`] only; `nfsd` is
    /// plaintext there).
    pub tls_proxy: Vec<f64>,
    /// nfsd through stunnel4 ([`run_tls`] only).
    pub stunnel: Vec<f64>,
    /// nfsd encrypting at rest ([`run_encryption`] only; `nfsd` is the
    /// same server without encryption).
    pub nfsd_encrypted: Vec<f64>,
}

impl Row {
    fn values(&self, side: Side) -> &Vec<f64> {
        match side {
            Side::Nfsd => &self.nfsd,
            Side::NfsdMaxIo => &self.nfsd_max_io,
            Side::Ganesha => &self.ganesha,
            Side::TlsProxy => &self.tls_proxy,
            Side::Stunnel => &self.stunnel,
            Side::NfsdEncrypted => &self.nfsd_encrypted,
        }
    }
}

/// The compared servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// openefs-nfsd in its default performance mode, generalPurpose.
    Nfsd,
    /// openefs-nfsd with `--performance-mode max-io`.
    NfsdMaxIo,
    Ganesha,
    /// openefs-nfsd through `openefs-csi tls-proxy` (TLS 1.3).
    TlsProxy,
    /// openefs-nfsd through stunnel4 in client mode (TLS 1.3).
    Stunnel,
    /// openefs-nfsd encrypting file contents at rest (`--kek-file`).
    NfsdEncrypted,
}

impl Side {
    pub fn label(self) -> &'static str {
        match self {
            Side::Nfsd => "openefs-nfsd",
            Side::NfsdMaxIo => "openefs-nfsd maxIO",
            Side::Ganesha => "nfs-ganesha",
            Side::TlsProxy => "nfsd via tls-proxy",
            Side::Stunnel => "nfsd via stunnel",
            Side::NfsdEncrypted => "openefs-nfsd encrypted",
        }
    }
}

/// All figures of a run, in the order they were first recorded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub rows: Vec<Row>,
    /// The machine's limits: (name, unit, value).
    pub ceilings: Vec<(String, &'static str, f64)>,
}

impl Table {
    pub fn record(&mut self, name: &str, unit: &'static str, better: Better, side: Side, v: f64) {
        let row = match self.rows.iter().position(|r| r.name == name) {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push(Row {
                    name: name.to_owned(),
                    unit,
                    better,
                    nfsd: Vec::new(),
                    ganesha: Vec::new(),
                    nfsd_max_io: Vec::new(),
                    tls_proxy: Vec::new(),
                    stunnel: Vec::new(),
                    nfsd_encrypted: Vec::new(),
                });
                self.rows.last_mut().expect("just pushed")
            }
        };
        match side {
            Side::Nfsd => row.nfsd.push(v),
            Side::NfsdMaxIo => row.nfsd_max_io.push(v),
            Side::Ganesha => row.ganesha.push(v),
            Side::TlsProxy => row.tls_proxy.push(v),
            Side::Stunnel => row.stunnel.push(v),
            Side::NfsdEncrypted => row.nfsd_encrypted.push(v),
        }
    }

    pub fn median(&self, name: &str, side: Side) -> Option<f64> {
        let row = self.rows.iter().find(|r| r.name == name)?;
        median(row.values(side))
    }

    /// The performance-mode report ([`run_modes`]): per figure the medians
    /// of nfsd generalPurpose, nfsd maxIO and ganesha, maxIO ÷
    /// generalPurpose, each mode ÷ ganesha, and who wins.
    pub fn markdown_modes(&self) -> String {
        let mut out = String::from(
            "| figure | unit | nfsd generalPurpose | nfsd maxIO | nfs-ganesha | \
             maxIO ÷ generalPurpose | generalPurpose ÷ ganesha | maxIO ÷ ganesha | best |\n\
             |---|---|--:|--:|--:|--:|--:|--:|---|\n",
        );
        let r = |a, b| ratio(a, b).map_or("–".into(), |r| format!("{r:.2}×"));
        for row in &self.rows {
            let [gp, max_io, g] =
                [Side::Nfsd, Side::NfsdMaxIo, Side::Ganesha].map(|side| median(row.values(side)));
            let best = [("generalPurpose", gp), ("maxIO", max_io), ("ganesha", g)]
                .into_iter()
                .filter_map(|(who, v)| Some((who, v?)))
                .reduce(|a, b| {
                    let b_better = match row.better {
                        Better::Higher => b.1 > a.1,
                        Better::Lower => b.1 < a.1,
                    };
                    if b_better { b } else { a }
                })
                .map_or("", |(who, _)| who);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {best} |",
                row.name,
                row.unit,
                fmt_opt(gp),
                fmt_opt(max_io),
                fmt_opt(g),
                r(max_io, gp),
                r(gp, g),
                r(max_io, g),
            );
        }
        out
    }

    /// The TLS report ([`run_tls`]): per figure the medians of plaintext,
    /// tls-proxy and stunnel, proxy ÷ stunnel and proxy ÷ plaintext, and
    /// for throughput figures (MB/s, IOPS) whether issue #9's targets are
    /// met: the proxy at least [`TLS_TARGET_VS_STUNNEL`] × stunnel and
    /// within 15 % of plaintext ([`TLS_TARGET_VS_PLAINTEXT`]).
    pub fn markdown_tls(&self) -> String {
        let mut out = String::from(
            "| figure | unit | plaintext | tls-proxy | stunnel | proxy ÷ stunnel | \
             proxy ÷ plaintext | targets |\n\
             |---|---|--:|--:|--:|--:|--:|---|\n",
        );
        let r = |a, b| ratio(a, b).map_or("–".into(), |r| format!("{r:.2}×"));
        for row in &self.rows {
            let [plain, proxy, stunnel] =
                [Side::Nfsd, Side::TlsProxy, Side::Stunnel].map(|side| median(row.values(side)));
            let targets = if matches!(row.unit, "MB/s" | "IOPS") {
                tls_targets(ratio(proxy, stunnel), ratio(proxy, plain))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {targets} |",
                row.name,
                row.unit,
                fmt_opt(plain),
                fmt_opt(proxy),
                fmt_opt(stunnel),
                r(proxy, stunnel),
                r(proxy, plain),
            );
        }
        out
    }

    /// The encryption-at-rest report ([`run_encryption`]): per figure the
    /// medians of plain and encrypted nfsd, encrypted ÷ plain, and for
    /// throughput figures (MB/s, IOPS) whether issue #11's target is met:
    /// encrypted at least [`ENCRYPTION_TARGET_VS_PLAIN`] × plain.
    pub fn markdown_encryption(&self) -> String {
        let mut out = String::from(
            "| figure | unit | plain | encrypted | encrypted ÷ plain | target |\n\
             |---|---|--:|--:|--:|---|\n",
        );
        for row in &self.rows {
            let [plain, encrypted] =
                [Side::Nfsd, Side::NfsdEncrypted].map(|side| median(row.values(side)));
            let vs_plain = ratio(encrypted, plain);
            let target = match (row.unit, vs_plain) {
                ("MB/s" | "IOPS", Some(r)) if r >= ENCRYPTION_TARGET_VS_PLAIN => "met",
                ("MB/s" | "IOPS", Some(_)) => "not met",
                _ => "",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {target} |",
                row.name,
                row.unit,
                fmt_opt(plain),
                fmt_opt(encrypted),
                vs_plain.map_or("–".into(), |r| format!("{r:.2}×")),
            );
        }
        out
    }

    /// The markdown report: one row per figure (medians, nfsd ÷ ganesha and
    /// who wins), then the ceilings and how close each server came to them.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| figure | unit | openefs-nfsd | nfs-ganesha | nfsd ÷ ganesha | better |\n\
             |---|---|--:|--:|--:|---|\n",
        );
        for row in &self.rows {
            let (n, g) = (median(&row.nfsd), median(&row.ganesha));
            let winner = match (n, g) {
                (Some(n), Some(g)) if n == g => "tie",
                (Some(n), Some(g)) if (n > g) == (row.better == Better::Higher) => "nfsd",
                (Some(_), Some(_)) => "ganesha",
                _ => "",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.name,
                row.unit,
                fmt_opt(n),
                fmt_opt(g),
                ratio(n, g).map_or("–".into(), |r| format!("{r:.2}×")),
                winner
            );
        }
        if !self.ceilings.is_empty() {
            out.push_str("\n| ceiling (same run) | unit | value |\n|---|---|--:|\n");
            for (name, unit, v) in &self.ceilings {
                let _ = writeln!(out, "| {name} | {unit} | {} |", fmt(*v));
            }
            if let Some(tcp) = self
                .ceilings
                .iter()
                .find(|c| c.0 == LOOPBACK_TCP)
                .map(|c| c.2)
            {
                for side in [Side::Nfsd, Side::Ganesha] {
                    if let Some(v) = self.median(Scenario::SeqRead.name(), side) {
                        let _ = writeln!(
                            out,
                            "| {} seq read ÷ loopback TCP | % | {:.0} |",
                            side.label(),
                            100.0 * v / tcp
                        );
                    }
                }
            }
        }
        out
    }
}

const LOOPBACK_TCP: &str = "loopback TCP (iperf3, 1 stream)";

/// Issue #11: encrypted throughput at least 70 % of plain.
pub const ENCRYPTION_TARGET_VS_PLAIN: f64 = 0.70;

/// Issue #9: the proxy's throughput at least 1.5 × stunnel's …
pub const TLS_TARGET_VS_STUNNEL: f64 = 1.5;
/// … and within 15 % of plaintext.
pub const TLS_TARGET_VS_PLAINTEXT: f64 = 0.85;

/// The targets cell of a throughput figure: each target met or not, or
/// unknown when a side has no figure.
fn tls_targets(vs_stunnel: Option<f64>, vs_plaintext: Option<f64>) -> String {
    let verdict = |r: Option<f64>, target: f64| match r {
        Some(r) if r >= target => "met",
        Some(_) => "NOT met",
        None => "unknown",
    };
    format!(
        "≥ {TLS_TARGET_VS_STUNNEL}× stunnel: {}; ≥ {TLS_TARGET_VS_PLAINTEXT}× plaintext: {}",
        verdict(vs_stunnel, TLS_TARGET_VS_STUNNEL),
        verdict(vs_plaintext, TLS_TARGET_VS_PLAINTEXT)
    )
}

/// The middle value (mean of the two middle ones for an even count); `None`
/// for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// nfsd ÷ ganesha, when both exist and the divisor is not zero.
pub fn ratio(nfsd: Option<f64>, ganesha: Option<f64>) -> Option<f64> {
    match (nfsd, ganesha) {
        (Some(n), Some(g)) if g != 0.0 => Some(n / g),
        _ => None,
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("–".into(), fmt)
}

/// Three significant digits or so, without scientific notation.
fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One phase line of `nfs-meta`'s output.
#[derive(Clone, Debug, PartialEq)]
pub struct MetaPhase {
    pub phase: String,
    pub ops: u64,
    pub seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl MetaPhase {
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
}

/// Parses `create ops=10000 seconds=4.2 p50_us=380.1 p99_us=910.0` lines.
pub fn parse_meta(text: &str) -> Result<Vec<MetaPhase>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let phase = words.next().context("empty line")?.to_owned();
            let mut field = |key: &str| -> Result<&str> {
                let word = words
                    .next()
                    .with_context(|| format!("nfs-meta line {line:?} lacks {key}"))?;
                word.strip_prefix(key)
                    .and_then(|w| w.strip_prefix('='))
                    .with_context(|| format!("nfs-meta line {line:?}: {word:?} is not {key}=…"))
            };
            let ops = field("ops")?.parse().context("ops")?;
            let seconds: f64 = field("seconds")?.parse().context("seconds")?;
            let p50_us = field("p50_us")?.parse().context("p50_us")?;
            let p99_us = field("p99_us")?.parse().context("p99_us")?;
            ensure!(seconds > 0.0, "nfs-meta line {line:?}: no time passed");
            Ok(MetaPhase {
                phase,
                ops,
                seconds,
                p50_us,
                p99_us,
            })
        })
        .collect()
}

/// `VmRSS` and `VmHWM` (peak) of a `/proc/PID/status` text, in KiB.
pub fn parse_status_memory(status: &str) -> Result<(u64, u64)> {
    let kib = |key: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .with_context(|| format!("no {key} line in /proc/PID/status"))?
            .trim()
            .parse()
            .with_context(|| format!("{key} value"))
    };
    Ok((kib("VmRSS:")?, kib("VmHWM:")?))
}

/// utime + stime (clock ticks) of a `/proc/PID/stat` line. The command name
/// (field 2) is in parentheses and may hold spaces and parentheses itself,
/// so fields are counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Result<u64> {
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no ')' in /proc/PID/stat")?;
    // After the name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .with_context(|| format!("/proc/PID/stat has no field {n}"))?
            .parse()
            .with_context(|| format!("/proc/PID/stat field {n}"))
    };
    Ok(get(14)? + get(15)?)
}

/// CPU seconds (user + system) `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ensure!(hz > 0, "sysconf(_SC_CLK_TCK) failed");
    Ok(parse_stat_ticks(&stat)? as f64 / hz as f64)
}

fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_status_memory(&status)
}

/// Samples a process's resident set every 250 ms on a thread of its own
/// until [`RssSampler::finish`].
struct RssSampler {
    pid: u32,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<u64>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok((rss, _)) = memory_kib(pid) {
                    samples.push(rss);
                }
                thread::sleep(Duration::from_millis(250));
            }
            samples
        });
        Self { pid, stop, thread }
    }

    /// (peak, steady) RSS in MiB: the kernel's high-water mark, and the
    /// median of the samples taken while the benchmark ran.
    fn finish(self) -> Result<(f64, f64)> {
        let (_, hwm) = memory_kib(self.pid)?;
        self.stop.store(true, Ordering::Relaxed);
        let samples = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the RSS sampler panicked"))?;
        let samples: Vec<f64> = samples.iter().map(|&k| k as f64 / 1024.0).collect();
        let steady = median(&samples).context("no RSS sample was taken")?;
        Ok((hwm as f64 / 1024.0, steady))
    }
}

/// A server under test: where its export is, how libnfs reaches it, and
/// what it has cost so far.
struct Target {
    side: Side,
    pid: u32,
    server: Server,
    export: PathBuf,
    rss: RssSampler,
    cpu_seconds: f64,
    bytes_moved: u64,
}

impl Target {
    fn new(side: Side, pid: u32, server: Server, export: PathBuf) -> Self {
        Self {
            side,
            pid,
            server,
            export,
            rss: RssSampler::start(pid),
            cpu_seconds: 0.0,
            bytes_moved: 0,
        }
    }
}

/// What the binary decided: parameters, where data goes, progress output.
pub struct Options {
    pub params: Params,
    /// Parent of the export directories and the local-disk ceiling's file.
    pub dir: PathBuf,
    /// [`run_tls`] only: put nfsd in a network namespace behind a link
    /// shaped to this many Mbit/s ([`crate::netns`]) instead of on loopback.
    pub link_mbit: Option<u32>,
}

impl Options {
    /// Creates [`Options::dir`], builds fio (with libnfs-dev installed)
    /// before anything is measured, and makes the run's scratch directory in
    /// `dir`, removed with everything in it when dropped.
    fn scratch(&self) -> Result<tempfile::TempDir> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let fio_binary = fio::binary()?;
        eprintln!("bench: fio {}", fio_binary.display());
        tempfile::tempdir_in(&self.dir).context("creating the scratch dir")
    }
}

/// The whole run's outcome.
pub struct Outcome {
    pub table: Table,
    /// The configuration ganesha ran with (empty in [`run_tls`]).
    pub ganesha_config: String,
    /// The configuration stunnel ran with ([`run_tls`] only).
    pub stunnel_config: String,
}

/// Runs everything: ceilings, data scenarios interleaved between the two
/// servers (so both see the same background load), metadata, memory and CPU.
pub fn run(opts: &Options) -> Result<Outcome> {
    let params = &opts.params;
    let scratch = opts.scratch()?;
    let meta_tool = build_meta_tool(&opts.dir)?;
    let mut table = Table::default();
    table.ceilings.push((
        LOOPBACK_TCP.into(),
        "MB/s",
        loopback_tcp_mb_per_s(params.runtime)?,
    ));
    let (write, read) = local_disk_mb_per_s(scratch.path(), params)?;
    table
        .ceilings
        .push(("local disk seq write".into(), "MB/s", write));
    table
        .ceilings
        .push(("local disk seq read".into(), "MB/s", read));
    for c in &table.ceilings {
        eprintln!("bench: ceiling {}: {:.0} {}", c.0, c.2, c.1);
    }

    let nfsd_export = scratch.path().join("nfsd-export");
    let ganesha_export = scratch.path().join("ganesha-export");
    for dir in [&nfsd_export, &ganesha_export] {
        std::fs::create_dir(dir)?;
        lay_out(&dir.join(DATA_FILE), params.file_size, scratch.path())?;
    }
    let nfsd = Nfsd::start(&nfsd_export, scratch.path().join("nfsd.log"))?;
    let ganesha = Ganesha::start_v3(&ganesha_export)?;
    let ganesha_config = ganesha.config()?;
    let mut targets = [
        Target::new(
            Side::Nfsd,
            nfsd.pid(),
            Server::v3(nfsd.port(), nfsd.port()),
            nfsd_export,
        ),
        Target::new(
            Side::Ganesha,
            ganesha.pid(),
            Server::v3(
                ganesha.port(),
                ganesha.mount_port().context("ganesha serves no MOUNT")?,
            ),
            ganesha_export,
        ),
    ];

    for repeat in 0..params.repeats {
        // Alternating who goes first evens out drifts in background load.
        let order: [usize; 2] = if repeat.is_multiple_of(2) {
            [0, 1]
        } else {
            [1, 0]
        };
        for scenario in Scenario::ALL {
            for &i in &order {
                data_phase(
                    &mut targets[i],
                    scenario,
                    params,
                    scratch.path(),
                    &mut table,
                )
                .with_context(|| format!("{} against {}", scenario.name(), targets[i].side.label()))
                .with_context(|| server_log(targets[i].side, &nfsd, &ganesha))?;
            }
        }
        for &i in &order {
            meta_phase(&targets[i], &meta_tool, params, &mut table)
                .with_context(|| format!("metadata against {}", targets[i].side.label()))
                .with_context(|| server_log(targets[i].side, &nfsd, &ganesha))?;
        }
    }

    for target in targets {
        record_costs(target, &mut table)?;
    }
    drop(nfsd);
    drop(ganesha);
    Ok(Outcome {
        table,
        ganesha_config,
        stunnel_config: String::new(),
    })
}

/// CPU per GiB moved and RSS of a target whose runs are over; then its
/// data file goes (the export holds gigabytes).
fn record_costs(target: Target, table: &mut Table) -> Result<()> {
    let side = target.side;
    let gib = target.bytes_moved as f64 / GIB;
    if gib > 0.0 {
        table.record(
            "CPU per GiB moved (data scenarios)",
            "CPU s/GiB",
            Better::Lower,
            side,
            target.cpu_seconds / gib,
        );
    }
    let (peak, steady) = target.rss.finish()?;
    table.record("peak RSS (VmHWM)", "MiB", Better::Lower, side, peak);
    table.record(
        "steady RSS (median sample)",
        "MiB",
        Better::Lower,
        side,
        steady,
    );
    let _ = std::fs::remove_file(target.export.join(DATA_FILE));
    Ok(())
}

/// The performance-mode comparison (`openefs-bench --modes`, issue #10):
/// nfsd in generalPurpose and in maxIO, with ganesha as the anchor, in one
/// run: 4 KiB random read latency of a lone client (1 job), aggregate 4 KiB
/// random read and write IOPS of `params.many_jobs` clients, and the
/// metadata scenario (its stat p50 is the per-operation latency of a
/// namespace call). The three take turns as in [`run`].
pub fn run_modes(opts: &Options) -> Result<Outcome> {
    let params = &opts.params;
    let scratch = opts.scratch()?;
    let meta_tool = build_meta_tool(&opts.dir)?;
    let export = |name: &str| -> Result<PathBuf> {
        let dir = scratch.path().join(name);
        std::fs::create_dir(&dir)?;
        lay_out(&dir.join(DATA_FILE), params.file_size, scratch.path())?;
        Ok(dir)
    };
    let (gp_export, max_io_export, ganesha_export) = (
        export("nfsd-gp-export")?,
        export("nfsd-maxio-export")?,
        export("ganesha-export")?,
    );
    let gp = Nfsd::start_with_args(
        &gp_export,
        scratch.path().join("nfsd-gp.log"),
        &["--performance-mode", "general-purpose"],
    )?;
    let max_io = Nfsd::start_with_args(
        &max_io_export,
        scratch.path().join("nfsd-maxio.log"),
        &["--performance-mode", "max-io"],
    )?;
    let ganesha = Ganesha::start_v3(&ganesha_export)?;
    let ganesha_config = ganesha.config()?;
    let nfsd_target = |side, nfsd: &Nfsd, export| {
        Target::new(
            side,
            nfsd.pid(),
            Server::v3(nfsd.port(), nfsd.port()),
            export,
        )
    };
    let mut targets = [
        nfsd_target(Side::Nfsd, &gp, gp_export),
        nfsd_target(Side::NfsdMaxIo, &max_io, max_io_export),
        Target::new(
            Side::Ganesha,
            ganesha.pid(),
            Server::v3(
                ganesha.port(),
                ganesha.mount_port().context("ganesha serves no MOUNT")?,
            ),
            ganesha_export,
        ),
    ];
    let log = |side| match side {
        Side::Nfsd => gp.log_tail(),
        Side::NfsdMaxIo => max_io.log_tail(),
        other => server_log(other, &gp, &ganesha),
    };
    let lone = Params {
        jobs: 1,
        ..params.clone()
    };
    let many = Params {
        jobs: params.many_jobs,
        ..params.clone()
    };
    let mut table = Table::default();
    for repeat in 0..params.repeats {
        // Each server goes first, second and third in turn.
        let order: Vec<usize> = (0..3).map(|i| (i + repeat) % 3).collect();
        for (scenario, p) in [
            (Scenario::RandRead, &lone),
            (Scenario::RandRead, &many),
            (Scenario::RandWrite, &many),
        ] {
            for &i in &order {
                let side = targets[i].side;
                fio_phase(&mut targets[i], scenario, p, scratch.path(), |dir| {
                    record_per_jobs(&mut table, side, scenario, p, dir)
                })
                .with_context(|| format!("{} against {}", scenario.name(), side.label()))
                .with_context(|| log(side))?;
            }
        }
        for &i in &order {
            let side = targets[i].side;
            meta_phase(&targets[i], &meta_tool, params, &mut table)
                .with_context(|| format!("metadata against {}", side.label()))
                .with_context(|| log(side))?;
        }
    }
    for target in targets {
        record_costs(target, &mut table)?;
    }
    drop((gp, max_io, ganesha));
    Ok(Outcome {
        table,
        ganesha_config,
        stunnel_config: String::new(),
    })
}

/// Records one fio run of [`run_modes`] and [`run_tls`]: MB/s of a
/// sequential scenario; IOPS and p50 latency of a random one, named with
/// its client count and, when above one, the calls each keeps in flight.
fn record_per_jobs(
    table: &mut Table,
    side: Side,
    scenario: Scenario,
    params: &Params,
    dir: &fio::Direction,
) {
    if !scenario.is_random() {
        table.record(
            scenario.name(),
            "MB/s",
            Better::Higher,
            side,
            dir.mb_per_s(),
        );
        return;
    }
    let jobs = match params.jobs {
        1 => "1 job".to_owned(),
        n => format!("{n} jobs"),
    };
    let name = match params.iodepth {
        1 => format!("{} ({jobs})", scenario.name()),
        n => format!("{} ({jobs}, {n} in flight)", scenario.name()),
    };
    table.record(&name, "IOPS", Better::Higher, side, dir.iops);
    if let Some(us) = dir.clat_percentile_us(50.0) {
        table.record(&format!("{name} p50"), "µs", Better::Lower, side, us);
    }
}

/// Calls in flight on the one connection of the TLS comparison's queued
/// run: the way the kernel client uses a connection (many RPCs at once,
/// up to its session's slots), where a tunnel carries several calls per
/// read and wake-up instead of one.
const TLS_QUEUE_DEPTH: u32 = 16;

/// The name nfsd's certificate is issued for, which the proxy and stunnel
/// verify.
const TLS_SERVER_NAME: &str = "fs-bench.openefs.test";

/// The TLS comparison (`openefs-bench --tls`, issue #9): one openefs-nfsd
/// with a certificate from a throwaway CA (plaintext still allowed), reached
/// by the same libnfs client three ways: plaintext to nfsd's port, through
/// `openefs-csi tls-proxy` (one tunnel), and through stunnel4 in client mode
/// (one tunnel, configured alike: [`crate::stunnel`]). 1 MiB sequential
/// write and read (1 job), 4 KiB random read of 1 job, of `params.jobs`
/// jobs and of 1 job with [`TLS_QUEUE_DEPTH`] calls in flight; the three
/// take turns as in [`run`]. The CPU and
/// memory figures are the tunnel process's (proxy or stunnel), not nfsd's.
pub fn run_tls(opts: &Options) -> Result<Outcome> {
    let params = &opts.params;
    let scratch = opts.scratch()?;
    let work = scratch.path();

    let pki_dir = work.join("tls");
    std::fs::create_dir(&pki_dir)?;
    let tls = TlsFiles::write(&pki_dir, "openefs bench CA", &[TLS_SERVER_NAME]);
    let ca_path = tls.ca_cert.clone();

    let export = work.join("nfsd-export");
    std::fs::create_dir(&export)?;
    lay_out(&export.join(DATA_FILE), params.file_size, work)?;
    // Dropped after nfsd (declared before it): the namespace must outlive
    // the server in it.
    let link = opts.link_mbit.map(ShapedLink::create).transpose()?;
    let nfsd_log = work.join("nfsd.log");
    let nfsd = match &link {
        Some(link) => Nfsd::start_with_tls_in(link.netns(), NETNS_ADDR, &export, nfsd_log, &tls)?,
        None => Nfsd::start_with_tls(&export, nfsd_log, &tls, &[])?,
    };
    let upstream = nfsd.endpoint().to_string();

    let tunnels = work.join("tunnels");
    std::fs::create_dir(&tunnels)?;
    let proxy_port = free_loopback_port()?;
    write_tunnel(
        &tunnels,
        "bench",
        &TunnelSpec {
            local_port: proxy_port,
            server: upstream.clone(),
            server_name: TLS_SERVER_NAME.into(),
            ca: ca_path.clone(),
            client_certificate: None,
        },
    )?;
    let mut proxy = TlsProxy::start(&tunnels, work.join("tls-proxy.log"))?;
    proxy.wait_for_tunnel(proxy_port)?;
    let stunnel_port = free_loopback_port()?;
    let stunnel = Stunnel::start(
        &stunnel::Tunnel {
            accept_port: stunnel_port,
            server: upstream,
            server_name: TLS_SERVER_NAME.into(),
            ca: ca_path,
        },
        work,
    )?;

    // nfsd serves MOUNT on its NFS port, so one forwarded port carries both.
    let via = |port| Server::v3(port, port);
    let mut targets = [
        Target::new(
            Side::Nfsd,
            nfsd.pid(),
            via(nfsd.port()).at(*nfsd.endpoint().ip()),
            export.clone(),
        ),
        Target::new(Side::TlsProxy, proxy.pid(), via(proxy_port), export.clone()),
        Target::new(Side::Stunnel, stunnel.pid(), via(stunnel_port), export),
    ];
    let log = |side| match side {
        Side::TlsProxy => format!("{}\n{}", proxy.log_tail(), nfsd.log_tail()),
        Side::Stunnel => format!("{}\n{}", stunnel.log_tail(), nfsd.log_tail()),
        _ => nfsd.log_tail(),
    };
    let lone = Params {
        jobs: 1,
        ..params.clone()
    };
    let queued = Params {
        jobs: 1,
        iodepth: TLS_QUEUE_DEPTH,
        ..params.clone()
    };
    let mut runs = vec![
        (Scenario::SeqWrite, params),
        (Scenario::SeqRead, params),
        (Scenario::RandRead, &lone),
        (Scenario::RandRead, params),
    ];
    if params.tls_queued_run {
        runs.push((Scenario::RandRead, &queued));
    }
    let mut table = take_turns(&mut targets, &runs, params.repeats, work, log)?;
    // Plaintext has no tunnel process: its CPU and memory (nfsd's) would
    // not compare with the tunnels'.
    let [plain, via_proxy, via_stunnel] = targets;
    plain.rss.finish()?;
    for target in [via_proxy, via_stunnel] {
        record_costs(target, &mut table)?;
    }
    let stunnel_config = std::fs::read_to_string(work.join("stunnel.conf"))?;
    drop((stunnel, proxy, nfsd));
    Ok(Outcome {
        table,
        ganesha_config: String::new(),
        stunnel_config,
    })
}

/// The encryption-at-rest comparison (`openefs-bench --encryption`, issue
/// #11): two nfsd, one storing plaintext and one encrypting contents with a
/// data key wrapped by a KEK file, each with its own export on the same
/// disk. 1 MiB sequential write and read (1 job), 4 KiB random write and
/// read of 1 job and of `params.jobs` jobs, taking turns as in [`run`]; the
/// CPU per GiB is nfsd's. The encrypted server's data file is laid out
/// through NFS: a file written beside nfsd would be plaintext, which it
/// refuses to serve.
pub fn run_encryption(opts: &Options) -> Result<Outcome> {
    let params = &opts.params;
    let scratch = opts.scratch()?;
    let work = scratch.path();

    let plain_export = work.join("plain-export");
    std::fs::create_dir(&plain_export)?;
    lay_out(&plain_export.join(DATA_FILE), params.file_size, work)?;
    let plain = Nfsd::start(&plain_export, work.join("nfsd-plain.log"))?;

    let encrypted_export = work.join("encrypted-export");
    std::fs::create_dir(&encrypted_export)?;
    let kek = work.join("kek");
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    std::fs::write(&kek, key)?;
    let state = work.join("encrypted-state");
    let encrypted = Nfsd::start_with_args(
        &encrypted_export,
        work.join("nfsd-encrypted.log"),
        &[
            "--kek-file",
            &kek.to_string_lossy(),
            "--state-dir",
            &state.to_string_lossy(),
        ],
    )?;
    let via = |nfsd: &Nfsd| Server::v3(nfsd.port(), nfsd.port());
    let layout = [
        "--name=layout".to_owned(),
        "--ioengine=nfs".into(),
        format!("--nfs_url={}", via(&encrypted).root_url()),
        format!("--filename={DATA_FILE}"),
        "--rw=write".into(),
        "--bs=1m".into(),
        format!("--size={}", params.file_size),
    ];
    fio::run(&layout, work, Duration::from_secs(900))?
        .ensure_ok()
        .with_context(|| encrypted.log_tail())?;

    let mut targets = [
        Target::new(Side::Nfsd, plain.pid(), via(&plain), plain_export),
        Target::new(
            Side::NfsdEncrypted,
            encrypted.pid(),
            via(&encrypted),
            encrypted_export,
        ),
    ];
    let log = |side| match side {
        Side::NfsdEncrypted => encrypted.log_tail(),
        _ => plain.log_tail(),
    };
    let lone = Params {
        jobs: 1,
        ..params.clone()
    };
    let runs = [
        (Scenario::SeqWrite, params),
        (Scenario::SeqRead, params),
        (Scenario::RandWrite, &lone),
        (Scenario::RandWrite, params),
        (Scenario::RandRead, &lone),
        (Scenario::RandRead, params),
    ];
    let mut table = take_turns(&mut targets, &runs, params.repeats, work, log)?;
    for target in targets {
        record_costs(target, &mut table)?;
    }
    drop((plain, encrypted));
    Ok(Outcome {
        table,
        ganesha_config: String::new(),
        stunnel_config: String::new(),
    })
}

/// Runs each `(scenario, params)` of `runs` against every target,
/// `repeats` times, the targets taking turns at going first (so all see the
/// same background load); each run recorded by [`record_per_jobs`].
fn take_turns(
    targets: &mut [Target],
    runs: &[(Scenario, &Params)],
    repeats: usize,
    work: &Path,
    log: impl Fn(Side) -> String,
) -> Result<Table> {
    let mut table = Table::default();
    let n = targets.len();
    for repeat in 0..repeats {
        let order: Vec<usize> = (0..n).map(|i| (i + repeat) % n).collect();
        for &(scenario, p) in runs {
            for &i in &order {
                let side = targets[i].side;
                fio_phase(&mut targets[i], scenario, p, work, |dir| {
                    record_per_jobs(&mut table, side, scenario, p, dir)
                })
                .with_context(|| format!("{} against {}", scenario.name(), side.label()))
                .with_context(|| log(side))?;
            }
        }
    }
    Ok(table)
}

/// The log of the server a failed step ran against, for its error.
fn server_log(side: Side, nfsd: &Nfsd, ganesha: &Ganesha) -> String {
    match side {
        Side::Nfsd | Side::NfsdMaxIo | Side::TlsProxy | Side::Stunnel | Side::NfsdEncrypted => {
            nfsd.log_tail()
        }
        Side::Ganesha => format!(
            "--- ganesha log ---\n{}",
            std::fs::read_to_string(ganesha.log_path()).unwrap_or_default()
        ),
    }
}

fn data_phase(
    target: &mut Target,
    scenario: Scenario,
    params: &Params,
    work: &Path,
    table: &mut Table,
) -> Result<()> {
    let side = target.side;
    let name = scenario.name();
    fio_phase(target, scenario, params, work, |dir| {
        if scenario.is_random() {
            table.record(name, "IOPS", Better::Higher, side, dir.iops);
            for p in [50.0, 99.0] {
                if let Some(us) = dir.clat_percentile_us(p) {
                    table.record(
                        &format!("{name} latency p{p:.0} ({} jobs)", params.jobs),
                        "µs",
                        Better::Lower,
                        side,
                        us,
                    );
                }
            }
        } else {
            table.record(name, "MB/s", Better::Higher, side, dir.mb_per_s());
        }
    })
}

/// Runs one fio scenario against `target`, adds its CPU time and moved
/// bytes to the target's account, and hands fio's figures of the
/// direction that moved data to `record`.
fn fio_phase(
    target: &mut Target,
    scenario: Scenario,
    params: &Params,
    work: &Path,
    record: impl FnOnce(&fio::Direction),
) -> Result<()> {
    let args = scenario.fio_args(&target.server.root_url(), params);
    let cpu_before = cpu_seconds(target.pid)?;
    let run = fio::run(&args, work, params.runtime + Duration::from_secs(180))?;
    let cpu = cpu_seconds(target.pid)? - cpu_before;
    let report = run.ensure_ok()?;
    let job = report.jobs.first().context("fio reported no job")?;
    let dir = if scenario.is_write() {
        &job.write
    } else {
        &job.read
    };
    // fio exits 0 even when the engine cannot open the file; moved bytes
    // are what proves the run measured anything.
    ensure!(
        dir.io_bytes > 0,
        "fio moved no data; stderr:\n{}",
        run.stderr
    );
    target.cpu_seconds += cpu;
    target.bytes_moved += dir.io_bytes;
    record(dir);
    eprintln!(
        "bench: {:<18} {:<17} {:>2} job(s) {:>9.1} MB/s {:>9.0} IOPS  p50 {:>7.0} µs  p99 {:>7.0} µs  cpu {cpu:.1} s",
        target.side.label(),
        scenario.name(),
        if scenario.is_random() { params.jobs } else { 1 },
        dir.mb_per_s(),
        dir.iops,
        dir.clat_percentile_us(50.0).unwrap_or(f64::NAN),
        dir.clat_percentile_us(99.0).unwrap_or(f64::NAN),
    );
    Ok(())
}

fn meta_phase(target: &Target, tool: &Path, params: &Params, table: &mut Table) -> Result<()> {
    let out = output_within(
        Command::new(tool)
            .arg(target.server.root_url())
            .arg(params.meta_files.to_string())
            .arg(params.meta_file_size.to_string()),
        Duration::from_secs(600),
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "nfs-meta failed with {}; stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let phases = parse_meta(&stdout)?;
    ensure!(phases.len() == 3, "nfs-meta printed {stdout:?}");
    for p in &phases {
        ensure!(
            p.ops == params.meta_files,
            "nfs-meta {} did {} of {} ops",
            p.phase,
            p.ops,
            params.meta_files
        );
        let name = format!("metadata {}", p.phase);
        table.record(&name, "ops/s", Better::Higher, target.side, p.ops_per_s());
        table.record(
            &format!("{name} latency p50"),
            "µs",
            Better::Lower,
            target.side,
            p.p50_us,
        );
        table.record(
            &format!("{name} latency p99"),
            "µs",
            Better::Lower,
            target.side,
            p.p99_us,
        );
        eprintln!(
            "bench: {:<18} metadata {:<8} {:>7.0} ops/s  p50 {:>6.0} µs  p99 {:>6.0} µs",
            target.side.label(),
            p.phase,
            p.ops_per_s(),
            p.p50_us,
            p.p99_us
        );
    }
    Ok(())
}

/// Compiles `e2e/bench/nfs-meta.c` against libnfs into `dir`.
fn build_meta_tool(dir: &Path) -> Result<PathBuf> {
    let source = repo_root().join("e2e/bench/nfs-meta.c");
    let binary = dir.join("nfs-meta");
    let out = output_within(
        Command::new("cc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&binary)
            .arg(&source)
            .arg("-lnfs"),
        Duration::from_secs(120),
    )?;
    ensure!(
        out.status.success(),
        "compiling {} (needs cc and libnfs-dev): {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(binary)
}

/// Writes `size` bytes to `path` with fio's local engine, so the read and
/// random-write scenarios find a full file whatever the write speed.
fn lay_out(path: &Path, size: u64, work: &Path) -> Result<()> {
    let args = vec![
        "--name=layout".to_string(),
        "--ioengine=psync".into(),
        format!("--filename={}", path.display()),
        "--rw=write".into(),
        "--bs=1m".into(),
        format!("--size={size}"),
    ];
    fio::run(&args, work, Duration::from_secs(600))?.ensure_ok()?;
    Ok(())
}

/// Sequential write then read bandwidth (MB/s) of the benchmark's directory
/// with fio's local synchronous engine, buffered as both servers write.
fn local_disk_mb_per_s(dir: &Path, params: &Params) -> Result<(f64, f64)> {
    let file = dir.join("local.dat");
    let mut figures = [0.0; 2];
    for (i, rw) in ["write", "read"].into_iter().enumerate() {
        let args = vec![
            format!("--name=local-{rw}"),
            "--ioengine=psync".into(),
            format!("--filename={}", file.display()),
            format!("--rw={rw}"),
            "--bs=1m".into(),
            format!("--size={}", params.file_size),
            "--time_based".into(),
            format!("--runtime={}s", params.runtime.as_secs().max(1)),
        ];
        let run = fio::run(&args, dir, params.runtime + Duration::from_secs(300))?;
        let report = run.ensure_ok()?;
        let job = report.jobs.first().context("fio reported no job")?;
        figures[i] = if rw == "write" { &job.write } else { &job.read }.mb_per_s();
    }
    std::fs::remove_file(&file)?;
    Ok((figures[0], figures[1]))
}

/// The machine, for the report: CPU, memory, kernel, the benchmark
/// directory's file system, and the load average (the machine is shared).
pub fn machine_description(dir: &Path) -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    let fs = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cores} × {model}, {mem_gib:.0} GiB RAM, Linux {}, directory {} ({fs}), load average {}",
        read("/proc/sys/kernel/osrelease").trim(),
        dir.display(),
        read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// One iperf3 TCP stream over 127.0.0.1 for `runtime`, in MB/s.
fn loopback_tcp_mb_per_s(runtime: Duration) -> Result<f64> {
    let port = free_loopback_port()?;
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 (Debian package iperf3; make bench installs it)")?;
    let result = iperf3_client(port, runtime, &mut server);
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// Runs the client until the server answers: a plain connect as a readiness
/// probe would count as an aborted test and reset the next real one, so the
/// client itself is retried while the server starts up.
fn iperf3_client(port: u16, runtime: Duration, server: &mut Child) -> Result<f64> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let out = output_within(
            Command::new("iperf3")
                .args(["-J", "-c", "127.0.0.1", "-p"])
                .arg(port.to_string())
                .arg("-t")
                .arg(runtime.as_secs().max(1).to_string()),
            runtime + Duration::from_secs(60),
        )?;
        match parse_iperf3(&out.stdout) {
            Ok(mb_per_s) if out.status.success() => return Ok(mb_per_s),
            Ok(_) => bail!("iperf3 client failed with {}", out.status),
            Err(err) => {
                if let Some(status) = server.try_wait()? {
                    bail!("the iperf3 server exited with {status}; client: {err:#}");
                }
                if attempt == 10 {
                    return Err(err.context("iperf3 after 10 attempts"));
                }
                thread::sleep(Duration::from_millis(300));
            }
        }
    }
}

/// The receiver's rate from iperf3's JSON report, in MB/s.
pub fn parse_iperf3(json: &[u8]) -> Result<f64> {
    let report: serde_json::Value = serde_json::from_slice(json).context("iperf3's JSON")?;
    if let Some(error) = report.get("error").and_then(serde_json::Value::as_str) {
        bail!("iperf3: {error}");
    }
    let bits = report
        .pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .context("iperf3's report has no end.sum_received.bits_per_second")?;
    Ok(bits / 8e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
    }

    #[test]
    fn table_reports_medians_ratios_and_winners() {
        let mut t = Table::default();
        for (n, g) in [(100.0, 50.0), (300.0, 40.0), (200.0, 60.0)] {
            t.record("seq read 1 MiB", "MB/s", Better::Higher, Side::Nfsd, n);
            t.record("seq read 1 MiB", "MB/s", Better::Higher, Side::Ganesha, g);
        }
        t.record("peak RSS", "MiB", Better::Lower, Side::Nfsd, 40.0);
        t.record("peak RSS", "MiB", Better::Lower, Side::Ganesha, 20.0);
        t.ceilings.push((LOOPBACK_TCP.into(), "MB/s", 1000.0));
        assert_eq!(t.median("seq read 1 MiB", Side::Nfsd), Some(200.0));
        let md = t.markdown();
        assert!(
            md.contains("| seq read 1 MiB | MB/s | 200 | 50.0 | 4.00× | nfsd |"),
            "{md}"
        );
        assert!(
            md.contains("| peak RSS | MiB | 40.0 | 20.0 | 2.00× | ganesha |"),
            "{md}"
        );
        assert!(
            md.contains("| openefs-nfsd seq read ÷ loopback TCP | % | 20 |"),
            "{md}"
        );
        assert!(
            md.contains("| nfs-ganesha seq read ÷ loopback TCP | % | 5 |"),
            "{md}"
        );
    }

    #[test]
    fn mode_table_compares_both_modes_and_the_anchor() {
        let mut t = Table::default();
        let name = "rand read 4 KiB (1 job) p50";
        for (side, v) in [
            (Side::Nfsd, 100.0),
            (Side::NfsdMaxIo, 150.0),
            (Side::Ganesha, 80.0),
            (Side::Nfsd, 120.0),
        ] {
            t.record(name, "µs", Better::Lower, side, v);
        }
        t.record("x", "IOPS", Better::Higher, Side::NfsdMaxIo, 9.0);
        t.record("x", "IOPS", Better::Higher, Side::Nfsd, 3.0);
        let md = t.markdown_modes();
        assert!(
            md.contains(&format!(
                "| {name} | µs | 110 | 150 | 80.0 | 1.36× | 1.38× | 1.88× | ganesha |"
            )),
            "{md}"
        );
        assert!(
            md.contains("| x | IOPS | 3.00 | 9.00 | – | 3.00× | – | – | maxIO |"),
            "{md}"
        );
    }

    #[test]
    fn tls_table_compares_proxy_with_stunnel_and_plaintext_against_the_targets() {
        let mut t = Table::default();
        let seq = Scenario::SeqRead.name();
        for (side, v) in [
            (Side::Nfsd, 1000.0),
            (Side::TlsProxy, 900.0),
            (Side::Stunnel, 500.0),
            (Side::TlsProxy, 700.0),
        ] {
            t.record(seq, "MB/s", Better::Higher, side, v);
        }
        // 1.2× stunnel and 0.6× plaintext: both targets missed.
        for (side, v) in [
            (Side::Nfsd, 100.0),
            (Side::TlsProxy, 60.0),
            (Side::Stunnel, 50.0),
        ] {
            t.record("rand read 4 KiB (1 job)", "IOPS", Better::Higher, side, v);
        }
        t.record(
            "peak RSS (VmHWM)",
            "MiB",
            Better::Lower,
            Side::TlsProxy,
            12.0,
        );
        t.record("peak RSS (VmHWM)", "MiB", Better::Lower, Side::Stunnel, 6.0);
        t.record("only stunnel", "MB/s", Better::Higher, Side::Stunnel, 6.0);
        let md = t.markdown_tls();
        assert!(
            md.contains(&format!(
                "| {seq} | MB/s | 1000 | 800 | 500 | 1.60× | 0.80× | \
                 ≥ 1.5× stunnel: met; ≥ 0.85× plaintext: NOT met |"
            )),
            "{md}"
        );
        assert!(
            md.contains(
                "| rand read 4 KiB (1 job) | IOPS | 100 | 60.0 | 50.0 | 1.20× | 0.60× | \
                 ≥ 1.5× stunnel: NOT met; ≥ 0.85× plaintext: NOT met |"
            ),
            "{md}"
        );
        // Costs have no target; a missing side has no ratio and no verdict.
        assert!(
            md.contains("| peak RSS (VmHWM) | MiB | – | 12.0 | 6.00 | 2.00× | – |  |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| only stunnel | MB/s | – | – | 6.00 | – | – | \
                 ≥ 1.5× stunnel: unknown; ≥ 0.85× plaintext: unknown |"
            ),
            "{md}"
        );
    }

    #[test]
    fn a_figure_missing_on_one_side_has_no_ratio() {
        let mut t = Table::default();
        t.record("x", "IOPS", Better::Higher, Side::Nfsd, 7.0);
        assert!(t.markdown().contains("| x | IOPS | 7.00 | – | – |  |"));
    }

    #[test]
    fn random_rows_name_their_clients_and_calls_in_flight() {
        let dir = fio::Direction {
            io_bytes: 4096,
            bw_bytes: 4096,
            iops: 1.0,
            runtime: 1000,
            clat_ns: None,
        };
        let mut t = Table::default();
        let shape = |jobs, iodepth| Params {
            jobs,
            iodepth,
            ..Params::quick()
        };
        for p in [shape(1, 1), shape(4, 1), shape(1, 16)] {
            record_per_jobs(&mut t, Side::Nfsd, Scenario::RandRead, &p, &dir);
        }
        record_per_jobs(&mut t, Side::Nfsd, Scenario::SeqRead, &shape(1, 16), &dir);
        let names: Vec<&str> = t.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "rand read 4 KiB (1 job)",
                "rand read 4 KiB (4 jobs)",
                "rand read 4 KiB (1 job, 16 in flight)",
                "seq read 1 MiB",
            ]
        );
    }

    #[test]
    fn fio_args_follow_the_scenario() {
        let p = Params::quick();
        let seq = Scenario::SeqRead.fio_args("nfs://h/?version=3", &p);
        assert!(seq.contains(&"--bs=1m".to_string()), "{seq:?}");
        assert!(seq.contains(&"--numjobs=1".to_string()), "{seq:?}");
        assert!(seq.contains(&"--rw=read".to_string()), "{seq:?}");
        assert!(seq.contains(&"--runtime=3s".to_string()), "{seq:?}");
        assert!(!seq.contains(&"--norandommap".to_string()), "{seq:?}");
        let rand = Scenario::RandWrite.fio_args("nfs://h/", &p);
        assert!(rand.contains(&"--bs=4k".to_string()), "{rand:?}");
        assert!(rand.contains(&"--numjobs=4".to_string()), "{rand:?}");
        assert!(rand.contains(&"--iodepth=1".to_string()), "{rand:?}");
        assert!(rand.contains(&"--norandommap".to_string()), "{rand:?}");
        assert!(rand.contains(&"--nfs_url=nfs://h/".to_string()), "{rand:?}");
        let queued = Params {
            iodepth: 16,
            ..p.clone()
        };
        let queued_rand = Scenario::RandRead.fio_args("nfs://h/", &queued);
        assert!(
            queued_rand.contains(&"--iodepth=16".to_string()),
            "{queued_rand:?}"
        );
        let queued_seq = Scenario::SeqWrite.fio_args("nfs://h/", &queued);
        assert!(
            queued_seq.contains(&"--iodepth=1".to_string()),
            "{queued_seq:?}"
        );
    }

    #[test]
    fn parses_nfs_meta_output() {
        let phases = parse_meta(
            "create ops=10000 seconds=4.000000 p50_us=380.1 p99_us=910.0\n\
             stat ops=10000 seconds=2.5 p50_us=200.0 p99_us=400.5\n",
        )
        .unwrap();
        assert_eq!(phases.len(), 2);
        assert_eq!(phases[0].phase, "create");
        assert_eq!(phases[0].ops_per_s(), 2500.0);
        assert_eq!(phases[1].p99_us, 400.5);
        assert!(parse_meta("create ops=1 seconds=0 p50_us=1 p99_us=1").is_err());
        assert!(parse_meta("create ops=1 p50_us=1").is_err());
        assert!(parse_meta("create ops=x seconds=1 p50_us=1 p99_us=1").is_err());
    }

    #[test]
    fn parses_proc_status_memory() {
        let status =
            "Name:\tganesha.nfsd\nVmPeak:\t  900 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(parse_status_memory(status).unwrap(), (40960, 51200));
        assert!(parse_status_memory("Name:\tx\nVmRSS:\t1 kB\n").is_err());
    }

    #[test]
    fn parses_proc_stat_ticks_past_odd_names() {
        let stat = "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 9 0 100 1000 200 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat).unwrap(), 300);
        assert!(parse_stat_ticks("1234 (x) S 1").is_err());
        assert!(parse_stat_ticks("no paren").is_err());
    }

    #[test]
    fn own_process_cpu_is_readable() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        let (rss, hwm) = memory_kib(pid).unwrap();
        assert!(rss > 0 && hwm >= rss, "{rss} {hwm}");
    }

    #[test]
    fn parses_iperf3_receiver_rate() {
        let json = br#"{"end":{"sum_sent":{"bits_per_second":9e10},
            "sum_received":{"bits_per_second":8e10}}}"#;
        assert_eq!(parse_iperf3(json).unwrap(), 10_000.0);
        let err = parse_iperf3(br#"{"error":"unable to connect"}"#).unwrap_err();
        assert!(err.to_string().contains("unable to connect"), "{err}");
        assert!(parse_iperf3(br#"{"end":{}}"#).is_err());
    }
}
