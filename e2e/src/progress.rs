//! Step-by-step progress for a long-running program (the demo): a spinner
//! with the elapsed time while a step runs, then one line with its result,
//! on a terminal; plain start and result lines otherwise (CI logs, pipes).
//! Every finished step is recorded with its duration for the summary.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A finished step.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub what: String,
    pub took: Duration,
    pub detail: String,
}

/// Where steps are shown; see the module's doc.
#[derive(Debug)]
pub struct Progress {
    interactive: bool,
    records: Mutex<Vec<StepRecord>>,
}

impl Progress {
    /// Spinners when stdout is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        Self::with_spinners(std::io::stdout().is_terminal())
    }

    /// Plain lines only, wherever stdout goes.
    pub fn plain() -> Self {
        Self::with_spinners(false)
    }

    fn with_spinners(interactive: bool) -> Self {
        Self {
            interactive,
            records: Mutex::new(Vec::new()),
        }
    }

    /// Starts a step; it ends with [`Step::done`], or as failed when
    /// dropped without.
    pub fn start(&self, what: impl Into<String>) -> Step<'_> {
        let what = what.into();
        let bar = if self.interactive {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            // A constant template: it only fails if edited wrongly, and the
            // default spinner is an acceptable fallback then.
            let style = ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_message(what.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            Some(bar)
        } else {
            println!("[..] {what}");
            None
        };
        Step {
            progress: self,
            what,
            started: Instant::now(),
            bar,
            finished: false,
        }
    }

    /// The steps finished so far, in order.
    pub fn records(&self) -> Vec<StepRecord> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// A step in flight.
pub struct Step<'a> {
    progress: &'a Progress,
    what: String,
    started: Instant,
    bar: Option<ProgressBar>,
    finished: bool,
}

impl Step<'_> {
    /// Ends the step with what it found; returns how long it took.
    pub fn done(mut self, detail: impl Into<String>) -> Duration {
        let detail = detail.into();
        let took = self.started.elapsed();
        self.finished = true;
        let line = if detail.is_empty() {
            format!("{} ({:.1} s)", self.what, took.as_secs_f64())
        } else {
            format!("{}: {detail} ({:.1} s)", self.what, took.as_secs_f64())
        };
        match self.bar.take() {
            Some(bar) => {
                bar.finish_and_clear();
                println!("✔ {line}");
            }
            None => println!("[ok] {line}"),
        }
        self.progress
            .records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(StepRecord {
                what: std::mem::take(&mut self.what),
                took,
                detail,
            });
        took
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        match self.bar.take() {
            Some(bar) => {
                bar.finish_and_clear();
                println!("✘ {}: failed after {secs:.1} s", self.what);
            }
            None => println!("[!!] {}: failed after {secs:.1} s", self.what),
        }
    }
}
