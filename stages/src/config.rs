//! `datasets.toml`: the one configuration file of a mixlab pipeline.
//!
//! Each stage owns its section's type (`[ingest]` in `mixlab-ingest`, `[model]` and `[train]` in
//! `mixlab-trainer`, ...); this module composes them, reads the file and resolves relative paths
//! against the file's directory. Unknown keys anywhere are errors (exit code 2).

use std::path::{Path, PathBuf};

use anyhow::Context;
use mixlab_ingest::config::{DomainConfig, IngestConfig, TokenizerConfig};
use mixlab_mixer::config::MixConfig;
use mixlab_simulator::config::SimulateConfig;
use mixlab_trainer::config::{ModelSection, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::Usage;
use crate::arms::{Arm, arms};

/// The whole `datasets.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[demo]`: generate the embedded demo corpus when its files are missing.
    #[serde(default)]
    pub demo: Option<DemoConfig>,
    /// `[tokenizer]`.
    pub tokenizer: TokenizerConfig,
    /// `[ingest]`.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// `[[domain]]`.
    #[serde(default)]
    pub domain: Vec<DomainConfig>,
    /// `[model]`: the model preset and overrides.
    #[serde(default)]
    pub model: ModelSection,
    /// `[train]`: training hyperparameters.
    #[serde(default)]
    pub train: TrainConfig,
    /// `[mix]`: mixture constraints and search settings.
    #[serde(default)]
    pub mix: MixConfig,
    /// `[simulate]`: the Scalable Data Mixer's proxy run and utility estimation.
    #[serde(default)]
    pub simulate: SimulateConfig,
    /// `[run]`: what `mixlab run` does after ingest (checked by [`LoadedConfig::arms`]).
    #[serde(default)]
    pub run: toml::Table,
    /// `[[ablation]]`: arms `mixlab run` compares, each `[run]` with some keys replaced.
    #[serde(default)]
    pub ablation: Vec<toml::Table>,
}

/// `[demo]`: where the embedded demo corpus lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Directory of the demo files, relative to the config file.
    pub dir: PathBuf,
    /// Generator seed. Default: 0.
    #[serde(default)]
    pub seed: u64,
}

/// A parsed configuration and the directory its relative paths start from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The parsed file.
    pub config: Config,
    /// The config file's path.
    pub path: PathBuf,
    /// Its directory.
    pub base_dir: PathBuf,
}

impl LoadedConfig {
    /// Reads and validates a config file.
    ///
    /// # Errors
    /// A [`Usage`] error naming the file, line and key for unreadable or invalid TOML and
    /// out-of-range values.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            fs_err::read_to_string(path).context(Usage("cannot read the configuration".into()))?;
        let config: Config = toml::from_str(&text)
            .map_err(|e| Usage(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
        let file = || format!("{}", path.display());
        mixlab_ingest::config::validate(&config.tokenizer, &config.ingest, &config.domain)
            .with_context(file)?;
        config.train.validate().with_context(file)?;
        config.mix.validate().context(Usage(file()))?;
        arms(&config.run, &config.ablation, config.train.seed).context(Usage(file()))?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir
        };
        Ok(Self {
            config,
            path: path.to_owned(),
            base_dir,
        })
    }

    /// The arms of `mixlab run`: `[run]` alone, or each `[[ablation]]` over it.
    ///
    /// # Errors
    /// Invalid `[run]` or `[[ablation]]` tables (checked by [`LoadedConfig::load`] already).
    pub fn arms(&self) -> anyhow::Result<Vec<Arm>> {
        let c = &self.config;
        arms(&c.run, &c.ablation, c.train.seed).context(Usage(self.path.display().to_string()))
    }

    /// Hex SHA-256 of the sections that determine the shards (not the keys that choose the
    /// engine: both engines write the same shards).
    pub fn ingest_hash(&self) -> String {
        let c = &self.config;
        let mut ingest = serde_json::json!(c.ingest);
        if let Some(table) = ingest.as_object_mut() {
            for key in IngestConfig::ENGINE_KEYS {
                table.remove(key);
            }
        }
        let json =
            serde_json::json!({ "tokenizer": c.tokenizer, "ingest": ingest, "domain": c.domain });
        mixlab_ingest::checksum::sha256_hex(json.to_string().as_bytes())
    }
}
