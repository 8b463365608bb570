//! Open state: OPEN, OPEN_DOWNGRADE, CLOSE, and 4.0's OPEN_CONFIRM.

use openefs_nfs_wire::nfs4::ops::*;
use openefs_nfs_wire::nfs4::types::{ChangeInfo4, OpenDelegation4, Stateid4, WhyNoDelegation};
use openefs_nfs_wire::nfs4::{Bitmap4, Nfs4Error};
use openefs_vfs::{Attr, CreateMode, FileHandle, FileType, OpenAccess, SetAttr};

use crate::attrs;
use crate::compound::Ctx;
use crate::metrics::Reclaimed;
use crate::ops::{check_name, cinfo};
use crate::state::share;

/// What OPEN creates, if anything.
enum Create {
    No,
    Yes {
        how: CreateMode,
        mode: u32,
        set: SetAttr,
        attrset: Bitmap4,
    },
}

fn create_args(how: CreateHow4) -> Result<Create, Nfs4Error> {
    let (how, fattr) = match how {
        CreateHow4::Unchecked(f) => (CreateMode::Unchecked, Some(f)),
        CreateHow4::Guarded(f) => (CreateMode::Guarded, Some(f)),
        CreateHow4::Exclusive(verf) => (CreateMode::Exclusive(verf), None),
        CreateHow4::Exclusive41(cva) => (CreateMode::Exclusive(cva.verf), Some(cva.attrs)),
    };
    let (mut set, attrset) = match &fattr {
        Some(f) => attrs::to_setattr(f)?,
        None => (SetAttr::default(), Bitmap4::new()),
    };
    if matches!(how, CreateMode::Exclusive(_)) && (set.atime.is_some() || set.mtime.is_some()) {
        // The times may hold the verifier (suppattr_exclcreat excludes them).
        return Err(Nfs4Error::Inval);
    }
    let mode = set.mode.take().unwrap_or(0o644);
    Ok(Create::Yes {
        how,
        mode,
        set,
        attrset,
    })
}

pub(crate) fn check_type(attr: &Attr) -> Result<(), Nfs4Error> {
    match attr.file_type {
        FileType::Regular => Ok(()),
        FileType::Directory => Err(Nfs4Error::Isdir),
        FileType::Symlink => Err(Nfs4Error::Symlink),
        _ => Err(Nfs4Error::WrongType),
    }
}

/// No delegations are granted; a client that asked learns it (4.1 form).
fn no_delegation(share_access: u32) -> OpenDelegation4 {
    match share_access & OPEN4_SHARE_ACCESS_WANT_DELEG_MASK {
        OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE => OpenDelegation4::None,
        OPEN4_SHARE_ACCESS_WANT_NO_DELEG | OPEN4_SHARE_ACCESS_WANT_CANCEL => {
            OpenDelegation4::NoneExt(WhyNoDelegation::NotWanted)
        }
        _ => OpenDelegation4::NoneExt(WhyNoDelegation::Resource(false)),
    }
}

