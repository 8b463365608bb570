//! The stored-bytes ledger: what the file system and each access point
//! store, metered like Amazon EFS and kept current by every modifying call,
//! without walking the tree.
//!
//! Metering (EFS's published rules, "Metering: how Amazon EFS reports file
//! system and object sizes"): every object is charged [`INODE_CHARGE`]
//! (2 KiB) for its metadata plus its data in 4 KiB increments, at least one:
//! - regular file: its size rounded up to 4 KiB, or its allocated size (also
//!   rounded) when smaller (a sparse file);
//! - directory: its allocated size rounded up to 4 KiB;
//! - symlink, device, fifo, socket: 4 KiB.
//!
//! A hard-linked object is charged once, while it has a link.
//!
//! Keeping figures exact under concurrent writes without serialising them:
//! a sharded map inode → [`Meter`] holds the last metered size of each
//! object being changed. The first change in flight creates the entry from
//! a stat taken under the shard's lock; when a change ends, the object is
//! stat'ed again under the lock and the difference from the entry's figure
//! is what the ledger moves by. The entry goes when no change is in flight,
//! so memory is bounded by concurrency, and two writes to one file never
//! count the same growth twice (each moves the figure from the last one
//! seen, not from its own start).
//!
//! Access points: a change is counted for the access point the request came
//! through. Changes through the export root or another access point reach an
//! access point's figure at its next reconciliation ([`measure`]).
//!
//! Quotas: a change that can grow an access point with `max_bytes` reserves
//! its growth first (see [`Ledger::reserve`]); the reservation is replaced by
//! the real difference when the change ends. So concurrent writers cannot
//! together pass the limit by more than what a reservation does not foresee
//! (filling holes of a sparse file, directory growth).

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ap::Via;
use crate::{FileType, VfsError, VfsResult};

/// The metered data increment.
pub const BLOCK: u64 = 4096;
/// The metadata charge of every object (its inode).
pub const INODE_CHARGE: u64 = 2048;
/// What a new object adds at least (its metadata and one data block): the
/// growth a create reserves.
pub const NEW_OBJECT: u64 = INODE_CHARGE + BLOCK;
const SHARDS: usize = 16;

fn round_up(bytes: u64) -> u64 {
    bytes.div_ceil(BLOCK).saturating_mul(BLOCK)
}

/// The metered size of one object of type `ft`, `size` bytes long with
/// `allocated` bytes of storage.
pub fn metered_size(ft: FileType, size: u64, allocated: u64) -> u64 {
    let data = match ft {
        FileType::Regular => round_up(size).min(round_up(allocated)),
        FileType::Directory => round_up(allocated),
        _ => BLOCK,
    };
    INODE_CHARGE + data.max(BLOCK)
}

/// What an extending write or truncation of a file of `size` bytes to
/// `new_end` bytes adds at most to its metered size (holes it fills aside):
/// the first block is charged already.
pub fn growth(size: u64, new_end: u64) -> u64 {
    round_up(new_end)
        .max(BLOCK)
        .saturating_sub(round_up(size).max(BLOCK))
}

/// One figure of the ledger: stored bytes, and whether they were ever
/// established (restored from a record or measured) rather than counted
/// from zero since the start.
#[derive(Debug, Default)]
pub(crate) struct Figure {
    bytes: AtomicU64,
    known: AtomicBool,
}

impl Figure {
    fn add(&self, delta: i64) {
        // Saturating: a figure restored too small (changes made outside the
        // server) must not wrap to 16 EiB before its reconciliation.
        let _ = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_add_signed(delta))
            });
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    pub fn known(&self) -> bool {
        self.known.load(Ordering::Acquire)
    }

    /// Replaces the figure; returns the one it had.
    pub fn set(&self, bytes: u64) -> u64 {
        self.known.store(true, Ordering::Release);
        self.bytes.swap(bytes, Ordering::AcqRel)
    }
}

/// The last metered size of an object being changed.
#[derive(Debug)]
struct Meter {
    last: u64,
    in_flight: u32,
    /// Lost its last link while changes were in flight: they no longer count.
    gone: bool,
}

/// A change in flight on one object, from [`Ledger::begin`]; hand it back to
/// [`Ledger::end`] whatever the change's outcome.
#[must_use]
pub(crate) struct Change {
    ino: u64,
    via: Via,
    reserved: u64,
}

