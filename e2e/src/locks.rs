//! What the kernel-client tests with a second client share: a second NFS
//! client on the host ("another node") over its own session with the server crate's test client, which
//! takes locks and opens, reads, appends to and closes a file.

use anyhow::{Context, Result, bail, ensure};
use openefs_nfs_wire::nfs4::attr::{Bitmap4, FATTR4_SIZE, FileAttrs};
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
/// client id and session, working on a file of the guest's: a write lock
/// on it, or reads and appends between an OPEN and a CLOSE.
pub struct OtherNode {
    rt: tokio::runtime::Runtime,
    client: Client,
    name: String,
    fh: NfsFh4,
    /// `None` after [`OtherNode::close`].
    open: Option<Stateid4>,
    lock: Option<Stateid4>,
}

/// The largest READ the host asks for (the session allows 1 MiB replies).
const READ_CHUNK: u32 = 256 * 1024;

impl OtherNode {
    /// Connects, creates a client and a session, and opens `name`.
    pub fn open(port: u16, name: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut client = rt.block_on(Client::connect(("127.0.0.1", port)))?;
        rt.block_on(client.establish(b"openefs-e2e-other-node"))?;
        let (fh, open) = open_file(&rt, &mut client, name)?;
        Ok(Self {
            fh,
            open: Some(open),
            name: name.to_owned(),
            rt,
            client,
            lock: None,
        })
    }

    /// OPENs the file again after [`OtherNode::close`], as a program's next
    /// open(2) would: the server's attributes, not a cache, are what counts.
    pub fn reopen(&mut self) -> Result<()> {
        ensure!(self.open.is_none(), "{} is still open", self.name);
        let (fh, open) = open_file(&self.rt, &mut self.client, &self.name)?;
        self.fh = fh;
        self.open = Some(open);
        self.lock = None;
        Ok(())
    }

    /// CLOSE: the open's state (and any lock of it) goes.
    pub fn close(&mut self) -> Result<()> {
        let open_stateid = self.open.take().context("not open")?;
        let close = ArgOp::Close(Close4Args {
            seqid: 0,
            open_stateid,
        });
        self.rt.block_on(
            self.client
                .compound(vec![ArgOp::Putfh(self.fh.clone()), close]),
        )?;
        self.lock = None;
        Ok(())
    }

    /// The file's size as the server has it now (GETATTR).
    pub fn size(&mut self) -> Result<u64> {
        let getattr = ArgOp::Getattr(Bitmap4::from_bits(&[FATTR4_SIZE]));
        let r = self.rt.block_on(
            self.client
                .compound(vec![ArgOp::Putfh(self.fh.clone()), getattr]),
        )?;
        let Some(ResOp::Getattr(Ok(fattr))) = r.get(1) else {
            bail!("GETATTR {}: {r:?}", self.name);
        };
        FileAttrs::decode(fattr)?
            .size
            .with_context(|| format!("GETATTR {}: no size", self.name))
    }

    /// The whole file, READ with the open stateid up to end of file.
    pub fn read_all(&mut self) -> Result<Vec<u8>> {
        let stateid = self.open.context("not open")?;
        let mut data = Vec::new();
        loop {
            let read = ArgOp::Read(Read4Args {
                stateid,
                offset: data.len() as u64,
                count: READ_CHUNK,
            });
            let r = self.rt.block_on(
                self.client
                    .compound(vec![ArgOp::Putfh(self.fh.clone()), read]),
            )?;
            let Some(ResOp::Read(Ok(got))) = r.get(1) else {
                bail!("READ {} at {}: {r:?}", self.name, data.len());
            };
            data.extend_from_slice(&got.data.0);
            if got.eof {
                return Ok(data);
            }
            ensure!(
                !got.data.0.is_empty(),
                "READ {} at {}: no data and no end of file",
                self.name,
                data.len()
            );
        }
    }

    /// Appends `bytes` as an NFS client does (NFSv4 has no append mode):
    /// GETATTR for the current size, then a WRITE there. Returns the offset
    /// written at.
    pub fn append(&mut self, bytes: &[u8]) -> Result<u64> {
        let offset = self.size()?;
        self.write_at(offset, bytes)?;
        Ok(offset)
    }

    /// A FILE_SYNC WRITE of all of `bytes` at `offset`.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let stateid = self.open.context("not open")?;
        let write = ArgOp::Write(Write4Args {
            stateid,
            offset,
            stable: StableHow::FileSync,
            data: Opaque(bytes.to_vec().into()),
        });
        let r = self.rt.block_on(
            self.client
                .compound(vec![ArgOp::Putfh(self.fh.clone()), write]),
        )?;
        let Some(ResOp::Write(Ok(w))) = r.get(1) else {
            bail!("WRITE {} at {offset}: {r:?}", self.name);
        };
        ensure!(
            w.count as usize == bytes.len(),
            "WRITE {} at {offset}: {} of {} bytes written",
            self.name,
            w.count,
            bytes.len()
        );
        Ok(())
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
                open_stateid: self.open.context("not open")?,
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

/// OPEN (no create) of `name` in the export root for reading and writing,
/// denying nothing; returns the file handle and the open stateid.
fn open_file(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    name: &str,
) -> Result<(NfsFh4, Stateid4)> {
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
    let (Some(ResOp::Open(Ok(opened))), Some(ResOp::Getfh(Ok(fh)))) = (r.get(1), r.get(2)) else {
        bail!("OPEN {name}: {r:?}");
    };
    Ok((fh.clone(), opened.stateid))
}
