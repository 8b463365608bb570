//! Filehandle operations: PUTROOTFH, PUTFH, GETFH, SAVEFH, RESTOREFH,
//! LOOKUP, LOOKUPP.

use bytes::Bytes;
use openefs_nfs_wire::nfs4::Nfs4Error;
use openefs_nfs_wire::nfs4::types::{NfsFh4, Utf8Str};
use openefs_nfs_wire::xdr::Opaque;
use openefs_vfs::{FileHandle, MAX_HANDLE_LEN};

use crate::compound::Ctx;
use crate::ops::check_name;

pub fn putrootfh(ctx: &mut Ctx<'_>) -> Result<(), Nfs4Error> {
    let root = ctx.server.vfs().root();
    ctx.set_fh(root);
    Ok(())
}

/// The handle is checked when an operation uses it: the vfs tells a forged
/// handle (BADHANDLE) from a vanished object (STALE).
pub fn putfh(ctx: &mut Ctx<'_>, fh: NfsFh4) -> Result<(), Nfs4Error> {
    if fh.is_empty() || fh.len() > MAX_HANDLE_LEN {
        return Err(Nfs4Error::Badhandle);
    }
    ctx.set_fh(FileHandle(fh.as_bytes().to_vec()));
    Ok(())
}

pub fn getfh(ctx: &mut Ctx<'_>) -> Result<NfsFh4, Nfs4Error> {
    Ok(Opaque(Bytes::copy_from_slice(&ctx.fh()?.0)))
}

pub fn savefh(ctx: &mut Ctx<'_>) -> Result<(), Nfs4Error> {
    ctx.saved_fh = Some(ctx.fh()?.clone());
    ctx.saved_stateid = ctx.current_stateid;
    Ok(())
}

pub fn restorefh(ctx: &mut Ctx<'_>) -> Result<(), Nfs4Error> {
    ctx.current_fh = Some(ctx.saved()?.clone());
    ctx.current_stateid = ctx.saved_stateid;
    Ok(())
}

pub async fn lookup(ctx: &mut Ctx<'_>, name: Utf8Str) -> Result<(), Nfs4Error> {
    let dir = ctx.fh()?.clone();
    let name = check_name(&name)?;
    let (fh, _) = ctx.vfs(move |v, id| v.lookup(id, &dir, &name)).await?;
    ctx.set_fh(fh);
    Ok(())
}

pub async fn lookupp(ctx: &mut Ctx<'_>) -> Result<(), Nfs4Error> {
    let dir = ctx.fh()?.clone();
    // The vfs maps the root's parent to the root; NFS says there is none.
    if dir == ctx.server.vfs().root() {
        return Err(Nfs4Error::Noent);
    }
    let (fh, _) = ctx.vfs(move |v, id| v.lookup_parent(id, &dir)).await?;
    ctx.set_fh(fh);
    Ok(())
}
