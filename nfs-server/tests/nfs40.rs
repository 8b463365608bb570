//! NFSv4.0 protocol tests (RFC 7530) over a real loopback socket against
//! the server with the real `LocalVfs` on a temporary directory (needs
//! root, as the server does): SETCLIENTID, OPEN_CONFIRM, owner seqid
//! replays, locks, leases and reclaim after a restart.

use std::sync::Arc;
use std::time::Duration;

use openefs_nfs_wire::nfs4::ops::*;
use openefs_nfs_wire::nfs4::types::*;
use openefs_nfs_wire::nfs4::*;
use openefs_nfs_wire::xdr::Opaque;
use openefs_nfsd::client::{Client, ClientError};
use openefs_nfsd::stable::StableStore;
use openefs_nfsd::state::{ManualClock, SystemClock};

mod common;
use common::TestServer;

fn op_error<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u32, Nfs4Error) {
    match r {
        Err(ClientError::Op { op, status }) => (op, status),
        other => panic!("expected an operation error, got {other:?}"),
    }
}

fn open_args(
    clientid: ClientId4,
    seqid: u32,
    owner: &str,
    how: OpenFlag4,
    claim: OpenClaim4,
) -> ArgOp {
    ArgOp::Open(Open4Args {
        seqid,
        share_access: OPEN4_SHARE_ACCESS_BOTH,
        share_deny: OPEN4_SHARE_DENY_NONE,
        owner: StateOwner4 {
            clientid,
            owner: Opaque::from(owner),
        },
        openhow: how,
        claim,
    })
}

fn create(clientid: ClientId4, seqid: u32, owner: &str, name: &str) -> ArgOp {
    open_args(
        clientid,
        seqid,
        owner,
        OpenFlag4::Create(CreateHow4::Unchecked(Fattr4::default())),
        OpenClaim4::Null(Utf8Str::from(name)),
    )
}

fn opened(r: &ResOp) -> Open4ResOk {
    match r {
        ResOp::Open(Ok(o)) => o.clone(),
        other => panic!("expected an open, got {other:?}"),
    }
}

fn fh_of(r: &ResOp) -> NfsFh4 {
    match r {
        ResOp::Getfh(Ok(fh)) => fh.clone(),
        other => panic!("expected a filehandle, got {other:?}"),
    }
}

/// PUTROOTFH, OPEN (create `name`), GETFH, then OPEN_CONFIRM with the next
/// seqid: a new open owner's first open, as the Linux client does it.
/// Returns the file and the confirmed open stateid.
async fn open_confirmed(c: &mut Client, seqid: u32, owner: &str, name: &str) -> (NfsFh4, Stateid4) {
    let id = c.clientid.unwrap();
    let r = c
        .compound40(vec![
            ArgOp::Putrootfh,
            create(id, seqid, owner, name),
            ArgOp::Getfh,
        ])
        .await
        .unwrap();
    let o = opened(&r[1]);
    assert_ne!(o.rflags & OPEN4_RESULT_CONFIRM, 0, "a new owner confirms");
    assert_eq!(o.delegation, OpenDelegation4::None);
    let fh = fh_of(&r[2]);
    let r = c
        .compound40(vec![
            ArgOp::Putfh(fh.clone()),
            ArgOp::OpenConfirm(OpenConfirm4Args {
                open_stateid: o.stateid,
                seqid: seqid.wrapping_add(1),
            }),
        ])
        .await
        .unwrap();
    let ResOp::OpenConfirm(Ok(confirmed)) = &r[1] else {
        panic!("{r:?}")
    };
    assert_eq!(confirmed.other, o.stateid.other);
    assert_eq!(confirmed.seqid, o.stateid.seqid + 1);
    (fh, *confirmed)
}

/// PUTFH `fh`, `op`: the result of `op`, whatever its status.
async fn on_file(c: &mut Client, fh: &NfsFh4, op: ArgOp) -> ResOp {
    let mut res = c
        .compound_raw(0, vec![ArgOp::Putfh(fh.clone()), op])
        .await
        .unwrap();
    assert_eq!(res.results.len(), 2, "{res:?}");
    res.results.pop().unwrap()
}

