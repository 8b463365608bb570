//! Sample NFSv3 and MOUNT v3 values: every procedure's arguments and
//! results (both arms), listed once and used for round trips, truncations
//! and hostile-input decoding.
// NFSv3 failures carry attributes, so a result's `Err` arm is as large as
// its `Ok` arm by the protocol's design; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use bytes::Bytes;
use openefs_nfs_wire::mount::*;
use openefs_nfs_wire::nfs3::ops::*;
use openefs_nfs_wire::nfs3::types::*;
use openefs_nfs_wire::nfs3::{Fail3, Nfs3Error};
use openefs_nfs_wire::xdr::{self, Opaque};

pub fn fh(n: u8) -> NfsFh3 {
    Opaque(Bytes::from(vec![n; 28]))
}

pub fn name(s: &str) -> Filename3 {
    Filename3::from(s)
}

pub fn time(seconds: u32) -> NfsTime3 {
    NfsTime3 {
        seconds,
        nseconds: 999_999_999,
    }
}

pub fn fattr() -> Fattr3 {
    Fattr3 {
        ftype: Ftype3::Reg,
        mode: 0o644,
        nlink: 1,
        uid: 1000,
        gid: 100,
        size: 12345,
        used: 16384,
        rdev: SpecData3::default(),
        fsid: 0x0102_0304_0506_0708,
        fileid: 77,
        atime: time(1),
        mtime: time(2),
        ctime: time(3),
    }
}

pub fn wcc() -> WccData {
    WccData {
        before: Some(WccAttr {
            size: 1,
            mtime: time(5),
            ctime: time(6),
        }),
        after: Some(fattr()),
    }
}

pub fn sattr() -> Sattr3 {
    Sattr3 {
        mode: Some(0o755),
        uid: None,
        gid: Some(5),
        size: Some(0),
        atime: SetTime3::ServerTime,
        mtime: SetTime3::ClientTime(time(9)),
    }
}

pub fn dirop(n: &str) -> DirOpArgs3 {
    DirOpArgs3 {
        dir: fh(1),
        name: name(n),
    }
}

fn fail<F>(status: Nfs3Error, body: F) -> Fail3<F> {
    Fail3 { status, body }
}

fn diropres() -> DirOp3ResOk {
    DirOp3ResOk {
        obj: Some(fh(2)),
        obj_attributes: Some(fattr()),
        dir_wcc: wcc(),
    }
}

macro_rules! samples {
    ($($t:ty => $v:expr),* $(,)?) => {
        /// Encodes every sample, decodes it back and compares.
        pub fn round_trip_all() {
            $({
                let v: $t = $v;
                let b = xdr::to_bytes(&v);
                let back = xdr::from_bytes::<$t>(b)
                    .unwrap_or_else(|e| panic!("{}: {e}", stringify!($t)));
                assert_eq!(back, v, "{}", stringify!($t));
            })*
        }

        /// Every sample, encoded.
        pub fn encoded_samples() -> Vec<Bytes> {
            let mut out = Vec::new();
            $(out.push(xdr::to_bytes(&{ let v: $t = $v; v }));)*
            out
        }

        /// Runs every sample type's decoder on `input`.
        pub fn decode_each(input: &Bytes) {
            $(let _ = xdr::from_bytes::<$t>(input.clone());)*
        }
    };
}

