//! Controller errors and their gRPC codes: one table per error family.

use tonic::{Code, Status};

use super::{params::ParamsError, plan::PlanError};
use crate::handle::HandleError;

/// Why a controller RPC failed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A REQUIRED request field is empty.
    #[error("{0} is required")]
    MissingField(&'static str),
    /// Volume capabilities this driver cannot serve.
    #[error("unsupported volume capability: {0}")]
    Capability(String),
    /// A request feature the driver does not offer.
    #[error("{0} is not supported by this driver")]
    Unsupported(&'static str),
    /// StorageClass parameters.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// Planning the volume (sub-path, capacity, gid, names).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The namespace of the objects is unknown.
    #[error(
        "no namespace: set fileSystemNamespace, or run external-provisioner with --extra-create-metadata"
    )]
    NoNamespace,
    /// The FileSystem of a volume does not exist.
    #[error("FileSystem {namespace}/{name} not found")]
    FileSystemNotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The FileSystem exists but has no mount endpoint yet.
    #[error("FileSystem {namespace}/{name} has no endpoint yet (not ready); retry later")]
    FileSystemNotReady {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A volume with this name exists with other properties.
    #[error("volume {name:?} already exists as {object} with different {what}")]
    Incompatible {
        /// The CSI volume name.
        name: String,
        /// The object backing it.
        object: String,
        /// What differs.
        what: &'static str,
    },
    /// Another operation on the same volume is running.
    #[error("an operation on volume {0:?} is already in progress")]
    Busy(String),
    /// The object backing the volume is being deleted.
    #[error("{0} is being deleted; retry once it is gone")]
    Deleting(String),
    /// Concurrent gid allocations kept conflicting.
    #[error("gid allocation for {0} kept conflicting with concurrent allocations; retry")]
    GidContention(String),
    /// The object did not become ready in time (and was removed again).
    #[error(
        "{object} did not become ready within {timeout:?}; it was deleted again, retry to provision anew"
    )]
    Timeout {
        /// The object.
        object: String,
        /// The provision timeout.
        timeout: std::time::Duration,
    },
    /// The volume does not exist.
    #[error("volume {0} not found")]
    VolumeNotFound(String),
    /// Watching an object for readiness failed.
    #[error("watching {0} for readiness failed: {1}")]
    WatchFailed(String, String),
    /// A malformed volume id where the volume must exist.
    #[error("volume not found: {0}")]
    BadHandle(#[from] HandleError),
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

impl ControllerError {
    /// Wrap a Kubernetes client error with what was being done.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Kube { action, source }
    }
}

impl From<ParamsError> for Status {
    fn from(e: ParamsError) -> Self {
        let code = match e {
            ParamsError::Invalid(_)
            | ParamsError::Missing(..)
            | ParamsError::GidRange { .. }
            | ParamsError::Unsupported(_)
            | ParamsError::BasePath(_) => Code::InvalidArgument,
        };
        Status::new(code, e.to_string())
    }
}

impl From<PlanError> for Status {
    fn from(e: PlanError) -> Self {
        let code = match e {
            PlanError::UnknownVariable { .. }
            | PlanError::Unterminated(_)
            | PlanError::MissingMetadata { .. }
            | PlanError::Escapes { .. }
            | PlanError::ReuseWithoutClaim => Code::InvalidArgument,
            // The CSI spec's code for a capacity range the plugin cannot honour.
            PlanError::Capacity { .. } => Code::OutOfRange,
            PlanError::GidsExhausted { .. } => Code::ResourceExhausted,
        };
        Status::new(code, e.to_string())
    }
}

/// The gRPC code for a failed Kubernetes API call: the API's own verdict
/// where it has one, otherwise unavailable (transient: the CO retries).
fn kube_code(e: &kube::Error) -> Code {
    match e {
        kube::Error::Api(status) => match status.code {
            400 | 422 => Code::InvalidArgument,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            409 => Code::Aborted,
            429 => Code::ResourceExhausted,
            _ => Code::Unavailable,
        },
        _ => Code::Unavailable,
    }
}

impl From<ControllerError> for Status {
    fn from(e: ControllerError) -> Self {
        let code = match &e {
            ControllerError::Params(p) => return p.clone().into(),
            ControllerError::Plan(p) => return p.clone().into(),
            ControllerError::MissingField(_)
            | ControllerError::Capability(_)
            | ControllerError::Unsupported(_)
            | ControllerError::NoNamespace => Code::InvalidArgument,
            ControllerError::FileSystemNotFound { .. }
            | ControllerError::VolumeNotFound(_)
            | ControllerError::BadHandle(_) => Code::NotFound,
            ControllerError::FileSystemNotReady { .. } | ControllerError::WatchFailed(..) => {
                Code::Unavailable
            }
            ControllerError::Incompatible { .. } => Code::AlreadyExists,
            ControllerError::Busy(_)
            | ControllerError::Deleting(_)
            | ControllerError::GidContention(_) => Code::Aborted,
            ControllerError::Timeout { .. } => Code::DeadlineExceeded,
            ControllerError::Kube { source, .. } => kube_code(source),
        };
        Status::new(code, e.to_string())
    }
}
