//! Access point quotas over a real loopback socket (needs root, as the
//! server does): NFSv4.1 and NFSv3 writes past `max_bytes` fail with DQUOT,
//! a remove makes room again, and the usage survives a restart.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openefs_nfs_wire::mount::*;
use openefs_nfs_wire::nfs3::ops::*;
use openefs_nfs_wire::nfs3::types::*;
use openefs_nfs_wire::nfs3::*;
use openefs_nfs_wire::nfs4::ops::*;
use openefs_nfs_wire::nfs4::types::*;
use openefs_nfs_wire::nfs4::*;
use openefs_nfs_wire::xdr::Opaque;
use openefs_nfsd::client::{Client, ClientError};
use openefs_nfsd::settings::{AccessPoints, Settings};
use openefs_nfsd::state::SystemClock;
use openefs_vfs::{AccessPoint, CreationInfo, Identity};

mod common;
use common::{TestServer, rpc};

const AP_UID: u32 = 4321;
const QUOTA: u64 = 256 << 10;
const CHUNK: usize = 64 << 10;

fn quota_settings() -> Settings {
    let user = Identity {
        uid: AP_UID,
        gid: AP_UID,
        groups: vec![],
    };
    Settings {
        access_points: AccessPoints::new(vec![AccessPoint {
            id: "q".into(),
            root_directory: "/q".into(),
            posix_user: Some(user),
            creation_info: Some(CreationInfo {
                owner_uid: AP_UID,
                owner_gid: AP_UID,
                permissions: 0o755,
            }),
            max_bytes: Some(QUOTA),
        }])
        .expect("valid"),
        ..Settings::default()
    }
}

