//! The stored-bytes ledger and access point quotas of LocalVfs against a
//! real directory: after every kind of change the ledger's figures equal a
//! walk's. Needs root, as `tests/local.rs`.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use openefs_vfs::usage::measure;
use openefs_vfs::{
    AccessPoint, CreateMode, CreationInfo, DeleteTreeError, FileHandle, Identity, LocalVfs,
    OpenAccess, SetAttr, Stability, UsageTarget, Vfs, VfsError,
};

fn caller() -> Identity {
    Identity {
        uid: 0,
        gid: 0,
        groups: vec![],
    }
}

const RW: OpenAccess = OpenAccess {
    read: true,
    write: true,
};

/// An export with access point `a` at `/a` (quota `max_bytes`), its root
/// made and both figures measured; returns the root handle through `a`.
fn export(max_bytes: Option<u64>) -> (tempfile::TempDir, LocalVfs, FileHandle) {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests need root"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let vfs = LocalVfs::new(dir.path()).expect("LocalVfs::new");
    vfs.set_access_points(&[AccessPoint {
        id: "a".into(),
        root_directory: "/a".into(),
        posix_user: None,
        creation_info: Some(CreationInfo {
            owner_uid: 0,
            owner_gid: 0,
            permissions: 0o755,
        }),
        max_bytes,
    }]);
    let ap_dir = vfs.lookup(&caller(), &vfs.root(), b"ap").expect("/ap").0;
    let root = vfs.lookup(&caller(), &ap_dir, b"a").expect("/ap/a").0;
    let stop = AtomicBool::new(false);
    for target in [
        UsageTarget::FileSystem,
        UsageTarget::AccessPoint("a".into()),
    ] {
        vfs.reconcile(&target, &stop).expect("reconcile");
    }
    (dir, vfs, root)
}

/// The ledger's figures (file system, access point `a`).
fn ledger(vfs: &LocalVfs) -> (u64, u64) {
    let usage = vfs.usage();
    assert!(usage.known && usage.access_points[0].known);
    (usage.stored_bytes, usage.access_points[0].stored_bytes)
}

/// What walks find (file system, access point `a`).
fn walked(dir: &Path) -> (u64, u64) {
    let stop = AtomicBool::new(false);
    (
        measure(dir, &stop).expect("walk"),
        measure(&dir.join("a"), &stop).expect("walk"),
    )
}

fn create(vfs: &LocalVfs, dir: &FileHandle, name: &str) -> VfsResult<FileHandle> {
    vfs.create(
        &caller(),
        dir,
        name.as_bytes(),
        0o644,
        CreateMode::Guarded,
        &SetAttr::default(),
    )
    .map(|c| c.handle)
}

type VfsResult<T> = Result<T, VfsError>;

fn size(vfs: &LocalVfs, fh: &FileHandle, size: u64) -> VfsResult<()> {
    let set = SetAttr {
        size: Some(size),
        ..SetAttr::default()
    };
    vfs.setattr(&caller(), fh, &set).map(|_| ())
}

