//! LocalVfs against a real directory. Needs root (open_by_handle_at needs
//! CAP_DAC_READ_SEARCH, acting as other users needs CAP_SETUID/SETGID).

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use openefs_vfs::{
    CreateMode, FileHandle, FileType, Identity, LocalVfs, LocalVfsOptions, OpenAccess, SetAttr,
    SetTime, Stability, Timestamp, Vfs, VfsError, access,
};

fn root_id() -> Identity {
    Identity {
        uid: 0,
        gid: 0,
        groups: vec![],
    }
}

fn user(uid: u32) -> Identity {
    Identity {
        uid,
        gid: uid,
        groups: vec![uid],
    }
}

fn export() -> (tempfile::TempDir, LocalVfs) {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests need root"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let vfs = LocalVfs::new(dir.path()).expect("LocalVfs::new");
    (dir, vfs)
}

fn create(vfs: &LocalVfs, id: &Identity, dir: &FileHandle, name: &str, mode: u32) -> FileHandle {
    vfs.create(
        id,
        dir,
        name.as_bytes(),
        mode,
        CreateMode::Guarded,
        &SetAttr::default(),
    )
    .expect("create")
    .handle
}

fn write(vfs: &LocalVfs, fh: &FileHandle, offset: u64, data: &[u8]) {
    let f = vfs
        .open(
            &root_id(),
            fh,
            OpenAccess {
                read: true,
                write: true,
            },
        )
        .expect("open");
    vfs.write(&f, offset, data, Stability::Unstable)
        .expect("write");
}

#[test]
fn handles_survive_a_new_instance() {
    let (dir, a) = export();
    let fh = create(&a, &root_id(), &a.root(), "f", 0o644);
    write(&a, &fh, 0, b"hello");
    let b = LocalVfs::new(dir.path()).expect("second instance");
    assert_eq!(a.root(), b.root());
    let attr = b
        .getattr(&fh)
        .expect("handle from instance a resolves in b");
    assert_eq!(attr.size, 5);
    let (again, _) = b.lookup(&root_id(), &b.root(), b"f").expect("lookup");
    assert_eq!(again, fh, "handles are deterministic");
    let f = b
        .open(
            &root_id(),
            &fh,
            OpenAccess {
                read: true,
                write: false,
            },
        )
        .expect("open");
    assert_eq!(b.read(&f, 0, 100).expect("read"), (b"hello".to_vec(), true));
}

#[test]
fn removed_objects_are_stale_even_when_cached() {
    let (dir, vfs) = export();
    let fh = create(&vfs, &root_id(), &vfs.root(), "f", 0o644);
    let d = vfs
        .mkdir(&root_id(), &vfs.root(), b"d", 0o755)
        .expect("mkdir")
        .handle;
    vfs.remove(&root_id(), &vfs.root(), b"f")
        .expect("remove file");
    vfs.remove(&root_id(), &vfs.root(), b"d")
        .expect("remove dir");
    assert!(matches!(vfs.getattr(&fh), Err(VfsError::Stale)));
    assert!(matches!(vfs.getattr(&d), Err(VfsError::Stale)));
    // Removed behind the server's back while cached.
    let g = create(&vfs, &root_id(), &vfs.root(), "g", 0o644);
    std::fs::remove_file(dir.path().join("g")).expect("rm");
    assert!(matches!(vfs.getattr(&g), Err(VfsError::Stale)));
    // And from an instance that never cached it.
    let other = LocalVfs::new(dir.path()).expect("instance");
    assert!(matches!(other.getattr(&fh), Err(VfsError::Stale)));
}

#[test]
fn garbage_handles_are_refused() {
    let (_dir, vfs) = export();
    let good = create(&vfs, &root_id(), &vfs.root(), "f", 0o644);
    let mut cases = vec![
        vec![],
        vec![1],
        vec![0xff; 64],
        vec![1; 200],
        good.0[..good.0.len() - 1].to_vec(),
    ];
    for i in 0..good.0.len() {
        let mut flipped = good.0.clone();
        flipped[i] ^= 1;
        cases.push(flipped);
    }
    for bytes in cases {
        let fh = FileHandle(bytes.clone());
        assert!(
            matches!(vfs.getattr(&fh), Err(VfsError::BadHandle)),
            "{bytes:?}"
        );
        assert!(matches!(
            vfs.lookup(&root_id(), &fh, b"x"),
            Err(VfsError::BadHandle)
        ));
    }
}

