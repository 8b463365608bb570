//! The Kubernetes side of the controller RPCs: AccessPoint (or FileSystem)
//! objects made, awaited, resized and removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::wait::{Condition, await_condition},
};
use openefs_crds::{
    AccessPoint, AccessPointId, AccessPointSpec, CreationInfo, FileSystem, FileSystemId,
    FileSystemRef, FileSystemSpec, LifecyclePhase, PosixUser, Quota, RootDirectory,
    RootDirectoryDeletionPolicy, names,
};

use super::{
    ControllerError, ControllerService, check_capabilities,
    params::{ClaimMetadata, Parameters, ProvisioningMode},
    plan,
};
use crate::{
    csi,
    handle::{Target, VolumeHandle},
};

/// Annotation with the CSI volume name on every object CreateVolume makes:
/// DeleteVolume only removes objects that carry it, never ones a user made
/// and referenced from a static PersistentVolume.
pub const VOLUME_NAME_ANNOTATION: &str = "csi.openefs.io/volume-name";
/// Annotation on the FileSystem that every gid allocation rewrites with a
/// resourceVersion precondition, so two controller replicas cannot both
/// commit a gid picked from the same view of the AccessPoints.
pub const GID_ALLOCATION_ANNOTATION: &str = "csi.openefs.io/last-gid-allocation";
/// Bound on allocation rounds lost to concurrent allocators.
const GID_ALLOCATION_ATTEMPTS: usize = 8;

/// Volume context keys, read by the node service.
pub mod context {
    /// NFS server endpoint (the FileSystem's mount target).
    pub const SERVER: &str = "server";
    /// Directory of the file system the volume is.
    pub const PATH: &str = "path";
    /// `namespace/name` of the FileSystem.
    pub const FILE_SYSTEM: &str = "fileSystem";
    /// Stable id of the file system.
    pub const FILE_SYSTEM_ID: &str = "fileSystemId";
    /// Stable id of the access point (absent for fileSystem volumes).
    pub const ACCESS_POINT_ID: &str = "accessPointId";
    /// "true" or "false": mount through TLS.
    pub const ENCRYPT_IN_TRANSIT: &str = "encryptInTransit";
    /// PEM CA certificate the server's certificate chains to (TLS volumes).
    pub const CA_BUNDLE: &str = "caBundle";
}

fn is_ready(
    phase: Option<LifecyclePhase>,
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> bool {
    phase == Some(LifecyclePhase::Available)
        || conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn ap_ready() -> impl Condition<AccessPoint> {
    |ap: Option<&AccessPoint>| {
        ap.and_then(|ap| ap.status.as_ref())
            .is_some_and(|s| is_ready(s.phase, &s.conditions))
    }
}

fn fs_ready() -> impl Condition<FileSystem> {
    |fs: Option<&FileSystem>| {
        fs.and_then(|fs| fs.status.as_ref())
            .is_some_and(|s| is_ready(s.phase, &s.conditions) && s.endpoint.is_some())
    }
}

fn quota_of(ap: &AccessPoint) -> Option<i64> {
    // The driver writes plain byte counts; a user's "10Gi" is not ours to
    // compare, so it reads as "no known size".
    ap.spec
        .quota
        .as_ref()
        .and_then(|q| q.max_bytes.0.parse().ok())
}

fn deletion_policy(params: &Parameters) -> RootDirectoryDeletionPolicy {
    if params.delete_access_point_root_dir {
        RootDirectoryDeletionPolicy::Delete
    } else {
        RootDirectoryDeletionPolicy::Retain
    }
}

fn labels(fs_name: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(
        names::LABEL_MANAGED_BY.to_owned(),
        names::MANAGED_BY.to_owned(),
    )]);
    if let Some(value) = names::filesystem_label_value(fs_name) {
        labels.insert(names::LABEL_FILESYSTEM.to_owned(), value.to_owned());
    }
    labels
}

fn created_by_driver(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(VOLUME_NAME_ANNOTATION))
}

