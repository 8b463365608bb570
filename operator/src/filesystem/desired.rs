//! The core objects that serve a FileSystem, as a pure function of the
//! FileSystem and the operator's settings: the backing PersistentVolumeClaim,
//! a StatefulSet of one `openefs-nfsd` pod, the headless Service that governs
//! it, the ClusterIP Service clients mount (the mount target) and a
//! PodDisruptionBudget. No I/O: the apply layer writes what this returns.
//!
//! Every object is named after the file system id, not the FileSystem's name:
//! a FileSystem name may be a 253-character DNS subdomain, while Service and
//! StatefulSet names must be short DNS labels; the id (`fs-` + 17 hex digits)
//! always fits and cannot collide with the user's own objects.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetSpec},
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
            HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
            PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
            ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Service,
            ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
            VolumeResourceRequirements,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube::{
    Resource,
    api::{ApiResource, DynamicObject, GroupVersionKind},
};
use openefs_crds::{AccessPoint, DeletionPolicy, FileSystem, FileSystemId, PerformanceMode, names};

use super::service_name;
use super::settings::{
    ADMIN_PATH, ADMIN_PORT, ADMIN_TOKEN_KEY, CLIENT_CA_KEY, CONFIG_KEY, CONFIG_PATH,
    admin_secret_name, config_map_name,
};
use crate::{error::Error, identity};

/// TCP port of NFS (v4.1, v3 and MOUNT v3 all share it), on the pod and on
/// both Services.
pub const NFS_PORT: i32 = 2049;

/// Port of nfsd's Prometheus `/metrics` endpoint in the pod.
pub const METRICS_PORT: i32 = 9100;

/// Name of the nfsd container in the server pod.
pub const NFSD_CONTAINER: &str = "nfsd";

/// Where the export directory of the backing volume is mounted in the pod.
/// The volume's root is not exported: its `export/` sub-directory is, so
/// nfsd's state can live next to it (`state/`) and a file system's own
/// `lost+found` stays invisible to clients.
pub const EXPORT_PATH: &str = "/data/export";

/// Sub-directory of the backing volume that is exported (the kubelet creates
/// it on first mount).
pub const EXPORT_SUBPATH: &str = "export";

/// Where nfsd keeps its client records (`--state-dir`): on the same backing
/// volume as the export, so a server pod rescheduled onto another node finds
/// them and runs a grace period in which clients reclaim their opens and locks.
pub const STATE_PATH: &str = "/data/state";

/// Sub-directory of the backing volume that holds nfsd's state.
pub const STATE_SUBPATH: &str = "state";

/// Where the file system's TLS Secret (`<fs-id>-tls`) is mounted in the
/// server pod: `tls.crt`, `tls.key`, `ca.crt`. nfsd re-reads the files when
/// they change, so a renewed certificate needs no restart.
pub const TLS_PATH: &str = "/etc/openefs/tls";

/// The Linux capabilities nfsd needs; every other one is dropped. Why each:
/// - `DAC_READ_SEARCH`: `open_by_handle_at` resolves file handles (with it,
///   the container runtime's default seccomp profile allows that call);
/// - `SETUID`, `SETGID`: `setfsuid`/`setfsgid`/`setgroups` to run each call
///   as the client's user;
/// - `SYS_ADMIN`: the handle key and exclusive-create verifiers are
///   `trusted.*` extended attributes;
/// - `CHOWN`, `DAC_OVERRIDE`, `FOWNER`, `FSETID`: what root itself may do on
///   files, kept while a call runs as uid 0 (an unsquashed root client, as
///   EFS allows by default): chown, access regardless of mode, chmod of
///   others' files, keeping set-id bits.
pub const NFSD_CAPABILITIES: [&str; 8] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "SETGID",
    "SETUID",
    "SYS_ADMIN",
];

/// What the operator contributes besides the FileSystem itself.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorSettings {
    /// Container image of openefs-nfsd, unless `spec.server.image` names one.
    /// The image must have `openefs-nfsd` on its `PATH`.
    pub nfsd_image: String,
    /// Requests and limits of the nfsd container unless
    /// `spec.server.resources` is given: a file server should not be the
    /// first pod evicted when its node runs short (BestEffort).
    pub default_server_resources: ResourceRequirements,
}

