//! The volume handle (`volume_id`): which file system, and which part of it, a
//! CSI volume is.
//!
//! Grammar, version 1 (the forms users write in static PersistentVolumes and
//! the driver returns from CreateVolume):
//!
//! - `<namespace>/<filesystem>`: the whole file system;
//! - `<namespace>/<filesystem>:<subpath>`: a directory of it (relative path);
//! - `<namespace>/<filesystem>::<accesspoint>`: an AccessPoint of it.
//!
//! Version 1 carries no version marker, so that handles stay short and
//! readable. A later grammar starts with `<version>~`: `~` cannot occur in a
//! namespace name, so every handle ever written keeps parsing as version 1
//! and a newer handle reaching an older driver is refused by name.

use std::{fmt, str::FromStr};

/// What part of the file system a handle names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The whole file system.
    Root,
    /// A directory below the file system root: relative, normalised, no `..`.
    SubPath(String),
    /// An AccessPoint (by object name) in the file system's namespace.
    AccessPoint(String),
}

/// A parsed volume handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeHandle {
    /// Namespace of the FileSystem (and AccessPoint).
    pub namespace: String,
    /// Name of the FileSystem.
    pub file_system: String,
    /// The part of the file system.
    pub target: Target,
}

/// Why a volume handle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The handle is empty.
    #[error("volume handle is empty")]
    Empty,
    /// A `<version>~` prefix this driver does not know.
    #[error(
        "volume handle {handle:?} has version {version:?}; this driver understands version 1 (no prefix)"
    )]
    UnknownVersion {
        /// The handle as given.
        handle: String,
        /// The version text before `~`.
        version: String,
    },
    /// No `/` between namespace and file system.
    #[error("volume handle {0:?} must be <namespace>/<filesystem>[:<subpath> | ::<accesspoint>]")]
    Shape(String),
    /// A namespace, file system or access point name that is not a valid
    /// Kubernetes object name.
    #[error(
        "volume handle {handle:?}: {what} {name:?} is not a valid Kubernetes name (lowercase RFC 1123)"
    )]
    BadName {
        /// The handle as given.
        handle: String,
        /// Which part.
        what: &'static str,
        /// The rejected part.
        name: String,
    },
    /// A sub-path that is absolute, empty, or not normalised.
    #[error(
        "volume handle {handle:?}: subpath {subpath:?} must be a relative path without '.', '..' or empty components"
    )]
    BadSubPath {
        /// The handle as given.
        handle: String,
        /// The rejected sub-path.
        subpath: String,
    },
}

/// An RFC 1123 label (namespaces: at most 63 characters).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An RFC 1123 subdomain (names of custom resources: at most 253 characters).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A relative path made only of normal components: no leading `/`, no `.`,
/// `..` or empty components, no NUL.
pub fn is_clean_relative_path(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

impl FromStr for VolumeHandle {
    type Err = HandleError;

    fn from_str(s: &str) -> Result<Self, HandleError> {
        if s.is_empty() {
            return Err(HandleError::Empty);
        }
        if let Some((version, _)) = s.split_once('~') {
            return Err(HandleError::UnknownVersion {
                handle: s.to_owned(),
                version: version.to_owned(),
            });
        }
        let (namespace, rest) = s
            .split_once('/')
            .ok_or_else(|| HandleError::Shape(s.to_owned()))?;
        let (file_system, target) = match rest.split_once(':') {
            None => (rest, Target::Root),
            Some((fs, after)) => match after.strip_prefix(':') {
                Some(ap) => (fs, Target::AccessPoint(ap.to_owned())),
                None => (fs, Target::SubPath(after.to_owned())),
            },
        };
        let bad_name = |what, name: &str| HandleError::BadName {
            handle: s.to_owned(),
            what,
            name: name.to_owned(),
        };
        if !is_dns_label(namespace) {
            return Err(bad_name("namespace", namespace));
        }
        if !is_dns_subdomain(file_system) {
            return Err(bad_name("filesystem", file_system));
        }
        match &target {
            Target::Root => {}
            Target::SubPath(p) if !is_clean_relative_path(p) => {
                return Err(HandleError::BadSubPath {
                    handle: s.to_owned(),
                    subpath: p.clone(),
                });
            }
            Target::SubPath(_) => {}
            Target::AccessPoint(ap) if !is_dns_subdomain(ap) => {
                return Err(bad_name("accesspoint", ap));
            }
            Target::AccessPoint(_) => {}
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            file_system: file_system.to_owned(),
            target,
        })
    }
}

impl fmt::Display for VolumeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.file_system)?;
        match &self.target {
            Target::Root => Ok(()),
            Target::SubPath(p) => write!(f, ":{p}"),
            Target::AccessPoint(ap) => write!(f, "::{ap}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_form() {
        for text in [
            "team-a/shared",
            "team-a/shared:data",
            "team-a/shared:data/deep/dir name",
            "team-a/shared::pvc-0a1b",
            "ns/fs.with.dots::ap.with.dots",
        ] {
            let h: VolumeHandle = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(h.to_string(), text);
        }
    }

    #[test]
    fn parses_parts() {
        let h: VolumeHandle = "ns/fs::ap".parse().unwrap();
        assert_eq!(
            h,
            VolumeHandle {
                namespace: "ns".into(),
                file_system: "fs".into(),
                target: Target::AccessPoint("ap".into())
            }
        );
        let h: VolumeHandle = "ns/fs:a/b".parse().unwrap();
        assert_eq!(h.target, Target::SubPath("a/b".into()));
        assert_eq!(
            "ns/fs".parse::<VolumeHandle>().unwrap().target,
            Target::Root
        );
    }

    #[test]
    fn refuses_malformed_handles() {
        assert_eq!("".parse::<VolumeHandle>(), Err(HandleError::Empty));
        for bad in [
            "nofs",
            "/fs",
            "ns/",
            "NS/fs",
            "ns/FS",
            "ns/fs:",
            "ns/fs:/abs",
            "ns/fs:a/../b",
            "ns/fs:..",
            "ns/fs:a//b",
            "ns/fs:a/./b",
            "ns/fs:a/",
            "ns/fs::",
            "ns/fs::Bad_Name",
            "ns/fs:::x",
            "ns/a/b",
            "-ns/fs",
        ] {
            assert!(bad.parse::<VolumeHandle>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn refuses_future_versions_by_name() {
        let err = "2~ns/fs::ap".parse::<VolumeHandle>().unwrap_err();
        assert!(err.to_string().contains("version \"2\""), "{err}");
    }
}