#[tokio::test]
async fn setclientid_confirm_renew_and_principals() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let id = c.setclientid(b"v40-client").await.unwrap();
    c.compound40(vec![ArgOp::Renew(id)]).await.unwrap();
    assert_eq!(
        op_error(c.compound40(vec![ArgOp::Renew(id ^ 0xffff)]).await),
        (OP_RENEW, Nfs4Error::StaleClientid)
    );
    // A wrong confirmation verifier names no record.
    assert_eq!(
        op_error(
            c.compound40(vec![ArgOp::SetclientidConfirm(SetclientidConfirm4Args {
                clientid: id,
                setclientid_confirm: [0xee; 8],
            })])
            .await
        ),
        (OP_SETCLIENTID_CONFIRM, Nfs4Error::StaleClientid)
    );
    // Another principal may not take over a client id with a live lease.
    let mut other = s.client().await;
    other.set_identity(1000, 1000, &[]);
    assert_eq!(
        op_error(other.setclientid(b"v40-client").await),
        (OP_SETCLIENTID, Nfs4Error::ClidInuse)
    );
    // The same principal setting it again keeps the client id (a callback
    // update).
    assert_eq!(c.setclientid(b"v40-client").await.unwrap(), id);
    // An OPEN before the client is confirmed: unknown client id.
    let res = c
        .compound_raw(
            0,
            vec![ArgOp::Setclientid(Setclientid4Args {
                client: ClientOwner4 {
                    verifier: [9; 8],
                    ownerid: Opaque::from("unconfirmed"),
                },
                callback: CbClient4 {
                    cb_program: 1,
                    cb_location: NetAddr4 {
                        netid: Utf8Str::from("tcp"),
                        addr: Utf8Str::from("127.0.0.1.0.1"),
                    },
                },
                callback_ident: 1,
            })],
        )
        .await
        .unwrap();
    let Some(ResOp::Setclientid(Setclientid4Res::Ok(unconfirmed))) = res.results.first() else {
        panic!("{res:?}")
    };
    assert_eq!(
        op_error(
            c.compound40(vec![
                ArgOp::Putrootfh,
                create(unconfirmed.clientid, 1, "o", "f")
            ])
            .await
        ),
        (OP_OPEN, Nfs4Error::StaleClientid)
    );
    s.stop().await;
}

