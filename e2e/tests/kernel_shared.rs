//! Two clients on one file, close-to-open consistency: the real Linux
//! kernel NFS client (Debian's kernel under qemu) and a second NFSv4.1
//! client on the host (another node, over its own session) take turns
//! appending to and reading one file through `openefs-nfsd`. The host must
//! read every line the guest closed; the guest, whose page cache holds the
//! file, must see the host's lines on its next open (the client revalidates
//! then), without dropping caches; last the host rewrites a line in place,
//! which the guest can only notice by the change attribute. The workload
//! is `e2e/guest/shared.sh`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use openefs_e2e::locks::OtherNode;
use openefs_e2e::nfsd::Nfsd;
use openefs_e2e::qemu::{KernelClient, RunOptions};

const SHARED: &str = include_str!("../guest/shared.sh");
const ROUNDS: u32 = 3;
const GUEST_LINES: u32 = 3;
const HOST_LINES: u32 = 2;

/// The workload's `line WHO ROUND N`.
fn line(who: char, round: u32, n: u32) -> String {
    let fill: String = std::iter::repeat_n(who, (round * 7 + n * 3) as usize).collect();
    format!("{who} round {round} line {n} {fill}\n")
}

/// What the file holds once the guest has written its lines of `round`
/// and the host those of the rounds before it.
fn expected_before_host(round: u32) -> String {
    let mut out = String::new();
    for r in 1..=round {
        out.extend((1..=GUEST_LINES).map(|n| line('g', r, n)));
        if r < round {
            out.extend((1..=HOST_LINES).map(|n| line('h', r, n)));
        }
    }
    out
}

/// What the file holds after all rounds.
fn expected_after_rounds() -> String {
    let mut out = expected_before_host(ROUNDS);
    out.extend((1..=HOST_LINES).map(|n| line('h', ROUNDS, n)));
    out
}

#[test]
fn kernel_client_and_host_share_a_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let export = dir.path().join("export");
    std::fs::create_dir(&export)?;
    let nfsd = Nfsd::start(&export, dir.path().join("nfsd.log"))?;
    let started = Instant::now();
    let port = nfsd.port();
    let mut other: Option<OtherNode> = None;
    let mut host_rounds = 0;
    let mut rewritten = false;
    let mut on_pause = |name: &str| -> Result<()> {
        let node = match other.as_mut() {
            Some(node) => {
                node.reopen()?;
                node
            }
            None => other.insert(OtherNode::open(port, "shared")?),
        };
        if name == "host-rewrite" {
            ensure!(host_rounds == ROUNDS, "pause {name} before the rounds");
            let want = expected_after_rounds();
            let got = node.read_all()?;
            ensure!(
                got == want.as_bytes(),
                "before the rewrite: the host read {got:?}"
            );
            // The first line again, same length: the size stays.
            node.write_at(0, line('G', 1, 1).as_bytes())?;
            ensure!(
                node.size()? == want.len() as u64,
                "the rewrite changed the size"
            );
            node.close()?;
            rewritten = true;
            return Ok(());
        }
        let round: u32 = name
            .strip_prefix("host-round-")
            .with_context(|| format!("unexpected pause {name}"))?
            .parse()
            .with_context(|| format!("round of pause {name}"))?;
        ensure!(round == host_rounds + 1, "pause {name} out of order");
        // Everything the guest closed is on the server.
        let want = expected_before_host(round);
        let got = node.read_all()?;
        if got != want.as_bytes() {
            bail!(
                "round {round}: the host read {:?}, expected {want:?}",
                String::from_utf8_lossy(&got)
            );
        }
        let mut at = want.len() as u64;
        for n in 1..=HOST_LINES {
            let written = line('h', round, n);
            let offset = node.append(written.as_bytes())?;
            ensure!(
                offset == at,
                "round {round}: appended at {offset}, expected {at}"
            );
            at += written.len() as u64;
        }
        ensure!(node.size()? == at, "round {round}: size after the appends");
        node.close()?;
        host_rounds = round;
        Ok(())
    };
    let opts = RunOptions {
        timeout: Duration::from_secs(240),
        on_pause: Some(&mut on_pause),
        ..Default::default()
    };
    let out = KernelClient::run(port, SHARED, opts).with_context(|| nfsd.log_tail())?;
    println!(
        "shared file: {ROUNDS} rounds, {} bytes; guest ran {:.1} s, whole test {:.1} s",
        out.metrics.get("bytes").map_or("?", String::as_str),
        out.elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    let mut expected_steps = Vec::new();
    for round in 1..=ROUNDS {
        expected_steps.push(format!("round-{round}-own-lines"));
        expected_steps.push(format!("pause-host-round-{round}"));
        expected_steps.push(format!("round-{round}-sees-host"));
        expected_steps.push(format!("round-{round}-size"));
    }
    expected_steps.push("pause-host-rewrite".into());
    expected_steps.push("sees-host-rewrite".into());
    expected_steps.push("final-content".into());
    let expected_steps: Vec<&str> = expected_steps.iter().map(String::as_str).collect();
    out.ensure_ok(&expected_steps)
        .with_context(|| nfsd.log_tail())?;
    ensure!(host_rounds == ROUNDS, "the host took {host_rounds} turns");
    ensure!(rewritten, "the host never rewrote the first line");

    // The export holds both clients' lines in the order they were written,
    // the first one as the host rewrote it.
    let first = line('g', 1, 1);
    let mut want = expected_after_rounds().replacen(&first, &line('G', 1, 1), 1);
    want.push_str(&line('g', ROUNDS + 1, 1));
    let got = std::fs::read_to_string(export.join("shared"))?;
    ensure!(
        got == want,
        "host: the export holds {got:?}, expected {want:?}"
    );
    Ok(())
}
