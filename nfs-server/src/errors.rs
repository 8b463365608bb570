//! The tables from our error types to `nfsstat4` and `nfsstat3`. Every
//! variant is listed so a new one cannot silently map to a wrong status.

use openefs_nfs_wire::nfs3::Nfs3Error;
use openefs_nfs_wire::nfs4::Nfs4Error;
use openefs_vfs::VfsError;

use crate::state::StateError;

impl From<StateError> for Nfs4Error {
    fn from(e: StateError) -> Self {
        match e {
            StateError::StaleClientId => Nfs4Error::StaleClientid,
            StateError::BadSession => Nfs4Error::Badsession,
            StateError::BadSlot => Nfs4Error::Badslot,
            StateError::SeqMisordered => Nfs4Error::SeqMisordered,
            StateError::Delay => Nfs4Error::Delay,
            StateError::RetryUncachedRep => Nfs4Error::RetryUncachedRep,
            StateError::BadStateid => Nfs4Error::BadStateid,
            StateError::StaleStateid => Nfs4Error::StaleStateid,
            StateError::OldStateid => Nfs4Error::OldStateid,
            StateError::ClientIdBusy => Nfs4Error::ClientidBusy,
            StateError::ShareDenied => Nfs4Error::ShareDenied,
            StateError::Inval => Nfs4Error::Inval,
            StateError::LocksHeld => Nfs4Error::LocksHeld,
            StateError::TooManyOps => Nfs4Error::TooManyOps,
            StateError::CompleteAlready => Nfs4Error::CompleteAlready,
            StateError::OpenMode => Nfs4Error::Openmode,
            StateError::Grace => Nfs4Error::Grace,
            StateError::NoGrace => Nfs4Error::NoGrace,
            StateError::BadSeqid => Nfs4Error::BadSeqid,
            StateError::ClidInUse => Nfs4Error::ClidInuse,
        }
    }
}

/// A vfs failure as an NFSv4 status (a function: neither type is ours).
pub fn vfs_status(e: VfsError) -> Nfs4Error {
    match e {
        VfsError::NotFound => Nfs4Error::Noent,
        VfsError::Exists => Nfs4Error::Exist,
        VfsError::NotEmpty => Nfs4Error::Notempty,
        VfsError::NotDir => Nfs4Error::Notdir,
        VfsError::IsDir => Nfs4Error::Isdir,
        VfsError::Symlink => Nfs4Error::Symlink,
        VfsError::WrongType => Nfs4Error::WrongType,
        VfsError::Access => Nfs4Error::Access,
        VfsError::Perm => Nfs4Error::Perm,
        VfsError::Stale => Nfs4Error::Stale,
        VfsError::BadHandle => Nfs4Error::Badhandle,
        VfsError::NameTooLong => Nfs4Error::Nametoolong,
        VfsError::InvalidName => Nfs4Error::Badname,
        VfsError::Inval => Nfs4Error::Inval,
        VfsError::BadCookie => Nfs4Error::BadCookie,
        VfsError::NoSpace => Nfs4Error::Nospc,
        VfsError::QuotaExceeded => Nfs4Error::Dquot,
        VfsError::ReadOnly => Nfs4Error::Rofs,
        VfsError::XDev => Nfs4Error::Xdev,
        // ELOOP comes from refusing to follow a symlink (O_NOFOLLOW);
        // NFSv4 resolves no symlinks on the server, so it is SYMLINK.
        VfsError::Loop => Nfs4Error::Symlink,
        VfsError::FileTooLarge => Nfs4Error::Fbig,
        VfsError::TooManyLinks => Nfs4Error::Mlink,
        VfsError::NotSupported => Nfs4Error::Notsupp,
        VfsError::Io { .. } => Nfs4Error::Io,
    }
}

/// A vfs failure as an NFSv3 status. NFSv3 has no SYMLINK, WRONG_TYPE or
/// BADNAME; RFC 1813 and knfsd answer INVAL for an operation on the wrong
/// kind of object and ACCES for a name that is not a single component.
pub fn vfs_status3(e: VfsError) -> Nfs3Error {
    match e {
        VfsError::NotFound => Nfs3Error::Noent,
        VfsError::Exists => Nfs3Error::Exist,
        VfsError::NotEmpty => Nfs3Error::Notempty,
        VfsError::NotDir => Nfs3Error::Notdir,
        VfsError::IsDir => Nfs3Error::Isdir,
        VfsError::Symlink => Nfs3Error::Inval,
        VfsError::WrongType => Nfs3Error::Inval,
        VfsError::Access => Nfs3Error::Acces,
        VfsError::Perm => Nfs3Error::Perm,
        VfsError::Stale => Nfs3Error::Stale,
        VfsError::BadHandle => Nfs3Error::Badhandle,
        VfsError::NameTooLong => Nfs3Error::Nametoolong,
        VfsError::InvalidName => Nfs3Error::Acces,
        VfsError::Inval => Nfs3Error::Inval,
        VfsError::BadCookie => Nfs3Error::BadCookie,
        VfsError::NoSpace => Nfs3Error::Nospc,
        VfsError::QuotaExceeded => Nfs3Error::Dquot,
        VfsError::ReadOnly => Nfs3Error::Rofs,
        VfsError::XDev => Nfs3Error::Xdev,
        // Lookups never follow symlinks; a loop met anyway is a symlink
        // where none may be, as for Symlink.
        VfsError::Loop => Nfs3Error::Inval,
        VfsError::FileTooLarge => Nfs3Error::Fbig,
        VfsError::TooManyLinks => Nfs3Error::Mlink,
        VfsError::NotSupported => Nfs3Error::Notsupp,
        VfsError::Io { .. } => Nfs3Error::Io,
    }
}
