//! Vfs attributes ↔ NFSv4 `fattr4` values.

use openefs_nfs_wire::nfs4::Nfs4Error;
use openefs_nfs_wire::nfs4::attr::*;
use openefs_nfs_wire::nfs4::types::{FileType as NfsType, Fsid4, NfsTime4, SetTime4, SpecData4};
use openefs_nfs_wire::xdr::Opaque;
use openefs_vfs::{Attr, FileHandle, FileType, FsStat, SetAttr, SetTime, Timestamp};

use crate::config::MAX_IO;

/// Every attribute GETATTR can return.
pub const SUPPORTED: &[u32] = &[
    FATTR4_SUPPORTED_ATTRS,
    FATTR4_TYPE,
    FATTR4_FH_EXPIRE_TYPE,
    FATTR4_CHANGE,
    FATTR4_SIZE,
    FATTR4_LINK_SUPPORT,
    FATTR4_SYMLINK_SUPPORT,
    FATTR4_NAMED_ATTR,
    FATTR4_FSID,
    FATTR4_UNIQUE_HANDLES,
    FATTR4_LEASE_TIME,
    FATTR4_RDATTR_ERROR,
    FATTR4_CANSETTIME,
    FATTR4_CASE_INSENSITIVE,
    FATTR4_CASE_PRESERVING,
    FATTR4_CHOWN_RESTRICTED,
    FATTR4_FILEHANDLE,
    FATTR4_FILEID,
    FATTR4_FILES_AVAIL,
    FATTR4_FILES_FREE,
    FATTR4_FILES_TOTAL,
    FATTR4_HOMOGENEOUS,
    FATTR4_MAXFILESIZE,
    FATTR4_MAXNAME,
    FATTR4_MAXREAD,
    FATTR4_MAXWRITE,
    FATTR4_MODE,
    FATTR4_NO_TRUNC,
    FATTR4_NUMLINKS,
    FATTR4_OWNER,
    FATTR4_OWNER_GROUP,
    FATTR4_RAWDEV,
    FATTR4_SPACE_AVAIL,
    FATTR4_SPACE_FREE,
    FATTR4_SPACE_TOTAL,
    FATTR4_SPACE_USED,
    FATTR4_TIME_ACCESS,
    FATTR4_TIME_ACCESS_SET,
    FATTR4_TIME_DELTA,
    FATTR4_TIME_METADATA,
    FATTR4_TIME_MODIFY,
    FATTR4_TIME_MODIFY_SET,
    FATTR4_MOUNTED_ON_FILEID,
    FATTR4_SUPPATTR_EXCLCREAT,
];

/// Attributes SETATTR (and createattrs) can change.
const SETTABLE: &[u32] = &[
    FATTR4_SIZE,
    FATTR4_MODE,
    FATTR4_OWNER,
    FATTR4_OWNER_GROUP,
    FATTR4_TIME_ACCESS_SET,
    FATTR4_TIME_MODIFY_SET,
];

/// Attributes an EXCLUSIVE4_1 create may carry: not the times, which may
/// hold the create verifier.
const EXCLCREAT: &[u32] = &[FATTR4_SIZE, FATTR4_MODE, FATTR4_OWNER, FATTR4_OWNER_GROUP];

const STATFS_ATTRS: &[u32] = &[
    FATTR4_FILES_AVAIL,
    FATTR4_FILES_FREE,
    FATTR4_FILES_TOTAL,
    FATTR4_SPACE_AVAIL,
    FATTR4_SPACE_FREE,
    FATTR4_SPACE_TOTAL,
];

pub fn supported() -> Bitmap4 {
    Bitmap4::from_bits(SUPPORTED)
}

/// Whether answering `requested` needs [`openefs_vfs::Vfs::statfs`].
pub fn needs_statfs(requested: &Bitmap4) -> bool {
    STATFS_ATTRS.iter().any(|a| requested.contains(*a))
}

