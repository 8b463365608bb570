//! The plugin over its real unix socket, driven by a tonic client generated
//! from the same CSI proto: every RPC answers, and bad requests get the codes
//! the CSI spec prescribes. The Kubernetes API behind the controller is
//! unreachable here (port 1 on loopback), so every request that passes
//! validation ends in UNAVAILABLE and Probe reports not ready; the
//! provisioning paths run against a real API server in
//! e2e/tests/csi_controller.rs. The node service reads the real mount table
//! but mounts nothing here (this kernel has no NFS client); its mounts run
//! with the real kernel client in e2e/tests/csi_node.rs.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::Result;
use hyper_util::rt::TokioIo;
use kube::{Api, Client, Config, api::ListParams};
use openefs_crds::AccessPoint;
use openefs_csi::{
    controller::{ControllerConfig, ControllerService},
    csi::{
        self, CapacityRange, VolumeCapability,
        controller_client::ControllerClient,
        identity_client::IdentityClient,
        node_client::NodeClient,
        volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode},
    },
    identity::{IdentityService, ReadinessCheck},
    node::{NodeConfig, NodeService, mounter::KernelMounter},
    server,
};
use tokio::{net::UnixStream, sync::oneshot, task::JoinHandle};
use tonic::{Code, transport::Channel};

struct Plugin {
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), server::ServeError>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Result<Plugin> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("csi.sock");
    // A stale file where the socket goes, as a crashed plugin leaves it.
    std::fs::write(&path, b"stale")?;
    let listener = server::bind(&path)?;
    let client = Client::try_from(Config::new("http://127.0.0.1:1".parse()?))?;
    let probe_client = client.clone();
    let check: ReadinessCheck = Arc::new(move || {
        let api: Api<AccessPoint> = Api::all(probe_client.clone());
        Box::pin(async move {
            api.list_metadata(&ListParams::default().limit(1))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    });
    let identity = IdentityService::new(true, check);
    let controller = ControllerService::new(
        client,
        ControllerConfig {
            provision_timeout: Duration::from_secs(2),
        },
    );
    let node = NodeService::new(
        NodeConfig {
            node_id: "node-1".into(),
            mount_timeout: Duration::from_secs(5),
            unmount_timeout: Duration::from_secs(5),
            stat_timeout: Duration::from_secs(5),
            tls: None,
        },
        Arc::new(KernelMounter),
    );
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server::serve(
        listener,
        identity,
        Some(controller),
        Some(node),
        async {
            let _ = stopped.await;
        },
    ));
    let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await?;
    Ok(Plugin {
        channel,
        stop: Some(stop),
        task,
        _dir: dir,
    })
}

fn mount_cap(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode { mode: mode.into() }),
    }
}

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn create(name: &str, parameters: HashMap<String, String>) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        name: name.into(),
        volume_capabilities: vec![mount_cap(Mode::MultiNodeMultiWriter)],
        parameters,
        ..Default::default()
    }
}

#[tokio::test]
async fn identity_over_the_socket() -> Result<()> {
    let plugin = start().await?;
    let mut id = IdentityClient::new(plugin.channel.clone());
    let info = id
        .get_plugin_info(csi::GetPluginInfoRequest {})
        .await?
        .into_inner();
    assert_eq!(info.name, "csi.openefs.io");
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
    let caps = id
        .get_plugin_capabilities(csi::GetPluginCapabilitiesRequest {})
        .await?
        .into_inner();
    assert!(caps.capabilities.iter().any(|c| matches!(
        &c.r#type,
        Some(csi::plugin_capability::Type::Service(s))
            if s.r#type == i32::from(csi::plugin_capability::service::Type::ControllerService)
    )));
    // The API server is unreachable: alive, but not ready.
    let probe = id.probe(csi::ProbeRequest {}).await?.into_inner();
    assert_eq!(probe.ready, Some(false));
    plugin.stop().await
}

impl Plugin {
    async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await??;
        Ok(())
    }
}

