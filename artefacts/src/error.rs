//! The error type of `mixlab-artefacts`.

use std::path::PathBuf;

/// Errors from reading and writing artefacts. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed; the message names the path (`fs-err`, or [`crate::atomic`]).
    #[error(transparent)]
    File(#[from] std::io::Error),
    /// A Parquet artefact could not be encoded or decoded, or has unexpected columns.
    #[error("{path}: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A TOML artefact (`mixture.toml`) does not parse or has unknown keys.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message (line and key).
        message: String,
    },
    /// A numeric table (`runs.csv`, `losses.csv`, ...) is unusable: empty, a column that is not
    /// numbers, a missing column or row.
    #[error("{path}: {message}")]
    Table {
        /// The file.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A run table's values are invalid (a row not summing to 1, a NaN loss): the source names row
    /// and column.
    #[error("{files}: {source}")]
    Runs {
        /// The two files joined (`runs + losses`).
        files: String,
        /// The validation error.
        #[source]
        source: mixlab_mixer::Error,
    },
    /// An artefact of a format version this mixlab does not read.
    #[error(
        "{path}: {artefact} format version {found}, but this mixlab reads version {expected}; {hint}"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Which artefact (`metrics.parquet`, `mixture.toml`, ...).
        artefact: &'static str,
        /// The version in the file.
        found: String,
        /// The version this build reads.
        expected: u32,
        /// How to regenerate the file.
        hint: &'static str,
    },
}

impl Error {
    /// Whether the error is in a file the user wrote or chose (a mixture, a run table), rather than
    /// a failure of a stage: the binary maps these to its usage exit code.
    pub fn is_user_input(&self) -> bool {
        matches!(self, Error::Toml { .. } | Error::Table { .. })
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