#[test]
fn the_ledger_follows_every_change_exactly() {
    let (dir, vfs, root) = export(None);
    let id = caller();
    let check = |step: &str| assert_eq!(ledger(&vfs), walked(dir.path()), "after {step}");
    check("the start");
    let f = create(&vfs, &root, "f").expect("create");
    check("create");
    let open = vfs.open(&id, &f, RW).expect("open");
    vfs.write(&open, 0, b"0123456789", Stability::FileSync)
        .expect("write");
    check("a small write");
    vfs.write(&open, 10, &vec![7; 100 << 10], Stability::FileSync)
        .expect("write");
    check("an extending write");
    size(&vfs, &f, 5000).expect("truncate");
    check("a truncation");
    // Sparse: a large size allocates nothing, and a write far out fills
    // one block of the hole.
    size(&vfs, &f, 1 << 30).expect("extend");
    check("a sparse extension");
    vfs.write(&open, 512 << 20, &[1; 4096], Stability::FileSync)
        .expect("write");
    check("a write into the hole");
    vfs.link(&id, &f, &root, b"g").expect("link");
    check("a hard link");
    vfs.remove(&id, &root, b"f").expect("remove");
    check("removing one of two links");
    let d = vfs.mkdir(&id, &root, b"d", 0o755).expect("mkdir").handle;
    vfs.symlink(&id, &d, b"s", b"../g").expect("symlink");
    check("mkdir and symlink");
    let h = create(&vfs, &d, "h").expect("create");
    let open_h = vfs.open(&id, &h, RW).expect("open");
    vfs.write(&open_h, 0, &[2; 20000], Stability::FileSync)
        .expect("write");
    vfs.rename(&id, &d, b"h", &root, b"g").expect("rename over");
    check("a rename over the last link of a file");
    vfs.remove(&id, &d, b"s").expect("remove");
    vfs.remove(&id, &root, b"d").expect("rmdir");
    vfs.remove(&id, &root, b"g").expect("remove");
    check("removing everything");
    // Through the export: the file system's figure moves, the access
    // point's waits for its next walk.
    let (fs_before, ap_before) = ledger(&vfs);
    let e = create(&vfs, &vfs.root(), "e").expect("create");
    let open_e = vfs.open(&id, &e, RW).expect("open");
    vfs.write(&open_e, 0, &[3; 8192], Stability::FileSync)
        .expect("write");
    assert_eq!(ledger(&vfs), (fs_before + 2048 + 8192, ap_before));
    assert_eq!(ledger(&vfs).0, walked(dir.path()).0);
}

#[test]
fn concurrent_writers_to_one_file_are_counted_once() {
    let (dir, vfs, root) = export(None);
    let f = create(&vfs, &root, "f").expect("create");
    let open = vfs.open(&caller(), &f, RW).expect("open");
    const THREADS: u64 = 8;
    const CHUNKS: u64 = 64;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (vfs, open) = (&vfs, &open);
            s.spawn(move || {
                for c in 0..CHUNKS {
                    // Interleaved, so that most writes extend the file while
                    // others are in flight.
                    let offset = (c * THREADS + t) * 3000;
                    vfs.write(open, offset, &[9; 3000], Stability::Unstable)
                        .expect("write");
                }
            });
        }
    });
    let expected = walked(dir.path());
    assert_eq!(ledger(&vfs), expected);
    assert_eq!(
        std::fs::metadata(dir.path().join("a/f")).expect("f").len(),
        THREADS * CHUNKS * 3000
    );
}

#[test]
fn a_quota_refuses_growth_and_removals_make_room() {
    let (dir, vfs, root) = export(Some(64 << 10));
    let id = caller();
    let (_, start) = ledger(&vfs);
    let f = create(&vfs, &root, "f").expect("create");
    let open = vfs.open(&id, &f, RW).expect("open");
    // Up to the limit: the file's inode and data, the root's blocks.
    let room = (64 << 10) - start - 2048;
    let fits = room / 4096 * 4096;
    vfs.write(&open, 0, &vec![1; fits as usize], Stability::Unstable)
        .expect("a write that fits");
    assert!(matches!(
        vfs.write(&open, fits, &[1; 4096], Stability::Unstable),
        Err(VfsError::QuotaExceeded)
    ));
    assert!(matches!(
        size(&vfs, &f, fits + 4096),
        Err(VfsError::QuotaExceeded)
    ));
    assert!(matches!(
        create(&vfs, &root, "g"),
        Err(VfsError::QuotaExceeded)
    ));
    assert!(matches!(
        vfs.mkdir(&id, &root, b"d", 0o755),
        Err(VfsError::QuotaExceeded)
    ));
    // Overwrites, opening an existing file with a create, and truncations
    // need no room.
    vfs.write(&open, 0, &[2; 4096], Stability::Unstable)
        .expect("overwrite");
    vfs.create(
        &id,
        &root,
        b"f",
        0o644,
        CreateMode::Unchecked,
        &SetAttr::default(),
    )
    .expect("an unchecked create of an existing file");
    size(&vfs, &f, 4096).expect("truncate");
    vfs.write(&open, 4096, &[3; 8192], Stability::Unstable)
        .expect("room again after a truncation");
    vfs.remove(&id, &root, b"f").expect("remove");
    create(&vfs, &root, "g").expect("room again after a remove");
    // The export has no quota.
    let e = create(&vfs, &vfs.root(), "e").expect("create");
    let open_e = vfs.open(&id, &e, RW).expect("open");
    vfs.write(&open_e, 0, &vec![4; 1 << 20], Stability::Unstable)
        .expect("no quota through the export");
    assert_eq!(ledger(&vfs), walked(dir.path()));
}