impl OperatorSettings {
    /// Settings with `nfsd_image` and default requests of 100m CPU and
    /// 128Mi memory (no limits: a limit would throttle I/O bursts).
    pub fn new(nfsd_image: impl Into<String>) -> Self {
        Self {
            nfsd_image: nfsd_image.into(),
            default_server_resources: ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_owned(), Quantity("100m".into())),
                    ("memory".to_owned(), Quantity("128Mi".into())),
                ])),
                ..ResourceRequirements::default()
            },
        }
    }
}

/// The core objects of one FileSystem, in the order they are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObjects {
    /// The volume that holds the data (ReadWriteOnce). Owned by the
    /// FileSystem only under `deletionPolicy: Delete`, so garbage collection
    /// never removes the data of a retained file system.
    pub backing_pvc: PersistentVolumeClaim,
    /// nfsd's runtime settings for its first start (see [`super::settings`]).
    pub config_map: ConfigMap,
    /// Governs the StatefulSet: stable pod DNS name, metrics scraping.
    pub headless_service: Service,
    /// The mount target: `<fileSystemId>.<namespace>.svc.<domain>`.
    pub service: Service,
    /// One openefs-nfsd pod serving the backing volume.
    pub stateful_set: StatefulSet,
    /// Keeps voluntary evictions (drains) from taking the only server away.
    pub pod_disruption_budget: PodDisruptionBudget,
}

/// Name of the headless Service that governs the server's StatefulSet.
pub fn headless_service_name(id: &FileSystemId) -> String {
    format!("{}-headless", service_name(id))
}

/// Name of the backing PersistentVolumeClaim.
pub fn backing_pvc_name(id: &FileSystemId) -> String {
    format!("{}-data", service_name(id))
}

/// Name of the StatefulSet (and PodDisruptionBudget); its pod is `<name>-0`.
pub fn stateful_set_name(id: &FileSystemId) -> &str {
    service_name(id)
}

/// The server pod's stable DNS name under the headless Service.
pub fn pod_dns_name(id: &FileSystemId, namespace: &str, cluster_domain: &str) -> String {
    format!(
        "{}-0.{}.{namespace}.svc.{cluster_domain}",
        stateful_set_name(id),
        headless_service_name(id)
    )
}

/// The labels that select the server pod. The file system id is the
/// instance: it is unique, never changes (a StatefulSet's selector is
/// immutable) and, unlike a FileSystem name, always fits in a label value.
pub fn selector_labels(id: &FileSystemId) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::LABEL_NAME.to_owned(), names::PART_OF.to_owned()),
        (
            names::LABEL_COMPONENT.to_owned(),
            names::COMPONENT_NFS_SERVER.to_owned(),
        ),
        (names::LABEL_INSTANCE.to_owned(), id.as_str().to_owned()),
    ])
}

/// Labels on every object (and the pod): the selector labels, managed-by
/// (for orphan cleanup), part-of, and the FileSystem's name when it fits in
/// a label value.
fn labels(id: &FileSystemId, fs_name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(id);
    labels.insert(
        names::LABEL_MANAGED_BY.to_owned(),
        names::MANAGED_BY.to_owned(),
    );
    labels.insert(names::LABEL_PART_OF.to_owned(), names::PART_OF.to_owned());
    if let Some(value) = names::filesystem_label_value(fs_name) {
        labels.insert(names::LABEL_FILESYSTEM.to_owned(), value.to_owned());
    }
    labels
}

/// Metadata for the core objects of one FileSystem: names them, labels
/// them, and (when `owned`) makes the FileSystem their controller owner.
pub struct MetaFactory {
    namespace: String,
    id: FileSystemId,
    labels: BTreeMap<String, String>,
    owner: OwnerReference,
}

impl MetaFactory {
    /// Fails only for an object that was not read from the API server (no
    /// name, namespace or uid).
    pub fn new(fs: &FileSystem) -> Result<Self, Error> {
        let (namespace, name) = identity(fs, "FileSystem")?;
        let id = FileSystemId::of(fs).map_err(|_| Error::IncompleteObject {
            kind: "FileSystem",
            field: "metadata.uid",
        })?;
        let owner = fs
            .controller_owner_ref(&())
            .map(|owner| OwnerReference {
                block_owner_deletion: Some(true),
                ..owner
            })
            .ok_or(Error::IncompleteObject {
                kind: "FileSystem",
                field: "metadata.uid",
            })?;
        let labels = labels(&id, &name);
        Ok(Self {
            namespace,
            id,
            labels,
            owner,
        })
    }