fn nfs_time(t: Timestamp) -> NfsTime4 {
    NfsTime4 {
        seconds: t.seconds,
        nseconds: t.nanos,
    }
}

fn nfs_type(t: FileType) -> NfsType {
    match t {
        FileType::Regular => NfsType::Reg,
        FileType::Directory => NfsType::Dir,
        FileType::Symlink => NfsType::Lnk,
        FileType::BlockDevice => NfsType::Blk,
        FileType::CharDevice => NfsType::Chr,
        FileType::Fifo => NfsType::Fifo,
        FileType::Socket => NfsType::Sock,
    }
}

/// Everything the server knows about one object, as attribute values.
pub struct AttrSource<'a> {
    pub attr: &'a Attr,
    pub handle: &'a FileHandle,
    pub statfs: Option<&'a FsStat>,
    pub lease_secs: u32,
}

impl AttrSource<'_> {
    pub fn values(&self) -> FileAttrs {
        let a = self.attr;
        let mut v = FileAttrs {
            supported_attrs: Some(supported()),
            file_type: Some(nfs_type(a.file_type)),
            fh_expire_type: Some(FH4_PERSISTENT),
            change: Some(a.change),
            size: Some(a.size),
            link_support: Some(true),
            symlink_support: Some(true),
            named_attr: Some(false),
            // The vfs gives one 64-bit id per backing file system; major is
            // enough to tell file systems apart.
            fsid: Some(Fsid4 {
                major: a.fsid,
                minor: 0,
            }),
            unique_handles: Some(true),
            lease_time: Some(self.lease_secs),
            rdattr_error: Some(Ok(())),
            cansettime: Some(true),
            case_insensitive: Some(false),
            case_preserving: Some(true),
            chown_restricted: Some(true),
            filehandle: Some(Opaque(bytes::Bytes::copy_from_slice(&self.handle.0))),
            fileid: Some(a.fileid),
            homogeneous: Some(true),
            maxfilesize: Some(i64::MAX as u64),
            maxname: Some(255),
            maxread: Some(u64::from(MAX_IO)),
            maxwrite: Some(u64::from(MAX_IO)),
            mode: Some(a.mode & 0o7777),
            no_trunc: Some(true),
            numlinks: Some(a.nlink),
            owner: Some(Opaque::from(a.uid.to_string().as_str())),
            owner_group: Some(Opaque::from(a.gid.to_string().as_str())),
            rawdev: Some(SpecData4 {
                specdata1: a.rdev.0,
                specdata2: a.rdev.1,
            }),
            space_used: Some(a.space_used),
            time_access: Some(nfs_time(a.atime)),
            time_delta: Some(NfsTime4 {
                seconds: 0,
                nseconds: 1,
            }),
            time_metadata: Some(nfs_time(a.ctime)),
            time_modify: Some(nfs_time(a.mtime)),
            // Mount points inside the export are not served, so every object
            // is its own "mounted on" object.
            mounted_on_fileid: Some(a.fileid),
            suppattr_exclcreat: Some(Bitmap4::from_bits(EXCLCREAT)),
            ..FileAttrs::default()
        };
        if let Some(s) = self.statfs {
            v.files_avail = Some(s.files_avail);
            v.files_free = Some(s.files_free);
            v.files_total = Some(s.files_total);
            v.space_avail = Some(s.bytes_avail);
            v.space_free = Some(s.bytes_free);
            v.space_total = Some(s.bytes_total);
        }
        v
    }

    pub fn encode(&self, requested: &Bitmap4) -> Fattr4 {
        self.values().encode_requested(requested)
    }
}

/// Owners are numeric strings ("1000"); names would need an id mapper.
pub fn parse_id(s: &Opaque<{ openefs_nfs_wire::xdr::MAX_STRING }>) -> Result<u32, Nfs4Error> {
    let text = s.as_str().map_err(|_| Nfs4Error::Badowner)?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Nfs4Error::Badowner);
    }
    text.parse().map_err(|_| Nfs4Error::Badowner)
}

