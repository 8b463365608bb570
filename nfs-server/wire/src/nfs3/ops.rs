//! Arguments and results of the NFSv3 procedures (RFC 1813 §3.3). Procedures
//! whose only argument is a file handle (GETATTR, READLINK, FSSTAT, FSINFO,
//! PATHCONF) take a bare [`NfsFh3`].

use crate::nfs3::status::Res3;
use crate::nfs3::types::*;
use crate::nfs4::ops::Data;
use crate::xdr::{
    Decoder, Encoder, XdrDecode, XdrEncode, XdrError, decode_list, encode_list, pad, xdr_struct,
    xdr_union,
};

/// Most directory entries a decoded listing may hold: far above what a
/// 1 MiB reply can carry, so only hostile input meets it.
pub const MAX_DIR_ENTRIES: usize = 65536;

pub type Getattr3Res = Res3<Fattr3, ()>;

xdr_struct! {
    pub struct Setattr3Args {
        pub object: NfsFh3,
        pub new_attributes: Sattr3,
        /// `sattrguard3`: apply only if the object's ctime is this.
        pub guard: Option<NfsTime3>,
    }
}

pub type Setattr3Res = Res3<WccData, WccData>;

xdr_struct! {
    pub struct Lookup3ResOk {
        pub object: NfsFh3,
        pub obj_attributes: PostOpAttr,
        pub dir_attributes: PostOpAttr,
    }
}

/// LOOKUP's argument is a [`DirOpArgs3`]; a failure still carries the
/// directory's attributes.
pub type Lookup3Res = Res3<Lookup3ResOk, PostOpAttr>;

xdr_struct! {
    pub struct Access3Args {
        pub object: NfsFh3,
        pub access: u32,
    }
}

xdr_struct! {
    pub struct Access3ResOk {
        pub obj_attributes: PostOpAttr,
        pub access: u32,
    }
}

pub type Access3Res = Res3<Access3ResOk, PostOpAttr>;

xdr_struct! {
    pub struct Readlink3ResOk {
        pub symlink_attributes: PostOpAttr,
        pub data: NfsPath3,
    }
}

pub type Readlink3Res = Res3<Readlink3ResOk, PostOpAttr>;

xdr_struct! {
    pub struct Read3Args {
        pub file: NfsFh3,
        pub offset: u64,
        pub count: u32,
    }
}

xdr_struct! {
    pub struct Read3ResOk {
        pub file_attributes: PostOpAttr,
        pub count: u32,
        pub eof: bool,
        pub data: Data,
    }
}

pub type Read3Res = Res3<Read3ResOk, PostOpAttr>;

xdr_struct! {
    pub struct Write3Args {
        pub file: NfsFh3,
        pub offset: u64,
        /// Must not exceed the length of `data` (the server checks).
        pub count: u32,
        pub stable: StableHow,
        pub data: Data,
    }
}

xdr_struct! {
    pub struct Write3ResOk {
        pub file_wcc: WccData,
        pub count: u32,
        pub committed: StableHow,
        pub verf: WriteVerf3,
    }
}

pub type Write3Res = Res3<Write3ResOk, WccData>;

xdr_union! {
    /// `createhow3`.
    pub enum CreateHow3 {
        Unchecked(Sattr3) = 0,
        Guarded(Sattr3) = 1,
        Exclusive(CreateVerf3) = 2,
    }
}

xdr_struct! {
    pub struct Create3Args {
        pub where_: DirOpArgs3,
        pub how: CreateHow3,
    }
}

xdr_struct! {
    /// `diropres3ok`: the result of CREATE, MKDIR, SYMLINK and MKNOD.
    pub struct DirOp3ResOk {
        pub obj: PostOpFh3,
        pub obj_attributes: PostOpAttr,
        pub dir_wcc: WccData,
    }
}

pub type DirOp3Res = Res3<DirOp3ResOk, WccData>;

xdr_struct! {
    pub struct Mkdir3Args {
        pub where_: DirOpArgs3,
        pub attributes: Sattr3,
    }
}

xdr_struct! {
    /// SYMLINK3args with its `symlinkdata3` inlined (same wire layout).
    pub struct Symlink3Args {
        pub where_: DirOpArgs3,
        pub symlink_attributes: Sattr3,
        pub symlink_data: NfsPath3,
    }
}

xdr_struct! {
    /// `devicedata3`.
    pub struct DeviceData3 {
        pub dev_attributes: Sattr3,
        pub spec: SpecData3,
    }
}

/// `mknoddata3`. `Other` holds the types MKNOD cannot make (regular
/// files, directories, symlinks): answer NFS3ERR_BADTYPE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MknodData3 {
    Chr(DeviceData3),
    Blk(DeviceData3),
    Sock(Sattr3),
    Fifo(Sattr3),
    Other(Ftype3),
}

