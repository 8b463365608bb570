//! Reading a directory for one READDIR reply, shared by NFSv4 READDIR and
//! NFSv3 READDIR/READDIRPLUS: the vfs pages through the directory by its
//! own cookies, the protocol decides when its reply is full.

use openefs_vfs::{DirEntry, FileHandle, Identity, Vfs, VfsResult};

/// Vfs calls one reply may make; each returns up to a reply's worth.
const ROUNDS: usize = 16;

/// Entries a vfs call is asked for, for a reply of `maxcount` bytes: the
/// smallest entry takes 24 bytes.
pub fn batch_for(maxcount: u32) -> usize {
    (maxcount as usize / 24).clamp(1, 4096)
}

/// Hands the entries of `dir` after `cookie` to `take` until it refuses one
/// (its reply is full) or the directory ends. Returns whether the end was
/// reached with every entry taken.
pub fn walk(
    v: &dyn Vfs,
    id: &Identity,
    dir: &FileHandle,
    cookie: u64,
    batch: usize,
    mut take: impl FnMut(DirEntry) -> bool,
) -> VfsResult<bool> {
    let mut cookie = cookie;
    for _ in 0..ROUNDS {
        let page = v.readdir(id, dir, cookie, batch)?;
        let got = page.entries.len();
        for entry in page.entries {
            let next = entry.cookie;
            if !take(entry) {
                return Ok(false);
            }
            cookie = next;
        }
        if page.eof {
            return Ok(true);
        }
        if got == 0 {
            break;
        }
    }
    Ok(false)
}
