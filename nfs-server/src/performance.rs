//! Performance modes (the FileSystem's `performanceMode`, fixed at start):
//! how a call's blocking file system work is scheduled.
//!
//! - `general-purpose` (the default) runs each vfs call on the tokio worker
//!   thread that is executing the RPC ([`tokio::task::block_in_place`]):
//!   no hand-off to another thread and back, so one RPC crosses one thread
//!   fewer on its way.
//! - `max-io` sends each vfs call to tokio's blocking pool
//!   ([`tokio::task::spawn_blocking`]), as every mode did before: a worker
//!   thread never blocks, at the price of two thread hand-offs per call.
//!
//! Both let other calls run while one blocks (`block_in_place` moves the
//! worker's other tasks to another thread), so max-io adds no parallelism;
//! on 2 cores it measured slower than general-purpose even with 16 clients
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

    /// Runs the blocking `f` as this mode schedules it. `None` when `f`
    /// panicked, which the protocols answer with their SERVERFAULT.
    pub async fn run_blocking<T, F>(self, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        // block_in_place panics on a current-thread runtime (unit tests,
        // embedders); there the blocking pool is the only choice.
        let inline = self == Self::GeneralPurpose
            && Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread;
        if inline {
            // The vfs restores the thread's fsuid/fsgid/groups when each
            // call ends (its identity guard drops, also on a panic), so the
            // worker thread goes back to serving other tasks as the server.
            return match tokio::task::block_in_place(|| catch_unwind(AssertUnwindSafe(f))) {
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

    #[tokio::test]
    async fn falls_back_to_the_pool_on_a_current_thread_runtime() {
        both_modes_run_and_survive_a_panic().await;
    }
}
