//! `FileSystem` (`fs`): one elastic, shared NFS file system, served by its own
//! `openefs-nfsd` instance.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{ResourceRequirements, Toleration},
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{Condition, Time},
    },
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    ids::FileSystemId,
    schema,
    status::{LifecyclePhase, SizeInBytes},
};

/// Lowest provisioned throughput in MiB/s, as EFS allows.
pub const MIN_PROVISIONED_THROUGHPUT_MIBPS: u32 = 1;

/// Highest provisioned throughput in MiB/s, as EFS allows.
pub const MAX_PROVISIONED_THROUGHPUT_MIBPS: u32 = 3414;

/// Desired state of a file system.
// Clippy takes the `type_ = "string"` of several `printcolumn(...)` for one
// attribute given twice.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "openefs.io",
    version = "v1alpha1",
    kind = "FileSystem",
    namespaced,
    shortname = "fs",
    category = "openefs",
    status = "FileSystemStatus",
    derive = "PartialEq",
    doc = "An elastic, shared POSIX file system that pods mount read-write over NFSv4.1 (ReadWriteMany), served by its own openefs NFS server.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Performance",
        type_ = "string",
        json_path = ".spec.performanceMode",
        description = "Performance mode"
    ),
    printcolumn(
        name = "Throughput",
        type_ = "string",
        json_path = ".spec.throughputMode",
        description = "Throughput mode"
    ),
    printcolumn(
        name = "Size",
        type_ = "integer",
        json_path = ".status.sizeInBytes.value",
        description = "Metered bytes stored"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        description = "DNS name clients mount"
    ),
    printcolumn(
        name = "ID",
        type_ = "string",
        json_path = ".status.fileSystemId",
        description = "Stable file system id",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(
    "(has(self.throughputMode) && self.throughputMode == 'provisioned') == has(self.provisionedThroughputMiBps)"
).message("provisionedThroughputMiBps is required when throughputMode is provisioned, and not allowed otherwise"))]
#[x_kube(validation = Rule::new(
    "(has(self.encrypted) && self.encrypted) == has(self.kmsKey)"
).message("kmsKey is required when encrypted is true, and not allowed otherwise"))]
#[x_kube(validation = Rule::new(
    "(has(self.performanceMode) ? self.performanceMode : 'generalPurpose') == (has(oldSelf.performanceMode) ? oldSelf.performanceMode : 'generalPurpose')"
).message("performanceMode is immutable").field_path(".performanceMode"))]
#[x_kube(validation = Rule::new(
    "(has(self.encrypted) && self.encrypted) == (has(oldSelf.encrypted) && oldSelf.encrypted)"
).message("encrypted is immutable").field_path(".encrypted"))]
#[serde(rename_all = "camelCase")]
pub struct FileSystemSpec {
    /// Performance mode, fixed at creation as in EFS. generalPurpose favours
    /// low latency; maxIO favours aggregate throughput across many clients at
    /// the cost of higher metadata latency. Immutable.
    #[serde(default)]
    pub performance_mode: PerformanceMode,

    /// How throughput is limited: bursting (scales with stored size, with a
    /// burst credit balance), provisioned (fixed at
    /// provisionedThroughputMiBps) or elastic (not limited).
    #[serde(default)]
    pub throughput_mode: ThroughputMode,

    /// Throughput in MiB/s when throughputMode is provisioned (1 to 3414);
    /// required in that mode and not allowed in the others.
    #[serde(
        rename = "provisionedThroughputMiBps",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    // Kubernetes knows no unsigned integer formats (schemars says uint32).
    #[schemars(
        range(min = MIN_PROVISIONED_THROUGHPUT_MIBPS, max = MAX_PROVISIONED_THROUGHPUT_MIBPS),
        extend("format" = "int32")
    )]
    pub provisioned_throughput_mibps: Option<u32>,

    /// Encrypt file data at rest (AES-256, with a data key wrapped by kmsKey).
    /// Immutable.
    #[serde(default)]
    pub encrypted: bool,

    /// Key-encryption key that wraps the file system's data key; required
    /// when encrypted is true, not allowed otherwise. May be changed to
    /// rotate the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<KmsKey>,

    /// Volume that holds the file system's data.
    #[serde(default)]
    pub backing_storage: BackingStorage,

    /// Who may mount the file system and how.
    #[serde(default)]
    pub policy: Policy,

    /// Scheduling and resources of the NFS server pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSpec>,

    /// What happens to the backing volume (the data) when the FileSystem is
    /// deleted: Retain keeps the PersistentVolumeClaim, Delete removes it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Performance mode of a file system.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PerformanceMode {
    /// Lowest latency per operation; the right choice for most workloads.
    #[default]
    #[serde(rename = "generalPurpose")]
    GeneralPurpose,
    /// Higher aggregate throughput and operations per second for highly
    /// parallel workloads, with somewhat higher metadata latency.
    #[serde(rename = "maxIO")]
    MaxIo,
}

