//! The system calls of the node service behind one trait: the kernel
//! (`nix`) in production, an explicit in-memory fake in unit tests.
//!
//! Every method is blocking and may block for as long as an NFS server does
//! not answer; the node service runs each on a blocking thread with a
//! deadline (see `bounded` in the parent module).

use std::{io, path::Path};

use nix::{
    mount::{MntFlags, MsFlags},
    sys::statvfs::statvfs,
};

use super::mountinfo::{self, MountEntry};

/// How to unmount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmount {
    /// umount2(path, 0): waits for the file system to let go.
    Normal,
    /// MNT_DETACH: gone from the namespace at once, released when the last
    /// user lets go. Never waits for the server.
    Detach,
    /// MNT_FORCE | MNT_DETACH: also aborts the NFS requests in flight on
    /// the superblock (every mount sharing it sees them fail with EIO).
    ForceDetach,
}

/// Space and inode figures of a mounted file system (statvfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes in the file system.
    pub total_bytes: u64,
    /// Bytes an unprivileged user may still write.
    pub available_bytes: u64,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Inodes in the file system.
    pub total_inodes: u64,
    /// Inodes free.
    pub free_inodes: u64,
    /// Inodes in use.
    pub used_inodes: u64,
}

/// The mount operations the node service needs.
pub trait Mounter: Send + Sync + 'static {
    /// mount(2) an NFSv4 file system: `source` is `server:/path`, `data`
    /// the option text.
    fn mount_nfs(&self, source: &str, target: &Path, flags: MsFlags, data: &str) -> io::Result<()>;
    /// Bind `source` onto `target`, then apply `flags` (read-only, nosuid,
    /// ...) to the new mount, which a plain bind ignores.
    fn bind(&self, source: &Path, target: &Path, flags: MsFlags) -> io::Result<()>;
    /// Unmount the topmost mount on `target`.
    fn unmount(&self, target: &Path, how: Unmount) -> io::Result<()>;
    /// The mount table of this process's namespace.
    fn mount_table(&self) -> io::Result<Vec<MountEntry>>;
    /// statvfs of `path`: for an NFS mount a round trip to the server, and
    /// so the health check too.
    fn usage(&self, path: &Path) -> io::Result<Usage>;
}

/// The kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelMounter;

impl Mounter for KernelMounter {
    fn mount_nfs(&self, source: &str, target: &Path, flags: MsFlags, data: &str) -> io::Result<()> {
        nix::mount::mount(Some(source), target, Some("nfs4"), flags, Some(data))?;
        Ok(())
    }

    fn bind(&self, source: &Path, target: &Path, flags: MsFlags) -> io::Result<()> {
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        if flags.is_empty() {
            return Ok(());
        }
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags;
        if let Err(e) = nix::mount::mount(None::<&str>, target, None::<&str>, remount, None::<&str>)
        {
            // A bind without the asked-for restrictions (read-only!) must
            // not stay behind.
            let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
            return Err(e.into());
        }
        Ok(())
    }

    fn unmount(&self, target: &Path, how: Unmount) -> io::Result<()> {
        let flags = match how {
            Unmount::Normal => MntFlags::empty(),
            Unmount::Detach => MntFlags::MNT_DETACH,
            Unmount::ForceDetach => MntFlags::MNT_FORCE | MntFlags::MNT_DETACH,
        };
        nix::mount::umount2(target, flags)?;
        Ok(())
    }

    fn mount_table(&self) -> io::Result<Vec<MountEntry>> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        mountinfo::parse(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    fn usage(&self, path: &Path) -> io::Result<Usage> {
        let st = statvfs(path)?;
        let frsize = st.fragment_size();
        let blocks = st.blocks();
        let free = st.blocks_free();
        let files = st.files();
        let files_free = st.files_free();
        Ok(Usage {
            total_bytes: blocks.saturating_mul(frsize),
            available_bytes: st.blocks_available().saturating_mul(frsize),
            used_bytes: blocks.saturating_sub(free).saturating_mul(frsize),
            total_inodes: files,
            free_inodes: files_free,
            used_inodes: files.saturating_sub(files_free),
        })
    }
}

/// An in-memory mount table with switches for the failures the node service
/// must survive.
#[cfg(test)]
pub mod fake {
    use std::{
        collections::HashMap,
        path::PathBuf,
        sync::{Arc, Condvar, Mutex},
    };

    use super::*;

    /// What the fake did, for assertions.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        /// mount_nfs(source, target, data).
        Mount(String, PathBuf, String),
        /// bind(source, target, flags).
        Bind(PathBuf, PathBuf, MsFlags),
        /// unmount(target, how).
        Unmount(PathBuf, Unmount),
    }

    #[derive(Debug, Default)]
    struct State {
        table: Vec<MountEntry>,
        calls: Vec<Call>,
        next_device: u32,
        /// usage() fails with this errno per path.
        broken: HashMap<PathBuf, i32>,
        /// mount, unmount(Normal) and usage wait while this is set.
        hang: bool,
        /// unmount(Normal) of these fails with EBUSY.
        busy: Vec<PathBuf>,
    }

    /// The fake; clones share one table.
    #[derive(Debug, Clone, Default)]
    pub struct FakeMounter {
        state: Arc<(Mutex<State>, Condvar)>,
    }

