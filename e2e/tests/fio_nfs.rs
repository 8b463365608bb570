//! fio's NFS engine (libnfs, NFSv3) writing a file and verifying it with
//! crc32c, against openefs-nfsd and nfs-ganesha. A second, verify-only run
//! over a file corrupted on the export proves the verification really reads
//! the server's data.
//!
//! fio is Debian's source built with `--enable-libnfs` by
//! `e2e/scripts/fio.sh` (cached in `.cache/fio`; about a minute the first time).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use openefs_e2e::fio;
use openefs_e2e::ganesha::Ganesha;
use openefs_e2e::libnfs::Server;
use openefs_e2e::nfsd::Nfsd;

const SIZE: u64 = 32 * 1024 * 1024;
const BLOCK: u64 = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(180);

fn job_args(server: &Server, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--name=verify".to_string(),
        "--ioengine=nfs".into(),
        format!("--nfs_url={}", server.root_url()),
        "--filename=fio.dat".into(),
        "--rw=write".into(),
        format!("--bs={BLOCK}"),
        format!("--size={SIZE}"),
        // fio 3.33's nfs engine misbehaves here with more than one I/O in
        // flight: failed RPCs, short verify reads, a sync it cannot queue.
        "--iodepth=1".into(),
        "--verify=crc32c".into(),
    ]
    .into();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn write_and_verify(server: &Server, export: &Path, server_name: &str) -> Result<()> {
    let work = tempfile::tempdir()?;
    let run = fio::run(&job_args(server, &[]), work.path(), TIMEOUT)?;
    let report = run.ensure_ok()?;
    let job = report.jobs.first().context("fio reported no job")?;
    // fio exits 0 even when the engine fails to open the file, so the byte
    // counts are what proves the job ran: all written, all read back.
    ensure!(
        job.write.io_bytes == SIZE && job.read.io_bytes == SIZE,
        "fio wrote {} and verified {} of {SIZE} bytes; stderr:\n{}",
        job.write.io_bytes,
        job.read.io_bytes,
        run.stderr
    );
    let on_disk = std::fs::metadata(export.join("fio.dat"))?.len();
    ensure!(on_disk == SIZE, "fio.dat is {on_disk} bytes on the export");
    println!(
        "{}: fio --ioengine=nfs (v3, {} KiB blocks, iodepth 1) against {server_name}: write {:.1} MB/s, verify read {:.1} MB/s",
        report.version,
        BLOCK / 1024,
        job.write.mb_per_s(),
        job.read.mb_per_s()
    );

    // Four bytes inside block 80's data (past its verify header), written
    // on the export directly: only a read from the server can notice.
    let corrupt_at = 80 * BLOCK + 100;
    OpenOptions::new()
        .write(true)
        .open(export.join("fio.dat"))?
        .write_all_at(b"XXXX", corrupt_at)?;
    let run = fio::run(
        &job_args(server, &["--verify_only=1"]),
        work.path(),
        TIMEOUT,
    )?;
    ensure!(
        run.ensure_ok().is_err(),
        "verification passed over a corrupted file"
    );
    ensure!(
        run.stderr.contains(&format!(
            "verify failed at file fio.dat offset {}",
            80 * BLOCK
        )),
        "fio did not name the corrupted block; stderr:\n{}",
        run.stderr
    );
    Ok(())
}

#[test]
fn fio_verify_over_v3_against_nfsd() -> Result<()> {
    let export = tempfile::tempdir()?;
    let logs = tempfile::tempdir()?;
    let nfsd = Nfsd::start(export.path(), logs.path().join("nfsd.log"))?;
    let server = Server::v3(nfsd.port(), nfsd.port());
    write_and_verify(&server, export.path(), "openefs-nfsd").with_context(|| nfsd.log_tail())
}

#[test]
fn fio_verify_over_v3_against_ganesha() -> Result<()> {
    let export = tempfile::tempdir()?;
    let ganesha = Ganesha::start_v3(export.path())?;
    let server = Server::v3(
        ganesha.port(),
        ganesha.mount_port().context("ganesha serves no MOUNT")?,
    );
    write_and_verify(&server, export.path(), "nfs-ganesha").with_context(|| {
        format!(
            "--- ganesha log ---\n{}",
            std::fs::read_to_string(ganesha.log_path()).unwrap_or_default()
        )
    })
}
