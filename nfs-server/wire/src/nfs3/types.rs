//! NFSv3 data types shared by several procedures (RFC 1813 §2.5, §2.6).

use crate::xdr::{MAX_STRING, Opaque, xdr_enum, xdr_struct, xdr_union};

/// `NFS3_FHSIZE`.
pub const NFS3_FHSIZE: usize = 64;
pub const NFS3_COOKIEVERFSIZE: usize = 8;
pub const NFS3_CREATEVERFSIZE: usize = 8;
pub const NFS3_WRITEVERFSIZE: usize = 8;

/// `nfs_fh3`: at most 64 bytes.
pub type NfsFh3 = Opaque<NFS3_FHSIZE>;
/// `filename3` and `nfspath3` (`string<>`): capped at [`MAX_STRING`]; the
/// 255-byte name limit is the procedure's check (NFS3ERR_NAMETOOLONG).
pub type Filename3 = Opaque<MAX_STRING>;
pub type NfsPath3 = Opaque<MAX_STRING>;
pub type CookieVerf3 = [u8; NFS3_COOKIEVERFSIZE];
pub type CreateVerf3 = [u8; NFS3_CREATEVERFSIZE];
pub type WriteVerf3 = [u8; NFS3_WRITEVERFSIZE];

/// `stable_how`: the same values as NFSv4's `stable_how4`.
pub use crate::nfs4::types::StableHow;

pub const ACCESS3_READ: u32 = 0x0001;
pub const ACCESS3_LOOKUP: u32 = 0x0002;
pub const ACCESS3_MODIFY: u32 = 0x0004;
pub const ACCESS3_EXTEND: u32 = 0x0008;
pub const ACCESS3_DELETE: u32 = 0x0010;
pub const ACCESS3_EXECUTE: u32 = 0x0020;

/// FSINFO `properties` bits.
pub const FSF3_LINK: u32 = 0x0001;
pub const FSF3_SYMLINK: u32 = 0x0002;
pub const FSF3_HOMOGENEOUS: u32 = 0x0008;
pub const FSF3_CANSETTIME: u32 = 0x0010;

xdr_enum! {
    /// `ftype3`.
    pub enum Ftype3 {
        Reg = 1,
        Dir = 2,
        Blk = 3,
        Chr = 4,
        Lnk = 5,
        Sock = 6,
        Fifo = 7,
    }
}

xdr_struct! {
    /// `specdata3`: device major/minor.
    #[derive(Copy, Default)]
    pub struct SpecData3 {
        pub specdata1: u32,
        pub specdata2: u32,
    }
}

xdr_struct! {
    /// `nfstime3`.
    #[derive(Copy, Default, Hash)]
    pub struct NfsTime3 {
        pub seconds: u32,
        pub nseconds: u32,
    }
}

xdr_struct! {
    /// `fattr3`: 84 bytes on the wire.
    pub struct Fattr3 {
        pub ftype: Ftype3,
        pub mode: u32,
        pub nlink: u32,
        pub uid: u32,
        pub gid: u32,
        pub size: u64,
        pub used: u64,
        pub rdev: SpecData3,
        pub fsid: u64,
        pub fileid: u64,
        pub atime: NfsTime3,
        pub mtime: NfsTime3,
        pub ctime: NfsTime3,
    }
}

impl Fattr3 {
    /// Encoded size.
    pub const LEN: usize = 84;
}

/// `post_op_attr`.
pub type PostOpAttr = Option<Fattr3>;
/// `post_op_fh3`.
pub type PostOpFh3 = Option<NfsFh3>;

xdr_struct! {
    /// `wcc_attr`: what a client compares with its cache before a change.
    #[derive(Copy)]
    pub struct WccAttr {
        pub size: u64,
        pub mtime: NfsTime3,
        pub ctime: NfsTime3,
    }
}

/// `pre_op_attr`.
pub type PreOpAttr = Option<WccAttr>;

xdr_struct! {
    /// `wcc_data`: attributes before and after a change (weak cache
    /// consistency).
    #[derive(Default)]
    pub struct WccData {
        pub before: PreOpAttr,
        pub after: PostOpAttr,
    }
}

xdr_union! {
    /// `set_atime` / `set_mtime` (`time_how`).
    #[derive(Default)]
    pub enum SetTime3 {
        #[default]
        DontChange = 0,
        ServerTime = 1,
        ClientTime(NfsTime3) = 2,
    }
}

xdr_struct! {
    /// `sattr3`: each member is set only when present.
    #[derive(Default)]
    pub struct Sattr3 {
        pub mode: Option<u32>,
        pub uid: Option<u32>,
        pub gid: Option<u32>,
        pub size: Option<u64>,
        pub atime: SetTime3,
        pub mtime: SetTime3,
    }
}

xdr_struct! {
    /// `diropargs3`: a name in a directory.
    pub struct DirOpArgs3 {
        pub dir: NfsFh3,
        pub name: Filename3,
    }
}
