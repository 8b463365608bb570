//! ONC RPC version 2 (RFC 5531): record marking, call headers, credentials
//! and reply headers.

use bytes::{Buf, Bytes, BytesMut};

use crate::xdr::{
    Decoder, Encoder, Opaque, XdrDecode, XdrEncode, XdrError, xdr_enum, xdr_struct, xdr_union,
};

pub const RPC_VERSION: u32 = 2;
/// `opaque_auth.body` is at most 400 bytes (RFC 5531 §8.2).
pub const MAX_AUTH_BYTES: usize = 400;
/// AUTH_SYS `machinename` is `string<255>`.
pub const MAX_MACHINE_NAME: usize = 255;
/// AUTH_SYS carries at most 16 supplementary groups.
pub const MAX_AUTH_SYS_GIDS: usize = 16;

pub const AUTH_NONE: u32 = 0;
pub const AUTH_SYS: u32 = 1;
pub const AUTH_SHORT: u32 = 2;
pub const AUTH_DH: u32 = 3;
pub const RPCSEC_GSS: u32 = 6;
/// RFC 9289: a NULL call with this flavor asks whether the server does
/// RPC-over-TLS; the reply verifier then carries [`STARTTLS_VERIFIER`].
pub const AUTH_TLS: u32 = 7;
pub const STARTTLS_VERIFIER: &[u8] = b"STARTTLS";

const MSG_CALL: u32 = 0;
const MSG_REPLY: u32 = 1;

/// Fragment header bit marking the last fragment of a record.
pub const LAST_FRAGMENT: u32 = 0x8000_0000;
/// Largest length one fragment header can carry.
pub const MAX_FRAGMENT_LEN: usize = 0x7fff_ffff;

/// The 4-byte record-marking header for a fragment of `len` bytes.
///
/// Callers split payloads larger than [`MAX_FRAGMENT_LEN`]; this masks the
/// length so a mistake cannot set the last-fragment bit by accident.
pub fn fragment_header(len: usize, last: bool) -> [u8; 4] {
    debug_assert!(len <= MAX_FRAGMENT_LEN);
    let mut v = (len & MAX_FRAGMENT_LEN) as u32;
    if last {
        v |= LAST_FRAGMENT;
    }
    v.to_be_bytes()
}

/// Splits a fragment header into (length, is-last).
pub fn parse_fragment_header(header: [u8; 4]) -> (usize, bool) {
    let v = u32::from_be_bytes(header);
    ((v & !LAST_FRAGMENT) as usize, v & LAST_FRAGMENT != 0)
}

/// Record-marking failures; the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("RPC record of at least {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
}

/// Reassembles records from a byte stream, no larger than `max_record`.
/// Shaped for a `tokio_util::codec::Decoder`: feed it the read buffer, get
/// whole records back.
#[derive(Debug)]
pub struct RecordDecoder {
    max_record: usize,
    partial: BytesMut,
}

impl RecordDecoder {
    pub fn new(max_record: usize) -> Self {
        Self {
            max_record,
            partial: BytesMut::new(),
        }
    }

    /// Takes complete fragments out of `src`; returns a record once its last
    /// fragment arrived. Reserves room in `src` for the fragment being read
    /// (bounded by `max_record`).
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, RecordError> {
        loop {
            let Some(header) = src.get(..4) else {
                return Ok(None);
            };
            let (len, last) = parse_fragment_header([header[0], header[1], header[2], header[3]]);
            let total = self.partial.len().saturating_add(len);
            if total > self.max_record {
                return Err(RecordError::TooLarge {
                    len: total,
                    max: self.max_record,
                });
            }
            if src.len() < 4 + len {
                src.reserve(4 + len - src.len());
                return Ok(None);
            }
            src.advance(4);
            let fragment = src.split_to(len);
            if last {
                if self.partial.is_empty() {
                    return Ok(Some(fragment.freeze()));
                }
                self.partial.unsplit(fragment);
                return Ok(Some(self.partial.split().freeze()));
            }
            self.partial.unsplit(fragment);
        }
    }
}

xdr_struct! {
    /// `opaque_auth`: a flavor and its body.
    pub struct OpaqueAuth {
        pub flavor: u32,
        pub body: Opaque<MAX_AUTH_BYTES>,
    }
}

