//! COMPOUND: the operation table ([`ArgOp`], [`ResOp`]) and
//! [`Compound4Args`] / [`Compound4Res`].

use crate::nfs4::attr::{Bitmap4, Fattr4};
use crate::nfs4::ops::*;
use crate::nfs4::status::{Nfs4Error, Nfs4Status};
use crate::nfs4::types::{
    Blob, ChangeInfo4, ClientId4, NfsFh4, OpenDelegation4, SecInfo4, SessionId4, StateOwner4,
    Stateid4, Utf8Str, Verifier4,
};
use crate::xdr::{Decoder, Encoder, XdrDecode, XdrEncode, XdrError};

/// Operations accepted in one COMPOUND before decoding stops; the server's
/// negotiated `ca_maxoperations` is at most this.
pub const MAX_COMPOUND_OPS: usize = 128;

/// Operations defined by RFC 8881/7862 that this crate carries no
/// arguments for (pNFS, 4.2): decoded as [`ArgOp::Unsupported`], answered
/// with NFS4ERR_NOTSUPP.
pub const OP_GETDEVICEINFO: u32 = 47;
pub const OP_GETDEVICELIST: u32 = 48;
pub const OP_LAYOUTCOMMIT: u32 = 49;
pub const OP_LAYOUTGET: u32 = 50;
pub const OP_LAYOUTRETURN: u32 = 51;
pub const OP_ALLOCATE: u32 = 59;
pub const OP_COPY: u32 = 60;
pub const OP_COPY_NOTIFY: u32 = 61;
pub const OP_DEALLOCATE: u32 = 62;
pub const OP_IO_ADVISE: u32 = 63;
pub const OP_LAYOUTERROR: u32 = 64;
pub const OP_LAYOUTSTATS: u32 = 65;
pub const OP_OFFLOAD_CANCEL: u32 = 66;
pub const OP_OFFLOAD_STATUS: u32 = 67;
pub const OP_READ_PLUS: u32 = 68;
pub const OP_SEEK: u32 = 69;
pub const OP_WRITE_SAME: u32 = 70;
pub const OP_CLONE: u32 = 71;
/// The result op number for an undefined operation.
pub const OP_ILLEGAL: u32 = 10044;

/// True for defined operations decoded as [`ArgOp::Unsupported`].
pub fn is_known_unsupported(op: u32) -> bool {
    matches!(op, OP_GETDEVICEINFO..=OP_LAYOUTRETURN | OP_ALLOCATE..=OP_CLONE)
}

