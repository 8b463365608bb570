//! LocalVfs with encrypted contents (`LocalVfsOptions::content_key`),
//! checked through the vfs against a model and on the raw backing bytes.
//! Needs root, as tests/local.rs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openefs_vfs::{
    ContentKey, CreateMode, FileHandle, Identity, LocalVfs, LocalVfsOptions, OpenAccess, OpenFile,
    SetAttr, Stability, Vfs, VfsError,
};
use proptest::prelude::*;

const BLOCK: usize = 4096;

fn root_id() -> Identity {
    Identity {
        uid: 0,
        gid: 0,
        groups: vec![],
    }
}

fn key(seed: u8) -> ContentKey {
    let mut k = [0u8; ContentKey::LEN];
    for (i, b) in k.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    ContentKey::from_bytes(&k)
}

fn open_vfs(dir: &Path, seed: u8) -> LocalVfs {
    LocalVfs::with_options(
        dir,
        LocalVfsOptions {
            sync_metadata: false,
            content_key: Some(key(seed)),
            ..LocalVfsOptions::default()
        },
    )
    .expect("encrypted LocalVfs")
}

fn export() -> (tempfile::TempDir, LocalVfs) {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests need root"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let vfs = open_vfs(dir.path(), 1);
    (dir, vfs)
}

/// A file of the export root, opened for reading and writing, and where its
/// raw bytes are.
struct TestFile {
    fh: FileHandle,
    open: Arc<OpenFile>,
    path: PathBuf,
}

fn new_file(dir: &Path, vfs: &LocalVfs, name: &str) -> TestFile {
    let fh = vfs
        .create(
            &root_id(),
            &vfs.root(),
            name.as_bytes(),
            0o644,
            CreateMode::Guarded,
            &SetAttr::default(),
        )
        .expect("create")
        .handle;
    reopen(dir, vfs, fh, name, true)
}

fn reopen(dir: &Path, vfs: &LocalVfs, fh: FileHandle, name: &str, read: bool) -> TestFile {
    let open = vfs
        .open(&root_id(), &fh, OpenAccess { read, write: true })
        .expect("open");
    TestFile {
        fh,
        open,
        path: dir.join(name),
    }
}

fn write(vfs: &LocalVfs, f: &TestFile, offset: u64, data: &[u8]) {
    vfs.write(&f.open, offset, data, Stability::Unstable)
        .expect("write");
}

fn truncate(vfs: &LocalVfs, f: &TestFile, size: u64) {
    vfs.setattr(
        &root_id(),
        &f.fh,
        &SetAttr {
            size: Some(size),
            ..SetAttr::default()
        },
    )
    .expect("setattr size");
}

fn read(vfs: &LocalVfs, f: &TestFile, offset: u64, count: u32) -> (Vec<u8>, bool) {
    vfs.read(&f.open, offset, count).expect("read")
}

fn read_all(vfs: &LocalVfs, f: &TestFile) -> Vec<u8> {
    let size = vfs.getattr(&f.fh).expect("getattr").size;
    let (data, eof) = read(vfs, f, 0, u32::try_from(size + 1).expect("small file"));
    assert!(eof);
    assert_eq!(data.len() as u64, size, "size and contents agree");
    data
}

fn raw(f: &TestFile) -> Vec<u8> {
    std::fs::read(&f.path).expect("raw backing bytes")
}

/// Text no cipher output contains by chance: 16-byte windows of it are
/// looked for in the raw bytes.
fn text(len: usize) -> Vec<u8> {
    b"openefs plaintext that must never reach the disk as it is; "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// Whether any `window`-byte run of `needle` occurs in `haystack`.
fn contains_window(haystack: &[u8], needle: &[u8], window: usize) -> bool {
    let window = window.min(needle.len());
    let runs: std::collections::HashSet<&[u8]> = haystack.windows(window).collect();
    needle.windows(window).any(|w| runs.contains(w))
}

fn apply_write(model: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if model.len() < offset + data.len() {
        model.resize(offset + data.len(), 0);
    }
    model[offset..offset + data.len()].copy_from_slice(data);
}

#[test]
fn unaligned_writes_and_reads_across_block_boundaries() {
    let (dir, vfs) = export();
    let f = new_file(dir.path(), &vfs, "f");
    let mut model = Vec::new();
    let writes: &[(usize, usize)] = &[
        (0, 10),
        (5, BLOCK),
        (BLOCK - 3, 7),
        (3 * BLOCK + 100, 2 * BLOCK + 1),
        (BLOCK * 2 - 1, 2),
        (0, 3 * BLOCK),
        (7 * BLOCK - 17, 17),
    ];
    for (i, &(offset, len)) in writes.iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|j| (i * 37 + j) as u8 | 1).collect();
        write(&vfs, &f, offset as u64, &data);
        apply_write(&mut model, offset, &data);
        assert_eq!(read_all(&vfs, &f), model, "after write {i}");
    }
    for (offset, count) in [(1, 1), (BLOCK - 1, 2), (BLOCK + 7, 3 * BLOCK), (100, 5000)] {
        let (data, eof) = read(&vfs, &f, offset as u64, count as u32);
        let end = (offset + count).min(model.len());
        assert_eq!(data, model[offset..end], "read {offset}+{count}");
        assert_eq!(eof, end == model.len());
    }
    let (past, eof) = read(&vfs, &f, model.len() as u64 + 10, 10);
    assert!(past.is_empty() && eof);
}

