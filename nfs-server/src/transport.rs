//! TCP transport: ONC RPC record marking (RFC 5531 §11) and per-connection
//! concurrency. Each call of a connection runs as its own task (bounded by a
//! semaphore), and replies leave in completion order, so a pipelining client
//! is never limited to one call per round trip.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use openefs_nfs_wire::rpc::{MAX_FRAGMENT_LEN, RecordDecoder, RecordError, fragment_header};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::codec::{Decoder, Encoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::rpc::Reply;
use crate::server::Server;
use crate::settings::{ClientRule, Settings};
use crate::tls::{ClientCertificate, Connection, WriteHalf};

/// Calls of one connection executing at once. Above the session slot count we
/// grant (so a client using all its slots is never throttled by us), small
/// enough that one connection cannot hold unbounded memory.
const CALLS_PER_CONNECTION: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("reading or writing the connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Record marking as a tokio codec. Decoding refuses a record above the limit
/// before buffering it, so a forged fragment length cannot make us allocate.
#[derive(Debug)]
pub struct RecordCodec(RecordDecoder);

impl RecordCodec {
    pub fn new(max_record: usize) -> Self {
        Self(RecordDecoder::new(max_record))
    }
}

impl Decoder for RecordCodec {
    type Item = Bytes;
    type Error = TransportError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, TransportError> {
        Ok(self.0.decode(src)?)
    }
}

impl Encoder<Bytes> for RecordCodec {
    type Error = TransportError;

    fn encode(&mut self, record: Bytes, dst: &mut BytesMut) -> Result<(), TransportError> {
        dst.reserve(record.len() + 4 * (1 + record.len() / MAX_FRAGMENT_LEN));
        let mut rest = record;
        loop {
            let n = rest.len().min(MAX_FRAGMENT_LEN);
            let last = n == rest.len();
            dst.extend_from_slice(&fragment_header(n, last));
            dst.extend_from_slice(&rest.split_to(n));
            if last {
                return Ok(());
            }
        }
    }
}

/// Accepts connections until `shutdown` fires, then waits for every
/// connection to finish its in-flight calls and send their replies.
pub async fn serve(listener: TcpListener, server: Arc<Server>, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(server.config().max_connections));
    let next_id = AtomicU64::new(1);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Transient (EMFILE, ECONNABORTED): keep serving the others.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("connection", id, %peer);
        let server = server.clone();
        let shutdown = shutdown.clone();
        connections.spawn(
            async move {
                server.metrics().connection_opened();
                // A handshake in progress must not hold up shutdown.
                let conn = tokio::select! {
                    _ = shutdown.cancelled() => None,
                    c = crate::tls::accept(
                        stream,
                        peer,
                        server.tls(),
                        server.settings().policy.require_tls,
                        server.metrics(),
                    ) => c,
                };
                if let Some(conn) = conn {
                    run_connection(conn, server.clone(), shutdown).await;
                }
                server.metrics().connection_closed();
                drop(permit);
            }
            .instrument(span),
        );
    }
    info!("stopped accepting connections; finishing in-flight calls");
    connections.close();
    connections.wait().await;
}

async fn run_connection(conn: Connection, server: Arc<Server>, shutdown: CancellationToken) {
    debug!(encrypted = conn.encrypted, client = ?conn.client, "connection opened");
    let encrypted = conn.encrypted;
    let mut settings = ConnectionSettings::new(conn.client, &server);
    let (rd, wr) = (conn.reader, conn.writer);
    let mut reader = FramedRead::new(rd, RecordCodec::new(server.config().max_record()));
    let replies = Arc::new(ReplySender::new(wr));
    let calls = TaskTracker::new();
    let in_flight = Arc::new(Semaphore::new(CALLS_PER_CONNECTION));
    loop {
        let record = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = reader.next() => r,
        };
        let record = match record {
            None => break,
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                warn!(error = %e, "closing connection");
                break;
            }
        };
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = in_flight.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        // The call's one snapshot of the settings also decides whether it
        // is served at all: a policy switched to requireTls ends plaintext
        // connections too; the client reconnects, and only TLS gets through.
        let settings = settings.current(&server);
        if !encrypted && settings.policy.require_tls {
            warn!("closing a plaintext connection: the policy now requires TLS");
            server.metrics().plaintext_refused();
            break;
        }
        let replies = replies.clone();
        let server = server.clone();
        calls.spawn(
            async move {
                if let Some(reply) = server.handle_call(record, settings).await {
                    replies.send(reply).await;
                }
                drop(permit);
            }
            .in_current_span(),
        );
    }
    // Each call sends its own reply before it ends, so once they have all
    // ended every reply has been written.
    calls.close();
    calls.wait().await;
    debug!("connection closed");
}

