//! ONC RPC dispatch: call header → (program, version) → NFSv4 NULL or
//! COMPOUND, an NFSv3 procedure or a MOUNT v3 procedure, with the
//! protocol's error replies for everything else. All share one TCP port.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use openefs_nfs_wire::mount::{MOUNT_PROGRAM, MOUNT_V3};
use openefs_nfs_wire::rpc::{AuthStat, CallError, CallHeader, Credential, ReplyHeader};
use openefs_nfs_wire::xdr::{Decoder, Encoder, XdrEncode};
use openefs_vfs::Identity;
use tracing::{Instrument, debug, debug_span};

use crate::compound::{CompoundReply, run_compound};
use crate::server::Server;
use crate::settings::{Policy, Settings};

pub const NFS_PROGRAM: u32 = 100003;
pub const NFS_V3: u32 = 3;
pub const NFS_V4: u32 = 4;
const PROC_NULL: u32 = 0;
const PROC_COMPOUND: u32 = 1;

/// What an NFSv3 or MOUNT procedure answers.
pub enum ProcReply {
    /// SUCCESS, followed by these encoded results.
    Success(Encoder),
    GarbageArgs,
    ProcUnavail,
}

/// An encoded reply as the chunks it was built from, in order: READ data
/// stays the buffer the file was read into, and the transport sends the
/// chunks with one vectored write instead of joining them.
pub type Reply = Vec<Bytes>;

fn encode_header(header: ReplyHeader) -> Reply {
    let mut enc = Encoder::new();
    header.encode(&mut enc);
    enc.into_chunks()
}

/// Header followed by already encoded results.
fn with_body(header: ReplyHeader, body: Reply) -> Reply {
    let mut out = encode_header(header);
    out.extend(body);
    out
}

/// The versions served of a program, lowest and highest (every version in
/// between is served too).
fn versions(prog: u32) -> Option<(u32, u32)> {
    match prog {
        NFS_PROGRAM => Some((NFS_V3, NFS_V4)),
        MOUNT_PROGRAM => Some((MOUNT_V3, MOUNT_V3)),
        _ => None,
    }
}

fn proc_reply(xid: u32, reply: ProcReply) -> Reply {
    match reply {
        ProcReply::Success(body) => {
            let mut enc = Encoder::new();
            ReplyHeader::success(xid).encode(&mut enc);
            enc.append(body);
            enc.into_chunks()
        }
        ProcReply::GarbageArgs => encode_header(ReplyHeader::garbage_args(xid)),
        ProcReply::ProcUnavail => encode_header(ReplyHeader::proc_unavail(xid)),
    }
}

impl Server {
    /// Handles one RPC record under `settings` (the connection's: one
    /// snapshot for the whole call, which sees the settings before or after
    /// a change, never a mix); `None` means send nothing (not a call).
    pub async fn handle_call(&self, record: Bytes, settings: Arc<Settings>) -> Option<Reply> {
        let mut dec = Decoder::new(record);
        let header = match CallHeader::decode(&mut dec) {
            Ok(h) => h,
            Err(e @ (CallError::NoXid | CallError::NotACall { .. })) => {
                debug!(error = %e, "dropping record");
                return None;
            }
            Err(CallError::RpcVersion { xid, .. }) => {
                return Some(encode_header(ReplyHeader::rpc_mismatch(xid)));
            }
            Err(CallError::Garbage { xid, source }) => {
                debug!(xid, error = %source, "malformed call header");
                return Some(encode_header(ReplyHeader::garbage_args(xid)));
            }
        };
        let xid = header.xid;
        let span = debug_span!(
            "rpc",
            xid = format_args!("{xid:#x}"),
            prog = header.prog,
            vers = header.vers,
            proc = header.proc_
        );
        async move {
            let Some((low, high)) = versions(header.prog) else {
                return Some(encode_header(ReplyHeader::prog_unavail(xid)));
            };
            if !(low..=high).contains(&header.vers) {
                return Some(encode_header(ReplyHeader::prog_mismatch(xid, low, high)));
            }
            let identity = match credential_identity(&settings.policy, &header) {
                Ok(id) => id,
                Err(stat) => return Some(encode_header(ReplyHeader::auth_error(xid, stat))),
            };
            let args = dec.into_rest();
            Some(match (header.prog, header.vers) {
                (NFS_PROGRAM, NFS_V4) => {
                    self.nfs4_call(xid, header.proc_, settings, identity, args)
                        .await
                }
                (NFS_PROGRAM, _) => proc_reply(
                    xid,
                    crate::v3::dispatch(self, settings, identity, header.proc_, args).await,
                ),
                _ => {
                    let host = match Credential::parse(&header.cred) {
                        Ok(Credential::Sys(sys)) => sys.machinename.0,
                        _ => Bytes::new(),
                    };
                    let reply =
                        crate::mount::dispatch(self, &identity, host, header.proc_, args).await;
                    proc_reply(xid, reply)
                }
            })
        }
        .instrument(span)
        .await
    }

    async fn nfs4_call(
        &self,
        xid: u32,
        proc_: u32,
        settings: Arc<Settings>,
        identity: Identity,
        args: Bytes,
    ) -> Reply {
        match proc_ {
            PROC_NULL => encode_header(ReplyHeader::success(xid)),
            PROC_COMPOUND => {
                let started = Instant::now();
                let reply = run_compound(self, settings, identity, args).await;
                debug!(took = ?started.elapsed(), "compound done");
                match reply {
                    CompoundReply::Results(body) => with_body(ReplyHeader::success(xid), body),
                    CompoundReply::GarbageArgs => encode_header(ReplyHeader::garbage_args(xid)),
                }
            }
            _ => encode_header(ReplyHeader::proc_unavail(xid)),
        }
    }
}

fn credential_identity(policy: &Policy, header: &CallHeader) -> Result<Identity, AuthStat> {
    match Credential::parse(&header.cred)? {
        Credential::None => Ok(policy.anonymous()),
        Credential::Sys(sys) => Ok(policy.identity(sys.uid, sys.gid, &sys.gids)),
        // RPCSEC_GSS and the RFC 9289 TLS probe are not served yet; a
        // client told BADCRED falls back to AUTH_SYS / plain TCP.
        Credential::Gss(_) | Credential::Tls | Credential::Other(_) => Err(AuthStat::BadCred),
    }
}
