//! COMPOUND: one loop over the operations with the position rules of
//! NFSv4.1 (SEQUENCE first, session-less ops alone), the slot reply cache,
//! and one table from operation to handler. NFSv4.0 COMPOUNDs go through
//! the same loop and table, with [`v40`]'s client lookup and owner seqids
//! around each operation instead of SEQUENCE.

mod v40;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use openefs_nfs_wire::nfs4::ops::{
    OPEN4_SHARE_ACCESS_WRITE, OpenFlag4, Sequence4Args, Sequence4ResOk,
};
use openefs_nfs_wire::nfs4::types::{SessionId4, Stateid4};
use openefs_nfs_wire::nfs4::*;
use openefs_nfs_wire::xdr::{Decoder, Encoder, XdrEncode};
use openefs_vfs::{FileHandle, Identity, Vfs, VfsResult};
use tracing::{Instrument, debug, debug_span};

use crate::metrics::Outcome;
use crate::ops;
use crate::rpc::Reply;
use crate::server::Server;
use crate::settings::Settings;
use crate::state::{ClientId, SlotUse};

pub enum CompoundReply {
    /// Encoded COMPOUND4res, as the chunks it was built from (READ data
    /// stays the buffer the file was read into).
    Results(Reply),
    /// The COMPOUND header itself was unreadable.
    GarbageArgs,
}

/// What one COMPOUND's operations share (RFC 8881 §16.2.3.1).
pub struct Ctx<'a> {
    pub server: &'a Server,
    /// The runtime settings when the COMPOUND arrived.
    pub settings: Arc<Settings>,
    pub identity: Identity,
    /// The COMPOUND's minor version, 0 or 1.
    pub minor: u32,
    /// Set by SEQUENCE (4.1), or per operation from its client id or
    /// stateid (4.0).
    pub client: Option<ClientId>,
    pub current_fh: Option<FileHandle>,
    pub saved_fh: Option<FileHandle>,
    pub current_stateid: Option<Stateid4>,
    pub saved_stateid: Option<Stateid4>,
}

impl Ctx<'_> {
    pub fn fh(&self) -> Result<&FileHandle, Nfs4Error> {
        self.current_fh.as_ref().ok_or(Nfs4Error::Nofilehandle)
    }

    pub fn saved(&self) -> Result<&FileHandle, Nfs4Error> {
        self.saved_fh.as_ref().ok_or(Nfs4Error::Restorefh)
    }

    /// The client of this COMPOUND's session (4.1) or of this operation's
    /// stateid (4.0).
    pub fn client(&self) -> Result<ClientId, Nfs4Error> {
        self.client.ok_or(if self.minor == 0 {
            Nfs4Error::BadStateid
        } else {
            Nfs4Error::OpNotInSession
        })
    }

    pub fn set_fh(&mut self, fh: FileHandle) {
        self.current_fh = Some(fh);
        // A new current filehandle has no current stateid (§16.2.3.1.2).
        self.current_stateid = None;
    }

    /// Replaces the special "current stateid" by the one the COMPOUND's
    /// earlier operation produced.
    pub fn resolve_stateid(&self, s: Stateid4) -> Result<Stateid4, Nfs4Error> {
        if s == Stateid4::CURRENT {
            return self.current_stateid.ok_or(Nfs4Error::BadStateid);
        }
        Ok(s)
    }

    /// Runs a blocking vfs call (which switches the thread's fsuid) on the
    /// blocking pool, as this COMPOUND's caller.
    pub async fn vfs<T, F>(&self, f: F) -> Result<T, Nfs4Error>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Vfs, &Identity) -> VfsResult<T> + Send + 'static,
    {
        match self.server.vfs_call(&self.identity, f).await {
            Some(r) => r.map_err(crate::errors::vfs_status),
            None => Err(Nfs4Error::Serverfault),
        }
    }
}

fn encode_res(res: &Compound4Res) -> Reply {
    let mut enc = Encoder::new();
    res.encode(&mut enc);
    enc.into_chunks()
}

/// Operations that may come without SEQUENCE, as the only operation.
fn allowed_without_sequence(op: &ArgOp) -> bool {
    matches!(
        op,
        ArgOp::ExchangeId(_)
            | ArgOp::CreateSession(_)
            | ArgOp::DestroySession(_)
            | ArgOp::BindConnToSession(_)
            | ArgOp::DestroyClientid(_)
    )
}

struct SlotInUse {
    session: SessionId4,
    slot: u32,
    seqid: u32,
    cache: bool,
    max_cached: u32,
}

