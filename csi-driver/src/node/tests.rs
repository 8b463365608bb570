//! The node service's decisions against the fake mounter: idempotency,
//! refusals, repair of broken mounts, and timeouts of a hung "server".

use std::{path::Path, time::Duration};

use tonic::Code;

use super::{
    mounter::{
        Unmount,
        fake::{Call, FakeMounter},
    },
    *,
};
use crate::csi::volume_capability::{AccessMode, BlockVolume, MountVolume};

/// Timeouts of the service under test: short, since the hung-call tests
/// wait for them, yet long enough for a blocking-pool hop on a loaded
/// 2-core CI machine.
const SHORT: Duration = Duration::from_millis(1500);

fn service(fake: &FakeMounter) -> NodeService {
    NodeService::new(
        NodeConfig {
            node_id: "node-1".into(),
            mount_timeout: SHORT,
            unmount_timeout: SHORT,
            stat_timeout: SHORT,
            tls: None,
        },
        Arc::new(fake.clone()),
    )
}

fn cap(mode: Mode, mount_flags: &[&str]) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            mount_flags: mount_flags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode { mode: mode.into() }),
    }
}

fn plain_context() -> HashMap<String, String> {
    HashMap::from([
        ("server".to_owned(), "127.0.0.1".to_owned()),
        ("encryptInTransit".to_owned(), "false".to_owned()),
    ])
}

fn stage_req(staging: &Path) -> csi::NodeStageVolumeRequest {
    csi::NodeStageVolumeRequest {
        volume_id: "ns/fs:data".into(),
        staging_target_path: staging.to_string_lossy().into_owned(),
        volume_capability: Some(cap(Mode::MultiNodeMultiWriter, &[])),
        volume_context: plain_context(),
        ..Default::default()
    }
}

fn publish_req(staging: &Path, target: &Path, readonly: bool) -> csi::NodePublishVolumeRequest {
    csi::NodePublishVolumeRequest {
        volume_id: "ns/fs:data".into(),
        staging_target_path: staging.to_string_lossy().into_owned(),
        target_path: target.to_string_lossy().into_owned(),
        volume_capability: Some(cap(Mode::MultiNodeMultiWriter, &[])),
        readonly,
        volume_context: plain_context(),
        ..Default::default()
    }
}

fn unpublish_req(target: &Path) -> csi::NodeUnpublishVolumeRequest {
    csi::NodeUnpublishVolumeRequest {
        volume_id: "ns/fs:data".into(),
        target_path: target.to_string_lossy().into_owned(),
    }
}

fn unstage_req(staging: &Path) -> csi::NodeUnstageVolumeRequest {
    csi::NodeUnstageVolumeRequest {
        volume_id: "ns/fs:data".into(),
        staging_target_path: staging.to_string_lossy().into_owned(),
    }
}

fn code<T>(r: Result<T, NodeError>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(e) => Status::from(e).code(),
    }
}

fn mounts(fake: &FakeMounter) -> usize {
    fake.calls()
        .iter()
        .filter(|c| matches!(c, Call::Mount(..)))
        .count()
}

fn binds(fake: &FakeMounter) -> Vec<MsFlags> {
    fake.calls()
        .iter()
        .filter_map(|c| match c {
            Call::Bind(_, _, flags) => Some(*flags),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn stage_mounts_once_with_the_driver_options() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let fake = FakeMounter::default();
    let node = service(&fake);
    assert_eq!(node.stage(stage_req(&staging)).await.unwrap(), "mounted");
    assert!(staging.is_dir(), "the staging directory is made");
    let Call::Mount(source, target, data) = &fake.calls()[0] else {
        panic!("{:?}", fake.calls());
    };
    assert_eq!(
        (source.as_str(), target.as_path()),
        ("127.0.0.1:/data", staging.as_path())
    );
    assert!(
        data.starts_with(
            "vers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,"
        )
    );
    assert!(
        data.ends_with("addr=127.0.0.1,clientaddr=127.0.0.1"),
        "{data}"
    );
    assert_eq!(
        node.stage(stage_req(&staging)).await.unwrap(),
        "already staged"
    );
    assert_eq!(mounts(&fake), 1);
}

#[tokio::test]
async fn stage_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let fake = FakeMounter::default();
    let node = service(&fake);
    let with = |f: &dyn Fn(&mut csi::NodeStageVolumeRequest)| {
        let mut r = stage_req(&staging);
        f(&mut r);
        r
    };
    for (req, want, needle) in [
        (
            with(&|r| r.volume_id.clear()),
            Code::InvalidArgument,
            "volume_id",
        ),
        (
            with(&|r| r.staging_target_path.clear()),
            Code::InvalidArgument,
            "staging_target_path",
        ),
        (
            with(&|r| r.volume_capability = None),
            Code::InvalidArgument,
            "volume_capability",
        ),
        (
            with(&|r| {
                r.volume_capability = Some(VolumeCapability {
                    access_type: Some(AccessType::Block(BlockVolume {})),
                    ..cap(Mode::MultiNodeMultiWriter, &[])
                })
            }),
            Code::InvalidArgument,
            "block",
        ),
        (
            with(&|r| r.volume_id = "bad id".into()),
            Code::NotFound,
            "bad id",
        ),
        (
            with(&|r| r.volume_context.clear()),
            Code::InvalidArgument,
            "server",
        ),
        (
            with(&|r| {
                r.volume_context.remove("encryptInTransit");
            }),
            Code::FailedPrecondition,
            "encryption in transit",
        ),
        (
            with(&|r| {
                r.volume_capability = Some(cap(Mode::MultiNodeMultiWriter, &["addr=1.2.3.4"]))
            }),
            Code::InvalidArgument,
            "addr=1.2.3.4",
        ),
    ] {
        let err = node.stage(req).await.unwrap_err();
        assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        assert_eq!(Status::from(err).code(), want, "{needle}");
    }
    assert!(
        fake.calls().is_empty(),
        "nothing mounted: {:?}",
        fake.calls()
    );
}

#[tokio::test]
async fn stage_over_something_else_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let fake = FakeMounter::default();
    let node = service(&fake);
    fake.add(&staging, "tmpfs", "tmpfs");
    assert_eq!(
        code(node.stage(stage_req(&staging)).await),
        Code::AlreadyExists
    );
    fake.unmount(&staging, Unmount::Detach).unwrap();
    fake.add(&staging, "nfs4", "127.0.0.1:/other");
    assert_eq!(
        code(node.stage(stage_req(&staging)).await),
        Code::AlreadyExists
    );
    assert_eq!(mounts(&fake), 0);
}