#[tokio::test]
async fn controller_codes_over_the_socket() -> Result<()> {
    let plugin = start().await?;
    let mut ctl = ControllerClient::new(plugin.channel.clone());

    let caps = ctl
        .controller_get_capabilities(csi::ControllerGetCapabilitiesRequest {})
        .await?
        .into_inner();
    let rpc_types: Vec<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| c.r#type.as_ref())
        .map(|csi::controller_service_capability::Type::Rpc(r)| r.r#type)
        .collect();
    use csi::controller_service_capability::rpc::Type as T;
    assert!(rpc_types.contains(&T::CreateDeleteVolume.into()));
    assert!(rpc_types.contains(&T::ExpandVolume.into()));

    let ok = params(&[
        ("fileSystemName", "shared"),
        ("fileSystemNamespace", "storage"),
    ]);
    let code = |r: Result<tonic::Response<csi::CreateVolumeResponse>, tonic::Status>| match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    };
    let mut c = ctl.clone();
    let mut expect =
        async |req: csi::CreateVolumeRequest, want: Code, needle: &str| -> Result<()> {
            let r = c.create_volume(req).await;
            if let Err(s) = &r {
                assert!(
                    s.message().contains(needle),
                    "{:?} lacks {needle:?}",
                    s.message()
                );
            }
            assert_eq!(code(r), want, "{needle}");
            Ok(())
        };
    expect(create("", ok.clone()), Code::InvalidArgument, "name").await?;
    let mut no_caps = create("v", ok.clone());
    no_caps.volume_capabilities.clear();
    expect(no_caps, Code::InvalidArgument, "volume_capabilities").await?;
    let mut block = create("v", ok.clone());
    block.volume_capabilities[0].access_type = Some(AccessType::Block(BlockVolume {}));
    expect(block, Code::InvalidArgument, "block").await?;
    let mut unknown = ok.clone();
    unknown.insert("througputMode".into(), "elastic".into());
    expect(create("v", unknown), Code::InvalidArgument, "througputMode").await?;
    expect(
        create("v", params(&[])),
        Code::InvalidArgument,
        "fileSystemName",
    )
    .await?;
    let mut escape = ok.clone();
    escape.insert("subPathPattern".into(), "../${.PV.name}".into());
    escape.insert("csi.storage.k8s.io/pv/name".into(), "pvc-1".into());
    expect(create("v", escape), Code::InvalidArgument, "subPathPattern").await?;
    let mut too_small = create("v", ok.clone());
    too_small.capacity_range = Some(CapacityRange {
        required_bytes: 10,
        limit_bytes: 5,
    });
    expect(too_small, Code::OutOfRange, "capacity").await?;
    // Valid, but the API server is unreachable: transient.
    expect(
        create("v", ok.clone()),
        Code::Unavailable,
        "FileSystem storage/shared",
    )
    .await?;

    // DeleteVolume: a malformed or unknown id is a volume that does not exist.
    let err = ctl
        .delete_volume(csi::DeleteVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    ctl.delete_volume(csi::DeleteVolumeRequest {
        volume_id: "not a handle".into(),
        ..Default::default()
    })
    .await?;
    ctl.delete_volume(csi::DeleteVolumeRequest {
        volume_id: "storage/shared:some/dir".into(),
        ..Default::default()
    })
    .await?;

    // ValidateVolumeCapabilities.
    let validate =
        |volume_id: &str, caps: Vec<VolumeCapability>| csi::ValidateVolumeCapabilitiesRequest {
            volume_id: volume_id.into(),
            volume_capabilities: caps,
            ..Default::default()
        };
    let cap = mount_cap(Mode::MultiNodeMultiWriter);
    for (req, want) in [
        (validate("", vec![cap.clone()]), Code::InvalidArgument),
        (
            validate("storage/shared::ap", vec![]),
            Code::InvalidArgument,
        ),
        (validate("bad handle", vec![cap.clone()]), Code::NotFound),
        (
            validate("storage/shared::ap", vec![cap.clone()]),
            Code::Unavailable,
        ),
    ] {
        let err = ctl.validate_volume_capabilities(req).await.unwrap_err();
        assert_eq!(err.code(), want, "{}", err.message());
    }

    // ControllerExpandVolume.
    let expand =
        |volume_id: &str, range: Option<CapacityRange>| csi::ControllerExpandVolumeRequest {
            volume_id: volume_id.into(),
            capacity_range: range,
            ..Default::default()
        };
    let gib = Some(CapacityRange {
        required_bytes: 1 << 30,
        limit_bytes: 0,
    });
    for (req, want) in [
        (expand("", gib), Code::InvalidArgument),
        (expand("storage/shared::ap", None), Code::InvalidArgument),
        (expand("bad handle", gib), Code::NotFound),
        (expand("storage/shared::ap", gib), Code::Unavailable),
    ] {
        let err = ctl.controller_expand_volume(req).await.unwrap_err();
        assert_eq!(err.code(), want, "{}", err.message());
    }

    // Everything else: UNIMPLEMENTED.
    let unimplemented = [
        ctl.controller_publish_volume(csi::ControllerPublishVolumeRequest::default())
            .await
            .err(),
        ctl.controller_unpublish_volume(csi::ControllerUnpublishVolumeRequest::default())
            .await
            .err(),
        ctl.list_volumes(csi::ListVolumesRequest::default())
            .await
            .err(),
        ctl.get_capacity(csi::GetCapacityRequest::default())
            .await
            .err(),
        ctl.create_snapshot(csi::CreateSnapshotRequest::default())
            .await
            .err(),
        ctl.delete_snapshot(csi::DeleteSnapshotRequest::default())
            .await
            .err(),
        ctl.list_snapshots(csi::ListSnapshotsRequest::default())
            .await
            .err(),
        ctl.controller_get_volume(csi::ControllerGetVolumeRequest::default())
            .await
            .err(),
        ctl.controller_modify_volume(csi::ControllerModifyVolumeRequest::default())
            .await
            .err(),
    ];
    for (i, status) in unimplemented.into_iter().enumerate() {
        assert_eq!(
            status.map(|s| s.code()),
            Some(Code::Unimplemented),
            "rpc #{i}"
        );
    }
    plugin.stop().await
}

fn node_cap(mode: Mode, mount_flags: &[&str]) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            mount_flags: mount_flags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode { mode: mode.into() }),
    }
}

