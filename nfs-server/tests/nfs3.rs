//! NFSv3 and MOUNT v3 over a real loopback socket, against the server with
//! the real `LocalVfs` on a temporary directory (needs root, as the server
//! does): every procedure, the RPC-level version rules, weak cache
//! consistency data, the SETATTR guard, the three CREATE modes, stable
//! writes and their verifier, and paging through a large directory.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;

use bytes::Bytes;
use openefs_nfs_wire::mount::*;
use openefs_nfs_wire::nfs3::ops::*;
use openefs_nfs_wire::nfs3::types::*;
use openefs_nfs_wire::nfs3::*;
use openefs_nfs_wire::rpc::{AcceptedBody, MismatchInfo};
use openefs_nfs_wire::xdr::{self, Opaque, XdrDecode, XdrEncode};
use openefs_nfsd::client::Client;

mod common;
use common::{TestServer, accepted, rpc};

async fn nfs<A: XdrEncode, R: XdrDecode>(c: &mut Client, proc_: u32, args: &A) -> R {
    rpc(c, NFS3_PROGRAM, NFS_V3, proc_, args).await
}

async fn mount_root(c: &mut Client) -> NfsFh3 {
    let res: MountRes = rpc(
        c,
        MOUNT_PROGRAM,
        MOUNT_V3,
        MOUNTPROC3_MNT,
        &DirPath::from("/"),
    )
    .await;
    res.expect("MNT /").fhandle
}

fn status<T, F>(r: &Res3<T, F>) -> Option<Nfs3Error> {
    r.as_ref().err().map(|f| f.status)
}

fn dirop(dir: &NfsFh3, name: &str) -> DirOpArgs3 {
    DirOpArgs3 {
        dir: dir.clone(),
        name: Filename3::from(name),
    }
}

fn mode(m: u32) -> Sattr3 {
    Sattr3 {
        mode: Some(m),
        ..Default::default()
    }
}

async fn create(c: &mut Client, dir: &NfsFh3, name: &str, how: CreateHow3) -> DirOp3Res {
    let args = Create3Args {
        where_: dirop(dir, name),
        how,
    };
    nfs(c, NFSPROC3_CREATE, &args).await
}

async fn getattr(c: &mut Client, fh: &NfsFh3) -> Fattr3 {
    let r: Getattr3Res = nfs(c, NFSPROC3_GETATTR, fh).await;
    r.expect("GETATTR")
}

/// Weak cache consistency data around a change: both halves present (the
/// times themselves may not move within one timestamp tick).
fn changed(w: &WccData) -> bool {
    w.before.is_some() && w.after.is_some()
}

