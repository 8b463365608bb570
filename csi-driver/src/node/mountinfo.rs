//! `/proc/self/mountinfo`: which mounts sit on a path, so every node RPC can
//! tell "already done" from "something else is there" from "stale".
//!
//! Format (proc(5)): `id parent major:minor root mount-point options
//! [optional fields...] - fstype source super-options`, with space, tab,
//! newline and backslash in paths written as octal escapes (`\040`).

use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount id (unique per mount in the namespace).
    pub id: u64,
    /// Id of the parent mount.
    pub parent: u64,
    /// `major:minor` of the superblock: binds of one mount share it.
    pub device: String,
    /// Directory of the file system that is the root of this mount.
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`/`ro`, `nosuid`, ...).
    pub options: String,
    /// File system type (`nfs4`, `tmpfs`, ...).
    pub fs_type: String,
    /// Mount source (`server:/path` for NFS).
    pub source: String,
    /// Per-superblock options.
    pub super_options: String,
}

impl MountEntry {
    /// Mounted read-only (per-mount flag; a read-only superblock also shows
    /// here since the kernel reports `ro` when either is set).
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }

    /// An NFS mount (`nfs` or `nfs4`).
    pub fn is_nfs(&self) -> bool {
        self.fs_type == "nfs4" || self.fs_type == "nfs"
    }

    /// The same superblock and directory: a bind of `other`, or `other`
    /// itself.
    pub fn same_tree(&self, other: &MountEntry) -> bool {
        self.device == other.device && self.root == other.root
    }
}

/// A line the parser cannot read: the table is not trusted at all then,
/// since a skipped line could be the mount a decision depends on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mountinfo line {number} is malformed: {line:?}")]
pub struct MountInfoError {
    /// 1-based line number.
    pub number: usize,
    /// The line.
    pub line: String,
}

/// Parse the whole text of a mountinfo file.
pub fn parse(text: &str) -> Result<Vec<MountEntry>, MountInfoError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            parse_line(line).ok_or_else(|| MountInfoError {
                number: i + 1,
                line: line.to_owned(),
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (head, tail) = line.split_once(" - ")?;
    let mut head = head.split(' ');
    let id = head.next()?.parse().ok()?;
    let parent = head.next()?.parse().ok()?;
    let device = head.next().filter(|d| d.contains(':'))?.to_owned();
    let root = unescape(head.next()?);
    let mount_point = PathBuf::from(unescape(head.next()?));
    let options = head.next()?.to_owned();
    // The rest of `head` are optional fields (shared:N, master:N, ...).
    let mut tail = tail.split(' ');
    let fs_type = tail.next().filter(|t| !t.is_empty())?.to_owned();
    let source = unescape(tail.next()?);
    let super_options = tail.next().unwrap_or_default().to_owned();
    Some(MountEntry {
        id,
        parent,
        device,
        root,
        mount_point,
        options,
        fs_type,
        source,
        super_options,
    })
}

/// Undo the kernel's `\ooo` escapes (it escapes only space, tab, newline and
/// backslash); anything that is not a valid escape stays as it is.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts on `path`, bottom first (the last one is what a lookup of
/// `path` sees).
pub fn mounts_at<'a>(table: &'a [MountEntry], path: &Path) -> Vec<&'a MountEntry> {
    table.iter().filter(|e| e.mount_point == path).collect()
}

/// The topmost mount on `path`, if any.
pub fn top_at<'a>(table: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    table.iter().rev().find(|e| e.mount_point == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
30 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
61 30 0:52 / /var/lib/kubelet/plugins/csi/pv\\040one/globalmount rw,relatime shared:30 - nfs4 fs-1.ns.svc:/vol/a rw,vers=4.1,rsize=1048576,wsize=1048576,namlen=255,hard,noresvport,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.2.15,local_lock=none,addr=10.0.2.100
62 30 0:52 / /var/lib/kubelet/pods/p1/volumes/v ro,relatime shared:30 - nfs4 fs-1.ns.svc:/vol/a rw,vers=4.1
63 30 0:53 / /var/lib/kubelet/pods/p1/volumes/v rw,relatime - tmpfs tmpfs rw
";

    #[test]
    fn parses_fields_escapes_and_optional_fields() {
        let table = parse(SAMPLE).unwrap();
        assert_eq!(table.len(), 5);
        let staged = &table[2];
        assert_eq!((staged.id, staged.parent), (61, 30));
        assert_eq!(staged.device, "0:52");
        assert_eq!(staged.root, "/");
        assert_eq!(
            staged.mount_point,
            Path::new("/var/lib/kubelet/plugins/csi/pv one/globalmount")
        );
        assert_eq!(staged.fs_type, "nfs4");
        assert_eq!(staged.source, "fs-1.ns.svc:/vol/a");
        assert!(staged.is_nfs() && !staged.read_only());
        assert!(staged.super_options.contains("addr=10.0.2.100"));
        let bind = &table[3];
        assert!(bind.read_only() && bind.same_tree(staged));
        assert!(!table[4].same_tree(staged));
    }

    #[test]
    fn stacked_mounts_top_is_last() {
        let table = parse(SAMPLE).unwrap();
        let path = Path::new("/var/lib/kubelet/pods/p1/volumes/v");
        assert_eq!(mounts_at(&table, path).len(), 2);
        assert_eq!(top_at(&table, path).unwrap().fs_type, "tmpfs");
        assert!(top_at(&table, Path::new("/nowhere")).is_none());
    }

    #[test]
    fn malformed_lines_are_refused_by_number() {
        for bad in [
            "x 1 0:1 / / rw - ext4 /dev/sda rw",
            "1 1 01 / / rw - ext4 /dev/sda rw",
            "1 1 0:1 / / rw ext4 /dev/sda rw",
            "1 1 0:1 / /",
        ] {
            let err = parse(&format!(
                "{}{bad}\n",
                &SAMPLE[..SAMPLE.find('\n').unwrap() + 1]
            ))
            .unwrap_err();
            assert_eq!(err.number, 2, "{bad}");
        }
        assert_eq!(parse("").unwrap(), Vec::new());
    }

    #[test]
    fn unescape_keeps_what_is_not_an_escape() {
        assert_eq!(unescape(r"a\040b\134c\011d\012"), "a b\\c\td\n");
        assert_eq!(unescape(r"\08x\1"), r"\08x\1");
        assert_eq!(unescape(r"tail\04"), r"tail\04");
        assert_eq!(unescape(r"\777"), r"\777");
    }
}
