//! Access points of LocalVfs against a real directory. Needs root, as
//! `tests/local.rs`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use openefs_vfs::{
    AccessPoint, CreateMode, CreationInfo, FileHandle, FileType, Identity, LocalVfs, SetAttr, Vfs,
    VfsError,
};

fn caller() -> Identity {
    Identity {
        uid: 0,
        gid: 0,
        groups: vec![],
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

fn ap(id: &str, root: &str) -> AccessPoint {
    AccessPoint {
        id: id.into(),
        root_directory: root.into(),
        posix_user: None,
        creation_info: None,
        max_bytes: None,
    }
}

fn ap_dir(vfs: &LocalVfs) -> FileHandle {
    vfs.lookup(&caller(), &vfs.root(), b"ap")
        .expect("lookup of /ap")
        .0
}

fn ap_root(vfs: &LocalVfs, id: &str) -> Result<FileHandle, VfsError> {
    vfs.lookup(&caller(), &ap_dir(vfs), id.as_bytes())
        .map(|(fh, _)| fh)
}

fn create(vfs: &LocalVfs, id: &Identity, dir: &FileHandle, name: &str) -> FileHandle {
    vfs.create(
        id,
        dir,
        name.as_bytes(),
        0o644,
        CreateMode::Guarded,
        &SetAttr::default(),
    )
    .expect("create")
    .handle
}

#[test]
fn a_missing_root_is_created_from_the_creation_info_once() {
    let (dir, vfs) = export();
    let mut a = ap("a", "/teams/a");
    a.creation_info = Some(CreationInfo {
        owner_uid: 1000,
        owner_gid: 1001,
        permissions: 0o2750,
    });
    vfs.set_access_points(&[a, ap("b", "/teams/b")]);
    // No creation info: a missing root is not found (and not created).
    assert!(matches!(ap_root(&vfs, "b"), Err(VfsError::NotFound)));
    assert!(!dir.path().join("teams").exists());
    let root = ap_root(&vfs, "a").expect("created");
    for path in ["teams", "teams/a"] {
        let m = std::fs::metadata(dir.path().join(path)).expect("exists");
        assert_eq!(
            (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
            (1000, 1001, 0o2750),
            "{path}"
        );
    }
    let attr = vfs.getattr(&root).expect("getattr");
    assert_eq!((attr.file_type, attr.uid), (FileType::Directory, 1000));
    // Existing permissions are never overwritten.
    std::fs::set_permissions(
        dir.path().join("teams/a"),
        std::fs::Permissions::from_mode(0o700),
    )
    .expect("chmod");
    ap_root(&vfs, "a").expect("again");
    let m = std::fs::metadata(dir.path().join("teams/a")).expect("exists");
    assert_eq!(m.permissions().mode() & 0o7777, 0o700);
    assert!(matches!(ap_root(&vfs, "nope"), Err(VfsError::NotFound)));
}

#[test]
fn operations_through_an_access_point_run_as_its_posix_user() {
    let (dir, vfs) = export();
    std::fs::create_dir(dir.path().join("data")).expect("mkdir");
    std::fs::create_dir(dir.path().join("data/private")).expect("mkdir");
    std::fs::set_permissions(
        dir.path().join("data/private"),
        std::fs::Permissions::from_mode(0o700),
    )
    .expect("chmod");
    std::fs::set_permissions(
        dir.path().join("data"),
        std::fs::Permissions::from_mode(0o777),
    )
    .expect("chmod");
    let mut a = ap("a", "/data");
    a.posix_user = Some(Identity {
        uid: 1234,
        gid: 1235,
        groups: vec![1236],
    });
    vfs.set_access_points(&[a]);
    let root = ap_root(&vfs, "a").expect("root");
    // The caller is root, but the file belongs to the access point's user.
    create(&vfs, &caller(), &root, "f");
    let m = std::fs::metadata(dir.path().join("data/f")).expect("created");
    assert_eq!((m.uid(), m.gid()), (1234, 1235));
    // And root's private directory is closed to it.
    let (private, _) = vfs
        .lookup(&caller(), &root, b"private")
        .expect("lookup needs only search permission on the parent");
    assert!(matches!(
        vfs.readdir(&caller(), &private, 0, 10),
        Err(VfsError::Access)
    ));
    // Through the export, the same caller is root again.
    let (private, _) = vfs
        .lookup(&caller(), &vfs.root(), b"data")
        .and_then(|(d, _)| vfs.lookup(&caller(), &d, b"private"))
        .expect("lookup");
    vfs.readdir(&caller(), &private, 0, 10)
        .expect("root reads it");
}

#[test]
fn dotdot_stops_at_the_access_point_root_and_handles_keep_their_scope() {
    let (dir, vfs) = export();
    std::fs::create_dir_all(dir.path().join("data/sub")).expect("mkdir");
    std::fs::write(dir.path().join("secret"), b"x").expect("write");
    vfs.set_access_points(&[ap("a", "/data"), ap("whole", "/")]);
    let root = ap_root(&vfs, "a").expect("root");
    let (sub, _) = vfs.lookup(&caller(), &root, b"sub").expect("sub");
    let (up, _) = vfs.lookup_parent(&caller(), &sub).expect("..");
    assert_eq!(
        up, root,
        "objects reached through the access point keep its scope"
    );
    let (up, _) = vfs.lookup_parent(&caller(), &root).expect("..");
    assert_eq!(up, root, "`..` of the access point root is the root");
    // Through the export, the same directory has another handle.
    let (data, _) = vfs.lookup(&caller(), &vfs.root(), b"data").expect("data");
    assert_ne!(data, root);
    assert_eq!(
        vfs.getattr(&data).expect("a").fileid,
        vfs.getattr(&root).expect("b").fileid
    );
    // An access point on the export root: `..` stays, and `ap` inside it is
    // no way to the other access points.
    let whole = ap_root(&vfs, "whole").expect("whole");
    assert_eq!(vfs.lookup_parent(&caller(), &whole).expect("..").0, whole);
    assert!(matches!(
        vfs.lookup(&caller(), &whole, b"ap"),
        Err(VfsError::NotFound)
    ));
    vfs.lookup(&caller(), &whole, b"secret")
        .expect("the whole export is inside this one");
}

#[test]
fn handles_of_different_scopes_do_not_meet_and_removal_makes_them_stale() {
    let (dir, vfs) = export();
    std::fs::create_dir_all(dir.path().join("a")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("b")).expect("mkdir");
    vfs.set_access_points(&[ap("a", "/a"), ap("b", "/b")]);
    let a = ap_root(&vfs, "a").expect("a");
    let b = ap_root(&vfs, "b").expect("b");
    let f = create(&vfs, &caller(), &a, "f");
    assert!(matches!(
        vfs.rename(&caller(), &a, b"f", &b, b"g"),
        Err(VfsError::XDev)
    ));
    assert!(matches!(
        vfs.rename(&caller(), &a, b"f", &vfs.root(), b"g"),
        Err(VfsError::XDev)
    ));
    assert!(matches!(
        vfs.link(&caller(), &f, &b, b"g"),
        Err(VfsError::XDev)
    ));
    vfs.rename(&caller(), &a, b"f", &a, b"g")
        .expect("within one access point");
    // Removed: its handles are stale at once; the other's are not.
    vfs.set_access_points(&[ap("b", "/b")]);
    assert!(matches!(vfs.getattr(&f), Err(VfsError::Stale)));
    assert!(matches!(vfs.getattr(&a), Err(VfsError::Stale)));
    vfs.getattr(&b).expect("b stays");
    // Back with another root directory: still stale (the scope names it).
    vfs.set_access_points(&[ap("a", "/b"), ap("b", "/b")]);
    assert!(matches!(vfs.getattr(&a), Err(VfsError::Stale)));
    vfs.set_access_points(&[ap("a", "/a"), ap("b", "/b")]);
    vfs.getattr(&a).expect("the same access point again");
}

#[test]
fn the_ap_directory_lists_access_points_and_refuses_changes() {
    let (dir, vfs) = export();
    std::fs::create_dir_all(dir.path().join("x")).expect("mkdir");
    std::os::unix::fs::symlink("/", dir.path().join("esc")).expect("symlink");
    std::os::unix::fs::symlink("../..", dir.path().join("x/up")).expect("symlink");
    vfs.set_access_points(&[
        ap("two", "/x"),
        ap("one", "/x"),
        ap("gone", "/missing"),
        ap("escape", "/esc"),
        ap("escape2", "/x/up"),
    ]);
    let apd = ap_dir(&vfs);
    let attr = vfs.getattr(&apd).expect("getattr");
    assert_eq!((attr.file_type, attr.mode), (FileType::Directory, 0o555));
    let page = vfs.readdir(&caller(), &apd, 0, 1).expect("readdir");
    assert_eq!(page.entries.len(), 1);
    assert!(!page.eof);
    let rest = vfs
        .readdir(&caller(), &apd, page.entries[0].cookie, 10)
        .expect("readdir");
    let names: Vec<_> = page
        .entries
        .iter()
        .chain(&rest.entries)
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect();
    // In id order; those whose root cannot be had are left out.
    assert_eq!(names, ["one", "two"]);
    assert!(rest.eof);
    // Symlinked roots that leave the export are refused by the kernel.
    assert!(ap_root(&vfs, "escape").is_err());
    assert!(ap_root(&vfs, "escape2").is_err());
    assert!(matches!(
        vfs.mkdir(&caller(), &apd, b"new", 0o755),
        Err(VfsError::Access)
    ));
    assert_eq!(
        vfs.lookup_parent(&caller(), &apd).expect("..").0,
        vfs.root()
    );
}
