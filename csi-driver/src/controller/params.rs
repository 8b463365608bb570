//! StorageClass parameters of CreateVolume, parsed strictly: an unknown key is
//! refused by name, so a typo in a StorageClass fails the first PVC instead of
//! silently provisioning something else.

use std::{collections::HashMap, fmt::Display, str::FromStr};

use openefs_crds::{PerformanceMode, Permissions, ThroughputMode};
use serde::{Deserialize, Deserializer, de::Error as _};

/// Prefix of the keys external-provisioner reserves for itself (secret
/// references, fstype, and the `--extra-create-metadata` PVC/PV names).
const PROVISIONER_PREFIX: &str = "csi.storage.k8s.io/";
/// `--extra-create-metadata`: the PVC's namespace.
pub const PVC_NAMESPACE_KEY: &str = "csi.storage.k8s.io/pvc/namespace";
/// `--extra-create-metadata`: the PVC's name.
pub const PVC_NAME_KEY: &str = "csi.storage.k8s.io/pvc/name";
/// `--extra-create-metadata`: the PV's name.
pub const PV_NAME_KEY: &str = "csi.storage.k8s.io/pv/name";

/// Default lowest gid handed out per volume (as EFS).
pub const DEFAULT_GID_RANGE_START: u32 = 50_000;
/// Default highest gid handed out per volume (as EFS).
pub const DEFAULT_GID_RANGE_END: u32 = 7_000_000;

/// How CreateVolume provides storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProvisioningMode {
    /// One AccessPoint per volume on an existing FileSystem.
    #[default]
    AccessPoint,
    /// One dedicated FileSystem per volume.
    FileSystem,
}

/// The StorageClass parameters, as documented in `docs/csi.md`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Parameters {
    /// accessPoint (default) or fileSystem.
    #[serde(default)]
    pub provisioning_mode: ProvisioningMode,
    /// FileSystem the AccessPoint is made on (accessPoint mode, required).
    #[serde(default)]
    pub file_system_name: Option<String>,
    /// Namespace of that FileSystem, and of the AccessPoint or FileSystem
    /// created; the PVC's namespace when absent.
    #[serde(default)]
    pub file_system_namespace: Option<String>,
    /// Mode of the created root directory.
    #[serde(default = "default_directory_perms")]
    pub directory_perms: Permissions,
    /// uid of the access point's POSIX user; the gid when absent.
    #[serde(default, deserialize_with = "opt_from_str")]
    pub uid: Option<u32>,
    /// gid of the access point's POSIX user; allocated from the range when
    /// absent.
    #[serde(default, deserialize_with = "opt_from_str")]
    pub gid: Option<u32>,
    /// Lowest gid allocated.
    #[serde(default = "default_gid_start", deserialize_with = "from_str")]
    pub gid_range_start: u32,
    /// Highest gid allocated.
    #[serde(default = "default_gid_end", deserialize_with = "from_str")]
    pub gid_range_end: u32,
    /// Directory below which volumes' directories are made.
    #[serde(default = "default_base_path")]
    pub base_path: String,
    /// Directory of each volume below basePath, with `${.PVC.namespace}`,
    /// `${.PVC.name}`, `${.PV.name}` expanded.
    #[serde(default = "default_sub_path_pattern")]
    pub sub_path_pattern: String,
    /// Append a per-volume suffix to the directory so that two volumes never
    /// share one.
    #[serde(default = "yes", deserialize_with = "from_str")]
    pub ensure_unique_directory: bool,
    /// Name the AccessPoint after the PVC (namespace and name) rather than the
    /// volume, so a PVC re-created under the same name finds the same one.
    #[serde(default, deserialize_with = "from_str")]
    pub reuse_access_point: bool,
    /// Remove the data with the volume: the AccessPoint's root directory
    /// gets `deletionPolicy: Delete`.
    #[serde(default, deserialize_with = "from_str")]
    pub delete_access_point_root_dir: bool,
    /// Mount through TLS.
    #[serde(default = "yes", deserialize_with = "from_str")]
    pub encrypt_in_transit: bool,
    /// fileSystem mode: throughput mode of the created FileSystem.
    #[serde(default)]
    pub throughput_mode: Option<ThroughputMode>,
    /// fileSystem mode: MiB/s for throughputMode provisioned.
    #[serde(
        default,
        rename = "provisionedThroughputMiBps",
        deserialize_with = "opt_from_str"
    )]
    pub provisioned_throughput_mibps: Option<u32>,
    /// fileSystem mode: performance mode of the created FileSystem.
    #[serde(default)]
    pub performance_mode: Option<PerformanceMode>,
    /// fileSystem mode: encryption at rest. Only `false` is supported yet:
    /// an encrypted FileSystem needs a key reference this driver cannot
    /// choose.
    #[serde(default, deserialize_with = "from_str")]
    pub encrypted: bool,
    /// fileSystem mode: StorageClass of the backing volume.
    #[serde(default)]
    pub backing_storage_class_name: Option<String>,
}

