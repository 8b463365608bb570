//! READDIR and READDIRPLUS: the vfs's cookies and the constant cookie
//! verifier NFSv4 uses too, replies within the client's `count` (READDIR),
//! `maxcount` and `dircount` (READDIRPLUS).

use bytes::Bytes;
use openefs_nfs_wire::nfs3::ops::*;
use openefs_nfs_wire::nfs3::types::*;
use openefs_nfs_wire::nfs3::{Fail3, Nfs3Error, Res3};
use openefs_nfs_wire::xdr::Opaque;
use openefs_vfs::DirEntry;

use crate::config::MAX_MESSAGE;
use crate::dirwalk;
use crate::ops::dir::COOKIEVERF;
use crate::v3::Ctx;
use crate::v3::convert::{fattr3, fh3, handle, post_op, st};

fn entry3(e: DirEntry) -> Entry3 {
    Entry3 {
        fileid: e.attr.fileid,
        name: Opaque(Bytes::from(e.name)),
        cookie: e.cookie,
    }
}

fn entryplus3(e: DirEntry) -> Entryplus3 {
    Entryplus3 {
        fileid: e.attr.fileid,
        cookie: e.cookie,
        name_attributes: Some(fattr3(&e.attr)),
        name_handle: Some(fh3(&e.handle)),
        name: Opaque(Bytes::from(e.name)),
    }
}

/// One listing reply of `E` entries from `cookie`.
async fn list<E: DirEntry3 + Send + 'static>(
    ctx: &Ctx<'_>,
    dir: &NfsFh3,
    cookie: u64,
    cookieverf: CookieVerf3,
    (maxcount, dircount): (u32, u32),
    convert: fn(DirEntry) -> E,
) -> Res3<DirList3<E>, PostOpAttr> {
    let dir = handle(dir)?;
    // Cookies stay valid while the directory lives, so a verifier other
    // than ours is not one we issued.
    if cookie != 0 && cookieverf != COOKIEVERF {
        return Err(Nfs3Error::BadCookie.into());
    }
    let maxcount = maxcount.min(MAX_MESSAGE);
    ctx.run(move |v, id| {
        let mut out = DirListBuilder::new(maxcount, dircount);
        let batch = dirwalk::batch_for(maxcount);
        let walked = dirwalk::walk(v, id, &dir, cookie, batch, |e| out.push(convert(e)).is_ok());
        let fail = |status| Fail3 {
            status,
            body: post_op(v, &dir),
        };
        let eof = walked.map_err(|e| fail(st(e)))?;
        if out.is_empty() && !eof {
            return Err(fail(Nfs3Error::Toosmall));
        }
        Ok(out.finish(post_op(v, &dir), COOKIEVERF, eof))
    })
    .await
}

pub async fn readdir(ctx: &Ctx<'_>, a: Readdir3Args) -> Readdir3Res {
    let limits = (a.count, u32::MAX);
    list(ctx, &a.dir, a.cookie, a.cookieverf, limits, entry3).await
}

pub async fn readdirplus(ctx: &Ctx<'_>, a: Readdirplus3Args) -> Readdirplus3Res {
    let limits = (a.maxcount, a.dircount);
    list(ctx, &a.dir, a.cookie, a.cookieverf, limits, entryplus3).await
}