/// Large writes and reads (more than one cipher piece, spread over threads)
/// agree with a model at piece boundaries, whole-block or not, and the disk
/// holds no plaintext.
#[test]
fn large_ranges_split_over_threads_round_trip() {
    const PIECE: usize = 128 * 1024;
    let (dir, vfs) = export();
    let f = new_file(dir.path(), &vfs, "f");
    let mut model = Vec::new();
    let writes: &[(usize, usize)] = &[
        (0, 1 << 20),
        (3 * PIECE, 2 * PIECE),
        (PIECE - BLOCK, PIECE + 2 * BLOCK),
        (100, 3 * PIECE + 5),
        ((1 << 20) - BLOCK, 2 * PIECE + 17),
        (5 * PIECE, 3 * PIECE),
    ];
    for (i, &(offset, len)) in writes.iter().enumerate() {
        // Not periodic, so that a piece in the wrong place shows.
        let data: Vec<u8> = (0..len)
            .map(|j| (j.wrapping_mul(2_654_435_761) >> 11) as u8 ^ i as u8)
            .collect();
        write(&vfs, &f, offset as u64, &data);
        apply_write(&mut model, offset, &data);
        assert_eq!(read_all(&vfs, &f), model, "after write {i}");
    }
    for (offset, count) in [(0, 1 << 20), (PIECE - 1, 2 * PIECE + 2), (7, 5 * PIECE)] {
        let (data, eof) = read(&vfs, &f, offset as u64, count as u32);
        let end = (offset + count).min(model.len());
        assert_eq!(data, model[offset..end], "read {offset}+{count}");
        assert_eq!(eof, end == model.len());
    }
    assert!(!contains_window(&raw(&f), &model, 32), "plaintext on disk");
}

#[test]
fn tails_of_every_length_round_trip_and_are_ciphertext() {
    let (dir, vfs) = export();
    let f = new_file(dir.path(), &vfs, "f");
    for tail in 1..BLOCK {
        let data = text(BLOCK + tail);
        truncate(&vfs, &f, 0);
        write(&vfs, &f, 0, &data);
        assert_eq!(read_all(&vfs, &f), data, "tail of {tail}");
        let on_disk = raw(&f);
        assert_eq!(on_disk.len(), data.len(), "size-preserving");
        assert_ne!(on_disk[BLOCK..], data[BLOCK..], "tail of {tail} encrypted");
    }
}

#[test]
fn size_changes_by_setattr_and_by_writes_past_the_end() {
    let (dir, vfs) = export();
    let f = new_file(dir.path(), &vfs, "f");
    let mut model = text(5000);
    write(&vfs, &f, 0, &model);
    // (new size by SETATTR) or (a write past the end at offset, length).
    let steps: &[(Option<u64>, usize, usize)] = &[
        (Some(4099), 0, 0),
        (Some(4090), 0, 0),
        (Some(9000), 0, 0),
        (None, 3 * BLOCK + 5, 3),
        (Some(3 * BLOCK as u64 + 20), 0, 0),
        (Some(10), 0, 0),
        (None, 2 * BLOCK, BLOCK),
        (Some(2 * BLOCK as u64 + 1), 0, 0),
        (Some(BLOCK as u64 + 16), 0, 0),
        (None, 5 * BLOCK + 1, 15),
        (Some(0), 0, 0),
        (Some(7), 0, 0),
    ];
    for (i, &(size, offset, len)) in steps.iter().enumerate() {
        match size {
            Some(size) => {
                truncate(&vfs, &f, size);
                model.resize(size as usize, 0);
            }
            None => {
                let data = text(len);
                write(&vfs, &f, offset as u64, &data);
                apply_write(&mut model, offset, &data);
            }
        }
        assert_eq!(read_all(&vfs, &f), model, "step {i}");
        assert_eq!(
            raw(&f).len(),
            model.len(),
            "step {i}: on-disk size is the size"
        );
    }
    // Every unit, tails included, survives a new instance.
    let again = open_vfs(dir.path(), 1);
    let g = reopen(dir.path(), &again, f.fh.clone(), "f", true);
    assert_eq!(read_all(&again, &g), model);
}

