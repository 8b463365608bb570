//! Mount options: the driver's NFS defaults, the user's options (a PV's or
//! StorageClass's `mountOptions`, which reach the node as the volume
//! capability's `mount_flags`) checked against an allow-list, and the text
//! the kernel's NFS option parser takes from mount(2).
//!
//! mount(8) splits generic options (`ro`, `nosuid`, `noatime`, ...) into
//! mount(2) flags before it calls the file system; the kernel's NFS parser
//! refuses them as text, so they are split off here the same way.

use std::net::IpAddr;

use nix::mount::MsFlags;

/// The driver's NFS options, in the order they are written.
/// rsize/wsize 1 MiB: the largest the Linux client uses, fewest round trips.
/// hard + timeo=600 + retrans=2: as EFS recommends, an outage stalls I/O
/// instead of corrupting data with EIO. noresvport: a reconnect takes a new
/// source port, so a restarted server's stale TCP state never blocks it.
pub const DEFAULTS: [&str; 7] = [
    "vers=4.1",
    "rsize=1048576",
    "wsize=1048576",
    "hard",
    "timeo=600",
    "retrans=2",
    "noresvport",
];

/// Generic options and the mount(2) flag each sets (`true`) or clears.
const VFS_FLAGS: [(&str, MsFlags, bool); 20] = [
    ("ro", MsFlags::MS_RDONLY, true),
    ("rw", MsFlags::MS_RDONLY, false),
    ("nosuid", MsFlags::MS_NOSUID, true),
    ("suid", MsFlags::MS_NOSUID, false),
    ("nodev", MsFlags::MS_NODEV, true),
    ("dev", MsFlags::MS_NODEV, false),
    ("noexec", MsFlags::MS_NOEXEC, true),
    ("exec", MsFlags::MS_NOEXEC, false),
    ("noatime", MsFlags::MS_NOATIME, true),
    ("atime", MsFlags::MS_NOATIME, false),
    ("nodiratime", MsFlags::MS_NODIRATIME, true),
    ("diratime", MsFlags::MS_NODIRATIME, false),
    ("relatime", MsFlags::MS_RELATIME, true),
    ("norelatime", MsFlags::MS_RELATIME, false),
    ("strictatime", MsFlags::MS_STRICTATIME, true),
    ("nostrictatime", MsFlags::MS_STRICTATIME, false),
    ("sync", MsFlags::MS_SYNCHRONOUS, true),
    ("async", MsFlags::MS_SYNCHRONOUS, false),
    ("dirsync", MsFlags::MS_DIRSYNC, true),
    ("lazytime", MsFlags::MS_LAZYTIME, true),
];

/// NFS options without a value, with the group they belong to: a later
/// option of the same group replaces an earlier one (the user's `soft`
/// replaces the default `hard`).
const NFS_SWITCHES: [(&str, &str); 11] = [
    ("hard", "recovery"),
    ("soft", "recovery"),
    ("softerr", "recovery"),
    ("ac", "ac"),
    ("noac", "ac"),
    ("cto", "cto"),
    ("nocto", "cto"),
    ("sharecache", "sharecache"),
    ("nosharecache", "sharecache"),
    ("resvport", "resvport"),
    ("noresvport", "resvport"),
];

/// Options the driver derives from the volume itself; a user value would
/// point the mount somewhere else or at a transport the server lacks.
const DRIVER_OWNED: [&str; 10] = [
    "addr",
    "clientaddr",
    "port",
    "proto",
    "minorversion",
    "mountaddr",
    "mountport",
    "mountproto",
    "mounthost",
    "xprtsec",
];

/// A user mount option that is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// Not on the allow-list.
    #[error(
        "mount option {0:?} is not supported (see docs/csi.md for the options a volume may set)"
    )]
    Unknown(String),
    /// Set by the driver from the volume context.
    #[error("mount option {0:?} is set by the driver from the volume and cannot be given")]
    DriverOwned(String),
    /// A known option with a value out of range or of the wrong form.
    #[error("mount option {option:?}: {reason}")]
    BadValue {
        /// The option as given.
        option: String,
        /// What is wrong.
        reason: String,
    },
}

