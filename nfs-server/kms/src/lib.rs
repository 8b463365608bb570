//! Kubernetes KMS v2 for openefs: the vendored `k8s.io/kms` v2 API
//! (`proto/api.proto`, Status/Encrypt/Decrypt over a unix socket), the
//! [`KmsClient`] nfsd wraps its data key with, so that any existing KMS v2
//! plugin works, and the reference plugin ([`Plugin`], the binary
//! `openefs-kms-plugin`), which keeps its keys in a directory.

mod client;
mod plugin;

pub mod v2 {
    tonic::include_proto!("v2");
}

pub use client::{KmsClient, KmsError, socket_path};
pub use plugin::{KEY_LEN, Plugin, PluginError, bind, serve};

/// The API version a v2 plugin reports in Status.
pub const API_VERSION: &str = "v2";
/// Status `healthz` of a healthy plugin; anything else is a failure.
pub const HEALTHY: &str = "ok";

/// An error with its causes, on one line (tonic's transport errors say
/// little without them).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
