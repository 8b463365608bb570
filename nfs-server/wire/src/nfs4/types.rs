//! NFSv4 data types shared by several operations (RFC 8881 §3, §18).

use crate::nfs4::attr::Bitmap4;
use crate::rpc::AuthSys;
use crate::xdr::{
    Decoder, Encoder, MAX_STRING, Opaque, XdrDecode, XdrEncode, XdrError, xdr_enum, xdr_struct,
    xdr_union,
};

pub const NFS4_FHSIZE: usize = 128;
pub const NFS4_VERIFIER_SIZE: usize = 8;
pub const NFS4_OTHER_SIZE: usize = 12;
pub const NFS4_OPAQUE_LIMIT: usize = 1024;
pub const NFS4_SESSIONID_SIZE: usize = 16;

/// `nfs_fh4`: at most 128 bytes.
pub type NfsFh4 = Opaque<NFS4_FHSIZE>;
/// `component4`, `utf8str_*`, `linktext4`: capped at [`MAX_STRING`]; the
/// 255-byte name limit is the operation's check (NFS4ERR_NAMETOOLONG).
pub type Utf8Str = Opaque<MAX_STRING>;
/// `opaque<NFS4_OPAQUE_LIMIT>`: owners, client and server ids.
pub type OwnerOpaque = Opaque<NFS4_OPAQUE_LIMIT>;
/// `opaque<>` fields with no protocol bound (security blobs, layout bodies):
/// capped at 64 KiB, far above any real use.
pub type Blob = Opaque<65536>;
pub type Verifier4 = [u8; NFS4_VERIFIER_SIZE];
pub type SessionId4 = [u8; NFS4_SESSIONID_SIZE];
pub type ClientId4 = u64;

xdr_enum! {
    /// `nfs_ftype4`.
    pub enum FileType {
        Reg = 1,
        Dir = 2,
        Blk = 3,
        Chr = 4,
        Lnk = 5,
        Sock = 6,
        Fifo = 7,
        AttrDir = 8,
        NamedAttr = 9,
    }
}

xdr_struct! {
    /// `nfstime4`.
    #[derive(Copy, Default, Hash)]
    pub struct NfsTime4 {
        pub seconds: i64,
        pub nseconds: u32,
    }
}

xdr_union! {
    /// `settime4`.
    pub enum SetTime4 {
        ServerTime = 0,
        ClientTime(NfsTime4) = 1,
    }
}

xdr_struct! {
    /// `fsid4`.
    #[derive(Copy, Default, Hash)]
    pub struct Fsid4 {
        pub major: u64,
        pub minor: u64,
    }
}

xdr_struct! {
    /// `specdata4`: device major/minor.
    #[derive(Copy, Default)]
    pub struct SpecData4 {
        pub specdata1: u32,
        pub specdata2: u32,
    }
}

xdr_struct! {
    /// `stateid4`.
    #[derive(Copy, Default, Hash)]
    pub struct Stateid4 {
        pub seqid: u32,
        pub other: [u8; NFS4_OTHER_SIZE],
    }
}

impl Stateid4 {
    /// The anonymous stateid (all zeros).
    pub const ANONYMOUS: Self = Self {
        seqid: 0,
        other: [0; NFS4_OTHER_SIZE],
    };
    /// The READ bypass stateid (all ones).
    pub const READ_BYPASS: Self = Self {
        seqid: u32::MAX,
        other: [0xff; NFS4_OTHER_SIZE],
    };
    /// The "current stateid" of RFC 8881 §16.2.3.1.2.
    pub const CURRENT: Self = Self {
        seqid: 1,
        other: [0; NFS4_OTHER_SIZE],
    };
    /// The invalid stateid.
    pub const INVALID: Self = Self {
        seqid: u32::MAX,
        other: [0; NFS4_OTHER_SIZE],
    };
}

xdr_struct! {
    /// `change_info4`.
    #[derive(Copy, Default)]
    pub struct ChangeInfo4 {
        pub atomic: bool,
        pub before: u64,
        pub after: u64,
    }
}

xdr_struct! {
    /// `state_owner4` (`open_owner4`, `lock_owner4`).
    #[derive(Hash)]
    pub struct StateOwner4 {
        pub clientid: ClientId4,
        pub owner: OwnerOpaque,
    }
}