/// The ledger's figure of access point `q`, once it is known (measured by
/// the server's first reconciliation walk, or restored).
async fn ap_usage(s: &TestServer) -> u64 {
    for _ in 0..100 {
        let usage = s.server.vfs().usage();
        if let Some(ap) = usage.access_points.iter().find(|ap| ap.known) {
            return ap.stored_bytes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the access point's usage was never measured");
}

fn fh_of(res: &ResOp) -> NfsFh4 {
    match res {
        ResOp::Getfh(Ok(fh)) => fh.clone(),
        other => panic!("not a GETFH result: {other:?}"),
    }
}

/// Creates `name` in `/ap/q` (OPEN, UNCHECKED) and returns its handle.
async fn create4(c: &mut Client, name: &str) -> Result<NfsFh4, Nfs4Error> {
    let open = ArgOp::Open(Open4Args {
        seqid: 0,
        share_access: OPEN4_SHARE_ACCESS_BOTH,
        share_deny: OPEN4_SHARE_DENY_NONE,
        owner: StateOwner4 {
            clientid: c.clientid.expect("established"),
            owner: Opaque::from(name),
        },
        openhow: OpenFlag4::Create(CreateHow4::Unchecked(Fattr4::default())),
        claim: OpenClaim4::Null(Utf8Str::from(name)),
    });
    let lookup = |n: &str| ArgOp::Lookup(Utf8Str::from(n));
    match c
        .compound(vec![
            ArgOp::Putrootfh,
            lookup("ap"),
            lookup("q"),
            open,
            ArgOp::Getfh,
        ])
        .await
    {
        Ok(r) => Ok(fh_of(&r[4])),
        Err(ClientError::Op { status, .. }) => Err(status),
        Err(e) => panic!("{e}"),
    }
}

async fn write4(c: &mut Client, fh: &NfsFh4, offset: u64) -> Result<(), Nfs4Error> {
    let write = ArgOp::Write(Write4Args {
        stateid: Stateid4::ANONYMOUS,
        offset,
        stable: StableHow::FileSync,
        data: Opaque(Bytes::from(vec![7u8; CHUNK])),
    });
    match c.compound(vec![ArgOp::Putfh(fh.clone()), write]).await {
        Ok(_) => Ok(()),
        Err(ClientError::Op { status, .. }) => Err(status),
        Err(e) => panic!("{e}"),
    }
}

async fn remove4(c: &mut Client, name: &str) {
    let lookup = |n: &str| ArgOp::Lookup(Utf8Str::from(n));
    c.compound(vec![
        ArgOp::Putrootfh,
        lookup("ap"),
        lookup("q"),
        ArgOp::Remove(Utf8Str::from(name)),
    ])
    .await
    .expect("remove");
}

#[tokio::test]
async fn writes_past_a_quota_get_dquot_and_usage_survives_a_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let state = tempfile::tempdir().unwrap();
    let clock = Arc::new(SystemClock::default());
    let s = TestServer::start_with_store(dir.clone(), state.path(), clock.clone()).await;
    s.server.apply_settings(quota_settings()).unwrap();
    let mut c = s.client().await;
    c.establish(b"quota").await.unwrap();
    let f = create4(&mut c, "f").await.expect("create");
    let start = ap_usage(&s).await;

    // NFSv4.1: 64 KiB writes until the quota says no.
    let mut written = 0;
    let refused = loop {
        match write4(&mut c, &f, written).await {
            Ok(()) => written += CHUNK as u64,
            Err(e) => break e,
        }
        assert!(written <= QUOTA, "wrote {written} bytes past the quota");
    };
    assert_eq!(refused, Nfs4Error::Dquot);
    let used = ap_usage(&s).await;
    assert!(used <= QUOTA, "{used}");
    assert!(used + CHUNK as u64 > QUOTA, "refused at {used} of {QUOTA}");
    // The empty file's first 4 KiB were charged already.
    assert_eq!(used, start + written - 4096);

    // NFSv3 through the same access point: DQUOT too.
    let root = rpc::<_, MountRes>(
        &mut c,
        MOUNT_PROGRAM,
        MOUNT_V3,
        MOUNTPROC3_MNT,
        &DirPath::from("/ap/q"),
    )
    .await
    .unwrap()
    .fhandle;
    let found: Lookup3Res = rpc(
        &mut c,
        NFS3_PROGRAM,
        NFS_V3,
        NFSPROC3_LOOKUP,
        &DirOpArgs3 {
            dir: root,
            name: Filename3::from("f"),
        },
    )
    .await;
    let f3 = found.unwrap().object;
    let w: Write3Res = rpc(
        &mut c,
        NFS3_PROGRAM,
        NFS_V3,
        NFSPROC3_WRITE,
        &Write3Args {
            file: f3,
            offset: written,
            count: CHUNK as u32,
            stable: StableHow::FileSync,
            data: Opaque(Bytes::from(vec![7u8; CHUNK])),
        },
    )
    .await;
    assert_eq!(w.err().map(|e| e.status), Some(Nfs3Error::Dquot));

    // A remove makes room.
    remove4(&mut c, "f").await;
    // All of it: the file's data and its inode (the 6 KiB of an empty
    // file in `start`).
    assert_eq!(ap_usage(&s).await, start - 6144);
    let g = create4(&mut c, "g").await.expect("create after the remove");
    write4(&mut c, &g, 0)
        .await
        .expect("a write after the remove");
    let before = s.server.vfs().usage();
    drop(c);
    s.stop().await;

    // A clean restart over the same state dir: the figures are back at
    // once, without a walk, and the record says a crash from now on would
    // not be clean.
    let s = TestServer::start_with_store(dir.clone(), state.path(), clock).await;
    let restored = s.server.vfs().usage();
    assert!(restored.known);
    assert_eq!(restored.stored_bytes, before.stored_bytes);
    s.server.apply_settings(quota_settings()).unwrap();
    let after = s.server.vfs().usage();
    assert_eq!(after.access_points, before.access_points);
    let record = openefs_nfsd::usage::load(state.path()).unwrap().unwrap();
    assert!(!record.clean);
    s.stop().await;
    let record = openefs_nfsd::usage::load(state.path()).unwrap().unwrap();
    assert!(record.clean);
}
