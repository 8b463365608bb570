//! ONC RPC dispatch: call header → program/version/procedure → NFSv4 NULL or
//! COMPOUND, with the protocol's error replies for everything else.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use openefs_nfs_wire::rpc::{AuthStat, CallError, CallHeader, Credential, ReplyHeader};
use openefs_nfs_wire::xdr::{Decoder, Encoder, XdrEncode};
use openefs_vfs::Identity;
use tracing::{Instrument, debug, debug_span};

use crate::compound::{CompoundReply, run_compound};
use crate::server::Server;

pub const NFS_PROGRAM: u32 = 100003;
pub const NFS_V4: u32 = 4;
const PROC_NULL: u32 = 0;
const PROC_COMPOUND: u32 = 1;

fn encode_header(header: ReplyHeader) -> Bytes {
    let mut enc = Encoder::new();
    header.encode(&mut enc);
    enc.into_bytes()
}

/// Header followed by already encoded results.
fn with_body(header: ReplyHeader, body: &[u8]) -> Bytes {
    let head = encode_header(header);
    let mut out = BytesMut::with_capacity(head.len() + body.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
    out.freeze()
}

impl Server {
    /// Handles one RPC record; `None` means send nothing (not a call).
    pub async fn handle_call(&self, record: Bytes) -> Option<Bytes> {
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
        let span = debug_span!("rpc", xid = format_args!("{xid:#x}"), proc = header.proc_);
        async move {
            if header.prog != NFS_PROGRAM {
                return Some(encode_header(ReplyHeader::prog_unavail(xid)));
            }
            if header.vers != NFS_V4 {
                return Some(encode_header(ReplyHeader::prog_mismatch(
                    xid, NFS_V4, NFS_V4,
                )));
            }
            let identity = match self.credential_identity(&header) {
                Ok(id) => id,
                Err(stat) => return Some(encode_header(ReplyHeader::auth_error(xid, stat))),
            };
            match header.proc_ {
                PROC_NULL => Some(encode_header(ReplyHeader::success(xid))),
                PROC_COMPOUND => {
                    let started = Instant::now();
                    let reply = run_compound(self, identity, dec.into_rest()).await;
                    debug!(took = ?started.elapsed(), "compound done");
                    Some(match reply {
                        CompoundReply::Results(body) => with_body(ReplyHeader::success(xid), &body),
                        CompoundReply::GarbageArgs => encode_header(ReplyHeader::garbage_args(xid)),
                    })
                }
                _ => Some(encode_header(ReplyHeader::proc_unavail(xid))),
            }
        }
        .instrument(span)
        .await
    }

    fn credential_identity(&self, header: &CallHeader) -> Result<Identity, AuthStat> {
        match Credential::parse(&header.cred)? {
            Credential::None => Ok(self.config().anonymous()),
            Credential::Sys(sys) => Ok(self.config().identity(sys.uid, sys.gid, &sys.gids)),
            // RPCSEC_GSS and the RFC 9289 TLS probe are not served yet; a
            // client told BADCRED falls back to AUTH_SYS / plain TCP.
            Credential::Gss(_) | Credential::Tls | Credential::Other(_) => Err(AuthStat::BadCred),
        }
    }
}