#[tokio::test]
async fn node_codes_over_the_socket() -> Result<()> {
    let plugin = start().await?;
    let mut node = NodeClient::new(plugin.channel.clone());
    let dir = tempfile::tempdir()?;
    let path = |p: &str| dir.path().join(p).to_string_lossy().into_owned();

    let info = node
        .node_get_info(csi::NodeGetInfoRequest {})
        .await?
        .into_inner();
    assert_eq!(info.node_id, "node-1");
    let caps = node
        .node_get_capabilities(csi::NodeGetCapabilitiesRequest {})
        .await?
        .into_inner();
    let rpcs: Vec<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| c.r#type.as_ref())
        .map(|csi::node_service_capability::Type::Rpc(r)| r.r#type)
        .collect();
    use csi::node_service_capability::rpc::Type as N;
    for want in [
        N::StageUnstageVolume,
        N::GetVolumeStats,
        N::VolumeCondition,
        N::SingleNodeMultiWriter,
    ] {
        assert!(rpcs.contains(&want.into()), "{want:?} missing");
    }
    assert!(!rpcs.contains(&N::ExpandVolume.into()));

    let stage = || csi::NodeStageVolumeRequest {
        volume_id: "storage/shared::pvc-1".into(),
        staging_target_path: path("staging"),
        volume_capability: Some(node_cap(Mode::MultiNodeMultiWriter, &[])),
        volume_context: params(&[
            ("server", "127.0.0.1"),
            ("path", "/pvc-1"),
            ("encryptInTransit", "false"),
        ]),
        ..Default::default()
    };
    let mut cases: Vec<(csi::NodeStageVolumeRequest, Code, &str)> = Vec::new();
    let mut r = stage();
    r.volume_id.clear();
    cases.push((r, Code::InvalidArgument, "volume_id"));
    let mut r = stage();
    r.staging_target_path.clear();
    cases.push((r, Code::InvalidArgument, "staging_target_path"));
    let mut r = stage();
    r.volume_capability = None;
    cases.push((r, Code::InvalidArgument, "volume_capability"));
    let mut r = stage();
    r.volume_capability = Some(VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        ..node_cap(Mode::MultiNodeMultiWriter, &[])
    });
    cases.push((r, Code::InvalidArgument, "block"));
    let mut r = stage();
    r.volume_id = "not a handle".into();
    cases.push((r, Code::NotFound, "not a handle"));
    let mut r = stage();
    r.volume_context.remove("server");
    cases.push((r, Code::InvalidArgument, "server"));
    let mut r = stage();
    r.volume_context
        .insert("server".into(), "bad server".into());
    cases.push((r, Code::InvalidArgument, "bad server"));
    let mut r = stage();
    r.volume_context.remove("path");
    cases.push((r, Code::InvalidArgument, "path"));
    let mut r = stage();
    r.volume_context
        .insert("encryptInTransit".into(), "true".into());
    cases.push((r, Code::FailedPrecondition, "encryptInTransit"));
    let mut r = stage();
    r.volume_capability = Some(node_cap(Mode::MultiNodeMultiWriter, &["hard", "_netdev"]));
    cases.push((r, Code::InvalidArgument, "_netdev"));
    let mut r = stage();
    r.volume_capability = Some(node_cap(
        Mode::MultiNodeMultiWriter,
        &["clientaddr=1.2.3.4"],
    ));
    cases.push((r, Code::InvalidArgument, "clientaddr"));
    for (req, want, needle) in cases {
        let err = node.node_stage_volume(req).await.unwrap_err();
        assert_eq!(err.code(), want, "{needle}: {}", err.message());
        assert!(
            err.message().contains(needle),
            "{:?} lacks {needle:?}",
            err.message()
        );
    }

    let publish = || csi::NodePublishVolumeRequest {
        volume_id: "storage/shared::pvc-1".into(),
        staging_target_path: path("staging"),
        target_path: path("pod/mount"),
        volume_capability: Some(node_cap(Mode::MultiNodeMultiWriter, &[])),
        volume_context: stage().volume_context,
        ..Default::default()
    };
    let mut no_target = publish();
    no_target.target_path.clear();
    let mut no_staging = publish();
    no_staging.staging_target_path.clear();
    let mut bad_option = publish();
    bad_option.volume_capability = Some(node_cap(Mode::MultiNodeMultiWriter, &["port=1"]));
    for (req, want) in [
        (no_target, Code::InvalidArgument),
        (no_staging, Code::InvalidArgument),
        (bad_option, Code::InvalidArgument),
        // Nothing is mounted at the staging path.
        (publish(), Code::FailedPrecondition),
    ] {
        let err = node.node_publish_volume(req).await.unwrap_err();
        assert_eq!(err.code(), want, "{}", err.message());
    }

    // Unpublish and unstage of what is not mounted: done already.
    std::fs::create_dir_all(path("pod/mount"))?;
    for _ in 0..2 {
        node.node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: "storage/shared::pvc-1".into(),
            target_path: path("pod/mount"),
        })
        .await?;
        assert!(
            !dir.path().join("pod/mount").exists(),
            "target path left behind"
        );
        node.node_unstage_volume(csi::NodeUnstageVolumeRequest {
            volume_id: "storage/shared::pvc-1".into(),
            staging_target_path: path("staging"),
        })
        .await?;
    }
    let err = node
        .node_unpublish_volume(csi::NodeUnpublishVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = node
        .node_unstage_volume(csi::NodeUnstageVolumeRequest {
            volume_id: "v".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let stats = |volume_path: String| csi::NodeGetVolumeStatsRequest {
        volume_id: "storage/shared::pvc-1".into(),
        volume_path,
        staging_target_path: String::new(),
    };
    for (req, want) in [
        (stats(String::new()), Code::InvalidArgument),
        (stats(path("missing")), Code::NotFound),
        // A directory, but no volume mounted on it.
        (
            stats(dir.path().to_string_lossy().into_owned()),
            Code::NotFound,
        ),
    ] {
        let err = node.node_get_volume_stats(req).await.unwrap_err();
        assert_eq!(err.code(), want, "{}", err.message());
    }
    let err = node
        .node_expand_volume(csi::NodeExpandVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    plugin.stop().await
}
