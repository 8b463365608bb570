//! Arguments and results of the NFSv4.0/4.1 operations (RFC 8881 §18,
//! RFC 7530 §16 for the 4.0-only ones). Single-value arguments are carried
//! directly in [`crate::nfs4::ArgOp`]; the structs here are the rest.

use crate::nfs4::attr::{Bitmap4, Fattr4};
use crate::nfs4::status::{Nfs4Error, Nfs4Status};
use crate::nfs4::types::{
    Blob, CallbackSecParms4, CbClient4, ChangeInfo4, ChannelAttrs4, ClientId4, ClientOwner4,
    FileType, LockType, NetAddr4, NfsImplId4, NfsTime4, OpenDelegation4, OpenDelegationType,
    OwnerOpaque, ServerOwner4, SessionId4, SpecData4, StableHow, StateOwner4, StateProtect4A,
    StateProtect4R, Stateid4, Utf8Str, Verifier4,
};
use crate::xdr::{
    Decoder, Encoder, Opaque, XdrDecode, XdrEncode, XdrError, xdr_enum, xdr_struct, xdr_union,
};

/// Cap on READ/WRITE payloads accepted from the wire: the Linux client's
/// largest rsize/wsize.
pub const MAX_DATA: usize = 1 << 20;
/// READ/WRITE payload, shared with the receive buffer (no copy).
pub type Data = Opaque<MAX_DATA>;

pub const ACCESS4_READ: u32 = 0x01;
pub const ACCESS4_LOOKUP: u32 = 0x02;
pub const ACCESS4_MODIFY: u32 = 0x04;
pub const ACCESS4_EXTEND: u32 = 0x08;
pub const ACCESS4_DELETE: u32 = 0x10;
pub const ACCESS4_EXECUTE: u32 = 0x20;

pub const OPEN4_SHARE_ACCESS_READ: u32 = 0x1;
pub const OPEN4_SHARE_ACCESS_WRITE: u32 = 0x2;
pub const OPEN4_SHARE_ACCESS_BOTH: u32 = 0x3;
pub const OPEN4_SHARE_DENY_NONE: u32 = 0x0;
pub const OPEN4_SHARE_DENY_READ: u32 = 0x1;
pub const OPEN4_SHARE_DENY_WRITE: u32 = 0x2;
pub const OPEN4_SHARE_DENY_BOTH: u32 = 0x3;
/// The delegation-want bits of `share_access` (4.1).
pub const OPEN4_SHARE_ACCESS_WANT_DELEG_MASK: u32 = 0xff00;
pub const OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE: u32 = 0x0000;
pub const OPEN4_SHARE_ACCESS_WANT_READ_DELEG: u32 = 0x0100;
pub const OPEN4_SHARE_ACCESS_WANT_WRITE_DELEG: u32 = 0x0200;
pub const OPEN4_SHARE_ACCESS_WANT_ANY_DELEG: u32 = 0x0300;
pub const OPEN4_SHARE_ACCESS_WANT_NO_DELEG: u32 = 0x0400;
pub const OPEN4_SHARE_ACCESS_WANT_CANCEL: u32 = 0x0500;
pub const OPEN4_SHARE_ACCESS_WANT_SIGNAL_DELEG_WHEN_RESRC_AVAIL: u32 = 0x10000;
pub const OPEN4_SHARE_ACCESS_WANT_PUSH_DELEG_WHEN_UNCONTENDED: u32 = 0x20000;

pub const OPEN4_RESULT_CONFIRM: u32 = 0x02;
pub const OPEN4_RESULT_LOCKTYPE_POSIX: u32 = 0x04;
pub const OPEN4_RESULT_PRESERVE_UNLINKED: u32 = 0x08;
pub const OPEN4_RESULT_MAY_NOTIFY_LOCK: u32 = 0x20;

pub const EXCHGID4_FLAG_SUPP_MOVED_REFER: u32 = 0x0000_0001;
pub const EXCHGID4_FLAG_SUPP_MOVED_MIGR: u32 = 0x0000_0002;
pub const EXCHGID4_FLAG_SUPP_FENCE_OPS: u32 = 0x0000_0004;
pub const EXCHGID4_FLAG_BIND_PRINC_STATEID: u32 = 0x0000_0100;
pub const EXCHGID4_FLAG_USE_NON_PNFS: u32 = 0x0001_0000;
pub const EXCHGID4_FLAG_USE_PNFS_MDS: u32 = 0x0002_0000;
pub const EXCHGID4_FLAG_USE_PNFS_DS: u32 = 0x0004_0000;
pub const EXCHGID4_FLAG_MASK_PNFS: u32 = 0x0007_0000;
pub const EXCHGID4_FLAG_UPD_CONFIRMED_REC_A: u32 = 0x4000_0000;
pub const EXCHGID4_FLAG_CONFIRMED_R: u32 = 0x8000_0000;