xdr_struct! {
    /// `client_owner4` (and 4.0's `nfs_client_id4`, identical on the wire).
    pub struct ClientOwner4 {
        pub verifier: Verifier4,
        pub ownerid: OwnerOpaque,
    }
}

xdr_struct! {
    /// `server_owner4`.
    pub struct ServerOwner4 {
        pub minor_id: u64,
        pub major_id: OwnerOpaque,
    }
}

xdr_struct! {
    /// `nfs_impl_id4`.
    pub struct NfsImplId4 {
        pub domain: Utf8Str,
        pub name: Utf8Str,
        pub date: NfsTime4,
    }
}

xdr_struct! {
    /// `netaddr4` (`clientaddr4`): netid and universal address.
    pub struct NetAddr4 {
        pub netid: Utf8Str,
        pub addr: Utf8Str,
    }
}

xdr_struct! {
    /// `cb_client4` (4.0 SETCLIENTID).
    pub struct CbClient4 {
        pub cb_program: u32,
        pub cb_location: NetAddr4,
    }
}

xdr_struct! {
    /// `nfsace4`.
    pub struct NfsAce4 {
        pub acetype: u32,
        pub flag: u32,
        pub access_mask: u32,
        pub who: Utf8Str,
    }
}

xdr_enum! {
    /// `nfs_lock_type4`.
    pub enum LockType {
        Read = 1,
        Write = 2,
        ReadW = 3,
        WriteW = 4,
    }
}

xdr_enum! {
    /// `stable_how4`.
    pub enum StableHow {
        Unstable = 0,
        DataSync = 1,
        FileSync = 2,
    }
}

xdr_struct! {
    /// `channel_attrs4`.
    pub struct ChannelAttrs4 {
        pub headerpadsize: u32,
        pub maxrequestsize: u32,
        pub maxresponsesize: u32,
        pub maxresponsesize_cached: u32,
        pub maxoperations: u32,
        pub maxrequests: u32,
        pub rdma_ird: Option<u32>,
    }
}

xdr_enum! {
    /// `rpc_gss_svc_t` (RFC 2203).
    pub enum RpcGssSvc {
        None = 1,
        Integrity = 2,
        Privacy = 3,
    }
}

xdr_struct! {
    /// `gss_cb_handles4`.
    pub struct GssCbHandles4 {
        pub service: RpcGssSvc,
        pub handle_from_server: Blob,
        pub handle_from_client: Blob,
    }
}

xdr_union! {
    /// `callback_sec_parms4`.
    pub enum CallbackSecParms4 {
        None = crate::rpc::AUTH_NONE,
        Sys(AuthSys) = crate::rpc::AUTH_SYS,
        Gss(GssCbHandles4) = crate::rpc::RPCSEC_GSS,
    }
}

xdr_struct! {
    /// `state_protect_ops4`.
    pub struct StateProtectOps4 {
        pub must_enforce: Bitmap4,
        pub must_allow: Bitmap4,
    }
}

xdr_struct! {
    /// `ssv_sp_parms4`.
    pub struct SsvSpParms4 {
        pub ops: StateProtectOps4,
        pub hash_algs: Vec<Blob>,
        pub encr_algs: Vec<Blob>,
        pub window: u32,
        pub num_gss_handles: u32,
    }
}

xdr_union! {
    /// `state_protect4_a`; only `None` is supported by the server, which
    /// answers the others with NFS4ERR_NOTSUPP/ENCR_ALG_UNSUPP.
    pub enum StateProtect4A {
        None = 0,
        MachCred(StateProtectOps4) = 1,
        Ssv(SsvSpParms4) = 2,
    }
}

xdr_struct! {
    /// `ssv_prot_info4`.
    pub struct SsvProtInfo4 {
        pub ops: StateProtectOps4,
        pub hash_alg: u32,
        pub encr_alg: u32,
        pub ssv_len: u32,
        pub window: u32,
        pub handles: Vec<Blob>,
    }
}

xdr_union! {
    /// `state_protect4_r`.
    pub enum StateProtect4R {
        None = 0,
        MachCred(StateProtectOps4) = 1,
        Ssv(SsvProtInfo4) = 2,
    }
}

