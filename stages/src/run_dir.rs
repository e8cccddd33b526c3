//! The run directory `runs/<name>/` (DESIGN.md, "Run directory"): resolved `config.toml`,
//! `metrics.parquet`, `checkpoints/`, `eval.parquet` and the `done` marker with the inputs' hash.

use std::path::{Path, PathBuf};

use anyhow::Context;
use mixlab_artefacts::atomic::write_atomic;
use mixlab_ingest::manifest::ShardSet;
use mixlab_ingest::verified::Verification;
use mixlab_mixer::schedule::MixtureSchedule;
use mixlab_trainer::config::{ModelConfig, TrainConfig};
use mixlab_trainer::downstream::distill::DistillSettings;
use mixlab_trainer::downstream::quant::QuantConfig;
use mixlab_trainer::engine::RunPaths;
use mixlab_trainer::engine::checkpoint::{CheckpointFiles, complete_steps, read_state};
use serde::{Deserialize, Serialize};

use crate::Usage;

/// The packed int4 file of a quantized run (group size 32 only: GGUF's `Q4_0`).
pub const GGUF_FILE: &str = "model-q4_0.gguf";

/// `<run><suffix>`: the name of a run derived from `run` (`runs/a` and `-int4` give `runs/a-int4`).
pub fn suffixed(run: &Path, suffix: &str) -> PathBuf {
    let mut name = run.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The resolved configuration of a run, saved as `config.toml`: enough to evaluate, generate from
/// or resume the run without the original `datasets.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolvedRun {
    /// Hash of everything below that changes the result (`[train]` as
    /// [`TrainConfig::result_settings`]) plus the shards' identity.
    pub run_hash: String,
    /// The shard directory trained on.
    pub shards: PathBuf,
    /// The shards' inputs hash (from their manifest).
    pub shards_inputs_hash: String,
    /// SHA-256 of the shards' tokenizer.
    pub tokenizer_sha256: String,
    /// Model shape.
    pub model: ModelConfig,
    /// Training hyperparameters.
    pub train: TrainConfig,
    /// The mixture schedule.
    pub mixture: MixtureSchedule,
    /// The teacher and settings of a distilled run (`mixlab distill`); none for cross-entropy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillSource>,
    /// The weights the run starts from, when not a random initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitWeights>,
    /// The int4 quantization of a quantized run (`mixlab quantize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<QuantConfig>,
    /// The specialists and weights of a merged run (`mixlab merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeSource>,
}

/// What a merged run averages: each specialist's newest checkpoint, with its weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeSource {
    /// How the weights were chosen (`uniform`, `given`, `search`).
    pub method: String,
    /// The specialists, in the order of the specialists file.
    pub specialists: Vec<MergedSpecialist>,
}

/// One merged specialist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergedSpecialist {
    /// Its name in the specialists file.
    pub name: String,
    /// Its run's hash.
    pub run_hash: String,
    /// The checkpoint step averaged.
    pub step: u64,
    /// Its weight (the weights sum to 1).
    pub weight: f64,
}

/// Weights a run starts from: a file made from another run's checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitWeights {
    /// The weights file (`step-N.bpk` layout).
    pub path: PathBuf,
    /// The run they come from.
    pub run_hash: String,
    /// Its checkpoint step.
    pub step: u64,
}

/// What a distilled run learns from: the teacher run's checkpoint and the distillation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillSource {
    /// The teacher's run directory.
    pub teacher: PathBuf,
    /// The teacher run's hash (its `config.toml`).
    pub teacher_run_hash: String,
    /// The teacher's checkpoint step.
    pub teacher_step: u64,
    /// The objective's settings.
    pub settings: DistillSettings,
}

impl ResolvedRun {
    /// Builds a resolved run on verified `shards` and computes its hash.
    pub fn new(
        shards: &ShardSet,
        model: ModelConfig,
        train: TrainConfig,
        mixture: MixtureSchedule,
    ) -> Self {
        let manifest = shards.manifest();
        let (inputs, tokenizer) = (&manifest.inputs_hash, &manifest.tokenizer.sha256);
        let mut run = Self {
            run_hash: String::new(),
            shards: shards.root().to_owned(),
            shards_inputs_hash: inputs.clone(),
            tokenizer_sha256: tokenizer.clone(),
            model,
            train,
            mixture,
            distill: None,
            init: None,
            quantize: None,
            merge: None,
        };
        run.run_hash = run.hash();
        run
    }

