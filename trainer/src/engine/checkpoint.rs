//! Checkpoints in `runs/<name>/checkpoints/`: `step-N.bpk` (model: a burnpack map of named
//! parameters), `step-N.optim.bpk` (AdamW state) and `step-N.json` (step, tokens, sampler state).
//!
//! The JSON file is written last, atomically, so its presence marks a complete checkpoint: a run
//! killed while saving resumes from the previous one. It carries a format version; a state of another
//! version is refused.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use mixlab_artefacts::atomic::write_atomic;
use serde::{Deserialize, Serialize};

use crate::config::KeepCheckpoints;
use crate::data::sampler::SamplerState;
use crate::error::{Error, Result};
use crate::model::Model;

/// The format version of the checkpoint state file this build writes and reads. Version 2: the
/// sampler's cursors index the streamed sampler's per-epoch permutation (version 1 indexed a
/// stored shuffle, so its cursors would continue another stream).
pub const STATE_VERSION: u32 = 2;

fn legacy_version() -> u32 {
    1
}

/// Everything besides weights and optimizer moments needed to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Format version of this file ([`STATE_VERSION`]; files without one are version 1).
    #[serde(default = "legacy_version")]
    pub format_version: u32,
    /// Optimizer steps done.
    pub step: u64,
    /// Training tokens consumed.
    pub tokens: u64,
    /// The sampler's position.
    pub sampler: SamplerState,
    /// Hash of the run's inputs; a checkpoint from other inputs is refused.
    pub run_hash: String,
    /// What the objective carries between steps ([`crate::engine::objective::Objective::state`]), absent
    /// for stateless objectives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<serde_json::Value>,
    /// Written off the checkpoint schedule, when the run was stopped on request; removed once a
    /// later checkpoint is written, so a finished run holds only its scheduled checkpoints.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unscheduled: bool,
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

