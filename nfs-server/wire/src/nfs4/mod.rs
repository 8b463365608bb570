//! NFSv4 (RFC 8881 for 4.1; RFC 7530's 4.0-only operations): program
//! constants, COMPOUND and every operation's arguments and results.

pub mod attr;
mod compound;
pub mod ops;
pub mod status;
pub mod types;

pub use attr::{AttrError, Bitmap4, Fattr4, FileAttrs};
pub use compound::*;
pub use ops::OpResult;
pub use status::{Nfs4Error, Nfs4Status, status_code};

pub const NFS4_PROGRAM: u32 = 100003;
pub const NFS_V4: u32 = 4;
pub const NFSPROC4_NULL: u32 = 0;
pub const NFSPROC4_COMPOUND: u32 = 1;