macro_rules! nfs_ops {
    ($($(#[$m:meta])* $konst:ident = $num:literal, $v:ident $(($args:ty))? => $res:ty;)*) => {
        $(pub const $konst: u32 = $num;)*

        /// One decoded operation of a COMPOUND (`nfs_argop4`).
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum ArgOp {
            $($(#[$m])* $v $(($args))?,)*
            /// A defined operation this crate has no arguments for; its
            /// arguments were not decoded, so it is the last op decoded.
            Unsupported(u32),
        }

        /// One operation result (`nfs_resop4`).
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum ResOp {
            $($v($res),)*
            /// A status-only result for an operation without a typed
            /// variant: [`ArgOp::Unsupported`] ones and `OP_ILLEGAL`.
            Other { op: u32, status: Nfs4Error },
        }

        impl ArgOp {
            /// The operation number.
            pub fn opnum(&self) -> u32 {
                match self {
                    $(Self::$v $(($crate::xdr::first_ident!(_x $args)))? => $num,)*
                    Self::Unsupported(op) => *op,
                }
            }

            /// Decodes the arguments of operation `op`; `None` if `op` is
            /// not a defined operation.
            fn decode_args(op: u32, dec: &mut Decoder) -> Option<Result<Self, XdrError>> {
                Some(match op {
                    $($num => Ok(Self::$v $((match <$args as XdrDecode>::decode(dec) {
                        Ok(a) => a,
                        Err(e) => return Some(Err(e)),
                    }))?),)*
                    op if is_known_unsupported(op) => Ok(Self::Unsupported(op)),
                    _ => return None,
                })
            }
        }

        /// Encodes the op number and arguments; `Unsupported` has only its
        /// number (its arguments were never decoded).
        impl XdrEncode for ArgOp {
            fn encode(&self, enc: &mut Encoder) {
                enc.put_u32(self.opnum());
                match self {
                    $(Self::$v $(($crate::xdr::first_ident!(x $args)))? => {
                        $(XdrEncode::encode($crate::xdr::first_ident!(x $args), enc);)?
                    })*
                    Self::Unsupported(_) => {}
                }
            }
        }

        impl ResOp {
            /// The operation number this result answers.
            pub fn opnum(&self) -> u32 {
                match self {
                    $(Self::$v(_) => $num,)*
                    Self::Other { op, .. } => *op,
                }
            }

            /// The status of this result; a COMPOUND stops at the first
            /// error.
            pub fn status(&self) -> Nfs4Status {
                match self {
                    $(Self::$v(r) => OpResult::status(r),)*
                    Self::Other { status, .. } => Err(*status),
                }
            }

            /// The error result of operation `op` (an undefined `op` gets
            /// an `OP_ILLEGAL` result).
            pub fn error(op: u32, e: Nfs4Error) -> Self {
                match op {
                    $($num => Self::$v(<$res as OpResult>::from_error(e)),)*
                    op if is_known_unsupported(op) => Self::Other { op, status: e },
                    _ => Self::Other { op: OP_ILLEGAL, status: e },
                }
            }
        }

        impl XdrEncode for ResOp {
            fn encode(&self, enc: &mut Encoder) {
                enc.put_u32(self.opnum());
                match self {
                    $(Self::$v(r) => r.encode(enc),)*
                    Self::Other { status, .. } => status.encode(enc),
                }
            }
        }

        impl XdrDecode for ResOp {
            fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
                match dec.u32()? {
                    $($num => Ok(Self::$v(<$res as XdrDecode>::decode(dec)?)),)*
                    op if op == OP_ILLEGAL || is_known_unsupported(op) => {
                        // Only error results can be carried without a type.
                        let status = Nfs4Error::decode(dec)?;
                        Ok(Self::Other { op, status })
                    }
                    value => Err(XdrError::BadDiscriminant { what: "nfs_resop4", value }),
                }
            }
        }
    };
}

nfs_ops! {
    OP_ACCESS = 3, Access(Access4Args) => Result<Access4ResOk, Nfs4Error>;
    OP_CLOSE = 4, Close(Close4Args) => Result<Stateid4, Nfs4Error>;
    /// Result: the write verifier.
    OP_COMMIT = 5, Commit(Commit4Args) => Result<Verifier4, Nfs4Error>;
    OP_CREATE = 6, Create(Create4Args) => Result<Create4ResOk, Nfs4Error>;
    OP_DELEGPURGE = 7, Delegpurge(ClientId4) => Nfs4Status;
    OP_DELEGRETURN = 8, Delegreturn(Stateid4) => Nfs4Status;
    /// `attr_request`.
    OP_GETATTR = 9, Getattr(Bitmap4) => Result<Fattr4, Nfs4Error>;
    OP_GETFH = 10, Getfh => Result<NfsFh4, Nfs4Error>;
    /// The new name in the current (directory) filehandle.
    OP_LINK = 11, Link(Utf8Str) => Result<ChangeInfo4, Nfs4Error>;
    OP_LOCK = 12, Lock(Lock4Args) => Lock4Res;
    OP_LOCKT = 13, Lockt(Lockt4Args) => Lockt4Res;
    OP_LOCKU = 14, Locku(Locku4Args) => Result<Stateid4, Nfs4Error>;
    OP_LOOKUP = 15, Lookup(Utf8Str) => Nfs4Status;
    OP_LOOKUPP = 16, Lookupp => Nfs4Status;
    OP_NVERIFY = 17, Nverify(Fattr4) => Nfs4Status;
    OP_OPEN = 18, Open(Open4Args) => Result<Open4ResOk, Nfs4Error>;
    /// `createdir`.
    OP_OPENATTR = 19, Openattr(bool) => Nfs4Status;
    /// 4.0 only.
    OP_OPEN_CONFIRM = 20, OpenConfirm(OpenConfirm4Args) => Result<Stateid4, Nfs4Error>;
    OP_OPEN_DOWNGRADE = 21, OpenDowngrade(OpenDowngrade4Args) => Result<Stateid4, Nfs4Error>;
    OP_PUTFH = 22, Putfh(NfsFh4) => Nfs4Status;
    OP_PUTPUBFH = 23, Putpubfh => Nfs4Status;
    OP_PUTROOTFH = 24, Putrootfh => Nfs4Status;
    OP_READ = 25, Read(Read4Args) => Result<Read4ResOk, Nfs4Error>;
    OP_READDIR = 26, Readdir(Readdir4Args) => Result<Readdir4ResOk, Nfs4Error>;
    OP_READLINK = 27, Readlink => Result<Utf8Str, Nfs4Error>;
    /// The name to remove from the current directory.
    OP_REMOVE = 28, Remove(Utf8Str) => Result<ChangeInfo4, Nfs4Error>;
    OP_RENAME = 29, Rename(Rename4Args) => Result<Rename4ResOk, Nfs4Error>;
    /// 4.0 only.
    OP_RENEW = 30, Renew(ClientId4) => Nfs4Status;
    OP_RESTOREFH = 31, Restorefh => Nfs4Status;
    OP_SAVEFH = 32, Savefh => Nfs4Status;
    OP_SECINFO = 33, Secinfo(Utf8Str) => Result<Vec<SecInfo4>, Nfs4Error>;
    OP_SETATTR = 34, Setattr(Setattr4Args) => Setattr4Res;
    /// 4.0 only.
    OP_SETCLIENTID = 35, Setclientid(Setclientid4Args) => Setclientid4Res;
    /// 4.0 only.
    OP_SETCLIENTID_CONFIRM = 36, SetclientidConfirm(SetclientidConfirm4Args) => Nfs4Status;
    OP_VERIFY = 37, Verify(Fattr4) => Nfs4Status;
    OP_WRITE = 38, Write(Write4Args) => Result<Write4ResOk, Nfs4Error>;
    /// 4.0 only.
    OP_RELEASE_LOCKOWNER = 39, ReleaseLockowner(StateOwner4) => Nfs4Status;
    OP_BACKCHANNEL_CTL = 40, BackchannelCtl(BackchannelCtl4Args) => Nfs4Status;
    OP_BIND_CONN_TO_SESSION = 41, BindConnToSession(BindConnToSession4Args) => Result<BindConnToSession4ResOk, Nfs4Error>;
    OP_EXCHANGE_ID = 42, ExchangeId(ExchangeId4Args) => Result<ExchangeId4ResOk, Nfs4Error>;
    OP_CREATE_SESSION = 43, CreateSession(CreateSession4Args) => Result<CreateSession4ResOk, Nfs4Error>;
    OP_DESTROY_SESSION = 44, DestroySession(SessionId4) => Nfs4Status;
    OP_FREE_STATEID = 45, FreeStateid(Stateid4) => Nfs4Status;
    OP_GET_DIR_DELEGATION = 46, GetDirDelegation(GetDirDelegation4Args) => Result<GetDirDelegationNonFatal, Nfs4Error>;
    OP_SECINFO_NO_NAME = 52, SecinfoNoName(SecinfoStyle4) => Result<Vec<SecInfo4>, Nfs4Error>;
    OP_SEQUENCE = 53, Sequence(Sequence4Args) => Result<Sequence4ResOk, Nfs4Error>;
    /// Result: `ssr_digest`.
    OP_SET_SSV = 54, SetSsv(SetSsv4Args) => Result<Blob, Nfs4Error>;
    /// Result: one status per stateid.
    OP_TEST_STATEID = 55, TestStateid(Vec<Stateid4>) => Result<Vec<Nfs4Status>, Nfs4Error>;
    OP_WANT_DELEGATION = 56, WantDelegation(WantDelegation4Args) => Result<OpenDelegation4, Nfs4Error>;
    OP_DESTROY_CLIENTID = 57, DestroyClientid(ClientId4) => Nfs4Status;
    /// `rca_one_fs`.
    OP_RECLAIM_COMPLETE = 58, ReclaimComplete(bool) => Nfs4Status;
}

/// Where and why decoding of a COMPOUND's operations stopped early. The
/// server executes the ops before it, then appends [`Self::result`] and
/// ends the COMPOUND with that status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpDecodeError {
    /// Position of the failed op in the COMPOUND.
    pub index: usize,
    /// The op number to answer with (`OP_ILLEGAL` when undefined or
    /// unreadable).
    pub resop: u32,
    /// NFS4ERR_OP_ILLEGAL or NFS4ERR_BADXDR.
    pub status: Nfs4Error,
}

impl OpDecodeError {
    /// The result to append for the failed op.
    pub fn result(&self) -> ResOp {
        ResOp::error(self.resop, self.status)
    }
}

/// `COMPOUND4args`, decoded op by op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compound4Args {
    /// Echoed in the reply.
    pub tag: Utf8Str,
    pub minorversion: u32,
    /// The op count the client sent. When it exceeds [`MAX_COMPOUND_OPS`]
    /// no op is decoded: answer NFS4ERR_TOO_MANY_OPS (4.1) or
    /// NFS4ERR_RESOURCE (4.0) — as when it exceeds the session's limit.
    pub declared_ops: u32,
    pub ops: Vec<ArgOp>,
    /// Set when an op could not be decoded; `ops` holds those before it.
    pub error: Option<OpDecodeError>,
}

impl Compound4Args {
    /// Decodes a COMPOUND. `Err` only when the header (tag, minor version,
    /// count) is malformed: answer GARBAGE_ARGS. A bad operation is
    /// reported in [`Self::error`] instead.
    pub fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        let tag = Utf8Str::decode(dec)?;
        let minorversion = dec.u32()?;
        let declared_ops = dec.u32()?;
        let mut args = Self {
            tag,
            minorversion,
            declared_ops,
            ops: Vec::new(),
            error: None,
        };
        if declared_ops as usize > MAX_COMPOUND_OPS {
            return Ok(args);
        }
        for index in 0..declared_ops as usize {
            let stop = |resop, status| {
                Some(OpDecodeError {
                    index,
                    resop,
                    status,
                })
            };
            let Ok(op) = dec.u32() else {
                args.error = stop(OP_ILLEGAL, Nfs4Error::Badxdr);
                break;
            };
            match ArgOp::decode_args(op, dec) {
                None => {
                    args.error = stop(OP_ILLEGAL, Nfs4Error::OpIllegal);
                    break;
                }
                Some(Err(_)) => {
                    args.error = stop(op, Nfs4Error::Badxdr);
                    break;
                }
                Some(Ok(a)) => {
                    let last = matches!(a, ArgOp::Unsupported(_));
                    args.ops.push(a);
                    if last {
                        break;
                    }
                }
            }
        }
        Ok(args)
    }
}

