//! The openefs CSI plugin: identity, controller and node services over the
//! CSI v1 gRPC API (`proto/csi.proto`), served on a unix socket; and the
//! `tls-proxy` sidecar ([`tls_proxy`]) that carries TLS volumes' traffic.

pub mod controller;
/// The volume-handle grammar is part of the API contract, so it lives in `openefs-crds`.
pub use openefs_crds::volume_handle as handle;
pub mod identity;
pub mod inflight;
pub mod node;
pub mod server;
pub mod tls_proxy;

/// Types and services generated from `proto/csi.proto` (CSI spec v1.10).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod csi {
    tonic::include_proto!("csi.v1");
}
