//! What starting or stopping a `kafkv` process can fail with.

use std::{io, path::PathBuf};

/// The testkit's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A `kafkv` process that could not be started, did not become ready, or did
/// not stop as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The binary could not be run at all (missing, not executable).
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The process ran but misbehaved; `log` is the end of its log.
    #[error("{process} {what}; the end of its log ({}):\n{log}", path.display())]
    Process {
        /// Which process: `kafkv serve (pid 42, http 127.0.0.1:8080)`.
        process: String,
        what: String,
        path: PathBuf,
        log: String,
    },
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}
