//! Encryption at rest through the real Linux kernel NFS client (Debian's
//! kernel under qemu), in one boot: nfsd serves an export with a data key
//! wrapped by a key-encryption key (KEK) file, as a Kubernetes Secret gives
//! it. The guest writes known text and applies unaligned writes, holes and
//! truncates to a model and to the mount alike (`e2e/guest/encryption.sh`).
//! At its pauses the host checks what an attacker with the disk sees: no
//! file of the export contains the text, and sizes are the plaintext's; then
//! restarts nfsd (SIGKILL) and, later, rotates the KEK the way the operator
//! does (new key in the file, `RewrapDataKey` over the admin API, restart
//! with only the new key): the guest reads everything back each time.
//! Afterwards a wrong KEK and a missing one must keep nfsd from serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use openefs_admin_api::v1::admin_client::AdminClient;
use openefs_admin_api::v1::{Encryption, GetEncryptionRequest, RewrapDataKeyRequest};
use openefs_e2e::nfsd::Nfsd;
use openefs_e2e::qemu::{KernelClient, RunOptions, free_loopback_port};
use rand::RngCore;

const WORKLOAD: &str = include_str!("../guest/encryption.sh");
const MARKER: &str = "OPENEFS-PLAINTEXT-MARKER";
const TOKEN: &str = "encryption-test-token";

/// About 300 KiB of text in which every line carries [`MARKER`].
fn known_plaintext() -> Vec<u8> {
    (0..4000)
        .map(|i| format!("{MARKER} line {i:05} the quick brown fox jumps over the lazy dog\n"))
        .collect::<String>()
        .into_bytes()
}

fn write_kek(path: &Path) -> Result<()> {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    std::fs::write(path, key).with_context(|| format!("writing {}", path.display()))
}

/// Every regular file beneath `dir` (the raw backing bytes).
fn files_beneath(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                found.push(entry.path());
            }
        }
    }
    Ok(found)
}

/// What the disk shows: no file holds the marker, and the files the guest
/// wrote are there with their plaintext sizes (encryption preserves sizes).
fn check_disk(export: &Path, plain_len: u64) -> Result<()> {
    let files = files_beneath(export)?;
    ensure!(
        files.len() >= 2,
        "expected the guest's files, found {files:?}"
    );
    for file in &files {
        let raw = std::fs::read(file)?;
        ensure!(
            !raw.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "{} holds the plaintext on disk",
            file.display()
        );
    }
    let size = std::fs::metadata(export.join("plain.txt"))?.len();
    ensure!(
        size == plain_len,
        "plain.txt is {size} bytes on disk, {plain_len} written"
    );
    Ok(())
}

fn admin_call<T>(
    port: u16,
    call: impl AsyncFnOnce(&mut AdminClient<tonic::transport::Channel>) -> Result<T>,
) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut client = AdminClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .context("connecting to the admin API")?;
        call(&mut client).await
    })
}

fn authorized<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().expect("an ASCII token"),
    );
    request
}

fn get_encryption(port: u16) -> Result<Encryption> {
    admin_call(port, async |c| {
        Ok(c.get_encryption(authorized(GetEncryptionRequest {}))
            .await?
            .into_inner())
    })
}

/// A new KEK in the file (a Secret's new value), then the operator's
/// rotation: GetEncryption sees the new key id, RewrapDataKey stores the
/// data key wrapped by it.
fn rotate(port: u16, kek: &Path) -> Result<(String, String)> {
    let before = get_encryption(port)?;
    ensure!(before.enabled, "encryption is not enabled: {before:?}");
    ensure!(
        before.wrapping_key_id == before.current_key_id,
        "already rotated? {before:?}"
    );
    write_kek(kek)?;
    let seen = get_encryption(port)?;
    ensure!(
        seen.current_key_id != before.wrapping_key_id && !seen.current_key_id.is_empty(),
        "the new KEK is not seen: {seen:?}"
    );
    ensure!(seen.wrapping_key_id == before.wrapping_key_id);
    let after = admin_call(port, async |c| {
        Ok(c.rewrap_data_key(authorized(RewrapDataKeyRequest {}))
            .await?
            .into_inner())
    })?;
    ensure!(
        after.wrapping_key_id == seen.current_key_id && after.current_key_id == seen.current_key_id,
        "not rewrapped: {after:?}"
    );
    Ok((before.wrapping_key_id, after.wrapping_key_id))
}