pub async fn run_compound(
    server: &Server,
    settings: Arc<Settings>,
    identity: Identity,
    args: Bytes,
) -> CompoundReply {
    let args = match Compound4Args::decode(&mut Decoder::new(args)) {
        Ok(a) => a,
        Err(e) => {
            debug!(error = %e, "unreadable COMPOUND header");
            return CompoundReply::GarbageArgs;
        }
    };
    let tag = args.tag.clone();
    let bare = |status| {
        CompoundReply::Results(encode_res(&Compound4Res {
            status: Err(status),
            tag: tag.clone(),
            results: Vec::new(),
        }))
    };
    let minor = args.minorversion;
    if minor > 1 {
        return bare(Nfs4Error::MinorVersMismatch);
    }
    if args.declared_ops as usize > MAX_COMPOUND_OPS {
        // 4.0 has no TOO_MANY_OPS; RESOURCE is its answer to more than
        // the server will do in one COMPOUND.
        return bare(if minor == 0 {
            Nfs4Error::Resource
        } else {
            Nfs4Error::TooManyOps
        });
    }
    let mut ctx = Ctx {
        server,
        settings,
        identity,
        minor,
        client: None,
        current_fh: None,
        saved_fh: None,
        current_stateid: None,
        saved_stateid: None,
    };
    let declared = args.declared_ops;
    let mut results = Vec::with_capacity(args.ops.len());
    let mut slot = None;
    let mut failed = false;
    for (i, op) in args.ops.into_iter().enumerate() {
        let opnum = op.opnum();
        let name = op_name(opnum);
        let started = Instant::now();
        let res = match (i, op) {
            (_, op) if minor == 0 => {
                v40::execute(&mut ctx, op)
                    .instrument(debug_span!("op", name))
                    .await
            }
            (0, ArgOp::Sequence(a)) => match sequence(&mut ctx, &a, declared) {
                Ok((ok, SlotUse::Execute, max_cached)) => {
                    slot = Some(SlotInUse {
                        session: a.sessionid,
                        slot: a.slotid,
                        seqid: a.sequenceid,
                        cache: a.cachethis,
                        max_cached,
                    });
                    ResOp::Sequence(Ok(ok))
                }
                Ok((_, SlotUse::Replay(bytes), _)) => {
                    debug!(
                        slot = a.slotid,
                        seqid = a.sequenceid,
                        "replaying cached reply"
                    );
                    server
                        .metrics()
                        .op_done(name, Outcome::Replay, started.elapsed());
                    return CompoundReply::Results(vec![bytes]);
                }
                Err(e) => ResOp::Sequence(Err(e)),
            },
            (0, op) if !allowed_without_sequence(&op) => {
                ResOp::error(opnum, Nfs4Error::OpNotInSession)
            }
            (0, _) if declared > 1 => ResOp::error(opnum, Nfs4Error::NotOnlyOp),
            (_, ArgOp::Sequence(_)) => ResOp::error(opnum, Nfs4Error::SequencePos),
            (_, op) => {
                execute(&mut ctx, op)
                    .instrument(debug_span!("op", name))
                    .await
            }
        };
        let status = res.status();
        server.metadata_io(name);
        server
            .metrics()
            .op_done(name, status.into(), started.elapsed());
        results.push(res);
        if let Err(e) = status {
            debug!(op = name, status = %e, "operation failed");
            failed = true;
            break;
        }
    }
    if !failed && let Some(e) = &args.error {
        server
            .metrics()
            .op_done(op_name(e.resop), Outcome::Err(e.status), Default::default());
        results.push(e.result());
    }
    let body = encode_res(&Compound4Res::new(tag, results));
    if let Some(s) = slot {
        let len: usize = body.iter().map(Bytes::len).sum();
        // Only a reply the client asked to be cached is joined (a copy).
        let keep = s.cache && len <= s.max_cached as usize;
        server.state().finish_slot(
            &s.session,
            s.slot,
            s.seqid,
            keep.then(|| body.concat().into()),
        );
    }
    CompoundReply::Results(body)
}

/// SEQUENCE: the slot check and lease renewal. Also returns what to do
/// with the request and the session's cached-reply limit.
fn sequence(
    ctx: &mut Ctx<'_>,
    a: &Sequence4Args,
    ops: u32,
) -> Result<(Sequence4ResOk, SlotUse, u32), Nfs4Error> {
    let s = ctx
        .server
        .state()
        .sequence(&a.sessionid, a.slotid, a.sequenceid, ops)?;
    ctx.client = Some(s.client);
    let ok = Sequence4ResOk {
        sessionid: a.sessionid,
        sequenceid: a.sequenceid,
        slotid: a.slotid,
        highest_slotid: s.highest_slot,
        target_highest_slotid: s.highest_slot,
        status_flags: 0,
    };
    Ok((ok, s.slot_use, s.max_response_size_cached))
}

