//! Attribute operations: GETATTR, SETATTR, VERIFY, NVERIFY, ACCESS.

use openefs_nfs_wire::nfs4::attr::{
    FATTR4_RDATTR_ERROR, FATTR4_TIME_ACCESS_SET, FATTR4_TIME_MODIFY_SET,
};
use openefs_nfs_wire::nfs4::ops::{Access4Args, Access4ResOk, Setattr4Args, Setattr4Res};
use openefs_nfs_wire::nfs4::types::Stateid4;
use openefs_nfs_wire::nfs4::{Bitmap4, Fattr4, Nfs4Error, OpResult};
use openefs_vfs::FileHandle;

use crate::attrs::{self, AttrSource, SUPPORTED};
use crate::compound::Ctx;
use crate::state::share;

/// Encodes the `requested` attributes of `fh`, fetching file system
/// statistics only when they were asked for.
pub async fn fattr(ctx: &Ctx<'_>, fh: FileHandle, requested: Bitmap4) -> Result<Fattr4, Nfs4Error> {
    let lease_secs = ctx.server.state().lease().as_secs() as u32;
    ctx.vfs(move |v, _| {
        let attr = v.getattr(&fh)?;
        let statfs = if attrs::needs_statfs(&requested) {
            Some(v.statfs(&fh)?)
        } else {
            None
        };
        let src = AttrSource {
            attr: &attr,
            handle: &fh,
            statfs: statfs.as_ref(),
            lease_secs,
        };
        Ok(src.encode(&requested))
    })
    .await
}

pub async fn getattr(ctx: &mut Ctx<'_>, requested: Bitmap4) -> Result<Fattr4, Nfs4Error> {
    let fh = ctx.fh()?.clone();
    fattr(ctx, fh, requested).await
}

/// A size change must come with a stateid allowing writes (or a special
/// one, which the vfs permission check then covers).
fn check_size_stateid(ctx: &Ctx<'_>, stateid: Stateid4, fh: &FileHandle) -> Result<(), Nfs4Error> {
    let stateid = ctx.resolve_stateid(stateid)?;
    if stateid == Stateid4::ANONYMOUS || stateid == Stateid4::READ_BYPASS {
        // A truncation without open state could break a share reservation
        // still to be reclaimed.
        ctx.server.state().check_not_grace()?;
        return Ok(());
    }
    let open = ctx.server.state().open_for_io(ctx.client()?, stateid)?;
    if open.file.handle != *fh {
        return Err(Nfs4Error::BadStateid);
    }
    if open.access & share::WRITE == 0 {
        return Err(Nfs4Error::Openmode);
    }
    Ok(())
}

pub async fn setattr(ctx: &mut Ctx<'_>, a: Setattr4Args) -> Setattr4Res {
    let r = async {
        let fh = ctx.fh()?.clone();
        let (set, mask) = attrs::to_setattr(&a.obj_attributes)?;
        if set.size.is_some() {
            check_size_stateid(ctx, a.stateid, &fh)?;
        }
        ctx.vfs(move |v, id| v.setattr(id, &fh, &set)).await?;
        Ok(mask)
    }
    .await;
    match r {
        Ok(attrsset) => Setattr4Res {
            status: Ok(()),
            attrsset,
        },
        Err(e) => Setattr4Res::from_error(e),
    }
}

/// VERIFY (`want_same`) and NVERIFY: compare the client's values with our
/// encoding of the same attributes.
pub async fn verify(ctx: &mut Ctx<'_>, theirs: Fattr4, want_same: bool) -> Result<(), Nfs4Error> {
    let fh = ctx.fh()?.clone();
    for a in theirs.attrmask.iter() {
        if a == FATTR4_RDATTR_ERROR || a == FATTR4_TIME_ACCESS_SET || a == FATTR4_TIME_MODIFY_SET {
            return Err(Nfs4Error::Inval);
        }
        if !SUPPORTED.contains(&a) {
            return Err(Nfs4Error::Attrnotsupp);
        }
    }
    let ours = fattr(ctx, fh, theirs.attrmask.clone()).await?;
    let same = ours.attr_vals.as_bytes() == theirs.attr_vals.as_bytes();
    match (same, want_same) {
        (true, true) | (false, false) => Ok(()),
        (false, true) => Err(Nfs4Error::NotSame),
        (true, false) => Err(Nfs4Error::Same),
    }
}

/// All ACCESS4_* bits.
const ACCESS_ALL: u32 = 0x3f;

pub async fn access(ctx: &mut Ctx<'_>, a: Access4Args) -> Result<Access4ResOk, Nfs4Error> {
    let fh = ctx.fh()?.clone();
    let requested = a.access & ACCESS_ALL;
    let granted = ctx.vfs(move |v, id| v.access(id, &fh, requested)).await?;
    Ok(Access4ResOk {
        supported: requested,
        access: ctx.settings.policy.allowed_access(granted) & requested,
    })
}