#[tokio::test]
async fn broken_staging_mount_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let fake = FakeMounter::default();
    let node = service(&fake);
    node.stage(stage_req(&staging)).await.unwrap();
    fake.break_path(&staging, Errno::ESTALE as i32);
    assert_eq!(
        node.stage(stage_req(&staging)).await.unwrap(),
        "repaired a broken mount"
    );
    assert_eq!(mounts(&fake), 2);
    assert!(
        fake.calls()
            .contains(&Call::Unmount(staging.clone(), Unmount::Normal))
    );
    assert_eq!(mountinfo::mounts_at(&fake.table(), &staging).len(), 1);
}

#[tokio::test]
async fn hung_mount_times_out_and_keeps_the_path_busy() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let fake = FakeMounter::default();
    let node = service(&fake);
    let hung = fake.hang_until_dropped();
    let started = std::time::Instant::now();
    let err = node.stage(stage_req(&staging)).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the RPC waited for the kernel"
    );
    assert!(matches!(err, NodeError::Timeout { .. }), "{err}");
    assert_eq!(Status::from(err).code(), Code::DeadlineExceeded);
    // The mount is still running in the kernel: no second one on top.
    assert_eq!(code(node.stage(stage_req(&staging)).await), Code::Aborted);
    drop(hung);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match node.stage(stage_req(&staging)).await {
            Ok(outcome) => {
                assert_eq!(outcome, "already staged", "the late mount counts");
                break;
            }
            Err(NodeError::Busy(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(mounts(&fake), 1);
}

#[tokio::test]
async fn publish_binds_per_pod_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let (a, b, c) = (
        dir.path().join("pod-a/mount"),
        dir.path().join("pod-b/mount"),
        dir.path().join("pod-c/mount"),
    );
    let fake = FakeMounter::default();
    let node = service(&fake);
    assert_eq!(
        code(node.publish(publish_req(&staging, &a, false)).await),
        Code::FailedPrecondition,
        "not staged yet"
    );
    node.stage(stage_req(&staging)).await.unwrap();
    assert_eq!(
        node.publish(publish_req(&staging, &a, false))
            .await
            .unwrap(),
        "published"
    );
    assert!(a.is_dir(), "the target directory is made");
    assert_eq!(
        node.publish(publish_req(&staging, &a, false))
            .await
            .unwrap(),
        "already published"
    );
    assert_eq!(
        code(node.publish(publish_req(&staging, &a, true)).await),
        Code::AlreadyExists,
        "same target, other read-only-ness"
    );
    node.publish(publish_req(&staging, &b, true)).await.unwrap();
    let mut reader = publish_req(&staging, &c, false);
    reader.volume_capability = Some(cap(Mode::MultiNodeReaderOnly, &["noexec"]));
    node.publish(reader).await.unwrap();
    assert_eq!(
        binds(&fake),
        [
            MsFlags::empty(),
            MsFlags::MS_RDONLY,
            MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC
        ]
    );
    let table = fake.table();
    let staged = top_at(&table, &staging).unwrap();
    assert!(top_at(&table, &b).unwrap().read_only());
    assert!(top_at(&table, &a).unwrap().same_tree(staged));
}

#[tokio::test]
async fn publish_repairs_and_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let a = dir.path().join("a");
    let other = dir.path().join("other");
    let fake = FakeMounter::default();
    let node = service(&fake);
    node.stage(stage_req(&staging)).await.unwrap();
    fake.add(&other, "tmpfs", "tmpfs");
    assert_eq!(
        code(node.publish(publish_req(&staging, &other, false)).await),
        Code::AlreadyExists
    );
    node.publish(publish_req(&staging, &a, false))
        .await
        .unwrap();
    // The server's directory was replaced: staging and bind are stale.
    fake.break_path(&staging, Errno::ESTALE as i32);
    fake.break_path(&a, Errno::ESTALE as i32);
    assert_eq!(
        node.publish(publish_req(&staging, &a, false))
            .await
            .unwrap(),
        "repaired a broken bind"
    );
    assert_eq!(mounts(&fake), 2, "staging mounted again");
    assert_eq!(binds(&fake).len(), 2, "bind made again");
    let table = fake.table();
    assert_eq!(mountinfo::mounts_at(&table, &a).len(), 1);
    assert!(
        top_at(&table, &a)
            .unwrap()
            .same_tree(top_at(&table, &staging).unwrap())
    );
}

