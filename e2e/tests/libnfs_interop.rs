//! libnfs's tools (Debian `libnfs-utils`), a userspace NFS client nobody here
//! wrote, copying files both ways over NFSv3 with checksums, against
//! openefs-nfsd and, to prove the workload itself, nfs-ganesha.
//!
//! openefs-nfsd serves NFSv3 and MOUNT v3 on its one TCP port. NFSv4.0 is not
//! tried against it: it answers minor version 0 with NFS4ERR_MINOR_VERS_MISMATCH.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use openefs_e2e::ganesha::Ganesha;
use openefs_e2e::libnfs::{Entry, Libnfs, Server};
use openefs_e2e::nfsd::Nfsd;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Not a multiple of any block or transfer size, so a lost tail shows.
const LARGE: usize = 8 * 1024 * 1024 + 12_345;

fn sha256_file(path: &Path) -> Result<String> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(data)))
}

fn entry<'a>(listing: &'a [Entry], name: &str) -> Result<&'a Entry> {
    listing
        .iter()
        .find(|e| e.name == name)
        .with_context(|| format!("nfs-ls does not list {name}: {listing:?}"))
}

/// Up and back with `nfs-cp`, checked against the export directory itself;
/// `nfs-ls` sizes and types; `nfs-cat` of a file the host wrote.
fn copy_both_ways(server: &Server, export: &Path, server_name: &str) -> Result<()> {
    let tools = Libnfs::default();
    let local = tempfile::tempdir()?;
    let source = local.path().join("source.bin");
    let mut data = vec![0u8; LARGE];
    rand::rng().fill_bytes(&mut data);
    std::fs::write(&source, &data)?;
    let want = sha256_file(&source)?;

    let started = std::time::Instant::now();
    tools.upload(&source, server, "large.bin")?;
    let up = started.elapsed();
    ensure!(
        sha256_file(&export.join("large.bin"))? == want,
        "the export's copy differs from what nfs-cp sent"
    );

    let back = local.path().join("back.bin");
    let started = std::time::Instant::now();
    tools.download(server, "large.bin", &back)?;
    let down = started.elapsed();
    ensure!(
        sha256_file(&back)? == want,
        "nfs-cp brought back different data"
    );
    let mb = LARGE as f64 / 1e6;
    println!(
        "nfs-cp {mb:.1} MB over v3 against {server_name}: up {:.1} MB/s, down {:.1} MB/s",
        mb / up.as_secs_f64(),
        mb / down.as_secs_f64()
    );

    let small = b"written on the host, read over NFS\n";
    std::fs::write(export.join("small.txt"), small)?;
    std::fs::set_permissions(export.join("small.txt"), Permissions::from_mode(0o644))?;
    std::fs::create_dir(export.join("subdir"))?;
    ensure!(
        tools.cat(server, "small.txt")? == small,
        "nfs-cat returned other bytes than the host wrote"
    );

    let listing = tools.ls(server)?;
    let large = entry(&listing, "large.bin")?;
    ensure!(
        large.size == LARGE as u64 && large.mode.starts_with('-') && large.links == 1,
        "large.bin listed as {large:?}"
    );
    let small_entry = entry(&listing, "small.txt")?;
    ensure!(
        small_entry.size == small.len() as u64 && small_entry.mode == "-rw-r--r--",
        "small.txt listed as {small_entry:?}"
    );
    ensure!(
        entry(&listing, "subdir")?.mode.starts_with('d'),
        "subdir is not listed as a directory: {listing:?}"
    );
    ensure!(listing.len() == 3, "unexpected entries: {listing:?}");

    let missing = tools.cat(server, "missing.txt").unwrap_err();
    ensure!(
        format!("{missing:#}").contains("NOENT"),
        "nfs-cat of a missing file failed otherwise: {missing:#}"
    );
    Ok(())
}

#[test]
fn v3_copy_against_nfsd() -> Result<()> {
    let export = tempfile::tempdir()?;
    let logs = tempfile::tempdir()?;
    let nfsd = Nfsd::start(export.path(), logs.path().join("nfsd.log"))?;
    let server = Server::v3(nfsd.port(), nfsd.port());
    copy_both_ways(&server, export.path(), "openefs-nfsd").with_context(|| nfsd.log_tail())
}

#[test]
fn v3_copy_against_ganesha() -> Result<()> {
    let export = tempfile::tempdir()?;
    let ganesha = Ganesha::start_v3(export.path())?;
    let server = Server::v3(
        ganesha.port(),
        ganesha.mount_port().context("ganesha serves no MOUNT")?,
    );
    copy_both_ways(&server, export.path(), "nfs-ganesha").with_context(|| {
        format!(
            "--- ganesha log ---\n{}",
            std::fs::read_to_string(ganesha.log_path()).unwrap_or_default()
        )
    })
}

/// libnfs over NFSv4.0 as a read and metadata client (its 4.0 writes are not
/// relied on), against ganesha: proves the 4.0 URLs for the day openefs-nfsd
/// serves minor version 0.
#[test]
fn v4_0_read_against_ganesha() -> Result<()> {
    let export = tempfile::tempdir()?;
    let ganesha = Ganesha::start(export.path())?;
    let data = b"read over NFSv4.0 by libnfs\n";
    std::fs::write(export.path().join("v4.txt"), data)?;
    let server = Server::v4(ganesha.port());
    let tools = Libnfs::default();
    ensure!(tools.cat(&server, "v4.txt")? == data, "nfs-cat over 4.0");
    let listing = tools.ls(&server)?;
    let e = entry(&listing, "v4.txt")?;
    ensure!(e.size == data.len() as u64, "v4.txt listed as {e:?}");
    Ok(())
}