fn set_time(t: &SetTime4) -> SetTime {
    match t {
        SetTime4::ServerTime => SetTime::ServerNow,
        SetTime4::ClientTime(t) => SetTime::Client(Timestamp {
            seconds: t.seconds,
            nanos: t.nseconds,
        }),
    }
}

/// A client's attributes to set (SETATTR, CREATE, OPEN createattrs) as a
/// vfs [`SetAttr`]; also returns the mask of what will be set (`attrsset`).
pub fn to_setattr(fattr: &Fattr4) -> Result<(SetAttr, Bitmap4), Nfs4Error> {
    for a in fattr.attrmask.iter() {
        if !SETTABLE.contains(&a) {
            return Err(if WRITABLE_ATTRS.contains(&a) || !SUPPORTED.contains(&a) {
                Nfs4Error::Attrnotsupp
            } else {
                Nfs4Error::Inval
            });
        }
    }
    let v = FileAttrs::decode(fattr).map_err(|e| e.status())?;
    let set = SetAttr {
        mode: v.mode.map(|m| m & 0o7777),
        uid: v.owner.as_ref().map(parse_id).transpose()?,
        gid: v.owner_group.as_ref().map(parse_id).transpose()?,
        size: v.size,
        atime: v.time_access_set.as_ref().map(set_time),
        mtime: v.time_modify_set.as_ref().map(set_time),
    };
    Ok((set, v.present()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openefs_nfs_wire::xdr::Encoder;
    use openefs_nfs_wire::xdr::XdrEncode;

    fn attr() -> Attr {
        Attr {
            file_type: FileType::Regular,
            mode: 0o100644,
            nlink: 1,
            uid: 1000,
            gid: 100,
            size: 5,
            space_used: 4096,
            rdev: (0, 0),
            fsid: 42,
            fileid: 7,
            atime: Timestamp::default(),
            mtime: Timestamp {
                seconds: 3,
                nanos: 4,
            },
            ctime: Timestamp::default(),
            change: 99,
        }
    }

    #[test]
    fn owner_is_numeric_and_mode_has_no_type_bits() {
        let a = attr();
        let fh = FileHandle(vec![1, 2]);
        let v = AttrSource {
            attr: &a,
            handle: &fh,
            statfs: None,
            lease_secs: 90,
        }
        .values();
        assert_eq!(v.owner.unwrap().as_bytes(), b"1000");
        assert_eq!(v.owner_group.unwrap().as_bytes(), b"100");
        assert_eq!(v.mode, Some(0o644));
        assert_eq!(v.space_total, None);
    }

    #[test]
    fn setattr_accepts_numeric_owners_only() {
        let mut enc = Encoder::new();
        Opaque::<4096>::from("1000").encode(&mut enc);
        let ok = Fattr4 {
            attrmask: Bitmap4::from_bits(&[FATTR4_OWNER]),
            attr_vals: Opaque(enc.into_bytes()),
        };
        let (set, mask) = to_setattr(&ok).unwrap();
        assert_eq!(
            (set.uid, mask),
            (Some(1000), Bitmap4::from_bits(&[FATTR4_OWNER]))
        );
        let mut enc = Encoder::new();
        Opaque::<4096>::from("alice@example").encode(&mut enc);
        let named = Fattr4 {
            attrmask: Bitmap4::from_bits(&[FATTR4_OWNER]),
            attr_vals: Opaque(enc.into_bytes()),
        };
        assert_eq!(to_setattr(&named).unwrap_err(), Nfs4Error::Badowner);
        let read_only = Fattr4 {
            attrmask: Bitmap4::from_bits(&[FATTR4_FILEID]),
            attr_vals: Opaque::default(),
        };
        assert_eq!(to_setattr(&read_only).unwrap_err(), Nfs4Error::Inval);
    }
}