#[test]
fn objects_outside_the_export_are_unreachable() {
    let top = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(top.path().join("export")).expect("mkdir");
    std::fs::write(top.path().join("secret"), b"s").expect("write");
    std::os::unix::fs::symlink("../secret", top.path().join("export/link")).expect("symlink");
    let vfs = LocalVfs::new(top.path().join("export")).expect("vfs");
    // A genuine handle of the outside file, issued by an export of the parent
    // on the same file system, must not open it through this export.
    let outer = LocalVfs::new(top.path()).expect("outer vfs");
    let (secret, _) = outer
        .lookup(&root_id(), &outer.root(), b"secret")
        .expect("lookup");
    assert!(matches!(vfs.getattr(&secret), Err(VfsError::BadHandle)));

    let root = vfs.root();
    let (parent, _) = vfs.lookup_parent(&root_id(), &root).expect("lookupp");
    assert_eq!(parent, root, ".. of the root is the root");
    for bad in [&b""[..], b".", b"..", b"a/b", b"../secret", b"a\0b"] {
        assert!(
            matches!(
                vfs.lookup(&root_id(), &root, bad),
                Err(VfsError::InvalidName)
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        vfs.lookup(&root_id(), &root, &[b'a'; 256]),
        Err(VfsError::NameTooLong)
    ));
    // A symlink is an object, never followed.
    let (link, attr) = vfs.lookup(&root_id(), &root, b"link").expect("lookup link");
    assert_eq!(attr.file_type, FileType::Symlink);
    assert!(matches!(
        vfs.open(
            &root_id(),
            &link,
            OpenAccess {
                read: true,
                write: false
            }
        ),
        Err(VfsError::Symlink)
    ));
    assert!(matches!(
        vfs.lookup(&root_id(), &link, b"x"),
        Err(VfsError::NotDir)
    ));
    assert_eq!(
        vfs.readlink(&root_id(), &link).expect("readlink"),
        b"../secret"
    );

    let sub = vfs
        .mkdir(&root_id(), &root, b"sub", 0o755)
        .expect("mkdir")
        .handle;
    let (up, _) = vfs.lookup_parent(&root_id(), &sub).expect("lookupp");
    assert_eq!(up, root);
}

#[test]
fn callers_identity_is_enforced_and_owns_new_files() {
    let (dir, vfs) = export();
    let root = vfs.root();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let private = vfs
        .mkdir(&root_id(), &root, b"private", 0o700)
        .expect("mkdir")
        .handle;
    create(&vfs, &root_id(), &private, "inside", 0o644);
    let u = user(1000);
    assert!(matches!(
        vfs.lookup(&u, &private, b"inside"),
        Err(VfsError::Access)
    ));
    let refused = vfs.create(
        &u,
        &private,
        b"new",
        0o644,
        CreateMode::Guarded,
        &SetAttr::default(),
    );
    assert!(matches!(refused, Err(VfsError::Access)));
    assert!(matches!(
        vfs.readdir(&u, &private, 0, 10),
        Err(VfsError::Access)
    ));
    assert_eq!(
        vfs.access(&u, &private, access::READ | access::LOOKUP | access::MODIFY)
            .expect("access"),
        0
    );
    assert_eq!(
        vfs.access(
            &root_id(),
            &private,
            access::READ | access::LOOKUP | access::DELETE
        )
        .expect("access"),
        access::READ | access::LOOKUP | access::DELETE
    );

    let mine = vfs
        .create(
            &u,
            &root,
            b"mine",
            0o640,
            CreateMode::Guarded,
            &SetAttr::default(),
        )
        .expect("create");
    assert_eq!(
        (mine.attr.uid, mine.attr.gid, mine.attr.mode),
        (1000, 1000, 0o640)
    );
    let meta = std::fs::metadata(dir.path().join("mine")).expect("stat");
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    let sub = vfs
        .mkdir(&u, &root, b"subdir", 0o755)
        .expect("mkdir as user");
    assert_eq!(sub.attr.uid, 1000);
    // Another user can read (0640 gives the group only) nothing, and may not chown.
    assert_eq!(
        vfs.access(&user(1001), &mine.handle, access::READ | access::MODIFY)
            .expect("access"),
        0
    );
    let chown = SetAttr {
        uid: Some(1001),
        ..SetAttr::default()
    };
    assert!(matches!(
        vfs.setattr(&u, &mine.handle, &chown),
        Err(VfsError::Perm)
    ));
    // Supplementary groups count.
    let in_group = Identity {
        uid: 1001,
        gid: 1001,
        groups: vec![1000],
    };
    assert_eq!(
        vfs.access(&in_group, &mine.handle, access::READ | access::MODIFY)
            .expect("access"),
        access::READ
    );

    // The owner may write their own read-only file (POSIX creat(0444) semantics).
    let ro = vfs
        .create(
            &u,
            &root,
            b"ro",
            0o444,
            CreateMode::Guarded,
            &SetAttr::default(),
        )
        .expect("create");
    let f = vfs
        .open(
            &u,
            &ro.handle,
            OpenAccess {
                read: false,
                write: true,
            },
        )
        .expect("owner override");
    vfs.write(&f, 0, b"x", Stability::FileSync).expect("write");
    assert!(matches!(
        vfs.open(
            &user(1001),
            &ro.handle,
            OpenAccess {
                read: false,
                write: true
            }
        ),
        Err(VfsError::Access)
    ));

    // The thread went back to being root: root's creations are root's.
    let after = vfs.create(
        &root_id(),
        &root,
        b"root-again",
        0o644,
        CreateMode::Guarded,
        &SetAttr::default(),
    );
    assert_eq!(after.expect("create").attr.uid, 0);
    assert_eq!(
        std::fs::metadata(dir.path().join("root-again"))
            .expect("stat")
            .uid(),
        0
    );
}

#[test]
fn readdir_pages_through_5000_entries_with_stable_cookies() {
    let (dir, vfs) = export();
    let root = vfs.root();
    let d = vfs
        .mkdir(&root_id(), &root, b"big", 0o755)
        .expect("mkdir")
        .handle;
    for i in 0..5000 {
        std::fs::write(dir.path().join(format!("big/entry-{i:05}")), b"").expect("write");
    }
    let read_all = |start: u64| {
        let mut cookie = start;
        let mut all = Vec::new();
        for _ in 0..1000 {
            let page = vfs.readdir(&root_id(), &d, cookie, 100).expect("readdir");
            assert!(page.entries.len() <= 100);
            all.extend(page.entries.iter().map(|e| (e.name.clone(), e.cookie)));
            if page.eof {
                return all;
            }
            cookie = page
                .entries
                .last()
                .expect("a non-eof page has entries")
                .cookie;
        }
        panic!("readdir never reached eof");
    };
    let first = read_all(0);
    assert_eq!(first.len(), 5000);
    let names: HashSet<_> = first.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names.len(), 5000, "no duplicates");
    assert!(names.contains(b"entry-04999".as_slice()));
    assert!(
        first.iter().all(|(_, c)| *c > 2),
        "cookies 0, 1, 2 are reserved"
    );
    assert_eq!(read_all(0), first, "same listing again");
    // Resuming from a cookie in the middle continues right after it.
    let (_, mid) = first[2500];
    assert_eq!(read_all(mid), first[2501..].to_vec());
    // Entries carry handles and attributes usable as lookups'.
    let page = vfs.readdir(&root_id(), &d, 0, 1).expect("readdir");
    let e = &page.entries[0];
    let (fh, attr) = vfs.lookup(&root_id(), &d, &e.name).expect("lookup");
    assert_eq!((fh, attr.fileid), (e.handle.clone(), e.attr.fileid));
    assert!(matches!(
        vfs.readdir(&root_id(), &d, 1, 10),
        Err(VfsError::BadCookie)
    ));
}

