//! LOOKUP, READLINK and the procedures that change a directory: CREATE
//! (UNCHECKED, GUARDED, EXCLUSIVE), MKDIR, SYMLINK, MKNOD, REMOVE, RMDIR,
//! RENAME, LINK. Each reports the directory's attributes around the change
//! (`wcc_data`), on failure too.

use bytes::Bytes;
use openefs_nfs_wire::nfs3::ops::*;
use openefs_nfs_wire::nfs3::types::*;
use openefs_nfs_wire::nfs3::{Fail3, Nfs3Error};
use openefs_nfs_wire::xdr::Opaque;
use openefs_vfs::{CreateMode, Created, FileHandle, FileType, Identity, SetAttr, Vfs, VfsResult};

use crate::v3::Ctx;
use crate::v3::convert::{check_name, fattr3, fh3, handle, post_op, pre_op, st, to_setattr, wcc};

/// Mode of a new file when the client sends none (an EXCLUSIVE create, whose
/// attributes follow in a SETATTR): owner-only until then.
const DEFAULT_FILE_MODE: u32 = 0o600;
const DEFAULT_DIR_MODE: u32 = 0o755;

pub async fn lookup(ctx: &Ctx<'_>, a: DirOpArgs3) -> Lookup3Res {
    let dir = handle(&a.dir)?;
    let name = a.name.as_bytes().to_vec();
    ctx.run(move |v, id| {
        // NFSv3 clients may look up "." and ".."; ".." of the root is the
        // root (the export has no outside).
        let found = match &name[..] {
            b"." => v.getattr(&dir).map(|a| (dir.clone(), a)),
            b".." => v.lookup_parent(id, &dir),
            _ => match check_name(&a.name) {
                Ok(n) => v.lookup(id, &dir, &n),
                Err(status) => {
                    return Err(Fail3 {
                        status,
                        body: post_op(v, &dir),
                    });
                }
            },
        };
        match found {
            Ok((fh, attr)) => Ok(Lookup3ResOk {
                object: fh3(&fh),
                obj_attributes: Some(fattr3(&attr)),
                dir_attributes: post_op(v, &dir),
            }),
            Err(e) => Err(Fail3 {
                status: st(e),
                body: post_op(v, &dir),
            }),
        }
    })
    .await
}

pub async fn readlink(ctx: &Ctx<'_>, symlink: NfsFh3) -> Readlink3Res {
    let fh = handle(&symlink)?;
    ctx.run(move |v, id| match v.readlink(id, &fh) {
        Ok(target) => Ok(Readlink3ResOk {
            symlink_attributes: post_op(v, &fh),
            data: Opaque(Bytes::from(target)),
        }),
        Err(e) => Err(Fail3 {
            status: st(e),
            body: post_op(v, &fh),
        }),
    })
    .await
}

/// Makes something in `dir` with `make`, then reports it with the
/// directory's `wcc_data`.
fn make_in(v: &dyn Vfs, dir: &FileHandle, make: impl FnOnce() -> VfsResult<Created>) -> DirOp3Res {
    let before = pre_op(v, dir);
    match make() {
        Ok(c) => Ok(DirOp3ResOk {
            obj: Some(fh3(&c.handle)),
            obj_attributes: post_op(v, &c.handle),
            dir_wcc: wcc(v, dir, before),
        }),
        Err(e) => Err(Fail3 {
            status: st(e),
            body: wcc(v, dir, before),
        }),
    }
}

/// Applies the attributes a new object was created with, beyond its mode.
fn apply_rest(v: &dyn Vfs, id: &Identity, c: Created, set: &SetAttr) -> VfsResult<Created> {
    if *set != SetAttr::default() {
        v.setattr(id, &c.handle, set)?;
    }
    Ok(c)
}

pub async fn create(ctx: &Ctx<'_>, a: Create3Args) -> DirOp3Res {
    let dir = handle(&a.where_.dir)?;
    let name = check_name(&a.where_.name)?;
    let (how, mut set) = match &a.how {
        CreateHow3::Unchecked(s) => (CreateMode::Unchecked, to_setattr(s)),
        CreateHow3::Guarded(s) => (CreateMode::Guarded, to_setattr(s)),
        // The verifier is kept with the file, so a retransmitted EXCLUSIVE
        // create finds it and succeeds (RFC 1813 §3.3.8).
        CreateHow3::Exclusive(verf) => (CreateMode::Exclusive(*verf), SetAttr::default()),
    };
    let mode = set.mode.take().unwrap_or(DEFAULT_FILE_MODE);
    ctx.run(move |v, id| make_in(v, &dir, || v.create(id, &dir, &name, mode, how, &set)))
        .await
}

pub async fn mkdir(ctx: &Ctx<'_>, a: Mkdir3Args) -> DirOp3Res {
    let dir = handle(&a.where_.dir)?;
    let name = check_name(&a.where_.name)?;
    let mut set = to_setattr(&a.attributes);
    if set.size.is_some() {
        return Err(Nfs3Error::Inval.into());
    }
    let mode = set.mode.take().unwrap_or(DEFAULT_DIR_MODE);
    ctx.run(move |v, id| {
        make_in(v, &dir, || {
            let c = v.mkdir(id, &dir, &name, mode)?;
            apply_rest(v, id, c, &set)
        })
    })
    .await
}

