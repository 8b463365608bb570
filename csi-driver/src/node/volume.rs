//! What the node mounts for a volume: the volume context (from CreateVolume,
//! or a static PersistentVolume's `volumeAttributes`) and the volume handle
//! become an NFS server endpoint and an export path.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
};

use crate::{
    controller::context,
    handle::{HandleError, Target, VolumeHandle, is_clean_relative_path, is_dns_subdomain},
};

/// The NFS server of a volume: a DNS name or an address, with an optional
/// port (2049 when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port, when the endpoint names one.
    pub port: Option<u16>,
}

/// The NFS port when the endpoint names none.
pub const NFS_PORT: u16 = 2049;

/// What to mount for one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The server.
    pub endpoint: Endpoint,
    /// Absolute, normalised path in the server's export.
    pub path: String,
    /// The volume must only be reached through TLS.
    pub encrypt_in_transit: bool,
    /// The CA the server's certificate must chain to (PEM), when the volume
    /// context carries one; else the node's `--tls-ca`.
    pub ca_bundle: Option<String>,
}

/// A volume the node cannot mount as described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    /// The volume id is not a handle of this driver.
    #[error(transparent)]
    Handle(#[from] HandleError),
    /// A required volume context key is absent.
    #[error(
        "volume context has no {0:?} (a static PersistentVolume must set it in volumeAttributes)"
    )]
    Missing(&'static str),
    /// The `server` value is not `host`, `host:port`, `[ipv6]` or `[ipv6]:port`.
    #[error("volume context server {0:?} is not a host name or IP address with an optional port")]
    Server(String),
    /// The `path` value is not absolute and normalised.
    #[error("volume context path {0:?} must be absolute, without '.', '..' or empty components")]
    Path(String),
    /// `encryptInTransit` is not `true` or `false`.
    #[error("volume context encryptInTransit {0:?} must be \"true\" or \"false\"")]
    Encrypt(String),
}

impl std::str::FromStr for Endpoint {
    type Err = VolumeError;

    fn from_str(s: &str) -> Result<Self, VolumeError> {
        let bad = || VolumeError::Server(s.to_owned());
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad);
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (addr, after) = rest.split_once(']').ok_or_else(bad)?;
            addr.parse::<Ipv6Addr>().map_err(|_| bad())?;
            match after {
                "" => (addr, None),
                _ => (addr, Some(port(after.strip_prefix(':').ok_or_else(bad)?)?)),
            }
        } else if s.parse::<Ipv6Addr>().is_ok() {
            (s, None)
        } else {
            match s.split_once(':') {
                Some((host, p)) => (host, Some(port(p)?)),
                None => (s, None),
            }
        };
        let valid_host =
            host.parse::<IpAddr>().is_ok() || is_dns_subdomain(&host.to_ascii_lowercase());
        if !valid_host {
            return Err(bad());
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }
}

impl Endpoint {
    /// The host as a mount source writes it (IPv6 in brackets).
    fn source_host(&self) -> String {
        if self.host.parse::<Ipv6Addr>().is_ok() {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// `host:port` (IPv6 in brackets), the port defaulting to NFS's.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.source_host(), self.port.unwrap_or(NFS_PORT))
    }
}

impl VolumeMount {
    /// Read the volume context; the path falls back to the handle's sub-path
    /// (or `/` for a whole file system), so a static volume needs only
    /// `server` (and `encryptInTransit: "false"` until TLS mounts exist).
    pub fn parse(volume_id: &str, ctx: &HashMap<String, String>) -> Result<Self, VolumeError> {
        let handle: VolumeHandle = volume_id.parse()?;
        let endpoint = ctx
            .get(context::SERVER)
            .ok_or(VolumeError::Missing(context::SERVER))?
            .parse()?;
        let path = match (ctx.get(context::PATH), &handle.target) {
            (Some(path), _) => path.clone(),
            (None, Target::Root) => "/".to_owned(),
            (None, Target::SubPath(sub)) => format!("/{sub}"),
            (None, Target::AccessPoint(_)) => return Err(VolumeError::Missing(context::PATH)),
        };
        let clean = match path.strip_prefix('/') {
            Some("") => true,
            Some(rest) => is_clean_relative_path(rest),
            None => false,
        };
        if !clean {
            return Err(VolumeError::Path(path));
        }
        // Secure by default: a volume that does not say otherwise is one
        // that must not cross the network in the clear.
        let encrypt_in_transit = match ctx.get(context::ENCRYPT_IN_TRANSIT).map(String::as_str) {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => return Err(VolumeError::Encrypt(other.to_owned())),
        };
        Ok(Self {
            endpoint,
            path,
            encrypt_in_transit,
            ca_bundle: ctx.get(context::CA_BUNDLE).cloned(),
        })
    }