#[test]
fn a_failed_write_past_the_largest_size_changes_nothing() {
    let (dir, vfs) = export();
    let f = new_file(dir.path(), &vfs, "f");
    let data = text(100);
    write(&vfs, &f, 0, &data);
    // Past any file system's largest offset (2^63 - 1): refused by the
    // kernel after the old last unit was re-encrypted as a whole block.
    for (offset, len) in [((1u64 << 63) - 8, 16), ((1u64 << 63) - 4096, 4096)] {
        vfs.write(&f.open, offset, &text(len), Stability::Unstable)
            .expect_err("write past the largest size");
        assert_eq!(vfs.getattr(&f.fh).expect("getattr").size, 100);
        assert_eq!(read_all(&vfs, &f), data);
    }
}

#[test]
fn holes_read_as_zeros_and_stay_holes() {
    let (dir, vfs) = export();
    let f = new_file(dir.path(), &vfs, "f");
    write(&vfs, &f, 0, &text(100));
    write(&vfs, &f, 64 * BLOCK as u64, &text(BLOCK));
    let (gap, _) = read(&vfs, &f, 2 * BLOCK as u64, 60 * BLOCK as u32);
    assert_eq!(gap, vec![0; 60 * BLOCK]);
    // The old tail block became a whole unit; the blocks after it were never
    // written, so they are still unallocated on disk.
    let on_disk = raw(&f);
    assert!(on_disk[2 * BLOCK..64 * BLOCK].iter().all(|&b| b == 0));
    let blocks = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&f.path).expect("stat"));
    assert!(blocks * 512 < 16 * BLOCK as u64, "sparse: {blocks} sectors");
    // Growing by SETATTR leaves holes too, and a short new tail is data.
    truncate(&vfs, &f, 100 * BLOCK as u64 + 9);
    let (tail, eof) = read(&vfs, &f, 99 * BLOCK as u64, 2 * BLOCK as u32);
    assert!(eof);
    assert_eq!(tail, vec![0; BLOCK + 9]);
    assert_ne!(
        raw(&f)[100 * BLOCK..],
        [0; 9],
        "a short tail is never a hole"
    );
}

#[test]
fn create_with_a_size_gives_zeros() {
    let (dir, vfs) = export();
    for size in [0u64, 9, 16, 5000] {
        let name = format!("sized-{size}");
        let created = vfs
            .create(
                &root_id(),
                &vfs.root(),
                name.as_bytes(),
                0o644,
                CreateMode::Unchecked,
                &SetAttr {
                    size: Some(size),
                    ..SetAttr::default()
                },
            )
            .expect("create with size");
        assert_eq!(created.attr.size, size);
        let f = reopen(dir.path(), &vfs, created.handle, &name, true);
        assert_eq!(read_all(&vfs, &f), vec![0; size as usize]);
    }
    // An exclusive create gets a nonce too: its data is encrypted.
    let created = vfs
        .create(
            &root_id(),
            &vfs.root(),
            b"excl",
            0o644,
            CreateMode::Exclusive([4; 8]),
            &SetAttr::default(),
        )
        .expect("exclusive create");
    let f = reopen(dir.path(), &vfs, created.handle, "excl", true);
    write(&vfs, &f, 0, &text(300));
    assert_eq!(read_all(&vfs, &f), text(300));
    assert!(!contains_window(&raw(&f), &text(300), 16));
}

#[test]
fn the_disk_never_holds_the_plaintext() {
    let (dir, vfs) = export();
    let a = new_file(dir.path(), &vfs, "a");
    let b = new_file(dir.path(), &vfs, "b");
    let data = text(3 * BLOCK + 77);
    for f in [&a, &b] {
        // In pieces of every alignment, as a client may send them.
        for (offset, len) in [(0, 1000), (1000, 5000), (6000, data.len() - 6000)] {
            write(&vfs, f, offset as u64, &data[offset..offset + len]);
        }
        assert_eq!(read_all(&vfs, f), data);
        assert!(!contains_window(&raw(f), &data, 16), "plaintext on disk");
    }
    // Equal plaintext in two files: unrelated ciphertext, block by block.
    let (ra, rb) = (raw(&a), raw(&b));
    assert_eq!(ra.len(), rb.len());
    for (i, (x, y)) in ra.chunks(16).zip(rb.chunks(16)).enumerate() {
        assert_ne!(x, y, "16-byte block {i} equal in both files");
    }
    // The text repeats every 59 bytes: equal plaintext at two positions of
    // one file, different ciphertext.
    assert_eq!(data[..16], data[59 * 70..59 * 70 + 16]);
    assert_ne!(ra[..16], ra[59 * 70..59 * 70 + 16]);
}

