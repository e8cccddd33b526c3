//! Errors of the simulator.

use std::path::PathBuf;

/// What can go wrong estimating utilities.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `[simulate]` value out of range, or a target naming no domain.
    #[error("{0}")]
    Config(String),
    /// A checkpoint that cannot be loaded.
    #[error(transparent)]
    Trainer(#[from] mixlab_trainer::error::Error),
    /// An artefact that cannot be read or written.
    #[error(transparent)]
    Artefact(#[from] mixlab_artefacts::Error),
    /// A checkpoint listed but missing.
    #[error("{}: no checkpoint to score", .0.display())]
    MissingCheckpoint(PathBuf),
}

impl Error {
    /// Whether the user's configuration is at fault (exit code 2).
    pub fn is_config(&self) -> bool {
        match self {
            Error::Config(_) => true,
            Error::Trainer(e) => e.is_config(),
            Error::Artefact(_) | Error::MissingCheckpoint(_) => false,
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