#[tokio::test]
async fn rpc_versions_and_mount_protocol() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let (h, body) = c
        .call(NFS3_PROGRAM, NFS_V3, NFSPROC3_NULL, &[])
        .await
        .unwrap();
    assert_eq!((accepted(&h.stat), body.len()), (&AcceptedBody::Success, 0));
    for vers in [2, 5] {
        let (h, _) = c.call(NFS3_PROGRAM, vers, 0, &[]).await.unwrap();
        assert_eq!(
            accepted(&h.stat),
            &AcceptedBody::ProgMismatch(MismatchInfo { low: 3, high: 4 })
        );
    }
    let (h, _) = c.call(MOUNT_PROGRAM, 1, 0, &[]).await.unwrap();
    assert_eq!(
        accepted(&h.stat),
        &AcceptedBody::ProgMismatch(MismatchInfo { low: 3, high: 3 })
    );
    let (h, _) = c.call(100021, 4, 0, &[]).await.unwrap();
    assert_eq!(accepted(&h.stat), &AcceptedBody::ProgUnavail);
    let (h, _) = c.call(NFS3_PROGRAM, NFS_V3, 22, &[]).await.unwrap();
    assert_eq!(accepted(&h.stat), &AcceptedBody::ProcUnavail);
    let (h, _) = c.call(MOUNT_PROGRAM, MOUNT_V3, 6, &[]).await.unwrap();
    assert_eq!(accepted(&h.stat), &AcceptedBody::ProcUnavail);
    let (h, _) = c
        .call(NFS3_PROGRAM, NFS_V3, NFSPROC3_GETATTR, &[0, 0])
        .await
        .unwrap();
    assert_eq!(accepted(&h.stat), &AcceptedBody::GarbageArgs);
    let (h, _) = c
        .call(MOUNT_PROGRAM, MOUNT_V3, MOUNTPROC3_MNT, &[0, 0, 0, 9])
        .await
        .unwrap();
    assert_eq!(accepted(&h.stat), &AcceptedBody::GarbageArgs);

    // MNT of the export: the root handle, the same NFSv4 gives out.
    let res: MountRes = rpc(
        &mut c,
        MOUNT_PROGRAM,
        MOUNT_V3,
        MOUNTPROC3_MNT,
        &DirPath::from("/"),
    )
    .await;
    let ok = res.unwrap();
    assert_eq!(ok.fhandle.as_bytes(), &s.server.vfs().root().0[..]);
    assert_eq!(ok.auth_flavors, vec![1, 0], "AUTH_SYS, then AUTH_NONE");
    assert_eq!(getattr(&mut c, &ok.fhandle).await.ftype, Ftype3::Dir);
    // A directory beneath the export mounts too; nothing outside does.
    std::fs::create_dir_all(s.dir.path().join("a/b")).unwrap();
    std::fs::write(s.dir.path().join("a/file"), b"x").unwrap();
    std::os::unix::fs::symlink("/", s.dir.path().join("a/up")).unwrap();
    let res: MountRes = rpc(
        &mut c,
        MOUNT_PROGRAM,
        MOUNT_V3,
        MOUNTPROC3_MNT,
        &DirPath::from("/a//b/"),
    )
    .await;
    let sub = res.unwrap().fhandle;
    let r: Lookup3Res = nfs(&mut c, NFSPROC3_LOOKUP, &dirop(&sub, "..")).await;
    let a = r.unwrap().object;
    let r: Lookup3Res = nfs(&mut c, NFSPROC3_LOOKUP, &dirop(&ok.fhandle, "a")).await;
    assert_eq!(r.unwrap().object, a);
    for (path, want) in [
        ("/srv", MountError::Noent),
        ("/a/../..", MountError::Noent),
        ("", MountError::Noent),
        ("/a/file", MountError::Notdir),
        ("/a/up", MountError::Notdir),
    ] {
        let res: MountRes = rpc(
            &mut c,
            MOUNT_PROGRAM,
            MOUNT_V3,
            MOUNTPROC3_MNT,
            &DirPath::from(path),
        )
        .await;
        assert_eq!(res, Err(want), "{path:?}");
    }
    let ex: Exports = rpc(&mut c, MOUNT_PROGRAM, MOUNT_V3, MOUNTPROC3_EXPORT, &()).await;
    assert_eq!(ex.0.len(), 1);
    assert_eq!(ex.0[0].dir.as_bytes(), b"/");
    let dump: MountList = rpc(&mut c, MOUNT_PROGRAM, MOUNT_V3, MOUNTPROC3_DUMP, &()).await;
    assert_eq!(dump.0.len(), 2, "{dump:?}");
    assert_eq!(dump.0[0].hostname.as_bytes(), b"openefs-test");
    let () = rpc(
        &mut c,
        MOUNT_PROGRAM,
        MOUNT_V3,
        MOUNTPROC3_UMNT,
        &DirPath::from("/"),
    )
    .await;
    let dump: MountList = rpc(&mut c, MOUNT_PROGRAM, MOUNT_V3, MOUNTPROC3_DUMP, &()).await;
    assert_eq!(dump.0.len(), 1);
    assert_eq!(dump.0[0].directory.as_bytes(), b"/a//b/");
    let () = rpc(&mut c, MOUNT_PROGRAM, MOUNT_V3, MOUNTPROC3_UMNTALL, &()).await;
    let dump: MountList = rpc(&mut c, MOUNT_PROGRAM, MOUNT_V3, MOUNTPROC3_DUMP, &()).await;
    assert!(dump.0.is_empty());

    // A forged handle and one whose file is gone.
    let forged: NfsFh3 = Opaque(Bytes::from_static(&[1; 40]));
    let r: Getattr3Res = nfs(&mut c, NFSPROC3_GETATTR, &forged).await;
    assert_eq!(status(&r), Some(Nfs3Error::Badhandle));
    let root = mount_root(&mut c).await;
    let gone = create(&mut c, &root, "gone", CreateHow3::Guarded(mode(0o644)))
        .await
        .unwrap()
        .obj
        .unwrap();
    let r: Remove3Res = nfs(&mut c, NFSPROC3_REMOVE, &dirop(&root, "gone")).await;
    assert!(changed(&r.unwrap()));
    let r: Getattr3Res = nfs(&mut c, NFSPROC3_GETATTR, &gone).await;
    assert_eq!(status(&r), Some(Nfs3Error::Stale));

    let metrics = s.server.metrics().encode().unwrap();
    assert!(
        metrics.contains(r#"op="NFSPROC3_GETATTR",status="NFS3ERR_STALE"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"op="MOUNTPROC3_MNT",status="MNT3ERR_NOENT"} 3"#));
    assert!(metrics.contains(r#"op="MOUNTPROC3_MNT",status="MNT3ERR_NOTDIR"} 2"#));
    s.stop().await;
}

#[tokio::test]
async fn write_read_commit_setattr_guard_and_access() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let root = mount_root(&mut c).await;
    let made = create(&mut c, &root, "data", CreateHow3::Unchecked(mode(0o640)))
        .await
        .unwrap();
    assert!(changed(&made.dir_wcc), "{:?}", made.dir_wcc);
    let attrs = made.obj_attributes.unwrap();
    assert_eq!(
        (attrs.ftype, attrs.mode, attrs.size),
        (Ftype3::Reg, 0o640, 0)
    );
    let fh = made.obj.unwrap();

    // FILE_SYNC: committed says so, with the server's verifier.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let w: Write3Res = nfs(
        &mut c,
        NFSPROC3_WRITE,
        &Write3Args {
            file: fh.clone(),
            offset: 0,
            count: data.len() as u32,
            stable: StableHow::FileSync,
            data: Opaque(Bytes::from(data.clone())),
        },
    )
    .await;
    let w = w.unwrap();
    assert_eq!(w.count as usize, data.len());
    assert_eq!(w.committed, StableHow::FileSync);
    assert_eq!(w.verf, s.server.write_verifier());
    assert_eq!(w.file_wcc.before.unwrap().size, 0);
    assert_eq!(w.file_wcc.after.as_ref().unwrap().size, data.len() as u64);

    // UNSTABLE, only the first `count` bytes of the data, then COMMIT.
    let w: Write3Res = nfs(
        &mut c,
        NFSPROC3_WRITE,
        &Write3Args {
            file: fh.clone(),
            offset: data.len() as u64,
            count: 3,
            stable: StableHow::Unstable,
            data: Opaque(Bytes::from_static(b"xyzIGNORED")),
        },
    )
    .await;
    let w = w.unwrap();
    assert_eq!((w.count, w.committed), (3, StableHow::Unstable));
    let cm: Commit3Res = nfs(
        &mut c,
        NFSPROC3_COMMIT,
        &Commit3Args {
            file: fh.clone(),
            offset: 0,
            count: 0,
        },
    )
    .await;
    assert_eq!(
        cm.unwrap().verf,
        w.verf,
        "the verifier is stable within an instance"
    );
    let mut want = data.clone();
    want.extend_from_slice(b"xyz");
    assert_eq!(std::fs::read(s.dir.path().join("data")).unwrap(), want);
    // count beyond the data sent is malformed.
    let w: Write3Res = nfs(
        &mut c,
        NFSPROC3_WRITE,
        &Write3Args {
            file: fh.clone(),
            offset: 0,
            count: 10,
            stable: StableHow::Unstable,
            data: Opaque(Bytes::from_static(b"abc")),
        },
    )
    .await;
    assert_eq!(status(&w), Some(Nfs3Error::Inval));

    // READ in pieces until eof.
    let mut back = Vec::new();
    loop {
        let r: Read3Res = nfs(
            &mut c,
            NFSPROC3_READ,
            &Read3Args {
                file: fh.clone(),
                offset: back.len() as u64,
                count: 128 * 1024,
            },
        )
        .await;
        let r = r.unwrap();
        assert_eq!(r.count as usize, r.data.len());
        assert!(r.file_attributes.is_some());
        back.extend_from_slice(r.data.as_bytes());
        if r.eof {
            break;
        }
        assert!(back.len() <= want.len(), "read past the end");
    }
    assert_eq!(back, want);
    let r: Read3Res = nfs(
        &mut c,
        NFSPROC3_READ,
        &Read3Args {
            file: root.clone(),
            offset: 0,
            count: 10,
        },
    )
    .await;
    assert_eq!(status(&r), Some(Nfs3Error::Isdir));

    // SETATTR with a guard: a stale ctime is NOT_SYNC and changes nothing.
    let now = getattr(&mut c, &fh).await;
    let stale = NfsTime3 {
        seconds: now.ctime.seconds.wrapping_sub(100),
        nseconds: 0,
    };
    let truncate = Sattr3 {
        size: Some(10),
        ..Default::default()
    };
    let r: Setattr3Res = nfs(
        &mut c,
        NFSPROC3_SETATTR,
        &Setattr3Args {
            object: fh.clone(),
            new_attributes: truncate.clone(),
            guard: Some(stale),
        },
    )
    .await;
    let fail = r.unwrap_err();
    assert_eq!(fail.status, Nfs3Error::NotSync);
    assert_eq!(fail.body.after.unwrap().size, want.len() as u64);
    assert_eq!(getattr(&mut c, &fh).await.size, want.len() as u64);
    let r: Setattr3Res = nfs(
        &mut c,
        NFSPROC3_SETATTR,
        &Setattr3Args {
            object: fh.clone(),
            new_attributes: Sattr3 {
                mtime: SetTime3::ClientTime(NfsTime3 {
                    seconds: 981_173_106,
                    nseconds: 0,
                }),
                ..truncate
            },
            guard: Some(now.ctime),
        },
    )
    .await;
    let wcc = r.unwrap();
    assert_eq!(wcc.before.unwrap().size, want.len() as u64);
    let after = wcc.after.unwrap();
    assert_eq!((after.size, after.mtime.seconds), (10, 981_173_106));

    // ACCESS: root may do everything on its file; uid 1000 only read (0640,
    // group 0 is not theirs... and "other" has nothing).
    let all = ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_EXECUTE;
    let r: Access3Res = nfs(
        &mut c,
        NFSPROC3_ACCESS,
        &Access3Args {
            object: fh.clone(),
            access: all,
        },
    )
    .await;
    let granted = r.unwrap().access;
    assert_eq!(
        granted & (ACCESS3_READ | ACCESS3_MODIFY),
        ACCESS3_READ | ACCESS3_MODIFY
    );
    c.set_identity(1000, 1000, &[]);
    let r: Access3Res = nfs(
        &mut c,
        NFSPROC3_ACCESS,
        &Access3Args {
            object: fh.clone(),
            access: all,
        },
    )
    .await;
    assert_eq!(r.unwrap().access, 0);
    let r: Read3Res = nfs(
        &mut c,
        NFSPROC3_READ,
        &Read3Args {
            file: fh.clone(),
            offset: 0,
            count: 1,
        },
    )
    .await;
    assert_eq!(status(&r), Some(Nfs3Error::Acces));
    let r = create(&mut c, &root, "not-mine", CreateHow3::Guarded(mode(0o644))).await;
    assert_eq!(status(&r), Some(Nfs3Error::Acces));
    s.stop().await;
}

#[tokio::test]
async fn create_modes_and_exclusive_replay() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let root = mount_root(&mut c).await;
    let first = create(&mut c, &root, "g", CreateHow3::Guarded(mode(0o600)))
        .await
        .unwrap();
    let again = create(&mut c, &root, "g", CreateHow3::Guarded(mode(0o600))).await;
    let fail = again.unwrap_err();
    assert_eq!(fail.status, Nfs3Error::Exist);
    assert!(
        fail.body.after.is_some(),
        "the directory's attributes come with the error"
    );

    // UNCHECKED on an existing file opens it; size 0 truncates it.
    std::fs::write(s.dir.path().join("g"), b"content").unwrap();
    let unchecked = Sattr3 {
        size: Some(0),
        ..Default::default()
    };
    let r = create(&mut c, &root, "g", CreateHow3::Unchecked(unchecked))
        .await
        .unwrap();
    assert_eq!(r.obj, first.obj);
    assert_eq!(r.obj_attributes.unwrap().size, 0);

    // EXCLUSIVE: a retransmission with the same verifier succeeds with the
    // same file; another verifier is EXIST.
    let e1 = create(&mut c, &root, "x", CreateHow3::Exclusive(*b"verf-one"))
        .await
        .unwrap();
    let e2 = create(&mut c, &root, "x", CreateHow3::Exclusive(*b"verf-one"))
        .await
        .unwrap();
    assert_eq!(e1.obj, e2.obj);
    let e3 = create(&mut c, &root, "x", CreateHow3::Exclusive(*b"verf-two")).await;
    assert_eq!(status(&e3), Some(Nfs3Error::Exist));
    let e4 = create(&mut c, &root, "g", CreateHow3::Exclusive(*b"verf-one")).await;
    assert_eq!(
        status(&e4),
        Some(Nfs3Error::Exist),
        "a file made without a verifier"
    );

    for (name, want) in [
        ("..", Nfs3Error::Exist),
        ("a/b", Nfs3Error::Acces),
        (&*"n".repeat(256), Nfs3Error::Nametoolong),
    ] {
        let r = create(&mut c, &root, name, CreateHow3::Guarded(Sattr3::default())).await;
        assert_eq!(status(&r), Some(want), "{name}");
    }
    s.stop().await;
}

