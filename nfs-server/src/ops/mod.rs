//! NFSv4.1 operations (which 4.0 COMPOUNDs use too, with 4.0's own few
//! added), one file per family. Each is a function of the
//! COMPOUND context and its decoded arguments that returns its typed result;
//! none touches bytes on the wire.

pub mod attr;
pub mod dir;
pub mod fh;
pub mod io;
pub mod lock;
pub mod open;
pub mod session;
pub mod stateid;

use openefs_nfs_wire::nfs4::Nfs4Error;
use openefs_nfs_wire::nfs4::types::{ChangeInfo4, Utf8Str};
use openefs_vfs::Attr;

/// Longest file name component (`maxname`).
pub const MAX_NAME: usize = 255;

/// Checks a component name from the client (RFC 8881 §14.5) and returns
/// its bytes. The vfs refuses what slips through, but the NFS status for
/// each case is decided here.
pub fn check_name(name: &Utf8Str) -> Result<Vec<u8>, Nfs4Error> {
    let b = name.as_bytes();
    if b.is_empty() || std::str::from_utf8(b).is_err() {
        return Err(Nfs4Error::Inval);
    }
    if b.len() > MAX_NAME {
        return Err(Nfs4Error::Nametoolong);
    }
    if b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Nfs4Error::Badname);
    }
    Ok(b.to_vec())
}

/// `change_info4` from the directory's attributes around a change. Not
/// atomic: another change may slip in between.
pub fn cinfo(before: &Attr, after: &Attr) -> ChangeInfo4 {
    ChangeInfo4 {
        atomic: false,
        before: before.change,
        after: after.change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        let n = |s: &[u8]| check_name(&Utf8Str::from(s));
        assert_eq!(n(b"a.txt"), Ok(b"a.txt".to_vec()));
        assert_eq!(n(b""), Err(Nfs4Error::Inval));
        assert_eq!(n(b"\xff"), Err(Nfs4Error::Inval));
        assert_eq!(n(b".."), Err(Nfs4Error::Badname));
        assert_eq!(n(b"a/b"), Err(Nfs4Error::Badname));
        assert_eq!(n(&[b'x'; 256]), Err(Nfs4Error::Nametoolong));
    }
}
