//! The one error type of the storage backend.
//!
//! Each variant is a kind the NFS layer maps to one protocol status; the
//! kernel's errno is kept (see [`VfsError::errno`]) so protocols that speak
//! errno-like codes (NFSv3) can map every case, including the ones that fall
//! into [`VfsError::Io`].

use rustix::io::Errno;

#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    /// The object is a symbolic link where a file or directory was needed
    /// (NFS4ERR_SYMLINK).
    #[error("is a symbolic link")]
    Symlink,
    /// The object is of a type the operation does not apply to (a device,
    /// fifo or socket where a regular file was needed; NFS4ERR_WRONG_TYPE).
    #[error("wrong type of object for this operation")]
    WrongType,
    /// Permission denied by mode bits (EACCES).
    #[error("permission denied")]
    Access,
    /// Operation not permitted for this identity (EPERM), e.g. chown by a
    /// non-owner.
    #[error("operation not permitted")]
    Perm,
    /// The handle was valid but its object no longer exists.
    #[error("stale file handle")]
    Stale,
    /// The handle was not issued by this export (wrong version, length or
    /// authentication tag), never resolved.
    #[error("bad file handle")]
    BadHandle,
    #[error("name too long")]
    NameTooLong,
    /// A name that is not a single path component: empty, `.`, `..`, or
    /// containing `/` or NUL.
    #[error("invalid file name")]
    InvalidName,
    #[error("invalid argument")]
    Inval,
    /// A readdir cookie that this backend cannot have issued.
    #[error("bad readdir cookie")]
    BadCookie,
    #[error("no space left on device")]
    NoSpace,
    /// An access point's `max_bytes`, or the backing file system's quota
    /// (EDQUOT).
    #[error("disk quota exceeded")]
    QuotaExceeded,
    #[error("read-only file system")]
    ReadOnly,
    /// The operation would cross a mount point (a mount inside the export is
    /// not served).
    #[error("cross-device link or mount point")]
    XDev,
    /// Too many symbolic links, or a symlink met where none may be followed.
    #[error("too many levels of symbolic links")]
    Loop,
    #[error("file too large")]
    FileTooLarge,
    #[error("too many links")]
    TooManyLinks,
    /// The backing file system lacks a feature this backend needs (e.g.
    /// `trusted.*` xattrs, file handles).
    #[error("operation not supported by the backing file system")]
    NotSupported,
    /// Any other failure of a system call, with what was being done.
    #[error("{context}: {}", std::io::Error::from_raw_os_error(*errno))]
    Io { context: &'static str, errno: i32 },
}

impl VfsError {
    /// Maps a kernel errno to its kind; `context` says what failed and is kept
    /// only for errnos without a kind of their own.
    pub fn from_errno(errno: i32, context: &'static str) -> Self {
        match Errno::from_raw_os_error(errno) {
            Errno::NOENT => Self::NotFound,
            Errno::EXIST => Self::Exists,
            Errno::NOTEMPTY => Self::NotEmpty,
            Errno::NOTDIR => Self::NotDir,
            Errno::ISDIR => Self::IsDir,
            Errno::ACCESS => Self::Access,
            Errno::PERM => Self::Perm,
            Errno::STALE => Self::Stale,
            Errno::NAMETOOLONG => Self::NameTooLong,
            Errno::INVAL => Self::Inval,
            Errno::NOSPC => Self::NoSpace,
            Errno::DQUOT => Self::QuotaExceeded,
            Errno::ROFS => Self::ReadOnly,
            Errno::XDEV => Self::XDev,
            Errno::LOOP => Self::Loop,
            Errno::FBIG => Self::FileTooLarge,
            Errno::MLINK => Self::TooManyLinks,
            Errno::OPNOTSUPP => Self::NotSupported,
            _ => Self::Io { context, errno },
        }
    }

    /// The POSIX errno equivalent of this error.
    pub fn errno(&self) -> i32 {
        let e = match self {
            Self::NotFound => Errno::NOENT,
            Self::Exists => Errno::EXIST,
            Self::NotEmpty => Errno::NOTEMPTY,
            Self::NotDir => Errno::NOTDIR,
            Self::IsDir => Errno::ISDIR,
            Self::Symlink | Self::Loop => Errno::LOOP,
            Self::WrongType | Self::Inval | Self::InvalidName | Self::BadCookie => Errno::INVAL,
            Self::Access => Errno::ACCESS,
            Self::Perm => Errno::PERM,
            Self::Stale => Errno::STALE,
            Self::BadHandle => Errno::BADF,
            Self::NameTooLong => Errno::NAMETOOLONG,
            Self::NoSpace => Errno::NOSPC,
            Self::QuotaExceeded => Errno::DQUOT,
            Self::ReadOnly => Errno::ROFS,
            Self::XDev => Errno::XDEV,
            Self::FileTooLarge => Errno::FBIG,
            Self::TooManyLinks => Errno::MLINK,
            Self::NotSupported => Errno::OPNOTSUPP,
            Self::Io { errno, .. } => return *errno,
        };
        e.raw_os_error()
    }
}

/// Attaches what was being done to a failed system call.
pub(crate) trait Context<T> {
    fn context(self, what: &'static str) -> Result<T, VfsError>;
}

impl<T> Context<T> for Result<T, Errno> {
    fn context(self, what: &'static str) -> Result<T, VfsError> {
        self.map_err(|e| VfsError::from_errno(e.raw_os_error(), what))
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn context(self, what: &'static str) -> Result<T, VfsError> {
        self.map_err(|e| match e.raw_os_error() {
            Some(errno) => VfsError::from_errno(errno, what),
            // Errors std makes up itself (e.g. a short write_all) carry no
            // errno; EIO is the honest equivalent.
            None => VfsError::Io {
                context: what,
                errno: libc::EIO,
            },
        })
    }
}