/// The settings a connection's calls work under: the server's, with the
/// policy's client rule for the connection's client certificate applied.
/// Derived again only when the server's settings change, not per call.
struct ConnectionSettings {
    /// The names of the verified client certificate; empty without one.
    client_names: Vec<String>,
    /// The server's settings `effective` was derived from.
    base: Arc<Settings>,
    effective: Arc<Settings>,
    /// The client rule behind `effective`, to log changes only: the
    /// operator re-applies unchanged settings on every reconcile.
    rule: Option<ClientRule>,
}

impl ConnectionSettings {
    fn new(client: Option<ClientCertificate>, server: &Server) -> Self {
        let base = server.settings();
        let mut this = Self {
            client_names: client.map(|c| c.names).unwrap_or_default(),
            effective: base.clone(),
            base,
            rule: None,
        };
        this.derive();
        this
    }

    fn current(&mut self, server: &Server) -> Arc<Settings> {
        let base = server.settings();
        if !Arc::ptr_eq(&self.base, &base) {
            self.base = base;
            self.derive();
        }
        self.effective.clone()
    }

    fn derive(&mut self) {
        let (rule, effective) = match self.base.for_client(&self.client_names) {
            Some((rule, effective)) => (Some(rule.clone()), Arc::new(effective)),
            None => (None, self.base.clone()),
        };
        if rule != self.rule {
            match &rule {
                Some(r) => info!(
                    rule = %r.client,
                    read_only = effective.policy.read_only,
                    root_squash = effective.policy.root_squash,
                    "a client rule of the policy applies to this connection"
                ),
                None => info!("no client rule of the policy applies to this connection any more"),
            }
        }
        self.rule = rule;
        self.effective = effective;
    }
}

/// Replies waiting to be sent, as one [`Buf`] over their chunks: record
/// marks and small chunks are gathered into shared buffers, large chunks
/// (READ data) are referenced, so `write_all_buf` hands the whole batch to
/// one vectored write without copying file data.
#[derive(Debug, Default)]
struct ReplyQueue {
    chunks: VecDeque<Bytes>,
    /// Small pieces not yet sealed into `chunks`.
    small: BytesMut,
    len: usize,
}

/// Below this a chunk is copied into the gathering buffer: cheaper than an
/// iovec entry of its own.
const GATHER_MAX: usize = 4096;

impl ReplyQueue {
    fn push(&mut self, reply: Reply) {
        let total: usize = reply.iter().map(Bytes::len).sum();
        // One fragment always suffices: our replies are bounded by the
        // negotiated sizes (a few MiB), far below the 2 GiB a fragment holds.
        debug_assert!(total <= MAX_FRAGMENT_LEN);
        self.small.extend_from_slice(&fragment_header(total, true));
        self.len += 4;
        for chunk in reply {
            self.len += chunk.len();
            if chunk.len() <= GATHER_MAX {
                self.small.extend_from_slice(&chunk);
            } else {
                self.seal();
                self.chunks.push_back(chunk);
            }
        }
    }

    fn seal(&mut self) {
        if !self.small.is_empty() {
            self.chunks.push_back(self.small.split().freeze());
        }
    }
}

impl Buf for ReplyQueue {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        match self.chunks.front() {
            Some(c) => c,
            None => &self.small,
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let pieces = self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.small[..]))
            .filter(|c| !c.is_empty());
        let mut n = 0;
        for (slot, piece) in dst.iter_mut().zip(pieces) {
            *slot = IoSlice::new(piece);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "advancing past the queued replies");
        self.len -= cnt;
        while cnt > 0 {
            match self.chunks.front_mut() {
                Some(front) if front.len() <= cnt => {
                    cnt -= front.len();
                    self.chunks.pop_front();
                }
                Some(front) => {
                    front.advance(cnt);
                    return;
                }
                None => {
                    self.small.advance(cnt);
                    return;
                }
            }
        }
    }
}

/// A connection's reply path. The call that completes writes its reply to
/// the socket itself rather than handing it to a writer task: on a loaded
/// machine every hand-off between tasks is a wake-up that waits for a CPU,
/// and this one was paid by every RPC. Replies completed while another call
/// is writing wait in `pending`, and the next writer sends all of them in
/// one vectored write, so a burst of completions still shares one syscall.
struct ReplySender {
    pending: std::sync::Mutex<ReplyQueue>,
    /// Held across the write (replies must not interleave on the wire);
    /// `None` once a write failed: the peer is gone, later replies are
    /// dropped.
    writer: tokio::sync::Mutex<Option<Writer>>,
}

