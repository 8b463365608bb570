//! Sample values covering every operation, shared by the test binaries.
#![allow(dead_code)] // each test binary uses a different subset

pub mod nfs3;
pub mod wire;

use bytes::Bytes;
use openefs_nfs_wire::nfs4::ops::*;
use openefs_nfs_wire::nfs4::types::*;
use openefs_nfs_wire::nfs4::*;
use openefs_nfs_wire::rpc::AuthSys;
use openefs_nfs_wire::xdr::Opaque;

pub fn s(v: &str) -> Utf8Str {
    Utf8Str::from(v)
}

pub fn stateid(n: u8) -> Stateid4 {
    Stateid4 {
        seqid: u32::from(n),
        other: [n; 12],
    }
}

pub fn owner() -> StateOwner4 {
    StateOwner4 {
        clientid: 0x1122_3344_5566_7788,
        owner: OwnerOpaque::from(&b"open id:\x00\x01"[..]),
    }
}

pub fn fattr() -> Fattr4 {
    FileAttrs {
        mode: Some(0o644),
        size: Some(4096),
        ..Default::default()
    }
    .encode_requested(&Bitmap4::from_bits(&[attr::FATTR4_SIZE, attr::FATTR4_MODE]))
}

pub fn cinfo() -> ChangeInfo4 {
    ChangeInfo4 {
        atomic: true,
        before: 7,
        after: 8,
    }
}

pub fn chan(maxreq: u32) -> ChannelAttrs4 {
    ChannelAttrs4 {
        headerpadsize: 0,
        maxrequestsize: maxreq,
        maxresponsesize: maxreq,
        maxresponsesize_cached: 3428,
        maxoperations: 8,
        maxrequests: 64,
        rdma_ird: None,
    }
}

pub fn auth_sys() -> AuthSys {
    AuthSys {
        stamp: 1,
        machinename: Opaque::from("client"),
        uid: 1000,
        gid: 1000,
        gids: vec![1000, 27],
    }
}

pub fn impl_id() -> NfsImplId4 {
    NfsImplId4 {
        domain: s("kernel.org"),
        name: s("Linux 6.1"),
        date: NfsTime4 {
            seconds: 0,
            nseconds: 0,
        },
    }
}

pub fn denied() -> Lock4Denied {
    Lock4Denied {
        offset: 0,
        length: u64::MAX,
        locktype: LockType::Write,
        owner: owner(),
    }
}

pub fn data(len: usize) -> Data {
    Opaque(Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>()))
}

