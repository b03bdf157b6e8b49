//! The table on stdout and, when stderr is a terminal, a progress bar.

use std::io::IsTerminal;

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use crate::Failure;

/// Lines for stdout, printed around the progress bar.
pub struct Progress {
    bar: ProgressBar,
    /// The first failure to write a line ([`Progress::written`]).
    failed: Mutex<Option<Failure>>,
}

impl Progress {
    /// A bar on stderr if it is a terminal, else a hidden one.
    pub fn new() -> Progress {
        let bar = if std::io::stderr().is_terminal() {
            let b = ProgressBar::new(0);
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b
        } else {
            ProgressBar::hidden()
        };
        Progress {
            bar,
            failed: Mutex::new(None),
        }
    }

    /// Prints one line of output without tearing the bar. A closed stdout
    /// ends the output quietly; another failure is kept for
    /// [`Progress::written`].
    pub fn line(&self, text: &str) {
        if let Err(e) = self.bar.suspend(|| outln!("{text}")) {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert(e);
        }
    }

    /// The first failure to write a line, if any.
    pub fn written(&self) -> Result<(), Failure> {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.take().map_or(Ok(()), Err)
    }

    /// Adds `n` measurements to the total.
    pub fn plan(&self, n: u64) {
        self.bar.inc_length(n);
    }

    /// Says what is being done now.
    pub fn step(&self, msg: &str) {
        self.bar.set_message(msg.to_string());
    }

    /// One measurement done.
    pub fn done(&self) {
        self.bar.inc(1);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