#[test]
fn create_modes() {
    let (_dir, vfs) = export();
    let root = vfs.root();
    let none = SetAttr::default();
    let v1 = CreateMode::Exclusive(*b"verifie1");
    let first = vfs
        .create(&root_id(), &root, b"x", 0o600, v1, &none)
        .expect("exclusive");
    assert!(first.created);
    let retry = vfs
        .create(&root_id(), &root, b"x", 0o600, v1, &none)
        .expect("retransmission");
    assert!(!retry.created);
    assert_eq!(retry.handle, first.handle);
    let other = vfs.create(
        &root_id(),
        &root,
        b"x",
        0o600,
        CreateMode::Exclusive(*b"verifie2"),
        &none,
    );
    assert!(matches!(other, Err(VfsError::Exists)));
    assert!(matches!(
        vfs.create(&root_id(), &root, b"x", 0o600, CreateMode::Guarded, &none),
        Err(VfsError::Exists)
    ));
    // Unchecked on an existing file truncates only when asked to.
    write(&vfs, &first.handle, 0, b"data");
    let kept = vfs
        .create(&root_id(), &root, b"x", 0o600, CreateMode::Unchecked, &none)
        .expect("unchecked");
    assert_eq!((kept.created, kept.attr.size), (false, 4));
    let zero = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    let cut = vfs
        .create(&root_id(), &root, b"x", 0o600, CreateMode::Unchecked, &zero)
        .expect("unchecked");
    assert_eq!((cut.created, cut.attr.size), (false, 0));
    // The server's umask does not apply; set attributes do.
    let set = SetAttr {
        mtime: Some(SetTime::Client(Timestamp {
            seconds: 1000,
            nanos: 5,
        })),
        ..SetAttr::default()
    };
    let wide = vfs
        .create(
            &root_id(),
            &root,
            b"wide",
            0o666,
            CreateMode::Unchecked,
            &set,
        )
        .expect("create");
    assert_eq!(wide.attr.mode, 0o666);
    assert_eq!(
        wide.attr.mtime,
        Timestamp {
            seconds: 1000,
            nanos: 5
        }
    );
    let d = vfs.mkdir(&root_id(), &root, b"dir", 0o777).expect("mkdir");
    assert_eq!(d.attr.mode, 0o777);
    assert!(matches!(
        vfs.mkdir(&root_id(), &root, b"x", 0o777),
        Err(VfsError::Exists)
    ));
    assert!(matches!(
        vfs.create(
            &root_id(),
            &root,
            b"dir",
            0o600,
            CreateMode::Unchecked,
            &none
        ),
        Err(VfsError::IsDir)
    ));
}