/// What external-provisioner tells about the claim (`--extra-create-metadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimMetadata {
    /// The PVC's namespace.
    pub pvc_namespace: Option<String>,
    /// The PVC's name.
    pub pvc_name: Option<String>,
    /// The PV's name.
    pub pv_name: Option<String>,
}

/// A parameter set that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// Unknown key, malformed value, or wrong type (serde names the key).
    #[error("StorageClass parameters: {0}")]
    Invalid(String),
    /// A parameter that is required in this mode is missing.
    #[error("StorageClass parameter {0:?} is required with provisioningMode {1}")]
    Missing(&'static str, &'static str),
    /// gidRangeStart above gidRangeEnd.
    #[error("StorageClass parameters: gidRangeStart {start} is above gidRangeEnd {end}")]
    GidRange {
        /// gidRangeStart.
        start: u32,
        /// gidRangeEnd.
        end: u32,
    },
    /// A value accepted by the grammar but not supported yet.
    #[error("StorageClass parameter {0} is not supported yet (see docs/csi.md)")]
    Unsupported(&'static str),
    /// basePath not absolute, or with `.`/`..` components.
    #[error(
        "StorageClass parameter basePath {0:?} must be an absolute path without '.', '..' or empty components"
    )]
    BasePath(String),
}

impl Parameters {
    /// Parse CreateVolume's parameters, splitting off what external-provisioner
    /// adds.
    pub fn parse(raw: &HashMap<String, String>) -> Result<(Self, ClaimMetadata), ParamsError> {
        let ours: serde_json::Map<String, serde_json::Value> = raw
            .iter()
            .filter(|(k, _)| !k.starts_with(PROVISIONER_PREFIX))
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let params: Parameters = serde_json::from_value(serde_json::Value::Object(ours))
            .map_err(|e| ParamsError::Invalid(e.to_string()))?;
        params.validate()?;
        let claim = ClaimMetadata {
            pvc_namespace: raw.get(PVC_NAMESPACE_KEY).cloned(),
            pvc_name: raw.get(PVC_NAME_KEY).cloned(),
            pv_name: raw.get(PV_NAME_KEY).cloned(),
        };
        Ok((params, claim))
    }

    fn validate(&self) -> Result<(), ParamsError> {
        if self.provisioning_mode == ProvisioningMode::AccessPoint
            && self.file_system_name.is_none()
        {
            return Err(ParamsError::Missing("fileSystemName", "accessPoint"));
        }
        if self.gid_range_start > self.gid_range_end {
            return Err(ParamsError::GidRange {
                start: self.gid_range_start,
                end: self.gid_range_end,
            });
        }
        if self.encrypted {
            return Err(ParamsError::Unsupported("encrypted=true"));
        }
        let base = self.base_path.strip_prefix('/');
        let base_ok = match base {
            Some("") => true,
            Some(rest) => crate::handle::is_clean_relative_path(rest),
            None => false,
        };
        if !base_ok {
            return Err(ParamsError::BasePath(self.base_path.clone()));
        }
        Ok(())
    }
}

fn default_directory_perms() -> Permissions {
    Permissions::from_str("0770").expect("0770 is a valid mode")
}

fn default_gid_start() -> u32 {
    DEFAULT_GID_RANGE_START
}

fn default_gid_end() -> u32 {
    DEFAULT_GID_RANGE_END
}

fn default_base_path() -> String {
    "/".into()
}

fn default_sub_path_pattern() -> String {
    "${.PV.name}".into()
}

fn yes() -> bool {
    true
}

/// StorageClass parameters are all strings: numbers and booleans are parsed
/// from their text, naming the value on failure.
fn from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let s = String::deserialize(d)?;
    s.parse()
        .map_err(|e| D::Error::custom(format!("{s:?}: {e}")))
}

