//! `flock` from the real Linux kernel NFS client (Debian's kernel under
//! qemu) against `openefs-nfsd`: exclusive and shared locks between two
//! lock owners of one client, a refused non-blocking request, a blocking
//! one that waits for the release; then against a second client (the host,
//! over loopback with the wire crate's client) whose lock the server alone
//! enforces, and which is dropped when that client's lease runs out. The
//! workload is `e2e/guest/locks.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use openefs_e2e::nfsd::Nfsd;
use openefs_e2e::qemu::{KernelClient, RunOptions};
use openefs_nfs_wire::nfs4::ops::*;
use openefs_nfs_wire::nfs4::types::*;
use openefs_nfs_wire::nfs4::{ArgOp, ResOp};
use openefs_nfs_wire::xdr::Opaque;
use openefs_nfsd::client::Client;

const LOCKS: &str = include_str!("../guest/locks.sh");
/// The shortest lease nfsd accepts, so the expiry step is quick.
const LEASE_S: u64 = 10;

/// The second client: the host, as another node would be, holding a write
/// lock on the guest's file over its own session.
struct OtherNode {
    rt: tokio::runtime::Runtime,
    client: Client,
    fh: NfsFh4,
    open: Stateid4,
    lock: Option<Stateid4>,
}

impl OtherNode {
    /// Connects, creates a client and a session, and opens `name`.
    fn open(port: u16, name: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut client = rt.block_on(Client::connect(("127.0.0.1", port)))?;
        rt.block_on(client.establish(b"openefs-e2e-other-node"))?;
        let clientid = client.clientid.context("no client id")?;
        let open = ArgOp::Open(Open4Args {
            seqid: 0,
            share_access: OPEN4_SHARE_ACCESS_BOTH,
            share_deny: OPEN4_SHARE_DENY_NONE,
            owner: StateOwner4 {
                clientid,
                owner: Opaque::from("other-node-open"),
            },
            openhow: OpenFlag4::NoCreate,
            claim: OpenClaim4::Null(Utf8Str::from(name)),
        });
        let r = rt.block_on(client.compound(vec![ArgOp::Putrootfh, open, ArgOp::Getfh]))?;
        let (Some(ResOp::Open(Ok(opened))), Some(ResOp::Getfh(Ok(fh)))) = (r.get(1), r.get(2))
        else {
            bail!("OPEN {name}: {r:?}");
        };
        Ok(Self {
            fh: fh.clone(),
            open: opened.stateid,
            rt,
            client,
            lock: None,
        })
    }

    /// A write lock on the whole file.
    fn lock(&mut self) -> Result<()> {
        let clientid = self.client.clientid.context("no client id")?;
        let locker = match self.lock {
            Some(lock_stateid) => Locker4::Exist(ExistLockOwner4 {
                lock_stateid,
                lock_seqid: 0,
            }),
            None => Locker4::New(OpenToLockOwner4 {
                open_seqid: 0,
                open_stateid: self.open,
                lock_seqid: 0,
                lock_owner: StateOwner4 {
                    clientid,
                    owner: Opaque::from("other-node-lock"),
                },
            }),
        };
        let lock = ArgOp::Lock(Lock4Args {
            locktype: LockType::Write,
            reclaim: false,
            offset: 0,
            length: u64::MAX,
            locker,
        });
        let r = self.rt.block_on(
            self.client
                .compound(vec![ArgOp::Putfh(self.fh.clone()), lock]),
        )?;
        let Some(ResOp::Lock(Lock4Res::Ok(stateid))) = r.get(1) else {
            bail!("LOCK: {r:?}");
        };
        self.lock = Some(*stateid);
        Ok(())
    }

    fn unlock(&mut self) -> Result<()> {
        let lock_stateid = self.lock.context("no lock to unlock")?;
        let unlock = ArgOp::Locku(Locku4Args {
            locktype: LockType::Write,
            seqid: 0,
            lock_stateid,
            offset: 0,
            length: u64::MAX,
        });
        let r = self.rt.block_on(
            self.client
                .compound(vec![ArgOp::Putfh(self.fh.clone()), unlock]),
        )?;
        let Some(ResOp::Locku(Ok(stateid))) = r.get(1) else {
            bail!("LOCKU: {r:?}");
        };
        self.lock = Some(*stateid);
        Ok(())
    }
}

/// util-linux's `flock` and what `ldd` says it loads, for the guest, whose
/// busybox has no flock applet (util-linux is essential in Debian, so it
/// is on every host that runs these tests).
struct GuestFlock {
    /// File name of the dynamic loader that runs it.
    loader: String,
    /// (name in the guest's /openefs/run, contents).
    files: Vec<(String, Vec<u8>)>,
}

