//! libnfs's tools (Debian `libnfs-utils`), a userspace NFS client nobody here
//! wrote, copying files both ways over NFSv3 with checksums, and reading
//! over NFSv4.0, against openefs-nfsd and, to prove the workload itself,
//! nfs-ganesha.
//!
//! openefs-nfsd serves NFSv3 and MOUNT v3 and NFSv4.0 on its one TCP port.
//! Over 4.0 libnfs is a read and metadata client only: its 4.0 writes failed
//! against nfs-ganesha with a client-side encoding error (libnfs 5.0.2).

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

    check_listing(&tools, server, ("small.txt", small.len(), "-rw-r--r--"))
}

/// The export holds `large.bin` (LARGE bytes), `subdir/` and one small file
/// (name, size, mode string): `nfs-ls` lists exactly these, and `nfs-cat`
/// of a missing file fails with NOENT.
fn check_listing(tools: &Libnfs, server: &Server, small: (&str, usize, &str)) -> Result<()> {
    let listing = tools.ls(server)?;
    let large = entry(&listing, "large.bin")?;
    ensure!(
        large.size == LARGE as u64 && large.mode.starts_with('-') && large.links == 1,
        "large.bin listed as {large:?}"
    );
    let (name, size, mode) = small;
    let small_entry = entry(&listing, name)?;
    ensure!(
        small_entry.size == size as u64 && small_entry.mode == mode,
        "{name} listed as {small_entry:?}"
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

/// libnfs over NFSv4.0 as a read and metadata client (its 4.0 writes are
/// not relied on): what the host wrote comes back through `nfs-cat` and
/// `nfs-cp` (with a checksum), and `nfs-ls` lists its sizes, modes and types
/// (Debian's libnfs has no `nfs-stat`; the long listing is that metadata).
fn read_over_v4_0(server: &Server, export: &Path, server_name: &str) -> Result<()> {
    let tools = Libnfs::default();
    let mut data = vec![0u8; LARGE];
    rand::rng().fill_bytes(&mut data);
    std::fs::write(export.join("large.bin"), &data)?;
    let want = format!("{:x}", Sha256::digest(&data));
    let small = b"read over NFSv4.0 by libnfs\n";
    std::fs::write(export.join("v4.txt"), small)?;
    std::fs::set_permissions(export.join("v4.txt"), Permissions::from_mode(0o640))?;
    std::fs::create_dir(export.join("subdir"))?;

    ensure!(tools.cat(server, "v4.txt")? == small, "nfs-cat over 4.0");
    let local = tempfile::tempdir()?;
    let back = local.path().join("back.bin");
    let started = std::time::Instant::now();
    tools.download(server, "large.bin", &back)?;
    let down = started.elapsed();
    ensure!(
        sha256_file(&back)? == want,
        "nfs-cp over 4.0 brought back different data"
    );
    println!(
        "nfs-cp {:.1} MB over 4.0 from {server_name}: {:.1} MB/s",
        LARGE as f64 / 1e6,
        LARGE as f64 / 1e6 / down.as_secs_f64()
    );

    check_listing(&tools, server, ("v4.txt", small.len(), "-rw-r-----"))
}

#[test]
fn v4_0_read_against_nfsd() -> Result<()> {
    let export = tempfile::tempdir()?;
    let logs = tempfile::tempdir()?;
    let nfsd = Nfsd::start(export.path(), logs.path().join("nfsd.log"))?;
    let server = Server::v4(nfsd.port());
    read_over_v4_0(&server, export.path(), "openefs-nfsd").with_context(|| nfsd.log_tail())?;
    // libnfs spoke 4.0 (it has no 4.1): a confirmed client id, no session.
    ensure!(
        nfsd.operations("SETCLIENTID_CONFIRM", "NFS4_OK")? > 0,
        "no successful SETCLIENTID_CONFIRM seen by the server"
    );
    ensure!(
        nfsd.operations("READ", "NFS4_OK")? > 0,
        "no successful 4.0 READ seen by the server"
    );
    Ok(())
}

/// The same reads against ganesha, which proves the workload.
#[test]
fn v4_0_read_against_ganesha() -> Result<()> {
    let export = tempfile::tempdir()?;
    let ganesha = Ganesha::start(export.path())?;
    let server = Server::v4(ganesha.port());
    read_over_v4_0(&server, export.path(), "nfs-ganesha").with_context(|| {
        format!(
            "--- ganesha log ---\n{}",
            std::fs::read_to_string(ganesha.log_path()).unwrap_or_default()
        )
    })
}
