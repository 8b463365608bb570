//! The tables from our error types to `nfsstat4`. Every variant is listed so
//! a new one cannot silently map to a wrong status.

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