#[derive(Debug)]
pub(crate) struct Ledger {
    total: Figure,
    /// By access point id: those configured, and figures restored for ids
    /// not configured yet (settings may come after the start).
    aps: Mutex<HashMap<String, Arc<Figure>>>,
    meters: Box<[Mutex<HashMap<u64, Meter>>]>,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            total: Figure::default(),
            aps: Mutex::default(),
            meters: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain numbers, consistent after any panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ledger {
    pub fn total(&self) -> &Figure {
        &self.total
    }

    /// The figure of access point `id`, made (unknown, zero) if missing.
    /// Takes bytes removed outside the metered calls (a deleted tree) off
    /// the file system's figure.
    pub(crate) fn forget(&self, bytes: u64) {
        self.total.add(-i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn ap(&self, id: &str) -> Arc<Figure> {
        lock(&self.aps).entry(id.to_owned()).or_default().clone()
    }

    /// Replaces the configured access points: `before` by `now`. Figures of
    /// those removed go (usage through an access point that is gone means
    /// nothing; one added back is measured again).
    pub fn reconfigure<'a>(&self, before: impl Iterator<Item = &'a str>, now: &HashSet<&str>) {
        let mut aps = lock(&self.aps);
        for gone in before.filter(|id| !now.contains(id)) {
            aps.remove(gone);
        }
    }

    fn shard(&self, ino: u64) -> MutexGuard<'_, HashMap<u64, Meter>> {
        lock(&self.meters[(ino as usize) % SHARDS])
    }

    /// Moves the figures of `via` by `delta`, releasing `reserved` bytes of
    /// its access point's reservation.
    fn apply(&self, via: &Via, delta: i64, reserved: u64) {
        self.total.add(delta);
        if let Via::Ap(ap) = via {
            ap.usage
                .add(delta.saturating_sub(i64::try_from(reserved).unwrap_or(i64::MAX)));
        }
    }

    /// Reserves `growth` bytes of `via`'s quota, or refuses with
    /// `QuotaExceeded` when its figure would pass `max_bytes`. A request
    /// that cannot grow anything (`growth` 0: overwrites, truncations,
    /// removals) always passes, so space can be freed at the limit.
    fn reserve(&self, via: &Via, growth: u64) -> VfsResult<u64> {
        let Via::Ap(ap) = via else { return Ok(0) };
        let Some(max) = ap.spec.max_bytes else {
            return Ok(0);
        };
        if growth == 0 {
            return Ok(0);
        }
        ap.usage
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(growth).filter(|&after| after <= max)
            })
            .map(|_| growth)
            .map_err(|_| VfsError::QuotaExceeded)
    }

    /// Starts a change of object `ino` through `via` that may grow it by
    /// `growth(metered size now, stat now)`; `stat` gives its type, size and
    /// allocated bytes now, and is called under the object's lock.
    pub fn begin<S>(
        &self,
        ino: u64,
        via: &Via,
        stat: impl FnOnce() -> VfsResult<S>,
        metered: impl Fn(&S) -> u64,
        grows: impl FnOnce(&S) -> u64,
    ) -> VfsResult<Change> {
        let growth = {
            let mut shard = self.shard(ino);
            let st = stat()?;
            let meter = shard.entry(ino).or_insert_with(|| Meter {
                last: metered(&st),
                in_flight: 0,
                gone: false,
            });
            meter.in_flight += 1;
            grows(&st)
        };
        let change = Change {
            ino,
            via: via.clone(),
            reserved: 0,
        };
        match self.reserve(via, growth) {
            Ok(reserved) => Ok(Change { reserved, ..change }),
            Err(e) => {
                self.end(change, || None);
                Err(e)
            }
        }
    }

    /// Ends a change: moves the figures by what the object's metered size
    /// (`now`, called under the object's lock; `None` when it cannot be
    /// had) differs from the last one seen.
    pub fn end(&self, change: Change, now: impl FnOnce() -> Option<u64>) {
        let delta = {
            let mut shard = self.shard(change.ino);
            let Some(meter) = shard.get_mut(&change.ino) else {
                // Only `begin` makes entries and only the last `end` takes
                // them; nothing to count against.
                self.apply(&change.via, 0, change.reserved);
                return;
            };
            let mut delta = 0;
            if !meter.gone
                && let Some(now) = now()
            {
                delta = now as i64 - meter.last as i64;
                meter.last = now;
            }
            meter.in_flight -= 1;
            if meter.in_flight == 0 {
                shard.remove(&change.ino);
            }
            delta
        };
        self.apply(&change.via, delta, change.reserved);
    }

    /// Counts a new object (or a new first link of one): its metered size
    /// `now()` (under its lock), or the figure of changes already in flight
    /// on it, which count their own growth.
    pub fn created(&self, ino: u64, via: &Via, now: impl FnOnce() -> Option<u64>) {
        let added = {
            let shard = self.shard(ino);
            match shard.get(&ino) {
                Some(meter) => Some(meter.last),
                None => now(),
            }
        };
        if let Some(added) = added {
            self.apply(via, i64::try_from(added).unwrap_or(i64::MAX), 0);
        }
    }

    /// Uncounts an object that lost a link, if it was its last: `links()`
    /// (under its lock) says how many it has now, `before` is its metered
    /// size before the link went.
    pub fn unlinked(&self, ino: u64, via: &Via, before: u64, links: impl FnOnce() -> u32) {
        let freed = {
            let mut shard = self.shard(ino);
            if links() > 0 {
                return;
            }
            match shard.get_mut(&ino) {
                Some(meter) if !meter.gone => {
                    meter.gone = true;
                    meter.last
                }
                Some(_) => return,
                None => before,
            }
        };
        self.apply(via, -i64::try_from(freed).unwrap_or(i64::MAX), 0);
    }
}