pub async fn symlink(ctx: &Ctx<'_>, a: Symlink3Args) -> DirOp3Res {
    let dir = handle(&a.where_.dir)?;
    let name = check_name(&a.where_.name)?;
    if a.symlink_data.is_empty() {
        return Err(Nfs3Error::Inval.into());
    }
    let target = a.symlink_data.as_bytes().to_vec();
    let mut set = to_setattr(&a.symlink_attributes);
    // Symlink permission bits mean nothing on Linux; none are set.
    set.mode = None;
    if set.size.is_some() {
        return Err(Nfs3Error::Inval.into());
    }
    ctx.run(move |v, id| {
        make_in(v, &dir, || {
            let c = v.symlink(id, &dir, &name, &target)?;
            apply_rest(v, id, c, &set)
        })
    })
    .await
}

/// Needs no vfs call: every answer is decided by the arguments.
pub async fn mknod(a: Mknod3Args) -> DirOp3Res {
    handle(&a.where_.dir)?;
    check_name(&a.where_.name)?;
    Err(match a.what {
        // The vfs makes no special files (yet), as for NFSv4 CREATE.
        MknodData3::Chr(_) | MknodData3::Blk(_) | MknodData3::Sock(_) | MknodData3::Fifo(_) => {
            Nfs3Error::Notsupp
        }
        MknodData3::Other(_) => Nfs3Error::Badtype,
    }
    .into())
}

/// REMOVE (`rmdir` false) and RMDIR: the vfs removes either kind, so the
/// object's type is checked first.
pub async fn remove(ctx: &Ctx<'_>, a: DirOpArgs3, rmdir: bool) -> Remove3Res {
    let dir = handle(&a.dir)?;
    let name = match check_name(&a.name) {
        Ok(n) => n,
        // "." and ".." are never removed; RMDIR "." is INVAL (RFC 1813).
        Err(Nfs3Error::Exist) if rmdir && a.name.as_bytes() == b"." => {
            return Err(Nfs3Error::Inval.into());
        }
        Err(Nfs3Error::Exist) if rmdir => return Err(Nfs3Error::Notempty.into()),
        Err(Nfs3Error::Exist) => return Err(Nfs3Error::Acces.into()),
        Err(e) => return Err(e.into()),
    };
    ctx.run(move |v, id| {
        let before = pre_op(v, &dir);
        let removed = v.lookup(id, &dir, &name).and_then(|(_, attr)| {
            match (rmdir, attr.file_type == FileType::Directory) {
                (false, true) => Err(openefs_vfs::VfsError::IsDir),
                (true, false) => Err(openefs_vfs::VfsError::NotDir),
                _ => v.remove(id, &dir, &name),
            }
        });
        match removed {
            Ok(()) => Ok(wcc(v, &dir, before)),
            Err(e) => Err(Fail3 {
                status: st(e),
                body: wcc(v, &dir, before),
            }),
        }
    })
    .await
}

pub async fn rename(ctx: &Ctx<'_>, a: Rename3Args) -> Rename3Res {
    let from_dir = handle(&a.from.dir)?;
    let to_dir = handle(&a.to.dir)?;
    // Renaming "." or ".." (from or to) is INVAL, as in rename(2).
    let renamable = |n: &Filename3| {
        check_name(n).map_err(|e| match e {
            Nfs3Error::Exist => Nfs3Error::Inval,
            e => e,
        })
    };
    let from = renamable(&a.from.name)?;
    let to = renamable(&a.to.name)?;
    ctx.run(move |v, id| {
        let from_before = pre_op(v, &from_dir);
        let to_before = pre_op(v, &to_dir);
        let r = v.rename(id, &from_dir, &from, &to_dir, &to);
        let body = Rename3Wcc {
            fromdir_wcc: wcc(v, &from_dir, from_before),
            todir_wcc: wcc(v, &to_dir, to_before),
        };
        match r {
            Ok(()) => Ok(body),
            Err(e) => Err(Fail3 {
                status: st(e),
                body,
            }),
        }
    })
    .await
}

pub async fn link(ctx: &Ctx<'_>, a: Link3Args) -> Link3Res {
    let file = handle(&a.file)?;
    let dir = handle(&a.link.dir)?;
    let name = check_name(&a.link.name)?;
    ctx.run(move |v, id| {
        let before = pre_op(v, &dir);
        let r = v.link(id, &file, &dir, &name);
        let body = Link3Wcc {
            file_attributes: post_op(v, &file),
            linkdir_wcc: wcc(v, &dir, before),
        };
        match r {
            Ok(()) => Ok(body),
            Err(e) => Err(Fail3 {
                status: st(e),
                body,
            }),
        }
    })
    .await
}
