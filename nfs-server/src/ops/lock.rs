//! Byte-range locks: LOCK, LOCKT, LOCKU (RFC 8881 §18.10–18.12).
//!
//! Locks are advisory, as knfsd's are by default: READ and WRITE do not
//! check them. Blocking lock types (READW_LT, WRITEW_LT) are answered like
//! the others, with DENIED on a conflict; the Linux client polls for them.
//! The owner seqids of `open_to_lock_owner4`/`exist_lock_owner4` are not
//! checked here: in 4.1 they are unused, the session's slot gives replay
//! protection; in 4.0 the COMPOUND loop checks them (`compound::v40`).
//! RELEASE_LOCKOWNER is 4.0's.

use openefs_nfs_wire::nfs4::Nfs4Error;
use openefs_nfs_wire::nfs4::ops::{
    Lock4Args, Lock4Denied, Lock4Res, Locker4, Lockt4Args, Lockt4Res, Locku4Args,
};
use openefs_nfs_wire::nfs4::types::{LockType, StateOwner4, Stateid4};
use openefs_nfs_wire::xdr::Opaque;

use crate::compound::Ctx;
use crate::metrics::Reclaimed;
use crate::ops::open::check_type;
use crate::state::{ByteRange, Conflict, LockError, Locker};

fn is_write(t: LockType) -> bool {
    matches!(t, LockType::Write | LockType::WriteW)
}

fn denied(c: Conflict) -> Lock4Denied {
    let (offset, length) = c.range.to_wire();
    Lock4Denied {
        offset,
        length,
        locktype: if c.write {
            LockType::Write
        } else {
            LockType::Read
        },
        owner: StateOwner4 {
            clientid: c.client,
            owner: Opaque::from(c.owner.as_slice()),
        },
    }
}

pub fn lock(ctx: &mut Ctx<'_>, a: Lock4Args) -> Lock4Res {
    let client = match ctx.client() {
        Ok(c) => c,
        Err(e) => return Lock4Res::Err(e),
    };
    // Reclaims only in the grace period, everything else only outside it;
    // a reclaimed lock can only conflict with another reclaimed one.
    let allowed = if a.reclaim {
        ctx.server.state().check_reclaim(client)
    } else {
        ctx.server.state().check_not_grace()
    };
    if let Err(e) = allowed {
        return Lock4Res::Err(e.into());
    }
    let range = match ByteRange::from_wire(a.offset, a.length) {
        Ok(r) => r,
        Err(e) => return Lock4Res::Err(e.into()),
    };
    let fh = match ctx.fh() {
        Ok(fh) => fh.clone(),
        Err(e) => return Lock4Res::Err(e),
    };
    let locker = match &a.locker {
        Locker4::New(n) => match ctx.resolve_stateid(n.open_stateid) {
            Ok(open) => Locker::New {
                open,
                owner: n.lock_owner.owner.as_bytes(),
            },
            Err(e) => return Lock4Res::Err(e),
        },
        Locker4::Exist(e) => match ctx.resolve_stateid(e.lock_stateid) {
            Ok(s) => Locker::Existing(s),
            Err(e) => return Lock4Res::Err(e),
        },
    };
    match ctx
        .server
        .state()
        .lock_range(client, &fh, locker, is_write(a.locktype), range)
    {
        Ok(stateid) => {
            if a.reclaim {
                ctx.server.metrics().reclaimed(Reclaimed::Lock);
            }
            ctx.current_stateid = Some(stateid);
            Lock4Res::Ok(stateid)
        }
        Err(LockError::Denied(c)) => Lock4Res::Denied(denied(c)),
        Err(LockError::State(e)) => Lock4Res::Err(e.into()),
    }
}

pub async fn lockt(ctx: &mut Ctx<'_>, a: Lockt4Args) -> Lockt4Res {
    let checked = async {
        let client = ctx.client()?;
        // An answer now could be contradicted by a lock still to be
        // reclaimed.
        ctx.server.state().check_not_grace()?;
        let range = ByteRange::from_wire(a.offset, a.length)?;
        let fh = ctx.fh()?.clone();
        // LOCK needs an open, which is of a regular file; LOCKT has none.
        let f = fh.clone();
        check_type(&ctx.vfs(move |v, _| v.getattr(&f)).await?)?;
        Ok::<_, Nfs4Error>((client, range, fh))
    };
    let (client, range, fh) = match checked.await {
        Ok(v) => v,
        Err(e) => return Lockt4Res::Err(e),
    };
    // The lock owner's client id is the session's in 4.1; the one inside
    // `a.owner` is not trusted. In 4.0 it is the one inside, checked and
    // renewed by the COMPOUND loop.
    match ctx.server.state().test_lock(
        client,
        a.owner.owner.as_bytes(),
        &fh,
        is_write(a.locktype),
        range,
    ) {
        Ok(()) => Lockt4Res::Ok,
        Err(LockError::Denied(c)) => Lockt4Res::Denied(denied(c)),
        Err(LockError::State(e)) => Lockt4Res::Err(e.into()),
    }
}

pub fn release_lockowner(ctx: &mut Ctx<'_>, owner: StateOwner4) -> Result<(), Nfs4Error> {
    Ok(ctx
        .server
        .state()
        .release_lockowner(ctx.client()?, owner.owner.as_bytes())?)
}

pub fn locku(ctx: &mut Ctx<'_>, a: Locku4Args) -> Result<Stateid4, Nfs4Error> {
    let client = ctx.client()?;
    let range = ByteRange::from_wire(a.offset, a.length)?;
    let stateid = ctx.resolve_stateid(a.lock_stateid)?;
    let fh = ctx.fh()?;
    let new = ctx
        .server
        .state()
        .unlock_range(client, fh, stateid, range)?;
    ctx.current_stateid = Some(new);
    Ok(new)
}