/// One argument value per operation (several for unions).
pub fn sample_arg_ops() -> Vec<ArgOp> {
    let create_how = [
        CreateHow4::Unchecked(fattr()),
        CreateHow4::Guarded(fattr()),
        CreateHow4::Exclusive([9; 8]),
        CreateHow4::Exclusive41(CreatVerfAttr {
            verf: [3; 8],
            attrs: fattr(),
        }),
    ];
    let claims = [
        OpenClaim4::Null(s("file")),
        OpenClaim4::Previous(OpenDelegationType::Read),
        OpenClaim4::DelegateCur(OpenClaimDelegateCur4 {
            delegate_stateid: stateid(4),
            file: s("f"),
        }),
        OpenClaim4::DelegatePrev(s("g")),
        OpenClaim4::Fh,
        OpenClaim4::DelegCurFh(stateid(5)),
        OpenClaim4::DelegPrevFh,
    ];
    let mut ops = vec![
        ArgOp::Access(Access4Args { access: 0x3f }),
        ArgOp::Close(Close4Args {
            seqid: 1,
            open_stateid: stateid(1),
        }),
        ArgOp::Commit(Commit4Args {
            offset: 0,
            count: 0,
        }),
        ArgOp::Delegpurge(42),
        ArgOp::Delegreturn(stateid(2)),
        ArgOp::Getattr(Bitmap4::from_bits(&[1, 3, 4, 33, 55])),
        ArgOp::Getfh,
        ArgOp::Link(s("hard")),
        ArgOp::Lock(Lock4Args {
            locktype: LockType::Read,
            reclaim: false,
            offset: 10,
            length: 20,
            locker: Locker4::New(OpenToLockOwner4 {
                open_seqid: 1,
                open_stateid: stateid(1),
                lock_seqid: 0,
                lock_owner: owner(),
            }),
        }),
        ArgOp::Lock(Lock4Args {
            locktype: LockType::WriteW,
            reclaim: true,
            offset: 0,
            length: u64::MAX,
            locker: Locker4::Exist(ExistLockOwner4 {
                lock_stateid: stateid(6),
                lock_seqid: 2,
            }),
        }),
        ArgOp::Lockt(Lockt4Args {
            locktype: LockType::Write,
            offset: 1,
            length: 2,
            owner: owner(),
        }),
        ArgOp::Locku(Locku4Args {
            locktype: LockType::Read,
            seqid: 3,
            lock_stateid: stateid(6),
            offset: 1,
            length: 2,
        }),
        ArgOp::Lookup(s("dir")),
        ArgOp::Lookupp,
        ArgOp::Nverify(fattr()),
        ArgOp::Openattr(true),
        ArgOp::OpenConfirm(OpenConfirm4Args {
            open_stateid: stateid(1),
            seqid: 2,
        }),
        ArgOp::OpenDowngrade(OpenDowngrade4Args {
            open_stateid: stateid(1),
            seqid: 3,
            share_access: OPEN4_SHARE_ACCESS_READ,
            share_deny: OPEN4_SHARE_DENY_NONE,
        }),
        ArgOp::Putfh(NfsFh4::from(&[1u8, 2, 3, 4, 5][..])),
        ArgOp::Putpubfh,
        ArgOp::Putrootfh,
        ArgOp::Read(Read4Args {
            stateid: Stateid4::ANONYMOUS,
            offset: 4096,
            count: 65536,
        }),
        ArgOp::Readdir(Readdir4Args {
            cookie: 0,
            cookieverf: [0; 8],
            dircount: 8192,
            maxcount: 32768,
            attr_request: Bitmap4::from_bits(&[1, 20]),
        }),
        ArgOp::Readlink,
        ArgOp::Remove(s("gone")),
        ArgOp::Rename(Rename4Args {
            oldname: s("a"),
            newname: s("b"),
        }),
        ArgOp::Renew(42),
        ArgOp::Restorefh,
        ArgOp::Savefh,
        ArgOp::Secinfo(s("x")),
        ArgOp::Setattr(Setattr4Args {
            stateid: Stateid4::ANONYMOUS,
            obj_attributes: fattr(),
        }),
        ArgOp::Setclientid(Setclientid4Args {
            client: ClientOwner4 {
                verifier: [1; 8],
                ownerid: OwnerOpaque::from("Linux NFSv4.0 host"),
            },
            callback: CbClient4 {
                cb_program: 0x4000_0000,
                cb_location: NetAddr4 {
                    netid: s("tcp"),
                    addr: s("10.0.2.15.3.231"),
                },
            },
            callback_ident: 1,
        }),
        ArgOp::SetclientidConfirm(SetclientidConfirm4Args {
            clientid: 42,
            setclientid_confirm: [2; 8],
        }),
        ArgOp::Verify(fattr()),
        ArgOp::Write(Write4Args {
            stateid: stateid(1),
            offset: 0,
            stable: StableHow::FileSync,
            data: data(5000),
        }),
        ArgOp::ReleaseLockowner(owner()),
        ArgOp::BackchannelCtl(BackchannelCtl4Args {
            cb_program: 0x4000_0000,
            sec_parms: vec![
                CallbackSecParms4::None,
                CallbackSecParms4::Sys(auth_sys()),
                CallbackSecParms4::Gss(GssCbHandles4 {
                    service: RpcGssSvc::Integrity,
                    handle_from_server: Blob::from("s"),
                    handle_from_client: Blob::from("c"),
                }),
            ],
        }),
        ArgOp::BindConnToSession(BindConnToSession4Args {
            sessid: [7; 16],
            dir: ChannelDirFromClient::ForeOrBoth,
            use_conn_in_rdma_mode: false,
        }),
        ArgOp::ExchangeId(ExchangeId4Args {
            clientowner: ClientOwner4 {
                verifier: [1; 8],
                ownerid: OwnerOpaque::from("Linux NFSv4.1 host"),
            },
            flags: EXCHGID4_FLAG_SUPP_MOVED_REFER | EXCHGID4_FLAG_BIND_PRINC_STATEID,
            state_protect: StateProtect4A::None,
            client_impl_id: Some(impl_id()),
        }),
        ArgOp::ExchangeId(ExchangeId4Args {
            clientowner: ClientOwner4 {
                verifier: [1; 8],
                ownerid: OwnerOpaque::from("x"),
            },
            flags: 0,
            state_protect: StateProtect4A::Ssv(SsvSpParms4 {
                ops: StateProtectOps4 {
                    must_enforce: Bitmap4::from_bits(&[OP_SEQUENCE]),
                    must_allow: Bitmap4::new(),
                },
                hash_algs: vec![Blob::from("sha")],
                encr_algs: vec![],
                window: 1,
                num_gss_handles: 2,
            }),
            client_impl_id: None,
        }),
        ArgOp::ExchangeId(ExchangeId4Args {
            clientowner: ClientOwner4 {
                verifier: [1; 8],
                ownerid: OwnerOpaque::from("y"),
            },
            flags: 0,
            state_protect: StateProtect4A::MachCred(StateProtectOps4 {
                must_enforce: Bitmap4::new(),
                must_allow: Bitmap4::from_bits(&[OP_CLOSE]),
            }),
            client_impl_id: None,
        }),
        ArgOp::CreateSession(CreateSession4Args {
            clientid: 42,
            sequence: 1,
            flags: CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
            fore_chan_attrs: chan(1_049_620),
            back_chan_attrs: ChannelAttrs4 {
                rdma_ird: Some(0),
                ..chan(4096)
            },
            cb_program: 0x4000_0000,
            sec_parms: vec![CallbackSecParms4::Sys(auth_sys())],
        }),
        ArgOp::DestroySession([7; 16]),
        ArgOp::FreeStateid(stateid(3)),
        ArgOp::GetDirDelegation(GetDirDelegation4Args {
            signal_deleg_avail: false,
            notification_types: Bitmap4::from_bits(&[0]),
            child_attr_delay: NfsTime4::default(),
            dir_attr_delay: NfsTime4 {
                seconds: 1,
                nseconds: 2,
            },
            child_attributes: Bitmap4::new(),
            dir_attributes: Bitmap4::from_bits(&[3]),
        }),
        ArgOp::SecinfoNoName(SecinfoStyle4::Parent),
        ArgOp::Sequence(Sequence4Args {
            sessionid: [7; 16],
            sequenceid: 9,
            slotid: 0,
            highest_slotid: 3,
            cachethis: true,
        }),
        ArgOp::SetSsv(SetSsv4Args {
            ssv: Blob::from("ssv"),
            digest: Blob::from("dig"),
        }),
        ArgOp::TestStateid(vec![stateid(1), stateid(2)]),
        ArgOp::WantDelegation(WantDelegation4Args {
            want: OPEN4_SHARE_ACCESS_WANT_READ_DELEG,
            claim: DelegClaim4::Previous(OpenDelegationType::Write),
        }),
        ArgOp::WantDelegation(WantDelegation4Args {
            want: 0,
            claim: DelegClaim4::Fh,
        }),
        ArgOp::WantDelegation(WantDelegation4Args {
            want: 0,
            claim: DelegClaim4::DelegPrevFh,
        }),
        ArgOp::DestroyClientid(42),
        ArgOp::ReclaimComplete(false),
    ];
    for objtype in [
        CreateType4::Link(s("target")),
        CreateType4::Blk(SpecData4 {
            specdata1: 8,
            specdata2: 1,
        }),
        CreateType4::Chr(SpecData4::default()),
        CreateType4::Sock,
        CreateType4::Fifo,
        CreateType4::Dir,
        CreateType4::Other(FileType::Reg),
    ] {
        ops.push(ArgOp::Create(Create4Args {
            objtype,
            objname: s("new"),
            createattrs: fattr(),
        }));
    }
    for how in create_how {
        ops.push(ArgOp::Open(Open4Args {
            seqid: 0,
            share_access: OPEN4_SHARE_ACCESS_BOTH | OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
            share_deny: OPEN4_SHARE_DENY_NONE,
            owner: owner(),
            openhow: OpenFlag4::Create(how),
            claim: OpenClaim4::Null(s("new")),
        }));
    }
    for claim in claims {
        ops.push(ArgOp::Open(Open4Args {
            seqid: 0,
            share_access: OPEN4_SHARE_ACCESS_READ,
            share_deny: OPEN4_SHARE_DENY_WRITE,
            owner: owner(),
            openhow: OpenFlag4::NoCreate,
            claim,
        }));
    }
    ops
}