pub async fn open(ctx: &mut Ctx<'_>, a: Open4Args) -> Result<Open4ResOk, Nfs4Error> {
    let client = ctx.client()?;
    let access = a.share_access & OPEN4_SHARE_ACCESS_BOTH;
    let deny = a.share_deny;
    if access == 0 || deny & !OPEN4_SHARE_DENY_BOTH != 0 {
        return Err(Nfs4Error::Inval);
    }
    if ctx.minor == 0 {
        // The delegation wants, EXCLUSIVE4_1 and the by-filehandle claims
        // are 4.1's; in 4.0 they are not even valid XDR.
        if a.share_access & !OPEN4_SHARE_ACCESS_BOTH != 0 {
            return Err(Nfs4Error::Inval);
        }
        if matches!(a.openhow, OpenFlag4::Create(CreateHow4::Exclusive41(_)))
            || matches!(
                a.claim,
                OpenClaim4::Fh | OpenClaim4::DelegCurFh(_) | OpenClaim4::DelegPrevFh
            )
        {
            return Err(Nfs4Error::Badxdr);
        }
    }
    let create = match a.openhow {
        OpenFlag4::NoCreate => Create::No,
        OpenFlag4::Create(how) => create_args(how)?,
    };
    let cur = ctx.fh()?.clone();
    let state = ctx.server.state();
    let reclaim = matches!(a.claim, OpenClaim4::Previous(_));
    let (name, create) = match a.claim {
        OpenClaim4::Null(name) => {
            state.check_not_grace()?;
            (Some(check_name(&name)?), create)
        }
        OpenClaim4::Fh if matches!(create, Create::No) => {
            state.check_not_grace()?;
            (None, create)
        }
        OpenClaim4::Fh => return Err(Nfs4Error::Inval),
        // A reclaim after a restart: the current filehandle is the file
        // (RFC 8881 §18.16.3). No delegation was ever granted, so none is
        // reclaimed, whatever type the client names. The file exists: a
        // create request is moot.
        OpenClaim4::Previous(_) => {
            state.check_reclaim(client)?;
            (None, Create::No)
        }
        // Reclaims of delegations after a client restart: none was granted.
        OpenClaim4::DelegatePrev(_) | OpenClaim4::DelegPrevFh => {
            return Err(Nfs4Error::NoGrace);
        }
        // We never grant delegations.
        OpenClaim4::DelegateCur(_) | OpenClaim4::DelegCurFh(_) => {
            return Err(Nfs4Error::BadStateid);
        }
    };
    let owner = a.owner.owner.as_bytes().to_vec();
    let existing = |fh: &FileHandle| ctx.server.state().find_open(client, &owner, fh);
    let want = OpenAccess {
        read: access & share::READ != 0,
        write: access & share::WRITE != 0,
    };

    // Resolve (or create) the file, then open it for I/O unless this owner's
    // open of it already allows the access asked for.
    let (fh, cinfo, attrset) = match (name, create) {
        (None, _) => {
            let fh = cur.clone();
            let f = fh.clone();
            let attr = ctx.vfs(move |v, _| v.getattr(&f)).await?;
            check_type(&attr)?;
            (fh, ChangeInfo4::default(), Bitmap4::new())
        }
        (Some(name), Create::No) => {
            let dir = cur.clone();
            let (fh, attr, dir_attr) = ctx
                .vfs(move |v, id| {
                    let (fh, attr) = v.lookup(id, &dir, &name)?;
                    Ok((fh, attr, v.getattr(&dir)?))
                })
                .await?;
            check_type(&attr)?;
            (fh, cinfo(&dir_attr, &dir_attr), Bitmap4::new())
        }
        (
            Some(name),
            Create::Yes {
                how,
                mode,
                set,
                attrset,
            },
        ) => {
            let dir = cur.clone();
            let (created, cinfo) = ctx
                .vfs(move |v, id| {
                    let before = v.getattr(&dir)?;
                    let created = v.create(id, &dir, &name, mode, how, &set)?;
                    Ok((created, cinfo(&before, &v.getattr(&dir)?)))
                })
                .await?;
            check_type(&created.attr)?;
            (created.handle, cinfo, attrset)
        }
    };
    let held = existing(&fh);
    let covers = held.as_ref().is_some_and(|h| {
        (!want.read || h.file.access.read) && (!want.write || h.file.access.write)
    });
    let file = match held {
        Some(h) if covers => h.file,
        held => {
            let union = OpenAccess {
                read: want.read || held.as_ref().is_some_and(|h| h.file.access.read),
                write: want.write || held.as_ref().is_some_and(|h| h.file.access.write),
            };
            let f = fh.clone();
            ctx.vfs(move |v, id| v.open(id, &f, union)).await?
        }
    };
    // On disk before the client holds state it would want back after a
    // crash. LOCK needs no such step: every lock derives from an open.
    ctx.server.record_client(client).await?;
    let stateid = ctx
        .server
        .state()
        .record_open(client, &owner, access, deny, file)?;
    if reclaim {
        ctx.server.metrics().reclaimed(Reclaimed::Open);
    }
    // A 4.0 open owner's first OPEN is confirmed by OPEN_CONFIRM before
    // its stateid may be used (RFC 7530 §16.18): the owner seqids only
    // protect against replays once the client is known to use them.
    let mut rflags = 0;
    if ctx.minor == 0 && !ctx.server.state().open_owner_confirmed(client, &owner) {
        ctx.server.state().mark_unconfirmed(stateid);
        rflags |= OPEN4_RESULT_CONFIRM;
    }
    ctx.set_fh(fh);
    ctx.current_stateid = Some(stateid);
    Ok(Open4ResOk {
        stateid,
        cinfo,
        rflags,
        attrset,
        delegation: no_delegation(a.share_access),
    })
}

/// OPEN_CONFIRM (4.0); its owner seqid was checked by the COMPOUND loop.
pub fn open_confirm(ctx: &mut Ctx<'_>, a: OpenConfirm4Args) -> Result<Stateid4, Nfs4Error> {
    ctx.fh()?;
    Ok(ctx
        .server
        .state()
        .confirm_open(ctx.client()?, a.open_stateid)?)
}

pub fn open_downgrade(ctx: &mut Ctx<'_>, a: OpenDowngrade4Args) -> Result<Stateid4, Nfs4Error> {
    let stateid = ctx.resolve_stateid(a.open_stateid)?;
    let new = ctx.server.state().open_downgrade(
        ctx.client()?,
        stateid,
        a.share_access & OPEN4_SHARE_ACCESS_BOTH,
        a.share_deny,
    )?;
    ctx.current_stateid = Some(new);
    Ok(new)
}

pub fn close(ctx: &mut Ctx<'_>, a: Close4Args) -> Result<Stateid4, Nfs4Error> {
    let stateid = ctx.resolve_stateid(a.open_stateid)?;
    ctx.server.state().close(ctx.client()?, stateid)?;
    ctx.current_stateid = None;
    if ctx.minor == 0 {
        // RFC 7530 §16.2: the stateid with its next seqid, though it is
        // no longer valid.
        return Ok(Stateid4 {
            seqid: stateid.seqid.wrapping_add(1),
            other: stateid.other,
        });
    }
    // RFC 8881 §18.2.4: a 4.1 server returns the invalid special stateid.
    Ok(Stateid4::INVALID)
}