fn flock_files() -> Result<GuestFlock> {
    let flock = PathBuf::from("/usr/bin/flock");
    let ldd = Command::new("ldd")
        .arg(&flock)
        .output()
        .context("running ldd")?;
    ensure!(
        ldd.status.success(),
        "ldd {}: {}",
        flock.display(),
        ldd.status
    );
    let mut paths = vec![flock];
    let mut loader = None;
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x…)"; the vdso has no file.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        if !line.contains("=>") {
            loader = Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
        }
        paths.push(PathBuf::from(path));
    }
    let loader = loader.context("ldd named no dynamic loader for flock")?;
    let files = paths
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .with_context(|| format!("no file name in {}", p.display()))?
                .to_string_lossy()
                .into_owned();
            let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Ok((name, data))
        })
        .collect::<Result<_>>()?;
    Ok(GuestFlock { loader, files })
}

#[test]
fn kernel_client_flock() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let export = dir.path().join("export");
    std::fs::create_dir(&export)?;
    let lease = format!("{LEASE_S}s");
    let nfsd = Nfsd::start_with_args(
        &export,
        dir.path().join("nfsd.log"),
        &["--lease-time", &lease],
    )?;
    let started = Instant::now();
    let flock = flock_files()?;
    let port = nfsd.port();
    let mut other: Option<OtherNode> = None;
    let mut on_pause = |name: &str| -> Result<()> {
        match (name, other.as_mut()) {
            ("host-locks", None) => {
                let mut node = OtherNode::open(port, "contended")?;
                node.lock()?;
                other = Some(node);
            }
            ("host-unlocks", Some(node)) => node.unlock()?,
            // After this the host sends nothing more: its lease runs out.
            ("host-locks-and-vanishes", Some(node)) => node.lock()?,
            (name, _) => bail!("unexpected pause {name}"),
        }
        Ok(())
    };
    let mut opts = RunOptions {
        timeout: Duration::from_secs(300),
        files: flock.files,
        on_pause: Some(&mut on_pause),
        ..Default::default()
    };
    opts.env.insert("FLOCK_LOADER".into(), flock.loader);
    let out = KernelClient::run(nfsd.port(), LOCKS, opts).with_context(|| nfsd.log_tail())?;
    let metric = |name: &str| out.metrics.get(name).map_or("?", String::as_str);
    println!(
        "flock: guest ran {:.1} s, whole test {:.1} s; blocking lock waited {} s; \
         lock of the vanished client (lease {LEASE_S} s) granted after {} s",
        out.elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        metric("blocking_wait_s"),
        metric("lease_wait_s"),
    );
    out.ensure_ok(&[
        "holder-locked",
        "exclusive-refuses-exclusive",
        "exclusive-refuses-shared",
        "blocking-granted",
        "blocking-waited-for-release",
        "free-after-release",
        "shared-with-shared",
        "shared-refuses-exclusive",
        "exclusive-after-shared",
        "write-under-lock",
        "pause-host-locks",
        "other-client-refuses-exclusive",
        "other-client-refuses-shared",
        "pause-host-unlocks",
        "free-after-other-client-unlocks",
        "pause-host-locks-and-vanishes",
        "granted-after-lease-expiry",
    ])
    .with_context(|| nfsd.log_tail())?;
    // Not before the lease could have run out (less the time the guest
    // took to get from the pause to its request).
    let waited = out.metric("lease_wait_s")?;
    ensure!(
        waited >= (LEASE_S - 3) as f64,
        "the vanished client's lock went after {waited} s, before its lease of {LEASE_S} s"
    );

    // The server granted, refused and released locks itself: the guest's
    // kernel did not fall back to anything local.
    let ops = |op, status| nfsd.operations(op, status);
    let granted = ops("LOCK", "NFS4_OK")?;
    let denied = ops("LOCK", "NFS4ERR_DENIED")?;
    let unlocked = ops("LOCKU", "NFS4_OK")?;
    println!("server: LOCK ok {granted}, LOCK denied {denied}, LOCKU ok {unlocked}");
    // Counted from locks.sh: 9 grants to the guest, 2 to the host; at least
    // 3 refusals (the two non-blocking requests against the host's lock and
    // the first poll of the blocking one); every guest lock released on
    // close, and the host's once.
    ensure!(
        granted >= 11,
        "server granted {granted} locks, expected at least 11"
    );
    ensure!(
        denied >= 3,
        "server refused {denied} locks, expected at least 3"
    );
    ensure!(
        unlocked >= 10,
        "server released {unlocked} locks, expected at least 10"
    );
    ensure!(
        ops("LOCK", "NFS4ERR_NOTSUPP")? == 0,
        "LOCK answered NOTSUPP"
    );
    ensure!(
        std::fs::read_to_string(export.join("data"))? == "under-lock\n",
        "host: data written under the lock differs"
    );
    Ok(())
}