impl ControllerService {
    pub(super) async fn create(
        &self,
        req: csi::CreateVolumeRequest,
    ) -> Result<csi::Volume, ControllerError> {
        if req.name.is_empty() {
            return Err(ControllerError::MissingField("name"));
        }
        check_capabilities(&req.volume_capabilities)?;
        if req.volume_content_source.is_some() {
            return Err(ControllerError::Unsupported(
                "volume_content_source (cloning, snapshots)",
            ));
        }
        let (params, mut claim) = Parameters::parse(&req.parameters)?;
        // external-provisioner names the PV after the CSI volume name, so
        // ${.PV.name} is known even without --extra-create-metadata.
        claim.pv_name.get_or_insert_with(|| req.name.clone());
        let range = req.capacity_range.unwrap_or_default();
        let quota = plan::quota_bytes(range.required_bytes, range.limit_bytes)?;
        let namespace = params
            .file_system_namespace
            .clone()
            .or_else(|| claim.pvc_namespace.clone())
            .ok_or(ControllerError::NoNamespace)?;
        let object = plan::object_name(&req.name, params.reuse_access_point, &claim)?;
        let key = format!("{namespace}/{object}");
        let _guard = self
            .in_flight
            .try_start(&key)
            .ok_or_else(|| ControllerError::Busy(req.name.clone()))?;
        match params.provisioning_mode {
            ProvisioningMode::AccessPoint => {
                self.create_access_point(&req.name, &namespace, &object, &params, &claim, quota)
                    .await
            }
            ProvisioningMode::FileSystem => {
                self.create_file_system(&req.name, &namespace, &object, &params, quota)
                    .await
            }
        }
    }

