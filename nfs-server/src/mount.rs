//! MOUNT v3 (RFC 1813 appendix I), served on the NFS port so that clients
//! need no portmapper (`mountport=` = `port=`). The one export is the
//! configured directory, mounted as `/`; as with knfsd, a directory beneath
//! it may be mounted too (`/a/b`), resolved as the caller, and so may an
//! access point (`/ap/<id>`, resolved by the vfs like any other path).

use std::collections::BTreeSet;
use std::sync::Mutex;

use bytes::Bytes;
use openefs_nfs_wire::mount::*;
use openefs_nfs_wire::rpc::{AUTH_NONE, AUTH_SYS};
use openefs_nfs_wire::xdr::{Decoder, Encoder, Opaque, XdrDecode, XdrEncode};
use openefs_vfs::{FileHandle, FileType, Identity, Vfs, VfsError};

use crate::metrics::Outcome;
use crate::rpc::ProcReply;
use crate::server::Server;

/// The path clients mount.
pub const EXPORT_PATH: &str = "/";

/// Mounts announced by MNT and not yet withdrawn by UMNT/UMNTALL, as
/// (client host name, path). Informational only (DUMP), as in every MOUNT
/// server: clients that vanish never say UMNT. Bounded so clients cannot
/// grow it without limit.
#[derive(Debug, Default)]
pub struct Mounts(Mutex<BTreeSet<(Bytes, Bytes)>>);

const MAX_MOUNT_RECORDS: usize = 1024;

impl Mounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(Bytes, Bytes)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, host: Bytes, path: Bytes) {
        let mut m = self.lock();
        if m.len() < MAX_MOUNT_RECORDS {
            m.insert((host, path));
        }
    }

    fn remove(&self, host: &Bytes, path: &Bytes) {
        self.lock().remove(&(host.clone(), path.clone()));
    }

    fn remove_host(&self, host: &Bytes) {
        self.lock().retain(|(h, _)| h != host);
    }

    pub fn list(&self) -> MountList {
        MountList(
            self.lock()
                .iter()
                .map(|(h, p)| MountBody {
                    hostname: Opaque(h.clone()),
                    directory: Opaque(p.clone()),
                })
                .collect(),
        )
    }
}

/// The components of an absolute mount path beneath the export, or `None`
/// when it is not one: relative, or stepping up with `..`.
fn components(path: &[u8]) -> Option<Vec<&[u8]>> {
    if path.first() != Some(&b'/') {
        return None;
    }
    let parts: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    (!parts.iter().any(|c| *c == b"..")).then_some(parts)
}

/// Walks `parts` down from the root with single-component lookups, which
/// never follow symlinks, so the result stays beneath the export.
fn resolve(v: &dyn Vfs, id: &Identity, parts: &[Vec<u8>]) -> Result<FileHandle, MountError> {
    let mut fh = v.root();
    for part in parts {
        let (next, attr) = v.lookup(id, &fh, part).map_err(mount_status)?;
        if attr.file_type != FileType::Directory {
            return Err(MountError::Notdir);
        }
        fh = next;
    }
    Ok(fh)
}

fn mount_status(e: VfsError) -> MountError {
    match e {
        VfsError::NotFound | VfsError::Stale => MountError::Noent,
        VfsError::NotDir => MountError::Notdir,
        VfsError::Access | VfsError::Perm => MountError::Acces,
        VfsError::NameTooLong => MountError::Nametoolong,
        VfsError::InvalidName | VfsError::Inval | VfsError::Symlink | VfsError::Loop => {
            MountError::Inval
        }
        _ => MountError::Io,
    }
}

async fn mnt(server: &Server, id: &Identity, host: Bytes, path: DirPath) -> MountRes {
    let parts: Vec<Vec<u8>> = components(path.as_bytes())
        .ok_or(MountError::Noent)?
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let fh = server
        .vfs_call(id, move |v, id| resolve(v, id, &parts))
        .await
        .unwrap_or(Err(MountError::Serverfault))?;
    server.mounts().add(host, path.0);
    Ok(MountResOk {
        fhandle: Opaque(Bytes::from(fh.0)),
        auth_flavors: vec![AUTH_SYS, AUTH_NONE],
    })
}

fn exports() -> Exports {
    Exports(vec![ExportNode {
        dir: DirPath::from(EXPORT_PATH),
        groups: Vec::new(),
    }])
}

fn encode<T: XdrEncode>(v: &T) -> ProcReply {
    let mut enc = Encoder::new();
    v.encode(&mut enc);
    ProcReply::Success(enc)
}

/// Runs one MOUNT procedure for caller `id`. `host` is the caller's
/// AUTH_SYS machine name (empty for AUTH_NONE), the only name RPC gives us
/// for DUMP.
pub async fn dispatch(
    server: &Server,
    id: &Identity,
    host: Bytes,
    proc_: u32,
    args: Bytes,
) -> ProcReply {
    let Some(name) = proc_name(proc_) else {
        return ProcReply::ProcUnavail;
    };
    let started = std::time::Instant::now();
    let mut dec = Decoder::new(args);
    let mut status = Ok(());
    let reply = match proc_ {
        MOUNTPROC3_MNT => match DirPath::decode(&mut dec) {
            Ok(path) => {
                let res = mnt(server, id, host, path).await;
                status = res.as_ref().map(|_| ()).map_err(|e| *e);
                encode(&res)
            }
            Err(_) => ProcReply::GarbageArgs,
        },
        MOUNTPROC3_DUMP => encode(&server.mounts().list()),
        MOUNTPROC3_UMNT => match DirPath::decode(&mut dec) {
            Ok(path) => {
                server.mounts().remove(&host, &path.0);
                encode(&())
            }
            Err(_) => ProcReply::GarbageArgs,
        },
        MOUNTPROC3_UMNTALL => {
            server.mounts().remove_host(&host);
            encode(&())
        }
        MOUNTPROC3_EXPORT => encode(&exports()),
        _ => encode(&()),
    };
    if !matches!(reply, ProcReply::GarbageArgs) {
        server
            .metrics()
            .op_done(name, Outcome::Mount(status), started.elapsed());
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_stay_beneath_the_export() {
        let none: Vec<&[u8]> = Vec::new();
        assert_eq!(components(b"/"), Some(none.clone()));
        assert_eq!(components(b"//./"), Some(none));
        assert_eq!(components(b"/a//b/"), Some(vec![&b"a"[..], &b"b"[..]]));
        assert_eq!(components(b""), None);
        assert_eq!(components(b"a"), None);
        assert_eq!(components(b"/a/../.."), None);
    }

    #[test]
    fn mount_records_are_per_host_and_path() {
        let m = Mounts::default();
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        let root = Bytes::from_static(b"/");
        m.add(a.clone(), root.clone());
        m.add(a.clone(), root.clone());
        m.add(b.clone(), root.clone());
        assert_eq!(m.list().0.len(), 2);
        m.remove(&a, &root);
        assert_eq!(m.list().0.len(), 1);
        m.remove_host(&b);
        assert!(m.list().0.is_empty());
    }
}
