//! TLS volumes: the node asks the `tls-proxy` sidecar for a tunnel by writing
//! a tunnel file into the proxy's state directory (a host directory both
//! containers mount), waits until the proxy listens on the tunnel's loopback
//! port, and mounts `127.0.0.1:<port>`; the kernel's NFS traffic then leaves
//! the node only inside TLS. One tunnel per volume, named after the volume
//! id, so unstaging a volume removes exactly its tunnel. The files live on
//! the host, so plugin and proxy restarts keep the ports mounts use.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::volume::Endpoint;
use crate::tls_proxy::spec::{self, ClientCertificate, TunnelSpec};
use crate::tls_proxy::tunnel::trust_roots;

/// The CA file of a tunnel, beside its `<name>.json` (the proxy reads only
/// `.json` files as tunnels).
const CA_SUFFIX: &str = ".ca.crt";

/// Where and how the node gets tunnels from the proxy.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// The proxy's state directory (`openefs-csi tls-proxy --state-dir`).
    pub proxy_dir: PathBuf,
    /// CA bundle for volumes whose context carries none (static volumes),
    /// as a path the proxy can read (both containers mount it at the same
    /// place).
    pub ca: Option<PathBuf>,
    /// Loopback ports tunnels may listen on.
    pub ports: RangeInclusive<u16>,
    /// The node's client certificate, presented to servers that verify
    /// their clients (mTLS), at paths the proxy can read.
    pub client_certificate: Option<ClientCertificate>,
}

/// Why a tunnel could not be set up or removed.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("tls-proxy state directory {dir:?}: {source}")]
    StateDir { dir: PathBuf, source: io::Error },
    #[error("writing tunnel file for volume {volume} in {dir:?}: {source}")]
    Write {
        volume: String,
        dir: PathBuf,
        source: io::Error,
    },
    #[error(
        "volume {0} carries no CA certificate (volume context caBundle) and the node plugin has \
         no --tls-ca; cannot verify its server"
    )]
    NoCa(String),
    #[error(
        "volume {volume}: caBundle of the volume context is not a PEM CA certificate: {reason}"
    )]
    BadCa { volume: String, reason: String },
    #[error(
        "no free loopback port for a TLS tunnel in {first}-{last}: every port is taken by a \
         tunnel file or another program (raise --tls-port-range)"
    )]
    NoFreePort { first: u16, last: u16 },
    #[error(
        "the tls-proxy sidecar did not open port {port} for volume {volume} within {waited:?}; \
         is the tls-proxy container running with --state-dir {dir:?}? (its log says why a \
         tunnel file is refused)"
    )]
    ProxyNotListening {
        volume: String,
        port: u16,
        dir: PathBuf,
        waited: Duration,
    },
}

/// The tunnel file name (without `.json`) of a volume: the id with every
/// byte outside `[A-Za-z0-9-]` written as `_XX`, so distinct ids never share
/// a file and ids with `/` or `:` are still plain file names.
pub fn tunnel_name(volume_id: &str) -> String {
    let mut name = String::with_capacity(volume_id.len());
    for b in volume_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("_{b:02X}"));
        }
    }
    name
}

