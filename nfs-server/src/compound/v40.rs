//! The NFSv4.0 side of a COMPOUND (RFC 7530): no SEQUENCE and no session.
//! Each operation names its client by a client id or a stateid, which
//! renews that client's lease; requests of open and lock owners carry an
//! owner seqid, checked here around the shared 4.1 handler: the last
//! result of each owner is kept and sent again for a retransmission.

use openefs_nfs_wire::nfs4::ops::{Lock4Args, Lock4Res, Locker4};
use openefs_nfs_wire::nfs4::*;

use super::Ctx;
use crate::ops::{lock, open, session};
use crate::state::{OwnerKey, SeqidCheck};

/// The first operation number RFC 7530 does not define (BACKCHANNEL_CTL,
/// the first of 4.1's).
const FIRST_V41_OP: u32 = OP_BACKCHANNEL_CTL;

pub(super) async fn execute(ctx: &mut Ctx<'_>, op: ArgOp) -> ResOp {
    let opnum = op.opnum();
    // Operations of later minor versions are not in 4.0's table at all
    // (RFC 7530: an operation outside it is OP_ILLEGAL).
    if opnum >= FIRST_V41_OP {
        return ResOp::Other {
            op: OP_ILLEGAL,
            status: Nfs4Error::OpIllegal,
        };
    }
    ctx.client = None;
    if let Err(e) = identify(ctx, &op) {
        return ResOp::error(opnum, e);
    }
    let seq = owner_seqid(ctx, &op);
    if let Some((key, seqid)) = &seq {
        match ctx.server.state().check_owner_seqid(key, *seqid, opnum) {
            Ok(SeqidCheck::Execute) => {}
            Ok(SeqidCheck::Replay(res, fh)) => {
                if let Some(fh) = fh {
                    ctx.set_fh(fh);
                }
                return *res;
            }
            Err(e) => return ResOp::error(opnum, e.into()),
        }
    }
    // The lock owner is the open's client's, whatever client id the
    // request puts next to it (the state keys its locks the same way).
    let new_lock_owner = match (&op, ctx.client) {
        (
            ArgOp::Lock(Lock4Args {
                locker: Locker4::New(n),
                ..
            }),
            Some(client),
        ) => Some((
            OwnerKey {
                client,
                lock: true,
                owner: n.lock_owner.owner.as_bytes().to_vec(),
            },
            n.lock_seqid,
        )),
        _ => None,
    };
    let res = match op {
        ArgOp::Setclientid(a) => ResOp::Setclientid(session::setclientid(ctx, a)),
        ArgOp::SetclientidConfirm(a) => {
            ResOp::SetclientidConfirm(session::setclientid_confirm(ctx, a))
        }
        ArgOp::Renew(c) => ResOp::Renew(ctx.server.state().renew(c).map_err(Into::into)),
        ArgOp::OpenConfirm(a) => ResOp::OpenConfirm(open::open_confirm(ctx, a)),
        ArgOp::ReleaseLockowner(o) => ResOp::ReleaseLockowner(lock::release_lockowner(ctx, o)),
        op => super::execute(ctx, op).await,
    };
    if let Some((key, seqid)) = seq {
        // A replayed OPEN must leave the opened file as the current
        // filehandle, as the original did.
        let fh = matches!(res, ResOp::Open(Ok(_)))
            .then(|| ctx.current_fh.clone())
            .flatten();
        ctx.server.state().finish_owner_seqid(&key, seqid, &res, fh);
    }
    if let (Some((key, lock_seqid)), ResOp::Lock(Lock4Res::Ok(_))) = (new_lock_owner, &res) {
        ctx.server.state().start_lock_owner(key, lock_seqid);
    }
    res
}

/// Finds the client an operation acts for and renews its lease: in 4.0
/// any operation with the client's id or one of its stateids does.
fn identify(ctx: &mut Ctx<'_>, op: &ArgOp) -> Result<(), Nfs4Error> {
    let state = ctx.server.state();
    let by_stateid = |s| state.stateid_client(s);
    let client = match op {
        ArgOp::Open(a) => Some(a.owner.clientid),
        ArgOp::Lockt(a) => Some(a.owner.clientid),
        ArgOp::ReleaseLockowner(o) => Some(o.clientid),
        ArgOp::Lock(a) => match &a.locker {
            Locker4::New(n) => by_stateid(n.open_stateid)?,
            Locker4::Exist(e) => by_stateid(e.lock_stateid)?,
        },
        ArgOp::OpenConfirm(a) => by_stateid(a.open_stateid)?,
        ArgOp::OpenDowngrade(a) => by_stateid(a.open_stateid)?,
        ArgOp::Close(a) => by_stateid(a.open_stateid)?,
        ArgOp::Locku(a) => by_stateid(a.lock_stateid)?,
        ArgOp::Read(a) => by_stateid(a.stateid)?,
        ArgOp::Write(a) => by_stateid(a.stateid)?,
        ArgOp::Setattr(a) => by_stateid(a.stateid)?,
        ArgOp::Delegreturn(s) => by_stateid(*s)?,
        _ => None,
    };
    if let Some(c) = client {
        state.renew(c)?;
        ctx.client = Some(c);
    }
    Ok(())
}

/// The owner whose sequence an operation is in, and its seqid.
fn owner_seqid(ctx: &Ctx<'_>, op: &ArgOp) -> Option<(OwnerKey, u32)> {
    let by_stateid = |s, seqid| ctx.server.state().stateid_owner(s).map(|k| (k, seqid));
    match op {
        ArgOp::Open(a) => Some((
            OwnerKey {
                client: a.owner.clientid,
                lock: false,
                owner: a.owner.owner.as_bytes().to_vec(),
            },
            a.seqid,
        )),
        ArgOp::OpenConfirm(a) => by_stateid(a.open_stateid, a.seqid),
        ArgOp::OpenDowngrade(a) => by_stateid(a.open_stateid, a.seqid),
        ArgOp::Close(a) => by_stateid(a.open_stateid, a.seqid),
        ArgOp::Lock(a) => match &a.locker {
            Locker4::New(n) => by_stateid(n.open_stateid, n.open_seqid),
            Locker4::Exist(e) => by_stateid(e.lock_stateid, e.lock_seqid),
        },
        ArgOp::Locku(a) => by_stateid(a.lock_stateid, a.seqid),
        _ => None,
    }
}
