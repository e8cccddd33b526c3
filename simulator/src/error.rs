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
    /// A finished simulation run whose scores from its own batches are gone (they are made only
    /// while it trains).
    #[error(
        "{}: missing; scores from training batches are made while the proxy trains: remove {} to train it again",
        part.display(),
        run.display()
    )]
    MissingScores {
        /// The missing part file.
        part: PathBuf,
        /// The proxy's run directory.
        run: PathBuf,
    },
}

impl Error {
    /// Whether the user's configuration is at fault (exit code 2).
    pub fn is_config(&self) -> bool {
        match self {
            Error::Config(_) => true,
            Error::Trainer(e) => e.is_config(),
            Error::Artefact(_) | Error::MissingCheckpoint(_) | Error::MissingScores { .. } => false,
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