/// The metered bytes of the tree under `root`: every object by the rules
/// above, hard-linked ones once, staying on `root`'s file system. Entries
/// that vanish during the walk are skipped. Stops with `Interrupted` once
/// `stop` is set, so a long walk does not hold up the server's exit.
pub fn measure(root: &Path, stop: &AtomicBool) -> io::Result<u64> {
    let of = |meta: &std::fs::Metadata| {
        let ft = meta.file_type();
        let ft = if ft.is_dir() {
            FileType::Directory
        } else if ft.is_file() {
            FileType::Regular
        } else {
            FileType::Symlink
        };
        metered_size(ft, meta.size(), meta.blocks().saturating_mul(512))
    };
    // Followed: `root` may be a `/proc/self/fd` link to the directory.
    let top = std::fs::metadata(root)?;
    let dev = top.dev();
    let mut total = of(&top);
    let mut linked = HashSet::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        if stop.load(Ordering::Relaxed) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if dir == root => return Err(e),
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.dev() != dev {
                continue;
            }
            if !meta.is_dir() && meta.nlink() > 1 && !linked.insert(meta.ino()) {
                continue;
            }
            total += of(&meta);
            if meta.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_metered_like_efs() {
        // An empty file: metadata and one block.
        assert_eq!(metered_size(FileType::Regular, 0, 0), 6144);
        assert_eq!(metered_size(FileType::Regular, 1, 4096), 6144);
        assert_eq!(metered_size(FileType::Regular, 4097, 8192), 2048 + 8192);
        // Sparse: the allocated size when smaller.
        assert_eq!(metered_size(FileType::Regular, 1 << 30, 4096), 6144);
        // Preallocated beyond the size: the size.
        assert_eq!(metered_size(FileType::Regular, 10, 1 << 20), 6144);
        assert_eq!(metered_size(FileType::Directory, 4096, 12288), 2048 + 12288);
        assert_eq!(metered_size(FileType::Symlink, 100, 0), 6144);
        assert_eq!(metered_size(FileType::Fifo, 0, 0), 6144);
        assert_eq!(growth(100, 5000), 4096);
        assert_eq!(growth(5000, 100), 0);
        assert_eq!(growth(0, 4096), 0);
        assert_eq!(growth(0, 8192), 4096);
    }

    #[test]
    fn measure_counts_hard_links_once_and_stops_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let empty = measure(dir.path(), &stop).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 1 << 20]).unwrap();
        std::fs::hard_link(dir.path().join("sub/a"), dir.path().join("b")).unwrap();
        let full = measure(dir.path(), &stop).unwrap();
        // The directory (6 KiB) and one MiB of data with its inode, once.
        assert_eq!(full - empty, 6144 + 2048 + (1 << 20));
        stop.store(true, Ordering::Relaxed);
        let err = measure(dir.path(), &stop).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    }
}
