//! Client and session management: EXCHANGE_ID, CREATE_SESSION,
//! DESTROY_SESSION, DESTROY_CLIENTID, BIND_CONN_TO_SESSION,
//! RECLAIM_COMPLETE, SECINFO, SECINFO_NO_NAME, and 4.0's SETCLIENTID and
//! SETCLIENTID_CONFIRM.

use openefs_nfs_wire::nfs4::MAX_COMPOUND_OPS;
use openefs_nfs_wire::nfs4::Nfs4Error;
use openefs_nfs_wire::nfs4::ops::*;
use openefs_nfs_wire::nfs4::types::*;
use openefs_nfs_wire::rpc::{AUTH_NONE, AUTH_SYS};
use openefs_nfs_wire::xdr::Opaque;

use crate::compound::Ctx;
use crate::config::MAX_MESSAGE;
use crate::ops::check_name;
use crate::state::Setclientid;

/// Slots per session: the Linux client's default `max_session_slots`.
const MAX_SLOTS: u32 = 64;
/// Largest reply kept in a slot for replay. Non-idempotent operations
/// (the ones clients ask to be cached) have small replies.
const MAX_CACHED_REPLY: u32 = 64 * 1024;

pub fn exchange_id(ctx: &mut Ctx<'_>, a: ExchangeId4Args) -> Result<ExchangeId4ResOk, Nfs4Error> {
    if !matches!(a.state_protect, StateProtect4A::None) {
        return Err(Nfs4Error::Notsupp);
    }
    // Server-only flags must not come from the client (RFC 8881 §18.35.3).
    if a.flags & EXCHGID4_FLAG_CONFIRMED_R != 0 {
        return Err(Nfs4Error::Inval);
    }
    let ex = ctx
        .server
        .state()
        .exchange_id(a.clientowner.ownerid.as_bytes(), a.clientowner.verifier);
    let mut flags = EXCHGID4_FLAG_USE_NON_PNFS;
    if ex.confirmed {
        flags |= EXCHGID4_FLAG_CONFIRMED_R;
    }
    // The same owner and scope as before a restart tell the client that
    // this is the same server, whose grace period it may reclaim in.
    let instance = Opaque(bytes::Bytes::copy_from_slice(ctx.server.server_id()));
    Ok(ExchangeId4ResOk {
        clientid: ex.client,
        sequenceid: ex.sequence,
        flags,
        state_protect: StateProtect4R::None,
        server_owner: ServerOwner4 {
            minor_id: 0,
            major_id: instance.clone(),
        },
        server_scope: instance,
        server_impl_id: Some(NfsImplId4 {
            domain: Utf8Str::from("openefs.io"),
            name: Utf8Str::from(concat!("openefs-nfsd ", env!("CARGO_PKG_VERSION"))),
            date: NfsTime4::default(),
        }),
    })
}

/// SETCLIENTID (4.0). The callback address is kept only to answer
/// CLID_INUSE: no delegation is granted, so the server never calls back.
pub fn setclientid(ctx: &mut Ctx<'_>, a: Setclientid4Args) -> Setclientid4Res {
    match ctx.server.state().setclientid(
        a.client.ownerid.as_bytes(),
        a.client.verifier,
        ctx.identity.uid,
        a.callback.cb_location,
    ) {
        Setclientid::Ok { client, confirm } => Setclientid4Res::Ok(Setclientid4ResOk {
            clientid: client,
            setclientid_confirm: confirm,
        }),
        Setclientid::InUse(addr) => Setclientid4Res::ClidInuse(addr),
    }
}

pub fn setclientid_confirm(ctx: &mut Ctx<'_>, a: SetclientidConfirm4Args) -> Result<(), Nfs4Error> {
    Ok(ctx.server.state().setclientid_confirm(
        a.clientid,
        a.setclientid_confirm,
        ctx.identity.uid,
    )?)
}

/// Our fore channel: the client's wishes within our limits.
fn negotiate(c: &ChannelAttrs4) -> ChannelAttrs4 {
    ChannelAttrs4 {
        headerpadsize: 0,
        maxrequestsize: c.maxrequestsize.min(MAX_MESSAGE),
        maxresponsesize: c.maxresponsesize.min(MAX_MESSAGE),
        maxresponsesize_cached: c.maxresponsesize_cached.min(MAX_CACHED_REPLY),
        maxoperations: c.maxoperations.min(MAX_COMPOUND_OPS as u32),
        maxrequests: c.maxrequests.clamp(1, MAX_SLOTS),
        rdma_ird: None,
    }
}

