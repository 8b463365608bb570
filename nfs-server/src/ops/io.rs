//! File data: READ, WRITE, COMMIT.

use std::sync::Arc;

use bytes::Bytes;
use openefs_nfs_wire::nfs4::Nfs4Error;
use openefs_nfs_wire::nfs4::ops::{Commit4Args, Read4Args, Read4ResOk, Write4Args, Write4ResOk};
use openefs_nfs_wire::nfs4::types::{StableHow, Stateid4, Verifier4};
use openefs_nfs_wire::xdr::Opaque;
use openefs_vfs::{FileHandle, OpenAccess, OpenFile, Stability};

use crate::compound::Ctx;
use crate::config::MAX_IO;
use crate::throughput::IoKind;

pub(crate) const READ: OpenAccess = OpenAccess {
    read: true,
    write: false,
};
pub(crate) const WRITE: OpenAccess = OpenAccess {
    read: false,
    write: true,
};

/// The open file to do I/O through: the open state's own file, or for the
/// special stateids (and reads through a write-only open, which POSIX
/// clients do for partial pages) a short-lived open as the caller, which
/// checks permission.
async fn file_for(
    ctx: &Ctx<'_>,
    stateid: Stateid4,
    fh: &FileHandle,
    need: OpenAccess,
) -> Result<Arc<OpenFile>, Nfs4Error> {
    let stateid = ctx.resolve_stateid(stateid)?;
    // I/O without open state could conflict with a share reservation not
    // yet reclaimed (RFC 8881 §8.4.2); READ_BYPASS reads ignore those.
    let bypass_read = stateid == Stateid4::READ_BYPASS && !need.write;
    if (stateid == Stateid4::ANONYMOUS || stateid == Stateid4::READ_BYPASS) && !bypass_read {
        ctx.server.state().check_not_grace()?;
    }
    if stateid != Stateid4::ANONYMOUS && stateid != Stateid4::READ_BYPASS {
        let open = ctx.server.state().open_for_io(ctx.client()?, stateid)?;
        if open.file.handle != *fh {
            return Err(Nfs4Error::BadStateid);
        }
        let allowed =
            |f: &OpenFile| (!need.read || f.access.read) && (!need.write || f.access.write);
        if need.write && open.access & crate::state::share::WRITE == 0 {
            return Err(Nfs4Error::Openmode);
        }
        if allowed(&open.file) {
            return Ok(open.file);
        }
    }
    match ctx.server.stateless_open(&ctx.identity, fh, need).await {
        Some(r) => r.map_err(crate::errors::vfs_status),
        None => Err(Nfs4Error::Serverfault),
    }
}

pub async fn read(ctx: &mut Ctx<'_>, a: Read4Args) -> Result<Read4ResOk, Nfs4Error> {
    let fh = ctx.fh()?.clone();
    let file = file_for(ctx, a.stateid, &fh, READ).await?;
    let count = a.count.min(MAX_IO);
    let offset = a.offset;
    let (data, eof) = ctx.vfs(move |v, _| v.read(&file, offset, count)).await?;
    ctx.server.data_io(IoKind::DataRead, data.len()).await;
    Ok(Read4ResOk {
        eof,
        data: Opaque(Bytes::from(data)),
    })
}

pub(crate) fn stability(s: StableHow) -> Stability {
    match s {
        StableHow::Unstable => Stability::Unstable,
        StableHow::DataSync => Stability::DataSync,
        StableHow::FileSync => Stability::FileSync,
    }
}

pub(crate) fn stable_how(s: Stability) -> StableHow {
    match s {
        Stability::Unstable => StableHow::Unstable,
        Stability::DataSync => StableHow::DataSync,
        Stability::FileSync => StableHow::FileSync,
    }
}

pub async fn write(ctx: &mut Ctx<'_>, a: Write4Args) -> Result<Write4ResOk, Nfs4Error> {
    let fh = ctx.fh()?.clone();
    let len = a.data.len();
    if a.offset
        .checked_add(len as u64)
        .is_none_or(|end| end > i64::MAX as u64)
    {
        return Err(Nfs4Error::Fbig);
    }
    let file = file_for(ctx, a.stateid, &fh, WRITE).await?;
    let (offset, data, how) = (a.offset, a.data.0, stability(a.stable));
    let committed = ctx
        .vfs(move |v, _| v.write(&file, offset, &data, how))
        .await?;
    ctx.server.data_io(IoKind::DataWrite, len).await;
    Ok(Write4ResOk {
        // The decoder caps data at MAX_DATA (1 MiB), so this cannot truncate.
        count: len as u32,
        committed: stable_how(committed),
        writeverf: ctx.server.write_verifier(),
    })
}

pub async fn commit(ctx: &mut Ctx<'_>, a: Commit4Args) -> Result<Verifier4, Nfs4Error> {
    let fh = ctx.fh()?.clone();
    if a.count != 0 && a.offset.checked_add(u64::from(a.count)).is_none() {
        return Err(Nfs4Error::Inval);
    }
    ctx.vfs(move |v, _| v.commit(&fh)).await?;
    Ok(ctx.server.write_verifier())
}