#[tokio::test]
async fn open_confirm_write_read_close() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let id = c.setclientid(b"v40-io").await.unwrap();
    let r = c
        .compound40(vec![
            ArgOp::Putrootfh,
            create(id, 1, "o", "f"),
            ArgOp::Getfh,
        ])
        .await
        .unwrap();
    let o = opened(&r[1]);
    assert_ne!(o.rflags & OPEN4_RESULT_CONFIRM, 0);
    let fh = fh_of(&r[2]);
    let write = |stateid| {
        ArgOp::Write(Write4Args {
            stateid,
            offset: 0,
            stable: StableHow::FileSync,
            data: Opaque::from("hello 4.0"),
        })
    };
    // Not usable before OPEN_CONFIRM.
    let r = on_file(&mut c, &fh, write(o.stateid)).await;
    assert_eq!(r.status(), Err(Nfs4Error::BadStateid));
    let r = on_file(
        &mut c,
        &fh,
        ArgOp::OpenConfirm(OpenConfirm4Args {
            open_stateid: o.stateid,
            seqid: 2,
        }),
    )
    .await;
    let ResOp::OpenConfirm(Ok(sid)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(sid.seqid, o.stateid.seqid + 1);
    let r = on_file(&mut c, &fh, write(sid)).await;
    assert!(matches!(r, ResOp::Write(Ok(_))), "{r:?}");
    let r = on_file(
        &mut c,
        &fh,
        ArgOp::Read(Read4Args {
            stateid: sid,
            offset: 0,
            count: 100,
        }),
    )
    .await;
    let ResOp::Read(Ok(read)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(read.data.as_bytes(), b"hello 4.0");
    assert!(read.eof);
    // A second open by the now confirmed owner needs no confirmation.
    let r = c
        .compound40(vec![ArgOp::Putrootfh, create(id, 3, "o", "g")])
        .await
        .unwrap();
    assert_eq!(opened(&r[1]).rflags & OPEN4_RESULT_CONFIRM, 0);
    let close = ArgOp::Close(Close4Args {
        seqid: 4,
        open_stateid: sid,
    });
    let r = on_file(&mut c, &fh, close.clone()).await;
    let ResOp::Close(Ok(closed)) = &r else {
        panic!("{r:?}")
    };
    assert_eq!(closed.seqid, sid.seqid + 1);
    // A retransmitted CLOSE gets the same reply; the open is gone.
    assert_eq!(on_file(&mut c, &fh, close).await, r);
    let r = on_file(&mut c, &fh, write(sid)).await;
    assert_eq!(r.status(), Err(Nfs4Error::BadStateid));
    assert_eq!(std::fs::read(s.dir.path().join("f")).unwrap(), b"hello 4.0");
    let metrics = s.server.metrics().encode().unwrap();
    for op in ["SETCLIENTID", "SETCLIENTID_CONFIRM", "OPEN_CONFIRM"] {
        assert!(metrics.contains(&format!(r#"op="{op}""#)), "{metrics}");
    }
    s.stop().await;
}

#[tokio::test]
async fn replayed_open_returns_cached_reply_and_bad_seqid() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let id = c.setclientid(b"v40-replay").await.unwrap();
    let (_, _) = open_confirmed(&mut c, 10, "o", "first").await;
    // A GUARDED create: executing it twice would answer EXIST.
    let guarded = open_args(
        id,
        12,
        "o",
        OpenFlag4::Create(CreateHow4::Guarded(Fattr4::default())),
        OpenClaim4::Null(Utf8Str::from("once")),
    );
    let ops = vec![ArgOp::Putrootfh, guarded, ArgOp::Getfh];
    let first = c.compound40(ops.clone()).await.unwrap();
    let again = c.compound40(ops).await.unwrap();
    assert_eq!(opened(&again[1]), opened(&first[1]));
    // The replay leaves the opened file as the current filehandle.
    assert_eq!(fh_of(&again[2]), fh_of(&first[2]));

    // Out of order: neither the last seqid nor the next one.
    let r = c
        .compound_raw(0, vec![ArgOp::Putrootfh, create(id, 20, "o", "late")])
        .await
        .unwrap();
    assert_eq!(r.status, Err(Nfs4Error::BadSeqid));
    assert!(!s.dir.path().join("late").exists());
    // The last seqid with another operation is no retransmission.
    let (fh, sid) = (fh_of(&first[2]), opened(&first[1]).stateid);
    let r = on_file(
        &mut c,
        &fh,
        ArgOp::Close(Close4Args {
            seqid: 12,
            open_stateid: sid,
        }),
    )
    .await;
    assert_eq!(r.status(), Err(Nfs4Error::BadSeqid));
    // The next one goes on.
    let r = on_file(
        &mut c,
        &fh,
        ArgOp::Close(Close4Args {
            seqid: 13,
            open_stateid: sid,
        }),
    )
    .await;
    assert!(matches!(r, ResOp::Close(Ok(_))), "{r:?}");
    s.stop().await;
}

fn lock(locker: Locker4, offset: u64, length: u64) -> ArgOp {
    ArgOp::Lock(Lock4Args {
        locktype: LockType::Write,
        reclaim: false,
        offset,
        length,
        locker,
    })
}

#[tokio::test]
async fn locks_locku_and_release_lockowner() {
    let s = TestServer::start().await;
    let mut a = s.client().await;
    let ida = a.setclientid(b"v40-lock-a").await.unwrap();
    let mut b = s.client().await;
    let idb = b.setclientid(b"v40-lock-b").await.unwrap();
    let (fh, open_a) = open_confirmed(&mut a, 1, "oa", "shared").await;
    let (_, open_b) = open_confirmed(&mut b, 1, "ob", "shared").await;
    let owner = |clientid, o: &str| StateOwner4 {
        clientid,
        owner: Opaque::from(o),
    };
    let r = on_file(
        &mut a,
        &fh,
        lock(
            Locker4::New(OpenToLockOwner4 {
                open_seqid: 3,
                open_stateid: open_a,
                lock_seqid: 0,
                lock_owner: owner(ida, "la"),
            }),
            0,
            100,
        ),
    )
    .await;
    let ResOp::Lock(Lock4Res::Ok(la)) = r else {
        panic!("{r:?}")
    };
    // B conflicts, and its LOCKT sees A's lock.
    let r = on_file(
        &mut b,
        &fh,
        lock(
            Locker4::New(OpenToLockOwner4 {
                open_seqid: 3,
                open_stateid: open_b,
                lock_seqid: 0,
                lock_owner: owner(idb, "lb"),
            }),
            50,
            10,
        ),
    )
    .await;
    let ResOp::Lock(Lock4Res::Denied(d)) = r else {
        panic!("{r:?}")
    };
    assert_eq!((d.offset, d.length, d.owner.clientid), (0, 100, ida));
    let lockt = ArgOp::Lockt(Lockt4Args {
        locktype: LockType::Read,
        offset: 0,
        length: 1,
        owner: owner(idb, "lb"),
    });
    let r = on_file(&mut b, &fh, lockt.clone()).await;
    assert!(matches!(r, ResOp::Lockt(Lockt4Res::Denied(_))), "{r:?}");

    let release = ArgOp::ReleaseLockowner(owner(ida, "la"));
    assert_eq!(
        op_error(a.compound40(vec![release.clone()]).await),
        (OP_RELEASE_LOCKOWNER, Nfs4Error::LocksHeld)
    );
    // LOCKU in the lock owner's sequence, which started at lock_seqid 0.
    let locku = ArgOp::Locku(Locku4Args {
        locktype: LockType::Write,
        seqid: 1,
        lock_stateid: la,
        offset: 0,
        length: 100,
    });
    let r = on_file(&mut a, &fh, locku.clone()).await;
    let ResOp::Locku(Ok(unlocked)) = &r else {
        panic!("{r:?}")
    };
    assert_eq!(unlocked.seqid, la.seqid + 1);
    assert_eq!(on_file(&mut a, &fh, locku).await, r, "replayed LOCKU");
    assert!(matches!(
        on_file(&mut b, &fh, lockt).await,
        ResOp::Lockt(Lockt4Res::Ok)
    ));
    a.compound40(vec![release]).await.unwrap();
    // The released owner's lock stateid is gone.
    let r = on_file(
        &mut a,
        &fh,
        lock(
            Locker4::Exist(ExistLockOwner4 {
                lock_stateid: *unlocked,
                lock_seqid: 2,
            }),
            0,
            1,
        ),
    )
    .await;
    assert_eq!(r.status(), Err(Nfs4Error::BadStateid));
    s.stop().await;
}

#[tokio::test]
async fn minor_version_operation_tables() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    // 4.1-only operations are not in 4.0's table.
    for op in [
        ArgOp::ReclaimComplete(false),
        ArgOp::SecinfoNoName(SecinfoStyle4::CurrentFh),
        ArgOp::DestroySession([0; 16]),
    ] {
        let res = c.compound_raw(0, vec![ArgOp::Putrootfh, op]).await.unwrap();
        assert_eq!(res.status, Err(Nfs4Error::OpIllegal));
        assert_eq!(res.results[1].opnum(), OP_ILLEGAL);
    }
    // 4.0-only operations are NOTSUPP in 4.1 (RFC 8881 §18).
    c.establish(b"v41-client").await.unwrap();
    let id = c.clientid.unwrap();
    for op in [
        ArgOp::Renew(id),
        ArgOp::ReleaseLockowner(StateOwner4 {
            clientid: id,
            owner: Opaque::from("l"),
        }),
    ] {
        let opnum = op.opnum();
        assert_eq!(
            op_error(c.compound(vec![op]).await),
            (opnum, Nfs4Error::Notsupp)
        );
    }
    // A 4.1 client id is unknown to 4.0's RENEW.
    assert_eq!(
        op_error(c.compound40(vec![ArgOp::Renew(id)]).await),
        (OP_RENEW, Nfs4Error::StaleClientid)
    );
    s.stop().await;
}

#[tokio::test]
async fn lease_renewed_by_use_and_expiry() {
    let clock = Arc::new(ManualClock::default());
    let s = TestServer::start_with_clock(clock.clone()).await;
    let mut c = s.client().await;
    let id = c.setclientid(b"v40-lease").await.unwrap();
    let (fh, sid) = open_confirmed(&mut c, 1, "o", "f").await;
    let read = ArgOp::Read(Read4Args {
        stateid: sid,
        offset: 0,
        count: 1,
    });
    // A READ with the client's stateid renews its lease, as RENEW does.
    for _ in 0..2 {
        clock.advance(Duration::from_secs(80));
        assert!(matches!(
            on_file(&mut c, &fh, read.clone()).await,
            ResOp::Read(Ok(_))
        ));
    }
    clock.advance(Duration::from_secs(80));
    c.compound40(vec![ArgOp::Renew(id)]).await.unwrap();
    clock.advance(Duration::from_secs(80));
    assert_eq!(s.server.state().reap_expired().clients, 0);
    clock.advance(Duration::from_secs(20));
    assert_eq!(s.server.state().reap_expired().clients, 1);
    assert_eq!(
        op_error(c.compound40(vec![ArgOp::Renew(id)]).await),
        (OP_RENEW, Nfs4Error::StaleClientid)
    );
    assert_eq!(
        on_file(&mut c, &fh, read).await.status(),
        Err(Nfs4Error::BadStateid)
    );
    s.stop().await;
}

#[tokio::test]
async fn reclaim_after_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let state = tempfile::tempdir().unwrap();
    let s1 =
        TestServer::start_with_store(dir.clone(), state.path(), Arc::new(SystemClock::default()))
            .await;
    let mut a = s1.client().await;
    let old = a.setclientid(b"v40-reclaimer").await.unwrap();
    let (fh, _) = open_confirmed(&mut a, 1, "oa", "f").await;
    // On disk (clients.json) before the OPEN returned, as a 4.1 client is.
    let records = StableStore::open(state.path()).unwrap();
    assert_eq!(records.clients(), vec![b"v40-reclaimer".to_vec()]);
    drop(records);
    s1.stop().await;

    let s2 =
        TestServer::start_with_store(dir, state.path(), Arc::new(ManualClock::default())).await;
    assert!(s2.server.state().in_grace());
    let mut a = s2.client().await;
    assert_eq!(
        op_error(a.compound40(vec![ArgOp::Renew(old)]).await),
        (OP_RENEW, Nfs4Error::StaleClientid)
    );
    let id = a.setclientid(b"v40-reclaimer").await.unwrap();
    let reclaim = |clientid, owner: &str| {
        open_args(
            clientid,
            1,
            owner,
            OpenFlag4::NoCreate,
            OpenClaim4::Previous(OpenDelegationType::None),
        )
    };
    // New opens wait for the grace period's end.
    assert_eq!(
        op_error(
            a.compound40(vec![ArgOp::Putrootfh, create(id, 1, "og", "g")])
                .await
        ),
        (OP_OPEN, Nfs4Error::Grace)
    );
    let r = on_file(&mut a, &fh, reclaim(id, "oa")).await;
    let o = opened(&r);
    assert_ne!(o.rflags & OPEN4_RESULT_CONFIRM, 0);
    // A client the previous instance did not know may not reclaim.
    let mut b = s2.client().await;
    let idb = b.setclientid(b"v40-newcomer").await.unwrap();
    let r = on_file(&mut b, &fh, reclaim(idb, "ob")).await;
    assert_eq!(r.status(), Err(Nfs4Error::NoGrace));
    s2.stop().await;
}