pub const CREATE_SESSION4_FLAG_PERSIST: u32 = 0x1;
pub const CREATE_SESSION4_FLAG_CONN_BACK_CHAN: u32 = 0x2;
pub const CREATE_SESSION4_FLAG_CONN_RDMA: u32 = 0x4;

pub const SEQ4_STATUS_CB_PATH_DOWN: u32 = 0x0001;
pub const SEQ4_STATUS_CB_GSS_CONTEXTS_EXPIRING: u32 = 0x0002;
pub const SEQ4_STATUS_CB_GSS_CONTEXTS_EXPIRED: u32 = 0x0004;
pub const SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED: u32 = 0x0008;
pub const SEQ4_STATUS_EXPIRED_SOME_STATE_REVOKED: u32 = 0x0010;
pub const SEQ4_STATUS_ADMIN_STATE_REVOKED: u32 = 0x0020;
pub const SEQ4_STATUS_RECALLABLE_STATE_REVOKED: u32 = 0x0040;
pub const SEQ4_STATUS_LEASE_MOVED: u32 = 0x0080;
pub const SEQ4_STATUS_RESTART_RECLAIM_NEEDED: u32 = 0x0100;
pub const SEQ4_STATUS_CB_PATH_DOWN_SESSION: u32 = 0x0200;
pub const SEQ4_STATUS_BACKCHANNEL_FAULT: u32 = 0x0400;
pub const SEQ4_STATUS_DEVID_CHANGED: u32 = 0x0800;
pub const SEQ4_STATUS_DEVID_DELETED: u32 = 0x1000;

/// A result type of one operation: how to build it from an error and read
/// its status back.
pub trait OpResult: XdrEncode + XdrDecode {
    fn from_error(e: Nfs4Error) -> Self;
    fn status(&self) -> Nfs4Status;
}

impl<T: XdrEncode + XdrDecode> OpResult for Result<T, Nfs4Error> {
    fn from_error(e: Nfs4Error) -> Self {
        Err(e)
    }

    fn status(&self) -> Nfs4Status {
        self.as_ref().map(|_| ()).map_err(|e| *e)
    }
}

xdr_struct! {
    pub struct Access4Args {
        pub access: u32,
    }
}

xdr_struct! {
    pub struct Access4ResOk {
        pub supported: u32,
        pub access: u32,
    }
}

xdr_struct! {
    pub struct Close4Args {
        pub seqid: u32,
        pub open_stateid: Stateid4,
    }
}

xdr_struct! {
    pub struct Commit4Args {
        pub offset: u64,
        pub count: u32,
    }
}

/// `createtype4`. `Other` holds the types CREATE cannot make (regular
/// files, named attributes): answer NFS4ERR_BADTYPE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateType4 {
    Link(Utf8Str),
    Blk(SpecData4),
    Chr(SpecData4),
    Sock,
    Fifo,
    Dir,
    Other(FileType),
}

impl XdrEncode for CreateType4 {
    fn encode(&self, enc: &mut Encoder) {
        match self {
            Self::Link(l) => {
                FileType::Lnk.encode(enc);
                l.encode(enc);
            }
            Self::Blk(d) => {
                FileType::Blk.encode(enc);
                d.encode(enc);
            }
            Self::Chr(d) => {
                FileType::Chr.encode(enc);
                d.encode(enc);
            }
            Self::Sock => FileType::Sock.encode(enc),
            Self::Fifo => FileType::Fifo.encode(enc),
            Self::Dir => FileType::Dir.encode(enc),
            Self::Other(t) => t.encode(enc),
        }
    }
}

impl XdrDecode for CreateType4 {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        Ok(match FileType::decode(dec)? {
            FileType::Lnk => Self::Link(Utf8Str::decode(dec)?),
            FileType::Blk => Self::Blk(SpecData4::decode(dec)?),
            FileType::Chr => Self::Chr(SpecData4::decode(dec)?),
            FileType::Sock => Self::Sock,
            FileType::Fifo => Self::Fifo,
            FileType::Dir => Self::Dir,
            other => Self::Other(other),
        })
    }
}