#[tokio::test]
async fn directory_procedures_and_file_system_info() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let root = mount_root(&mut c).await;
    let r: DirOp3Res = nfs(
        &mut c,
        NFSPROC3_MKDIR,
        &Mkdir3Args {
            where_: dirop(&root, "d"),
            attributes: mode(0o750),
        },
    )
    .await;
    let d = r.unwrap();
    assert_eq!(d.obj_attributes.as_ref().unwrap().mode, 0o750);
    assert!(changed(&d.dir_wcc));
    let dir = d.obj.unwrap();
    let r: DirOp3Res = nfs(
        &mut c,
        NFSPROC3_MKDIR,
        &Mkdir3Args {
            where_: dirop(&root, "d"),
            attributes: mode(0o750),
        },
    )
    .await;
    assert_eq!(status(&r), Some(Nfs3Error::Exist));

    // LOOKUP: names, ".", ".." (the root's parent is the root), errors.
    let r: Lookup3Res = nfs(&mut c, NFSPROC3_LOOKUP, &dirop(&root, "d")).await;
    let found = r.unwrap();
    assert_eq!(found.object, dir);
    assert_eq!(found.obj_attributes.unwrap().ftype, Ftype3::Dir);
    assert!(found.dir_attributes.is_some());
    let r: Lookup3Res = nfs(&mut c, NFSPROC3_LOOKUP, &dirop(&dir, "..")).await;
    assert_eq!(r.unwrap().object, root);
    let r: Lookup3Res = nfs(&mut c, NFSPROC3_LOOKUP, &dirop(&root, "..")).await;
    assert_eq!(r.unwrap().object, root);
    let r: Lookup3Res = nfs(&mut c, NFSPROC3_LOOKUP, &dirop(&dir, ".")).await;
    assert_eq!(r.unwrap().object, dir);
    let r: Lookup3Res = nfs(&mut c, NFSPROC3_LOOKUP, &dirop(&root, "missing")).await;
    let fail = r.unwrap_err();
    assert_eq!(fail.status, Nfs3Error::Noent);
    assert_eq!(fail.body.unwrap().ftype, Ftype3::Dir);

    // SYMLINK + READLINK.
    let r: DirOp3Res = nfs(
        &mut c,
        NFSPROC3_SYMLINK,
        &Symlink3Args {
            where_: dirop(&dir, "ln"),
            symlink_attributes: Sattr3::default(),
            symlink_data: NfsPath3::from("../target"),
        },
    )
    .await;
    let ln = r.unwrap();
    assert_eq!(ln.obj_attributes.unwrap().ftype, Ftype3::Lnk);
    let r: Readlink3Res = nfs(&mut c, NFSPROC3_READLINK, &ln.obj.unwrap()).await;
    assert_eq!(r.unwrap().data.as_bytes(), b"../target");
    let r: Readlink3Res = nfs(&mut c, NFSPROC3_READLINK, &dir).await;
    assert_eq!(status(&r), Some(Nfs3Error::Inval));

    // LINK: two names, nlink 2.
    let f = create(&mut c, &dir, "f", CreateHow3::Guarded(mode(0o644)))
        .await
        .unwrap()
        .obj
        .unwrap();
    let r: Link3Res = nfs(
        &mut c,
        NFSPROC3_LINK,
        &Link3Args {
            file: f.clone(),
            link: dirop(&root, "f2"),
        },
    )
    .await;
    let l = r.unwrap();
    assert_eq!(l.file_attributes.unwrap().nlink, 2);
    assert!(changed(&l.linkdir_wcc));
    let r: Link3Res = nfs(
        &mut c,
        NFSPROC3_LINK,
        &Link3Args {
            file: f.clone(),
            link: dirop(&root, "f2"),
        },
    )
    .await;
    assert_eq!(status(&r), Some(Nfs3Error::Exist));

    // RENAME across directories reports both.
    let r: Rename3Res = nfs(
        &mut c,
        NFSPROC3_RENAME,
        &Rename3Args {
            from: dirop(&root, "f2"),
            to: dirop(&dir, "f3"),
        },
    )
    .await;
    let rn = r.unwrap();
    assert!(changed(&rn.fromdir_wcc) && changed(&rn.todir_wcc));
    assert!(s.dir.path().join("d/f3").exists() && !s.dir.path().join("f2").exists());
    let r: Rename3Res = nfs(
        &mut c,
        NFSPROC3_RENAME,
        &Rename3Args {
            from: dirop(&root, "nothing"),
            to: dirop(&dir, "x"),
        },
    )
    .await;
    assert_eq!(status(&r), Some(Nfs3Error::Noent));

    // REMOVE of a directory, RMDIR of a file or a full directory.
    let r: Remove3Res = nfs(&mut c, NFSPROC3_REMOVE, &dirop(&root, "d")).await;
    assert_eq!(status(&r), Some(Nfs3Error::Isdir));
    let r: Remove3Res = nfs(&mut c, NFSPROC3_RMDIR, &dirop(&dir, "f")).await;
    assert_eq!(status(&r), Some(Nfs3Error::Notdir));
    let r: Remove3Res = nfs(&mut c, NFSPROC3_RMDIR, &dirop(&root, "d")).await;
    assert_eq!(status(&r), Some(Nfs3Error::Notempty));
    for name in ["f", "f3", "ln"] {
        let r: Remove3Res = nfs(&mut c, NFSPROC3_REMOVE, &dirop(&dir, name)).await;
        assert!(changed(&r.unwrap()), "{name}");
    }
    let r: Remove3Res = nfs(&mut c, NFSPROC3_RMDIR, &dirop(&root, "d")).await;
    r.unwrap();
    assert!(!s.dir.path().join("d").exists());

    // MKNOD: special files are not supported, regular ones are BADTYPE.
    for (what, want) in [
        (MknodData3::Fifo(Sattr3::default()), Nfs3Error::Notsupp),
        (
            MknodData3::Chr(DeviceData3 {
                dev_attributes: Sattr3::default(),
                spec: SpecData3::default(),
            }),
            Nfs3Error::Notsupp,
        ),
        (MknodData3::Other(Ftype3::Reg), Nfs3Error::Badtype),
    ] {
        let r: DirOp3Res = nfs(
            &mut c,
            NFSPROC3_MKNOD,
            &Mknod3Args {
                where_: dirop(&root, "n"),
                what,
            },
        )
        .await;
        assert_eq!(status(&r), Some(want));
    }

    let r: Fsstat3Res = nfs(&mut c, NFSPROC3_FSSTAT, &root).await;
    let fs = r.unwrap();
    assert!(fs.tbytes > 0 && fs.tbytes >= fs.fbytes && fs.fbytes >= fs.abytes);
    let r: Fsinfo3Res = nfs(&mut c, NFSPROC3_FSINFO, &root).await;
    let info = r.unwrap();
    assert_eq!((info.rtmax, info.wtmax), (1 << 20, 1 << 20));
    assert_ne!(info.properties & FSF3_SYMLINK, 0);
    let r: Pathconf3Res = nfs(&mut c, NFSPROC3_PATHCONF, &root).await;
    let pc = r.unwrap();
    assert_eq!(
        (pc.name_max, pc.no_trunc, pc.case_insensitive),
        (255, true, false)
    );
    s.stop().await;
}