    /// The mount source, `server:/path`, as mountinfo shows it afterwards.
    pub fn source(&self) -> String {
        format!("{}:{}", self.endpoint.source_host(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn endpoints() {
        for (text, host, port) in [
            (
                "fs-1.ns.svc.cluster.local",
                "fs-1.ns.svc.cluster.local",
                None,
            ),
            ("10.0.2.100", "10.0.2.100", None),
            ("10.0.2.100:2050", "10.0.2.100", Some(2050)),
            ("nfs:12049", "nfs", Some(12049)),
            ("[fd00::1]:2049", "fd00::1", Some(2049)),
            ("[fd00::1]", "fd00::1", None),
            ("fd00::1", "fd00::1", None),
        ] {
            let e: Endpoint = text.parse().unwrap();
            assert_eq!((e.host.as_str(), e.port), (host, port), "{text}");
        }
        for bad in [
            "",
            ":2049",
            "host:",
            "host:0",
            "host:99999",
            "a,b",
            "host name",
            "[fd00::1",
            "[nothost]:1",
            "[fd00::1]x",
            "-x.svc",
            "a/b",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn dynamic_volume_context() {
        let v = VolumeMount::parse(
            "storage/shared::pvc-1",
            &ctx(&[
                ("server", "fs-1.storage.svc"),
                ("path", "/dynamic/pvc-1"),
                ("encryptInTransit", "false"),
                ("fileSystemId", "fs-0123"),
                ("csi.storage.k8s.io/pod.name", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(v.source(), "fs-1.storage.svc:/dynamic/pvc-1");
        assert!(!v.encrypt_in_transit);
    }

    #[test]
    fn static_volumes_take_the_path_from_the_handle() {
        let server = ctx(&[("server", "fd00::5")]);
        let v = VolumeMount::parse("ns/fs", &server).unwrap();
        assert_eq!(v.source(), "[fd00::5]:/");
        assert!(v.encrypt_in_transit, "TLS unless the volume says otherwise");
        let v = VolumeMount::parse("ns/fs:a/b", &server).unwrap();
        assert_eq!(v.path, "/a/b");
        assert_eq!(
            VolumeMount::parse("ns/fs::ap", &server),
            Err(VolumeError::Missing("path"))
        );
    }

    #[test]
    fn refused_contexts() {
        assert!(matches!(
            VolumeMount::parse("not a handle", &ctx(&[("server", "h")])),
            Err(VolumeError::Handle(_))
        ));
        assert_eq!(
            VolumeMount::parse("ns/fs", &ctx(&[])),
            Err(VolumeError::Missing("server"))
        );
        for path in ["relative", "/a/../b", "/a/", "//", "/a//b"] {
            assert_eq!(
                VolumeMount::parse("ns/fs", &ctx(&[("server", "h"), ("path", path)])),
                Err(VolumeError::Path(path.into())),
            );
        }
        assert!(matches!(
            VolumeMount::parse(
                "ns/fs",
                &ctx(&[("server", "h"), ("encryptInTransit", "yes")])
            ),
            Err(VolumeError::Encrypt(_))
        ));
    }
}
