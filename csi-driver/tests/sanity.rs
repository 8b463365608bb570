//! The plugin over its real unix socket, driven by a tonic client generated
//! from the same CSI proto: every RPC answers, and bad requests get the codes
//! the CSI spec prescribes. The Kubernetes API behind the controller is
//! unreachable here (port 1 on loopback), so every request that passes
//! validation ends in UNAVAILABLE and Probe reports not ready; the
//! provisioning paths run against a real API server in
//! e2e/tests/csi_controller.rs.

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
        volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode},
    },
    identity::{IdentityService, ReadinessCheck},
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
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server::serve(listener, identity, Some(controller), async {
        let _ = stopped.await;
    }));
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
