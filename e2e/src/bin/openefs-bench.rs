//! openefs-bench: openefs-nfsd against nfs-ganesha, side by side in one run
//! (see `docs/benchmarks.md`). `make bench` builds nfsd in release mode and
//! passes it as `OPENEFS_NFSD`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use openefs_e2e::apiserver::repo_root;
use openefs_e2e::bench::{self, Options, Params};

/// Benchmarks openefs-nfsd and nfs-ganesha with the same client (fio's nfs
/// engine and a libnfs metadata tool, NFSv3) and prints a markdown table of
/// medians and nfsd ÷ ganesha ratios, with the machine's ceilings.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// A smoke run (seconds per scenario, small files, one repeat); the
    /// flags below still override its values.
    #[arg(long)]
    quick: bool,
    /// Seconds per fio run [default: 20, quick 3].
    #[arg(long, env = "OPENEFS_BENCH_RUNTIME")]
    runtime: Option<u64>,
    /// Runs per scenario and server; figures are medians [default: 3, quick 1].
    #[arg(long, env = "OPENEFS_BENCH_REPEATS")]
    repeats: Option<usize>,
    /// Size of the data file in MiB [default: 2048, quick 64].
    #[arg(long, env = "OPENEFS_BENCH_FILE_MIB")]
    file_mib: Option<u64>,
    /// Files of the metadata scenario [default: 10000, quick 500].
    #[arg(long, env = "OPENEFS_BENCH_META_FILES")]
    meta_files: Option<u64>,
    /// Where the exported directories live (a real disk: not a tmpfs /tmp)
    /// [default: <repo>/.cache/bench].
    #[arg(long, env = "OPENEFS_BENCH_DIR")]
    dir: Option<PathBuf>,
    /// Also write the report (markdown) to this file.
    #[arg(long, env = "OPENEFS_BENCH_OUTPUT")]
    output: Option<PathBuf>,
    /// Instead of the full comparison, compare nfsd's performance modes
    /// (generalPurpose, maxIO) with ganesha as the anchor: 4 KiB random
    /// read latency of one client, aggregate 4 KiB random IOPS of
    /// --many-jobs clients, and the metadata scenario.
    #[arg(long, env = "OPENEFS_BENCH_MODES")]
    modes: bool,
    /// Instead of the full comparison, compare encryption in transit: one
    /// nfsd with a TLS certificate, reached in plaintext, through
    /// `openefs-csi tls-proxy` (OPENEFS_CSI names the binary) and through
    /// stunnel4: 1 MiB sequential throughput, 4 KiB random read IOPS and
    /// p50 latency (1 job, the usual jobs, and 1 job with 16 calls in
    /// flight as the kernel client keeps), the tunnels' RSS and CPU per GiB.
    #[arg(long, env = "OPENEFS_BENCH_TLS", conflicts_with = "modes")]
    tls: bool,
    /// With --tls: run nfsd in a network namespace of its own behind a veth
    /// link shaped by tc's tbf to this many Mbit/s each way (e.g. 10000 for
    /// a 10 GbE network), so the wire bounds plaintext as on a real network;
    /// the client and the tunnels stay on the host. Needs root and iproute2;
    /// adds no delay (this kernel has no netem).
    #[arg(long, env = "OPENEFS_BENCH_LINK_MBIT", requires = "tls")]
    link_mbit: Option<u32>,
    /// Instead of the full comparison, compare encryption at rest: nfsd
    /// storing plaintext and nfsd encrypting contents (a KEK file, AES-256-XTS),
    /// each on its own export: 1 MiB sequential throughput, 4 KiB random
    /// write and read IOPS and p50 latency (1 job and the usual jobs), CPU
    /// per GiB and RSS.
    #[arg(long, env = "OPENEFS_BENCH_ENCRYPTION", conflicts_with_all = ["modes", "tls"])]
    encryption: bool,
    /// Concurrent clients of --modes' aggregate IOPS runs [default: 16].
    #[arg(long, env = "OPENEFS_BENCH_MANY_JOBS")]
    many_jobs: Option<u32>,
}

