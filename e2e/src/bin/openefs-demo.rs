//! openefs-demo: the local end-to-end demo (`make demo`; see
//! `openefs_e2e::demo`). `make demo` builds openefs-nfsd and openefs-csi in
//! release mode and names them in `OPENEFS_NFSD` and `OPENEFS_CSI`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use openefs_e2e::apiserver::repo_root;
use openefs_e2e::demo::{self, Options};
use openefs_e2e::progress::Progress;

/// Shows openefs working end to end on this machine: openefs-nfsd with TLS
/// and an access point, the CSI node plugin and its tls-proxy in a qemu
/// guest running Debian's kernel, two pods writing and cross-checking
/// files. Needs root (nfsd and qemu's guest network).
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Where the export, certificates and logs go; its `export/` is
    /// emptied first [default: <repo>/.cache/demo].
    #[arg(long, env = "OPENEFS_DEMO_DIR")]
    dir: Option<PathBuf>,
    /// Parallel writers in each of the two pods [default: 4].
    #[arg(long, env = "OPENEFS_DEMO_WRITERS")]
    writers: Option<u32>,
    /// Files each writer writes [default: 8].
    #[arg(long, env = "OPENEFS_DEMO_FILES")]
    files: Option<u32>,
    /// Size of each file in KiB [default: 1024].
    #[arg(long, env = "OPENEFS_DEMO_FILE_KIB")]
    file_kib: Option<u64>,
    /// Hard limit for the guest's run, in seconds [default: 600].
    #[arg(long, env = "OPENEFS_DEMO_TIMEOUT")]
    timeout: Option<u64>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let dir = cli.dir.unwrap_or_else(|| repo_root().join(".cache/demo"));
    let standard = Options::standard(dir);
    let options = Options {
        writers_per_pod: cli.writers.unwrap_or(standard.writers_per_pod),
        files_per_writer: cli.files.unwrap_or(standard.files_per_writer),
        file_size: cli
            .file_kib
            .map_or(standard.file_size, |k| k.saturating_mul(1024)),
        timeout: cli.timeout.map_or(standard.timeout, Duration::from_secs),
        ..standard
    };
    for (var, what) in [
        ("OPENEFS_NFSD", "openefs-nfsd"),
        ("OPENEFS_CSI", "openefs-csi"),
    ] {
        if std::env::var_os(var).is_none() {
            eprintln!(
                "demo: {var} is not set: using a debug build of {what} (`make demo` passes the release build)"
            );
        }
    }
    println!(
        "openefs demo: nfsd (TLS, access point) ← tls-proxy ← kernel NFS client in qemu ← CSI node plugin, two pods\n"
    );
    let summary = demo::run(&options, &Progress::new())?;
    print!("{summary}");
    Ok(())
}
