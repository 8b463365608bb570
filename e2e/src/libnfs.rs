//! libnfs's command-line tools (Debian `libnfs-utils`: `nfs-ls`, `nfs-cp`,
//! `nfs-cat`), a userspace NFS client nobody here wrote. They take URLs that
//! name the NFS and MOUNT ports explicitly, so no portmapper is involved.
//!
//! Debian 12 ships libnfs 4.0.0, which has no `nfs-stat` (that tool came with
//! libnfs 5; sid's 5.0.2 needs glibc 2.38, bookworm has 2.36). `nfs-ls`'s long
//! listing carries the same metadata: mode, links, owner, size.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::command::output_within;

/// Long enough for an 8 MiB copy on a loaded 2-core machine; a hung client
/// fails its test instead of stalling the suite.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Which NFS protocol libnfs speaks to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// NFSv3; the export is mounted with MOUNT v3 first.
    V3 { nfs_port: u16, mount_port: u16 },
    /// NFSv4.0 (libnfs has no 4.1); no MOUNT protocol.
    V4 { port: u16 },
}

/// A server's export root on 127.0.0.1, as libnfs URLs address it.
#[derive(Clone, Copy, Debug)]
pub struct Server {
    pub version: Version,
    /// Where the server listens (127.0.0.1 unless [`Server::at`] says).
    pub host: Ipv4Addr,
}

impl Server {
    pub fn v3(nfs_port: u16, mount_port: u16) -> Self {
        Self {
            version: Version::V3 {
                nfs_port,
                mount_port,
            },
            host: Ipv4Addr::LOCALHOST,
        }
    }

    /// The same server at `host` instead of loopback.
    pub fn at(self, host: Ipv4Addr) -> Self {
        Self { host, ..self }
    }

    pub fn v4(port: u16) -> Self {
        Self {
            version: Version::V4 { port },
            host: Ipv4Addr::LOCALHOST,
        }
    }

    fn query(&self) -> String {
        match self.version {
            Version::V3 {
                nfs_port,
                mount_port,
            } => format!("?version=3&nfsport={nfs_port}&mountport={mount_port}"),
            Version::V4 { port } => format!("?version=4&nfsport={port}"),
        }
    }

    /// The export root, as `nfs-ls` and fio's `nfs_url` take it.
    pub fn root_url(&self) -> String {
        format!("nfs://{}/{}", self.host, self.query())
    }

    /// A file directly in the export root. libnfs splits a file URL at its
    /// last `/` and mounts what precedes it, so `//name` mounts `/`; a file
    /// in a subdirectory would need that subdirectory to be an export, which
    /// is why only plain names are accepted.
    pub fn file_url(&self, name: &str) -> Result<String> {
        ensure!(
            !name.is_empty()
                && name != "."
                && name != ".."
                && !name.contains(['/', '?', '&', '#', '%']),
            "{name:?} must be a plain file name (libnfs URLs address the export root)"
        );
        Ok(format!("nfs://{}//{name}{}", self.host, self.query()))
    }
}

/// One line of `nfs-ls`'s long listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// As `ls -l` prints it, e.g. `-rw-r--r--`.
    pub mode: String,
    pub links: u64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub name: String,
}

impl Entry {
    /// Parses `-rw-r--r--  1     0     0      8388608 big.bin`; the name
    /// is the rest of the line, so it may contain spaces.
    fn parse(line: &str) -> Result<Self> {
        let mut rest = line.trim_start();
        let mut field = || -> Result<&str> {
            let (f, tail) = rest
                .split_once(char::is_whitespace)
                .with_context(|| format!("nfs-ls line {line:?} has too few fields"))?;
            rest = tail.trim_start();
            Ok(f)
        };
        let mode = field()?.to_owned();
        let links = field()?.parse().context("link count")?;
        let uid = field()?.parse().context("uid")?;
        let gid = field()?.parse().context("gid")?;
        let size = field()?.parse().context("size")?;
        ensure!(
            mode.len() == 10 && !rest.is_empty(),
            "nfs-ls line {line:?} is not a long listing"
        );
        Ok(Self {
            mode,
            links,
            uid,
            gid,
            size,
            name: rest.to_owned(),
        })
    }
}

