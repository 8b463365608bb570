//! Status types shared by both kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Lifecycle state of a file system or access point, named after EFS's
/// `LifeCycleState`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LifecyclePhase {
    /// Accepted; the operator is bringing it up and it cannot be mounted yet.
    Creating,
    /// Ready: it can be mounted.
    Available,
    /// Serving, while a change of its spec is being rolled out.
    Updating,
    /// Being deleted: its finalizer is cleaning up.
    Deleting,
    /// Not serving; the `Ready` condition says why.
    Error,
}

/// Metered size of the data stored, as EFS's `SizeInBytes`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SizeInBytes {
    /// Bytes stored, as last metered.
    #[schemars(range(min = 0))]
    pub value: i64,
    /// When `value` was metered.
    pub timestamp: Time,
}