/// Encodes the tag, minor version and `ops` (for clients and tests; the
/// declared count is `ops.len()`).
impl XdrEncode for Compound4Args {
    fn encode(&self, enc: &mut Encoder) {
        self.tag.encode(enc);
        enc.put_u32(self.minorversion);
        self.ops.encode(enc);
    }
}

/// `COMPOUND4res`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compound4Res {
    /// The status of the last result (`Ok` when all succeeded).
    pub status: Nfs4Status,
    pub tag: Utf8Str,
    pub results: Vec<ResOp>,
}

impl Compound4Res {
    /// A reply whose status is that of its last result, as RFC 8881
    /// §16.2.3 requires.
    pub fn new(tag: Utf8Str, results: Vec<ResOp>) -> Self {
        let status = results.last().map_or(Ok(()), ResOp::status);
        Self {
            status,
            tag,
            results,
        }
    }
}

impl XdrEncode for Compound4Res {
    fn encode(&self, enc: &mut Encoder) {
        self.status.encode(enc);
        self.tag.encode(enc);
        self.results.encode(enc);
    }
}

impl XdrDecode for Compound4Res {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        Ok(Self {
            status: Nfs4Status::decode(dec)?,
            tag: Utf8Str::decode(dec)?,
            results: dec.array("nfs_resop4", MAX_COMPOUND_OPS)?,
        })
    }
}