/// The tools, each run with a time limit; a failure carries the tool's stderr.
#[derive(Clone, Copy, Debug)]
pub struct Libnfs {
    pub timeout: Duration,
}

impl Default for Libnfs {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Libnfs {
    /// The long listing of the export root.
    pub fn ls(&self, server: &Server) -> Result<Vec<Entry>> {
        let out = self.run("nfs-ls", [OsStr::new(&server.root_url())])?;
        String::from_utf8(out)
            .context("nfs-ls printed non-UTF-8 names")?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(Entry::parse)
            .collect()
    }

    /// The contents of `name` in the export root.
    pub fn cat(&self, server: &Server, name: &str) -> Result<Vec<u8>> {
        self.run("nfs-cat", [OsStr::new(&server.file_url(name)?)])
    }

    /// Copies the local file `local` to `name` in the export root.
    pub fn upload(&self, local: &Path, server: &Server, name: &str) -> Result<()> {
        let url = server.file_url(name)?;
        self.run("nfs-cp", [local.as_os_str(), OsStr::new(&url)])
            .map(drop)
    }

    /// Copies `name` in the export root to the local file `local`.
    pub fn download(&self, server: &Server, name: &str, local: &Path) -> Result<()> {
        let url = server.file_url(name)?;
        self.run("nfs-cp", [OsStr::new(&url), local.as_os_str()])
            .map(drop)
    }

    /// Runs `tool` and returns its stdout; a non-zero exit is an error with
    /// the command line and stderr, since libnfs reports the NFS status there.
    fn run<'a>(&self, tool: &str, args: impl IntoIterator<Item = &'a OsStr>) -> Result<Vec<u8>> {
        let mut cmd = Command::new(tool);
        cmd.args(args);
        let line = format!("{cmd:?}");
        let out = output_within(&mut cmd, self.timeout)
            .with_context(|| format!("running {tool} (Debian package libnfs-utils): {line}"))?;
        if !out.status.success() {
            bail!(
                "{line} failed with {}; stderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        Ok(out.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_ports() {
        let v3 = Server::v3(2049, 20048);
        assert_eq!(
            v3.root_url(),
            "nfs://127.0.0.1/?version=3&nfsport=2049&mountport=20048"
        );
        assert_eq!(
            v3.file_url("a b.bin").unwrap(),
            "nfs://127.0.0.1//a b.bin?version=3&nfsport=2049&mountport=20048"
        );
        assert_eq!(
            Server::v4(4000).file_url("f").unwrap(),
            "nfs://127.0.0.1//f?version=4&nfsport=4000"
        );
        assert_eq!(
            Server::v4(4000).at(Ipv4Addr::new(10, 0, 0, 2)).root_url(),
            "nfs://10.0.0.2/?version=4&nfsport=4000"
        );
    }

    #[test]
    fn file_urls_take_plain_names_only() {
        let s = Server::v4(1);
        for bad in ["", ".", "..", "d/f", "f?x=1", "a&b", "a%20"] {
            assert!(s.file_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_long_listing_lines() {
        let e = Entry::parse("-rw-rw----  1  1000   100      8388608 big file.bin").unwrap();
        assert_eq!(
            e,
            Entry {
                mode: "-rw-rw----".into(),
                links: 1,
                uid: 1000,
                gid: 100,
                size: 8_388_608,
                name: "big file.bin".into(),
            }
        );
        assert!(Entry::parse("-rw-r--r--  1  0  0").is_err());
        assert!(Entry::parse("total 8").is_err());
        assert!(Entry::parse("rw  1  0  0  5 x").is_err());
    }
}
