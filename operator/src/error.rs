//! The reconcilers' one error type.

use kube::runtime::finalizer;

/// "its AccessPoints: a, b" and/or "the PersistentVolumes: v".
fn blockers(access_points: &[String], volumes: &[String]) -> String {
    let mut parts = Vec::new();
    if !access_points.is_empty() {
        parts.push(format!("its AccessPoints: {}", access_points.join(", ")));
    }
    if !volumes.is_empty() {
        parts.push(format!(
            "the PersistentVolumes that use it: {}",
            volumes.join(", ")
        ));
    }
    parts.join("; ")
}

/// Why a reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object was never stored by an API server (no uid, name or
    /// namespace): nothing to retry until it changes.
    #[error("{kind} has no {field}; it was not read from the API server")]
    IncompleteObject {
        kind: &'static str,
        field: &'static str,
    },

    /// Listing the AccessPoints that reference a FileSystem failed.
    #[error("listing the AccessPoints of FileSystem {namespace}/{name}: {source}")]
    ListAccessPoints {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    /// Reading the FileSystem an AccessPoint references failed (other than
    /// "not found", which is a status, not an error).
    #[error("reading FileSystem {namespace}/{name}: {source}")]
    GetFileSystem {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    /// Reading an object the reconcile depends on failed (other than "not
    /// found").
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },

    /// The file system's TLS material could not be generated.
    #[error(transparent)]
    Tls(#[from] crate::filesystem::tls::TlsError),

    /// nfsd's config file could not be written as TOML.
    #[error("rendering nfsd's config file: {0}")]
    RenderConfig(toml::ser::Error),

    /// Reading or writing the leader-election Lease failed.
    #[error("leader Lease {namespace}/{name}: {source}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    /// Writing the status subresource failed.
    #[error("writing the status of {kind} {namespace}/{name}: {source}")]
    WriteStatus {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    /// Applying one of a FileSystem's core objects failed (RBAC, an
    /// admission webhook, an invalid StorageClass name...).
    #[error("applying {kind} {namespace}/{name}: {source}")]
    Apply {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    /// A FileSystem being deleted is still referenced by AccessPoints or
    /// PersistentVolumes; its finalizer stays until they are gone (an
    /// AccessPoint's deletion triggers a new reconcile through the watch,
    /// a volume's the next resync).
    #[error(
        "deletion of FileSystem {namespace}/{name} waits for {}",
        blockers(access_points, volumes)
    )]
    DeletionBlocked {
        namespace: String,
        name: String,
        access_points: Vec<String>,
        volumes: Vec<String>,
    },

    /// nfsd did not delete a deleted AccessPoint's root directory (still
    /// served while the FileSystem reconciler catches up, unreachable, or
    /// a removal error); the finalizer stays and the deletion is retried.
    #[error("deleting root directory {path} of AccessPoint {namespace}/{name}: {source}")]
    DeleteRootDirectory {
        namespace: String,
        name: String,
        path: String,
        #[source]
        source: Box<tonic::Status>,
    },

    /// An encrypted FileSystem's kmsKey cannot be given to its server (the
    /// schema admits it, the pod cannot use it): nothing to retry until the
    /// spec changes.
    #[error("spec.kmsKey: {reason}")]
    InvalidKmsKey { reason: String },

    /// The key source offers a new key-encryption key and nfsd did not
    /// rewrap the data key with it (the stored key stays as it was).
    #[error("rotating the key-encryption key of FileSystem {namespace}/{name} to {to}: {}", source.message())]
    RotateDataKey {
        namespace: String,
        name: String,
        to: String,
        #[source]
        source: Box<tonic::Status>,
    },

    /// Adding or removing a finalizer failed, or the reconcile inside the
    /// finalizer helper failed (the inner error is the source).
    #[error(transparent)]
    Finalizer(#[from] Box<finalizer::Error<Error>>),
}

/// What to do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Transient (API unavailable, conflict): try again after a pause.
    Backoff,
    /// Permanent for the object as it is: wait until it, or an object it
    /// depends on, changes (the watches trigger the next reconcile).
    WaitForChange,
}

impl Error {
    /// Short, stable label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::IncompleteObject { .. } => "incomplete-object",
            Error::ListAccessPoints { .. } | Error::GetFileSystem { .. } | Error::Read { .. } => {
                "read"
            }
            Error::Tls(_) => "tls",
            Error::RenderConfig(_) => "render-config",
            Error::Lease { .. } => "lease",
            Error::WriteStatus { .. } => "write-status",
            Error::Apply { .. } => "apply",
            Error::DeletionBlocked { .. } => "deletion-blocked",
            Error::DeleteRootDirectory { .. } => "delete-root-directory",
            Error::InvalidKmsKey { .. } => "invalid-kms-key",
            Error::RotateDataKey { .. } => "rotate-data-key",
            Error::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                    e.category()
                }
                finalizer::Error::AddFinalizer(_) | finalizer::Error::RemoveFinalizer(_) => {
                    "finalizer"
                }
                finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer => {
                    "incomplete-object"
                }
            },
        }
    }

    /// Whether retrying without a change can help.
    pub fn retry(&self) -> Retry {
        match self {
            Error::IncompleteObject { .. }
            | Error::DeletionBlocked { .. }
            | Error::RenderConfig(_)
            | Error::InvalidKmsKey { .. } => Retry::WaitForChange,
            Error::ListAccessPoints { .. }
            | Error::GetFileSystem { .. }
            | Error::Read { .. }
            | Error::Tls(_)
            | Error::Lease { .. }
            | Error::WriteStatus { .. }
            | Error::Apply { .. }
            | Error::DeleteRootDirectory { .. }
            | Error::RotateDataKey { .. } => Retry::Backoff,
            Error::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.retry(),
                finalizer::Error::AddFinalizer(_) | finalizer::Error::RemoveFinalizer(_) => {
                    Retry::Backoff
                }
                finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer => {
                    Retry::WaitForChange
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalizer_errors_take_the_inner_category_and_retry() {
        let blocked = || Error::DeletionBlocked {
            namespace: "ns".into(),
            name: "fs".into(),
            access_points: vec!["a".into(), "b".into()],
            volumes: Vec::new(),
        };
        let wrapped = Error::from(Box::new(finalizer::Error::CleanupFailed(blocked())));
        assert_eq!(wrapped.category(), "deletion-blocked");
        assert_eq!(wrapped.retry(), Retry::WaitForChange);
        assert_eq!(
            wrapped.to_string(),
            "failed to clean up object: deletion of FileSystem ns/fs waits for its AccessPoints: a, b"
        );
        let incomplete = Error::IncompleteObject {
            kind: "AccessPoint",
            field: "metadata.uid",
        };
        assert_eq!(incomplete.retry(), Retry::WaitForChange);
        let unnamed = Error::from(Box::new(finalizer::Error::<Error>::UnnamedObject));
        assert_eq!(unnamed.category(), "incomplete-object");
    }

    #[test]
    fn api_failures_back_off() {
        let api = || {
            kube::Error::Api(Box::new(
                kube::core::Status::failure("boom", "InternalError").with_code(500),
            ))
        };
        let write = Error::WriteStatus {
            kind: "FileSystem".into(),
            namespace: "ns".into(),
            name: "fs".into(),
            source: Box::new(api()),
        };
        assert_eq!(write.category(), "write-status");
        assert_eq!(write.retry(), Retry::Backoff);
        let add = Error::from(Box::new(finalizer::Error::<Error>::AddFinalizer(api())));
        assert_eq!((add.category(), add.retry()), ("finalizer", Retry::Backoff));
    }
}