#[test]
fn kernel_client_encrypted_at_rest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let export = dir.path().join("export");
    let state = dir.path().join("state");
    std::fs::create_dir(&export)?;
    let kek = dir.path().join("kek");
    write_kek(&kek)?;
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN)?;
    let admin_port = free_loopback_port()?;
    let log = dir.path().join("nfsd.log");
    let args = [
        "--state-dir".to_owned(),
        state.to_string_lossy().into_owned(),
        "--kek-file".to_owned(),
        kek.to_string_lossy().into_owned(),
        "--admin-listen".to_owned(),
        format!("127.0.0.1:{admin_port}"),
        "--admin-token-file".to_owned(),
        token.to_string_lossy().into_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut nfsd = Nfsd::start_with_args(&export, log.clone(), &args)?;
    let plain = known_plaintext();
    let plain_len = plain.len() as u64;
    let port = nfsd.port();
    let mut rotation = None;
    let mut on_pause = |name: &str| -> Result<()> {
        match name {
            "written" => {
                check_disk(&export, plain_len)?;
                nfsd.restart()
            }
            "rotated" => {
                rotation = Some(rotate(admin_port, &kek)?);
                check_disk(&export, 2 * plain_len)?;
                // Only the new KEK is there now: the restart unwraps with it.
                nfsd.restart()
            }
            other => bail!("unexpected pause {other}"),
        }
    };
    let opts = RunOptions {
        timeout: Duration::from_secs(240),
        files: vec![("plain.txt".into(), plain)],
        on_pause: Some(&mut on_pause),
        ..Default::default()
    };
    let out = KernelClient::run(port, WORKLOAD, opts);
    let out = out.with_context(|| nfsd.log_tail())?;
    println!(
        "encryption: guest ran {:.1} s; KEK rotated {:?}",
        out.elapsed.as_secs_f64(),
        rotation
    );
    out.ensure_ok(&[
        "write-known-plaintext",
        "tail-shorter-than-16",
        "unaligned-across-blocks",
        "write-past-eof-leaves-a-hole",
        "truncate-grows-with-a-hole",
        "write-inside-a-hole",
        "truncate-shrinks-mid-block",
        "truncate-leaves-a-3-byte-tail",
        "truncate-grows-a-short-tail",
        "aligned-blocks-past-eof",
        "pause-written",
        "after-restart-plaintext",
        "after-restart-edits",
        "write-after-restart",
        "pause-rotated",
        "after-rotation-plaintext",
        "after-rotation-edits",
    ])?;
    ensure!(out.metric("edits-size")? == 20480.0, "edits-size");
    check_disk(&export, 2 * plain_len)?;

    // Fail closed: with a wrong KEK, and without one, nfsd does not serve.
    nfsd.kill()?;
    write_kek(&kek)?;
    let refused = Nfsd::start_with_args(&export, dir.path().join("wrong.log"), &args);
    let message = format!(
        "{:#}",
        refused.err().context("nfsd served with a wrong KEK")?
    );
    let (_, wrapping) = rotation.context("no rotation")?;
    ensure!(
        message.contains(&wrapping),
        "the refusal does not name the data key's KEK {wrapping}: {message}"
    );
    std::fs::remove_file(&kek)?;
    let refused = Nfsd::start_with_args(&export, dir.path().join("missing.log"), &args);
    ensure!(refused.is_err(), "nfsd served without its KEK");
    Ok(())
}