/// Throughput mode of a file system, with EFS's rules.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ThroughputMode {
    /// Baseline and burst throughput proportional to the size stored, with a
    /// burst credit balance.
    #[default]
    Bursting,
    /// A fixed throughput, set by provisionedThroughputMiBps.
    Provisioned,
    /// Throughput follows demand without a limit.
    Elastic,
}

/// What deleting a FileSystem does to its data.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the backing PersistentVolumeClaim (and so the data) for manual
    /// recovery or deletion.
    #[default]
    Retain,
    /// Delete the backing PersistentVolumeClaim with the FileSystem.
    Delete,
}

/// Source of the key-encryption key. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.secretKeyRef) != has(self.kmsPlugin)")
    .message("exactly one of secretKeyRef or kmsPlugin must be set"))]
#[serde(rename_all = "camelCase")]
pub struct KmsKey {
    /// A key in a Secret in the FileSystem's namespace holding 32 random
    /// bytes used as the key-encryption key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,

    /// A Kubernetes KMS v2 plugin that wraps and unwraps the data key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_plugin: Option<KmsPlugin>,
}

/// A key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// A Kubernetes KMS v2 plugin (the `k8s.io/kms` gRPC API).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct KmsPlugin {
    /// The plugin's gRPC endpoint, a unix socket: `unix:///path/to/socket`.
    #[schemars(length(max = 1024), regex(pattern = r"^unix:///.+$"))]
    pub endpoint: String,
}

/// The volume that holds a file system's data.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)"
).message("storageClassName is immutable").field_path(".storageClassName"))]
#[x_kube(validation = Rule::new("quantity(self.initialSize).isGreaterThan(quantity('0'))")
    .message("initialSize must be greater than zero").field_path(".initialSize"))]
#[x_kube(validation = Rule::new(
    "!has(self.autoExpand) || !has(self.autoExpand.maxSize) || !quantity(self.autoExpand.maxSize).isLessThan(quantity(self.initialSize))"
).message("autoExpand.maxSize must not be smaller than initialSize").field_path(".autoExpand.maxSize"))]
#[serde(rename_all = "camelCase")]
pub struct BackingStorage {
    /// StorageClass of the backing PersistentVolumeClaim; the cluster's
    /// default class when absent. It must allow volume expansion for
    /// autoExpand to work. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,

    /// Size the backing volume is created with.
    #[serde(default = "default_initial_size")]
    #[schemars(schema_with = "schema::byte_quantity")]
    pub initial_size: Quantity,

    /// Growing the backing volume before it fills, so users never size a
    /// file system.
    #[serde(default)]
    pub auto_expand: AutoExpand,
}

fn default_initial_size() -> Quantity {
    Quantity("10Gi".into())
}

impl Default for BackingStorage {
    fn default() -> Self {
        Self {
            storage_class_name: None,
            initial_size: default_initial_size(),
            auto_expand: AutoExpand::default(),
        }
    }
}

/// Automatic growth of the backing volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoExpand {
    /// Grow the backing volume when it fills beyond thresholdPercent.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Used share of the backing volume, in percent (1 to 99), above which
    /// the operator grows it.
    #[serde(default = "default_threshold_percent")]
    // Kubernetes knows no unsigned integer formats (schemars says uint8).
    #[schemars(range(min = 1, max = 99), extend("format" = "int32"))]
    pub threshold_percent: u8,

    /// Largest size the backing volume may grow to; no limit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_byte_quantity")]
    pub max_size: Option<Quantity>,
}

fn default_true() -> bool {
    true
}

fn default_threshold_percent() -> u8 {
    80
}

impl Default for AutoExpand {
    fn default() -> Self {
        Self {
            enabled: default_true(),
            threshold_percent: default_threshold_percent(),
            max_size: None,
        }
    }
}

