//! The openefs CSI plugin: identity and controller services over the CSI v1
//! gRPC API (`proto/csi.proto`), served on a unix socket.

pub mod controller;
pub mod handle;
pub mod identity;
pub mod inflight;
pub mod server;

/// Types and services generated from `proto/csi.proto` (CSI spec v1.10).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod csi {
    tonic::include_proto!("csi.v1");
}
