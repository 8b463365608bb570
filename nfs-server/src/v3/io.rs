//! READ, WRITE (stable modes, the server's write verifier) and COMMIT.
//! NFSv3 has no opens: files are opened per identity and kept briefly
//! (`Server::stateless_open`), as for NFSv4's special stateids.

use std::sync::Arc;

use bytes::Bytes;
use openefs_nfs_wire::nfs3::ops::*;
use openefs_nfs_wire::nfs3::{Fail3, Nfs3Error};
use openefs_nfs_wire::xdr::Opaque;
use openefs_vfs::{FileHandle, OpenAccess, OpenFile};

use crate::config::MAX_IO;
use crate::ops::io::{READ, WRITE, stability, stable_how};
use crate::throughput::IoKind;
use crate::v3::Ctx;
use crate::v3::convert::{handle, post_op, pre_op, st, wcc};

async fn open(
    ctx: &Ctx<'_>,
    fh: &FileHandle,
    need: OpenAccess,
) -> Result<Arc<OpenFile>, Nfs3Error> {
    match ctx.server.stateless_open(&ctx.identity, fh, need).await {
        Some(r) => r.map_err(st),
        None => Err(Nfs3Error::Serverfault),
    }
}

pub async fn read(ctx: &Ctx<'_>, a: Read3Args) -> Read3Res {
    let fh = handle(&a.file)?;
    let file = open(ctx, &fh, READ).await?;
    let count = a.count.min(MAX_IO);
    let res = ctx
        .run(move |v, _| match v.read(&file, a.offset, count) {
            Ok((data, eof)) => Ok(Read3ResOk {
                file_attributes: post_op(v, &fh),
                // At most MAX_IO (1 MiB), so this cannot truncate.
                count: data.len() as u32,
                eof,
                data: Opaque(Bytes::from(data)),
            }),
            Err(e) => Err(Fail3 {
                status: st(e),
                body: post_op(v, &fh),
            }),
        })
        .await;
    if let Ok(r) = &res {
        ctx.server.data_io(IoKind::DataRead, r.data.len()).await;
    }
    res
}

pub async fn write(ctx: &Ctx<'_>, a: Write3Args) -> Write3Res {
    let fh = handle(&a.file)?;
    let count = a.count as usize;
    // `count` bytes of `data` are written; claiming more than was sent is
    // malformed (RFC 1813 §3.3.7).
    if count > a.data.len() {
        return Err(Nfs3Error::Inval.into());
    }
    if a.offset
        .checked_add(count as u64)
        .is_none_or(|end| end > i64::MAX as u64)
    {
        return Err(Nfs3Error::Fbig.into());
    }
    let file = open(ctx, &fh, WRITE).await?;
    let data = a.data.0.slice(..count);
    let how = stability(a.stable);
    let verf = ctx.server.write_verifier();
    let res = ctx
        .run(move |v, _| {
            let before = pre_op(v, &fh);
            match v.write(&file, a.offset, &data, how) {
                Ok(committed) => Ok(Write3ResOk {
                    file_wcc: wcc(v, &fh, before),
                    count: count as u32,
                    committed: stable_how(committed),
                    verf,
                }),
                Err(e) => Err(Fail3 {
                    status: st(e),
                    body: wcc(v, &fh, before),
                }),
            }
        })
        .await;
    if res.is_ok() {
        ctx.server.data_io(IoKind::DataWrite, count).await;
    }
    res
}

pub async fn commit(ctx: &Ctx<'_>, a: Commit3Args) -> Commit3Res {
    let fh = handle(&a.file)?;
    if a.count != 0 && a.offset.checked_add(u64::from(a.count)).is_none() {
        return Err(Nfs3Error::Inval.into());
    }
    let verf = ctx.server.write_verifier();
    ctx.run(move |v, _| {
        let before = pre_op(v, &fh);
        match v.commit(&fh) {
            Ok(()) => Ok(Commit3ResOk {
                file_wcc: wcc(v, &fh, before),
                verf,
            }),
            Err(e) => Err(Fail3 {
                status: st(e),
                body: wcc(v, &fh, before),
            }),
        }
    })
    .await
}