#[test]
fn statfs_through_an_access_point_reports_its_usage_and_quota() {
    let (_dir, vfs, root) = export(Some(1 << 20));
    let f = create(&vfs, &root, "f").expect("create");
    let open = vfs.open(&caller(), &f, RW).expect("open");
    vfs.write(&open, 0, &[1; 100_000], Stability::Unstable)
        .expect("write");
    let (_, used) = ledger(&vfs);
    let volume = vfs.statfs(&vfs.root()).expect("statfs of the export");
    let left = (1 << 20) - used;
    for fh in [&root, &f] {
        let st = vfs.statfs(fh).expect("statfs through the access point");
        assert_eq!(st.bytes_total, 1 << 20);
        assert_eq!(st.bytes_free, left.min(volume.bytes_free));
        assert_eq!(st.bytes_avail, left.min(volume.bytes_avail));
        assert_eq!(st.files_total, volume.files_total);
    }
    // Without a quota the size is the access point's usage plus the
    // volume's free space.
    let (_dir, vfs, root) = export(None);
    let (_, used) = ledger(&vfs);
    let st = vfs.statfs(&root).expect("statfs");
    let volume = vfs.statfs(&vfs.root()).expect("statfs of the export");
    assert_eq!(st.bytes_avail, volume.bytes_avail);
    assert!(st.bytes_total.abs_diff(used + volume.bytes_free) < 1 << 20);
    assert!(st.bytes_total < volume.bytes_total);
}

#[test]
fn a_deleted_access_points_tree_leaves_the_disk_and_the_ledger() {
    let (dir, vfs, root) = export(None);
    let id = caller();
    let sub = vfs.mkdir(&id, &root, b"sub", 0o755).expect("mkdir").handle;
    for (at, name) in [(&root, "f"), (&sub, "g")] {
        let f = create(&vfs, at, name).expect("create");
        let open = vfs.open(&id, &f, RW).expect("open");
        vfs.write(&open, 0, &[7; 50_000], Stability::Unstable)
            .expect("write");
    }
    create(&vfs, &vfs.root(), "kept").expect("create");
    assert!(matches!(
        vfs.delete_tree("/a"),
        Err(DeleteTreeError::InUse { access_point, .. }) if access_point == "a"
    ));
    assert!(matches!(
        vfs.delete_tree("/"),
        Err(DeleteTreeError::ExportRoot(_))
    ));
    vfs.set_access_points(&[]);
    let removed = vfs.delete_tree("/a").expect("delete");
    assert_eq!(removed.objects, 4);
    assert!(!dir.path().join("a").exists());
    assert!(dir.path().join("kept").exists());
    let stop = AtomicBool::new(false);
    assert_eq!(
        vfs.usage().stored_bytes,
        measure(dir.path(), &stop).expect("walk")
    );
    assert_eq!(vfs.delete_tree("/a").expect("again").objects, 0);
}

#[test]
fn a_tree_above_or_below_a_configured_root_is_in_use() {
    let (_dir, vfs, _root) = export(None);
    let id = caller();
    let a = vfs.lookup(&id, &vfs.root(), b"a").expect("/a").0;
    vfs.mkdir(&id, &a, b"below", 0o755).expect("mkdir");
    vfs.set_access_points(&[AccessPoint {
        id: "below".into(),
        root_directory: "/a/below".into(),
        posix_user: None,
        creation_info: None,
        max_bytes: None,
    }]);
    assert!(matches!(
        vfs.delete_tree("/a"),
        Err(DeleteTreeError::InUse { .. })
    ));
    assert!(vfs.delete_tree("/a/other").is_ok());
}