/// Access policy of a file system, enforced by its NFS server and the CSI
/// driver.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Whether clients connecting as root (uid 0) keep root's rights (allow)
    /// or are mapped to the anonymous user (squash). Access points with a
    /// posixUser override the caller's identity either way.
    #[serde(default)]
    pub root_access: RootAccess,

    /// Refuse every write, for every client.
    #[serde(default)]
    pub read_only: bool,

    /// Refuse connections that are not protected by TLS.
    #[serde(default = "default_true")]
    pub require_tls: bool,

    /// Namespaces whose PersistentVolumeClaims may use this file system, in
    /// addition to the FileSystem's own namespace; "*" allows every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 256),
        inner(length(min = 1, max = 63), regex(pattern = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$")),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub allowed_namespaces: Vec<String>,

    /// Mutual TLS: TLS clients must present a certificate signed by caBundle
    /// (the CSI driver's tls-proxy presents its node's), and rules may
    /// grant or deny by the certificate's name, as EFS's file system policy
    /// does by IAM principal. Absent: the server asks for no certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificates: Option<ClientCertificates>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            root_access: RootAccess::default(),
            read_only: false,
            require_tls: default_true(),
            allowed_namespaces: Vec::new(),
            client_certificates: None,
        }
    }
}

/// Longest client CA bundle accepted (a few dozen certificates).
pub const MAX_CLIENT_CA_BUNDLE: usize = 65536;
/// Most client rules per file system.
pub const MAX_CLIENT_RULES: usize = 64;

/// Who may present client certificates, and what each client may do.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificates {
    /// PEM certificates of the CAs that sign client certificates.
    #[schemars(
        length(min = 1, max = MAX_CLIENT_CA_BUNDLE),
        regex(pattern = r"-----BEGIN CERTIFICATE-----")
    )]
    pub ca_bundle: String,

    /// Overrides of readOnly and rootAccess for named clients; the first
    /// rule naming a client applies, and clients no rule names get the
    /// policy above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CLIENT_RULES))]
    pub rules: Vec<ClientRule>,
}

/// What one client, named by its certificate, may do unlike the policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.readOnly) || has(self.rootAccess)")
    .message("a client rule must set readOnly, rootAccess or both"))]
pub struct ClientRule {
    /// The certificate's common name or one of its DNS names; "*" names
    /// every client with a valid certificate.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[ -~]+$"))]
    pub client: String,

    /// Overrides the policy's readOnly for this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,

    /// Overrides the policy's rootAccess for this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_access: Option<RootAccess>,
}

/// Treatment of clients connecting as root.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RootAccess {
    /// Root keeps its rights, as EFS does without a file system policy.
    #[default]
    Allow,
    /// Root is mapped to the anonymous user (root squashing).
    Squash,
}

/// Settings of the NFS server pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    /// Container image of openefs-nfsd; the operator's configured image when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,

    /// CPU and memory requests and limits of the server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the server pod must be scheduled on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the server pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub tolerations: Vec<Toleration>,

    /// PriorityClass of the server pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
}

/// Observed state of a file system, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileSystemStatus {
    /// metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Lifecycle phase, as EFS's LifeCycleState.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<LifecyclePhase>,

    /// Standard conditions; Ready is True when the file system can be
    /// mounted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Stable id (fs- and 17 hex digits), derived from metadata.uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_system_id: Option<FileSystemId>,

    /// DNS name of the Service clients mount (the mount target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// PEM certificate of the CA that signs the server's TLS certificate,
    /// for clients that verify it; the CSI driver puts it into the volume
    /// context of TLS volumes. Public data (the CA's key stays in the
    /// operator's Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,

    /// Metered size of the data stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_in_bytes: Option<SizeInBytes>,

    /// Throughput currently permitted by the throughput mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<ThroughputStatus>,

    /// Number of NFS clients currently connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub client_connections: Option<i32>,

    /// Encryption at rest, as the server last reported it (encrypted file
    /// systems only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionStatus>,
}

/// The data key of an encrypted file system, as its server reports it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionStatus {
    /// Kind of the key-encryption key that wraps the stored data key.
    pub key_source: KeySource,

    /// Id of the key-encryption key that wraps the stored data key: for a
    /// Secret a fingerprint of the key ("sha256:" and 16 hex digits), for a
    /// KMS plugin the key_id the plugin reported.
    #[schemars(length(max = 1024))]
    pub key_id: String,

    /// When the data key was last wrapped: at creation, then at every
    /// rotation of the key-encryption key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,

    /// The spec.kmsKey the stored data key was last seen wrapped with. When
    /// spec.kmsKey names another Secret key, the server is also given this
    /// one, to unwrap the data key with and rewrap it with the new key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<KmsKey>,
}