#[test]
fn change_attribute_moves_on_every_write() {
    let (_dir, vfs) = export();
    let fh = create(&vfs, &root_id(), &vfs.root(), "f", 0o644);
    let f = vfs
        .open(
            &root_id(),
            &fh,
            OpenAccess {
                read: true,
                write: true,
            },
        )
        .expect("open");
    let mut seen = vec![vfs.getattr(&fh).expect("getattr").change];
    for i in 0..5u8 {
        vfs.write(&f, 0, &[i], Stability::Unstable).expect("write");
        seen.push(vfs.getattr(&fh).expect("getattr").change);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(
        vfs.getattr(&fh).expect("getattr").change,
        *seen.last().expect("values")
    );
    // Directory changes too.
    let before = vfs.getattr(&vfs.root()).expect("getattr").change;
    create(&vfs, &root_id(), &vfs.root(), "g", 0o644);
    assert_ne!(vfs.getattr(&vfs.root()).expect("getattr").change, before);
}

#[test]
fn rename_link_symlink_remove() {
    let (_dir, vfs) = export();
    let root = vfs.root();
    let a = create(&vfs, &root_id(), &root, "a", 0o644);
    let b = create(&vfs, &root_id(), &root, "b", 0o644);
    write(&vfs, &a, 0, b"from a");
    let sub = vfs
        .mkdir(&root_id(), &root, b"sub", 0o755)
        .expect("mkdir")
        .handle;
    vfs.rename(&root_id(), &root, b"a", &root, b"b")
        .expect("rename over existing");
    let (now_b, attr) = vfs.lookup(&root_id(), &root, b"b").expect("lookup");
    assert_eq!(now_b, a);
    assert_eq!(attr.size, 6);
    assert!(matches!(vfs.getattr(&b), Err(VfsError::Stale)));
    assert!(matches!(
        vfs.lookup(&root_id(), &root, b"a"),
        Err(VfsError::NotFound)
    ));
    vfs.rename(&root_id(), &root, b"b", &sub, b"moved")
        .expect("rename across dirs");
    assert_eq!(vfs.getattr(&a).expect("same handle after rename").size, 6);

    vfs.link(&root_id(), &a, &root, b"hard").expect("link");
    assert_eq!(vfs.getattr(&a).expect("getattr").nlink, 2);
    assert!(matches!(
        vfs.link(&root_id(), &a, &root, b"hard"),
        Err(VfsError::Exists)
    ));
    assert!(matches!(
        vfs.link(&root_id(), &sub, &root, b"dirlink"),
        Err(VfsError::IsDir)
    ));
    vfs.remove(&root_id(), &root, b"hard")
        .expect("remove one link");
    assert_eq!(vfs.getattr(&a).expect("still there").nlink, 1);

    let s = vfs
        .symlink(&root_id(), &root, b"s", b"sub/moved")
        .expect("symlink");
    assert_eq!(s.attr.file_type, FileType::Symlink);
    assert_eq!(
        vfs.readlink(&root_id(), &s.handle).expect("readlink"),
        b"sub/moved"
    );
    assert!(matches!(vfs.readlink(&root_id(), &a), Err(VfsError::Inval)));

    assert!(matches!(
        vfs.remove(&root_id(), &root, b"sub"),
        Err(VfsError::NotEmpty)
    ));
    vfs.remove(&root_id(), &sub, b"moved").expect("remove file");
    vfs.remove(&root_id(), &root, b"sub").expect("rmdir");
    assert!(matches!(
        vfs.remove(&root_id(), &root, b"sub"),
        Err(VfsError::NotFound)
    ));
}

#[test]
fn io_setattr_and_statfs() {
    let (dir, vfs) = export();
    let fh = create(&vfs, &root_id(), &vfs.root(), "f", 0o644);
    let f = vfs
        .open(
            &root_id(),
            &fh,
            OpenAccess {
                read: true,
                write: true,
            },
        )
        .expect("open");
    assert_eq!(
        vfs.write(&f, 0, &[7u8; 10_000], Stability::DataSync)
            .expect("write"),
        Stability::DataSync
    );
    assert_eq!(
        vfs.write(&f, 10_000, b"end", Stability::FileSync)
            .expect("write"),
        Stability::FileSync
    );
    vfs.commit(&fh).expect("commit");
    let (data, eof) = vfs.read(&f, 0, 4096).expect("read");
    assert_eq!((data.len(), eof), (4096, false));
    let (data, eof) = vfs.read(&f, 9_998, 5).expect("read to the exact end");
    assert_eq!((data, eof), (vec![7, 7, b'e', b'n', b'd'], true));
    let (data, eof) = vfs.read(&f, 50_000, 10).expect("read past the end");
    assert_eq!((data.len(), eof), (0, true));

    let set = SetAttr {
        mode: Some(0o4711),
        size: Some(3),
        atime: Some(SetTime::ServerNow),
        mtime: Some(SetTime::Client(Timestamp {
            seconds: 42,
            nanos: 0,
        })),
        ..SetAttr::default()
    };
    let attr = vfs.setattr(&root_id(), &fh, &set).expect("setattr");
    assert_eq!((attr.mode, attr.size, attr.mtime.seconds), (0o4711, 3, 42));
    let meta = std::fs::metadata(dir.path().join("f")).expect("stat");
    assert_eq!(
        (meta.mode() & 0o7777, meta.len(), meta.mtime()),
        (0o4711, 3, 42)
    );
    let chown = SetAttr {
        uid: Some(1234),
        gid: Some(5678),
        ..SetAttr::default()
    };
    let attr = vfs.setattr(&root_id(), &fh, &chown).expect("chown");
    assert_eq!((attr.uid, attr.gid), (1234, 5678));
    assert!(matches!(
        vfs.setattr(
            &root_id(),
            &vfs.root(),
            &SetAttr {
                size: Some(0),
                ..SetAttr::default()
            }
        ),
        Err(VfsError::IsDir)
    ));

    let st = vfs.statfs(&fh).expect("statfs");
    assert!(
        st.bytes_total >= st.bytes_free && st.bytes_free >= st.bytes_avail && st.bytes_total > 0
    );
    assert!(st.files_total > 0);
}

#[test]
fn small_cache_still_serves_everything() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests need root"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let vfs = LocalVfs::with_options(
        dir.path(),
        LocalVfsOptions {
            cache_capacity: 1,
            sync_metadata: false,
            content_key: None,
        },
    )
    .expect("vfs");
    let handles: Vec<_> = (0..50)
        .map(|i| create(&vfs, &root_id(), &vfs.root(), &format!("f{i}"), 0o644))
        .collect();
    for (i, fh) in handles.iter().enumerate() {
        write(&vfs, fh, 0, format!("{i}").as_bytes());
    }
    for (i, fh) in handles.iter().enumerate() {
        assert_eq!(
            vfs.getattr(fh).expect("re-resolved").size,
            format!("{i}").len() as u64
        );
    }
    assert!(Path::new(dir.path()).join("f49").exists());
}
