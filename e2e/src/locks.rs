//! What the kernel-client lock tests share: util-linux's `flock` for the
//! guest, and a second NFS client on the host ("another node") that takes
//! locks over its own session with the server crate's test client.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use openefs_nfs_wire::nfs4::ops::*;
use openefs_nfs_wire::nfs4::types::*;
use openefs_nfs_wire::nfs4::{ArgOp, ResOp};
use openefs_nfs_wire::xdr::Opaque;
use openefs_nfsd::client::Client;

/// How a LOCK of the [`OtherNode`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    Granted,
    /// Refused for a conflicting lock of this client id.
    Denied {
        holder: ClientId4,
    },
}

/// The second client: the host, as another node would be, with its own
/// client id and session, holding a write lock on a file of the guest's.
pub struct OtherNode {
    rt: tokio::runtime::Runtime,
    client: Client,
    fh: NfsFh4,
    open: Stateid4,
    lock: Option<Stateid4>,
}

impl OtherNode {
    /// Connects, creates a client and a session, and opens `name`.
    pub fn open(port: u16, name: &str) -> Result<Self> {
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

    /// A write lock on the whole file; an error unless granted.
    pub fn lock(&mut self) -> Result<()> {
        match self.try_lock()? {
            LockOutcome::Granted => Ok(()),
            denied => bail!("LOCK: {denied:?}"),
        }
    }

    /// Asks for a write lock on the whole file once (no waiting).
    pub fn try_lock(&mut self) -> Result<LockOutcome> {
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
        let seq = self.client.sequence_op()?;
        let r = self.rt.block_on(
            self.client
                .compound_raw(1, vec![seq, ArgOp::Putfh(self.fh.clone()), lock]),
        )?;
        match r.results.get(2) {
            Some(ResOp::Lock(Lock4Res::Ok(stateid))) => {
                self.lock = Some(*stateid);
                Ok(LockOutcome::Granted)
            }
            Some(ResOp::Lock(Lock4Res::Denied(d))) => Ok(LockOutcome::Denied {
                holder: d.owner.clientid,
            }),
            _ => bail!("LOCK: {r:?}"),
        }
    }

    pub fn unlock(&mut self) -> Result<()> {
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
pub struct GuestFlock {
    /// File name of the dynamic loader that runs it.
    pub loader: String,
    /// (name in the guest's /openefs/run, contents).
    pub files: Vec<(String, Vec<u8>)>,
}

impl GuestFlock {
    pub fn from_host() -> Result<Self> {
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
        Ok(Self { loader, files })
    }
}