samples! {
    NfsFh3 => fh(3),
    Getattr3Res => Ok(fattr()),
    Getattr3Res => Err(fail(Nfs3Error::Stale, ())),
    Setattr3Args => Setattr3Args { object: fh(1), new_attributes: sattr(), guard: Some(time(3)) },
    Setattr3Args => Setattr3Args { object: fh(1), new_attributes: Sattr3::default(), guard: None },
    Setattr3Res => Ok(wcc()),
    Setattr3Res => Err(fail(Nfs3Error::NotSync, wcc())),
    DirOpArgs3 => dirop("file"),
    Lookup3Res => Ok(Lookup3ResOk { object: fh(2), obj_attributes: Some(fattr()), dir_attributes: None }),
    Lookup3Res => Err(fail(Nfs3Error::Noent, Some(fattr()))),
    Access3Args => Access3Args { object: fh(1), access: ACCESS3_READ | ACCESS3_EXECUTE },
    Access3Res => Ok(Access3ResOk { obj_attributes: Some(fattr()), access: ACCESS3_READ }),
    Access3Res => Err(fail(Nfs3Error::Acces, None)),
    Readlink3Res => Ok(Readlink3ResOk { symlink_attributes: None, data: NfsPath3::from("../x") }),
    Readlink3Res => Err(fail(Nfs3Error::Inval, None)),
    Read3Args => Read3Args { file: fh(1), offset: 1 << 40, count: 65536 },
    Read3Res => Ok(Read3ResOk { file_attributes: Some(fattr()), count: 3, eof: true, data: Opaque(Bytes::from_static(b"abc")) }),
    Read3Res => Err(fail(Nfs3Error::Isdir, None)),
    Write3Args => Write3Args { file: fh(1), offset: 7, count: 5, stable: StableHow::FileSync, data: Opaque(Bytes::from_static(b"hello")) },
    Write3Res => Ok(Write3ResOk { file_wcc: wcc(), count: 5, committed: StableHow::Unstable, verf: [4; 8] }),
    Write3Res => Err(fail(Nfs3Error::Nospc, wcc())),
    Create3Args => Create3Args { where_: dirop("a"), how: CreateHow3::Unchecked(sattr()) },
    Create3Args => Create3Args { where_: dirop("b"), how: CreateHow3::Guarded(Sattr3::default()) },
    Create3Args => Create3Args { where_: dirop("c"), how: CreateHow3::Exclusive([8; 8]) },
    DirOp3Res => Ok(diropres()),
    DirOp3Res => Ok(DirOp3ResOk { obj: None, obj_attributes: None, dir_wcc: WccData::default() }),
    DirOp3Res => Err(fail(Nfs3Error::Exist, wcc())),
    Mkdir3Args => Mkdir3Args { where_: dirop("d"), attributes: sattr() },
    Symlink3Args => Symlink3Args { where_: dirop("l"), symlink_attributes: Sattr3::default(), symlink_data: NfsPath3::from("/t") },
    Mknod3Args => Mknod3Args { where_: dirop("c"), what: MknodData3::Chr(DeviceData3 { dev_attributes: sattr(), spec: SpecData3 { specdata1: 1, specdata2: 3 } }) },
    Mknod3Args => Mknod3Args { where_: dirop("b"), what: MknodData3::Blk(DeviceData3 { dev_attributes: Sattr3::default(), spec: SpecData3::default() }) },
    Mknod3Args => Mknod3Args { where_: dirop("s"), what: MknodData3::Sock(sattr()) },
    Mknod3Args => Mknod3Args { where_: dirop("f"), what: MknodData3::Fifo(Sattr3::default()) },
    Mknod3Args => Mknod3Args { where_: dirop("r"), what: MknodData3::Other(Ftype3::Reg) },
    Remove3Res => Ok(wcc()),
    Remove3Res => Err(fail(Nfs3Error::Notempty, WccData::default())),
    Rename3Args => Rename3Args { from: dirop("x"), to: dirop("y") },
    Rename3Res => Ok(Rename3Wcc { fromdir_wcc: wcc(), todir_wcc: WccData::default() }),
    Rename3Res => Err(fail(Nfs3Error::Xdev, Rename3Wcc::default())),
    Link3Args => Link3Args { file: fh(2), link: dirop("h") },
    Link3Res => Ok(Link3Wcc { file_attributes: Some(fattr()), linkdir_wcc: wcc() }),
    Link3Res => Err(fail(Nfs3Error::Mlink, Link3Wcc::default())),
    Readdir3Args => Readdir3Args { dir: fh(1), cookie: 0, cookieverf: [0; 8], count: 4096 },
    Readdir3Res => Ok(DirList3 {
        dir_attributes: Some(fattr()),
        cookieverf: [1; 8],
        entries: vec![
            Entry3 { fileid: 1, name: name("a"), cookie: 10 },
            Entry3 { fileid: 2, name: name("bcdef"), cookie: 20 },
        ],
        eof: true,
    }),
    Readdir3Res => Err(fail(Nfs3Error::BadCookie, None)),
    Readdirplus3Args => Readdirplus3Args { dir: fh(1), cookie: 5, cookieverf: [2; 8], dircount: 512, maxcount: 4096 },
    Readdirplus3Res => Ok(DirList3 {
        dir_attributes: None,
        cookieverf: [1; 8],
        entries: vec![
            Entryplus3 { fileid: 1, name: name("a"), cookie: 10, name_attributes: Some(fattr()), name_handle: Some(fh(4)) },
            Entryplus3 { fileid: 2, name: name("b"), cookie: 11, name_attributes: None, name_handle: None },
        ],
        eof: false,
    }),
    Readdirplus3Res => Err(fail(Nfs3Error::Toosmall, Some(fattr()))),
    Fsstat3Res => Ok(Fsstat3ResOk { obj_attributes: None, tbytes: 1 << 40, fbytes: 1 << 39, abytes: 1 << 38, tfiles: 100, ffiles: 50, afiles: 40, invarsec: 0 }),
    Fsstat3Res => Err(fail(Nfs3Error::Io, None)),
    Fsinfo3Res => Ok(Fsinfo3ResOk { obj_attributes: Some(fattr()), rtmax: 1 << 20, rtpref: 1 << 20, rtmult: 4096, wtmax: 1 << 20, wtpref: 1 << 20, wtmult: 4096, dtpref: 65536, maxfilesize: u64::MAX >> 1, time_delta: time(0), properties: FSF3_LINK | FSF3_CANSETTIME }),
    Fsinfo3Res => Err(fail(Nfs3Error::Serverfault, None)),
    Pathconf3Res => Ok(Pathconf3ResOk { obj_attributes: None, linkmax: 65000, name_max: 255, no_trunc: true, chown_restricted: true, case_insensitive: false, case_preserving: true }),
    Pathconf3Res => Err(fail(Nfs3Error::Badhandle, None)),
    Commit3Args => Commit3Args { file: fh(1), offset: 0, count: 0 },
    Commit3Res => Ok(Commit3ResOk { file_wcc: wcc(), verf: [7; 8] }),
    Commit3Res => Err(fail(Nfs3Error::Jukebox, WccData::default())),
    DirPath => DirPath::from("/"),
    MountRes => Ok(MountResOk { fhandle: fh(9), auth_flavors: vec![1, 0] }),
    MountRes => Err(MountError::Noent),
    MountList => MountList(vec![MountBody { hostname: MountName::from("client"), directory: DirPath::from("/") }]),
    MountList => MountList::default(),
    Exports => Exports(vec![
        ExportNode { dir: DirPath::from("/"), groups: vec![] },
        ExportNode { dir: DirPath::from("/b"), groups: vec![MountName::from("h1"), MountName::from("h2")] },
    ]),
}