    /// This run distilled from `source` instead of trained on cross-entropy (a new run hash).
    pub fn distilled(mut self, source: DistillSource) -> Self {
        self.distill = Some(source);
        self.run_hash = self.hash();
        self
    }

    /// This run started from `init` weights instead of a random initialisation (a new run hash).
    pub fn started_from(mut self, init: InitWeights) -> Self {
        self.init = Some(init);
        self.run_hash = self.hash();
        self
    }

    /// This run evaluating `init`, the weighted average of the specialists in `merge` (a new run
    /// hash).
    pub fn merged(mut self, init: InitWeights, merge: MergeSource) -> Self {
        (self.init, self.merge) = (Some(init), Some(merge));
        self.run_hash = self.hash();
        self
    }

    /// This run started from `init` weights, int4-quantized with `quantize` (a new run hash).
    pub fn quantized(mut self, init: InitWeights, quantize: QuantConfig) -> Self {
        (self.init, self.quantize) = (Some(init), Some(quantize));
        self.run_hash = self.hash();
        self
    }

    /// Hex SHA-256 of the result-changing settings.
    fn hash(&self) -> String {
        let mut json = serde_json::json!({
            "shards_inputs_hash": self.shards_inputs_hash, "tokenizer_sha256": self.tokenizer_sha256,
            "model": self.model, "train": self.train.result_settings(), "mixture": self.mixture,
        });
        // Only runs that have these sections carry the keys, so the hashes of plain runs stay as
        // they were. The init weights count by their origin, not their path.
        if let Some(distill) = &self.distill {
            json["distill"] = serde_json::json!(distill);
        }
        if let Some(init) = &self.init {
            json["init"] = serde_json::json!({ "run_hash": init.run_hash, "step": init.step });
        }
        if let Some(quantize) = &self.quantize {
            json["quantize"] = serde_json::json!(quantize);
        }
        if let Some(merge) = &self.merge {
            json["merge"] = serde_json::json!(merge);
        }
        mixlab_ingest::checksum::sha256_hex(json.to_string().as_bytes())
    }

    /// The result-changing settings in which `other` differs from this run, as `section.key old →
    /// new` (the mixture and shards as a whole); empty when only bookkeeping differs (how often a
    /// run evaluates and saves, how many checkpoints it keeps).
    pub fn differences(&self, other: &Self) -> Vec<String> {
        let result_json = |run: &Self| {
            let mut json = serde_json::json!(run);
            json["train"] = serde_json::json!(run.train.result_settings());
            json
        };
        let (old, new) = (result_json(self), result_json(other));
        let mut changes = Vec::new();
        for section in ["model", "train", "distill", "init", "quantize", "merge"] {
            let (old, new) = (
                leaves(section, &old[section]),
                leaves(section, &new[section]),
            );
            let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
            for key in keys {
                let (was, now) = (old.get(key), new.get(key));
                if was != now {
                    let show = |v: Option<&serde_json::Value>| {
                        v.map_or("none".into(), ToString::to_string)
                    };
                    changes.push(format!("{key} {} → {}", show(was), show(now)));
                }
            }
        }
        if old["mixture"] != new["mixture"] {
            changes.push("the mixture".to_owned());
        }
        if (&self.shards_inputs_hash, &self.tokenizer_sha256)
            != (&other.shards_inputs_hash, &other.tokenizer_sha256)
        {
            changes.push("the shards".to_owned());
        }
        changes
    }

    /// Opens and verifies the run's shards, refusing shards other than the ones it was made from.
    ///
    /// # Errors
    /// A missing or damaged shard set, or one whose inputs or tokenizer hash differ (both named).
    pub fn open_shards(&self, verification: Verification) -> anyhow::Result<ShardSet> {
        let shards = ShardSet::open(&self.shards, verification)?;
        shards.expect_identity(&self.shards_inputs_hash, &self.tokenizer_sha256)?;
        Ok(shards)
    }
}

/// The scalar values of a JSON tree by dotted path under `prefix` (`train.lr`, `distill.settings.alpha`).
fn leaves(
    prefix: &str,
    value: &serde_json::Value,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut out = std::collections::BTreeMap::new();
    match value {
        serde_json::Value::Object(fields) => {
            for (key, v) in fields {
                out.extend(leaves(&format!("{prefix}.{key}"), v));
            }
        }
        serde_json::Value::Null => {}
        scalar => {
            out.insert(prefix.to_owned(), scalar.clone());
        }
    }
    out
}