impl Cli {
    fn params(&self) -> Result<Params> {
        let mut p = if self.quick {
            Params::quick()
        } else {
            Params::full()
        };
        if let Some(s) = self.runtime {
            p.runtime = Duration::from_secs(s);
        }
        if let Some(r) = self.repeats {
            p.repeats = r;
        }
        if let Some(m) = self.file_mib {
            p.file_size = m << 20;
        }
        if let Some(n) = self.meta_files {
            p.meta_files = n;
        }
        if let Some(n) = self.many_jobs {
            p.many_jobs = n;
        }
        ensure!(p.runtime >= Duration::from_secs(1), "--runtime must be ≥ 1");
        ensure!(p.repeats >= 1, "--repeats must be ≥ 1");
        ensure!(p.file_size >= 1 << 20, "--file-mib must be ≥ 1");
        ensure!(p.meta_files >= 1, "--meta-files must be ≥ 1");
        ensure!(p.many_jobs >= 1, "--many-jobs must be ≥ 1");
        Ok(p)
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let params = cli.params()?;
    let dir = cli
        .dir
        .clone()
        .unwrap_or_else(|| repo_root().join(".cache/bench"));
    if std::env::var_os("OPENEFS_NFSD").is_none() {
        eprintln!(
            "bench: OPENEFS_NFSD is not set: benchmarking a debug build of openefs-nfsd \
             (`make bench` passes the release build)"
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let machine = bench::machine_description(&dir);
    eprintln!("bench: {machine}\nbench: {}", params.describe());
    let options = Options {
        params: params.clone(),
        dir: dir.clone(),
        link_mbit: cli.link_mbit,
    };
    let (outcome, table) = if cli.tls {
        if std::env::var_os("OPENEFS_CSI").is_none() {
            eprintln!(
                "bench: OPENEFS_CSI is not set: benchmarking a debug build of the tls-proxy \
                 (`make bench` passes the release build)"
            );
        }
        let outcome = bench::run_tls(&options)?;
        let path = match cli.link_mbit {
            Some(mbit) => format!(
                "nfsd in a network namespace behind a veth link shaped to {mbit} Mbit/s each way"
            ),
            None => "all on loopback".into(),
        };
        let table = format!(
            "TLS: openefs-csi tls-proxy vs stunnel4 vs plaintext (one tunnel each; {path}):\n\n{}",
            outcome.table.markdown_tls()
        );
        (outcome, table)
    } else if cli.encryption {
        let outcome = bench::run_encryption(&options)?;
        let table = format!(
            "Encryption at rest: plain vs encrypted nfsd (target: encrypted ≥ {:.0} % of plain):\n\n{}",
            100.0 * bench::ENCRYPTION_TARGET_VS_PLAIN,
            outcome.table.markdown_encryption()
        );
        (outcome, table)
    } else if cli.modes {
        let outcome = bench::run_modes(&options)?;
        let table = format!(
            "Performance modes ({} jobs in the aggregate runs):\n\n{}",
            params.many_jobs,
            outcome.table.markdown_modes()
        );
        (outcome, table)
    } else {
        let outcome = bench::run(&options)?;
        let table = outcome.table.markdown();
        (outcome, table)
    };
    let config = if cli.encryption {
        String::new()
    } else if cli.tls {
        format!(
            "stunnel4 configuration (generated by e2e/src/stunnel.rs):\n\n```\n{}```\n",
            outcome.stunnel_config
        )
    } else {
        format!(
            "nfs-ganesha configuration (generated by e2e/src/ganesha.rs):\n\n```\n{}```\n",
            outcome.ganesha_config
        )
    };
    let report = format!(
        "Machine: {machine}; load average at the end: {}.\n\nParameters: {}.\n\n{}\n{config}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        params.describe(),
        table,
    );
    print!("{report}");
    if let Some(path) = &cli.output {
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