xdr_struct! {
    pub struct Create4Args {
        pub objtype: CreateType4,
        pub objname: Utf8Str,
        pub createattrs: Fattr4,
    }
}

xdr_struct! {
    pub struct Create4ResOk {
        pub cinfo: ChangeInfo4,
        pub attrset: Bitmap4,
    }
}

xdr_struct! {
    /// `open_to_lock_owner4`.
    pub struct OpenToLockOwner4 {
        pub open_seqid: u32,
        pub open_stateid: Stateid4,
        pub lock_seqid: u32,
        pub lock_owner: StateOwner4,
    }
}

xdr_struct! {
    /// `exist_lock_owner4`.
    pub struct ExistLockOwner4 {
        pub lock_stateid: Stateid4,
        pub lock_seqid: u32,
    }
}

xdr_union! {
    /// `locker4`, switched on `new_lock_owner`.
    pub enum Locker4 {
        Exist(ExistLockOwner4) = 0,
        New(OpenToLockOwner4) = 1,
    }
}

xdr_struct! {
    pub struct Lock4Args {
        pub locktype: LockType,
        pub reclaim: bool,
        pub offset: u64,
        pub length: u64,
        pub locker: Locker4,
    }
}

xdr_struct! {
    /// The conflicting lock, returned with NFS4ERR_DENIED.
    pub struct Lock4Denied {
        pub offset: u64,
        pub length: u64,
        pub locktype: LockType,
        pub owner: StateOwner4,
    }
}

/// `LOCK4res`. NFS4ERR_DENIED must be `Denied` (it carries the conflict),
/// never `Err(Nfs4Error::Denied)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lock4Res {
    Ok(Stateid4),
    Denied(Lock4Denied),
    Err(Nfs4Error),
}

impl XdrEncode for Lock4Res {
    fn encode(&self, enc: &mut Encoder) {
        match self {
            Self::Ok(s) => {
                enc.put_u32(0);
                s.encode(enc);
            }
            Self::Denied(d) => {
                Nfs4Error::Denied.encode(enc);
                d.encode(enc);
            }
            Self::Err(e) => e.encode(enc),
        }
    }
}

impl XdrDecode for Lock4Res {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        Ok(match Nfs4Status::decode(dec)? {
            Ok(()) => Self::Ok(Stateid4::decode(dec)?),
            Err(Nfs4Error::Denied) => Self::Denied(Lock4Denied::decode(dec)?),
            Err(e) => Self::Err(e),
        })
    }
}

impl OpResult for Lock4Res {
    fn from_error(e: Nfs4Error) -> Self {
        Self::Err(e)
    }

    fn status(&self) -> Nfs4Status {
        match self {
            Self::Ok(_) => Ok(()),
            Self::Denied(_) => Err(Nfs4Error::Denied),
            Self::Err(e) => Err(*e),
        }
    }
}

xdr_struct! {
    pub struct Lockt4Args {
        pub locktype: LockType,
        pub offset: u64,
        pub length: u64,
        pub owner: StateOwner4,
    }
}

/// `LOCKT4res`: OK is void; NFS4ERR_DENIED carries the conflict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lockt4Res {
    Ok,
    Denied(Lock4Denied),
    Err(Nfs4Error),
}

impl XdrEncode for Lockt4Res {
    fn encode(&self, enc: &mut Encoder) {
        match self {
            Self::Ok => enc.put_u32(0),
            Self::Denied(d) => {
                Nfs4Error::Denied.encode(enc);
                d.encode(enc);
            }
            Self::Err(e) => e.encode(enc),
        }
    }
}

impl XdrDecode for Lockt4Res {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        Ok(match Nfs4Status::decode(dec)? {
            Ok(()) => Self::Ok,
            Err(Nfs4Error::Denied) => Self::Denied(Lock4Denied::decode(dec)?),
            Err(e) => Self::Err(e),
        })
    }
}

impl OpResult for Lockt4Res {
    fn from_error(e: Nfs4Error) -> Self {
        Self::Err(e)
    }

    fn status(&self) -> Nfs4Status {
        match self {
            Self::Ok => Ok(()),
            Self::Denied(_) => Err(Nfs4Error::Denied),
            Self::Err(e) => Err(*e),
        }
    }
}

xdr_struct! {
    pub struct Locku4Args {
        pub locktype: LockType,
        pub seqid: u32,
        pub lock_stateid: Stateid4,
        pub offset: u64,
        pub length: u64,
    }
}