#[tokio::test]
async fn unpublish_and_unstage_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let a = dir.path().join("a");
    let fake = FakeMounter::default();
    let node = service(&fake);
    node.stage(stage_req(&staging)).await.unwrap();
    node.publish(publish_req(&staging, &a, false))
        .await
        .unwrap();
    assert!(!node.unpublish(unpublish_req(&a)).await.unwrap());
    assert!(!a.exists(), "the target path is removed");
    assert!(!node.unpublish(unpublish_req(&a)).await.unwrap());
    assert!(!node.unstage(unstage_req(&staging)).await.unwrap());
    assert!(!node.unstage(unstage_req(&staging)).await.unwrap());
    assert!(fake.table().is_empty());
    let mut missing = unpublish_req(&a);
    missing.target_path.clear();
    assert_eq!(code(node.unpublish(missing).await), Code::InvalidArgument);
}

#[tokio::test]
async fn hung_unmounts_fall_back_to_lazy_and_forced() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let a = dir.path().join("a");
    let fake = FakeMounter::default();
    let node = service(&fake);
    node.stage(stage_req(&staging)).await.unwrap();
    node.publish(publish_req(&staging, &a, false))
        .await
        .unwrap();
    let _hung = fake.hang_until_dropped();
    assert!(
        node.unpublish(unpublish_req(&a)).await.unwrap(),
        "reported as forced"
    );
    assert!(
        fake.calls()
            .contains(&Call::Unmount(a.clone(), Unmount::Detach))
    );
    assert!(!a.exists());
    assert!(node.unstage(unstage_req(&staging)).await.unwrap());
    assert!(
        fake.calls()
            .contains(&Call::Unmount(staging.clone(), Unmount::ForceDetach))
    );
    assert!(fake.table().is_empty());
}

#[tokio::test]
async fn busy_mounts_are_detached() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let a = dir.path().join("a");
    let fake = FakeMounter::default();
    let node = service(&fake);
    node.stage(stage_req(&staging)).await.unwrap();
    node.publish(publish_req(&staging, &a, false))
        .await
        .unwrap();
    fake.busy(&a);
    assert!(node.unpublish(unpublish_req(&a)).await.unwrap());
    assert!(
        fake.calls()
            .contains(&Call::Unmount(a.clone(), Unmount::Detach))
    );
    assert!(!a.exists());
}

#[tokio::test]
async fn stats_report_usage_and_condition() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let a = dir.path().join("a");
    let fake = FakeMounter::default();
    let node = service(&fake);
    let req = |path: &Path| csi::NodeGetVolumeStatsRequest {
        volume_id: "ns/fs:data".into(),
        volume_path: path.to_string_lossy().into_owned(),
        staging_target_path: String::new(),
    };
    assert_eq!(code(node.stats(req(&a)).await), Code::NotFound);
    node.stage(stage_req(&staging)).await.unwrap();
    node.publish(publish_req(&staging, &a, false))
        .await
        .unwrap();
    let ok = node.stats(req(&a)).await.unwrap();
    assert_eq!(ok.usage.len(), 2);
    let bytes = &ok.usage[0];
    assert_eq!(bytes.unit, i32::from(csi::volume_usage::Unit::Bytes));
    assert_eq!(
        (bytes.total, bytes.available, bytes.used),
        (1 << 30, 3 << 28, 1 << 28)
    );
    let inodes = &ok.usage[1];
    assert_eq!(
        (inodes.total, inodes.available, inodes.used),
        (1000, 900, 100)
    );
    assert!(!ok.volume_condition.unwrap().abnormal);

    fake.break_path(&a, Errno::ESTALE as i32);
    let stale = node.stats(req(&a)).await.unwrap();
    let condition = stale.volume_condition.unwrap();
    assert!(condition.abnormal && stale.usage.is_empty());
    assert!(
        condition.message.to_lowercase().contains("stale"),
        "{}",
        condition.message
    );

    let _hung = fake.hang_until_dropped();
    let hung = node
        .stats(req(&staging))
        .await
        .unwrap()
        .volume_condition
        .unwrap();
    assert!(
        hung.abnormal && hung.message.contains("did not answer"),
        "{}",
        hung.message
    );
    let again = node
        .stats(req(&staging))
        .await
        .unwrap()
        .volume_condition
        .unwrap();
    assert!(
        again.message.contains("has not returned"),
        "{}",
        again.message
    );
}