impl XdrEncode for MknodData3 {
    fn encode(&self, enc: &mut Encoder) {
        match self {
            Self::Chr(d) => {
                Ftype3::Chr.encode(enc);
                d.encode(enc);
            }
            Self::Blk(d) => {
                Ftype3::Blk.encode(enc);
                d.encode(enc);
            }
            Self::Sock(a) => {
                Ftype3::Sock.encode(enc);
                a.encode(enc);
            }
            Self::Fifo(a) => {
                Ftype3::Fifo.encode(enc);
                a.encode(enc);
            }
            Self::Other(t) => t.encode(enc),
        }
    }
}

impl XdrDecode for MknodData3 {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        Ok(match Ftype3::decode(dec)? {
            Ftype3::Chr => Self::Chr(DeviceData3::decode(dec)?),
            Ftype3::Blk => Self::Blk(DeviceData3::decode(dec)?),
            Ftype3::Sock => Self::Sock(Sattr3::decode(dec)?),
            Ftype3::Fifo => Self::Fifo(Sattr3::decode(dec)?),
            other => Self::Other(other),
        })
    }
}

xdr_struct! {
    pub struct Mknod3Args {
        pub where_: DirOpArgs3,
        pub what: MknodData3,
    }
}

/// REMOVE and RMDIR take a [`DirOpArgs3`] and answer the directory's
/// `wcc_data` either way.
pub type Remove3Res = Res3<WccData, WccData>;

xdr_struct! {
    pub struct Rename3Args {
        pub from: DirOpArgs3,
        pub to: DirOpArgs3,
    }
}

xdr_struct! {
    /// Both arms of RENAME3res.
    #[derive(Default)]
    pub struct Rename3Wcc {
        pub fromdir_wcc: WccData,
        pub todir_wcc: WccData,
    }
}

pub type Rename3Res = Res3<Rename3Wcc, Rename3Wcc>;

xdr_struct! {
    pub struct Link3Args {
        pub file: NfsFh3,
        pub link: DirOpArgs3,
    }
}

xdr_struct! {
    /// Both arms of LINK3res.
    #[derive(Default)]
    pub struct Link3Wcc {
        pub file_attributes: PostOpAttr,
        pub linkdir_wcc: WccData,
    }
}

pub type Link3Res = Res3<Link3Wcc, Link3Wcc>;

xdr_struct! {
    pub struct Readdir3Args {
        pub dir: NfsFh3,
        pub cookie: u64,
        pub cookieverf: CookieVerf3,
        /// Upper bound on the encoded READDIR3resok.
        pub count: u32,
    }
}

xdr_struct! {
    /// `entry3` without its `nextentry` link (the list is a `Vec`).
    pub struct Entry3 {
        pub fileid: u64,
        pub name: Filename3,
        pub cookie: u64,
    }
}

xdr_struct! {
    pub struct Readdirplus3Args {
        pub dir: NfsFh3,
        pub cookie: u64,
        pub cookieverf: CookieVerf3,
        /// Upper bound on the names, fileids and cookies alone.
        pub dircount: u32,
        /// Upper bound on the encoded READDIRPLUS3resok.
        pub maxcount: u32,
    }
}

xdr_struct! {
    /// `entryplus3` without its `nextentry` link.
    pub struct Entryplus3 {
        pub fileid: u64,
        pub name: Filename3,
        pub cookie: u64,
        pub name_attributes: PostOpAttr,
        pub name_handle: PostOpFh3,
    }
}

/// READDIR3resok and READDIRPLUS3resok: the directory's attributes, the
/// cookie verifier, then `dirlist3` / `dirlistplus3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirList3<E> {
    pub dir_attributes: PostOpAttr,
    pub cookieverf: CookieVerf3,
    pub entries: Vec<E>,
    pub eof: bool,
}

impl<E: XdrEncode> XdrEncode for DirList3<E> {
    fn encode(&self, enc: &mut Encoder) {
        self.dir_attributes.encode(enc);
        self.cookieverf.encode(enc);
        encode_list(enc, &self.entries);
        enc.put_bool(self.eof);
    }
}

impl<E: XdrDecode> XdrDecode for DirList3<E> {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        Ok(Self {
            dir_attributes: PostOpAttr::decode(dec)?,
            cookieverf: CookieVerf3::decode(dec)?,
            entries: decode_list(dec, "dirlist3 entries", MAX_DIR_ENTRIES)?,
            eof: dec.bool()?,
        })
    }
}

pub type Readdir3Res = Res3<DirList3<Entry3>, PostOpAttr>;
pub type Readdirplus3Res = Res3<DirList3<Entryplus3>, PostOpAttr>;

fn opaque_len(n: usize) -> usize {
    4 + n + pad(n)
}

