//! Choosing and configuring a backend.
//!
//! [`IoConfig`] holds the queue depth, the worker count and the [`Backend`].
//! [`IoConfig::from_env`] applies `KEEL_IO_BACKEND=auto|thread-pool|io-uring`
//! on top of the defaults; an unknown value is a `Config` error, never a
//! silent default. [`crate::open_backend`] builds the backend.
//!
//! `Auto` means: io_uring when the kernel lets us set up a ring, else the
//! thread pool, saying so on one line of stderr.

use std::str::FromStr;

use crate::error::IoError;

/// The environment variable that picks the backend.
pub const BACKEND_ENV: &str = "KEEL_IO_BACKEND";

/// Which backend to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// io_uring if available, else the thread pool.
    #[default]
    Auto,
    /// The portable thread-pool backend.
    ThreadPool,
    /// The Linux io_uring backend (an error where unavailable).
    IoUring,
}

impl Backend {
    /// The name used in `KEEL_IO_BACKEND`.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::ThreadPool => "thread-pool",
            Backend::IoUring => "io-uring",
        }
    }
}

impl FromStr for Backend {
    type Err = IoError;
    fn from_str(s: &str) -> Result<Backend, IoError> {
        match s {
            "auto" => Ok(Backend::Auto),
            "thread-pool" => Ok(Backend::ThreadPool),
            "io-uring" => Ok(Backend::IoUring),
            other => Err(IoError::Config {
                setting: BACKEND_ENV,
                value: other.to_owned(),
                reason: "expected auto, thread-pool or io-uring",
            }),
        }
    }
}

/// The largest `queue_depth`: io_uring's own limit on a ring's entries
/// (IORING_MAX_ENTRIES), far beyond what any device keeps busy.
pub const MAX_QUEUE_DEPTH: usize = 32768;

/// The largest `worker_threads` of the thread-pool backend: more threads
/// than this only add scheduling and stack memory (each has its own).
pub const MAX_WORKER_THREADS: usize = 1024;

/// Backend configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoConfig {
    /// Which backend.
    pub backend: Backend,
    /// The most requests in flight at once; submitters beyond it wait (or get
    /// `WouldBlock` from `try_submit`). 128 keeps an NVMe device busy without
    /// letting a burst queue unbounded latency behind it.
    pub queue_depth: usize,
    /// Worker threads of the thread-pool backend (io_uring uses one
    /// dispatcher thread whatever this says).
    pub worker_threads: usize,
}

impl Default for IoConfig {
    fn default() -> IoConfig {
        IoConfig {
            backend: Backend::Auto,
            queue_depth: 128,
            worker_threads: 4,
        }
    }
}

impl IoConfig {
    /// The defaults with `KEEL_IO_BACKEND` applied.
    pub fn from_env() -> Result<IoConfig, IoError> {
        IoConfig::default().with_env()
    }

    /// This configuration with `KEEL_IO_BACKEND` applied, when it is set.
    pub fn with_env(self) -> Result<IoConfig, IoError> {
        match std::env::var(BACKEND_ENV) {
            Ok(value) => Ok(IoConfig {
                backend: value.parse()?,
                ..self
            }),
            Err(std::env::VarError::NotPresent) => Ok(self),
            Err(std::env::VarError::NotUnicode(v)) => Err(IoError::Config {
                setting: BACKEND_ENV,
                value: v.to_string_lossy().into_owned(),
                reason: "expected auto, thread-pool or io-uring",
            }),
        }
    }

    /// Checks the numbers: every value it accepts can be honoured by
    /// every backend (an error names the field and the allowed range).
    pub fn validate(&self) -> Result<(), IoError> {
        if !(1..=MAX_QUEUE_DEPTH).contains(&self.queue_depth) {
            return Err(IoError::Config {
                setting: "queue_depth",
                value: self.queue_depth.to_string(),
                reason: "must be in 1..=32768",
            });
        }
        if !(1..=MAX_WORKER_THREADS).contains(&self.worker_threads) {
            return Err(IoError::Config {
                setting: "worker_threads",
                value: self.worker_threads.to_string(),
                reason: "must be in 1..=1024",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse() {
        for b in [Backend::Auto, Backend::ThreadPool, Backend::IoUring] {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        }
        let err = "uring".parse::<Backend>().unwrap_err();
        assert!(err.is_usage());
        assert!(err.to_string().contains("KEEL_IO_BACKEND"));
    }
}
