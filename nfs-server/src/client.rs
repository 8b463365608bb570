//! A small NFSv4.1 client over TCP, for protocol tests here and in `e2e/`:
//! raw RPC records when a test needs to misbehave, COMPOUNDs with the
//! SEQUENCE bookkeeping done when it does not, and 4.0 COMPOUNDs with the
//! SETCLIENTID handshake (owner seqids are the test's to choose).

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use openefs_nfs_wire::nfs4::ops::*;
use openefs_nfs_wire::nfs4::types::*;
use openefs_nfs_wire::nfs4::*;
use openefs_nfs_wire::rpc::{
    AUTH_SYS, AcceptedBody, AuthSys, CallHeader, OpaqueAuth, ReplyHeader, ReplyStat,
};
use openefs_nfs_wire::xdr::{Decoder, Encoder, Opaque, XdrDecode, XdrEncode, XdrError, to_bytes};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::codec::Framed;

use crate::transport::{RecordCodec, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection: {0}")]
    Transport(#[from] TransportError),
    #[error("connecting: {0}")]
    Connect(std::io::Error),
    #[error("server closed the connection")]
    Closed,
    #[error("undecodable reply: {0}")]
    Xdr(#[from] XdrError),
    #[error("RPC call not accepted: {0:?}")]
    Rejected(ReplyStat),
    #[error("reply xid {got:#x} does not match call {want:#x}")]
    XidMismatch { want: u32, got: u32 },
    #[error("operation {op} failed: {status}")]
    Op { op: u32, status: Nfs4Error },
    #[error("no session: call establish() first")]
    NoSession,
}

/// The largest reply the client accepts.
const MAX_REPLY: usize = 4 << 20;

/// What a client talks over: TCP, or TLS over TCP.
pub trait ClientIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ClientIo for T {}

pub struct Client {
    conn: Framed<Box<dyn ClientIo>, RecordCodec>,
    next_xid: u32,
    cred: OpaqueAuth,
    pub clientid: Option<ClientId4>,
    pub session: Option<SessionId4>,
    /// Next sequence id of slot 0.
    pub seqid: u32,
}

impl Client {
    /// Connects as uid/gid 0 (AUTH_SYS).
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(ClientError::Connect)?;
        Ok(Self::over(stream))
    }

    /// A client over an established stream (e.g. TLS), as uid/gid 0
    /// (AUTH_SYS).
    pub fn over(stream: impl ClientIo + 'static) -> Self {
        let stream: Box<dyn ClientIo> = Box::new(stream);
        let mut c = Self {
            conn: Framed::new(stream, RecordCodec::new(MAX_REPLY)),
            next_xid: 1,
            cred: OpaqueAuth::none(),
            clientid: None,
            session: None,
            seqid: 1,
        };
        c.set_identity(0, 0, &[]);
        c
    }

    /// Uses these AUTH_SYS credentials for later calls.
    pub fn set_identity(&mut self, uid: u32, gid: u32, gids: &[u32]) {
        let sys = AuthSys {
            stamp: 0,
            machinename: Opaque::from("openefs-test"),
            uid,
            gid,
            gids: gids.to_vec(),
        };
        self.cred = OpaqueAuth {
            flavor: AUTH_SYS,
            body: Opaque(to_bytes(&sys)),
        };
    }

    /// Uses AUTH_NONE (no credentials) for later calls.
    pub fn set_auth_none(&mut self) {
        self.cred = OpaqueAuth::none();
    }

    /// Encodes a call with this client's credentials; returns its xid.
    pub fn encode_call(&mut self, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> (u32, Bytes) {
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1);
        let mut enc = Encoder::new();
        CallHeader {
            xid,
            prog,
            vers,
            proc_,
            cred: self.cred.clone(),
            verf: OpaqueAuth::none(),
        }
        .encode(&mut enc);
        let mut out = enc.into_bytes().to_vec();
        out.extend_from_slice(args);
        (xid, Bytes::from(out))
    }

    pub async fn send_record(&mut self, record: Bytes) -> Result<(), ClientError> {
        Ok(self.conn.send(record).await?)
    }

    /// The next reply record, `None` when the server closed the connection.
    pub async fn recv_record(&mut self) -> Result<Option<Bytes>, ClientError> {
        self.conn.next().await.transpose().map_err(Into::into)
    }

    /// Writes raw bytes (for malformed-record tests).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        use tokio::io::AsyncWriteExt;
        self.conn
            .get_mut()
            .write_all(bytes)
            .await
            .map_err(|e| ClientError::Transport(e.into()))
    }

    /// Sends a call and returns the reply header and the results after it.
    pub async fn call(
        &mut self,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[u8],
    ) -> Result<(ReplyHeader, Bytes), ClientError> {
        let (xid, record) = self.encode_call(prog, vers, proc_, args);
        self.send_record(record).await?;
        let reply = self.recv_record().await?.ok_or(ClientError::Closed)?;
        let mut dec = Decoder::new(reply);
        let header = ReplyHeader::decode(&mut dec)?;
        if header.xid != xid {
            return Err(ClientError::XidMismatch {
                want: xid,
                got: header.xid,
            });
        }
        Ok((header, dec.into_rest()))
    }

    /// Encodes a COMPOUND's arguments.
    pub fn compound_args(minorversion: u32, ops: Vec<ArgOp>) -> Bytes {
        to_bytes(&Compound4Args {
            tag: Utf8Str::default(),
            minorversion,
            declared_ops: ops.len() as u32,
            ops,
            error: None,
        })
    }

    /// Sends a COMPOUND as given (no SEQUENCE added) and decodes the reply.
    pub async fn compound_raw(
        &mut self,
        minorversion: u32,
        ops: Vec<ArgOp>,
    ) -> Result<Compound4Res, ClientError> {
        let args = Self::compound_args(minorversion, ops);
        let (header, body) = self
            .call(NFS4_PROGRAM, NFS_V4, NFSPROC4_COMPOUND, &args)
            .await?;
        match header.stat {
            ReplyStat::Accepted(a) if a.body == AcceptedBody::Success => {
                Ok(openefs_nfs_wire::xdr::from_bytes(body)?)
            }
            stat => Err(ClientError::Rejected(stat)),
        }
    }

    /// SEQUENCE for slot 0 with the next sequence id, asking for the reply
    /// to be cached.
    pub fn sequence_op(&mut self) -> Result<ArgOp, ClientError> {
        let sessionid = self.session.ok_or(ClientError::NoSession)?;
        let op = ArgOp::Sequence(Sequence4Args {
            sessionid,
            sequenceid: self.seqid,
            slotid: 0,
            highest_slotid: 0,
            cachethis: true,
        });
        self.seqid = self.seqid.wrapping_add(1);
        Ok(op)
    }

    /// A COMPOUND in the session: SEQUENCE, then `ops`. Fails on the
    /// first failed operation; otherwise returns the results after
    /// SEQUENCE's.
    pub async fn compound(&mut self, ops: Vec<ArgOp>) -> Result<Vec<ResOp>, ClientError> {
        let mut all = vec![self.sequence_op()?];
        all.extend(ops);
        let res = self.compound_raw(1, all).await?;
        check(&res)?;
        Ok(res.results.into_iter().skip(1).collect())
    }

    /// EXCHANGE_ID, CREATE_SESSION and RECLAIM_COMPLETE, as a client's
    /// mount does.
    pub async fn establish(&mut self, owner: &[u8]) -> Result<(), ClientError> {
        self.establish_for_reclaim(owner).await?;
        self.compound(vec![ArgOp::ReclaimComplete(false)]).await?;
        Ok(())
    }

    /// EXCHANGE_ID and CREATE_SESSION only, as a client does that is about
    /// to reclaim its state from a restarted server (it sends
    /// RECLAIM_COMPLETE when done).
    pub async fn establish_for_reclaim(&mut self, owner: &[u8]) -> Result<(), ClientError> {
        let res = self
            .compound_raw(
                1,
                vec![ArgOp::ExchangeId(ExchangeId4Args {
                    clientowner: ClientOwner4 {
                        verifier: [7; 8],
                        ownerid: Opaque::from(owner),
                    },
                    flags: 0,
                    state_protect: StateProtect4A::None,
                    client_impl_id: None,
                })],
            )
            .await?;
        check(&res)?;
        let Some(ResOp::ExchangeId(Ok(ex))) = res.results.first() else {
            return Err(ClientError::Op {
                op: OP_EXCHANGE_ID,
                status: Nfs4Error::Serverfault,
            });
        };
        let chan = |maxrequests| ChannelAttrs4 {
            headerpadsize: 0,
            maxrequestsize: 1 << 20,
            maxresponsesize: 1 << 20,
            maxresponsesize_cached: 64 * 1024,
            maxoperations: 16,
            maxrequests,
            rdma_ird: None,
        };
        let res = self
            .compound_raw(
                1,
                vec![ArgOp::CreateSession(CreateSession4Args {
                    clientid: ex.clientid,
                    sequence: ex.sequenceid,
                    flags: 0,
                    fore_chan_attrs: chan(8),
                    back_chan_attrs: chan(1),
                    cb_program: 0x4000_0000,
                    sec_parms: vec![CallbackSecParms4::None],
                })],
            )
            .await?;
        check(&res)?;
        let Some(ResOp::CreateSession(Ok(cs))) = res.results.first() else {
            return Err(ClientError::Op {
                op: OP_CREATE_SESSION,
                status: Nfs4Error::Serverfault,
            });
        };
        self.clientid = Some(ex.clientid);
        self.session = Some(cs.sessionid);
        self.seqid = 1;
        Ok(())
    }
}