xdr_struct! {
    /// `creatverfattr`.
    pub struct CreatVerfAttr {
        pub verf: Verifier4,
        pub attrs: Fattr4,
    }
}

xdr_union! {
    /// `createhow4`.
    pub enum CreateHow4 {
        Unchecked(Fattr4) = 0,
        Guarded(Fattr4) = 1,
        /// Deprecated in 4.1 in favour of `Exclusive41`.
        Exclusive(Verifier4) = 2,
        Exclusive41(CreatVerfAttr) = 3,
    }
}

xdr_union! {
    /// `openflag4`.
    pub enum OpenFlag4 {
        NoCreate = 0,
        Create(CreateHow4) = 1,
    }
}

xdr_struct! {
    /// `open_claim_delegate_cur4`.
    pub struct OpenClaimDelegateCur4 {
        pub delegate_stateid: Stateid4,
        pub file: Utf8Str,
    }
}

xdr_union! {
    /// `open_claim4`.
    pub enum OpenClaim4 {
        /// File by name in the current (directory) filehandle.
        Null(Utf8Str) = 0,
        Previous(OpenDelegationType) = 1,
        DelegateCur(OpenClaimDelegateCur4) = 2,
        DelegatePrev(Utf8Str) = 3,
        /// The current filehandle is the file (4.1).
        Fh = 4,
        DelegCurFh(Stateid4) = 5,
        DelegPrevFh = 6,
    }
}

xdr_struct! {
    pub struct Open4Args {
        pub seqid: u32,
        /// Access bits plus the 4.1 `WANT_*` delegation bits.
        pub share_access: u32,
        pub share_deny: u32,
        pub owner: StateOwner4,
        pub openhow: OpenFlag4,
        pub claim: OpenClaim4,
    }
}

xdr_struct! {
    pub struct Open4ResOk {
        pub stateid: Stateid4,
        pub cinfo: ChangeInfo4,
        pub rflags: u32,
        pub attrset: Bitmap4,
        pub delegation: OpenDelegation4,
    }
}

xdr_struct! {
    pub struct OpenConfirm4Args {
        pub open_stateid: Stateid4,
        pub seqid: u32,
    }
}

xdr_struct! {
    pub struct OpenDowngrade4Args {
        pub open_stateid: Stateid4,
        pub seqid: u32,
        pub share_access: u32,
        pub share_deny: u32,
    }
}

xdr_struct! {
    pub struct Read4Args {
        pub stateid: Stateid4,
        pub offset: u64,
        pub count: u32,
    }
}

xdr_struct! {
    pub struct Read4ResOk {
        pub eof: bool,
        pub data: Data,
    }
}

xdr_struct! {
    pub struct Readdir4Args {
        pub cookie: u64,
        pub cookieverf: Verifier4,
        /// A hint this server ignores (RFC 8881 allows it).
        pub dircount: u32,
        /// Upper bound on the encoded `READDIR4resok`.
        pub maxcount: u32,
        pub attr_request: Bitmap4,
    }
}

xdr_struct! {
    /// `entry4` without its `nextentry` link (the list is a `Vec`).
    pub struct Entry4 {
        pub cookie: u64,
        pub name: Utf8Str,
        pub attrs: Fattr4,
    }
}

/// `READDIR4resok`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readdir4ResOk {
    pub cookieverf: Verifier4,
    pub entries: Vec<Entry4>,
    pub eof: bool,
}

impl XdrEncode for Readdir4ResOk {
    fn encode(&self, enc: &mut Encoder) {
        self.cookieverf.encode(enc);
        for e in &self.entries {
            enc.put_bool(true);
            e.encode(enc);
        }
        enc.put_bool(false);
        enc.put_bool(self.eof);
    }
}

impl XdrDecode for Readdir4ResOk {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        let cookieverf = Verifier4::decode(dec)?;
        let mut entries = Vec::new();
        // Each entry consumes at least 24 bytes, so the input bounds the loop.
        while dec.bool()? {
            entries.push(Entry4::decode(dec)?);
        }
        Ok(Self {
            cookieverf,
            entries,
            eof: dec.bool()?,
        })
    }
}

/// Collects READDIR entries while the encoded `READDIR4resok` stays within
/// the client's `maxcount`.
#[derive(Debug)]
pub struct ReaddirBuilder {
    maxcount: usize,
    used: usize,
    entries: Vec<Entry4>,
}

impl ReaddirBuilder {
    /// Verifier, list terminator and `eof`.
    const OVERHEAD: usize = 8 + 4 + 4;