    impl FakeMounter {
        fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
            f(&mut self.state.0.lock().unwrap())
        }

        fn wait_while_hung(&self) {
            let (lock, cv) = &*self.state;
            let guard = lock.lock().unwrap();
            drop(cv.wait_while(guard, |s| s.hang).unwrap());
        }

        /// Every call so far.
        pub fn calls(&self) -> Vec<Call> {
            self.with(|s| s.calls.clone())
        }

        /// The table.
        pub fn table(&self) -> Vec<MountEntry> {
            self.with(|s| s.table.clone())
        }

        /// Let statvfs of `path` fail with `errno` (a stale handle, say).
        pub fn break_path(&self, path: &Path, errno: i32) {
            self.with(|s| s.broken.insert(path.to_owned(), errno));
        }

        /// Make mounts, normal unmounts and statvfs block (an unresponsive server)
        /// until `hang(false)`.
        pub fn hang(&self, on: bool) {
            self.with(|s| s.hang = on);
            self.state.1.notify_all();
        }

        /// [`hang`](Self::hang) until the returned guard is dropped. A test
        /// that fails while calls hang must release them: its runtime's drop
        /// waits for every blocking call, so a failed assertion would
        /// otherwise hang the test run instead of failing it.
        #[must_use]
        pub fn hang_until_dropped(&self) -> HangGuard {
            self.hang(true);
            HangGuard(self.clone())
        }
    }

    /// Ends a [`FakeMounter::hang_until_dropped`].
    pub struct HangGuard(FakeMounter);

    impl Drop for HangGuard {
        fn drop(&mut self) {
            self.0.hang(false);
        }
    }

    impl FakeMounter {
        /// Let normal unmounts of `path` fail with EBUSY (a call stuck on
        /// it holds it).
        pub fn busy(&self, path: &Path) {
            self.with(|s| s.busy.push(path.to_owned()));
        }

        /// Put a mount on `path` behind the service's back.
        pub fn add(&self, path: &Path, fs_type: &str, source: &str) {
            self.with(|s| {
                s.next_device += 1;
                let entry = entry(s, path, fs_type, source, s.next_device, "rw");
                s.table.push(entry);
            });
        }
    }

    fn entry(
        s: &State,
        path: &Path,
        fs_type: &str,
        source: &str,
        device: u32,
        options: &str,
    ) -> MountEntry {
        MountEntry {
            id: s.table.len() as u64 + 100,
            parent: 1,
            device: format!("0:{device}"),
            root: "/".into(),
            mount_point: path.to_owned(),
            options: options.into(),
            fs_type: fs_type.into(),
            source: source.into(),
            super_options: "rw".into(),
        }
    }

    impl Mounter for FakeMounter {
        fn mount_nfs(
            &self,
            source: &str,
            target: &Path,
            flags: MsFlags,
            data: &str,
        ) -> io::Result<()> {
            self.wait_while_hung();
            self.with(|s| {
                s.calls
                    .push(Call::Mount(source.into(), target.into(), data.into()));
                s.next_device += 1;
                let ro = if flags.contains(MsFlags::MS_RDONLY) {
                    "ro"
                } else {
                    "rw"
                };
                let e = entry(s, target, "nfs4", source, s.next_device, ro);
                s.table.push(e);
            });
            Ok(())
        }

        fn bind(&self, source: &Path, target: &Path, flags: MsFlags) -> io::Result<()> {
            self.with(|s| {
                s.calls
                    .push(Call::Bind(source.into(), target.into(), flags));
                let from = mountinfo::top_at(&s.table, source)
                    .cloned()
                    .ok_or_else(|| io::Error::from_raw_os_error(libc_einval()))?;
                let mut e = from.clone();
                e.id = s.table.len() as u64 + 100;
                e.mount_point = target.to_owned();
                e.options = if flags.contains(MsFlags::MS_RDONLY) {
                    "ro"
                } else {
                    "rw"
                }
                .into();
                s.table.push(e);
                Ok(())
            })
        }

        fn unmount(&self, target: &Path, how: Unmount) -> io::Result<()> {
            if how == Unmount::Normal {
                self.wait_while_hung();
            }
            self.with(|s| {
                s.calls.push(Call::Unmount(target.into(), how));
                if how == Unmount::Normal && s.busy.iter().any(|b| b == target) {
                    return Err(io::Error::from_raw_os_error(
                        nix::errno::Errno::EBUSY as i32,
                    ));
                }
                let at = s
                    .table
                    .iter()
                    .rposition(|e| e.mount_point == target)
                    .ok_or_else(|| io::Error::from_raw_os_error(libc_einval()))?;
                s.table.remove(at);
                Ok(())
            })
        }

        fn mount_table(&self) -> io::Result<Vec<MountEntry>> {
            Ok(self.table())
        }

        fn usage(&self, path: &Path) -> io::Result<Usage> {
            self.wait_while_hung();
            if let Some(errno) = self.with(|s| s.broken.get(path).copied()) {
                return Err(io::Error::from_raw_os_error(errno));
            }
            Ok(Usage {
                total_bytes: 1 << 30,
                available_bytes: 3 << 28,
                used_bytes: 1 << 28,
                total_inodes: 1000,
                free_inodes: 900,
                used_inodes: 100,
            })
        }
    }

    fn libc_einval() -> i32 {
        nix::errno::Errno::EINVAL as i32
    }
}
