//! The error type of `mixlab-trainer`.

use std::path::PathBuf;

/// Errors from configuring, training, checkpointing and evaluating models.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is invalid (shapes that do not divide, unknown preset, bad schedule).
    #[error("configuration: {0}")]
    Config(String),
    /// The shards could not be read or do not match what the run expects.
    #[error(transparent)]
    Shards(#[from] mixlab_ingest::Error),
    /// A file operation failed; `fs-err` errors name the path.
    #[error(transparent)]
    File(#[from] std::io::Error),
    /// A token cache file does not match the cache's description, or cannot be read.
    #[error(
        "{path}: damaged token cache: {message}; rebuild it with `mixlab inspect --rebuild-cache` (or delete the cache directory)"
    )]
    Cache {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A checkpoint, state file or metrics file is missing, corrupt or from another run.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The file involved.
        path: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },
    /// A checkpoint file is empty, truncated or otherwise unreadable (a crash or a full disk while
    /// it was written); resuming falls back to the previous checkpoint.
    #[error("{path}: damaged checkpoint: {message}")]
    DamagedCheckpoint {
        /// The damaged file.
        path: PathBuf,
        /// The reader's message.
        message: String,
    },
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error("loss is {loss} at step {step}; stopped. The last good checkpoint is {last_good}")]
    NonFiniteLoss {
        /// The step whose loss was not finite.
        step: u64,
        /// The loss value.
        loss: f32,
        /// Which checkpoint remains (`step-N` or `none`).
        last_good: String,
    },
    /// Writing or reading `metrics.parquet` / `eval.parquet` failed.
    #[error(transparent)]
    Artefact(#[from] mixlab_artefacts::Error),
    /// The run stopped on request (a signal) after writing a checkpoint at `step`; running it
    /// again resumes from there.
    #[error(
        "stopped on request at step {step}; the checkpoint of that step is on disk, so running the same command again resumes from it"
    )]
    Interrupted {
        /// The step of the checkpoint written before stopping.
        step: u64,
    },
    /// A training hook failed; the run stops (its last checkpoint is kept).
    #[error("a training hook failed")]
    Hook(#[source] crate::engine::hooks::HookError),
}

impl Error {
    /// Whether the error is in the configuration (shapes, schedule, preset) rather than a failure of
    /// training: the binary maps these to its usage exit code.
    pub fn is_config(&self) -> bool {
        match self {
            Error::Config(_) => true,
            Error::Shards(e) => e.is_config(),
            Error::Artefact(e) => e.is_user_input(),
            _ => false,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
