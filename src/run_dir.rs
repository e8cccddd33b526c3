//! The run directory `runs/<name>/` (DESIGN.md, "Run directory"): resolved `config.toml`,
//! `metrics.parquet`, `checkpoints/`, `eval.parquet` and the `done` marker with the inputs' hash.

use std::path::{Path, PathBuf};

use anyhow::Context;
use mixlab_mixer::schedule::MixtureSchedule;
use mixlab_trainer::config::{ModelConfig, TrainConfig};
use mixlab_trainer::train::RunPaths;
use serde::{Deserialize, Serialize};

use crate::exit::UsageError;

/// The resolved configuration of a run, saved as `config.toml`: enough to evaluate, generate from
/// or resume the run without the original `datasets.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolvedRun {
    /// Hash of everything below plus the shards' identity.
    pub run_hash: String,
    /// The shard directory trained on.
    pub shards: PathBuf,
    /// The shards' inputs hash (from their manifest).
    pub shards_inputs_hash: String,
    /// Model shape.
    pub model: ModelConfig,
    /// Training hyperparameters.
    pub train: TrainConfig,
    /// The mixture schedule.
    pub mixture: MixtureSchedule,
}

impl ResolvedRun {
    /// Builds a resolved run and computes its hash.
    pub fn new(
        shards: PathBuf,
        shards_inputs_hash: String,
        model: ModelConfig,
        train: TrainConfig,
        mixture: MixtureSchedule,
    ) -> Self {
        let json = serde_json::json!({
            "shards_inputs_hash": shards_inputs_hash, "model": model, "train": train, "mixture": mixture,
        });
        let run_hash = mixlab_ingest::checksum::sha256_hex(json.to_string().as_bytes());
        Self {
            run_hash,
            shards,
            shards_inputs_hash,
            model,
            train,
            mixture,
        }
    }
}

/// A run directory's paths.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The directory.
    pub root: PathBuf,
}

impl RunDir {
    /// `root` as a run directory (nothing is created yet).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The `done` marker.
    pub fn done(&self) -> PathBuf {
        self.root.join("done")
    }

    /// Paths handed to the trainer.
    pub fn paths(&self) -> RunPaths {
        RunPaths {
            checkpoints: self.root.join("checkpoints"),
            metrics: self.root.join("metrics.parquet"),
            eval: self.root.join("eval.parquet"),
        }
    }

    /// The hash in the `done` marker, if the run finished.
    pub fn finished_hash(&self) -> Option<String> {
        std::fs::read_to_string(self.done())
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Writes `config.toml` atomically.
    pub fn write_config(&self, run: &ResolvedRun) -> anyhow::Result<()> {
        fs_err::create_dir_all(&self.root)?;
        let text =
            toml::to_string_pretty(run).context("serializing the resolved run configuration")?;
        write_atomic(&self.config(), text.as_bytes())
    }

    /// Reads `config.toml` of an existing run.
    pub fn read_config(&self) -> anyhow::Result<ResolvedRun> {
        let path = self.config();
        if !path.exists() {
            return Err(UsageError(format!(
                "{}: no run here (no config.toml); train one with `mixlab train --run ...`",
                self.root.display()
            ))
            .into());
        }
        let text = fs_err::read_to_string(&path)?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))
    }

    /// Marks the run finished with its hash.
    pub fn mark_done(&self, run_hash: &str) -> anyhow::Result<()> {
        write_atomic(&self.done(), format!("{run_hash}\n").as_bytes())
    }

    /// The newest complete checkpoint's model file.
    pub fn latest_model(&self) -> anyhow::Result<(u64, PathBuf)> {
        let dir = self.paths().checkpoints;
        let step = *mixlab_trainer::checkpoint::complete_steps(&dir)
            .last()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: no complete checkpoint; train the run first",
                    dir.display()
                )
            })?;
        Ok((
            step,
            mixlab_trainer::checkpoint::CheckpointFiles::at(&dir, step).model,
        ))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs_err::write(&tmp, bytes)?;
    fs_err::rename(&tmp, path)?;
    Ok(())
}
