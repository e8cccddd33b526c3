//! The `simulate` stage: the Scalable Data Mixer's proxy runs and utility estimates.
//!
//! | module | owns |
//! |---|---|
//! | `proxies` | the proxy runs: their configuration, directory and training |
//! | `influence` | one proxy's checkpoints scored by influence (`utilities.parquet`) |
//! | `loo` | the proxy once more without each domain (`loo_utilities.parquet`) |
//! | `doremi` | DoReMi's group-DRO proxy and its weights (`doremi.toml`) |

mod doremi;
mod influence;
mod loo;
mod proxies;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::ValueEnum;
use mixlab_artefacts::utilities::DomainUtility;
use mixlab_ingest::tokenize::TextTokenizer;
use mixlab_simulator::score::resolve_targets;
use serde::{Deserialize, Serialize};

use crate::config::LoadedConfig;
use crate::corpus::open_corpus;
use crate::locks::lock_dir;
use crate::texts::read_texts;
use crate::workspace::Workspace;
use proxies::Proxies;

/// The simulation's directory under an output root: proxies, scores and estimates.
///
/// # Example
/// ```
/// use std::path::Path;
/// use mixlab_stages::simulate::{UTILITIES_FILE, simulation_dir};
///
/// let utilities = simulation_dir(Path::new("out")).join(UTILITIES_FILE);
/// assert_eq!(utilities, Path::new("out/simulate/utilities.parquet"));
/// ```
pub fn simulation_dir(out: &Path) -> PathBuf {
    out.join("simulate")
}

/// The influence estimates (`simulate --method influence`), read by `mix --method sdm`.
pub const UTILITIES_FILE: &str = "utilities.parquet";

/// DoReMi's averaged weights (`simulate --method doremi`), read by `mix --method doremi`.
pub const DOREMI_FILE: &str = "doremi.toml";

/// Utility estimators of `simulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimulateMethod {
    /// One proxy run; DataInf influence of training documents at each checkpoint
    /// (utilities.parquet).
    Influence,
    /// Leave-one-out: the proxy trained once more without each domain; a domain's utility is the
    /// rise of each target's loss without it (loo_utilities.parquet; one run per domain).
    Loo,
    /// DoReMi: a second proxy trained with group DRO against the uniform proxy as reference; its
    /// domain weights follow the excess loss ([simulate.doremi]); their average over the run is
    /// written to doremi.toml for `mix --method doremi`.
    Doremi,
}

impl SimulateMethod {
    /// The `--method` value.
    pub fn name(self) -> &'static str {
        match self {
            SimulateMethod::Influence => "influence",
            SimulateMethod::Loo => "loo",
            SimulateMethod::Doremi => "doremi",
        }
    }
}

/// A simulation: the configuration file (its `[simulate]`, `[model]` and `[train]`) and the
/// estimator.
#[derive(Debug, Clone)]
pub struct SimulateSpec {
    /// `datasets.toml`.
    pub config: PathBuf,
    /// The estimator.
    pub method: SimulateMethod,
}

/// What a simulation wrote.
#[derive(Debug)]
pub enum SimulateOutcome {
    /// Domain utilities per target and joint (influence or leave-one-out).
    Utilities {
        /// `utilities.parquet` or `loo_utilities.parquet`.
        path: PathBuf,
        /// Every domain × target (and joint) × checkpoint row.
        rows: Vec<DomainUtility>,
        /// The domains, in shard order.
        domains: Vec<String>,
        /// The targets' names, in `[[simulate.target]]` order.
        targets: Vec<String>,
        /// Leave-one-out only: Spearman ρ of the joint utilities against the influence
        /// estimates, when those exist.
        influence_agreement: Option<f64>,
    },
    /// DoReMi's domain weights.
    Doremi {
        /// `doremi.toml`.
        path: PathBuf,
        /// `(domain, final weight, average weight)` in shard order.
        weights: Vec<(String, f64, f64)>,
    },
}

/// Runs the simulation `spec` describes in `<out>/simulate` (resuming or reusing its proxies).
///
/// # Errors
/// A bad `[simulate]` section or target file (naming the configuration file), unreadable shards,
/// another process simulating in the same directory, and training or scoring failures.
pub fn simulate(workspace: &Workspace, spec: &SimulateSpec) -> anyhow::Result<SimulateOutcome> {
    let loaded = LoadedConfig::load(&spec.config)?;
    let config_file = || spec.config.display().to_string();
    loaded
        .config
        .simulate
        .validate()
        .with_context(config_file)?;
    let shards = workspace.shards().open()?;
    let corpus = open_corpus(&shards, workspace.quiet)?;
    let tokenizer = TextTokenizer::load(&shards.tokenizer_path())?;
    let base = loaded
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let targets = resolve_targets(&loaded.config.simulate, &corpus, |path| {
        read_texts(&base.join(path), &tokenizer)
    })
    .with_context(config_file)?;
    let root = simulation_dir(&workspace.out);
    let _lock = lock_dir(&root, "simulate")?;
    let proxies = Proxies {
        loaded: &loaded,
        shards: &shards,
        corpus: &corpus,
        root,
        quiet: workspace.quiet,
    };
    match spec.method {
        SimulateMethod::Influence => influence::influence(&proxies, &targets),
        SimulateMethod::Loo => loo::leave_one_out(&proxies, &targets),
        SimulateMethod::Doremi => doremi::doremi(&proxies),
    }
}
