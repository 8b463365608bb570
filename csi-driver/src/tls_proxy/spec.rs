//! Tunnel files: one JSON file per tunnel in the state directory, written by
//! the node plugin (or an operator by hand), read by the proxy on start and
//! whenever the directory changes.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One tunnel: a loopback listener whose connections are forwarded, inside
/// TLS, to a file system's server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TunnelSpec {
    /// Port on 127.0.0.1 the kernel mounts (`mount -o port=<localPort>`).
    pub local_port: u16,
    /// The server to forward to, `host:port` (a Service's DNS name or an IP).
    pub server: String,
    /// The DNS name (or IP) the server certificate must be valid for.
    pub server_name: String,
    /// PEM CA bundle the server certificate must chain to; re-read for each
    /// new connection, so a rotated CA needs no proxy restart.
    pub ca: PathBuf,
    /// The certificate presented to servers that verify their clients
    /// (mTLS); absent: none is presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertificate>,
}

/// A client certificate and its key, as PEM files; re-read for each new
/// connection, so a renewed certificate needs no proxy restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a tunnel file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The state directory could not be listed.
    #[error("listing tunnel state directory {path:?}: {source}")]
    ListDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A tunnel file could not be read.
    #[error("reading tunnel file {path:?}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A tunnel file is not a valid tunnel description.
    #[error("parsing tunnel file {path:?}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: serde_json::Error,
    },
}

/// The tunnel files in `dir`, by name (the file name without `.json`), each
/// parsed or with why it could not be. Other files (temporaries of an
/// atomic write, dot files) are ignored.
pub fn read_dir(dir: &Path) -> Result<BTreeMap<String, Result<TunnelSpec, SpecError>>, SpecError> {
    let list_err = |source| SpecError::ListDir {
        path: dir.to_owned(),
        source,
    };
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(list_err)? {
        let path = entry.map_err(list_err)?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.starts_with('.'))
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        out.insert(name.to_owned(), read_file(&path));
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<TunnelSpec, SpecError> {
    let text = std::fs::read(path).map_err(|source| SpecError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| SpecError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Writes `spec` as `dir/<name>.json` atomically (temporary file, then
/// rename), so the proxy never reads half a file.
pub fn write(dir: &Path, name: &str, spec: &TunnelSpec) -> io::Result<PathBuf> {
    write_atomic(
        dir,
        &format!("{name}.json"),
        &serde_json::to_vec_pretty(spec)?,
    )
}

/// Writes `dir/<file>` through a dot-file and a rename: readers see the old
/// or the new content, never part of it.
pub fn write_atomic(dir: &Path, file: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let path = dir.join(file);
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tunnel_files_and_reports_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let spec = TunnelSpec {
            local_port: 20049,
            server: "fs-1.openefs.svc:2049".into(),
            server_name: "fs-1.openefs.svc".into(),
            ca: "/etc/openefs/tls/ca.crt".into(),
            client_certificate: None,
        };
        write(dir.path(), "vol-a", &spec).unwrap();
        let with_cert = TunnelSpec {
            client_certificate: Some(ClientCertificate {
                cert: "/etc/openefs/client/tls.crt".into(),
                key: "/etc/openefs/client/tls.key".into(),
            }),
            ..spec.clone()
        };
        write(dir.path(), "vol-d", &with_cert).unwrap();
        std::fs::write(dir.path().join("vol-b.json"), "{\"localPort\": 1}").unwrap();
        std::fs::write(dir.path().join(".vol-c.json.tmp"), "{").unwrap();
        std::fs::write(dir.path().join("README"), "not a tunnel").unwrap();
        let text = std::fs::read_to_string(dir.path().join("vol-a.json")).unwrap();
        assert!(text.contains("\"localPort\": 20049"), "{text}");
        assert!(!text.contains("clientCertificate"), "{text}");
        let found = read_dir(dir.path()).unwrap();
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            ["vol-a", "vol-b", "vol-d"]
        );
        assert_eq!(found["vol-a"].as_ref().unwrap(), &spec);
        assert_eq!(found["vol-d"].as_ref().unwrap(), &with_cert);
        assert!(matches!(found["vol-b"], Err(SpecError::Parse { .. })));
        assert!(matches!(
            read_dir(&dir.path().join("missing")),
            Err(SpecError::ListDir { .. })
        ));
    }
}