struct Writer {
    half: WriteHalf,
    /// The batch being written; swapped with `pending` so both buffers are
    /// reused.
    batch: ReplyQueue,
}

impl ReplySender {
    fn new(half: WriteHalf) -> Self {
        Self {
            pending: std::sync::Mutex::default(),
            writer: tokio::sync::Mutex::new(Some(Writer {
                half,
                batch: ReplyQueue::default(),
            })),
        }
    }

    /// Queues `reply` and returns once it has been written (by this call or
    /// by one that took the writer before it), or dropped because the
    /// connection failed.
    async fn send(&self, reply: Reply) {
        self.with_pending(|q| q.push(reply));
        let mut guard = self.writer.lock().await;
        let Some(writer) = guard.as_mut() else {
            return;
        };
        // An earlier writer may have sent ours already: then nothing waits.
        self.with_pending(|q| std::mem::swap(q, &mut writer.batch));
        if !writer.batch.has_remaining() {
            return;
        }
        writer.batch.seal();
        // The flush matters for TLS: a write may leave the last records'
        // ciphertext buffered in the session when the socket is full, and
        // nothing else would send it (plain TCP's flush does nothing).
        let sent = match writer.half.write_all_buf(&mut writer.batch).await {
            Ok(()) => writer.half.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            debug!(error = %e, "writing replies failed");
            *guard = None;
        }
    }

    fn with_pending<T>(&self, f: impl FnOnce(&mut ReplyQueue) -> T) -> T {
        // A panic cannot leave the queue half-updated (push and swap do not
        // panic midway), so a poisoned lock is still usable.
        let mut queue = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openefs_nfs_wire::rpc::LAST_FRAGMENT;

    fn frame(last: bool, data: &[u8]) -> Vec<u8> {
        let mut v = ((data.len() as u32) | if last { LAST_FRAGMENT } else { 0 })
            .to_be_bytes()
            .to_vec();
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn joins_fragments_and_waits_for_the_rest() {
        let mut codec = RecordCodec::new(100);
        let mut wire = frame(false, b"abc");
        wire.extend(frame(true, b"de"));
        let mut buf = BytesMut::from(&wire[..wire.len() - 1]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&wire[wire.len() - 1..]);
        assert_eq!(
            codec.decode(&mut buf).unwrap().as_deref(),
            Some(&b"abcde"[..])
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_absurd_length_before_buffering() {
        let mut codec = RecordCodec::new(1024);
        let mut buf = BytesMut::from(&(LAST_FRAGMENT | 0x7fff_fff0).to_be_bytes()[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(TransportError::Record(RecordError::TooLarge { .. }))
        ));
        assert!(buf.capacity() < 1 << 20);
    }

    #[test]
    fn many_small_fragments_cannot_exceed_the_limit() {
        let mut codec = RecordCodec::new(10);
        let mut wire = Vec::new();
        for _ in 0..4 {
            wire.extend(frame(false, b"abc"));
        }
        let mut buf = BytesMut::from(&wire[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(TransportError::Record(RecordError::TooLarge {
                len: 12,
                max: 10
            }))
        ));
    }

    #[test]
    fn reply_queue_frames_each_reply_and_survives_partial_writes() {
        let big = Bytes::from(vec![7u8; GATHER_MAX + 1]);
        let mut queue = ReplyQueue::default();
        queue.push(vec![
            Bytes::from_static(b"head"),
            big.clone(),
            Bytes::from_static(b"\0\0\0"),
        ]);
        queue.push(vec![Bytes::from_static(b"small")]);
        queue.seal();
        let mut expected = frame(true, &[&b"head"[..], &big, b"\0\0\0"].concat());
        expected.extend(frame(true, b"small"));
        assert_eq!(queue.remaining(), expected.len());
        // The large chunk is referenced, not copied into the gathering buffer.
        let mut slices = [IoSlice::new(&[]); 8];
        let n = queue.chunks_vectored(&mut slices);
        assert_eq!(n, 3);
        assert_eq!(slices[1].as_ptr(), big.as_ptr());
        // Drain it the way short writes would: odd amounts across chunk borders.
        let mut sent = Vec::new();
        while queue.has_remaining() {
            let n = queue.chunk().len().min(3000);
            sent.extend_from_slice(&queue.chunk()[..n]);
            queue.advance(n);
        }
        assert_eq!(sent, expected);
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let mut codec = RecordCodec::new(100);
        let mut buf = BytesMut::new();
        codec
            .encode(Bytes::from_static(b"hello"), &mut buf)
            .unwrap();
        codec.encode(Bytes::new(), &mut buf).unwrap();
        assert_eq!(
            codec.decode(&mut buf).unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(codec.decode(&mut buf).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }
}