fn opt_from_str<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    from_str(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let (p, claim) = Parameters::parse(&map(&[("fileSystemName", "shared")])).unwrap();
        assert_eq!(p.provisioning_mode, ProvisioningMode::AccessPoint);
        assert_eq!(p.directory_perms.mode(), 0o770);
        assert_eq!((p.gid_range_start, p.gid_range_end), (50_000, 7_000_000));
        assert_eq!(p.base_path, "/");
        assert_eq!(p.sub_path_pattern, "${.PV.name}");
        assert!(p.ensure_unique_directory && p.encrypt_in_transit);
        assert!(!p.reuse_access_point);
        assert_eq!(claim, ClaimMetadata::default());
    }

    #[test]
    fn parses_every_parameter_and_provisioner_keys() {
        let (p, claim) = Parameters::parse(&map(&[
            ("provisioningMode", "accessPoint"),
            ("fileSystemName", "shared"),
            ("fileSystemNamespace", "storage"),
            ("directoryPerms", "0750"),
            ("uid", "1000"),
            ("gid", "2000"),
            ("gidRangeStart", "100"),
            ("gidRangeEnd", "200"),
            ("basePath", "/dynamic"),
            ("subPathPattern", "${.PVC.namespace}/${.PVC.name}"),
            ("ensureUniqueDirectory", "false"),
            ("reuseAccessPoint", "true"),
            ("deleteAccessPointRootDir", "false"),
            ("encryptInTransit", "false"),
            ("csi.storage.k8s.io/provisioner-secret-name", "x"),
            ("csi.storage.k8s.io/fstype", "nfs4"),
            (PVC_NAMESPACE_KEY, "app"),
            (PVC_NAME_KEY, "data"),
            (PV_NAME_KEY, "pvc-1"),
        ]))
        .unwrap();
        assert_eq!((p.uid, p.gid), (Some(1000), Some(2000)));
        assert_eq!(p.file_system_namespace.as_deref(), Some("storage"));
        assert!(!p.ensure_unique_directory && p.reuse_access_point && !p.encrypt_in_transit);
        assert_eq!(p.directory_perms.mode(), 0o750);
        assert_eq!(claim.pvc_namespace.as_deref(), Some("app"));
        assert_eq!(claim.pvc_name.as_deref(), Some("data"));
        assert_eq!(claim.pv_name.as_deref(), Some("pvc-1"));

        let (p, _) = Parameters::parse(&map(&[
            ("provisioningMode", "fileSystem"),
            ("throughputMode", "provisioned"),
            ("provisionedThroughputMiBps", "100"),
            ("performanceMode", "maxIO"),
            ("encrypted", "false"),
            ("backingStorageClassName", "fast"),
        ]))
        .unwrap();
        assert_eq!(p.provisioning_mode, ProvisioningMode::FileSystem);
        assert_eq!(p.throughput_mode, Some(ThroughputMode::Provisioned));
        assert_eq!(p.provisioned_throughput_mibps, Some(100));
        assert_eq!(p.performance_mode, Some(PerformanceMode::MaxIo));
    }

    #[test]
    fn unknown_parameter_is_named() {
        let err = Parameters::parse(&map(&[
            ("fileSystemName", "a"),
            ("fileSytemNamespace", "b"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("fileSytemNamespace"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        for (key, value) in [
            ("uid", "-1"),
            ("gid", "x"),
            ("encryptInTransit", "yes"),
            ("directoryPerms", "999"),
            ("provisioningMode", "bucket"),
        ] {
            let err =
                Parameters::parse(&map(&[("fileSystemName", "a"), (key, value)])).unwrap_err();
            assert!(err.to_string().contains(value), "{key}: {err}");
        }
    }

    #[test]
    fn inconsistent_sets_are_refused() {
        assert_eq!(
            Parameters::parse(&map(&[])).unwrap_err(),
            ParamsError::Missing("fileSystemName", "accessPoint")
        );
        for pairs in [
            &[("gidRangeStart", "10"), ("gidRangeEnd", "9")][..],
            &[("basePath", "relative")],
            &[("basePath", "/a/../b")],
            &[("basePath", "/a/")],
        ] {
            let mut m = map(pairs);
            m.insert("fileSystemName".into(), "fs".into());
            assert!(Parameters::parse(&m).is_err(), "{pairs:?} accepted");
        }
        assert!(
            Parameters::parse(&map(&[
                ("provisioningMode", "fileSystem"),
                ("encrypted", "true")
            ]))
            .is_err()
        );
    }
}
