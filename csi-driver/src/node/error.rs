//! Node errors and their gRPC codes: one table per error family.

use std::{io, path::PathBuf, time::Duration};

use nix::errno::Errno;
use tonic::{Code, Status};

use super::{options::OptionsError, tunnel::TunnelError, volume::VolumeError};
use crate::controller::ControllerError;

/// Why a node RPC failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A REQUIRED request field is empty.
    #[error("{0} is required")]
    MissingField(&'static str),
    /// Volume capability this driver cannot serve (block, other fs type).
    #[error(transparent)]
    Capability(ControllerError),
    /// Volume context or handle.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// A user mount option.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The volume must be mounted through TLS, and this node plugin runs
    /// without a tls-proxy (no `--tls-proxy-dir`).
    #[error(
        "volume {0} requires encryption in transit (encryptInTransit=true), and this node \
         plugin has no tls-proxy sidecar configured (--tls-proxy-dir, --tls-ca); refusing to \
         mount in the clear. Configure the proxy, or set encryptInTransit: \"false\" on the \
         StorageClass or PV to mount without TLS"
    )]
    TlsUnavailable(String),
    /// The TLS tunnel of a volume could not be set up.
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
    /// Publish before stage.
    #[error("volume is not staged at {0:?}: NodeStageVolume first")]
    NotStaged(PathBuf),
    /// Something other than this volume is mounted where it should go.
    #[error("{path:?} already has {what} mounted; refusing to mount the volume over it")]
    Occupied {
        /// The path.
        path: PathBuf,
        /// What is there.
        what: String,
    },
    /// The volume is published at the path with other read-only-ness.
    #[error("volume is already published at {0:?} with a different read-only setting")]
    ReadOnlyMismatch(PathBuf),
    /// Another operation on the path is running (or a timed-out one has not
    /// returned from the kernel yet).
    #[error("an operation on {0:?} is still in progress; retry later")]
    Busy(PathBuf),
    /// A mount system call did not return in time.
    #[error(
        "{action} {path:?} did not finish within {timeout:?} (NFS server unreachable or hung?); \
         it continues in the background and this path stays busy until it returns"
    )]
    Timeout {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The limit.
        timeout: Duration,
    },
    /// Resolving the server's name failed.
    #[error("resolving NFS server {host:?}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The failure.
        source: io::Error,
    },
    /// Nothing is mounted at the volume path given to NodeGetVolumeStats.
    #[error("no volume at {0:?}")]
    NoVolumeAt(PathBuf),
    /// A system call failed.
    #[error("{action} {path:?}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("internal: {0}")]
    Internal(String),
}

impl NodeError {
    /// Wrap an I/O error with the action and the path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// The code of a failed system call: the kernel's verdict where the CSI spec
/// has a matching code, otherwise INTERNAL.
fn io_code(e: &io::Error) -> Code {
    match e.raw_os_error().map(Errno::from_raw) {
        // The export path does not exist on the server.
        Some(Errno::ENOENT) => Code::NotFound,
        Some(Errno::EACCES | Errno::EPERM) => Code::PermissionDenied,
        Some(
            Errno::ECONNREFUSED
            | Errno::EHOSTUNREACH
            | Errno::ENETUNREACH
            | Errno::ETIMEDOUT
            | Errno::ECONNRESET
            | Errno::EIO
            | Errno::ESTALE,
        ) => Code::Unavailable,
        Some(Errno::EBUSY) => Code::FailedPrecondition,
        _ => Code::Internal,
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        let code = match &e {
            NodeError::Capability(c) => return Status::new(Code::InvalidArgument, c.to_string()),
            NodeError::MissingField(_) | NodeError::Options(_) => Code::InvalidArgument,
            NodeError::Volume(VolumeError::Handle(_)) => Code::NotFound,
            NodeError::Volume(
                VolumeError::Missing(_)
                | VolumeError::Server(_)
                | VolumeError::Path(_)
                | VolumeError::Encrypt(_),
            ) => Code::InvalidArgument,
            NodeError::TlsUnavailable(_) | NodeError::NotStaged(_) => Code::FailedPrecondition,
            NodeError::Occupied { .. } | NodeError::ReadOnlyMismatch(_) => Code::AlreadyExists,
            NodeError::Busy(_) => Code::Aborted,
            NodeError::Timeout { .. } => Code::DeadlineExceeded,
            NodeError::Resolve { .. } => Code::Unavailable,
            NodeError::Tunnel(TunnelError::NoCa(_)) => Code::FailedPrecondition,
            NodeError::Tunnel(TunnelError::BadCa { .. }) => Code::InvalidArgument,
            NodeError::Tunnel(TunnelError::NoFreePort { .. }) => Code::ResourceExhausted,
            NodeError::Tunnel(TunnelError::ProxyNotListening { .. }) => Code::Unavailable,
            NodeError::Tunnel(TunnelError::StateDir { .. } | TunnelError::Write { .. }) => {
                Code::Internal
            }
            NodeError::NoVolumeAt(_) => Code::NotFound,
            NodeError::Io { source, .. } => io_code(source),
            NodeError::Internal(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}