impl TlsConfig {
    /// Makes sure the volume has a tunnel to `endpoint` and returns its
    /// local port: the existing tunnel's port (a restaged volume keeps it),
    /// else the first port of the range that no tunnel file names and
    /// nothing else listens on. A `ca_bundle` (PEM) is written beside the
    /// tunnel file for the proxy to read; without one the node's `--tls-ca`
    /// is the tunnel's CA.
    pub fn ensure_tunnel(
        &self,
        volume_id: &str,
        endpoint: &Endpoint,
        ca_bundle: Option<&str>,
    ) -> Result<u16, TunnelError> {
        let dir = &self.proxy_dir;
        let state_err = |source| TunnelError::StateDir {
            dir: dir.clone(),
            source,
        };
        let name = tunnel_name(volume_id);
        let write_err = |source| TunnelError::Write {
            volume: volume_id.to_owned(),
            dir: dir.clone(),
            source,
        };
        let ca = match (ca_bundle, &self.ca) {
            (Some(pem), _) => {
                trust_roots(pem.as_bytes()).map_err(|reason| TunnelError::BadCa {
                    volume: volume_id.to_owned(),
                    reason,
                })?;
                let file = format!("{name}{CA_SUFFIX}");
                let path = dir.join(&file);
                if std::fs::read(&path).ok().as_deref() != Some(pem.as_bytes()) {
                    spec::write_atomic(dir, &file, pem.as_bytes()).map_err(write_err)?;
                }
                path
            }
            (None, Some(ca)) => ca.clone(),
            (None, None) => return Err(TunnelError::NoCa(volume_id.to_owned())),
        };
        let existing = spec::read_dir(dir).map_err(|e| match e {
            spec::SpecError::ListDir { source, .. } => state_err(source),
            other => state_err(io::Error::other(other)),
        })?;
        let mut wanted = TunnelSpec {
            local_port: 0,
            server: endpoint.authority(),
            server_name: endpoint.host.clone(),
            ca,
            client_certificate: self.client_certificate.clone(),
        };
        let port = match existing.get(&name) {
            Some(Ok(current)) => {
                wanted.local_port = current.local_port;
                if *current == wanted {
                    return Ok(current.local_port);
                }
                current.local_port
            }
            _ => {
                let taken: BTreeSet<u16> = existing
                    .values()
                    .filter_map(|s| s.as_ref().ok().map(|s| s.local_port))
                    .collect();
                self.ports
                    .clone()
                    .find(|p| !taken.contains(p) && port_is_free(*p))
                    .ok_or(TunnelError::NoFreePort {
                        first: *self.ports.start(),
                        last: *self.ports.end(),
                    })?
            }
        };
        wanted.local_port = port;
        spec::write(dir, &name, &wanted).map_err(write_err)?;
        tracing::info!(volume_id, port, server = %wanted.server, "tunnel file written for the tls-proxy");
        Ok(port)
    }

    /// Removes the volume's tunnel (the proxy closes its listener) and its
    /// CA file; a volume without them is fine. Whether there was a tunnel.
    pub fn remove_tunnel(&self, volume_id: &str) -> Result<bool, TunnelError> {
        let name = tunnel_name(volume_id);
        let remove = |file: String| match std::fs::remove_file(self.proxy_dir.join(file)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(TunnelError::StateDir {
                dir: self.proxy_dir.clone(),
                source,
            }),
        };
        let had = remove(format!("{name}.json"))?;
        remove(format!("{name}{CA_SUFFIX}"))?;
        Ok(had)
    }

