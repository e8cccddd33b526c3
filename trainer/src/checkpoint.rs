//! Checkpoints in `runs/<name>/checkpoints/`: `step-N.bpk` (model: a burnpack map of named
//! parameters), `step-N.optim.bpk` (AdamW state) and `step-N.json` (step, tokens, sampler state).
//!
//! The JSON file is written last, under a temporary name, so its presence marks a complete
//! checkpoint: a run killed while saving resumes from the previous one.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Model;
use crate::sampler::SamplerState;

/// Everything besides weights and optimizer moments needed to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: u64,
    /// Training tokens consumed.
    pub tokens: u64,
    /// The sampler's position.
    pub sampler: SamplerState,
    /// Hash of the run's inputs; a checkpoint from other inputs is refused.
    pub run_hash: String,
}

/// File paths of the checkpoint at `step`.
#[derive(Debug, Clone)]
pub struct CheckpointFiles {
    /// Model weights.
    pub model: PathBuf,
    /// Optimizer state.
    pub optimizer: PathBuf,
    /// Train state (the completion marker).
    pub state: PathBuf,
}

impl CheckpointFiles {
    /// Paths for `step` in `dir`.
    pub fn at(dir: &Path, step: u64) -> Self {
        Self {
            model: dir.join(format!("step-{step}.bpk")),
            optimizer: dir.join(format!("step-{step}.optim.bpk")),
            state: dir.join(format!("step-{step}.json")),
        }
    }
}

/// Steps of the complete checkpoints in `dir`, ascending.
pub fn complete_steps(dir: &Path) -> Vec<u64> {
    let mut steps: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("step-")?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .filter(|&s| {
            let f = CheckpointFiles::at(dir, s);
            f.model.exists() && f.optimizer.exists()
        })
        .collect();
    steps.sort_unstable();
    steps
}

/// Saves a checkpoint and removes all but the newest `keep`.
///
/// # Errors
/// [`Error::Checkpoint`] naming the file that could not be written.
pub fn save(
    dir: &Path,
    model: &Model,
    optimizer: &ModuleOptimizer,
    state: &TrainState,
    keep: usize,
) -> Result<()> {
    fs_err::create_dir_all(dir)?;
    let files = CheckpointFiles::at(dir, state.step);
    let fail = |path: &Path, e: &dyn std::fmt::Display| Error::Checkpoint {
        path: path.to_owned(),
        message: e.to_string(),
    };
    model
        .clone()
        .save_file(&files.model)
        .map_err(|e| fail(&files.model, &e))?;
    optimizer
        .save(&files.optimizer)
        .map_err(|e| fail(&files.optimizer, &e))?;
    let json = serde_json::to_string_pretty(state).map_err(|e| fail(&files.state, &e))?;
    let tmp = files.state.with_extension("json.tmp");
    fs_err::write(&tmp, json)?;
    fs_err::rename(&tmp, &files.state)?;
    let steps = complete_steps(dir);
    for old in steps.iter().take(steps.len().saturating_sub(keep)) {
        let f = CheckpointFiles::at(dir, *old);
        for path in [f.state, f.model, f.optimizer] {
            fs_err::remove_file(path)?;
        }
    }
    Ok(())
}

/// Reads the train state of the checkpoint at `step`.
///
/// # Errors
/// [`Error::Checkpoint`] for a missing or malformed file.
pub fn read_state(dir: &Path, step: u64) -> Result<TrainState> {
    let path = CheckpointFiles::at(dir, step).state;
    let text = fs_err::read_to_string(&path)?;
    serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
        path,
        message: format!("malformed train state: {e}"),
    })
}

/// Loads model weights saved by [`save`] into `model` (built with the same config).
///
/// # Errors
/// [`Error::Checkpoint`] when the file is missing or its tensors do not fit the model.
pub fn load_model(model: Model, path: &Path) -> Result<Model> {
    model.try_load_file(path).map_err(|e| Error::Checkpoint {
        path: path.to_owned(),
        message: format!("cannot load model weights: {e}"),
    })
}

/// Loads optimizer state saved by [`save`].
///
/// # Errors
/// [`Error::Checkpoint`] when the file is missing or corrupt.
pub fn load_optimizer(optimizer: ModuleOptimizer, path: &Path) -> Result<ModuleOptimizer> {
    optimizer.load(path).map_err(|e| Error::Checkpoint {
        path: path.to_owned(),
        message: format!("cannot load optimizer state: {e}"),
    })
}
