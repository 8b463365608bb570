//! Access points over a real loopback socket, NFSv4.1 and NFSv3 + MOUNT,
//! against the server with the real `LocalVfs` (needs root, as the server
//! does): reaching `/ap/<id>`, root creation, the POSIX identity override,
//! `..` at the root, handle scopes, and settings changed while serving.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

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
use openefs_vfs::{AccessPoint, CreationInfo, Identity};

mod common;
use common::{TestServer, rpc};

const AP_UID: u32 = 4321;
const AP_GID: u32 = 4322;

fn access_points(aps: &[(&str, &str)]) -> Settings {
    Settings {
        access_points: AccessPoints::new(
            aps.iter()
                .map(|(id, root)| AccessPoint {
                    id: (*id).into(),
                    root_directory: (*root).into(),
                    posix_user: Some(Identity {
                        uid: AP_UID,
                        gid: AP_GID,
                        groups: vec![],
                    }),
                    creation_info: Some(CreationInfo {
                        owner_uid: AP_UID,
                        owner_gid: AP_GID,
                        permissions: 0o750,
                    }),
                    max_bytes: None,
                })
                .collect(),
        )
        .expect("valid access points"),
        ..Settings::default()
    }
}

fn op_error(r: Result<Vec<ResOp>, ClientError>) -> (u32, Nfs4Error) {
    match r {
        Err(ClientError::Op { op, status }) => (op, status),
        other => panic!("expected an operation error, got {other:?}"),
    }
}

fn fh_of(res: &ResOp) -> NfsFh4 {
    match res {
        ResOp::Getfh(Ok(fh)) => fh.clone(),
        other => panic!("not a GETFH result: {other:?}"),
    }
}

fn lookup(name: &str) -> ArgOp {
    ArgOp::Lookup(Utf8Str::from(name))
}

fn create_dir(name: &str) -> ArgOp {
    ArgOp::Create(Create4Args {
        objtype: CreateType4::Dir,
        objname: Utf8Str::from(name),
        createattrs: Fattr4::default(),
    })
}