    /// Waits until the proxy accepts connections on `port`, at most
    /// `timeout`: mounting before that would make the kernel retry a
    /// refused connection for minutes.
    pub async fn wait_listening(
        &self,
        volume_id: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<(), TunnelError> {
        let start = Instant::now();
        loop {
            if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(TunnelError::ProxyNotListening {
                    volume: volume_id.to_owned(),
                    port,
                    dir: self.proxy_dir.clone(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether nothing listens on the loopback port now (the proxy binds it
/// moments later; a program that takes it meanwhile makes the proxy log
/// the conflict and the stage time out, never a mount to the wrong peer,
/// since the proxy is what checks the server certificate).
fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn has_tunnel(dir: &Path, volume_id: &str) -> bool {
        dir.join(format!("{}.json", tunnel_name(volume_id)))
            .exists()
    }

    fn config(dir: &Path, ports: RangeInclusive<u16>) -> TlsConfig {
        TlsConfig {
            proxy_dir: dir.to_owned(),
            ca: Some("/etc/openefs/tls/ca.crt".into()),
            ports,
            client_certificate: None,
        }
    }

    fn endpoint(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    #[test]
    fn names_are_file_names_and_distinct() {
        assert_eq!(tunnel_name("fs-1a2b"), "fs-1a2b");
        assert_eq!(tunnel_name("fs-1:fsap-2"), "fs-1_3Afsap-2");
        assert_eq!(tunnel_name("fs-1::a/b"), "fs-1_3A_3Aa_2Fb");
        assert_ne!(tunnel_name("a_3A"), tunnel_name("a:"));
        assert!(!tunnel_name(".hidden").starts_with('.'));
    }

    #[test]
    fn tunnels_get_distinct_ports_and_keep_them() {
        let dir = tempfile::tempdir().unwrap();
        // A port of the range something else listens on is skipped.
        let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let first = busy.local_addr().unwrap().port();
        let last = first.saturating_add(3);
        let tls = config(dir.path(), first..=last);
        let a = tls
            .ensure_tunnel("fs-a", &endpoint("fs-a.ns.svc:2049"), None)
            .unwrap();
        let b = tls
            .ensure_tunnel("fs-b:fsap-1", &endpoint("10.0.0.7"), None)
            .unwrap();
        assert_ne!(a, first, "a port in use elsewhere is not handed out");
        assert_ne!(a, b);
        assert!((first..=last).contains(&a) && (first..=last).contains(&b));
        assert_eq!(
            tls.ensure_tunnel("fs-a", &endpoint("fs-a.ns.svc:2049"), None)
                .unwrap(),
            a,
            "restaging keeps the port"
        );
        let files = spec::read_dir(dir.path()).unwrap();
        let b_spec = files[&tunnel_name("fs-b:fsap-1")].as_ref().unwrap();
        assert_eq!(b_spec.server, "10.0.0.7:2049");
        assert_eq!(b_spec.server_name, "10.0.0.7");
        // The server moved: same port, new target.
        assert_eq!(
            tls.ensure_tunnel("fs-a", &endpoint("fs-a2.ns.svc:2049"), None)
                .unwrap(),
            a
        );
        let files = spec::read_dir(dir.path()).unwrap();
        assert_eq!(files["fs-a"].as_ref().unwrap().server, "fs-a2.ns.svc:2049");
        assert_eq!(files["fs-a"].as_ref().unwrap().client_certificate, None);
        // The node got a client certificate: the tunnel presents it.
        let node_cert = ClientCertificate {
            cert: "/etc/openefs/client/tls.crt".into(),
            key: "/etc/openefs/client/tls.key".into(),
        };
        let tls = TlsConfig {
            client_certificate: Some(node_cert.clone()),
            ..tls
        };
        assert_eq!(
            tls.ensure_tunnel("fs-a", &endpoint("fs-a2.ns.svc:2049"), None)
                .unwrap(),
            a
        );
        let files = spec::read_dir(dir.path()).unwrap();
        assert_eq!(
            files["fs-a"].as_ref().unwrap().client_certificate,
            Some(node_cert)
        );
        assert!(tls.remove_tunnel("fs-a").unwrap());
        assert!(!tls.remove_tunnel("fs-a").unwrap());
        assert!(!has_tunnel(dir.path(), "fs-a"));
        assert!(has_tunnel(dir.path(), "fs-b:fsap-1"));
    }

    #[test]
    fn a_full_range_and_a_missing_directory_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = busy.local_addr().unwrap().port();
        let tls = config(dir.path(), port..=port);
        let err = tls
            .ensure_tunnel("fs-a", &endpoint("fs-a.ns.svc"), None)
            .unwrap_err();
        assert!(matches!(err, TunnelError::NoFreePort { .. }), "{err}");
        let gone = config(&dir.path().join("missing"), 1..=2);
        let err = gone
            .ensure_tunnel("fs-a", &endpoint("fs-a.ns.svc"), None)
            .unwrap_err();
        assert!(matches!(err, TunnelError::StateDir { .. }), "{err}");
    }

    #[test]
    fn a_volume_ca_is_written_beside_the_tunnel_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut tls = config(dir.path(), 20049..=20448);
        tls.ca = None;
        let fs = endpoint("fs-a.ns.svc");
        let err = tls.ensure_tunnel("fs-a", &fs, None).unwrap_err();
        assert!(matches!(err, TunnelError::NoCa(_)), "{err}");
        let err = tls
            .ensure_tunnel("fs-a", &fs, Some("not a certificate"))
            .unwrap_err();
        assert!(matches!(err, TunnelError::BadCa { .. }), "{err}");
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()])
            .unwrap()
            .cert
            .pem();
        tls.ensure_tunnel("fs-a", &fs, Some(&ca)).unwrap();
        let files = spec::read_dir(dir.path()).unwrap();
        let ca_path = &files["fs-a"].as_ref().unwrap().ca;
        assert_eq!(ca_path, &dir.path().join("fs-a.ca.crt"));
        assert_eq!(std::fs::read_to_string(ca_path).unwrap(), ca);
        assert!(tls.remove_tunnel("fs-a").unwrap());
        assert!(!ca_path.exists(), "the CA file goes with the tunnel");
    }

    #[tokio::test]
    async fn waiting_for_the_proxy_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let tls = config(dir.path(), 1..=2);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let open = listener.local_addr().unwrap().port();
        tls.wait_listening("fs-a", open, Duration::from_secs(5))
            .await
            .unwrap();
        drop(listener);
        let err = tls
            .wait_listening("fs-a", open, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TunnelError::ProxyNotListening { .. }),
            "{err}"
        );
    }
}
