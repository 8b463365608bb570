//! NFSv3 and MOUNT v3: round trips of every procedure's arguments and
//! results, requests and replies laid out by hand from RFC 1813's XDR (not
//! by this crate's encoder), bounds on hostile lengths, and the directory
//! listing budget.

mod common;

use bytes::Bytes;
use common::nfs3::*;
use common::wire::Wire;
use openefs_nfs_wire::mount::*;
use openefs_nfs_wire::nfs3::ops::*;
use openefs_nfs_wire::nfs3::types::*;
use openefs_nfs_wire::nfs3::*;
use openefs_nfs_wire::xdr::{self, Encoder, Opaque, XdrEncode, XdrError};

impl Wire {
    /// `fattr3` in RFC 1813's field order.
    fn fattr(self, a: &Fattr3) -> Self {
        self.u32(a.ftype as u32)
            .u32(a.mode)
            .u32(a.nlink)
            .u32(a.uid)
            .u32(a.gid)
            .u64(a.size)
            .u64(a.used)
            .u32(a.rdev.specdata1)
            .u32(a.rdev.specdata2)
            .u64(a.fsid)
            .u64(a.fileid)
            .u32(a.atime.seconds)
            .u32(a.atime.nseconds)
            .u32(a.mtime.seconds)
            .u32(a.mtime.nseconds)
            .u32(a.ctime.seconds)
            .u32(a.ctime.nseconds)
    }
}

#[test]
fn every_procedure_round_trips() {
    round_trip_all();
}

#[test]
fn every_procedure_has_its_rfc_name() {
    for p in 0..=21 {
        let name = openefs_nfs_wire::nfs3::proc_name(p).expect("defined");
        assert!(name.starts_with("NFSPROC3_"), "{name}");
    }
    assert_eq!(openefs_nfs_wire::nfs3::proc_name(22), None);
    assert_eq!(
        openefs_nfs_wire::mount::proc_name(1),
        Some("MOUNTPROC3_MNT")
    );
    assert_eq!(openefs_nfs_wire::mount::proc_name(6), None);
}

#[test]
fn fattr3_is_84_bytes_in_rfc_order() {
    let a = fattr();
    let wire = Wire::default().fattr(&a).bytes();
    assert_eq!(wire.len(), Fattr3::LEN);
    assert_eq!(xdr::to_bytes(&a), wire);
    assert_eq!(xdr::from_bytes::<Fattr3>(wire).unwrap(), a);
}

#[test]
fn golden_setattr_with_guard() {
    // SETATTR3args: object, sattr3 (mode set, uid/gid unset, size 0,
    // atime to server time, mtime to a client time), guard with a ctime.
    let wire = Wire::default()
        .opaque(&[1; 28])
        .u32(1)
        .u32(0o600)
        .u32(0)
        .u32(0)
        .u32(1)
        .u64(0)
        .u32(1)
        .u32(2)
        .u32(981_173_106)
        .u32(0)
        .u32(1)
        .u32(77)
        .u32(88)
        .bytes();
    let a = xdr::from_bytes::<Setattr3Args>(wire.clone()).unwrap();
    assert_eq!(a.object, fh(1));
    assert_eq!(
        a.new_attributes,
        Sattr3 {
            mode: Some(0o600),
            uid: None,
            gid: None,
            size: Some(0),
            atime: SetTime3::ServerTime,
            mtime: SetTime3::ClientTime(NfsTime3 {
                seconds: 981_173_106,
                nseconds: 0
            }),
        }
    );
    assert_eq!(
        a.guard,
        Some(NfsTime3 {
            seconds: 77,
            nseconds: 88
        })
    );
    assert_eq!(xdr::to_bytes(&a), wire);
}

#[test]
fn golden_write_and_its_reply() {
    let wire = Wire::default()
        .opaque(&[1; 28])
        .u64(4096)
        .u32(5)
        .u32(2) // FILE_SYNC
        .opaque(b"hello")
        .bytes();
    let a = xdr::from_bytes::<Write3Args>(wire.clone()).unwrap();
    assert_eq!(
        (a.offset, a.count, a.stable),
        (4096, 5, StableHow::FileSync)
    );
    assert_eq!(a.data.as_bytes(), b"hello");
    assert_eq!(xdr::to_bytes(&a), wire);

    // WRITE3res OK: status, wcc_data (pre_op_attr absent, post_op_attr
    // present), count, committed, verifier.
    let res: Write3Res = Ok(Write3ResOk {
        file_wcc: WccData {
            before: None,
            after: Some(fattr()),
        },
        count: 5,
        committed: StableHow::FileSync,
        verf: *b"verifier",
    });
    let expected = Wire::default()
        .u32(0)
        .u32(0)
        .u32(1)
        .fattr(&fattr())
        .u32(5)
        .u32(2)
        .bytes();
    let mut expected = expected.to_vec();
    expected.extend_from_slice(b"verifier");
    assert_eq!(xdr::to_bytes(&res), expected);
}