/// The options of one NFS mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// mount(2) flags from the generic options.
    pub flags: MsFlags,
    /// NFS options as text, without the addresses (added per mount).
    pub nfs: Vec<String>,
}

/// The group an NFS option belongs to (its key, or its switch group).
fn group(option: &str) -> &str {
    let key = option.split_once('=').map_or(option, |(k, _)| k);
    NFS_SWITCHES
        .iter()
        .find(|(name, _)| *name == key)
        .map_or(key, |(_, g)| g)
}

/// Every option of `mount_flags`, whose entries may themselves be
/// comma-separated lists.
fn split(mount_flags: &[String]) -> impl Iterator<Item = &str> {
    mount_flags
        .iter()
        .flat_map(|f| f.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty())
}

fn number(
    option: &str,
    value: &str,
    range: std::ops::RangeInclusive<u32>,
) -> Result<(), OptionsError> {
    match value.parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(()),
        _ => Err(OptionsError::BadValue {
            option: option.to_owned(),
            reason: format!("must be a number in {}..={}", range.start(), range.end()),
        }),
    }
}

fn one_of(option: &str, value: &str, allowed: &[&str]) -> Result<(), OptionsError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(OptionsError::BadValue {
            option: option.to_owned(),
            reason: format!("must be one of {}", allowed.join(", ")),
        })
    }
}

/// Check one NFS option; `Ok(text)` is what goes to the kernel.
fn nfs_option(option: &str) -> Result<String, OptionsError> {
    let Some((key, value)) = option.split_once('=') else {
        if NFS_SWITCHES.iter().any(|(name, _)| *name == option) {
            return Ok(option.to_owned());
        }
        if DRIVER_OWNED.contains(&option) {
            return Err(OptionsError::DriverOwned(option.to_owned()));
        }
        return Err(OptionsError::Unknown(option.to_owned()));
    };
    match key {
        "vers" | "nfsvers" => {
            one_of(option, value, &["4.1"])?;
            return Ok(format!("vers={value}"));
        }
        "rsize" | "wsize" => number(option, value, 4096..=1_048_576)?,
        // Tenths of a second: up to ten minutes per try.
        "timeo" => number(option, value, 1..=6000)?,
        "retrans" => number(option, value, 0..=100)?,
        "actimeo" | "acregmin" | "acregmax" | "acdirmin" | "acdirmax" => {
            number(option, value, 0..=86_400)?;
        }
        "nconnect" => number(option, value, 1..=16)?,
        "lookupcache" => one_of(option, value, &["all", "none", "pos", "positive"])?,
        "local_lock" => one_of(option, value, &["none", "all", "flock", "posix"])?,
        key if DRIVER_OWNED.contains(&key) => {
            return Err(OptionsError::DriverOwned(option.to_owned()));
        }
        _ => return Err(OptionsError::Unknown(option.to_owned())),
    }
    Ok(option.to_owned())
}

/// The generic mount flags of `mount_flags` (for a bind mount, which takes
/// no NFS options); the NFS options are validated all the same, so a bad
/// one is reported at whichever RPC sees it first.
pub fn vfs_flags(mount_flags: &[String]) -> Result<MsFlags, OptionsError> {
    Ok(parse(mount_flags)?.flags)
}

/// The driver's defaults overlaid with the user's options.
pub fn parse(mount_flags: &[String]) -> Result<MountOptions, OptionsError> {
    let mut flags = MsFlags::empty();
    let mut nfs: Vec<String> = DEFAULTS.iter().map(|d| (*d).to_owned()).collect();
    for option in split(mount_flags) {
        if let Some((_, flag, set)) = VFS_FLAGS.iter().find(|(name, ..)| *name == option) {
            flags.set(*flag, *set);
            continue;
        }
        let text = nfs_option(option)?;
        let g = group(&text).to_owned();
        match nfs.iter_mut().find(|o| group(o) == g) {
            Some(existing) => *existing = text,
            None => nfs.push(text),
        }
    }
    Ok(MountOptions { flags, nfs })
}