/// The handle of `/ap/<id>`, as a mount of that path gets it.
async fn ap_root4(c: &mut Client, id: &str) -> Result<NfsFh4, (u32, Nfs4Error)> {
    match c
        .compound(vec![
            ArgOp::Putrootfh,
            lookup("ap"),
            lookup(id),
            ArgOp::Getfh,
        ])
        .await
    {
        Ok(r) => Ok(fh_of(&r[3])),
        Err(ClientError::Op { op, status }) => Err((op, status)),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn nfs41_access_points() {
    let s = TestServer::start().await;
    let dir = s.dir.path();
    std::fs::write(dir.join("secret"), b"root only").unwrap();
    s.server
        .apply_settings(access_points(&[("a", "/teams/a"), ("b", "/teams/b")]))
        .unwrap();
    let mut c = s.client().await;
    c.establish(b"access-points").await.unwrap();

    // Unknown ids are NOENT; a known one is created on first use.
    assert_eq!(
        ap_root4(&mut c, "nope").await,
        Err((OP_LOOKUP, Nfs4Error::Noent))
    );
    assert!(!dir.join("teams/a").exists());
    let a = ap_root4(&mut c, "a").await.unwrap();
    let m = std::fs::metadata(dir.join("teams/a")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
        (AP_UID, AP_GID, 0o750)
    );

    // The caller says uid 0; the directory belongs to the access point's user.
    let r = c
        .compound(vec![ArgOp::Putfh(a.clone()), create_dir("d"), ArgOp::Getfh])
        .await
        .unwrap();
    let d = fh_of(&r[2]);
    let m = std::fs::metadata(dir.join("teams/a/d")).unwrap();
    assert_eq!((m.uid(), m.gid()), (AP_UID, AP_GID));

    // `..` walks up to the access point root and stops there.
    let r = c
        .compound(vec![ArgOp::Putfh(d.clone()), ArgOp::Lookupp, ArgOp::Getfh])
        .await
        .unwrap();
    assert_eq!(fh_of(&r[2]), a);
    let r = c
        .compound(vec![
            ArgOp::Putfh(a.clone()),
            ArgOp::Lookupp,
            ArgOp::Lookupp,
            ArgOp::Getfh,
        ])
        .await
        .unwrap();
    assert_eq!(fh_of(&r[3]), a);
    assert_eq!(
        op_error(
            c.compound(vec![ArgOp::Putfh(a.clone()), lookup("secret")])
                .await
        ),
        (OP_LOOKUP, Nfs4Error::Noent)
    );

    // Handles of another scope do not meet this one's: RENAME between the
    // export and the access point, or two access points, is XDEV.
    let b = ap_root4(&mut c, "b").await.unwrap();
    for other in [b.clone(), {
        let r = c
            .compound(vec![ArgOp::Putrootfh, ArgOp::Getfh])
            .await
            .unwrap();
        fh_of(&r[1])
    }] {
        let rename = ArgOp::Rename(Rename4Args {
            oldname: Utf8Str::from("d"),
            newname: Utf8Str::from("moved"),
        });
        assert_eq!(
            op_error(
                c.compound(vec![
                    ArgOp::Putfh(a.clone()),
                    ArgOp::Savefh,
                    ArgOp::Putfh(other),
                    rename,
                ])
                .await
            ),
            (OP_RENAME, Nfs4Error::Xdev)
        );
    }

    // A scoped handle with a byte changed is not ours (BADHANDLE, as for
    // any forged handle); a removed access point's handles are STALE at
    // once (they were valid, their object is gone from this server).
    let mut forged = a.as_bytes().to_vec();
    forged[3] ^= 1;
    assert_eq!(
        op_error(
            c.compound(vec![
                ArgOp::Putfh(Opaque(Bytes::from(forged))),
                ArgOp::Getfh,
                ArgOp::Lookupp,
            ])
            .await
        ),
        (OP_LOOKUPP, Nfs4Error::Badhandle)
    );
    s.server
        .apply_settings(access_points(&[("b", "/teams/b")]))
        .unwrap();
    for fh in [&a, &d] {
        assert_eq!(
            op_error(
                c.compound(vec![ArgOp::Putfh(fh.clone()), lookup("x")])
                    .await
            ),
            (OP_LOOKUP, Nfs4Error::Stale)
        );
    }
    assert_eq!(
        ap_root4(&mut c, "a").await,
        Err((OP_LOOKUP, Nfs4Error::Noent))
    );
    // Added back without a restart: served again, the same handles.
    s.server
        .apply_settings(access_points(&[("a", "/teams/a"), ("b", "/teams/b")]))
        .unwrap();
    assert_eq!(ap_root4(&mut c, "a").await.unwrap(), a);

    // /ap lists the access points and cannot be changed.
    assert_eq!(
        op_error(
            c.compound(vec![ArgOp::Putrootfh, lookup("ap"), create_dir("x")])
                .await
        ),
        (OP_CREATE, Nfs4Error::Access)
    );
    s.stop().await;
}

async fn mnt(c: &mut Client, path: &str) -> MountRes {
    rpc(
        c,
        MOUNT_PROGRAM,
        MOUNT_V3,
        MOUNTPROC3_MNT,
        &DirPath::from(path),
    )
    .await
}

fn dirop(dir: &NfsFh3, name: &str) -> DirOpArgs3 {
    DirOpArgs3 {
        dir: dir.clone(),
        name: Filename3::from(name),
    }
}

#[tokio::test]
async fn nfs3_access_points() {
    let s = TestServer::start().await;
    let dir = s.dir.path();
    std::fs::create_dir(dir.join("data")).unwrap();
    s.server
        .apply_settings(access_points(&[("x", "/data")]))
        .unwrap();
    let mut c = s.client().await;
    assert_eq!(mnt(&mut c, "/ap/nope").await, Err(MountError::Noent));
    let root = mnt(&mut c, "/ap/x").await.unwrap().fhandle;

    let r: Lookup3Res = rpc(
        &mut c,
        NFS3_PROGRAM,
        NFS_V3,
        NFSPROC3_LOOKUP,
        &dirop(&root, ".."),
    )
    .await;
    assert_eq!(r.unwrap().object, root, "`..` of the root is the root");

    // Whoever the caller says it is (here uid 1), it acts as the access
    // point's user.
    c.set_identity(1, 1, &[]);
    let create = Create3Args {
        where_: dirop(&root, "f"),
        how: CreateHow3::Guarded(Sattr3::default()),
    };
    // Even as root: /data belongs to root, and the access point's user may
    // not write there.
    c.set_identity(0, 0, &[]);
    let r: DirOp3Res = rpc(&mut c, NFS3_PROGRAM, NFS_V3, NFSPROC3_CREATE, &create).await;
    assert_eq!(r.err().map(|e| e.status), Some(Nfs3Error::Acces));
    std::os::unix::fs::chown(dir.join("data"), Some(AP_UID), Some(AP_GID)).unwrap();
    c.set_identity(1, 1, &[]);
    let r: DirOp3Res = rpc(&mut c, NFS3_PROGRAM, NFS_V3, NFSPROC3_CREATE, &create).await;
    let f = r.unwrap().obj.expect("handle");
    let m = std::fs::metadata(dir.join("data/f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (AP_UID, AP_GID));
    // AUTH_NONE callers too (the export would take them for nobody).
    c.set_auth_none();
    let mkdir = Mkdir3Args {
        where_: dirop(&root, "d"),
        attributes: Sattr3::default(),
    };
    let r: DirOp3Res = rpc(&mut c, NFS3_PROGRAM, NFS_V3, NFSPROC3_MKDIR, &mkdir).await;
    r.unwrap();
    let m = std::fs::metadata(dir.join("data/d")).unwrap();
    assert_eq!((m.uid(), m.gid()), (AP_UID, AP_GID));

    s.server.apply_settings(Settings::default()).unwrap();
    let r: Getattr3Res = rpc(&mut c, NFS3_PROGRAM, NFS_V3, NFSPROC3_GETATTR, &f).await;
    assert_eq!(r.err().map(|e| e.status), Some(Nfs3Error::Stale));
    assert_eq!(mnt(&mut c, "/ap/x").await, Err(MountError::Noent));
    s.stop().await;
}

/// Resident memory of this process, from /proc (kB).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The measurement behind docs/benchmarks.md (access points): 10,000
/// access points parsed from a config file, validated and applied, then
/// some mounted (created on first use) and looked up. Run with
/// `cargo test --release -p openefs-nfsd --test access_points -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check; see docs/benchmarks.md"]
async fn ten_thousand_access_points() {
    use std::time::Instant;
    const N: usize = 10_000;
    let s = TestServer::start().await;
    let mut c = s.client().await;
    c.establish(b"many-access-points").await.unwrap();
    let config = s.dir.path().join("nfsd.toml");
    let mut text = String::new();
    for i in 0..N {
        text.push_str(&format!(
            "[[access-point]]\nid = \"fsap-{i:05}\"\nroot-directory = \"/aps/{i:05}\"\n\
             posix-user = {{ uid = {uid}, gid = {uid} }}\n\
             creation-info = {{ owner-uid = {uid}, owner-gid = {uid}, permissions = 0o750 }}\n",
            uid = 10_000 + i
        ));
    }
    std::fs::write(&config, &text).unwrap();
    let rss_before = rss_kib();
    let started = Instant::now();
    let source = openefs_nfsd::config::SettingsSource {
        file: Some(config),
        flags: Default::default(),
    };
    let settings = source.load().expect("10,000 access points load");
    let parsed = started.elapsed();
    let started = Instant::now();
    s.server.apply_settings(settings).unwrap();
    let applied = started.elapsed();
    let rss_after = rss_kib();
    assert_eq!(s.server.settings().access_points.as_slice().len(), N);

    // First use creates the root (mkdir, chown, chmod, fsyncs); later
    // lookups only resolve it.
    let ids: Vec<String> = (0..N)
        .step_by(N / 100)
        .map(|i| format!("fsap-{i:05}"))
        .collect();
    let mut first = Vec::new();
    let mut again = Vec::new();
    for times in [&mut first, &mut again] {
        for id in &ids {
            let t = Instant::now();
            ap_root4(&mut c, id).await.expect("mount");
            times.push(t.elapsed());
        }
    }
    let p50 = |v: &mut Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "{N} access points: config parsed and validated in {parsed:?} ({} kB of TOML), \
         applied in {applied:?}; RSS {rss_before} kB -> {rss_after} kB (+{} kB); \
         mount (PUTROOTFH, LOOKUP ap, LOOKUP id, GETFH) of {} of them: first use p50 {:?}, \
         again p50 {:?}",
        text.len() / 1024,
        rss_after.saturating_sub(rss_before),
        ids.len(),
        p50(&mut first),
        p50(&mut again),
    );
    s.stop().await;
}
