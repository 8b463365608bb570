//! `AccessPoint` (`ap`): an application-specific entry into a file system,
//! with its own root directory and, optionally, an enforced identity.

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition};
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::{
    ids::AccessPointId,
    permissions::Permissions,
    schema,
    status::{LifecyclePhase, SizeInBytes},
};

/// Most secondary groups an access point may set, as EFS allows.
pub const MAX_SECONDARY_GIDS: u32 = 16;

/// Desired state of an access point.
// Clippy takes the `type_ = "string"` of several `printcolumn(...)` for one
// attribute given twice.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "openefs.io",
    version = "v1alpha1",
    kind = "AccessPoint",
    namespaced,
    shortname = "ap",
    category = "openefs",
    status = "AccessPointStatus",
    derive = "PartialEq",
    doc = "An application-specific entry point into a FileSystem: a root directory, created on demand, and optionally a POSIX identity enforced for every request made through it.",
    printcolumn(
        name = "FileSystem",
        type_ = "string",
        json_path = ".spec.fileSystemRef.name",
        description = "FileSystem this access point belongs to"
    ),
    printcolumn(
        name = "Path",
        type_ = "string",
        json_path = ".spec.rootDirectory.path",
        description = "Root directory within the file system"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "ID",
        type_ = "string",
        json_path = ".status.accessPointId",
        description = "Stable access point id",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AccessPointSpec {
    /// The FileSystem, in the same namespace, this access point opens.
    /// Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("fileSystemRef is immutable"))]
    pub file_system_ref: FileSystemRef,

    /// Identity (uid, gid, secondary gids) that replaces the caller's for
    /// every request through this access point; the caller's own identity is
    /// used when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posix_user: Option<PosixUser>,

    /// Directory of the file system that clients of this access point see as
    /// their root.
    #[serde(default)]
    pub root_directory: RootDirectory,

    /// Limit on the bytes stored below the root directory; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

/// Reference to a FileSystem in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct FileSystemRef {
    /// Name of the FileSystem.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// A POSIX identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PosixUser {
    /// User id.
    #[schemars(schema_with = "schema::posix_id")]
    pub uid: u32,
    /// Primary group id.
    #[schemars(schema_with = "schema::posix_id")]
    pub gid: u32,
    /// Supplementary group ids (at most 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "secondary_gids")]
    pub secondary_gids: Vec<u32>,
}

fn secondary_gids(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": schema::posix_id(generator),
        "maxItems": MAX_SECONDARY_GIDS,
        "x-kubernetes-list-type": "set",
    })
}

/// The root directory of an access point.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.deletionPolicy) || self.deletionPolicy != 'Delete' || self.path != '/'")
    .message("deletionPolicy Delete needs a path other than \"/\" (it would delete the whole file system)")
    .field_path(".deletionPolicy"))]
pub struct RootDirectory {
    /// Absolute, normalised path within the file system: starts with "/",
    /// no "." or ".." components, no "//", no trailing "/" (except "/"
    /// itself). Immutable.
    #[serde(default = "default_root_path")]
    #[schemars(
        length(min = 1, max = 4096),
        regex(pattern = r"^(/|(/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+))+)$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("rootDirectory.path is immutable"))]
    pub path: String,

    /// Owner and permissions to create path with when it does not exist;
    /// without it, a missing path is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_info: Option<CreationInfo>,

    /// What deleting this AccessPoint does to path and everything below
    /// it: Retain keeps the data (as EFS does); Delete removes it (what the
    /// CSI driver's deleteAccessPointRootDir asks for). The data is kept,
    /// with a warning Event, while another AccessPoint of the file system
    /// uses path, a directory above it or one below it.
    #[serde(default)]
    pub deletion_policy: RootDirectoryDeletionPolicy,
}

/// What deleting an AccessPoint does to its root directory.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RootDirectoryDeletionPolicy {
    /// Keep the directory and its data.
    #[default]
    Retain,
    /// Delete the directory and everything below it.
    Delete,
}

impl RootDirectory {
    /// Whether one of the two directories is the other or below it, so that
    /// deleting one deletes data the other serves.
    pub fn overlaps(&self, other: &RootDirectory) -> bool {
        let a: Vec<&str> = self.path.split('/').filter(|c| !c.is_empty()).collect();
        let b: Vec<&str> = other.path.split('/').filter(|c| !c.is_empty()).collect();
        a.starts_with(&b) || b.starts_with(&a)
    }
}