    pub fn new(maxcount: u32) -> Self {
        Self {
            maxcount: maxcount as usize,
            used: Self::OVERHEAD,
            entries: Vec::new(),
        }
    }

    /// Bytes `entry` adds to the reply, including its list link.
    pub fn entry_len(entry: &Entry4) -> usize {
        let opaque = |n: usize| 4 + n + crate::xdr::pad(n);
        4 + 8
            + opaque(entry.name.len())
            + 4
            + 4 * entry.attrs.attrmask.words().len()
            + opaque(entry.attrs.attr_vals.len())
    }

    /// Adds `entry` if it fits; otherwise hands it back and the reply is
    /// complete (with `eof` false). If the very first entry does not fit
    /// the answer is NFS4ERR_TOOSMALL.
    pub fn push(&mut self, entry: Entry4) -> Result<(), Entry4> {
        let len = Self::entry_len(&entry);
        if self.used + len > self.maxcount {
            return Err(entry);
        }
        self.used += len;
        self.entries.push(entry);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Encoded size of the reply so far.
    pub fn encoded_len(&self) -> usize {
        self.used
    }

    pub fn finish(self, cookieverf: Verifier4, eof: bool) -> Readdir4ResOk {
        Readdir4ResOk {
            cookieverf,
            entries: self.entries,
            eof,
        }
    }
}

xdr_struct! {
    pub struct Rename4Args {
        pub oldname: Utf8Str,
        pub newname: Utf8Str,
    }
}

xdr_struct! {
    pub struct Rename4ResOk {
        pub source_cinfo: ChangeInfo4,
        pub target_cinfo: ChangeInfo4,
    }
}

xdr_struct! {
    pub struct Setattr4Args {
        pub stateid: Stateid4,
        pub obj_attributes: Fattr4,
    }
}

xdr_struct! {
    /// `SETATTR4res`: `attrsset` is present whatever the status.
    pub struct Setattr4Res {
        pub status: Nfs4Status,
        pub attrsset: Bitmap4,
    }
}

impl OpResult for Setattr4Res {
    fn from_error(e: Nfs4Error) -> Self {
        Self {
            status: Err(e),
            attrsset: Bitmap4::new(),
        }
    }

    fn status(&self) -> Nfs4Status {
        self.status
    }
}

xdr_struct! {
    /// 4.0 only.
    pub struct Setclientid4Args {
        pub client: ClientOwner4,
        pub callback: CbClient4,
        pub callback_ident: u32,
    }
}

xdr_struct! {
    pub struct Setclientid4ResOk {
        pub clientid: ClientId4,
        pub setclientid_confirm: Verifier4,
    }
}

/// `SETCLIENTID4res`: NFS4ERR_CLID_INUSE carries the address in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setclientid4Res {
    Ok(Setclientid4ResOk),
    ClidInuse(NetAddr4),
    Err(Nfs4Error),
}

impl XdrEncode for Setclientid4Res {
    fn encode(&self, enc: &mut Encoder) {
        match self {
            Self::Ok(r) => {
                enc.put_u32(0);
                r.encode(enc);
            }
            Self::ClidInuse(a) => {
                Nfs4Error::ClidInuse.encode(enc);
                a.encode(enc);
            }
            Self::Err(e) => e.encode(enc),
        }
    }
}

impl XdrDecode for Setclientid4Res {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        Ok(match Nfs4Status::decode(dec)? {
            Ok(()) => Self::Ok(Setclientid4ResOk::decode(dec)?),
            Err(Nfs4Error::ClidInuse) => Self::ClidInuse(NetAddr4::decode(dec)?),
            Err(e) => Self::Err(e),
        })
    }
}

impl OpResult for Setclientid4Res {
    fn from_error(e: Nfs4Error) -> Self {
        Self::Err(e)
    }

    fn status(&self) -> Nfs4Status {
        match self {
            Self::Ok(_) => Ok(()),
            Self::ClidInuse(_) => Err(Nfs4Error::ClidInuse),
            Self::Err(e) => Err(*e),
        }
    }
}

xdr_struct! {
    /// 4.0 only.
    pub struct SetclientidConfirm4Args {
        pub clientid: ClientId4,
        pub setclientid_confirm: Verifier4,
    }
}

xdr_struct! {
    pub struct Write4Args {
        pub stateid: Stateid4,
        pub offset: u64,
        pub stable: StableHow,
        pub data: Data,
    }
}

xdr_struct! {
    pub struct Write4ResOk {
        pub count: u32,
        pub committed: StableHow,
        pub writeverf: Verifier4,
    }
}

