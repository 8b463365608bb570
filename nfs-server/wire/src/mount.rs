//! The MOUNT protocol, version 3 (RFC 1813 appendix I): how an NFSv3 client
//! gets the root file handle of an export.

use crate::nfs3::types::NfsFh3;
use crate::xdr::{
    Decoder, Encoder, Opaque, XdrDecode, XdrEncode, XdrError, decode_list, encode_list,
    status_error, xdr_enum, xdr_struct,
};

pub const MOUNT_PROGRAM: u32 = 100005;
pub const MOUNT_V3: u32 = 3;

pub const MOUNTPROC3_NULL: u32 = 0;
pub const MOUNTPROC3_MNT: u32 = 1;
pub const MOUNTPROC3_DUMP: u32 = 2;
pub const MOUNTPROC3_UMNT: u32 = 3;
pub const MOUNTPROC3_UMNTALL: u32 = 4;
pub const MOUNTPROC3_EXPORT: u32 = 5;

/// `MNTPATHLEN`.
pub const MNTPATHLEN: usize = 1024;
/// `MNTNAMLEN`.
pub const MNTNAMLEN: usize = 255;
/// Most entries a decoded mount or export list may hold.
pub const MAX_MOUNT_LIST: usize = 4096;
/// Most security flavors a decoded MNT reply may list.
pub const MAX_AUTH_FLAVORS: usize = 16;

/// `dirpath`: `string<MNTPATHLEN>`.
pub type DirPath = Opaque<MNTPATHLEN>;
/// `name`: `string<MNTNAMLEN>`.
pub type MountName = Opaque<MNTNAMLEN>;

/// The procedure's RFC name (`MOUNTPROC3_MNT`), for logs and metrics.
pub fn proc_name(proc_: u32) -> Option<&'static str> {
    Some(match proc_ {
        MOUNTPROC3_NULL => "MOUNTPROC3_NULL",
        MOUNTPROC3_MNT => "MOUNTPROC3_MNT",
        MOUNTPROC3_DUMP => "MOUNTPROC3_DUMP",
        MOUNTPROC3_UMNT => "MOUNTPROC3_UMNT",
        MOUNTPROC3_UMNTALL => "MOUNTPROC3_UMNTALL",
        MOUNTPROC3_EXPORT => "MOUNTPROC3_EXPORT",
        _ => return None,
    })
}

xdr_enum! {
    /// Every non-OK `mountstat3`.
    pub enum MountError {
        Perm = 1,
        Noent = 2,
        Io = 5,
        Acces = 13,
        Notdir = 20,
        Inval = 22,
        Nametoolong = 63,
        Notsupp = 10004,
        Serverfault = 10006,
    }
}

status_error!(MountError, "MNT3ERR_");

/// `mountres3_ok`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountResOk {
    pub fhandle: NfsFh3,
    /// AUTH_* flavors the client may use on this export, preferred first.
    pub auth_flavors: Vec<u32>,
}

impl XdrEncode for MountResOk {
    fn encode(&self, enc: &mut Encoder) {
        self.fhandle.encode(enc);
        self.auth_flavors.encode(enc);
    }
}

impl XdrDecode for MountResOk {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        Ok(Self {
            fhandle: NfsFh3::decode(dec)?,
            auth_flavors: dec.array("auth_flavors", MAX_AUTH_FLAVORS)?,
        })
    }
}

/// `mountres3`: every error arm is void.
pub type MountRes = Result<MountResOk, MountError>;

impl XdrEncode for Result<MountResOk, MountError> {
    fn encode(&self, enc: &mut Encoder) {
        match self {
            Ok(v) => {
                enc.put_u32(0);
                v.encode(enc);
            }
            Err(e) => e.encode(enc),
        }
    }
}

impl XdrDecode for Result<MountResOk, MountError> {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        match dec.u32()? {
            0 => MountResOk::decode(dec).map(Ok),
            code => MountError::try_from(code).map(Err),
        }
    }
}

xdr_struct! {
    /// `mountbody` without its link: who mounted what (DUMP).
    pub struct MountBody {
        pub hostname: MountName,
        pub directory: DirPath,
    }
}

/// `mountlist`: DUMP's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountList(pub Vec<MountBody>);

impl XdrEncode for MountList {
    fn encode(&self, enc: &mut Encoder) {
        encode_list(enc, &self.0);
    }
}

impl XdrDecode for MountList {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        decode_list(dec, "mountlist", MAX_MOUNT_LIST).map(Self)
    }
}

/// `exportnode` without its link: a directory and the groups (host names)
/// that may mount it; no groups means everyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportNode {
    pub dir: DirPath,
    pub groups: Vec<MountName>,
}

impl XdrEncode for ExportNode {
    fn encode(&self, enc: &mut Encoder) {
        self.dir.encode(enc);
        encode_list(enc, &self.groups);
    }
}

impl XdrDecode for ExportNode {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        Ok(Self {
            dir: DirPath::decode(dec)?,
            groups: decode_list(dec, "groups", MAX_MOUNT_LIST)?,
        })
    }
}

/// `exports`: EXPORT's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exports(pub Vec<ExportNode>);

impl XdrEncode for Exports {
    fn encode(&self, enc: &mut Encoder) {
        encode_list(enc, &self.0);
    }
}

impl XdrDecode for Exports {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        decode_list(dec, "exports", MAX_MOUNT_LIST).map(Self)
    }
}
