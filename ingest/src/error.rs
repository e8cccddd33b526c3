//! The one error type of `mixlab-ingest`.
//!
//! Every variant that comes from input names where the problem is (file, line, field or domain) and what
//! was expected, so a user can fix the input without reading code.

use std::path::PathBuf;

/// Errors from reading sources, writing shards and verifying manifests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file operation failed; `fs-err` errors already name the path in their message.
    #[error(transparent)]
    File(#[from] std::io::Error),
    /// A record of a line-oriented source is malformed (bad JSON, bad UTF-8, missing text).
    #[error("{path}:{line}: {message}")]
    BadRecord {
        /// The source file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A source file as a whole is unusable (unreadable Parquet, missing column, no files matched).
    #[error("{path}: {message}")]
    BadSource {
        /// The source file or pattern.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The configuration is invalid (a value out of range, an empty domain).
    #[error("configuration: {0}")]
    Config(String),
    /// The tokenizer could not be loaded, trained or applied.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file involved.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A shard set does not match its manifest (checksum, tokenizer hash, version).
    #[error("{path}: {message}")]
    Manifest {
        /// The manifest or shard file involved.
        path: PathBuf,
        /// What did not match, and how to regenerate.
        message: String,
    },
    /// Parquet could not encode or decode a shard.
    #[error("{path}: parquet: {source}")]
    Parquet {
        /// The shard file.
        path: PathBuf,
        /// The underlying Parquet error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// The query engine failed on a source (the SQL did not plan, or a reader failed).
    #[cfg(feature = "pipeline")]
    #[error("{path}: {message}")]
    Query {
        /// The source file or pattern.
        path: PathBuf,
        /// The engine's message.
        message: String,
    },
    /// The Ballista scheduler at `address` cannot be reached or refused the session.
    #[cfg(feature = "pipeline")]
    #[error("ballista scheduler at {address}: {message}")]
    Cluster {
        /// `HOST:PORT` as configured.
        address: String,
        /// What went wrong.
        message: String,
    },
    /// Arrow failed building or converting a batch; this is a bug, not bad input.
    #[error("internal error (a bug in mixlab): {0}")]
    Internal(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the error is in the configuration rather than in the data or the machine: the
    /// binary maps these to its usage exit code.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::Config(_))
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