#[test]
fn another_key_reads_other_bytes() {
    let (dir, vfs) = export();
    let f = new_file(dir.path(), &vfs, "f");
    let data = text(2 * BLOCK + 5);
    write(&vfs, &f, 0, &data);
    let wrong = open_vfs(dir.path(), 2);
    let g = reopen(dir.path(), &wrong, f.fh.clone(), "f", true);
    let seen = read_all(&wrong, &g);
    assert_eq!(seen.len(), data.len());
    // XTS has no integrity: a wrong key gives other bytes, not an error
    // (nfsd checks the key before serving).
    for (i, (x, y)) in seen.chunks(16).zip(data.chunks(16)).enumerate() {
        assert_ne!(x, y, "16-byte block {i} decrypted under the wrong key");
    }
}

#[test]
fn a_file_with_data_and_no_nonce_is_refused() {
    let (dir, vfs) = export();
    std::fs::write(dir.path().join("plain"), b"written around the server").expect("write");
    std::fs::write(dir.path().join("empty"), b"").expect("write");
    let (fh, _) = vfs
        .lookup(&root_id(), &vfs.root(), b"plain")
        .expect("lookup");
    let f = reopen(dir.path(), &vfs, fh, "plain", true);
    let is_eio = |e: VfsError| e.errno() == libc::EIO;
    assert!(is_eio(vfs.read(&f.open, 0, 10).expect_err("read refused")));
    assert!(is_eio(
        vfs.write(&f.open, 0, b"x", Stability::Unstable)
            .expect_err("write refused")
    ));
    assert!(is_eio(
        vfs.setattr(
            &root_id(),
            &f.fh,
            &SetAttr {
                size: Some(3),
                ..SetAttr::default()
            }
        )
        .expect_err("resize refused")
    ));
    assert_eq!(raw(&f), b"written around the server", "left alone");
    // An empty file made around the server holds no plaintext: it gets a
    // nonce on its first write.
    let (fh, _) = vfs
        .lookup(&root_id(), &vfs.root(), b"empty")
        .expect("lookup");
    let e = reopen(dir.path(), &vfs, fh, "empty", true);
    write(&vfs, &e, 3, &text(40));
    assert_eq!(read_all(&vfs, &e)[3..], text(40));
    assert!(!contains_window(&raw(&e), &text(40), 16));
}

#[test]
fn a_write_only_open_can_write_partial_blocks() {
    let (dir, vfs) = export();
    let f = new_file(dir.path(), &vfs, "f");
    write(&vfs, &f, 0, &text(BLOCK + 50));
    let w = reopen(dir.path(), &vfs, f.fh.clone(), "f", false);
    write(&vfs, &w, 10, b"0123456789");
    write(&vfs, &w, BLOCK as u64 + 60, b"past the end");
    let mut model = text(BLOCK + 50);
    apply_write(&mut model, 10, b"0123456789");
    apply_write(&mut model, BLOCK + 60, b"past the end");
    assert_eq!(read_all(&vfs, &f), model);
}

#[test]
fn concurrent_unaligned_writers_lose_no_update() {
    let (dir, vfs) = export();
    let f = new_file(dir.path(), &vfs, "f");
    write(&vfs, &f, 0, &vec![0xee; 2 * BLOCK]);
    const WRITERS: usize = 8;
    const ROUNDS: u8 = 50;
    // Writer w owns bytes BLOCK - 20 + w, + WRITERS, ... (across the block
    // boundary); each read-modify-write of a block must keep the others'.
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (vfs, f) = (&vfs, &f);
            s.spawn(move || {
                for round in 1..=ROUNDS {
                    for at in (BLOCK - 20 + w..BLOCK + 20).step_by(WRITERS) {
                        write(vfs, f, at as u64, &[round]);
                    }
                }
            });
        }
    });
    let got = read_all(&vfs, &f);
    assert!(got[BLOCK - 20..BLOCK + 20].iter().all(|&b| b == ROUNDS));
    assert!(got[..BLOCK - 20].iter().all(|&b| b == 0xee));
    assert!(got[BLOCK + 20..].iter().all(|&b| b == 0xee));
    drop(dir);
}