impl OpaqueAuth {
    /// AUTH_NONE with an empty body: the usual reply verifier.
    pub fn none() -> Self {
        Self {
            flavor: AUTH_NONE,
            body: Opaque::default(),
        }
    }
}

/// `authsys_parms` (RFC 5531 appendix A).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSys {
    pub stamp: u32,
    pub machinename: Opaque<MAX_MACHINE_NAME>,
    pub uid: u32,
    pub gid: u32,
    /// At most [`MAX_AUTH_SYS_GIDS`].
    pub gids: Vec<u32>,
}

impl XdrEncode for AuthSys {
    fn encode(&self, enc: &mut Encoder) {
        self.stamp.encode(enc);
        self.machinename.encode(enc);
        self.uid.encode(enc);
        self.gid.encode(enc);
        self.gids.encode(enc);
    }
}

impl XdrDecode for AuthSys {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        Ok(Self {
            stamp: dec.u32()?,
            machinename: Opaque::decode(dec)?,
            uid: dec.u32()?,
            gid: dec.u32()?,
            gids: dec.array("auth_sys gids", MAX_AUTH_SYS_GIDS)?,
        })
    }
}

/// A call's credential, interpreted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    None,
    Sys(AuthSys),
    /// RPCSEC_GSS (RFC 2203), body undecoded: not supported yet.
    Gss(Bytes),
    /// The RFC 9289 STARTTLS probe.
    Tls,
    /// Any other flavor.
    Other(OpaqueAuth),
}

impl Credential {
    /// Interprets a call's credential; a malformed AUTH_SYS body is
    /// `AUTH_BADCRED`, to be answered with [`RejectedReply::AuthError`].
    pub fn parse(cred: &OpaqueAuth) -> Result<Self, AuthStat> {
        match cred.flavor {
            AUTH_NONE => Ok(Self::None),
            AUTH_SYS => crate::xdr::from_bytes(cred.body.0.clone())
                .map(Self::Sys)
                .map_err(|_| AuthStat::BadCred),
            RPCSEC_GSS => Ok(Self::Gss(cred.body.0.clone())),
            AUTH_TLS => Ok(Self::Tls),
            _ => Ok(Self::Other(cred.clone())),
        }
    }
}

/// The header of an RPC call, up to the procedure arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallHeader {
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    pub cred: OpaqueAuth,
    pub verf: OpaqueAuth,
}

/// Why a record is not a usable call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Too short to hold even an xid: drop it.
    #[error("RPC message too short for an xid")]
    NoXid,
    /// A reply or unknown message type arrived where a call was expected:
    /// drop it.
    #[error("RPC message {xid:#x} is not a call (type {msg_type})")]
    NotACall { xid: u32, msg_type: u32 },
    /// Answer with [`RejectedReply::RpcMismatch`].
    #[error("RPC call {xid:#x} has RPC version {vers}")]
    RpcVersion { xid: u32, vers: u32 },
    /// The rest of the header is malformed: answer GARBAGE_ARGS or drop.
    #[error("RPC call {xid:#x} has a malformed header: {source}")]
    Garbage { xid: u32, source: XdrError },
}

impl CallHeader {
    /// Decodes a call header; `dec` is left at the procedure arguments.
    pub fn decode(dec: &mut Decoder) -> Result<Self, CallError> {
        let xid = dec.u32().map_err(|_| CallError::NoXid)?;
        let garbage = |source| CallError::Garbage { xid, source };
        let msg_type = dec.u32().map_err(garbage)?;
        if msg_type != MSG_CALL {
            return Err(CallError::NotACall { xid, msg_type });
        }
        let rpcvers = dec.u32().map_err(garbage)?;
        if rpcvers != RPC_VERSION {
            return Err(CallError::RpcVersion { xid, vers: rpcvers });
        }
        let mut rest = || -> Result<Self, XdrError> {
            Ok(Self {
                xid,
                prog: dec.u32()?,
                vers: dec.u32()?,
                proc_: dec.u32()?,
                cred: OpaqueAuth::decode(dec)?,
                verf: OpaqueAuth::decode(dec)?,
            })
        };
        rest().map_err(garbage)
    }
}

impl XdrEncode for CallHeader {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u32(self.xid);
        enc.put_u32(MSG_CALL);
        enc.put_u32(RPC_VERSION);
        enc.put_u32(self.prog);
        enc.put_u32(self.vers);
        enc.put_u32(self.proc_);
        self.cred.encode(enc);
        self.verf.encode(enc);
    }
}

