//! `openefs-csi controller` as a process against the real Kubernetes API
//! server (apiextensions-apiserver, see docs/testing.md), driven over its unix
//! socket with a client generated from the CSI proto. The test plays the
//! operator: it marks AccessPoints Available, except those named `slow-*`.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use hyper_util::rt::TokioIo;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use openefs_crds::{
    AccessPoint, AccessPointId, FileSystem, FileSystemSpec, RootDirectoryDeletionPolicy,
};
use openefs_csi::csi::{
    self, CapacityRange, VolumeCapability,
    controller_client::ControllerClient,
    identity_client::IdentityClient,
    volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode},
};
use openefs_e2e::apiserver::{ApiServer, namespace};
use openefs_e2e::binaries::workspace_binary;
use tokio::net::UnixStream;
use tonic::{Code, transport::Channel};

/// What the operator publishes in the FileSystem status (any text will do:
/// the controller copies it, the node checks it).
const CA_BUNDLE: &str = "-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n";
const GIB: i64 = 1 << 30;
const FS: &str = "shared";

/// One controller process; killed (by its PID) when dropped.
struct Controller {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Controller {
    fn start(server: &ApiServer, provision_timeout: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("csi.sock");
        let child = Command::new(workspace_binary("openefs-csi", "openefs-csi")?)
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--log",
                "openefs_csi=debug,info",
                "controller",
                "--kubeconfig",
            ])
            .arg(server.kubeconfig_path())
            .args(["--provision-timeout", provision_timeout])
            .stdin(Stdio::null())
            .spawn()
            .context("starting openefs-csi controller")?;
        Ok(Self {
            child,
            socket,
            _dir: dir,
        })
    }

    /// A channel to the socket, once the process serves it and Probe says
    /// ready.
    async fn connect(&mut self) -> Result<Channel> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("openefs-csi controller exited: {status}");
            }
            if let Ok(channel) = channel(&self.socket).await {
                let probe = IdentityClient::new(channel.clone())
                    .probe(csi::ProbeRequest {})
                    .await;
                if probe.is_ok_and(|r| r.into_inner().ready == Some(true)) {
                    return Ok(channel);
                }
            }
            ensure!(Instant::now() < deadline, "controller not ready within 30s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn channel(socket: &Path) -> Result<Channel> {
    let socket = socket.to_owned();
    Ok(tonic::transport::Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await?)
}

