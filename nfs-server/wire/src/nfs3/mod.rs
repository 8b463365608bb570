//! NFSv3 (RFC 1813): program constants and every procedure's arguments and
//! results. File handles are at most 64 bytes, which is why the server's
//! handles (shared with NFSv4) never exceed that.

pub mod ops;
pub mod status;
pub mod types;

pub use status::{Fail3, Nfs3Error, Res3};

pub const NFS3_PROGRAM: u32 = 100003;
pub const NFS_V3: u32 = 3;

pub const NFSPROC3_NULL: u32 = 0;
pub const NFSPROC3_GETATTR: u32 = 1;
pub const NFSPROC3_SETATTR: u32 = 2;
pub const NFSPROC3_LOOKUP: u32 = 3;
pub const NFSPROC3_ACCESS: u32 = 4;
pub const NFSPROC3_READLINK: u32 = 5;
pub const NFSPROC3_READ: u32 = 6;
pub const NFSPROC3_WRITE: u32 = 7;
pub const NFSPROC3_CREATE: u32 = 8;
pub const NFSPROC3_MKDIR: u32 = 9;
pub const NFSPROC3_SYMLINK: u32 = 10;
pub const NFSPROC3_MKNOD: u32 = 11;
pub const NFSPROC3_REMOVE: u32 = 12;
pub const NFSPROC3_RMDIR: u32 = 13;
pub const NFSPROC3_RENAME: u32 = 14;
pub const NFSPROC3_LINK: u32 = 15;
pub const NFSPROC3_READDIR: u32 = 16;
pub const NFSPROC3_READDIRPLUS: u32 = 17;
pub const NFSPROC3_FSSTAT: u32 = 18;
pub const NFSPROC3_FSINFO: u32 = 19;
pub const NFSPROC3_PATHCONF: u32 = 20;
pub const NFSPROC3_COMMIT: u32 = 21;

/// The procedure's RFC name (`NFSPROC3_GETATTR`, unlike NFSv4's bare
/// operation names), for logs and metrics; `None` for a number RFC 1813
/// does not define.
pub fn proc_name(proc_: u32) -> Option<&'static str> {
    Some(match proc_ {
        NFSPROC3_NULL => "NFSPROC3_NULL",
        NFSPROC3_GETATTR => "NFSPROC3_GETATTR",
        NFSPROC3_SETATTR => "NFSPROC3_SETATTR",
        NFSPROC3_LOOKUP => "NFSPROC3_LOOKUP",
        NFSPROC3_ACCESS => "NFSPROC3_ACCESS",
        NFSPROC3_READLINK => "NFSPROC3_READLINK",
        NFSPROC3_READ => "NFSPROC3_READ",
        NFSPROC3_WRITE => "NFSPROC3_WRITE",
        NFSPROC3_CREATE => "NFSPROC3_CREATE",
        NFSPROC3_MKDIR => "NFSPROC3_MKDIR",
        NFSPROC3_SYMLINK => "NFSPROC3_SYMLINK",
        NFSPROC3_MKNOD => "NFSPROC3_MKNOD",
        NFSPROC3_REMOVE => "NFSPROC3_REMOVE",
        NFSPROC3_RMDIR => "NFSPROC3_RMDIR",
        NFSPROC3_RENAME => "NFSPROC3_RENAME",
        NFSPROC3_LINK => "NFSPROC3_LINK",
        NFSPROC3_READDIR => "NFSPROC3_READDIR",
        NFSPROC3_READDIRPLUS => "NFSPROC3_READDIRPLUS",
        NFSPROC3_FSSTAT => "NFSPROC3_FSSTAT",
        NFSPROC3_FSINFO => "NFSPROC3_FSINFO",
        NFSPROC3_PATHCONF => "NFSPROC3_PATHCONF",
        NFSPROC3_COMMIT => "NFSPROC3_COMMIT",
        _ => return None,
    })
}