pub fn create_session(
    ctx: &mut Ctx<'_>,
    a: CreateSession4Args,
) -> Result<CreateSession4ResOk, Nfs4Error> {
    if a.fore_chan_attrs.maxrequestsize < 1024 || a.fore_chan_attrs.maxresponsesize < 1024 {
        return Err(Nfs4Error::Toosmall);
    }
    // No persistent reply cache, no RDMA, and no back channel (we grant no
    // delegations or layouts, so there is nothing to call back about).
    let flags = 0;
    let cs = ctx.server.state().create_session(
        a.clientid,
        a.sequence,
        flags,
        negotiate(&a.fore_chan_attrs),
    )?;
    Ok(CreateSession4ResOk {
        sessionid: cs.session,
        sequence: cs.sequence,
        flags: cs.flags,
        fore_chan_attrs: cs.fore,
        back_chan_attrs: ChannelAttrs4 {
            rdma_ird: None,
            ..a.back_chan_attrs
        },
    })
}

pub fn destroy_session(ctx: &mut Ctx<'_>, session: SessionId4) -> Result<(), Nfs4Error> {
    Ok(ctx.server.state().destroy_session(&session)?)
}

pub async fn destroy_clientid(ctx: &mut Ctx<'_>, client: ClientId4) -> Result<(), Nfs4Error> {
    let forget = ctx.server.state().destroy_client(client)?;
    // Awaited, so that a new incarnation's OPEN cannot find the record
    // still present and then lose it to this removal.
    ctx.server
        .forget_clients(forget.into_iter().collect())
        .await;
    Ok(())
}

pub fn bind_conn_to_session(
    ctx: &mut Ctx<'_>,
    a: BindConnToSession4Args,
) -> Result<BindConnToSession4ResOk, Nfs4Error> {
    ctx.server.state().session_client(&a.sessid)?;
    let dir = match a.dir {
        ChannelDirFromClient::Fore | ChannelDirFromClient::ForeOrBoth => ChannelDirFromServer::Fore,
        // There is no back channel to bind to.
        ChannelDirFromClient::Back | ChannelDirFromClient::BackOrBoth => {
            return Err(Nfs4Error::Notsupp);
        }
    };
    Ok(BindConnToSession4ResOk {
        sessid: a.sessid,
        dir,
        use_conn_in_rdma_mode: false,
    })
}

pub async fn reclaim_complete(ctx: &mut Ctx<'_>, one_fs: bool) -> Result<(), Nfs4Error> {
    let client = ctx.client()?;
    if one_fs {
        // Per-file-system form: we export one file system and track only
        // the global form.
        return Ok(());
    }
    ctx.server.state().reclaim_complete(client)?;
    // The last previous client to finish ends the grace period now rather
    // than at the reaper's next tick.
    ctx.server.end_grace_if_over().await;
    Ok(())
}

fn flavors() -> Vec<SecInfo4> {
    vec![SecInfo4::Flavor(AUTH_SYS), SecInfo4::Flavor(AUTH_NONE)]
}

pub async fn secinfo_no_name(
    ctx: &mut Ctx<'_>,
    style: SecinfoStyle4,
) -> Result<Vec<SecInfo4>, Nfs4Error> {
    let fh = ctx.fh()?.clone();
    if style == SecinfoStyle4::Parent {
        if fh == ctx.server.vfs().root() {
            return Err(Nfs4Error::Noent);
        }
        ctx.vfs(move |v, id| v.lookup_parent(id, &fh)).await?;
    }
    // SECINFO consumes the current filehandle (RFC 8881 §2.6.3.1.1.8).
    ctx.current_fh = None;
    Ok(flavors())
}

pub async fn secinfo(ctx: &mut Ctx<'_>, name: Utf8Str) -> Result<Vec<SecInfo4>, Nfs4Error> {
    let dir = ctx.fh()?.clone();
    let name = check_name(&name)?;
    ctx.vfs(move |v, id| v.lookup(id, &dir, &name)).await?;
    ctx.current_fh = None;
    Ok(flavors())
}