xdr_struct! {
    pub struct BackchannelCtl4Args {
        pub cb_program: u32,
        pub sec_parms: Vec<CallbackSecParms4>,
    }
}

xdr_enum! {
    /// `channel_dir_from_client4`.
    pub enum ChannelDirFromClient {
        Fore = 1,
        Back = 2,
        ForeOrBoth = 3,
        BackOrBoth = 7,
    }
}

xdr_enum! {
    /// `channel_dir_from_server4`.
    pub enum ChannelDirFromServer {
        Fore = 1,
        Back = 2,
        Both = 3,
    }
}

xdr_struct! {
    pub struct BindConnToSession4Args {
        pub sessid: SessionId4,
        pub dir: ChannelDirFromClient,
        pub use_conn_in_rdma_mode: bool,
    }
}

xdr_struct! {
    pub struct BindConnToSession4ResOk {
        pub sessid: SessionId4,
        pub dir: ChannelDirFromServer,
        pub use_conn_in_rdma_mode: bool,
    }
}

xdr_struct! {
    pub struct ExchangeId4Args {
        pub clientowner: ClientOwner4,
        pub flags: u32,
        pub state_protect: StateProtect4A,
        pub client_impl_id: Option<NfsImplId4>,
    }
}

xdr_struct! {
    pub struct ExchangeId4ResOk {
        pub clientid: ClientId4,
        pub sequenceid: u32,
        pub flags: u32,
        pub state_protect: StateProtect4R,
        pub server_owner: ServerOwner4,
        pub server_scope: OwnerOpaque,
        pub server_impl_id: Option<NfsImplId4>,
    }
}

xdr_struct! {
    pub struct CreateSession4Args {
        pub clientid: ClientId4,
        pub sequence: u32,
        pub flags: u32,
        pub fore_chan_attrs: ChannelAttrs4,
        pub back_chan_attrs: ChannelAttrs4,
        pub cb_program: u32,
        pub sec_parms: Vec<CallbackSecParms4>,
    }
}

xdr_struct! {
    pub struct CreateSession4ResOk {
        pub sessionid: SessionId4,
        pub sequence: u32,
        pub flags: u32,
        pub fore_chan_attrs: ChannelAttrs4,
        pub back_chan_attrs: ChannelAttrs4,
    }
}

xdr_struct! {
    pub struct GetDirDelegation4Args {
        pub signal_deleg_avail: bool,
        pub notification_types: Bitmap4,
        pub child_attr_delay: NfsTime4,
        pub dir_attr_delay: NfsTime4,
        pub child_attributes: Bitmap4,
        pub dir_attributes: Bitmap4,
    }
}

xdr_struct! {
    pub struct GetDirDelegation4ResOk {
        pub cookieverf: Verifier4,
        pub stateid: Stateid4,
        pub notification: Bitmap4,
        pub child_attributes: Bitmap4,
        pub dir_attributes: Bitmap4,
    }
}

xdr_union! {
    /// `GET_DIR_DELEGATION4res_non_fatal`; a server without directory
    /// delegations answers `Unavail(false)`.
    pub enum GetDirDelegationNonFatal {
        Ok(GetDirDelegation4ResOk) = 0,
        /// `gddrnf_will_signal_deleg_avail`.
        Unavail(bool) = 1,
    }
}

xdr_enum! {
    /// `secinfo_style4`.
    pub enum SecinfoStyle4 {
        CurrentFh = 0,
        Parent = 1,
    }
}

xdr_struct! {
    pub struct Sequence4Args {
        pub sessionid: SessionId4,
        pub sequenceid: u32,
        pub slotid: u32,
        pub highest_slotid: u32,
        pub cachethis: bool,
    }
}

xdr_struct! {
    pub struct Sequence4ResOk {
        pub sessionid: SessionId4,
        pub sequenceid: u32,
        pub slotid: u32,
        pub highest_slotid: u32,
        pub target_highest_slotid: u32,
        pub status_flags: u32,
    }
}

xdr_struct! {
    pub struct SetSsv4Args {
        pub ssv: Blob,
        pub digest: Blob,
    }
}

xdr_union! {
    /// `deleg_claim4`.
    pub enum DelegClaim4 {
        Previous(OpenDelegationType) = 1,
        Fh = 4,
        DelegPrevFh = 6,
    }
}

xdr_struct! {
    pub struct WantDelegation4Args {
        pub want: u32,
        pub claim: DelegClaim4,
    }
}