/// A FileSystem named [`FS`] in `ns`, with the status the operator would
/// write once its server runs.
async fn file_system(client: &Client, ns: &str) -> Result<()> {
    let api: Api<FileSystem> = Api::namespaced(client.clone(), ns);
    let fs = FileSystem::new(
        FS,
        FileSystemSpec {
            performance_mode: Default::default(),
            throughput_mode: Default::default(),
            provisioned_throughput_mibps: None,
            encrypted: false,
            kms_key: None,
            backing_storage: Default::default(),
            policy: Default::default(),
            server: None,
            deletion_policy: Default::default(),
        },
    );
    api.patch(FS, &PatchParams::apply("e2e").force(), &Patch::Apply(&fs))
        .await?;
    let status = serde_json::json!({ "status": {
        "phase": "Available",
        "endpoint": format!("{FS}.{ns}.svc"),
        "caBundle": CA_BUNDLE,
    }});
    api.patch_status(FS, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// The test's operator: marks every AccessPoint in `ns` Available unless its
/// name starts with `slow-`. Polls; aborted when the test ends.
fn fake_operator(client: Client, ns: &str) -> tokio::task::JoinHandle<()> {
    let api: Api<AccessPoint> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        loop {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for ap in list {
                    let name = ap.name_any();
                    if ap.status.is_some() || name.starts_with("slow-") {
                        continue;
                    }
                    let Ok(id) = AccessPointId::of(&ap) else {
                        continue;
                    };
                    let status = serde_json::json!({ "status": {
                        "phase": "Available",
                        "accessPointId": id.as_str(),
                    }});
                    let _ = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

fn create_request(name: &str, ns: &str, bytes: i64) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: Some(AccessMode {
                mode: Mode::MultiNodeMultiWriter.into(),
            }),
        }],
        parameters: HashMap::from(
            [
                ("fileSystemName", FS),
                ("fileSystemNamespace", ns),
                ("gidRangeStart", "2000"),
                ("gidRangeEnd", "2999"),
                ("basePath", "/dynamic"),
                ("subPathPattern", "${.PVC.namespace}/${.PVC.name}"),
                ("csi.storage.k8s.io/pvc/namespace", "apps"),
                ("csi.storage.k8s.io/pvc/name", name),
                ("csi.storage.k8s.io/pv/name", name),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        ),
        ..Default::default()
    }
}

async fn access_points(client: &Client, ns: &str) -> Result<Vec<AccessPoint>> {
    Ok(Api::<AccessPoint>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items)
}

#[tokio::test]
async fn create_repeat_expand_validate_delete() -> Result<()> {
    let server = ApiServer::shared_with_openefs_crds()?;
    let client = server.client().await?;
    let ns = namespace("csi_create_repeat_expand_validate_delete");
    file_system(&client, &ns).await?;
    let operator = fake_operator(client.clone(), &ns);
    let mut controller = Controller::start(server, "20s")?;
    let mut ctl = ControllerClient::new(controller.connect().await?);

    let volume = ctl
        .create_volume(create_request("pvc-one", &ns, GIB))
        .await?
        .into_inner()
        .volume
        .context("no volume")?;
    assert_eq!(volume.volume_id, format!("{ns}/{FS}::pvc-one"));
    assert_eq!(volume.capacity_bytes, GIB);
    let ctx = &volume.volume_context;
    assert_eq!(ctx["server"], format!("{FS}.{ns}.svc"));
    assert_eq!(ctx["fileSystem"], format!("{ns}/{FS}"));
    assert_eq!(ctx["encryptInTransit"], "true");
    assert_eq!(
        ctx["caBundle"], CA_BUNDLE,
        "the CA the node's proxy verifies with"
    );
    let aps = access_points(&client, &ns).await?;
    assert_eq!(aps.len(), 1);
    let ap = &aps[0];
    assert_eq!(ctx["accessPointId"], AccessPointId::of(ap)?.as_str());
    // Mounted through nfsd's access point, which enforces its identity.
    assert_eq!(ctx["path"], format!("/ap/{}", ctx["accessPointId"]));
    let user = ap.spec.posix_user.as_ref().context("no posixUser")?;
    assert_eq!((user.uid, user.gid), (2000, 2000));
    assert!(
        ap.spec
            .root_directory
            .path
            .starts_with("/dynamic/apps/pvc-one-"),
        "{}",
        ap.spec.root_directory.path
    );
    let creation = ap
        .spec
        .root_directory
        .creation_info
        .as_ref()
        .context("no creationInfo")?;
    assert_eq!(
        (
            creation.owner_uid,
            creation.owner_gid,
            creation.permissions.mode()
        ),
        (2000, 2000, 0o770)
    );
    assert_eq!(
        ap.spec.quota.as_ref().map(|q| q.max_bytes.0.as_str()),
        Some("1073741824")
    );
    assert_eq!(
        ap.managed_fields()
            .iter()
            .filter(|f| f.manager.as_deref() == Some("openefs"))
            .count(),
        1
    );

    // Repeated: the same volume, still one AccessPoint.
    let again = ctl
        .create_volume(create_request("pvc-one", &ns, GIB))
        .await?
        .into_inner()
        .volume;
    assert_eq!(again.as_ref(), Some(&volume));
    assert_eq!(access_points(&client, &ns).await?.len(), 1);
    // Same name, other size: ALREADY_EXISTS.
    let other = ctl
        .create_volume(create_request("pvc-one", &ns, 2 * GIB))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists, "{}", other.message());

    // deleteAccessPointRootDir=true: the root directory goes with the
    // AccessPoint; a volume of the same name without it is another volume.
    let deleting = |name: &str| {
        let mut r = create_request(name, &ns, GIB);
        r.parameters
            .insert("deleteAccessPointRootDir".into(), "true".into());
        r
    };
    let other = ctl.create_volume(deleting("pvc-one")).await.unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists, "{}", other.message());
    let two = ctl
        .create_volume(deleting("pvc-two"))
        .await?
        .into_inner()
        .volume
        .context("no volume")?;
    let policies: Vec<_> = access_points(&client, &ns)
        .await?
        .iter()
        .map(|ap| (ap.name_any(), ap.spec.root_directory.deletion_policy))
        .collect();
    assert_eq!(
        policies,
        [
            ("pvc-one".to_owned(), RootDirectoryDeletionPolicy::Retain),
            ("pvc-two".to_owned(), RootDirectoryDeletionPolicy::Delete)
        ]
    );
    ctl.delete_volume(csi::DeleteVolumeRequest {
        volume_id: two.volume_id,
        ..Default::default()
    })
    .await?;

    // Validate.
    let validated = ctl
        .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
            volume_id: volume.volume_id.clone(),
            volume_capabilities: create_request("x", &ns, 0).volume_capabilities,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(validated.confirmed.is_some(), "{}", validated.message);
    let missing = ctl
        .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
            volume_id: format!("{ns}/{FS}::nope"),
            volume_capabilities: create_request("x", &ns, 0).volume_capabilities,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Expand raises the quota; a smaller size leaves it.
    let expand = |bytes| csi::ControllerExpandVolumeRequest {
        volume_id: volume.volume_id.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        ..Default::default()
    };
    assert_eq!(
        ctl.controller_expand_volume(expand(3 * GIB))
            .await?
            .into_inner()
            .capacity_bytes,
        3 * GIB
    );
    assert_eq!(
        ctl.controller_expand_volume(expand(GIB))
            .await?
            .into_inner()
            .capacity_bytes,
        3 * GIB
    );
    let ap = Api::<AccessPoint>::namespaced(client.clone(), &ns)
        .get("pvc-one")
        .await?;
    assert_eq!(
        ap.spec.quota.map(|q| q.max_bytes.0),
        Some((3 * GIB).to_string())
    );

    // Delete, twice.
    for _ in 0..2 {
        ctl.delete_volume(csi::DeleteVolumeRequest {
            volume_id: volume.volume_id.clone(),
            ..Default::default()
        })
        .await?;
    }
    assert!(access_points(&client, &ns).await?.is_empty());
    operator.abort();
    Ok(())
}