impl MountOptions {
    /// The option text for mount(2): the NFS options, the server's address
    /// (the kernel does not resolve names), the address the server can call
    /// back (what mount.nfs passes as clientaddr) and a port other than
    /// 2049.
    pub fn data(&self, addr: IpAddr, clientaddr: IpAddr, port: Option<u16>) -> String {
        let mut all = self.nfs.clone();
        all.push(format!("addr={addr}"));
        all.push(format!("clientaddr={clientaddr}"));
        if let Some(port) = port {
            all.push(format!("port={port}"));
        }
        all.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_and_addresses() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.flags, MsFlags::empty());
        assert_eq!(
            o.data(
                "10.0.2.100".parse().unwrap(),
                "10.0.2.15".parse().unwrap(),
                None
            ),
            "vers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,\
             addr=10.0.2.100,clientaddr=10.0.2.15"
        );
        assert!(
            o.data("::1".parse().unwrap(), "::1".parse().unwrap(), Some(2050))
                .ends_with("addr=::1,clientaddr=::1,port=2050")
        );
    }

    #[test]
    fn user_options_replace_defaults_of_their_group() {
        let o = parse(&flags(&[
            "soft",
            "rsize=65536,timeo=100",
            "nfsvers=4.1",
            "noac",
            "nconnect=4",
            "lookupcache=none",
            "resvport",
        ]))
        .unwrap();
        assert_eq!(
            o.nfs,
            [
                "vers=4.1",
                "rsize=65536",
                "wsize=1048576",
                "soft",
                "timeo=100",
                "retrans=2",
                "resvport",
                "noac",
                "nconnect=4",
                "lookupcache=none"
            ]
        );
    }

    #[test]
    fn generic_options_become_flags() {
        let o = parse(&flags(&["ro", "nosuid,nodev", "noatime", "noexec", "exec"])).unwrap();
        assert_eq!(
            o.flags,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME
        );
        assert!(!o.nfs.iter().any(|n| n == "ro" || n == "nosuid"));
        assert_eq!(vfs_flags(&flags(&["ro", "rw"])).unwrap(), MsFlags::empty());
        assert!(vfs_flags(&flags(&["ro", "bogus"])).is_err());
    }

    #[test]
    fn refused_options_are_named() {
        for (option, driver_owned) in [
            ("addr=1.2.3.4", true),
            ("clientaddr=1.2.3.4", true),
            ("port=2049", true),
            ("proto=udp", true),
            ("minorversion=0", true),
            ("xprtsec=tls", true),
            ("_netdev", false),
            ("fsc", false),
            ("sec=krb5", false),
            ("bg", false),
        ] {
            let err = parse(&flags(&[option])).unwrap_err();
            assert_eq!(
                matches!(err, OptionsError::DriverOwned(_)),
                driver_owned,
                "{option}: {err}"
            );
            assert!(err.to_string().contains(option), "{err}");
        }
        for option in [
            "vers=3",
            "vers=4.2",
            "rsize=1",
            "wsize=2097152",
            "timeo=0",
            "nconnect=17",
            "retrans=x",
            "lookupcache=some",
            "local_lock=maybe",
        ] {
            let err = parse(&flags(&[option])).unwrap_err();
            assert!(
                matches!(err, OptionsError::BadValue { .. }),
                "{option}: {err}"
            );
        }
    }

    #[test]
    fn empty_entries_are_ignored() {
        assert_eq!(parse(&flags(&["", " , ,"])).unwrap(), parse(&[]).unwrap());
    }
}