xdr_struct! {
    /// `rpcsec_gss_info`.
    pub struct RpcSecGssInfo {
        pub oid: Blob,
        pub qop: u32,
        pub service: RpcGssSvc,
    }
}

/// `secinfo4`: RPCSEC_GSS carries its mechanism; other flavors are bare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecInfo4 {
    Gss(RpcSecGssInfo),
    Flavor(u32),
}

impl XdrEncode for SecInfo4 {
    fn encode(&self, enc: &mut Encoder) {
        match self {
            Self::Gss(info) => {
                enc.put_u32(crate::rpc::RPCSEC_GSS);
                info.encode(enc);
            }
            Self::Flavor(f) => enc.put_u32(*f),
        }
    }
}

impl XdrDecode for SecInfo4 {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        match dec.u32()? {
            crate::rpc::RPCSEC_GSS => RpcSecGssInfo::decode(dec).map(Self::Gss),
            f => Ok(Self::Flavor(f)),
        }
    }
}

xdr_enum! {
    /// `open_delegation_type4`.
    pub enum OpenDelegationType {
        None = 0,
        Read = 1,
        Write = 2,
        NoneExt = 3,
    }
}

xdr_struct! {
    /// `nfs_modified_limit4`.
    pub struct NfsModifiedLimit4 {
        pub num_blocks: u32,
        pub bytes_per_block: u32,
    }
}

xdr_union! {
    /// `nfs_space_limit4`.
    pub enum NfsSpaceLimit4 {
        Size(u64) = 1,
        Blocks(NfsModifiedLimit4) = 2,
    }
}

xdr_struct! {
    /// `open_read_delegation4`.
    pub struct OpenReadDelegation4 {
        pub stateid: Stateid4,
        pub recall: bool,
        pub permissions: NfsAce4,
    }
}

xdr_struct! {
    /// `open_write_delegation4`.
    pub struct OpenWriteDelegation4 {
        pub stateid: Stateid4,
        pub recall: bool,
        pub space_limit: NfsSpaceLimit4,
        pub permissions: NfsAce4,
    }
}

/// `open_none_delegation4`: why no delegation was granted (4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WhyNoDelegation {
    NotWanted,
    /// `ond_server_will_push_deleg`.
    Contention(bool),
    /// `ond_server_will_signal_avail`.
    Resource(bool),
    NotSuppFtype,
    WriteDelegNotSuppFtype,
    NotSuppUpgrade,
    NotSuppDowngrade,
    Cancelled,
    IsDir,
}

impl XdrEncode for WhyNoDelegation {
    fn encode(&self, enc: &mut Encoder) {
        let (why, flag) = match self {
            Self::NotWanted => (0, None),
            Self::Contention(b) => (1, Some(*b)),
            Self::Resource(b) => (2, Some(*b)),
            Self::NotSuppFtype => (3, None),
            Self::WriteDelegNotSuppFtype => (4, None),
            Self::NotSuppUpgrade => (5, None),
            Self::NotSuppDowngrade => (6, None),
            Self::Cancelled => (7, None),
            Self::IsDir => (8, None),
        };
        enc.put_u32(why);
        if let Some(b) = flag {
            enc.put_bool(b);
        }
    }
}

impl XdrDecode for WhyNoDelegation {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        Ok(match dec.u32()? {
            0 => Self::NotWanted,
            1 => Self::Contention(dec.bool()?),
            2 => Self::Resource(dec.bool()?),
            3 => Self::NotSuppFtype,
            4 => Self::WriteDelegNotSuppFtype,
            5 => Self::NotSuppUpgrade,
            6 => Self::NotSuppDowngrade,
            7 => Self::Cancelled,
            8 => Self::IsDir,
            value => {
                return Err(XdrError::BadDiscriminant {
                    what: "why_no_delegation4",
                    value,
                });
            }
        })
    }
}

xdr_union! {
    /// `open_delegation4`. A 4.1 server that grants no delegation answers
    /// `NoneExt(NotWanted)` when the client asked for one (so it learns
    /// why) and `None` otherwise.
    pub enum OpenDelegation4 {
        None = 0,
        Read(OpenReadDelegation4) = 1,
        Write(OpenWriteDelegation4) = 2,
        NoneExt(WhyNoDelegation) = 3,
    }
}