#[tokio::test]
async fn readdir_pages_through_a_large_directory_with_stable_cookies() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let root = mount_root(&mut c).await;
    let big = s.dir.path().join("big");
    std::fs::create_dir(&big).unwrap();
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o755)).unwrap();
    let names: BTreeSet<String> = (0..600).map(|i| format!("entry-{i:04}")).collect();
    for n in &names {
        std::fs::write(big.join(n), n.as_bytes()).unwrap();
    }
    let r: Lookup3Res = nfs(&mut c, NFSPROC3_LOOKUP, &dirop(&root, "big")).await;
    let dir = r.unwrap().object;

    // READDIR in 1 KiB replies: every name once; each cookie, given back,
    // continues with exactly the entries that followed it.
    let mut seen = Vec::new();
    let mut cookie = 0;
    let mut verf = [0; 8];
    let mut rounds = 0;
    loop {
        rounds += 1;
        let r: Readdir3Res = nfs(
            &mut c,
            NFSPROC3_READDIR,
            &Readdir3Args {
                dir: dir.clone(),
                cookie,
                cookieverf: verf,
                count: 1024,
            },
        )
        .await;
        let list = r.unwrap();
        assert!(xdr::to_bytes(&Readdir3Res::Ok(list.clone())).len() <= 1024);
        verf = list.cookieverf;
        for e in &list.entries {
            seen.push((
                String::from_utf8(e.name.as_bytes().to_vec()).unwrap(),
                e.cookie,
                e.fileid,
            ));
        }
        if list.eof {
            break;
        }
        assert!(!list.entries.is_empty());
        cookie = list.entries.last().unwrap().cookie;
        assert!(rounds < 1000);
    }
    assert!(rounds > 10, "small replies: {rounds} rounds");
    let got: BTreeSet<String> = seen.iter().map(|e| e.0.clone()).collect();
    assert_eq!(got, names);
    assert_eq!(seen.len(), names.len(), "no duplicates");
    let at = seen.len() / 2;
    let r: Readdir3Res = nfs(
        &mut c,
        NFSPROC3_READDIR,
        &Readdir3Args {
            dir: dir.clone(),
            cookie: seen[at].1,
            cookieverf: verf,
            count: 2048,
        },
    )
    .await;
    let resumed: Vec<String> = r
        .unwrap()
        .entries
        .iter()
        .map(|e| String::from_utf8(e.name.as_bytes().to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = seen[at + 1..at + 1 + resumed.len()]
        .iter()
        .map(|e| e.0.clone())
        .collect();
    assert!(!resumed.is_empty());
    assert_eq!(resumed, expected);

    // READDIRPLUS: handles and attributes that LOOKUP agrees with, within
    // dircount and maxcount.
    let r: Readdirplus3Res = nfs(
        &mut c,
        NFSPROC3_READDIRPLUS,
        &Readdirplus3Args {
            dir: dir.clone(),
            cookie: 0,
            cookieverf: [0; 8],
            dircount: 512,
            maxcount: 32768,
        },
    )
    .await;
    let plus = r.unwrap();
    assert!(!plus.eof);
    let dir_bytes: usize = plus.entries.iter().map(|e| e.dir_len()).sum();
    assert!(dir_bytes <= 512, "dircount honoured: {dir_bytes}");
    let by_name: BTreeMap<_, _> = seen.iter().map(|e| (e.0.clone(), e.2)).collect();
    for e in &plus.entries {
        let n = String::from_utf8(e.name.as_bytes().to_vec()).unwrap();
        let attrs = e.name_attributes.as_ref().unwrap();
        assert_eq!((attrs.fileid, attrs.size), (by_name[&n], n.len() as u64));
        let r: Lookup3Res = nfs(&mut c, NFSPROC3_LOOKUP, &dirop(&dir, &n)).await;
        assert_eq!(Some(r.unwrap().object), e.name_handle);
    }

    // A verifier we never issued, and a reply too small for one entry.
    let r: Readdir3Res = nfs(
        &mut c,
        NFSPROC3_READDIR,
        &Readdir3Args {
            dir: dir.clone(),
            cookie: seen[0].1,
            cookieverf: [7; 8],
            count: 4096,
        },
    )
    .await;
    assert_eq!(status(&r), Some(Nfs3Error::BadCookie));
    let r: Readdir3Res = nfs(
        &mut c,
        NFSPROC3_READDIR,
        &Readdir3Args {
            dir: dir.clone(),
            cookie: 0,
            cookieverf: [0; 8],
            count: 120,
        },
    )
    .await;
    assert_eq!(status(&r), Some(Nfs3Error::Toosmall));
    s.stop().await;
}

#[tokio::test]
async fn read_only_policy_refuses_changes_with_rofs() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let root = mount_root(&mut c).await;
    let fh = create(&mut c, &root, "f", CreateHow3::Unchecked(mode(0o644)))
        .await
        .unwrap()
        .obj
        .unwrap();
    let mut settings = (*s.server.settings()).clone();
    settings.policy.read_only = true;
    s.server.apply_settings(settings).unwrap();

    let write = Write3Args {
        file: fh.clone(),
        offset: 0,
        count: 3,
        stable: StableHow::FileSync,
        data: Opaque(Bytes::from_static(b"abc")),
    };
    let w: Write3Res = nfs(&mut c, NFSPROC3_WRITE, &write).await;
    assert_eq!(status(&w), Some(Nfs3Error::Rofs));
    let made = create(&mut c, &root, "g", CreateHow3::Unchecked(mode(0o644))).await;
    assert_eq!(status(&made), Some(Nfs3Error::Rofs));
    let rm: Remove3Res = nfs(&mut c, NFSPROC3_REMOVE, &dirop(&root, "f")).await;
    assert_eq!(status(&rm), Some(Nfs3Error::Rofs));
    let set: Setattr3Res = nfs(
        &mut c,
        NFSPROC3_SETATTR,
        &Setattr3Args {
            object: fh.clone(),
            new_attributes: mode(0o600),
            guard: None,
        },
    )
    .await;
    assert_eq!(status(&set), Some(Nfs3Error::Rofs));
    // Reads and lookups go on; ACCESS no longer offers what would fail.
    let found: Lookup3Res = nfs(&mut c, NFSPROC3_LOOKUP, &dirop(&root, "f")).await;
    assert_eq!(found.unwrap().object, fh);
    let all = ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;
    let r: Access3Res = nfs(
        &mut c,
        NFSPROC3_ACCESS,
        &Access3Args {
            object: root.clone(),
            access: all,
        },
    )
    .await;
    assert_eq!(r.unwrap().access, ACCESS3_READ);
    assert!(s.dir.path().join("f").exists());
    assert!(!s.dir.path().join("g").exists());
    assert_eq!(getattr(&mut c, &fh).await.mode, 0o644);
    s.stop().await;
}