xdr_struct! {
    /// Lowest and highest supported version.
    pub struct MismatchInfo {
        pub low: u32,
        pub high: u32,
    }
}

xdr_union! {
    /// `accepted_reply.reply_data`; on `Success` the procedure results follow
    /// the header.
    pub enum AcceptedBody {
        Success = 0,
        ProgUnavail = 1,
        ProgMismatch(MismatchInfo) = 2,
        ProcUnavail = 3,
        GarbageArgs = 4,
        SystemErr = 5,
    }
}

xdr_enum! {
    /// `auth_stat`.
    pub enum AuthStat {
        Ok = 0,
        BadCred = 1,
        RejectedCred = 2,
        BadVerf = 3,
        RejectedVerf = 4,
        TooWeak = 5,
        InvalidResp = 6,
        Failed = 7,
        KerbGeneric = 8,
        TimeExpire = 9,
        TktFile = 10,
        Decode = 11,
        NetAddr = 12,
        GssCredProblem = 13,
        GssCtxProblem = 14,
    }
}

xdr_union! {
    /// `rejected_reply`.
    pub enum RejectedReply {
        RpcMismatch(MismatchInfo) = 0,
        AuthError(AuthStat) = 1,
    }
}

xdr_struct! {
    pub struct AcceptedReply {
        pub verf: OpaqueAuth,
        pub body: AcceptedBody,
    }
}

xdr_union! {
    /// `reply_body`.
    pub enum ReplyStat {
        Accepted(AcceptedReply) = 0,
        Denied(RejectedReply) = 1,
    }
}

/// The header of an RPC reply; for an accepted `Success` the procedure
/// results are appended after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyHeader {
    pub xid: u32,
    pub stat: ReplyStat,
}

impl ReplyHeader {
    pub fn accepted(xid: u32, verf: OpaqueAuth, body: AcceptedBody) -> Self {
        Self {
            xid,
            stat: ReplyStat::Accepted(AcceptedReply { verf, body }),
        }
    }

    /// SUCCESS with an AUTH_NONE verifier; append the results.
    pub fn success(xid: u32) -> Self {
        Self::accepted(xid, OpaqueAuth::none(), AcceptedBody::Success)
    }

    pub fn prog_unavail(xid: u32) -> Self {
        Self::accepted(xid, OpaqueAuth::none(), AcceptedBody::ProgUnavail)
    }

    pub fn prog_mismatch(xid: u32, low: u32, high: u32) -> Self {
        let info = MismatchInfo { low, high };
        Self::accepted(xid, OpaqueAuth::none(), AcceptedBody::ProgMismatch(info))
    }

    pub fn proc_unavail(xid: u32) -> Self {
        Self::accepted(xid, OpaqueAuth::none(), AcceptedBody::ProcUnavail)
    }

    pub fn garbage_args(xid: u32) -> Self {
        Self::accepted(xid, OpaqueAuth::none(), AcceptedBody::GarbageArgs)
    }

    pub fn system_err(xid: u32) -> Self {
        Self::accepted(xid, OpaqueAuth::none(), AcceptedBody::SystemErr)
    }

    /// RPC_MISMATCH: we speak RPC version 2 only.
    pub fn rpc_mismatch(xid: u32) -> Self {
        let info = MismatchInfo {
            low: RPC_VERSION,
            high: RPC_VERSION,
        };
        Self {
            xid,
            stat: ReplyStat::Denied(RejectedReply::RpcMismatch(info)),
        }
    }

    pub fn auth_error(xid: u32, stat: AuthStat) -> Self {
        Self {
            xid,
            stat: ReplyStat::Denied(RejectedReply::AuthError(stat)),
        }
    }
}

impl XdrEncode for ReplyHeader {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u32(self.xid);
        enc.put_u32(MSG_REPLY);
        self.stat.encode(enc);
    }
}

impl XdrDecode for ReplyHeader {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        let xid = dec.u32()?;
        match dec.u32()? {
            MSG_REPLY => Ok(Self {
                xid,
                stat: ReplyStat::decode(dec)?,
            }),
            value => Err(XdrError::BadDiscriminant {
                what: "msg_type (expected REPLY)",
                value,
            }),
        }
    }
}
