//! An access point through the real Linux kernel NFS client (Debian's kernel
//! under qemu), in one boot: the guest mounts `/ap/x` and checks the root
//! directory's creation from the creation info, the POSIX identity override
//! (root's files belong to the access point's user), the quota (`dd` past
//! `max-bytes` fails with EDQUOT, a remove makes room), that `..` and absolute
//! and relative symlinks lead nowhere outside, that the export mounted beside
//! it still acts as the caller; then the host removes the access point from
//! the config file and sends SIGHUP (its handles go stale at once), and adds
//! it back (served again, no restart). Then the file system policy, switched
//! the same way: root squash (root's files belong to the anonymous id, root
//! cannot write root's files), read-only (EROFS for changes, reads work),
//! and back. The workload is
//! `e2e/guest/access_points.sh`. Forged and out-of-scope handles cannot be
//! made from the guest's shell; the protocol test
//! `nfs-server/tests/access_points.rs` sends them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use openefs_e2e::nfsd::Nfsd;
use openefs_e2e::qemu::{KernelClient, RunOptions};

const WORKLOAD: &str = include_str!("../guest/access_points.sh");

const WITH_AP: &str = r#"
[[access-point]]
id = "x"
root-directory = "/teams/x"
posix-user = { uid = 1000, gid = 1000, secondary-gids = [2000] }
creation-info = { owner-uid = 1000, owner-gid = 1000, permissions = 0o750 }
max-bytes = 4194304
"#;

/// Sends SIGHUP and waits until the server logged the `n`th settings change.
fn reload(nfsd: &Nfsd, log: &Path, n: usize) -> Result<()> {
    let status = Command::new("kill")
        .args(["-HUP", &nfsd.pid().to_string()])
        .status()?;
    ensure!(status.success(), "kill -HUP failed");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches("applying settings").count() >= n {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "the server did not reload its settings\n{}",
        nfsd.log_tail()
    )
}

#[test]
fn kernel_client_access_point() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let export = dir.path().join("export");
    std::fs::create_dir(&export)?;
    std::fs::write(export.join("secret"), "root only")?;
    let config = dir.path().join("nfsd.toml");
    std::fs::write(&config, WITH_AP)?;
    let log = dir.path().join("nfsd.log");
    let config_arg = config.to_string_lossy().into_owned();
    let nfsd = Nfsd::start_with_args(&export, log.clone(), &["--config", &config_arg])?;
    let mut reloads = 0;
    let mut on_pause = |name: &str| -> Result<()> {
        match name {
            "remove-ap" => std::fs::write(&config, "")?,
            "add-ap" | "writable" => std::fs::write(&config, WITH_AP)?,
            // Top-level keys come before the access point table.
            "root-squash" => std::fs::write(&config, format!("root-squash = true\n{WITH_AP}"))?,
            "read-only" => std::fs::write(&config, format!("read-only = true\n{WITH_AP}"))?,
            other => bail!("unexpected pause {other}"),
        }
        reloads += 1;
        reload(&nfsd, &log, reloads)
    };
    let opts = RunOptions {
        export_path: "/ap/x".into(),
        timeout: Duration::from_secs(240),
        // Every lookup asks the server, so the removal is seen at once
        // rather than after the client's attribute cache times out.
        mount_options: "vers=4.1,lookupcache=none".into(),
        on_pause: Some(&mut on_pause),
        ..Default::default()
    };
    let out = KernelClient::run(nfsd.port(), WORKLOAD, opts).with_context(|| nfsd.log_tail())?;
    println!(
        "access point: guest ran {:.1} s, mounted at {:.1} s of its uptime",
        out.elapsed.as_secs_f64(),
        out.mounted_at.unwrap_or(f64::NAN)
    );
    out.ensure_ok(&[
        "root-created-from-creation-info",
        "created-as-posix-user",
        "mkdir-as-posix-user",
        "chown-to-root-refused",
        "dd-past-the-quota",
        "write-after-rm",
        "df-size-is-the-quota",
        "df-used-is-the-access-points",
        "absolute-symlink-resolves-nowhere",
        "relative-symlink-resolves-nowhere",
        "dotdot-leaves-the-mount-not-to-the-export",
        "dotdot-from-a-subdirectory",
        "mount-export",
        "export-sees-outside",
        "export-sees-ap-file",
        "ap-directory-lists-x",
        "export-acts-as-caller",
        "pause-remove-ap",
        "removed-ap-is-stale",
        "removed-ap-not-listed",
        "export-unaffected",
        "pause-add-ap",
        "mount-re-added-ap",
        "re-added-ap-serves",
        "pause-root-squash",
        "squashed-root-creates",
        "squashed-root-owns-as-anonymous",
        "squashed-root-cannot-write-roots-file",
        "pause-read-only",
        "read-only-refuses-create",
        "read-only-refuses-remove",
        "read-only-still-reads",
        "pause-writable",
        "writable-again",
        "writable-again-as-root",
    ])
    .with_context(|| nfsd.log_tail())?;
    // Checked on the server's side too: the guest's view could be its cache.
    let root = std::fs::metadata(export.join("teams/x"))?;
    ensure!(
        (root.uid(), root.gid(), root.mode() & 0o7777) == (1000, 1000, 0o750),
        "root directory is {}:{} {:o}",
        root.uid(),
        root.gid(),
        root.mode() & 0o7777
    );
    let squashed = std::fs::metadata(export.join("shared/squashed"))?;
    ensure!(
        (squashed.uid(), squashed.gid()) == (65534, 65534),
        "a file root created under root squash is {}:{}",
        squashed.uid(),
        squashed.gid()
    );
    ensure!(
        !export.join("shared/ro").exists(),
        "created while read-only"
    );
    let file = std::fs::metadata(export.join("teams/x/as-root"))?;
    ensure!(
        (file.uid(), file.gid()) == (1000, 1000),
        "file created through the access point is {}:{}",
        file.uid(),
        file.gid()
    );
    Ok(())
}