#[tokio::test]
async fn concurrent_creates_make_one_access_point_and_unique_gids() -> Result<()> {
    let server = ApiServer::shared_with_openefs_crds()?;
    let client = server.client().await?;
    let ns = namespace("csi_concurrent_creates");
    file_system(&client, &ns).await?;
    let operator = fake_operator(client.clone(), &ns);
    // Two replicas, as a Deployment with a leader-less rollout can have.
    let mut replicas = [
        Controller::start(server, "30s")?,
        Controller::start(server, "30s")?,
    ];
    let mut clients = Vec::new();
    for replica in &mut replicas {
        clients.push(ControllerClient::new(replica.connect().await?));
    }

    // One name, four concurrent calls on one replica: each succeeds or is
    // told another is in flight, and there is one AccessPoint.
    let same = futures::future::join_all((0..4).map(|_| {
        let mut c = clients[0].clone();
        let req = create_request("pvc-same", &ns, GIB);
        async move { c.create_volume(req).await }
    }))
    .await;
    let mut ok = Vec::new();
    for r in same {
        match r {
            Ok(v) => ok.push(v.into_inner().volume),
            Err(s) => assert_eq!(s.code(), Code::Aborted, "{}", s.message()),
        }
    }
    ensure!(!ok.is_empty(), "no concurrent CreateVolume succeeded");
    assert!(ok.windows(2).all(|w| w[0] == w[1]));
    let again = clients[1]
        .create_volume(create_request("pvc-same", &ns, GIB))
        .await?
        .into_inner()
        .volume;
    assert_eq!(again, ok[0]);
    assert_eq!(access_points(&client, &ns).await?.len(), 1);

    // Different names, spread over both replicas at once: unique gids.
    let names: Vec<String> = (0..8).map(|i| format!("pvc-{i}")).collect();
    let results = futures::future::join_all(names.iter().enumerate().map(|(i, name)| {
        let mut c = clients[i % 2].clone();
        let req = create_request(name, &ns, GIB);
        async move { c.create_volume(req).await }
    }))
    .await;
    for (name, r) in names.iter().zip(results) {
        r.map_err(|s| anyhow!("{name}: {:?} {}", s.code(), s.message()))?;
    }
    let aps = access_points(&client, &ns).await?;
    assert_eq!(aps.len(), 9);
    let gids: BTreeSet<u32> = aps
        .iter()
        .filter_map(|ap| ap.spec.posix_user.as_ref().map(|u| u.gid))
        .collect();
    assert_eq!(gids.len(), 9, "duplicate gids: {aps:#?}");
    assert!(gids.iter().all(|g| (2000..=2999).contains(g)));
    operator.abort();
    Ok(())
}

#[tokio::test]
async fn timeout_answers_deadline_exceeded_and_leaves_nothing() -> Result<()> {
    let server = ApiServer::shared_with_openefs_crds()?;
    let client = server.client().await?;
    let ns = namespace("csi_timeout");
    file_system(&client, &ns).await?;
    let operator = fake_operator(client.clone(), &ns);
    let mut controller = Controller::start(server, "3s")?;
    let mut ctl = ControllerClient::new(controller.connect().await?);

    let started = Instant::now();
    let err = ctl
        .create_volume(create_request("slow-1", &ns, GIB))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        access_points(&client, &ns).await?.is_empty(),
        "AccessPoint left behind"
    );

    // A FileSystem that does not exist.
    let mut req = create_request("pvc-x", &ns, GIB);
    req.parameters
        .insert("fileSystemName".into(), "missing".into());
    let err = ctl.create_volume(req).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    assert!(access_points(&client, &ns).await?.is_empty());
    operator.abort();
    Ok(())
}
