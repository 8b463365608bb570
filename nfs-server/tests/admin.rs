//! The gRPC admin API against a running server: authentication, settings
//! applied to the very next NFS call, usage and the client list.

use std::net::SocketAddr;

use openefs_admin_api::v1 as api;
use openefs_admin_api::v1::admin_client::AdminClient;
use openefs_nfs_wire::nfs4::ops::*;
use openefs_nfs_wire::nfs4::types::*;
use openefs_nfs_wire::nfs4::*;
use openefs_nfsd::admin::serve_admin;
use openefs_nfsd::client::ClientError;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Channel;

mod common;
use common::TestServer;

async fn admin(addr: SocketAddr) -> AdminClient<Channel> {
    AdminClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to the admin API")
}

fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    r
}

fn read_only() -> api::Settings {
    api::Settings {
        policy: Some(api::Policy {
            read_only: true,
            ..Default::default()
        }),
        throughput: None,
        access_points: Vec::new(),
    }
}

#[tokio::test]
async fn settings_usage_and_clients_through_the_admin_api() {
    let s = TestServer::start().await;
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(serve_admin(
        listener,
        s.server.clone(),
        token_file.clone(),
        s.shutdown.clone(),
    ));
    let mut a = admin(addr).await;

    // No token, a wrong one: refused, nothing changes.
    let apply = |settings: api::Settings| api::ApplySettingsRequest {
        settings: Some(settings),
    };
    let err = a
        .apply_settings(tonic::Request::new(apply(read_only())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = a
        .apply_settings(with_token("wrong", apply(read_only())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(!s.server.settings().policy.read_only);
    let err = a
        .apply_settings(with_token(
            "first-token",
            api::ApplySettingsRequest { settings: None },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // An NFS client with state shows up in the list and the usage.
    let mut c = s.client().await;
    c.establish(b"admin-listed-client").await.unwrap();
    let list = a
        .list_clients(with_token("first-token", api::ListClientsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.nfs4_clients.len(), 1, "{list:?}");
    let listed = &list.nfs4_clients[0];
    assert_eq!(
        (
            listed.owner.as_str(),
            listed.minor_version,
            listed.confirmed,
            listed.sessions
        ),
        ("admin-listed-client", 1, true, 1)
    );
    assert!(listed.lease_remaining_ms > 0 && listed.lease_remaining_ms <= 90_000);
    let usage = a
        .get_usage(with_token("first-token", api::GetUsageRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((usage.nfs4_clients, usage.client_connections), (1, 1));
    assert!(usage.volume_bytes_total >= usage.volume_bytes_free && usage.volume_bytes_total > 0);

    // Read-only, applied through the API: the next COMPOUND is refused.
    a.apply_settings(with_token("first-token", apply(read_only())))
        .await
        .unwrap();
    let mkdir = ArgOp::Create(Create4Args {
        objtype: CreateType4::Dir,
        objname: Utf8Str::from("d"),
        createattrs: Fattr4::default(),
    });
    let r = c.compound(vec![ArgOp::Putrootfh, mkdir.clone()]).await;
    assert!(
        matches!(
            r,
            Err(ClientError::Op {
                op: OP_CREATE,
                status: Nfs4Error::Rofs
            })
        ),
        "{r:?}"
    );
    let got = a
        .get_settings(with_token("first-token", api::GetSettingsRequest {}))
        .await
        .unwrap()
        .into_inner();
    let policy = got.policy.unwrap();
    assert_eq!(
        (policy.read_only, policy.anon_uid, policy.anon_gid),
        (true, Some(65534), Some(65534))
    );

    // A rotated token file counts from the next call on.
    std::fs::write(&token_file, "second-token").unwrap();
    let err = a
        .get_settings(with_token("first-token", api::GetSettingsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    a.apply_settings(with_token(
        "second-token",
        apply(api::Settings {
            policy: Some(api::Policy::default()),
            throughput: Some(api::Throughput {
                mode: api::throughput::Mode::Provisioned.into(),
                provisioned_mibps: 20,
            }),
            access_points: vec![api::AccessPoint {
                id: "fsap-1".into(),
                root_directory: "/teams/a".into(),
                posix_user: Some(api::PosixUser {
                    uid: 1000,
                    gid: 1000,
                    secondary_gids: vec![],
                }),
                creation_info: Some(api::CreationInfo {
                    owner_uid: 1000,
                    owner_gid: 1000,
                    permissions: 0o750,
                }),
                max_bytes: Some(1 << 20),
            }],
        }),
    ))
    .await
    .unwrap();
    assert_eq!(
        s.server.settings().throughput,
        openefs_nfsd::settings::ThroughputMode::Provisioned { mibps: 20 }
    );
    let usage = a
        .get_usage(with_token("second-token", api::GetUsageRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(usage.permitted_bytes_per_second, Some(20 << 20));
    // Every access point is reported, with its quota.
    assert_eq!(usage.access_points.len(), 1);
    assert_eq!(usage.access_points[0].id, "fsap-1");
    assert_eq!(usage.access_points[0].max_bytes, Some(1 << 20));
    // The access point is served at once: its root is made on first use,
    // owned as creation_info says.
    let aps = s.server.settings().access_points.clone();
    assert_eq!(aps.as_slice()[0].id, "fsap-1");
    let lookup = |name: &str| ArgOp::Lookup(Utf8Str::from(name));
    c.compound(vec![
        ArgOp::Putrootfh,
        lookup("ap"),
        lookup("fsap-1"),
        ArgOp::Getfh,
    ])
    .await
    .unwrap();
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata(s.dir.path().join("teams/a")).unwrap();
    assert_eq!((root.uid(), root.mode() & 0o7777), (1000, 0o750));
    c.compound(vec![ArgOp::Putrootfh, mkdir]).await.unwrap();
    assert!(s.dir.path().join("d").is_dir());

    // An access point's root directory is deleted only once the access
    // point is gone, never "/", and a repeated call finds nothing to do.
    std::fs::write(s.dir.path().join("teams/a/data"), [1; 10_000]).unwrap();
    let delete = |root: &str| {
        with_token(
            "second-token",
            api::DeleteAccessPointRootRequest {
                root_directory: root.into(),
            },
        )
    };
    let err = a
        .delete_access_point_root(delete("/teams/a"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("fsap-1"), "{err:?}");
    let err = a.delete_access_point_root(delete("/")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = a
        .delete_access_point_root(delete("/teams/../etc"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    a.apply_settings(with_token(
        "second-token",
        apply(api::Settings {
            policy: Some(api::Policy::default()),
            ..Default::default()
        }),
    ))
    .await
    .unwrap();
    let removed = a
        .delete_access_point_root(delete("/teams/a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.objects_removed, 2);
    assert!(removed.metered_bytes_removed >= 10_000);
    assert!(!s.dir.path().join("teams/a").exists());
    assert!(s.dir.path().join("d").is_dir());
    let again = a
        .delete_access_point_root(delete("/teams/a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.objects_removed, 0);

    drop(c);
    s.stop().await;
    served.await.unwrap().unwrap();
}

/// A free loopback port (bound and released; the test binds it again at
/// once, and nothing else on the machine picks ports from this range).
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Settings applied through the API are kept in the state directory: the
/// restarted server starts read-only although its flags say nothing.
#[tokio::test]
async fn applied_settings_survive_a_restart() {
    use std::sync::Arc;

    use openefs_nfsd::Config;
    use openefs_nfsd::admin::AdminSettings;
    use openefs_vfs::LocalVfs;
    use tokio_util::sync::CancellationToken;

    let export = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("token"), "t").unwrap();
    let mut config = Config::new(export.path().to_owned(), free_port());
    config.state_dir = Some(state.path().join("nfsd"));
    config.admin = Some(AdminSettings {
        listen: free_port(),
        token_file: state.path().join("token"),
    });
    let start = |config: Config| {
        let vfs = Arc::new(LocalVfs::new(export.path()).unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(openefs_nfsd::run(config, vfs, shutdown.clone()));
        (shutdown, task)
    };
    let connect_admin = |addr: SocketAddr| async move {
        for _ in 0..100 {
            if let Ok(a) = AdminClient::connect(format!("http://{addr}")).await {
                return a;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the admin API did not come up");
    };
    let admin_addr = config.admin.as_ref().unwrap().listen;

    let (shutdown, task) = start(config.clone());
    let mut a = connect_admin(admin_addr).await;
    a.apply_settings(with_token(
        "t",
        api::ApplySettingsRequest {
            settings: Some(read_only()),
        },
    ))
    .await
    .unwrap();
    shutdown.cancel();
    task.await.unwrap().unwrap();

    let (shutdown, task) = start(config.clone());
    let mut a = connect_admin(admin_addr).await;
    let policy = a
        .get_settings(with_token("t", api::GetSettingsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert!(policy.read_only);
    let mut c = openefs_nfsd::client::Client::connect(config.listen)
        .await
        .unwrap();
    c.establish(b"after-restart").await.unwrap();
    let mkdir = ArgOp::Create(Create4Args {
        objtype: CreateType4::Dir,
        objname: Utf8Str::from("d"),
        createattrs: Fattr4::default(),
    });
    let r = c.compound(vec![ArgOp::Putrootfh, mkdir]).await;
    assert!(
        matches!(
            r,
            Err(ClientError::Op {
                op: OP_CREATE,
                status: Nfs4Error::Rofs
            })
        ),
        "{r:?}"
    );
    drop(c);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