/// Removes what a killed run left in `dir`: temporary files of atomic writes and the weight or
/// optimizer files of checkpoints whose state file was never written. Returns the removed paths.
/// Call it only while holding the run directory's lock.
///
/// # Errors
/// [`Error::File`] naming a file that could not be removed.
pub fn remove_incomplete(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = mixlab_artefacts::atomic::remove_orphans(dir)?;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let step = name
            .strip_prefix("step-")
            .and_then(|rest| rest.strip_suffix(".bpk"))
            .map(|rest| rest.strip_suffix(".optim").unwrap_or(rest))
            .and_then(|step| step.parse::<u64>().ok());
        if let Some(step) = step
            && !CheckpointFiles::at(dir, step).state.exists()
        {
            fs_err::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    removed.sort();
    Ok(removed)
}

/// Saves a checkpoint and removes older ones beyond what `keep` retains; returns its files.
///
/// # Errors
/// [`Error::Checkpoint`] naming the file that could not be written.
pub fn save(
    dir: &Path,
    model: &Model,
    optimizer: &ModuleOptimizer,
    state: &TrainState,
    keep: KeepCheckpoints,
) -> Result<CheckpointFiles> {
    fs_err::create_dir_all(dir)?;
    let files = CheckpointFiles::at(dir, state.step);
    if let Err(e) = write_files(&files, model, optimizer, state) {
        // A full disk or a file-size limit: the pieces already written would only take space.
        for path in [&files.state, &files.model, &files.optimizer] {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    if let KeepCheckpoints::Newest(keep) = keep {
        let steps = complete_steps(dir);
        for old in steps.iter().take(steps.len().saturating_sub(keep)) {
            let f = CheckpointFiles::at(dir, *old);
            for path in [f.state, f.model, f.optimizer] {
                fs_err::remove_file(path)?;
            }
        }
    }
    Ok(files)
}

/// Removes the complete checkpoints before `step` that were written off the schedule
/// ([`TrainState::unscheduled`]); returns their steps.
///
/// # Errors
/// [`Error::File`] naming a file that could not be removed.
pub fn remove_unscheduled_before(dir: &Path, step: u64) -> Result<Vec<u64>> {
    let mut removed = Vec::new();
    for old in complete_steps(dir).into_iter().filter(|&s| s < step) {
        let files = CheckpointFiles::at(dir, old);
        if read_state(dir, old).is_ok_and(|state| state.unscheduled) {
            for path in [files.state, files.model, files.optimizer] {
                fs_err::remove_file(path)?;
            }
            removed.push(old);
        }
    }
    Ok(removed)
}

/// Writes weights, optimizer state and (last, as the completion marker) the train state.
fn write_files(
    files: &CheckpointFiles,
    model: &Model,
    optimizer: &ModuleOptimizer,
    state: &TrainState,
) -> Result<()> {
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
    write_atomic(&files.state, json.as_bytes())?;
    Ok(())
}

/// Reads the train state of the checkpoint at `step`.
///
/// # Errors
/// [`Error::DamagedCheckpoint`] for a missing, empty or malformed file; [`Error::Checkpoint`] for
/// a state of another format version.
pub fn read_state(dir: &Path, step: u64) -> Result<TrainState> {
    let path = CheckpointFiles::at(dir, step).state;
    let damaged = |message: String| Error::DamagedCheckpoint {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| damaged(e.to_string()))?;
    let state: TrainState =
        serde_json::from_str(&text).map_err(|e| damaged(format!("malformed train state: {e}")))?;
    if state.format_version != STATE_VERSION {
        return Err(Error::Checkpoint {
            path,
            message: format!(
                "checkpoint state format version {}, but this mixlab reads version {STATE_VERSION}; retrain the run with this mixlab",
                state.format_version
            ),
        });
    }
    Ok(state)
}

/// Writes `model`'s weights alone to `to`, in the layout of a checkpoint's `step-N.bpk`, atomically
/// (a temporary file beside it, renamed): weights made outside training (rounded, merged) that a
/// run then starts from.
///
/// # Errors
/// [`Error::Checkpoint`] naming the file that could not be written.
pub fn save_weights(model: Model, to: &Path) -> Result<()> {
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let staging = to.with_file_name(format!(".{name}.tmp"));
    let fail = |path: &Path, message: String| Error::Checkpoint {
        path: path.to_owned(),
        message,
    };
    model
        .save_file(&staging)
        .map_err(|e| fail(&staging, e.to_string()))?;
    std::fs::rename(&staging, to).map_err(|e| fail(to, e.to_string()))
}

/// Loads model weights saved by [`save`] into `model` (built with the same config).
///
/// # Errors
/// [`Error::DamagedCheckpoint`] when the file is missing, unreadable or its tensors do not fit the
/// model.
pub fn load_model(model: Model, path: &Path) -> Result<Model> {
    model
        .try_load_file(path)
        .map_err(|e| Error::DamagedCheckpoint {
            path: path.to_owned(),
            message: format!("cannot load model weights: {e}"),
        })
}

/// Loads optimizer state saved by [`save`].
///
/// # Errors
/// [`Error::DamagedCheckpoint`] when the file is missing or corrupt.
pub fn load_optimizer(optimizer: ModuleOptimizer, path: &Path) -> Result<ModuleOptimizer> {
    optimizer.load(path).map_err(|e| Error::DamagedCheckpoint {
        path: path.to_owned(),
        message: format!("cannot load optimizer state: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Preset, TrainConfig};
    use crate::data::sampler::MixtureSampler;
    use crate::data::store::DomainDocs;
    use crate::engine::optim::optimizer;
    use burn::tensor::Device;

    fn state(step: u64) -> TrainState {
        let docs = vec![DomainDocs::from_tokens("a", vec![vec![1, 2, 3]])];
        let sampler = MixtureSampler::new(docs, vec![1.0], 4, 0, 0, false).unwrap();
        TrainState {
            format_version: STATE_VERSION,
            step,
            tokens: 4 * step,
            sampler: sampler.state().clone(),
            run_hash: "h".into(),
            objective: Some(serde_json::json!({ "weights": [0.25, 0.75] })),
            unscheduled: false,
        }
    }

    #[test]
    fn retention_keeps_the_newest_or_all_and_state_round_trips() {
        let _rng = crate::test_rng::lock();
        let model = Model::new(&Preset::Tiny.config(16), &Device::flex());
        let optim = optimizer(&TrainConfig::default());
        for (keep, expected) in [
            (KeepCheckpoints::Newest(2), vec![3, 4]),
            (KeepCheckpoints::All, vec![1, 2, 3, 4]),
        ] {
            let dir = tempfile::tempdir().unwrap();
            for step in 1..=4 {
                save(dir.path(), &model, &optim, &state(step), keep).unwrap();
            }
            assert_eq!(complete_steps(dir.path()), expected, "{keep:?}");
            assert_eq!(read_state(dir.path(), 4).unwrap(), state(4));
        }
    }

    #[test]
    fn a_state_of_another_version_is_refused() {
        let _rng = crate::test_rng::lock();
        let dir = tempfile::tempdir().unwrap();
        let mut future = state(1);
        future.format_version = STATE_VERSION + 1;
        let path = CheckpointFiles::at(dir.path(), 1).state;
        std::fs::write(&path, serde_json::to_string(&future).unwrap()).unwrap();
        let err = read_state(dir.path(), 1).unwrap_err().to_string();
        let (found, reads) = (
            format!("format version {}", STATE_VERSION + 1),
            format!("reads version {STATE_VERSION}"),
        );
        assert!(err.contains(&found) && err.contains(&reads), "{err}");
        // A state of the stored-shuffle sampler (version 1) would continue another stream.
        let mut stored_shuffle = state(1);
        stored_shuffle.format_version = 1;
        std::fs::write(&path, serde_json::to_string(&stored_shuffle).unwrap()).unwrap();
        let err = read_state(dir.path(), 1).unwrap_err().to_string();
        assert!(err.contains("format version 1,"), "{err}");
    }

    #[test]
    fn a_killed_runs_leftovers_are_removed_and_complete_checkpoints_kept() {
        let _rng = crate::test_rng::lock();
        let dir = tempfile::tempdir().unwrap();
        let complete = CheckpointFiles::at(dir.path(), 1);
        for path in [&complete.model, &complete.optimizer, &complete.state] {
            std::fs::write(path, b"x").unwrap();
        }
        let half = CheckpointFiles::at(dir.path(), 2);
        std::fs::write(&half.model, b"x").unwrap();
        std::fs::write(&half.optimizer, b"x").unwrap();
        let tmp = dir.path().join(".step-2.json.abc.tmp");
        std::fs::write(&tmp, b"{").unwrap();
        let removed = remove_incomplete(dir.path()).unwrap();
        let mut expected = vec![tmp, half.model, half.optimizer];
        expected.sort();
        assert_eq!(removed, expected);
        assert_eq!(complete_steps(dir.path()), [1]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }
}
