//! Running a client tool as a child process with a hard time limit, so a
//! client that hangs on a misbehaving server fails its test instead of
//! stalling the suite.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Runs `cmd` to completion and returns its output, whatever the exit status.
/// Once `timeout` has passed it is killed together with the processes it
/// forked (fio runs each job in a child process that holds the pipes): the
/// command runs in a process group of its own, and that group is killed;
/// so is what is left of the group when the command exits.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    // Both pipes are drained while waiting: a child blocked on a full pipe
    // would otherwise look like a hang.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = match wait_until(&mut child, Instant::now() + timeout) {
        Ok(Some(status)) => {
            // What the command left running in its group would hold the
            // pipes open and the reads below forever: fio's main process
            // gives up on a job stuck in libnfs and exits without it.
            kill_group(&mut child);
            status
        }
        Ok(None) => {
            kill_group(&mut child);
            let stderr = join(stderr);
            bail!(
                "{program} did not finish within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        Err(err) => {
            kill_group(&mut child);
            return Err(err).with_context(|| format!("waiting for {program}"));
        }
    };
    Ok(Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    })
}

fn kill_group(child: &mut Child) {
    if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions. The group id
        // is our child's PID: reserved until we reap it below, or, if it was
        // reaped already, still the id of its group while any member lives
        // (and ESRCH when none does).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
    pipe.map(|mut pipe| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            // A read error leaves what arrived so far, which is all a
            // diagnostic can use anyway.
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    })
}

fn join(handle: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_output_and_status() {
        let out = output_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn kills_what_a_finished_command_left_holding_the_pipes() {
        let started = Instant::now();
        let out = output_within(
            Command::new("sh").args(["-c", "echo done; sleep 60 & exit 0"]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(out.stdout, b"done\n");
        assert!(out.status.success());
    }

    #[test]
    fn kills_a_child_that_overruns() {
        let started = Instant::now();
        let err = output_within(
            // The sleep is a grandchild holding the pipes, as fio's jobs are.
            Command::new("sh").args(["-c", "echo partial >&2; sleep 60; true"]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(30));
        let text = format!("{err:#}");
        assert!(text.contains("did not finish"), "{text}");
        assert!(text.contains("partial"), "{text}");
    }
}