#[test]
fn golden_create_exclusive_and_failure_arm() {
    let wire = Wire::default()
        .opaque(&[1; 28])
        .opaque(b"new")
        .u32(2) // EXCLUSIVE
        .u32(0x0102_0304)
        .u32(0x0506_0708)
        .bytes();
    let a = xdr::from_bytes::<Create3Args>(wire).unwrap();
    assert_eq!(a.where_.name.as_bytes(), b"new");
    assert_eq!(a.how, CreateHow3::Exclusive([1, 2, 3, 4, 5, 6, 7, 8]));

    // CREATE3res failure: NFS3ERR_EXIST, then the directory's wcc_data.
    let res: DirOp3Res = Err(Fail3 {
        status: Nfs3Error::Exist,
        body: WccData {
            before: Some(WccAttr {
                size: 4096,
                mtime: NfsTime3 {
                    seconds: 1,
                    nseconds: 2,
                },
                ctime: NfsTime3 {
                    seconds: 3,
                    nseconds: 4,
                },
            }),
            after: None,
        },
    });
    let expected = Wire::default()
        .u32(17)
        .u32(1)
        .u64(4096)
        .u32(1)
        .u32(2)
        .u32(3)
        .u32(4)
        .u32(0)
        .bytes();
    assert_eq!(xdr::to_bytes(&res), expected);
    assert_eq!(xdr::from_bytes::<DirOp3Res>(expected).unwrap(), res);
}

#[test]
fn golden_readdirplus_reply() {
    // status OK, dir_attributes absent, cookieverf, one entry with
    // attributes and handle, end of list, eof.
    let mut wire = Wire::default().u32(0).u32(0).0;
    wire.extend_from_slice(&[9; 8]);
    let wire = Wire(wire)
        .u32(1)
        .u64(77)
        .opaque(b"file")
        .u64(1234)
        .u32(1)
        .fattr(&fattr())
        .u32(1)
        .opaque(&[2; 28])
        .u32(0)
        .u32(1)
        .bytes();
    let res = xdr::from_bytes::<Readdirplus3Res>(wire.clone()).unwrap();
    let list = res.as_ref().unwrap();
    assert_eq!(list.cookieverf, [9; 8]);
    assert!(list.eof);
    assert_eq!(
        list.entries,
        vec![Entryplus3 {
            fileid: 77,
            name: name("file"),
            cookie: 1234,
            name_attributes: Some(fattr()),
            name_handle: Some(fh(2)),
        }]
    );
    assert_eq!(xdr::to_bytes(&res), wire);
}

#[test]
fn golden_mount_replies() {
    // MNT of "/": status OK, the handle, flavors AUTH_SYS and AUTH_NONE.
    let res: MountRes = Ok(MountResOk {
        fhandle: fh(3),
        auth_flavors: vec![1, 0],
    });
    let wire = Wire::default()
        .u32(0)
        .opaque(&[3; 28])
        .u32(2)
        .u32(1)
        .u32(0)
        .bytes();
    assert_eq!(xdr::to_bytes(&res), wire);
    let refused: MountRes = Err(MountError::Noent);
    assert_eq!(xdr::to_bytes(&refused), Wire::default().u32(2).bytes());
    // EXPORT: one node "/" with no groups, then the list's end.
    let ex = Exports(vec![ExportNode {
        dir: DirPath::from("/"),
        groups: vec![],
    }]);
    let wire = Wire::default().u32(1).opaque(b"/").u32(0).u32(0).bytes();
    assert_eq!(xdr::to_bytes(&ex), wire);
}

