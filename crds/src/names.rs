//! Names that two or more openefs components must spell the same way.
//!
//! A typo in one of these breaks the system silently (a label selector that
//! matches nothing, a finalizer nobody removes), so every component takes
//! them from here instead of writing the string again.

/// API group of the openefs custom resources.
pub const API_GROUP: &str = "openefs.io";

/// Version of the openefs custom resources served and stored.
pub const API_VERSION: &str = "v1alpha1";

/// `apiVersion` field value of openefs objects.
pub const API_GROUP_VERSION: &str = "openefs.io/v1alpha1";

/// Name of the CSI driver (the `CSIDriver` object, `StorageClass.provisioner`,
/// the `GetPluginInfo` answer, and the plugin socket directory).
pub const CSI_DRIVER_NAME: &str = "csi.openefs.io";

/// Field manager for server-side apply by every openefs component.
pub const FIELD_MANAGER: &str = "openefs";

/// Finalizer the operator puts on a `FileSystem` so that its server, backing
/// volume (per `deletionPolicy`) and access points are cleaned up first.
pub const FILESYSTEM_FINALIZER: &str = "openefs.io/filesystem-protection";

/// Finalizer the operator puts on an `AccessPoint` so that its export is
/// removed from the server before the object goes away.
pub const ACCESSPOINT_FINALIZER: &str = "openefs.io/accesspoint-protection";

/// Standard label naming the tool that manages an object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Value of [`LABEL_MANAGED_BY`] on every object openefs creates; the
/// operator's orphan cleanup selects on it.
pub const MANAGED_BY: &str = "openefs";

/// Standard label naming the application an object belongs to.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";

/// Standard label naming the instance (for openefs: the `FileSystem` id,
/// which never changes and always fits in a label value).
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";

/// Standard label naming the role of an object within the application.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";

/// Standard label naming the higher-level application an object is part of.
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";

/// Value of [`LABEL_PART_OF`] and [`LABEL_NAME`] on openefs objects.
pub const PART_OF: &str = "openefs";

/// Value of [`LABEL_COMPONENT`] on the objects that make up one file
/// system's NFS server (StatefulSet, Service, Secret, backing PVC).
pub const COMPONENT_NFS_SERVER: &str = "nfs-server";

/// Label holding the name of the `FileSystem` an object belongs to.
pub const LABEL_FILESYSTEM: &str = "openefs.io/filesystem";

/// Longest Kubernetes label value.
pub const MAX_LABEL_VALUE: usize = 63;

/// The [`LABEL_FILESYSTEM`] value for a FileSystem named `fs_name`, when the
/// name can be one: a FileSystem name may be 253 characters, a label value
/// 63. Longer names get no label rather than a cut one, which could make two
/// FileSystems look the same.
pub fn filesystem_label_value(fs_name: &str) -> Option<&str> {
    (fs_name.len() <= MAX_LABEL_VALUE && crate::volume_handle::is_dns_subdomain(fs_name))
        .then_some(fs_name)
}

/// Label holding the name of the `AccessPoint` an object belongs to (e.g. a
/// PersistentVolume provisioned through it).
pub const LABEL_ACCESSPOINT: &str = "openefs.io/accesspoint";