/// Whether `text` is a run hash as [`ResolvedRun`] computes it: 64 lower-case hex digits.
fn is_run_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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

    fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    fn done(&self) -> PathBuf {
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

    /// The hash in the `done` marker, if the run finished. A marker that holds no run hash (torn
    /// by a power loss) counts as unfinished, with a warning: the run resumes from its checkpoints.
    pub fn finished_hash(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.done()).ok()?;
        let hash = text.trim();
        if is_run_hash(hash) {
            return Some(hash.to_owned());
        }
        tracing::warn!(
            "{}: a done marker that holds no run hash (torn by a crash?): the run counts as unfinished and resumes from its checkpoints",
            self.done().display()
        );
        None
    }

    /// Whether `config.toml` exists (a run was started here).
    pub fn exists(&self) -> bool {
        self.config().exists()
    }

    /// Writes `config.toml` atomically.
    pub fn write_config(&self, run: &ResolvedRun) -> anyhow::Result<()> {
        let text =
            toml::to_string_pretty(run).context("serializing the resolved run configuration")?;
        Ok(write_atomic(&self.config(), text.as_bytes())?)
    }

    /// Reads `config.toml` of an existing run.
    pub fn read_config(&self) -> anyhow::Result<ResolvedRun> {
        let path = self.config();
        if !path.exists() {
            anyhow::bail!(Usage(format!(
                "{}: no run here (no config.toml); train one with `mixlab train --run ...`",
                self.root.display()
            )));
        }
        let text = fs_err::read_to_string(&path)?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))
    }

    /// Reads `config.toml` of a run that has finished (its `done` marker holds its hash), as the
    /// source of another stage (`what`: the flag naming it, e.g. `--teacher runs/big`).
    ///
    /// # Errors
    /// No run here, or one that has not finished (a usage error saying how to finish it).
    pub fn read_finished(&self, what: &str) -> anyhow::Result<ResolvedRun> {
        let run = self.read_config().with_context(|| what.to_owned())?;
        if self.finished_hash().as_ref() != Some(&run.run_hash) {
            anyhow::bail!(Usage(format!(
                "{what}: the run in {} has not finished; finish it first (`mixlab train`)",
                self.root.display()
            )));
        }
        Ok(run)
    }

    /// Marks the run finished with its hash.
    pub fn mark_done(&self, run_hash: &str) -> anyhow::Result<()> {
        Ok(write_atomic(
            &self.done(),
            format!("{run_hash}\n").as_bytes(),
        )?)
    }

    /// The run's packed int4 model, [`GGUF_FILE`] (written by `mixlab quantize` at group size 32).
    ///
    /// # Errors
    /// [`Usage`] (with `--gguf` in the message, the flag that asks for it) when it does not exist.
    ///
    /// # Example
    /// ```
    /// use mixlab_stages::run_dir::RunDir;
    /// let dir = tempfile::tempdir()?;
    /// let err = RunDir::new(dir.path().to_owned()).packed_model().unwrap_err();
    /// assert!(err.to_string().contains("model-q4_0.gguf does not exist"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn packed_model(&self) -> Result<PathBuf, Usage> {
        let path = self.root.join(GGUF_FILE);
        if path.exists() {
            return Ok(path);
        }
        Err(Usage(format!(
            "--gguf: {} does not exist; `mixlab quantize` writes it (at group size 32)",
            path.display()
        )))
    }

    /// The newest complete checkpoint's step and model file, refused unless it belongs to the run
    /// described by `config.toml` (same run hash).
    ///
    /// # Errors
    /// No config or no complete checkpoint, an unreadable state file, or a checkpoint of another
    /// run (both hashes named).
    pub fn latest_model(&self) -> anyhow::Result<(u64, PathBuf)> {
        let config = self.read_config()?;
        let dir = self.paths().checkpoints;
        let step = *complete_steps(&dir).last().ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no complete checkpoint; train the run first",
                dir.display()
            )
        })?;
        let files = CheckpointFiles::at(&dir, step);
        let state = read_state(&dir, step)?;
        if state.run_hash != config.run_hash {
            anyhow::bail!(
                "{}: checkpoint of another run (run hash {}) than {} describes (run hash {}); retrain the run in a new directory",
                files.state.display(),
                state.run_hash,
                self.config().display(),
                config.run_hash
            );
        }
        Ok((step, files.model))
    }
}