/// Operations refused under the read-only policy: those that change the
/// file system, and OPENs that create or could write (as knfsd answers
/// OPEN for write on a read-only export).
fn modifies(op: &ArgOp) -> bool {
    match op {
        ArgOp::Setattr(_)
        | ArgOp::Create(_)
        | ArgOp::Remove(_)
        | ArgOp::Rename(_)
        | ArgOp::Link(_)
        | ArgOp::Write(_) => true,
        ArgOp::Open(a) => {
            a.share_access & OPEN4_SHARE_ACCESS_WRITE != 0
                || matches!(a.openhow, OpenFlag4::Create(_))
        }
        _ => false,
    }
}

/// The operation table.
async fn execute(ctx: &mut Ctx<'_>, op: ArgOp) -> ResOp {
    use ops::{attr, dir, fh, io, lock, open, session, stateid};
    if ctx.settings.policy.read_only && modifies(&op) {
        return ResOp::error(op.opnum(), Nfs4Error::Rofs);
    }
    match op {
        ArgOp::ExchangeId(a) => ResOp::ExchangeId(session::exchange_id(ctx, a)),
        ArgOp::CreateSession(a) => ResOp::CreateSession(session::create_session(ctx, a)),
        ArgOp::DestroySession(a) => ResOp::DestroySession(session::destroy_session(ctx, a)),
        ArgOp::DestroyClientid(a) => {
            ResOp::DestroyClientid(session::destroy_clientid(ctx, a).await)
        }
        ArgOp::BindConnToSession(a) => {
            ResOp::BindConnToSession(session::bind_conn_to_session(ctx, a))
        }
        ArgOp::ReclaimComplete(a) => {
            ResOp::ReclaimComplete(session::reclaim_complete(ctx, a).await)
        }
        ArgOp::SecinfoNoName(a) => ResOp::SecinfoNoName(session::secinfo_no_name(ctx, a).await),
        ArgOp::Secinfo(a) => ResOp::Secinfo(session::secinfo(ctx, a).await),
        ArgOp::Putrootfh | ArgOp::Putpubfh => {
            let r = fh::putrootfh(ctx);
            if matches!(op, ArgOp::Putpubfh) {
                ResOp::Putpubfh(r)
            } else {
                ResOp::Putrootfh(r)
            }
        }
        ArgOp::Putfh(a) => ResOp::Putfh(fh::putfh(ctx, a)),
        ArgOp::Getfh => ResOp::Getfh(fh::getfh(ctx)),
        ArgOp::Savefh => ResOp::Savefh(fh::savefh(ctx)),
        ArgOp::Restorefh => ResOp::Restorefh(fh::restorefh(ctx)),
        ArgOp::Lookup(a) => ResOp::Lookup(fh::lookup(ctx, a).await),
        ArgOp::Lookupp => ResOp::Lookupp(fh::lookupp(ctx).await),
        ArgOp::Getattr(a) => ResOp::Getattr(attr::getattr(ctx, a).await),
        ArgOp::Setattr(a) => ResOp::Setattr(attr::setattr(ctx, a).await),
        ArgOp::Verify(a) => ResOp::Verify(attr::verify(ctx, a, true).await),
        ArgOp::Nverify(a) => ResOp::Nverify(attr::verify(ctx, a, false).await),
        ArgOp::Access(a) => ResOp::Access(attr::access(ctx, a).await),
        ArgOp::Create(a) => ResOp::Create(dir::create(ctx, a).await),
        ArgOp::Remove(a) => ResOp::Remove(dir::remove(ctx, a).await),
        ArgOp::Rename(a) => ResOp::Rename(dir::rename(ctx, a).await),
        ArgOp::Link(a) => ResOp::Link(dir::link(ctx, a).await),
        ArgOp::Readlink => ResOp::Readlink(dir::readlink(ctx).await),
        ArgOp::Readdir(a) => ResOp::Readdir(dir::readdir(ctx, a).await),
        ArgOp::Open(a) => ResOp::Open(open::open(ctx, a).await),
        ArgOp::OpenDowngrade(a) => ResOp::OpenDowngrade(open::open_downgrade(ctx, a)),
        ArgOp::Close(a) => ResOp::Close(open::close(ctx, a)),
        ArgOp::Read(a) => ResOp::Read(io::read(ctx, a).await),
        ArgOp::Write(a) => ResOp::Write(io::write(ctx, a).await),
        ArgOp::Commit(a) => ResOp::Commit(io::commit(ctx, a).await),
        ArgOp::TestStateid(a) => ResOp::TestStateid(stateid::test_stateid(ctx, a)),
        ArgOp::FreeStateid(a) => ResOp::FreeStateid(stateid::free_stateid(ctx, a)),
        ArgOp::Delegreturn(a) => ResOp::Delegreturn(stateid::delegreturn(ctx, a)),
        ArgOp::Lock(a) => ResOp::Lock(lock::lock(ctx, a)),
        ArgOp::Lockt(a) => ResOp::Lockt(lock::lockt(ctx, a).await),
        ArgOp::Locku(a) => ResOp::Locku(lock::locku(ctx, a)),
        // SEQUENCE is only ever handled as the first op, by the loop.
        ArgOp::Sequence(_) => ResOp::error(OP_SEQUENCE, Nfs4Error::SequencePos),
        // 4.0-only operations (RFC 8881 §18: NOTSUPP in 4.1), delegations,
        // named attributes, SSV, and the pNFS/4.2 operations.
        op @ (ArgOp::OpenConfirm(_)
        | ArgOp::Renew(_)
        | ArgOp::Setclientid(_)
        | ArgOp::SetclientidConfirm(_)
        | ArgOp::ReleaseLockowner(_)
        | ArgOp::Delegpurge(_)
        | ArgOp::Openattr(_)
        | ArgOp::BackchannelCtl(_)
        | ArgOp::GetDirDelegation(_)
        | ArgOp::SetSsv(_)
        | ArgOp::WantDelegation(_)
        | ArgOp::Unsupported(_)) => ResOp::error(op.opnum(), Nfs4Error::Notsupp),
    }
}

