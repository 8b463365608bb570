//! GETATTR, SETATTR (with its ctime guard), ACCESS, FSSTAT, FSINFO,
//! PATHCONF.

use openefs_nfs_wire::nfs3::ops::*;
use openefs_nfs_wire::nfs3::types::*;
use openefs_nfs_wire::nfs3::{Fail3, Nfs3Error};

use crate::config::MAX_IO;
use crate::ops::MAX_NAME;
use crate::v3::Ctx;
use crate::v3::convert::{fattr3, handle, nfstime, post_op, st, to_setattr, wcc_attr};

pub async fn getattr(ctx: &Ctx<'_>, object: NfsFh3) -> Getattr3Res {
    let fh = handle(&object)?;
    ctx.run(move |v, _| Ok(fattr3(&v.getattr(&fh).map_err(st)?)))
        .await
}

pub async fn setattr(ctx: &Ctx<'_>, a: Setattr3Args) -> Setattr3Res {
    let fh = handle(&a.object)?;
    let set = to_setattr(&a.new_attributes);
    ctx.run(move |v, id| {
        let before = v.getattr(&fh).map_err(st)?;
        let pre = Some(wcc_attr(&before));
        // The guard lets a client apply a change only to the version of
        // the object it saw (RFC 1813 §3.3.2).
        if a.guard.is_some_and(|ctime| ctime != nfstime(before.ctime)) {
            return Err(Fail3 {
                status: Nfs3Error::NotSync,
                body: WccData {
                    before: pre,
                    after: Some(fattr3(&before)),
                },
            });
        }
        match v.setattr(id, &fh, &set) {
            Ok(after) => Ok(WccData {
                before: pre,
                after: Some(fattr3(&after)),
            }),
            Err(e) => Err(Fail3 {
                status: st(e),
                body: WccData {
                    before: pre,
                    after: post_op(v, &fh),
                },
            }),
        }
    })
    .await
}

/// All ACCESS3_* bits (the same values as the vfs's `access::*`).
const ACCESS_ALL: u32 = 0x3f;

pub async fn access(ctx: &Ctx<'_>, a: Access3Args) -> Access3Res {
    let fh = handle(&a.object)?;
    let requested = a.access & ACCESS_ALL;
    let policy = ctx.settings.policy.clone();
    ctx.run(move |v, id| match v.access(id, &fh, requested) {
        Ok(granted) => Ok(Access3ResOk {
            obj_attributes: post_op(v, &fh),
            access: policy.allowed_access(granted) & requested,
        }),
        Err(e) => Err(Fail3 {
            status: st(e),
            body: post_op(v, &fh),
        }),
    })
    .await
}

pub async fn fsstat(ctx: &Ctx<'_>, root: NfsFh3) -> Fsstat3Res {
    let fh = handle(&root)?;
    ctx.run(move |v, _| {
        let s = v.statfs(&fh).map_err(st)?;
        Ok(Fsstat3ResOk {
            obj_attributes: post_op(v, &fh),
            tbytes: s.bytes_total,
            fbytes: s.bytes_free,
            abytes: s.bytes_avail,
            tfiles: s.files_total,
            ffiles: s.files_free,
            afiles: s.files_avail,
            // The figures change with every write: no promise they hold.
            invarsec: 0,
        })
    })
    .await
}

/// Preferred READDIR reply size: the Linux client caps it lower itself.
const DTPREF: u32 = 64 * 1024;
/// READ/WRITE sizes should be multiples of a page.
const IO_MULTIPLE: u32 = 4096;

pub async fn fsinfo(ctx: &Ctx<'_>, root: NfsFh3) -> Fsinfo3Res {
    let fh = handle(&root)?;
    ctx.run(move |v, _| {
        let obj_attributes = Some(fattr3(&v.getattr(&fh).map_err(st)?));
        Ok(Fsinfo3ResOk {
            obj_attributes,
            rtmax: MAX_IO,
            rtpref: MAX_IO,
            rtmult: IO_MULTIPLE,
            wtmax: MAX_IO,
            wtpref: MAX_IO,
            wtmult: IO_MULTIPLE,
            dtpref: DTPREF,
            maxfilesize: i64::MAX as u64,
            time_delta: NfsTime3 {
                seconds: 0,
                nseconds: 1,
            },
            properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
        })
    })
    .await
}

/// Hard links per file: ext4's limit, the lowest of the file systems a
/// backing volume is formatted with (xfs and btrfs allow more). The vfs does
/// not report the real one; a link beyond it fails with MLINK anyway.
const LINK_MAX: u32 = 65000;

pub async fn pathconf(ctx: &Ctx<'_>, object: NfsFh3) -> Pathconf3Res {
    let fh = handle(&object)?;
    ctx.run(move |v, _| {
        let obj_attributes = Some(fattr3(&v.getattr(&fh).map_err(st)?));
        Ok(Pathconf3ResOk {
            obj_attributes,
            linkmax: LINK_MAX,
            name_max: MAX_NAME as u32,
            no_trunc: true,
            chown_restricted: true,
            case_insensitive: false,
            case_preserving: true,
        })
    })
    .await
}
