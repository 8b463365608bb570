//! Serving the CSI services on the plugin's unix socket.

use std::{future::Future, io, path::PathBuf};

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::{
    controller::ControllerService,
    csi::{
        controller_server::ControllerServer, identity_server::IdentityServer,
        node_server::NodeServer,
    },
    identity::IdentityService,
    node::NodeService,
};

/// Why the plugin could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The endpoint is not `unix:///path`.
    #[error("endpoint {0:?} must be unix:///absolute/path")]
    Endpoint(String),
    /// A stale socket file could not be removed.
    #[error("removing stale socket {path:?}: {source}")]
    RemoveStale {
        /// The socket path.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// Binding the socket failed.
    #[error("binding {path:?}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The socket path of a `unix:///path` endpoint.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ServeError> {
    endpoint
        .strip_prefix("unix://")
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from)
        .ok_or_else(|| ServeError::Endpoint(endpoint.to_owned()))
}

/// Bind the socket, replacing a file left by an earlier run (kubelet and the
/// sidecars only ever connect to the current one).
pub fn bind(path: &PathBuf) -> Result<UnixListener, ServeError> {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(?path, "removed stale socket"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServeError::RemoveStale {
                path: path.clone(),
                source,
            });
        }
    }
    UnixListener::bind(path).map_err(|source| ServeError::Bind {
        path: path.clone(),
        source,
    })
}

/// Serve identity (and the controller and node services, when given) on
/// `listener` until `shutdown` completes; in-flight calls finish first.
pub async fn serve(
    listener: UnixListener,
    identity: IdentityService,
    controller: Option<ControllerService>,
    node: Option<NodeService>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    tonic::transport::Server::builder()
        .add_service(IdentityServer::new(identity))
        .add_optional_service(controller.map(ControllerServer::new))
        .add_optional_service(node.map(NodeServer::new))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
