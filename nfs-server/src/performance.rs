//! Performance modes (the FileSystem's `performanceMode`, fixed at start):
//! how a call's blocking file system work is scheduled.
//!
//! - `general-purpose` (the default) runs each vfs call directly on the
//!   tokio worker thread executing the RPC, as ganesha's worker threads do:
//!   no hand-off to another thread and back. The runtime gets enough worker
//!   threads ([`PerformanceMode::worker_threads`]) that calls blocked in a
//!   slow system call (an fsync, a large directory) leave others to serve
//!   the rest; an idle worker steals the tasks queued behind a blocked one.
//! - `max-io` sends each vfs call to tokio's blocking pool
//!   ([`tokio::task::spawn_blocking`]): a worker thread never blocks, at the
//!   price of two thread hand-offs per call.
//!
//! `tokio::task::block_in_place`, the middle way, was general-purpose until
//! it measured slower than a direct call: it hands the worker's run queue to
//! another thread on every call, a thread wake-up per RPC
//! (`docs/benchmarks.md`, "Performance modes").

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Deserialize;
use tokio::runtime::{Handle, RuntimeFlavor};

/// The performance mode's name in flags and the config file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PerformanceMode {
    /// Lowest latency per operation: blocking calls run on the RPC's own
    /// worker thread.
    #[default]
    GeneralPurpose,
    /// Blocking calls run on tokio's blocking pool; worker threads never
    /// block.
    MaxIo,
}

impl PerformanceMode {
    /// The CRD's spelling (`generalPurpose`, `maxIO`), for logs and metrics.
    pub fn api_name(self) -> &'static str {
        match self {
            Self::GeneralPurpose => "generalPurpose",
            Self::MaxIo => "maxIO",
        }
    }

    /// Worker threads of the runtime serving RPCs. general-purpose blocks
    /// them, so it needs more than the cores: as many slow calls as there
    /// are extra threads can block before fast ones wait.
    pub fn worker_threads(self, cores: usize) -> usize {
        match self {
            Self::GeneralPurpose => (4 * cores).max(GENERAL_PURPOSE_MIN_WORKERS),
            Self::MaxIo => cores,
        }
    }

    /// Runs the blocking `f` as this mode schedules it. `None` when `f`
    /// panicked, which the protocols answer with their SERVERFAULT.
    pub async fn run_blocking<T, F>(self, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        // On a current-thread runtime (unit tests, embedders) a blocking
        // call would stop every task; there the blocking pool is the only
        // choice.
        let direct = self == Self::GeneralPurpose
            && Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread;
        if direct {
            // The vfs restores the thread's fsuid/fsgid/groups when each
            // call ends (its identity guard drops, also on a panic), so the
            // worker thread goes back to serving other tasks as the server.
            return match catch_unwind(AssertUnwindSafe(f)) {
                Ok(r) => Some(r),
                Err(_) => {
                    tracing::error!("vfs call panicked");
                    None
                }
            };
        }
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "vfs task failed");
                None
            }
        }
    }
}

/// Fewest worker threads in general-purpose, however few the cores.
const GENERAL_PURPOSE_MIN_WORKERS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    async fn both_modes_run_and_survive_a_panic() {
        for mode in [PerformanceMode::GeneralPurpose, PerformanceMode::MaxIo] {
            assert_eq!(mode.run_blocking(|| 6 * 7).await, Some(42), "{mode:?}");
            let panicked: Option<()> = mode.run_blocking(|| panic!("vfs bug")).await;
            assert_eq!(panicked, None, "{mode:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_on_a_multi_thread_runtime() {
        // general-purpose stays on this worker thread; max-io leaves it.
        let here = std::thread::current().id();
        let inline = PerformanceMode::GeneralPurpose
            .run_blocking(|| std::thread::current().id())
            .await;
        assert_eq!(inline, Some(here));
        let pooled = PerformanceMode::MaxIo
            .run_blocking(|| std::thread::current().id())
            .await;
        assert_ne!(pooled, Some(here));
        both_modes_run_and_survive_a_panic().await;
    }

    #[test]
    fn general_purpose_has_workers_to_block() {
        assert_eq!(PerformanceMode::GeneralPurpose.worker_threads(2), 16);
        assert_eq!(PerformanceMode::GeneralPurpose.worker_threads(8), 32);
        assert_eq!(PerformanceMode::MaxIo.worker_threads(2), 2);
    }

    #[tokio::test]
    async fn falls_back_to_the_pool_on_a_current_thread_runtime() {
        both_modes_run_and_survive_a_panic().await;
    }
}