/// Kind of a key-encryption key.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum KeySource {
    /// 32 bytes from a key of a Secret (spec.kmsKey.secretKeyRef).
    Secret,
    /// A Kubernetes KMS v2 plugin (spec.kmsKey.kmsPlugin).
    Kms,
}

/// Throughput figures of a file system.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThroughputStatus {
    /// Throughput in MiB/s the file system may use right now.
    #[serde(rename = "permittedMiBps")]
    #[schemars(range(min = 0.0))]
    pub permitted_mibps: f64,

    /// Burst credits left, in bytes (bursting mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub burst_credit_balance_bytes: Option<i64>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn empty_spec_takes_the_defaults() {
        let spec: FileSystemSpec = serde_json::from_value(json!({})).unwrap();
        assert_eq!(spec.performance_mode, PerformanceMode::GeneralPurpose);
        assert_eq!(spec.throughput_mode, ThroughputMode::Bursting);
        assert_eq!(spec.provisioned_throughput_mibps, None);
        assert!(!spec.encrypted);
        assert_eq!(spec.backing_storage.initial_size, Quantity("10Gi".into()));
        assert!(spec.backing_storage.auto_expand.enabled);
        assert_eq!(spec.backing_storage.auto_expand.threshold_percent, 80);
        assert_eq!(spec.policy.root_access, RootAccess::Allow);
        assert!(spec.policy.require_tls);
        assert!(!spec.policy.read_only);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
        // A partly given sub-object gets the defaults of its missing fields.
        let spec: FileSystemSpec =
            serde_json::from_value(json!({"policy": {"readOnly": true}})).unwrap();
        assert!(spec.policy.read_only && spec.policy.require_tls);
    }

    #[test]
    fn wire_names_are_the_documented_ones() {
        let spec: FileSystemSpec = serde_json::from_value(json!({
            "performanceMode": "maxIO",
            "throughputMode": "provisioned",
            "provisionedThroughputMiBps": 100,
        }))
        .unwrap();
        assert_eq!(spec.performance_mode, PerformanceMode::MaxIo);
        assert_eq!(spec.provisioned_throughput_mibps, Some(100));
        assert!(
            serde_json::from_value::<FileSystemSpec>(json!({"performanceMode": "maxIo"})).is_err()
        );
    }

    #[test]
    fn object_with_status_round_trips() {
        let mut fs = FileSystem::new(
            "shared",
            serde_json::from_value(json!({
                "throughputMode": "provisioned",
                "provisionedThroughputMiBps": 256,
                "encrypted": true,
                "kmsKey": {"kmsPlugin": {"endpoint": "unix:///run/kms.sock"}},
                "backingStorage": {"storageClassName": "ssd", "autoExpand": {"maxSize": "1Ti"}},
                "policy": {"allowedNamespaces": ["a", "*"]},
                "server": {"nodeSelector": {"disk": "ssd"}},
            }))
            .unwrap(),
        );
        fs.status = Some(FileSystemStatus {
            observed_generation: Some(3),
            phase: Some(LifecyclePhase::Available),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "Serving".into(),
                message: String::new(),
                observed_generation: Some(3),
                last_transition_time: Time(Default::default()),
            }],
            file_system_id: Some(FileSystemId::from_uid("uid")),
            endpoint: Some("shared.default.svc".into()),
            ca_bundle: Some("-----BEGIN CERTIFICATE-----\n".into()),
            size_in_bytes: Some(SizeInBytes {
                value: 4096,
                timestamp: Time(Default::default()),
            }),
            throughput: Some(ThroughputStatus {
                permitted_mibps: 256.0,
                burst_credit_balance_bytes: None,
            }),
            client_connections: Some(2),
            encryption: Some(EncryptionStatus {
                key_source: KeySource::Kms,
                key_id: "key-2".into(),
                last_rotation_time: Some(Time(Default::default())),
                kms_key: fs.spec.kms_key.clone(),
            }),
        });
        let text = serde_json::to_string(&fs).unwrap();
        let back: FileSystem = serde_json::from_str(&text).unwrap();
        assert_eq!(back, fs);
        assert!(text.contains(r#""fileSystemId":"fs-"#));
        assert!(text.contains(r#""permittedMiBps":256.0"#));
        assert!(text.contains(r#""keySource":"kms""#), "{text}");
    }
}
