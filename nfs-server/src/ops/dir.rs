//! Directory operations: CREATE (directories, symlinks), REMOVE, RENAME,
//! LINK, READLINK, READDIR.

use bytes::Bytes;
use openefs_nfs_wire::nfs4::Nfs4Error;
use openefs_nfs_wire::nfs4::attr::FATTR4_MODE;
use openefs_nfs_wire::nfs4::ops::{
    Create4Args, Create4ResOk, CreateType4, Entry4, Readdir4Args, Readdir4ResOk, ReaddirBuilder,
    Rename4Args, Rename4ResOk,
};
use openefs_nfs_wire::nfs4::types::{ChangeInfo4, Utf8Str, Verifier4};
use openefs_nfs_wire::xdr::Opaque;
use openefs_vfs::SetAttr;

use crate::attrs::{self, AttrSource};
use crate::compound::Ctx;
use crate::config::MAX_MESSAGE;
use crate::dirwalk;
use crate::ops::{check_name, cinfo};

enum NewObject {
    Dir,
    Symlink(Vec<u8>),
}

pub async fn create(ctx: &mut Ctx<'_>, a: Create4Args) -> Result<Create4ResOk, Nfs4Error> {
    let dir = ctx.fh()?.clone();
    let kind = match a.objtype {
        CreateType4::Dir => NewObject::Dir,
        CreateType4::Link(target) if target.is_empty() => return Err(Nfs4Error::Inval),
        CreateType4::Link(target) => NewObject::Symlink(target.as_bytes().to_vec()),
        // The vfs has no mknod yet.
        CreateType4::Blk(_) | CreateType4::Chr(_) | CreateType4::Sock | CreateType4::Fifo => {
            return Err(Nfs4Error::Notsupp);
        }
        CreateType4::Other(_) => return Err(Nfs4Error::Badtype),
    };
    let name = check_name(&a.objname)?;
    let (mut set, mut attrset) = attrs::to_setattr(&a.createattrs)?;
    if set.size.is_some() {
        return Err(Nfs4Error::Inval);
    }
    let mode = set.mode.take();
    if matches!(kind, NewObject::Symlink(_)) {
        // Symlink permission bits mean nothing on Linux; none are set.
        attrset.clear(FATTR4_MODE);
    }
    let (fh, cinfo) = ctx
        .vfs(move |v, id| {
            let before = v.getattr(&dir)?;
            let created = match kind {
                NewObject::Dir => v.mkdir(id, &dir, &name, mode.unwrap_or(0o755))?,
                NewObject::Symlink(target) => v.symlink(id, &dir, &name, &target)?,
            };
            if set != SetAttr::default() {
                v.setattr(id, &created.handle, &set)?;
            }
            let after = v.getattr(&dir)?;
            Ok((created.handle, cinfo(&before, &after)))
        })
        .await?;
    ctx.set_fh(fh);
    Ok(Create4ResOk { cinfo, attrset })
}

pub async fn remove(ctx: &mut Ctx<'_>, name: Utf8Str) -> Result<ChangeInfo4, Nfs4Error> {
    // Removing or replacing a file whose open is still to be reclaimed
    // would make the reclaim fail (knfsd refuses these in grace too).
    ctx.server.state().check_not_grace()?;
    let dir = ctx.fh()?.clone();
    let name = check_name(&name)?;
    ctx.vfs(move |v, id| {
        let before = v.getattr(&dir)?;
        v.remove(id, &dir, &name)?;
        Ok(cinfo(&before, &v.getattr(&dir)?))
    })
    .await
}

pub async fn rename(ctx: &mut Ctx<'_>, a: Rename4Args) -> Result<Rename4ResOk, Nfs4Error> {
    ctx.server.state().check_not_grace()?;
    let from_dir = ctx.saved()?.clone();
    let to_dir = ctx.fh()?.clone();
    let from = check_name(&a.oldname)?;
    let to = check_name(&a.newname)?;
    ctx.vfs(move |v, id| {
        let from_before = v.getattr(&from_dir)?;
        let to_before = v.getattr(&to_dir)?;
        v.rename(id, &from_dir, &from, &to_dir, &to)?;
        Ok(Rename4ResOk {
            source_cinfo: cinfo(&from_before, &v.getattr(&from_dir)?),
            target_cinfo: cinfo(&to_before, &v.getattr(&to_dir)?),
        })
    })
    .await
}

pub async fn link(ctx: &mut Ctx<'_>, name: Utf8Str) -> Result<ChangeInfo4, Nfs4Error> {
    let target = ctx.saved()?.clone();
    let dir = ctx.fh()?.clone();
    let name = check_name(&name)?;
    ctx.vfs(move |v, id| {
        let before = v.getattr(&dir)?;
        v.link(id, &target, &dir, &name)?;
        Ok(cinfo(&before, &v.getattr(&dir)?))
    })
    .await
}

pub async fn readlink(ctx: &mut Ctx<'_>) -> Result<Utf8Str, Nfs4Error> {
    let fh = ctx.fh()?.clone();
    let target = ctx.vfs(move |v, id| v.readlink(id, &fh)).await?;
    Ok(Opaque(Bytes::from(target)))
}

/// Our cookie verifier. Cookies come from the vfs and stay valid while the
/// directory is unchanged, across server restarts too, so one constant
/// verifier is honest (NFSv3 uses it too).
pub const COOKIEVERF: Verifier4 = [0; 8];

pub async fn readdir(ctx: &mut Ctx<'_>, a: Readdir4Args) -> Result<Readdir4ResOk, Nfs4Error> {
    let dir = ctx.fh()?.clone();
    if a.cookie == 1 || a.cookie == 2 {
        return Err(Nfs4Error::BadCookie);
    }
    if a.cookie != 0 && a.cookieverf != COOKIEVERF {
        return Err(Nfs4Error::NotSame);
    }
    let maxcount = a.maxcount.min(MAX_MESSAGE);
    let requested = a.attr_request;
    let lease_secs = ctx.server.state().lease().as_secs() as u32;
    let reply = ctx.vfs(move |v, id| {
        let statfs = if attrs::needs_statfs(&requested) {
            Some(v.statfs(&dir)?)
        } else {
            None
        };
        let mut out = ReaddirBuilder::new(maxcount);
        let eof = dirwalk::walk(v, id, &dir, a.cookie, dirwalk::batch_for(maxcount), |e| {
            let src = AttrSource {
                attr: &e.attr,
                handle: &e.handle,
                statfs: statfs.as_ref(),
                lease_secs,
            };
            let entry = Entry4 {
                cookie: e.cookie,
                name: Opaque(Bytes::from(e.name)),
                attrs: src.encode(&requested),
            };
            out.push(entry).is_ok()
        })?;
        Ok(if eof {
            Some(out.finish(COOKIEVERF, true))
        } else {
            full(out)
        })
    });
    reply.await?.ok_or(Nfs4Error::Toosmall)
}

/// The reply is as full as `maxcount` allows, and not at the end; `None`
/// when not even one entry fitted.
fn full(out: ReaddirBuilder) -> Option<Readdir4ResOk> {
    (!out.is_empty()).then(|| out.finish(COOKIEVERF, false))
}
