//! The local demo (`make demo`, `e2e/src/demo.rs`) with a small workload,
//! so CI proves the README's main command works: one qemu boot with the CSI
//! node plugin and its tls-proxy, an access point volume staged with
//! encryptInTransit against an nfsd that requires TLS, two pods writing in
//! parallel and verifying each other's files, the export checked on the
//! host. `demo::run` fails on any check; the figures it returns are checked
//! again here against the workload's size.

use std::time::Duration;

use anyhow::{Result, ensure};
use openefs_e2e::demo::{self, Options};
use openefs_e2e::progress::Progress;

#[test]
fn demo_runs_end_to_end() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let options = Options {
        writers_per_pod: 2,
        files_per_writer: 2,
        file_size: 128 << 10,
        timeout: Duration::from_secs(300),
        ..Options::standard(dir.path().join("demo"))
    };
    let summary = demo::run(&options, &Progress::plain())?;
    print!("{summary}");
    let payload = summary.bytes as f64;
    ensure!(summary.files == 8, "{} files", summary.files);
    ensure!(summary.bytes > 8 * (128 << 10), "{} bytes", summary.bytes);
    ensure!(summary.verified_by_other_pod == 8 && summary.verified_on_host == 8);
    ensure!(summary.write_seconds > 0.0 && summary.verify_seconds > 0.0);
    ensure!(summary.nfsd.connections >= 1.0 && summary.nfsd.plaintext_refused == 0.0);
    ensure!(summary.nfsd.written_bytes >= payload && summary.nfsd.read_bytes >= payload);
    ensure!(summary.nfsd.access_point_storage_bytes >= payload);
    ensure!(summary.proxy.tunnels >= 1.0 && summary.proxy.bytes_to_server >= payload);
    ensure!(summary.console_log.is_file() && summary.nfsd_log.is_file());
    let text = summary.to_string();
    for line in ["Write ", "Verify ", "Host ", "nfsd ", "tls-proxy ", "Logs "] {
        ensure!(text.contains(line), "the summary lacks {line:?}:\n{text}");
    }
    Ok(())
}