/// Every result variant, OK and error forms.
pub fn sample_res_ops() -> Vec<ResOp> {
    let ace = NfsAce4 {
        acetype: 0,
        flag: 0,
        access_mask: 0x1,
        who: s("EVERYONE@"),
    };
    let open_ok = |delegation| {
        ResOp::Open(Ok(Open4ResOk {
            stateid: stateid(1),
            cinfo: cinfo(),
            rflags: OPEN4_RESULT_LOCKTYPE_POSIX,
            attrset: Bitmap4::from_bits(&[4, 33]),
            delegation,
        }))
    };
    let mut res = vec![
        ResOp::Access(Ok(Access4ResOk {
            supported: 0x3f,
            access: 0x1f,
        })),
        ResOp::Close(Ok(stateid(2))),
        ResOp::Commit(Ok([5; 8])),
        ResOp::Create(Ok(Create4ResOk {
            cinfo: cinfo(),
            attrset: Bitmap4::from_bits(&[33]),
        })),
        ResOp::Delegpurge(Ok(())),
        ResOp::Delegreturn(Ok(())),
        ResOp::Getattr(Ok(fattr())),
        ResOp::Getfh(Ok(NfsFh4::from(&[9u8; 128][..]))),
        ResOp::Link(Ok(cinfo())),
        ResOp::Lock(Lock4Res::Ok(stateid(3))),
        ResOp::Lock(Lock4Res::Denied(denied())),
        ResOp::Lock(Lock4Res::Err(Nfs4Error::Grace)),
        ResOp::Lockt(Lockt4Res::Ok),
        ResOp::Lockt(Lockt4Res::Denied(denied())),
        ResOp::Lockt(Lockt4Res::Err(Nfs4Error::BadRange)),
        ResOp::Locku(Ok(stateid(4))),
        ResOp::Lookup(Ok(())),
        ResOp::Lookupp(Ok(())),
        ResOp::Nverify(Err(Nfs4Error::Same)),
        open_ok(OpenDelegation4::None),
        open_ok(OpenDelegation4::NoneExt(WhyNoDelegation::NotWanted)),
        open_ok(OpenDelegation4::NoneExt(WhyNoDelegation::Contention(true))),
        open_ok(OpenDelegation4::NoneExt(WhyNoDelegation::Resource(false))),
        open_ok(OpenDelegation4::NoneExt(WhyNoDelegation::IsDir)),
        open_ok(OpenDelegation4::Read(OpenReadDelegation4 {
            stateid: stateid(8),
            recall: false,
            permissions: ace.clone(),
        })),
        open_ok(OpenDelegation4::Write(OpenWriteDelegation4 {
            stateid: stateid(8),
            recall: true,
            space_limit: NfsSpaceLimit4::Blocks(NfsModifiedLimit4 {
                num_blocks: 1,
                bytes_per_block: 4096,
            }),
            permissions: ace,
        })),
        ResOp::Openattr(Err(Nfs4Error::Notsupp)),
        ResOp::OpenConfirm(Ok(stateid(1))),
        ResOp::OpenDowngrade(Ok(stateid(1))),
        ResOp::Putfh(Ok(())),
        ResOp::Putpubfh(Ok(())),
        ResOp::Putrootfh(Ok(())),
        ResOp::Read(Ok(Read4ResOk {
            eof: true,
            data: data(3),
        })),
        ResOp::Read(Ok(Read4ResOk {
            eof: false,
            data: data(70000),
        })),
        ResOp::Readdir(Ok(Readdir4ResOk {
            cookieverf: [1; 8],
            entries: vec![
                Entry4 {
                    cookie: 3,
                    name: s("a"),
                    attrs: fattr(),
                },
                Entry4 {
                    cookie: 4,
                    name: s("bcdef"),
                    attrs: Fattr4::default(),
                },
            ],
            eof: true,
        })),
        ResOp::Readdir(Ok(Readdir4ResOk {
            cookieverf: [0; 8],
            entries: vec![],
            eof: false,
        })),
        ResOp::Readlink(Ok(s("../target"))),
        ResOp::Remove(Ok(cinfo())),
        ResOp::Rename(Ok(Rename4ResOk {
            source_cinfo: cinfo(),
            target_cinfo: cinfo(),
        })),
        ResOp::Renew(Ok(())),
        ResOp::Restorefh(Err(Nfs4Error::Restorefh)),
        ResOp::Savefh(Ok(())),
        ResOp::Secinfo(Ok(vec![
            SecInfo4::Flavor(1),
            SecInfo4::Gss(RpcSecGssInfo {
                oid: Blob::from(&[0x2a, 0x86, 0x48][..]),
                qop: 0,
                service: RpcGssSvc::Privacy,
            }),
        ])),
        ResOp::Setattr(Setattr4Res {
            status: Ok(()),
            attrsset: Bitmap4::from_bits(&[33]),
        }),
        ResOp::Setattr(Setattr4Res {
            status: Err(Nfs4Error::Attrnotsupp),
            attrsset: Bitmap4::new(),
        }),
        ResOp::Setclientid(Setclientid4Res::Ok(Setclientid4ResOk {
            clientid: 1,
            setclientid_confirm: [4; 8],
        })),
        ResOp::Setclientid(Setclientid4Res::ClidInuse(NetAddr4 {
            netid: s("tcp"),
            addr: s("1.2.3.4.0.1"),
        })),
        ResOp::Setclientid(Setclientid4Res::Err(Nfs4Error::Notsupp)),
        ResOp::SetclientidConfirm(Ok(())),
        ResOp::Verify(Err(Nfs4Error::NotSame)),
        ResOp::Write(Ok(Write4ResOk {
            count: 5000,
            committed: StableHow::Unstable,
            writeverf: [6; 8],
        })),
        ResOp::ReleaseLockowner(Ok(())),
        ResOp::BackchannelCtl(Ok(())),
        ResOp::BindConnToSession(Ok(BindConnToSession4ResOk {
            sessid: [7; 16],
            dir: ChannelDirFromServer::Both,
            use_conn_in_rdma_mode: false,
        })),
        ResOp::ExchangeId(Ok(ExchangeId4ResOk {
            clientid: 0xabcd,
            sequenceid: 1,
            flags: EXCHGID4_FLAG_USE_NON_PNFS,
            state_protect: StateProtect4R::None,
            server_owner: ServerOwner4 {
                minor_id: 0,
                major_id: OwnerOpaque::from("openefs"),
            },
            server_scope: OwnerOpaque::from("openefs"),
            server_impl_id: Some(impl_id()),
        })),
        ResOp::ExchangeId(Ok(ExchangeId4ResOk {
            clientid: 1,
            sequenceid: 1,
            flags: 0,
            state_protect: StateProtect4R::Ssv(SsvProtInfo4 {
                ops: StateProtectOps4 {
                    must_enforce: Bitmap4::new(),
                    must_allow: Bitmap4::new(),
                },
                hash_alg: 1,
                encr_alg: 2,
                ssv_len: 32,
                window: 4,
                handles: vec![Blob::from("h")],
            }),
            server_owner: ServerOwner4 {
                minor_id: 1,
                major_id: OwnerOpaque::default(),
            },
            server_scope: OwnerOpaque::default(),
            server_impl_id: None,
        })),
        ResOp::CreateSession(Ok(CreateSession4ResOk {
            sessionid: [7; 16],
            sequence: 1,
            flags: 0,
            fore_chan_attrs: chan(1_049_620),
            back_chan_attrs: chan(4096),
        })),
        ResOp::DestroySession(Ok(())),
        ResOp::FreeStateid(Err(Nfs4Error::LocksHeld)),
        ResOp::GetDirDelegation(Ok(GetDirDelegationNonFatal::Unavail(false))),
        ResOp::GetDirDelegation(Ok(GetDirDelegationNonFatal::Ok(GetDirDelegation4ResOk {
            cookieverf: [1; 8],
            stateid: stateid(9),
            notification: Bitmap4::new(),
            child_attributes: Bitmap4::new(),
            dir_attributes: Bitmap4::new(),
        }))),
        ResOp::SecinfoNoName(Ok(vec![SecInfo4::Flavor(1), SecInfo4::Flavor(0)])),
        ResOp::Sequence(Ok(Sequence4ResOk {
            sessionid: [7; 16],
            sequenceid: 9,
            slotid: 0,
            highest_slotid: 63,
            target_highest_slotid: 63,
            status_flags: SEQ4_STATUS_CB_PATH_DOWN,
        })),
        ResOp::SetSsv(Ok(Blob::from("digest"))),
        ResOp::TestStateid(Ok(vec![Ok(()), Err(Nfs4Error::BadStateid)])),
        ResOp::WantDelegation(Ok(OpenDelegation4::NoneExt(WhyNoDelegation::Cancelled))),
        ResOp::DestroyClientid(Err(Nfs4Error::ClientidBusy)),
        ResOp::ReclaimComplete(Err(Nfs4Error::CompleteAlready)),
        ResOp::Other {
            op: OP_LAYOUTGET,
            status: Nfs4Error::Notsupp,
        },
        ResOp::Other {
            op: OP_ILLEGAL,
            status: Nfs4Error::OpIllegal,
        },
    ];
    // The error form of every typed result.
    for op in 3..=58 {
        res.push(ResOp::error(op, Nfs4Error::Serverfault));
    }
    res
}
