//! The table on stdout and, when stderr is a terminal, a progress bar.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Lines for stdout, printed around the progress bar.
pub struct Progress {
    bar: ProgressBar,
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
        Progress { bar }
    }

    /// Prints one line of output without tearing the bar.
    pub fn line(&self, text: &str) {
        self.bar.suspend(|| println!("{text}"));
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