/// A directory entry's encoded sizes, for fitting a reply into the client's
/// limits.
pub trait DirEntry3: XdrEncode {
    /// Bytes that count against READDIRPLUS's `dircount` (the `entry3`
    /// part, with its list link).
    fn dir_len(&self) -> usize;
    /// Bytes of the whole entry, with its list link.
    fn encoded_len(&self) -> usize;
}

impl DirEntry3 for Entry3 {
    fn dir_len(&self) -> usize {
        4 + 8 + opaque_len(self.name.len()) + 8
    }

    fn encoded_len(&self) -> usize {
        self.dir_len()
    }
}

impl DirEntry3 for Entryplus3 {
    fn dir_len(&self) -> usize {
        4 + 8 + opaque_len(self.name.len()) + 8
    }

    fn encoded_len(&self) -> usize {
        let attr = 4 + self.name_attributes.as_ref().map_or(0, |_| Fattr3::LEN);
        let fh = 4 + self.name_handle.as_ref().map_or(0, |h| opaque_len(h.len()));
        self.dir_len() + attr + fh
    }
}

/// Collects directory entries while the encoded reply stays within the
/// client's `count`/`maxcount` and the entries within `dircount`.
#[derive(Debug)]
pub struct DirListBuilder<E> {
    maxcount: usize,
    dircount: usize,
    used: usize,
    dir_used: usize,
    entries: Vec<E>,
}

impl<E: DirEntry3> DirListBuilder<E> {
    /// Status, directory attributes, verifier, list terminator and `eof`.
    pub const OVERHEAD: usize = 4 + 4 + Fattr3::LEN + 8 + 4 + 4;

    /// `dircount` is READDIRPLUS's; READDIR passes `u32::MAX`.
    pub fn new(maxcount: u32, dircount: u32) -> Self {
        Self {
            maxcount: maxcount as usize,
            dircount: dircount as usize,
            used: Self::OVERHEAD,
            dir_used: 0,
            entries: Vec::new(),
        }
    }

    /// Adds `entry` if it fits; otherwise hands it back and the reply is
    /// complete (with `eof` false). If the very first entry does not fit
    /// `maxcount` the answer is NFS3ERR_TOOSMALL; a first entry beyond a
    /// tiny `dircount` is still taken, so a listing always progresses.
    pub fn push(&mut self, entry: E) -> Result<(), E> {
        let (len, dir_len) = (entry.encoded_len(), entry.dir_len());
        let over_dircount = self.dir_used + dir_len > self.dircount && !self.entries.is_empty();
        if self.used + len > self.maxcount || over_dircount {
            return Err(entry);
        }
        self.used += len;
        self.dir_used += dir_len;
        self.entries.push(entry);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Encoded size of the whole reply so far.
    pub fn encoded_len(&self) -> usize {
        self.used
    }

    pub fn finish(
        self,
        dir_attributes: PostOpAttr,
        cookieverf: CookieVerf3,
        eof: bool,
    ) -> DirList3<E> {
        DirList3 {
            dir_attributes,
            cookieverf,
            entries: self.entries,
            eof,
        }
    }
}

xdr_struct! {
    pub struct Fsstat3ResOk {
        pub obj_attributes: PostOpAttr,
        pub tbytes: u64,
        pub fbytes: u64,
        pub abytes: u64,
        pub tfiles: u64,
        pub ffiles: u64,
        pub afiles: u64,
        pub invarsec: u32,
    }
}

pub type Fsstat3Res = Res3<Fsstat3ResOk, PostOpAttr>;

xdr_struct! {
    pub struct Fsinfo3ResOk {
        pub obj_attributes: PostOpAttr,
        pub rtmax: u32,
        pub rtpref: u32,
        pub rtmult: u32,
        pub wtmax: u32,
        pub wtpref: u32,
        pub wtmult: u32,
        pub dtpref: u32,
        pub maxfilesize: u64,
        pub time_delta: NfsTime3,
        pub properties: u32,
    }
}

pub type Fsinfo3Res = Res3<Fsinfo3ResOk, PostOpAttr>;

xdr_struct! {
    pub struct Pathconf3ResOk {
        pub obj_attributes: PostOpAttr,
        pub linkmax: u32,
        pub name_max: u32,
        pub no_trunc: bool,
        pub chown_restricted: bool,
        pub case_insensitive: bool,
        pub case_preserving: bool,
    }
}

pub type Pathconf3Res = Res3<Pathconf3ResOk, PostOpAttr>;

xdr_struct! {
    pub struct Commit3Args {
        pub file: NfsFh3,
        pub offset: u64,
        pub count: u32,
    }
}

xdr_struct! {
    pub struct Commit3ResOk {
        pub file_wcc: WccData,
        pub verf: WriteVerf3,
    }
}

pub type Commit3Res = Res3<Commit3ResOk, WccData>;