impl Client {
    /// A 4.0 COMPOUND. Fails on the first failed operation; otherwise
    /// returns all results.
    pub async fn compound40(&mut self, ops: Vec<ArgOp>) -> Result<Vec<ResOp>, ClientError> {
        let res = self.compound_raw(0, ops).await?;
        check(&res)?;
        Ok(res.results)
    }

    /// SETCLIENTID and SETCLIENTID_CONFIRM, as a 4.0 client's mount does;
    /// sets [`Client::clientid`].
    pub async fn setclientid(&mut self, owner: &[u8]) -> Result<ClientId4, ClientError> {
        let res = self
            .compound40(vec![ArgOp::Setclientid(Setclientid4Args {
                client: ClientOwner4 {
                    verifier: [7; 8],
                    ownerid: Opaque::from(owner),
                },
                callback: CbClient4 {
                    cb_program: 0x4000_0000,
                    cb_location: NetAddr4 {
                        netid: Utf8Str::from("tcp"),
                        addr: Utf8Str::from("127.0.0.1.0.0"),
                    },
                },
                callback_ident: 1,
            })])
            .await?;
        let Some(ResOp::Setclientid(Setclientid4Res::Ok(ok))) = res.first() else {
            return Err(ClientError::Op {
                op: OP_SETCLIENTID,
                status: Nfs4Error::Serverfault,
            });
        };
        let (clientid, confirm) = (ok.clientid, ok.setclientid_confirm);
        self.compound40(vec![ArgOp::SetclientidConfirm(SetclientidConfirm4Args {
            clientid,
            setclientid_confirm: confirm,
        })])
        .await?;
        self.clientid = Some(clientid);
        Ok(clientid)
    }
}

/// The first failed operation of a COMPOUND, as an error.
pub fn check(res: &Compound4Res) -> Result<(), ClientError> {
    for r in &res.results {
        if let Err(status) = r.status() {
            return Err(ClientError::Op {
                op: r.opnum(),
                status,
            });
        }
    }
    res.status
        .map_err(|status| ClientError::Op { op: 0, status })
}