#[test]
fn hostile_lengths_and_values_are_refused() {
    // A 65-byte handle.
    let wire = Wire::default().opaque(&[0; 65]).bytes();
    assert!(matches!(
        xdr::from_bytes::<NfsFh3>(wire),
        Err(XdrError::TooLong { max: 64, .. })
    ));
    // A mount path above MNTPATHLEN.
    let wire = Wire::default().u32(1025).bytes();
    assert!(matches!(
        xdr::from_bytes::<DirPath>(wire),
        Err(XdrError::TooLong { max: 1024, .. })
    ));
    // An undefined status, file type and createmode.
    assert!(matches!(
        xdr::from_bytes::<Getattr3Res>(Wire::default().u32(12345).bytes()),
        Err(XdrError::BadDiscriminant { .. })
    ));
    assert!(matches!(
        xdr::from_bytes::<Ftype3>(Wire::default().u32(8).bytes()),
        Err(XdrError::BadDiscriminant { .. })
    ));
    let wire = Wire::default().opaque(&[1; 4]).opaque(b"x").u32(3).bytes();
    assert!(matches!(
        xdr::from_bytes::<Create3Args>(wire),
        Err(XdrError::BadDiscriminant { .. })
    ));
    // More flavors than a MNT reply may list, before any allocation.
    let wire = Wire::default()
        .u32(0)
        .opaque(&[1; 4])
        .u32(0xffff_ffff)
        .bytes();
    assert!(matches!(
        xdr::from_bytes::<MountRes>(wire),
        Err(XdrError::TooLong { .. })
    ));
    // A listing that never ends runs out of input, not of memory.
    let mut enc = Encoder::new();
    Readdir3Res::Ok(DirList3 {
        dir_attributes: None,
        cookieverf: [0; 8],
        entries: vec![],
        eof: false,
    })
    .encode(&mut enc);
    let mut wire = enc.into_bytes().to_vec();
    wire.truncate(wire.len() - 8);
    for _ in 0..100 {
        wire.extend_from_slice(&Wire::default().u32(1).u64(1).opaque(b"n").u64(2).0);
    }
    assert!(matches!(
        xdr::from_bytes::<Readdir3Res>(Bytes::from(wire)),
        Err(XdrError::Truncated { .. })
    ));
    // WRITE data above 1 MiB.
    let wire = Wire::default()
        .opaque(&[1; 4])
        .u64(0)
        .u32(0)
        .u32(0)
        .u32((1 << 20) + 1)
        .bytes();
    assert!(matches!(
        xdr::from_bytes::<Write3Args>(wire),
        Err(XdrError::TooLong { .. })
    ));
}

#[test]
fn truncations_of_every_sample_fail_cleanly() {
    for msg in encoded_samples() {
        for cut in 0..msg.len() {
            decode_each(&msg.slice(..cut));
        }
    }
}

fn entry(name_len: usize) -> Entryplus3 {
    Entryplus3 {
        fileid: 1,
        name: Opaque(Bytes::from(vec![b'n'; name_len])),
        cookie: 9,
        name_attributes: Some(fattr()),
        name_handle: Some(fh(1)),
    }
}

#[test]
fn dir_list_builder_keeps_the_reply_within_maxcount_exactly() {
    let e = entry(5);
    let each = e.encoded_len();
    let overhead = DirListBuilder::<Entryplus3>::OVERHEAD;
    let mut b = DirListBuilder::new((overhead + 3 * each) as u32, u32::MAX);
    for _ in 0..3 {
        b.push(entry(5)).unwrap();
    }
    assert!(b.push(entry(5)).is_err(), "a fourth entry exceeds maxcount");
    assert_eq!(b.encoded_len(), overhead + 3 * each);
    let list = b.finish(Some(fattr()), [0; 8], false);
    let encoded = xdr::to_bytes(&Readdirplus3Res::Ok(list));
    assert_eq!(encoded.len(), overhead + 3 * each, "the budget is exact");

    let mut tiny = DirListBuilder::<Entryplus3>::new(overhead as u32, u32::MAX);
    assert!(tiny.push(entry(1)).is_err());
    assert!(tiny.is_empty(), "nothing fits: the caller answers TOOSMALL");
}

#[test]
fn dir_list_builder_honours_dircount_but_always_takes_one_entry() {
    let e = entry(5);
    let mut b = DirListBuilder::new(1 << 20, e.dir_len() as u32 * 2);
    b.push(entry(5)).unwrap();
    b.push(entry(5)).unwrap();
    assert!(b.push(entry(5)).is_err(), "dircount reached");
    let mut b = DirListBuilder::new(1 << 20, 1);
    b.push(entry(5)).unwrap();
    assert!(b.push(entry(5)).is_err());
}