fn default_root_path() -> String {
    "/".into()
}

impl Default for RootDirectory {
    fn default() -> Self {
        Self {
            path: default_root_path(),
            creation_info: None,
            deletion_policy: RootDirectoryDeletionPolicy::Retain,
        }
    }
}

/// Ownership and mode of a root directory created on demand.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreationInfo {
    /// Owner user id of the created directory.
    #[schemars(schema_with = "schema::posix_id")]
    pub owner_uid: u32,
    /// Owner group id of the created directory.
    #[schemars(schema_with = "schema::posix_id")]
    pub owner_gid: u32,
    /// Mode of the created directory as an octal string, e.g. "0755".
    pub permissions: Permissions,
}

/// Storage limit of an access point.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Most bytes that may be stored below the root directory, as a quantity
    /// (e.g. "100Gi").
    #[schemars(schema_with = "schema::byte_quantity")]
    pub max_bytes: Quantity,
}

/// Observed state of an access point, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessPointStatus {
    /// metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Lifecycle phase, as EFS's LifeCycleState.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<LifecyclePhase>,

    /// Stable id (fsap- and 17 hex digits), derived from metadata.uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_point_id: Option<AccessPointId>,

    /// Standard conditions; Ready is True when the access point can be
    /// mounted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Metered size of the data stored below the root directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_in_bytes: Option<SizeInBytes>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn minimal_spec_defaults_to_the_file_system_root() {
        let spec: AccessPointSpec =
            serde_json::from_value(json!({"fileSystemRef": {"name": "shared"}})).unwrap();
        assert_eq!(spec.root_directory.path, "/");
        assert_eq!(spec.root_directory.creation_info, None);
        assert_eq!(
            spec.root_directory.deletion_policy,
            RootDirectoryDeletionPolicy::Retain
        );
        assert_eq!(spec.posix_user, None);
        assert_eq!(spec.quota, None);
    }

    #[test]
    fn file_system_ref_is_required() {
        assert!(serde_json::from_value::<AccessPointSpec>(json!({})).is_err());
    }

    #[test]
    fn object_with_status_round_trips() {
        let mut ap = AccessPoint::new(
            "web",
            serde_json::from_value(json!({
                "fileSystemRef": {"name": "shared"},
                "posixUser": {"uid": 1000, "gid": 1000, "secondaryGids": [4, 4294967294u32]},
                "rootDirectory": {"path": "/web", "deletionPolicy": "Delete", "creationInfo":
                    {"ownerUid": 1000, "ownerGid": 1000, "permissions": "2750"}},
                "quota": {"maxBytes": "5Gi"},
            }))
            .unwrap(),
        );
        ap.status = Some(AccessPointStatus {
            phase: Some(LifecyclePhase::Creating),
            access_point_id: Some(AccessPointId::from_uid("uid")),
            ..Default::default()
        });
        let back: AccessPoint = serde_json::from_str(&serde_json::to_string(&ap).unwrap()).unwrap();
        assert_eq!(back, ap);
        let info = back.spec.root_directory.creation_info.unwrap();
        assert_eq!(info.permissions.mode(), 0o2750);
    }

    #[test]
    fn root_directories_overlap_when_one_holds_the_other() {
        let dir = |path: &str| RootDirectory {
            path: path.into(),
            ..RootDirectory::default()
        };
        assert!(dir("/a/b").overlaps(&dir("/a")));
        assert!(dir("/a").overlaps(&dir("/a/b")));
        assert!(dir("/a").overlaps(&dir("/a")));
        assert!(dir("/").overlaps(&dir("/x")));
        assert!(!dir("/a/b").overlaps(&dir("/a/bc")));
        assert!(!dir("/a").overlaps(&dir("/b")));
    }

    #[test]
    fn bad_permissions_do_not_deserialize() {
        let spec = json!({"fileSystemRef": {"name": "s"}, "rootDirectory": {"path": "/x",
            "creationInfo": {"ownerUid": 0, "ownerGid": 0, "permissions": "999"}}});
        assert!(serde_json::from_value::<AccessPointSpec>(spec).is_err());
    }
}