    async fn get_ready_fs(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(FileSystem, String), ControllerError> {
        let api: Api<FileSystem> = Api::namespaced(self.client.clone(), namespace);
        let fs = api
            .get_opt(name)
            .await
            .map_err(ControllerError::kube(format!(
                "get FileSystem {namespace}/{name}"
            )))?
            .ok_or_else(|| ControllerError::FileSystemNotFound {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })?;
        let endpoint = fs
            .status
            .as_ref()
            .and_then(|s| s.endpoint.clone())
            .ok_or_else(|| ControllerError::FileSystemNotReady {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })?;
        Ok((fs, endpoint))
    }

    async fn create_access_point(
        &self,
        volume_name: &str,
        namespace: &str,
        ap_name: &str,
        params: &Parameters,
        claim: &ClaimMetadata,
        quota: Option<i64>,
    ) -> Result<csi::Volume, ControllerError> {
        // Validated in Parameters::parse for this mode.
        let fs_name = params
            .file_system_name
            .as_deref()
            .ok_or(ControllerError::MissingField("parameters.fileSystemName"))?;
        let sub_path = plan::expand_sub_path(&params.sub_path_pattern, claim)?;
        let suffix = params
            .ensure_unique_directory
            .then(|| plan::short_hash(volume_name));
        let path = plan::root_directory(&params.base_path, &sub_path, suffix.as_deref());
        let (fs, endpoint) = self.get_ready_fs(namespace, fs_name).await?;
        let aps: Api<AccessPoint> = Api::namespaced(self.client.clone(), namespace);
        let object = format!("AccessPoint {namespace}/{ap_name}");

        let existing = aps
            .get_opt(ap_name)
            .await
            .map_err(ControllerError::kube(format!("get {object}")))?;
        if let Some(ap) = &existing {
            if ap.meta().deletion_timestamp.is_some() {
                return Err(ControllerError::Deleting(object));
            }
            let incompatible = |what| ControllerError::Incompatible {
                name: volume_name.to_owned(),
                object: object.clone(),
                what,
            };
            if ap.spec.file_system_ref.name != fs_name {
                return Err(incompatible("FileSystem"));
            }
            if ap.spec.root_directory.deletion_policy != deletion_policy(params) {
                return Err(incompatible("deleteAccessPointRootDir"));
            }
            if quota_of(ap) != quota {
                return Err(incompatible("capacity"));
            }
            if !params.reuse_access_point && ap.spec.root_directory.path != path {
                return Err(incompatible("directory"));
            }
        } else {
            let uid_gid = |gid: u32| (params.uid.unwrap_or(gid), gid);
            let build = |gid: u32| {
                let (uid, gid) = uid_gid(gid);
                let mut ap = AccessPoint::new(
                    ap_name,
                    AccessPointSpec {
                        file_system_ref: FileSystemRef {
                            name: fs_name.to_owned(),
                        },
                        posix_user: Some(PosixUser {
                            uid,
                            gid,
                            secondary_gids: Vec::new(),
                        }),
                        root_directory: RootDirectory {
                            path: path.clone(),
                            creation_info: Some(CreationInfo {
                                owner_uid: uid,
                                owner_gid: gid,
                                permissions: params.directory_perms.clone(),
                            }),
                            deletion_policy: deletion_policy(params),
                        },
                        quota: quota.map(|bytes| Quota {
                            max_bytes: Quantity(bytes.to_string()),
                        }),
                    },
                );
                ap.metadata.labels = Some(labels(fs_name));
                ap.metadata.annotations = Some(BTreeMap::from([(
                    VOLUME_NAME_ANNOTATION.to_owned(),
                    volume_name.to_owned(),
                )]));
                ap
            };
            match params.gid {
                Some(gid) => self.apply_access_point(&aps, &build(gid)).await?,
                None => {
                    let lock = self.fs_lock(namespace, fs_name);
                    let _held = lock.lock().await;
                    self.allocate_and_apply(namespace, fs_name, ap_name, params, &aps, build)
                        .await?;
                }
            }
        }

        let ap = self
            .await_ready_or_delete(&aps, ap_name, ap_ready(), &object)
            .await?;

        let ap_id = ap
            .status
            .as_ref()
            .and_then(|s| s.access_point_id.clone())
            .map_or_else(
                || AccessPointId::of(&ap).map(|id| id.to_string()),
                |id| Ok(id.to_string()),
            )
            .map_err(|_| ControllerError::VolumeNotFound(object.clone()))?;
        let mut volume_context = self.fs_context(namespace, fs_name, &fs, &endpoint, params);
        // Mounted through nfsd's access point path, not the directory
        // itself: only then does nfsd enforce the access point's identity
        // and keep the mount inside its root.
        volume_context.insert(context::PATH.into(), format!("/ap/{ap_id}"));
        volume_context.insert(context::ACCESS_POINT_ID.into(), ap_id);
        Ok(csi::Volume {
            capacity_bytes: quota_of(&ap).unwrap_or(0),
            volume_id: VolumeHandle {
                namespace: namespace.to_owned(),
                file_system: fs_name.to_owned(),
                target: Target::AccessPoint(ap_name.to_owned()),
            }
            .to_string(),
            volume_context,
            ..Default::default()
        })
    }

    fn fs_context(
        &self,
        namespace: &str,
        fs_name: &str,
        fs: &FileSystem,
        endpoint: &str,
        params: &Parameters,
    ) -> HashMap<String, String> {
        let mut ctx = HashMap::from([
            (context::SERVER.to_owned(), endpoint.to_owned()),
            (
                context::FILE_SYSTEM.to_owned(),
                format!("{namespace}/{fs_name}"),
            ),
            (
                context::ENCRYPT_IN_TRANSIT.to_owned(),
                params.encrypt_in_transit.to_string(),
            ),
        ]);
        let fs_id = fs
            .status
            .as_ref()
            .and_then(|s| s.file_system_id.clone())
            .or_else(|| FileSystemId::of(fs).ok());
        if let Some(id) = fs_id {
            ctx.insert(context::FILE_SYSTEM_ID.to_owned(), id.to_string());
        }
        // The node's tls-proxy verifies the server against it. A file
        // system whose status has none yet is still mountable with the
        // node's own --tls-ca.
        let ca = fs.status.as_ref().and_then(|s| s.ca_bundle.clone());
        if let (true, Some(ca)) = (params.encrypt_in_transit, ca) {
            ctx.insert(context::CA_BUNDLE.to_owned(), ca);
        }
        ctx
    }

    async fn apply_access_point(
        &self,
        aps: &Api<AccessPoint>,
        ap: &AccessPoint,
    ) -> Result<(), ControllerError> {
        let name = ap.name_any();
        aps.patch(
            &name,
            &PatchParams::apply(names::FIELD_MANAGER).force(),
            &Patch::Apply(ap),
        )
        .await
        .map_err(ControllerError::kube(format!("apply AccessPoint {name}")))?;
        Ok(())
    }

    /// Pick the smallest free gid, apply the AccessPoint with it, and commit
    /// by rewriting an annotation of the FileSystem with the resourceVersion
    /// read before listing. A concurrent allocator that committed in between
    /// makes the commit fail with 409; the next round lists again, now
    /// seeing the other AccessPoint, and moves ours to a free gid.
    async fn allocate_and_apply(
        &self,
        namespace: &str,
        fs_name: &str,
        ap_name: &str,
        params: &Parameters,
        aps: &Api<AccessPoint>,
        build: impl Fn(u32) -> AccessPoint,
    ) -> Result<(), ControllerError> {
        let fss: Api<FileSystem> = Api::namespaced(self.client.clone(), namespace);
        for _ in 0..GID_ALLOCATION_ATTEMPTS {
            let fs = fss
                .get(fs_name)
                .await
                .map_err(ControllerError::kube(format!(
                    "get FileSystem {namespace}/{fs_name}"
                )))?;
            let version = fs.resource_version();
            let used: BTreeSet<u32> = aps
                .list(&ListParams::default())
                .await
                .map_err(ControllerError::kube(format!(
                    "list AccessPoints in {namespace}"
                )))?
                .into_iter()
                .filter(|ap| ap.spec.file_system_ref.name == fs_name && ap.name_any() != ap_name)
                .filter_map(|ap| ap.spec.posix_user.map(|u| u.gid))
                .collect();
            let gid = plan::pick_gid(params.gid_range_start, params.gid_range_end, &used)?;
            self.apply_access_point(aps, &build(gid)).await?;
            let commit = serde_json::json!({
                "metadata": {
                    "resourceVersion": version,
                    "annotations": { GID_ALLOCATION_ANNOTATION: format!("{ap_name}={gid}") },
                }
            });
            match fss
                .patch(fs_name, &PatchParams::default(), &Patch::Merge(&commit))
                .await
            {
                Ok(_) => {
                    tracing::info!(gid, access_point = ap_name, "gid allocated");
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    tracing::debug!(gid, "gid allocation raced with another; retrying");
                }
                Err(e) => {
                    return Err(ControllerError::Kube {
                        action: format!(
                            "commit gid allocation on FileSystem {namespace}/{fs_name}"
                        ),
                        source: e,
                    });
                }
            }
        }
        self.delete_created(aps, ap_name, &format!("AccessPoint {namespace}/{ap_name}"))
            .await?;
        Err(ControllerError::GidContention(format!(
            "AccessPoint {namespace}/{ap_name}"
        )))
    }

    /// Waits (bounded by the provision timeout) until `name` satisfies
    /// `ready`; on timeout deletes it again, so a failed CreateVolume leaves
    /// nothing behind.
    async fn await_ready_or_delete<K>(
        &self,
        api: &Api<K>,
        name: &str,
        ready: impl Condition<K>,
        object: &str,
    ) -> Result<K, ControllerError>
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        let waited = tokio::time::timeout(
            self.config.provision_timeout,
            await_condition(api.clone(), name, ready),
        )
        .await;
        match waited {
            Ok(Ok(Some(obj))) => Ok(obj),
            Ok(Ok(None)) => Err(ControllerError::VolumeNotFound(object.to_string())),
            Ok(Err(e)) => Err(ControllerError::WatchFailed(
                object.to_string(),
                e.to_string(),
            )),
            Err(_elapsed) => {
                self.delete_created(api, name, object).await?;
                Err(ControllerError::Timeout {
                    object: object.to_string(),
                    timeout: self.config.provision_timeout,
                })
            }
        }
    }

