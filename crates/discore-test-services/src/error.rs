//! Why a test service could not be started.

use std::{io, path::PathBuf, time::Duration};

/// A service that did not start or restart.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The binary is not installed (or not on the `PATH`).
    #[error("{binary} is not installed: see the README's prerequisites")]
    NotInstalled {
        /// `redis-server` or `nats-server`.
        binary: &'static str,
        /// The error spawning it.
        #[source]
        source: io::Error,
    },
    /// A file system or process operation failed.
    #[error("{what} failed")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The server did not answer on its port in time.
    #[error("{binary} did not come up on 127.0.0.1:{port} within {waited:?}; its log is {}", log.display())]
    NotReady {
        /// `redis-server` or `nats-server`.
        binary: &'static str,
        /// The port it was given.
        port: u16,
        /// How long it was waited for.
        waited: Duration,
        /// Its output.
        log: PathBuf,
    },
}
