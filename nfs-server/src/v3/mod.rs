//! NFSv3 (RFC 1813) over the same vfs, handles, identities and write
//! verifier as NFSv4. Each procedure is a function of the call's context and
//! its decoded arguments that returns its typed result, failures included
//! (NFSv3 failures carry attributes); none touches bytes on the wire.
//!
//! Files: [`convert`] (vfs ↔ NFSv3 types, names, handles), [`attr`]
//! (GETATTR, SETATTR, ACCESS, FSSTAT, FSINFO, PATHCONF), [`io`] (READ,
//! WRITE, COMMIT), [`dir`] (LOOKUP, READLINK, CREATE, MKDIR, SYMLINK, MKNOD,
//! REMOVE, RMDIR, RENAME, LINK), [`readdir`] (READDIR, READDIRPLUS).

// A procedure's result is `Res3` = `Result<resok, Fail3<resfail>>`, and by
// the protocol's design the failure arm carries attributes as large as the
// success arm's; boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod attr;
pub mod convert;
pub mod dir;
pub mod io;
pub mod readdir;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use openefs_nfs_wire::nfs3::*;
use openefs_nfs_wire::xdr::{Decoder, Encoder, XdrDecode, XdrEncode};
use openefs_vfs::{Identity, Vfs};
use tracing::debug;

use crate::metrics::Outcome;
use crate::rpc::ProcReply;
use crate::server::Server;
use crate::settings::Settings;

/// What one NFSv3 call's procedure works with.
pub struct Ctx<'a> {
    pub server: &'a Server,
    /// The runtime settings when the call arrived.
    pub settings: Arc<Settings>,
    pub identity: Identity,
}

/// An NFSv3 result type: encodable, with a status, and constructible from a
/// bare status (empty `resfail` attributes).
pub trait Reply3: XdrEncode + Send + 'static {
    fn status(&self) -> Result<(), Nfs3Error>;
    fn fail(e: Nfs3Error) -> Self;
}

impl<T, F> Reply3 for Res3<T, F>
where
    T: XdrEncode + Send + 'static,
    F: XdrEncode + Default + Send + 'static,
{
    fn status(&self) -> Result<(), Nfs3Error> {
        self.as_ref().map(|_| ()).map_err(|f| f.status)
    }

    fn fail(e: Nfs3Error) -> Self {
        Err(e.into())
    }
}

impl Ctx<'_> {
    /// Runs `f` (blocking vfs work, which builds the whole result) on the
    /// blocking pool as the caller.
    pub async fn run<R: Reply3>(
        &self,
        f: impl FnOnce(&dyn Vfs, &Identity) -> R + Send + 'static,
    ) -> R {
        self.server
            .vfs_call(&self.identity, f)
            .await
            .unwrap_or_else(|| R::fail(Nfs3Error::Serverfault))
    }
}

/// Decodes the arguments, runs the procedure, encodes the result.
async fn call<A, R, Fut>(
    args: Bytes,
    run: impl FnOnce(A) -> Fut,
) -> Result<(Encoder, Result<(), Nfs3Error>), ()>
where
    A: XdrDecode,
    R: Reply3,
    Fut: Future<Output = R>,
{
    let a = match A::decode(&mut Decoder::new(args)) {
        Ok(a) => a,
        Err(e) => {
            debug!(error = %e, "undecodable NFSv3 arguments");
            return Err(());
        }
    };
    let res = run(a).await;
    let mut enc = Encoder::new();
    res.encode(&mut enc);
    Ok((enc, res.status()))
}

/// As [`call`], for a procedure that changes the file system: under the
/// read-only policy it is refused with ROFS once its arguments decode.
async fn modify<A, R, Fut>(
    ctx: &Ctx<'_>,
    args: Bytes,
    run: impl FnOnce(A) -> Fut,
) -> Result<(Encoder, Result<(), Nfs3Error>), ()>
where
    A: XdrDecode,
    R: Reply3,
    Fut: Future<Output = R>,
{
    if ctx.settings.policy.read_only {
        call(args, |_: A| async { R::fail(Nfs3Error::Rofs) }).await
    } else {
        call(args, run).await
    }
}

/// Runs one NFSv3 procedure.
pub async fn dispatch(
    server: &Server,
    settings: Arc<Settings>,
    identity: Identity,
    proc_: u32,
    args: Bytes,
) -> ProcReply {
    let Some(name) = proc_name(proc_) else {
        return ProcReply::ProcUnavail;
    };
    if proc_ == NFSPROC3_NULL {
        return ProcReply::Success(Encoder::new());
    }
    let started = Instant::now();
    let ctx = &Ctx {
        server,
        settings,
        identity,
    };
    let done = match proc_ {
        NFSPROC3_GETATTR => call(args, |a| attr::getattr(ctx, a)).await,
        NFSPROC3_SETATTR => modify(ctx, args, |a| attr::setattr(ctx, a)).await,
        NFSPROC3_LOOKUP => call(args, |a| dir::lookup(ctx, a)).await,
        NFSPROC3_ACCESS => call(args, |a| attr::access(ctx, a)).await,
        NFSPROC3_READLINK => call(args, |a| dir::readlink(ctx, a)).await,
        NFSPROC3_READ => call(args, |a| io::read(ctx, a)).await,
        NFSPROC3_WRITE => modify(ctx, args, |a| io::write(ctx, a)).await,
        NFSPROC3_CREATE => modify(ctx, args, |a| dir::create(ctx, a)).await,
        NFSPROC3_MKDIR => modify(ctx, args, |a| dir::mkdir(ctx, a)).await,
        NFSPROC3_SYMLINK => modify(ctx, args, |a| dir::symlink(ctx, a)).await,
        NFSPROC3_MKNOD => modify(ctx, args, dir::mknod).await,
        NFSPROC3_REMOVE => modify(ctx, args, |a| dir::remove(ctx, a, false)).await,
        NFSPROC3_RMDIR => modify(ctx, args, |a| dir::remove(ctx, a, true)).await,
        NFSPROC3_RENAME => modify(ctx, args, |a| dir::rename(ctx, a)).await,
        NFSPROC3_LINK => modify(ctx, args, |a| dir::link(ctx, a)).await,
        NFSPROC3_READDIR => call(args, |a| readdir::readdir(ctx, a)).await,
        NFSPROC3_READDIRPLUS => call(args, |a| readdir::readdirplus(ctx, a)).await,
        NFSPROC3_FSSTAT => call(args, |a| attr::fsstat(ctx, a)).await,
        NFSPROC3_FSINFO => call(args, |a| attr::fsinfo(ctx, a)).await,
        NFSPROC3_PATHCONF => call(args, |a| attr::pathconf(ctx, a)).await,
        NFSPROC3_COMMIT => call(args, |a| io::commit(ctx, a)).await,
        _ => return ProcReply::ProcUnavail,
    };
    match done {
        Ok((body, status)) => {
            if let Err(e) = status {
                debug!(proc = name, status = %e, "procedure failed");
            }
            server.metadata_io(name);
            server
                .metrics()
                .op_done(name, Outcome::V3(status), started.elapsed());
            ProcReply::Success(body)
        }
        Err(()) => ProcReply::GarbageArgs,
    }
}