    pub fn id(&self) -> &FileSystemId {
        &self.id
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn meta(&self, object_name: &str, owned: bool) -> ObjectMeta {
        ObjectMeta {
            name: Some(object_name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels.clone()),
            owner_references: owned.then(|| vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The core objects that should exist for `fs`, whose AccessPoints are
/// `access_points`. `backing_request`: the backing claim's storage request
/// when it is not `initialSize` (auto-expansion raised it, see
/// [`super::expansion::request`]). Fails only for an object that was not
/// read from the API server (no name, namespace or uid).
pub fn objects(
    fs: &FileSystem,
    access_points: &[AccessPoint],
    settings: &OperatorSettings,
    backing_request: Option<&Quantity>,
) -> Result<DesiredObjects, Error> {
    let factory = MetaFactory::new(fs)?;
    let id = factory.id().clone();
    let labels = factory.labels.clone();
    let meta = |object_name: &str, owned: bool| factory.meta(object_name, owned);
    let delete_data = fs.spec.deletion_policy == DeletionPolicy::Delete;
    let pvc_name = backing_pvc_name(&id);
    let headless_name = headless_service_name(&id);
    let encryption = super::encryption::pod_parts(fs)?;
    Ok(DesiredObjects {
        backing_pvc: backing_pvc(fs, meta(&pvc_name, delete_data), backing_request),
        config_map: super::settings::config_map(
            &factory,
            &super::settings::nfsd_settings(fs, access_points),
            fs.spec
                .policy
                .client_certificates
                .as_ref()
                .map(|c| c.ca_bundle.as_str()),
        )?,
        headless_service: headless_service(&id, meta(&headless_name, true)),
        service: service(&id, meta(service_name(&id), true)),
        stateful_set: stateful_set(
            fs,
            settings,
            &id,
            &labels,
            meta(stateful_set_name(&id), true),
            encryption,
        ),
        pod_disruption_budget: pod_disruption_budget(&id, meta(stateful_set_name(&id), true)),
    })
}

fn backing_pvc(
    fs: &FileSystem,
    metadata: ObjectMeta,
    request: Option<&Quantity>,
) -> PersistentVolumeClaim {
    let storage = &fs.spec.backing_storage;
    PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: storage.storage_class_name.clone(),
            volume_mode: Some("Filesystem".to_owned()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    request.unwrap_or(&storage.initial_size).clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn nfs_service_port() -> ServicePort {
    ServicePort {
        name: Some("nfs".to_owned()),
        port: NFS_PORT,
        target_port: Some(IntOrString::String("nfs".to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

fn headless_service(id: &FileSystemId, metadata: ObjectMeta) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(selector_labels(id)),
            ports: Some(vec![
                nfs_service_port(),
                ServicePort {
                    name: Some("metrics".to_owned()),
                    port: METRICS_PORT,
                    target_port: Some(IntOrString::String("metrics".to_owned())),
                    protocol: Some("TCP".to_owned()),
                    ..ServicePort::default()
                },
                // The operator reaches the admin API here, not through the
                // Service clients mount.
                ServicePort {
                    name: Some("admin".to_owned()),
                    port: ADMIN_PORT,
                    target_port: Some(IntOrString::String("admin".to_owned())),
                    protocol: Some("TCP".to_owned()),
                    ..ServicePort::default()
                },
            ]),
            // Monitoring must reach a server that is not Ready: that is when
            // its metrics matter most. Clients use the other Service.
            publish_not_ready_addresses: Some(true),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn service(id: &FileSystemId, metadata: ObjectMeta) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(id)),
            ports: Some(vec![nfs_service_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn nfsd_args(fs: &FileSystem) -> Vec<String> {
    let tls_file = |name: &str| format!("{TLS_PATH}/{name}");
    let mut args = vec![
        "serve".to_owned(),
        "--export".to_owned(),
        EXPORT_PATH.to_owned(),
        "--state-dir".to_owned(),
        STATE_PATH.to_owned(),
        "--listen".to_owned(),
        format!("0.0.0.0:{NFS_PORT}"),
        "--metrics-listen".to_owned(),
        format!("0.0.0.0:{METRICS_PORT}"),
        "--log-format".to_owned(),
        "json".to_owned(),
        "--tls-cert".to_owned(),
        tls_file(super::tls::TLS_CERT),
        "--tls-key".to_owned(),
        tls_file(super::tls::TLS_KEY),
        "--config".to_owned(),
        format!("{CONFIG_PATH}/{CONFIG_KEY}"),
        "--admin-listen".to_owned(),
        format!("0.0.0.0:{ADMIN_PORT}"),
        "--admin-token-file".to_owned(),
        format!("{ADMIN_PATH}/{ADMIN_TOKEN_KEY}"),
        // An argument, not a runtime setting: the mode is immutable, and
        // nfsd reads it only at start.
        "--performance-mode".to_owned(),
        match fs.spec.performance_mode {
            PerformanceMode::GeneralPurpose => "general-purpose",
            PerformanceMode::MaxIo => "max-io",
        }
        .to_owned(),
    ];
    // An argument: which clients must show a certificate is decided at the
    // handshake, before any settings apply; the bundle's content may change
    // at runtime (nfsd re-reads it).
    if fs.spec.policy.client_certificates.is_some() {
        args.push("--tls-client-ca".to_owned());
        args.push(format!("{CONFIG_PATH}/{CLIENT_CA_KEY}"));
    }
    args
}

fn nfsd_container(
    fs: &FileSystem,
    settings: &OperatorSettings,
    encryption: &super::encryption::PodParts,
) -> Container {
    let server = fs.spec.server.clone().unwrap_or_default();
    let port = |name: &str, port| ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    Container {
        name: NFSD_CONTAINER.to_owned(),
        image: Some(server.image.unwrap_or_else(|| settings.nfsd_image.clone())),
        command: Some(vec!["openefs-nfsd".to_owned()]),
        args: Some([nfsd_args(fs), encryption.args.clone()].concat()),
        ports: Some(vec![
            port("nfs", NFS_PORT),
            port("metrics", METRICS_PORT),
            port("admin", ADMIN_PORT),
        ]),
        volume_mounts: Some(
            vec![
                VolumeMount {
                    name: "data".to_owned(),
                    mount_path: EXPORT_PATH.to_owned(),
                    sub_path: Some(EXPORT_SUBPATH.to_owned()),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "data".to_owned(),
                    mount_path: STATE_PATH.to_owned(),
                    sub_path: Some(STATE_SUBPATH.to_owned()),
                    ..VolumeMount::default()
                },
                // Not subPath mounts: those never see a Secret's updates.
                VolumeMount {
                    name: "tls".to_owned(),
                    mount_path: TLS_PATH.to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "admin".to_owned(),
                    mount_path: ADMIN_PATH.to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "config".to_owned(),
                    mount_path: CONFIG_PATH.to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
            ]
            .into_iter()
            .chain(encryption.mounts.iter().cloned())
            .collect(),
        ),
        // nfsd writes why it refused to start (e.g. its data key cannot be
        // unwrapped) to /dev/termination-log; other crashes are explained by
        // the end of their log. The operator reports the message.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        // Ready once nfsd accepts NFS connections: it listens only after the
        // export has been opened and its handles checked.
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("nfs".to_owned()),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        // Alive while nfsd answers HTTP: a TCP connect to the NFS port would
        // be completed by the kernel's listen backlog even if the process
        // were stuck.
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/metrics".to_owned()),
                port: IntOrString::String("metrics".to_owned()),
                ..HTTPGetAction::default()
            }),
            initial_delay_seconds: Some(10),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        resources: Some(
            server
                .resources
                .unwrap_or_else(|| settings.default_server_resources.clone()),
        ),
        // Root, because the capabilities a pod adds only take effect for
        // uid 0 (Kubernetes sets no ambient capabilities), but root with
        // just the capabilities nfsd uses.
        security_context: Some(SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: Some(NFSD_CAPABILITIES.map(str::to_owned).to_vec()),
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

fn stateful_set(
    fs: &FileSystem,
    settings: &OperatorSettings,
    id: &FileSystemId,
    labels: &BTreeMap<String, String>,
    metadata: ObjectMeta,
    encryption: super::encryption::PodParts,
) -> StatefulSet {
    let server = fs.spec.server.clone().unwrap_or_default();
    let (pvc_name, headless_name) = (backing_pvc_name(id), headless_service_name(id));
    StatefulSet {
        metadata,
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(headless_name),
            selector: LabelSelector {
                match_labels: Some(selector_labels(id)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![nfsd_container(fs, settings, &encryption)],
                    volumes: Some(
                        vec![
                            Volume {
                                name: "data".to_owned(),
                                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                    claim_name: pvc_name,
                                    ..PersistentVolumeClaimVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                            Volume {
                                name: "tls".to_owned(),
                                secret: Some(SecretVolumeSource {
                                    secret_name: Some(super::tls::tls_secret_name(id)),
                                    // Readable by nfsd only (it runs as root).
                                    default_mode: Some(0o400),
                                    ..SecretVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                            Volume {
                                name: "admin".to_owned(),
                                secret: Some(SecretVolumeSource {
                                    secret_name: Some(admin_secret_name(id)),
                                    default_mode: Some(0o400),
                                    ..SecretVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                            Volume {
                                name: "config".to_owned(),
                                config_map: Some(ConfigMapVolumeSource {
                                    name: config_map_name(id),
                                    ..ConfigMapVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                        ]
                        .into_iter()
                        .chain(encryption.volumes)
                        .collect(),
                    ),
                    // nfsd never calls the Kubernetes API.
                    automount_service_account_token: Some(false),
                    // Namespaces with many Services would otherwise fill the
                    // environment with variables nfsd never reads.
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    node_selector: (!server.node_selector.is_empty())
                        .then_some(server.node_selector),
                    tolerations: (!server.tolerations.is_empty()).then_some(server.tolerations),
                    priority_class_name: server.priority_class_name,
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

/// API group, version and kind of the Prometheus Operator's ServiceMonitor.
pub const SERVICE_MONITOR_GVK: (&str, &str, &str) =
    ("monitoring.coreos.com", "v1", "ServiceMonitor");

/// The ServiceMonitor kind as the client addresses it.
pub fn service_monitor_resource() -> ApiResource {
    let (group, version, kind) = SERVICE_MONITOR_GVK;
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        "servicemonitors",
    )
}

/// A Prometheus Operator ServiceMonitor that scrapes `fs`'s nfsd: named
/// after the id like the other objects, owned by the FileSystem, selecting
/// its Services by the selector labels and scraping the port named
/// `metrics`, which only the headless Service has (it also publishes a pod
/// that is not Ready, whose metrics matter most). A `DynamicObject`:
/// k8s-openapi has no type for it, and whether the kind exists is only
/// known at run time. Fails as [`objects`] does.
pub fn service_monitor(fs: &FileSystem) -> Result<DynamicObject, Error> {
    let factory = MetaFactory::new(fs)?;
    let id = factory.id();
    let mut monitor =
        DynamicObject::new(service_name(id), &service_monitor_resource()).data(serde_json::json!({
            "spec": {
                "selector": {"matchLabels": selector_labels(id)},
                "endpoints": [{"port": "metrics", "path": "/metrics"}],
            }
        }));
    monitor.metadata = factory.meta(service_name(id), true);
    Ok(monitor)
}

/// `minAvailable: 1`: the one server is the whole file system, so a drain
/// waits for an administrator instead of cutting every client off (moving
/// it on purpose is `kubectl delete pod`, which is not an eviction). A pod
/// that is not Ready protects nothing and may always be evicted
/// (`unhealthyPodEvictionPolicy: AlwaysAllow`), so a broken server never
/// blocks a drain.
fn pod_disruption_budget(id: &FileSystemId, metadata: ObjectMeta) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata,
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(id)),
                ..LabelSelector::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6f3a1c2e-9b7d-4e21-8c55-0a1b2c3d4e5f";

    fn stored(name: &str, spec: &str) -> FileSystem {
        let mut fs = FileSystem::new(name, serde_json::from_str(spec).unwrap());
        fs.metadata.namespace = Some("team".into());
        fs.metadata.uid = Some(UID.into());
        fs
    }

    fn settings() -> OperatorSettings {
        OperatorSettings::new("example.org/openefs-nfsd:1")
    }

    fn labels_of(meta: &ObjectMeta) -> &BTreeMap<String, String> {
        meta.labels.as_ref().unwrap()
    }

    #[test]
    fn objects_are_named_after_the_id_and_select_the_same_pod() {
        let objects = objects(&stored("shared", "{}"), &[], &settings(), None).unwrap();
        let id = "fs-85629fff8f20c8a89";
        assert_eq!(objects.service.metadata.name.as_deref(), Some(id));
        assert_eq!(
            objects.headless_service.metadata.name.as_deref(),
            Some(format!("{id}-headless").as_str())
        );
        let sts = &objects.stateful_set.spec;
        assert_eq!(
            sts.service_name,
            objects.headless_service.metadata.name.clone()
        );
        let selector = sts.selector.match_labels.as_ref().unwrap();
        let pod_labels = labels_of(sts.template.metadata.as_ref().unwrap());
        assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
        for spec_selector in [
            objects.service.spec.as_ref().unwrap().selector.as_ref(),
            objects
                .headless_service
                .spec
                .as_ref()
                .unwrap()
                .selector
                .as_ref(),
            objects
                .pod_disruption_budget
                .spec
                .as_ref()
                .unwrap()
                .selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref()),
        ] {
            assert_eq!(spec_selector, Some(selector));
        }
        let claim = sts
            .template
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .as_ref()
            .unwrap()[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap();
        assert_eq!(
            Some(&claim.claim_name),
            objects.backing_pvc.metadata.name.as_ref()
        );
        assert_eq!(
            labels_of(&objects.service.metadata)["openefs.io/filesystem"],
            "shared"
        );
    }

    #[test]
    fn a_name_too_long_for_a_label_is_left_out_of_the_labels() {
        let long = format!("{}.example", "a".repeat(60));
        let objects = objects(&stored(&long, "{}"), &[], &settings(), None).unwrap();
        let labels = labels_of(&objects.stateful_set.metadata);
        assert!(!labels.contains_key(names::LABEL_FILESYSTEM));
        assert_eq!(labels[names::LABEL_INSTANCE], "fs-85629fff8f20c8a89");
        // Every name still fits a DNS label, whatever the FileSystem is called.
        let names = [
            &objects.backing_pvc.metadata.name,
            &objects.headless_service.metadata.name,
            &objects.service.metadata.name,
            &objects.stateful_set.metadata.name,
            &objects.pod_disruption_budget.metadata.name,
        ];
        for name in names {
            let name = name.as_deref().unwrap();
            assert!(openefs_crds::volume_handle::is_dns_label(name), "{name}");
        }
        let exactly_63 = "b".repeat(63);
        let fits = super::objects(&stored(&exactly_63, "{}"), &[], &settings(), None).unwrap();
        assert_eq!(
            labels_of(&fits.service.metadata)[names::LABEL_FILESYSTEM],
            exactly_63
        );
    }

    #[test]
    fn missing_backing_storage_takes_the_api_defaults() {
        let objects = objects(&stored("shared", "{}"), &[], &settings(), None).unwrap();
        let spec = objects.backing_pvc.spec.unwrap();
        assert_eq!(spec.storage_class_name, None);
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"],
            Quantity("10Gi".into())
        );
    }

    #[test]
    fn an_expanded_request_replaces_the_initial_size() {
        let grown = Quantity("15Gi".into());
        let objects = objects(&stored("shared", "{}"), &[], &settings(), Some(&grown)).unwrap();
        let spec = objects.backing_pvc.spec.unwrap();
        assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"], grown);
    }

    #[test]
    fn the_service_monitor_scrapes_the_port_only_the_headless_service_has() {
        let fs = stored("shared", "{}");
        let monitor = service_monitor(&fs).unwrap();
        let objects = objects(&fs, &[], &settings(), None).unwrap();
        let port_names = |svc: &Service| -> Vec<String> {
            svc.spec
                .as_ref()
                .unwrap()
                .ports
                .as_ref()
                .unwrap()
                .iter()
                .filter_map(|p| p.name.clone())
                .collect()
        };
        let endpoint = &monitor.data["spec"]["endpoints"][0]["port"];
        assert!(
            port_names(&objects.headless_service).contains(&endpoint.as_str().unwrap().to_owned())
        );
        assert!(!port_names(&objects.service).iter().any(|p| p == endpoint));
        assert_eq!(
            monitor.data["spec"]["selector"]["matchLabels"],
            serde_json::to_value(objects.headless_service.spec.unwrap().selector).unwrap()
        );
        assert_eq!(
            monitor.metadata.owner_references,
            objects.service.metadata.owner_references
        );
    }

    #[test]
    fn the_backing_volume_is_owned_only_when_it_may_be_deleted() {
        let retained = objects(&stored("shared", "{}"), &[], &settings(), None).unwrap();
        assert_eq!(retained.backing_pvc.metadata.owner_references, None);
        let owners = retained.service.metadata.owner_references.unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(
            (
                owners[0].kind.as_str(),
                owners[0].uid.as_str(),
                owners[0].controller,
                owners[0].block_owner_deletion
            ),
            ("FileSystem", UID, Some(true), Some(true))
        );
        let deleted = objects(
            &stored("shared", r#"{"deletionPolicy":"Delete"}"#),
            &[],
            &settings(),
            None,
        )
        .unwrap();
        assert_eq!(deleted.backing_pvc.metadata.owner_references, Some(owners));
    }

    #[test]
    fn the_performance_mode_reaches_nfsd_as_an_argument() {
        let mode_arg = |spec: &str| {
            let pod = objects(&stored("shared", spec), &[], &settings(), None)
                .unwrap()
                .stateful_set
                .spec
                .template
                .spec
                .unwrap();
            let args = pod.containers[0].args.clone().unwrap();
            let at = args
                .iter()
                .position(|a| a == "--performance-mode")
                .expect("--performance-mode");
            args[at + 1].clone()
        };
        assert_eq!(mode_arg("{}"), "general-purpose");
        assert_eq!(mode_arg(r#"{"performanceMode":"maxIO"}"#), "max-io");
    }

    #[test]
    fn server_fields_override_the_settings() {
        let fs = stored(
            "shared",
            r#"{"server":{"image":"mine:2","resources":{"limits":{"memory":"1Gi"}},
                "priorityClassName":"storage"},"policy":{"rootAccess":"squash"}}"#,
        );
        let objects = objects(&fs, &[], &settings(), None).unwrap();
        let pod = objects.stateful_set.spec.template.spec.unwrap();
        let nfsd = &pod.containers[0];
        assert_eq!(nfsd.image.as_deref(), Some("mine:2"));
        assert_eq!(
            nfsd.resources.as_ref().unwrap().requests,
            None,
            "the spec's resources replace the defaults, not merge with them"
        );
        assert_eq!(pod.priority_class_name.as_deref(), Some("storage"));
        assert_eq!(pod.node_selector, None);
        // The policy is runtime settings (ConfigMap and admin API), never
        // an argument: changing it must not roll the pod.
        assert!(
            !nfsd
                .args
                .as_ref()
                .unwrap()
                .contains(&"--root-squash".to_owned())
        );
        assert!(
            objects.config_map.data.as_ref().unwrap()[CONFIG_KEY].contains("root-squash = true")
        );
        let defaults = objects_default_pod();
        assert_eq!(
            defaults.containers[0].resources,
            Some(settings().default_server_resources)
        );
    }

    fn objects_default_pod() -> PodSpec {
        objects(&stored("shared", "{}"), &[], &settings(), None)
            .unwrap()
            .stateful_set
            .spec
            .template
            .spec
            .unwrap()
    }

    #[test]
    fn objects_not_read_from_the_api_server_are_errors() {
        let mut no_uid = stored("shared", "{}");
        no_uid.metadata.uid = None;
        let err = objects(&no_uid, &[], &settings(), None).unwrap_err();
        assert!(matches!(
            err,
            Error::IncompleteObject {
                field: "metadata.uid",
                ..
            }
        ));
        let mut no_namespace = stored("shared", "{}");
        no_namespace.metadata.namespace = None;
        assert!(matches!(
            objects(&no_namespace, &[], &settings(), None),
            Err(Error::IncompleteObject {
                field: "metadata.namespace",
                ..
            })
        ));
    }
}