pub fn op_name(op: u32) -> &'static str {
    match op {
        OP_ACCESS => "ACCESS",
        OP_CLOSE => "CLOSE",
        OP_COMMIT => "COMMIT",
        OP_CREATE => "CREATE",
        OP_DELEGPURGE => "DELEGPURGE",
        OP_DELEGRETURN => "DELEGRETURN",
        OP_GETATTR => "GETATTR",
        OP_GETFH => "GETFH",
        OP_LINK => "LINK",
        OP_LOCK => "LOCK",
        OP_LOCKT => "LOCKT",
        OP_LOCKU => "LOCKU",
        OP_LOOKUP => "LOOKUP",
        OP_LOOKUPP => "LOOKUPP",
        OP_NVERIFY => "NVERIFY",
        OP_OPEN => "OPEN",
        OP_OPENATTR => "OPENATTR",
        OP_OPEN_CONFIRM => "OPEN_CONFIRM",
        OP_OPEN_DOWNGRADE => "OPEN_DOWNGRADE",
        OP_PUTFH => "PUTFH",
        OP_PUTPUBFH => "PUTPUBFH",
        OP_PUTROOTFH => "PUTROOTFH",
        OP_READ => "READ",
        OP_READDIR => "READDIR",
        OP_READLINK => "READLINK",
        OP_REMOVE => "REMOVE",
        OP_RENAME => "RENAME",
        OP_RENEW => "RENEW",
        OP_RESTOREFH => "RESTOREFH",
        OP_SAVEFH => "SAVEFH",
        OP_SECINFO => "SECINFO",
        OP_SETATTR => "SETATTR",
        OP_SETCLIENTID => "SETCLIENTID",
        OP_SETCLIENTID_CONFIRM => "SETCLIENTID_CONFIRM",
        OP_VERIFY => "VERIFY",
        OP_WRITE => "WRITE",
        OP_RELEASE_LOCKOWNER => "RELEASE_LOCKOWNER",
        OP_BACKCHANNEL_CTL => "BACKCHANNEL_CTL",
        OP_BIND_CONN_TO_SESSION => "BIND_CONN_TO_SESSION",
        OP_EXCHANGE_ID => "EXCHANGE_ID",
        OP_CREATE_SESSION => "CREATE_SESSION",
        OP_DESTROY_SESSION => "DESTROY_SESSION",
        OP_FREE_STATEID => "FREE_STATEID",
        OP_GET_DIR_DELEGATION => "GET_DIR_DELEGATION",
        OP_SECINFO_NO_NAME => "SECINFO_NO_NAME",
        OP_SEQUENCE => "SEQUENCE",
        OP_SET_SSV => "SET_SSV",
        OP_TEST_STATEID => "TEST_STATEID",
        OP_WANT_DELEGATION => "WANT_DELEGATION",
        OP_DESTROY_CLIENTID => "DESTROY_CLIENTID",
        OP_RECLAIM_COMPLETE => "RECLAIM_COMPLETE",
        op if is_known_unsupported(op) => "UNSUPPORTED",
        _ => "ILLEGAL",
    }
}