    async fn delete_created<K>(
        &self,
        api: &Api<K>,
        name: &str,
        object: &str,
    ) -> Result<(), ControllerError>
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(ControllerError::Kube {
                action: format!("delete {object}"),
                source: e,
            }),
        }
    }

    async fn create_file_system(
        &self,
        volume_name: &str,
        namespace: &str,
        fs_name: &str,
        params: &Parameters,
        quota: Option<i64>,
    ) -> Result<csi::Volume, ControllerError> {
        let fss: Api<FileSystem> = Api::namespaced(self.client.clone(), namespace);
        let object = format!("FileSystem {namespace}/{fs_name}");
        let existing = fss
            .get_opt(fs_name)
            .await
            .map_err(ControllerError::kube(format!("get {object}")))?;
        match &existing {
            Some(fs) if fs.meta().deletion_timestamp.is_some() => {
                return Err(ControllerError::Deleting(object));
            }
            Some(fs) if !created_by_driver(fs.meta()) => {
                return Err(ControllerError::Incompatible {
                    name: volume_name.to_owned(),
                    object,
                    what: "owner (it was not made by this driver)",
                });
            }
            Some(_) => {}
            None => {
                let mut spec = FileSystemSpec {
                    performance_mode: params.performance_mode.unwrap_or_default(),
                    throughput_mode: params.throughput_mode.unwrap_or_default(),
                    provisioned_throughput_mibps: params.provisioned_throughput_mibps,
                    encrypted: false,
                    kms_key: None,
                    backing_storage: Default::default(),
                    policy: Default::default(),
                    server: None,
                    deletion_policy: openefs_crds::DeletionPolicy::Delete,
                };
                spec.backing_storage.storage_class_name = params.backing_storage_class_name.clone();
                if let Some(bytes) = quota {
                    spec.backing_storage.initial_size = Quantity(bytes.to_string());
                }
                let mut fs = FileSystem::new(fs_name, spec);
                fs.metadata.labels = Some(BTreeMap::from([(
                    names::LABEL_MANAGED_BY.to_owned(),
                    names::MANAGED_BY.to_owned(),
                )]));
                fs.metadata.annotations = Some(BTreeMap::from([(
                    VOLUME_NAME_ANNOTATION.to_owned(),
                    volume_name.to_owned(),
                )]));
                fss.patch(
                    fs_name,
                    &PatchParams::apply(names::FIELD_MANAGER).force(),
                    &Patch::Apply(&fs),
                )
                .await
                .map_err(ControllerError::kube(format!("apply {object}")))?;
            }
        }
        let fs = self
            .await_ready_or_delete(&fss, fs_name, fs_ready(), &object)
            .await?;
        let endpoint = fs
            .status
            .as_ref()
            .and_then(|s| s.endpoint.clone())
            .unwrap_or_default();
        let mut volume_context = self.fs_context(namespace, fs_name, &fs, &endpoint, params);
        volume_context.insert(context::PATH.into(), "/".into());
        Ok(csi::Volume {
            capacity_bytes: quota.unwrap_or(0),
            volume_id: VolumeHandle {
                namespace: namespace.to_owned(),
                file_system: fs_name.to_owned(),
                target: Target::Root,
            }
            .to_string(),
            volume_context,
            ..Default::default()
        })
    }

    pub(super) async fn delete(&self, volume_id: &str) -> Result<(), ControllerError> {
        if volume_id.is_empty() {
            return Err(ControllerError::MissingField("volume_id"));
        }
        // The CSI spec: deleting a volume that does not exist succeeds, and a
        // malformed id names no volume of ours.
        let handle: VolumeHandle = match volume_id.parse() {
            Ok(h) => h,
            Err(e) => {
                tracing::info!(error = %e, "not an openefs volume handle; nothing to delete");
                return Ok(());
            }
        };
        let (key, deleted) = match &handle.target {
            Target::AccessPoint(ap) => (format!("{}/{ap}", handle.namespace), ap.as_str()),
            Target::Root => (
                format!("{}/{}", handle.namespace, handle.file_system),
                handle.file_system.as_str(),
            ),
            Target::SubPath(_) => {
                tracing::info!("sub-path volume: nothing of the driver's to delete");
                return Ok(());
            }
        };
        let _guard = self
            .in_flight
            .try_start(&key)
            .ok_or_else(|| ControllerError::Busy(volume_id.to_owned()))?;
        match &handle.target {
            Target::AccessPoint(_) => {
                let api: Api<AccessPoint> = Api::namespaced(self.client.clone(), &handle.namespace);
                self.delete_if_ours(&api, deleted, &format!("AccessPoint {key}"))
                    .await
            }
            _ => {
                let api: Api<FileSystem> = Api::namespaced(self.client.clone(), &handle.namespace);
                self.delete_if_ours(&api, deleted, &format!("FileSystem {key}"))
                    .await
            }
        }
    }

    async fn delete_if_ours<K>(
        &self,
        api: &Api<K>,
        name: &str,
        object: &str,
    ) -> Result<(), ControllerError>
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match api
            .get_opt(name)
            .await
            .map_err(ControllerError::kube(format!("get {object}")))?
        {
            None => Ok(()),
            Some(obj) if created_by_driver(obj.meta()) => {
                self.delete_created(api, name, object).await
            }
            Some(_) => {
                tracing::info!(
                    object,
                    "not made by this driver (static volume); left in place"
                );
                Ok(())
            }
        }
    }

    pub(super) async fn check_exists(&self, volume_id: &str) -> Result<(), ControllerError> {
        let handle: VolumeHandle = volume_id.parse()?;
        let found = match &handle.target {
            Target::AccessPoint(ap) => {
                Api::<AccessPoint>::namespaced(self.client.clone(), &handle.namespace)
                    .get_opt(ap)
                    .await
                    .map_err(ControllerError::kube(format!(
                        "get AccessPoint {}/{ap}",
                        handle.namespace
                    )))?
                    .is_some()
            }
            Target::Root | Target::SubPath(_) => {
                Api::<FileSystem>::namespaced(self.client.clone(), &handle.namespace)
                    .get_opt(&handle.file_system)
                    .await
                    .map_err(ControllerError::kube(format!(
                        "get FileSystem {}/{}",
                        handle.namespace, handle.file_system
                    )))?
                    .is_some()
            }
        };
        if found {
            Ok(())
        } else {
            Err(ControllerError::VolumeNotFound(volume_id.to_owned()))
        }
    }

    pub(super) async fn expand(
        &self,
        volume_id: &str,
        range: Option<&csi::CapacityRange>,
    ) -> Result<i64, ControllerError> {
        if volume_id.is_empty() {
            return Err(ControllerError::MissingField("volume_id"));
        }
        let range = range.ok_or(ControllerError::MissingField("capacity_range"))?;
        let wanted = plan::quota_bytes(range.required_bytes, range.limit_bytes)?.ok_or(
            ControllerError::MissingField("capacity_range.required_bytes"),
        )?;
        let handle: VolumeHandle = volume_id.parse()?;
        let Target::AccessPoint(ap_name) = &handle.target else {
            // Whole file systems and sub-paths have no quota: any size fits.
            self.check_exists(volume_id).await?;
            return Ok(wanted);
        };
        let key = format!("{}/{ap_name}", handle.namespace);
        let _guard = self
            .in_flight
            .try_start(&key)
            .ok_or_else(|| ControllerError::Busy(volume_id.to_owned()))?;
        let aps: Api<AccessPoint> = Api::namespaced(self.client.clone(), &handle.namespace);
        let ap = aps
            .get_opt(ap_name)
            .await
            .map_err(ControllerError::kube(format!("get AccessPoint {key}")))?
            .ok_or_else(|| ControllerError::VolumeNotFound(volume_id.to_owned()))?;
        if ap.spec.quota.is_none() {
            return Ok(wanted);
        }
        if quota_of(&ap).is_some_and(|current| current >= wanted) {
            return Ok(quota_of(&ap).unwrap_or(wanted));
        }
        // A merge patch of the one field: an apply would have to restate
        // every field this manager owns.
        let patch = serde_json::json!({ "spec": { "quota": { "maxBytes": wanted.to_string() } } });
        aps.patch(ap_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(ControllerError::kube(format!(
                "raise quota of AccessPoint {key}"
            )))?;
        Ok(wanted)
    }
}