#[derive(Clone, Debug)]
enum Op {
    Write { offset: usize, len: usize, seed: u8 },
    Truncate(usize),
    Read { offset: usize, len: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let at = 0..4 * BLOCK + 40;
    prop_oneof![
        4 => (at.clone(), 1..2 * BLOCK + 20, any::<u8>())
            .prop_map(|(offset, len, seed)| Op::Write { offset, len, seed }),
        2 => (0..5 * BLOCK).prop_map(Op::Truncate),
        2 => (at, 0..3 * BLOCK).prop_map(|(offset, len)| Op::Read { offset, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random writes, truncations and reads agree with a plain byte vector,
    /// also after a new instance, and never leave the plaintext on disk.
    #[test]
    fn agrees_with_a_model(ops in prop::collection::vec(op(), 1..16)) {
        let (dir, vfs) = export();
        let f = new_file(dir.path(), &vfs, "f");
        let mut model: Vec<u8> = Vec::new();
        for op in &ops {
            match *op {
                Op::Write { offset, len, seed } => {
                    let data: Vec<u8> =
                        (0..len).map(|i| seed.wrapping_add((i % 253) as u8)).collect();
                    write(&vfs, &f, offset as u64, &data);
                    apply_write(&mut model, offset, &data);
                }
                Op::Truncate(size) => {
                    truncate(&vfs, &f, size as u64);
                    model.resize(size, 0);
                }
                Op::Read { offset, len } => {
                    let (data, eof) = read(&vfs, &f, offset as u64, len as u32);
                    let end = (offset + len).min(model.len());
                    let want = model.get(offset..end).unwrap_or_default();
                    prop_assert_eq!(&data[..], want);
                    prop_assert_eq!(eof, offset + len >= model.len());
                }
            }
            prop_assert_eq!(vfs.getattr(&f.fh).expect("getattr").size, model.len() as u64);
        }
        prop_assert_eq!(read_all(&vfs, &f), model.clone());
        let again = open_vfs(dir.path(), 1);
        let g = reopen(dir.path(), &again, f.fh.clone(), "f", true);
        prop_assert_eq!(read_all(&again, &g), model.clone());
        // Where the model has no zero run, the raw bytes must differ.
        let on_disk = raw(&f);
        prop_assert_eq!(on_disk.len(), model.len());
        for (i, (r, m)) in on_disk.chunks(16).zip(model.chunks(16)).enumerate() {
            prop_assert!(r != m || m.iter().all(|&b| b == 0), "block {} stored as plaintext", i);
        }
    }
}

/// Sequential 1 MiB writes then reads of 256 MiB through the vfs, plaintext
/// and encrypted in the same run, with the ratio (the backing directory's
/// file system and page cache included, the network not).
/// `cargo test --release -p openefs-vfs --test encrypted -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check; run on demand in release"]
fn throughput_plain_vs_encrypted() {
    const CHUNK: usize = 1 << 20;
    const TOTAL: usize = 256 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let measure = |vfs: &LocalVfs, name: &str| {
        let f = new_file(dir.path(), vfs, name);
        let data = text(CHUNK);
        let started = std::time::Instant::now();
        for i in 0..TOTAL / CHUNK {
            write(vfs, &f, (i * CHUNK) as u64, &data);
        }
        let written = started.elapsed();
        let started = std::time::Instant::now();
        for i in 0..TOTAL / CHUNK {
            let (got, _) = read(vfs, &f, (i * CHUNK) as u64, CHUNK as u32);
            assert_eq!(got.len(), CHUNK);
        }
        let read = started.elapsed();
        std::fs::remove_file(dir.path().join(name)).expect("remove");
        let mbs = |d: std::time::Duration| TOTAL as f64 / 1e6 / d.as_secs_f64();
        (mbs(written), mbs(read))
    };
    let plain = LocalVfs::with_options(
        dir.path(),
        LocalVfsOptions {
            sync_metadata: false,
            ..LocalVfsOptions::default()
        },
    )
    .expect("plain LocalVfs");
    let (pw, pr) = measure(&plain, "plain");
    let (ew, er) = measure(&open_vfs(dir.path(), 1), "encrypted");
    println!(
        "write: plain {pw:.0} MB/s, encrypted {ew:.0} MB/s ({:.0} %); \
         read: plain {pr:.0} MB/s, encrypted {er:.0} MB/s ({:.0} %)",
        100.0 * ew / pw,
        100.0 * er / pr
    );
}
