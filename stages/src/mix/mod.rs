//! The `mix` stage: a mixture schedule from a run table (RegMix), the SDM's utilities, DoReMi's
//! weights or a baseline, written as `mixture.toml`.

mod baseline;
mod regmix;
mod sdm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use mixlab_artefacts::mixture::write_mixture;
use mixlab_artefacts::split::Split;
use mixlab_mixer::baselines::epoch_caps;
use mixlab_mixer::bounds::Bounds;
use mixlab_mixer::config::MixConfig;
use mixlab_mixer::regress::ModelKind;
use mixlab_mixer::schedule::MixtureSchedule;

use crate::Usage;
use crate::arms::SdmObjective;
use crate::config::LoadedConfig;
use crate::simulate::{DOREMI_FILE, UTILITIES_FILE, simulation_dir};
use crate::workspace::{ShardsDir, Workspace};

/// A mixture to make: how, with which `datasets.toml` (its `[mix]` bounds, `[train]` budget and
/// targets), and where it goes.
#[derive(Debug, Clone)]
pub struct MixSpec {
    /// The method and its inputs.
    pub method: MixMethod,
    /// `datasets.toml`, loaded; `None`: default `[mix]`, no epoch caps.
    pub config: Option<LoadedConfig>,
    /// The mixture file; `None`: `<out>/mixture.toml`.
    pub output: Option<PathBuf>,
}

/// How a mixture is made.
#[derive(Debug, Clone)]
pub enum MixMethod {
    /// A regression over a table of runs, searched on the simplex.
    Regmix(RegmixSpec),
    /// The SDM's joint utilities (default: `<out>/simulate/utilities.parquet`).
    Sdm {
        /// The utilities file.
        utilities: Option<PathBuf>,
        /// How utilities become weights.
        objective: SdmSettings,
    },
    /// The own-domain control: utility 1 on each target's own domain.
    Own(SdmSettings),
    /// DoReMi's averaged weights (default: `<out>/simulate/doremi.toml`).
    Doremi(Option<PathBuf>),
    /// Equal weights.
    Uniform,
    /// Proportional to the domains' training tokens.
    Natural,
    /// UniMax within `[mix].max_epochs` and the `[train]` budget.
    Unimax,
}

/// The SDM objective and its one setting.
#[derive(Debug, Clone, Copy)]
pub struct SdmSettings {
    /// Utilimax or proportional.
    pub objective: SdmObjective,
    /// Entropy weight of utilimax.
    pub temperature: f64,
    /// Share every domain keeps under proportional.
    pub floor: f64,
}

impl SdmSettings {
    /// The entropy weight of utilimax unless told otherwise.
    pub const DEFAULT_TEMPERATURE: f64 = 0.3;
    /// The floor share of proportional unless told otherwise.
    pub const DEFAULT_FLOOR: f64 = 0.02;

    /// `objective` with the default temperature and floor.
    pub fn new(objective: SdmObjective) -> Self {
        Self {
            objective,
            temperature: Self::DEFAULT_TEMPERATURE,
            floor: Self::DEFAULT_FLOOR,
        }
    }
}

/// RegMix's inputs: the run table and the search.
#[derive(Debug, Clone)]
pub struct RegmixSpec {
    /// Mixture weights per run (CSV or Parquet).
    pub runs: PathBuf,
    /// Losses per run, with the same index column.
    pub losses: PathBuf,
    /// The loss column to minimise.
    pub target: String,
    /// The index column.
    pub index: String,
    /// Rescale each run's weights to sum to 1.
    pub normalize: bool,
    /// The regression model.
    pub model: ModelKind,
    /// The centre of the search.
    pub prior: Prior,
    /// Overrides `[mix].samples`.
    pub samples: Option<usize>,
    /// Overrides `[mix].top_k`.
    pub top_k: Option<usize>,
    /// Overrides `[mix].seed`.
    pub seed: Option<u64>,
}

/// The centre of RegMix's search.
#[derive(Debug, Clone, PartialEq)]
pub enum Prior {
    /// The mean mixture of the run table.
    Runs,
    /// The shards' training-token shares.
    Tokens,
    /// Equal weights.
    Uniform,
    /// Weights per domain from a file (`domain`, `weight`).
    File(PathBuf),
}

impl Prior {
    /// Its name in provenance (a file's path).
    ///
    /// # Example
    /// ```
    /// use mixlab_stages::mix::Prior;
    ///
    /// assert_eq!(Prior::Tokens.name(), "tokens");
    /// assert_eq!(Prior::File("prior.csv".into()).name(), "prior.csv");
    /// ```
    pub fn name(&self) -> String {
        match self {
            Prior::Runs => "runs".into(),
            Prior::Tokens => "tokens".into(),
            Prior::Uniform => "uniform".into(),
            Prior::File(path) => path.display().to_string(),
        }
    }
}

/// Makes the mixture `spec` describes and writes it; the schedule and where it went.
///
/// # Errors
/// Missing or bad inputs (utilities, run tables, DoReMi weights, shards), infeasible `[mix]`
/// bounds ([`Usage`]), and write failures.
pub fn mix(workspace: &Workspace, spec: &MixSpec) -> anyhow::Result<(MixtureSchedule, PathBuf)> {
    let loaded = spec.config.as_ref();
    let output = (spec.output.clone()).unwrap_or_else(|| workspace.path(Path::new("mixture.toml")));
    let shards = workspace.shards();
    let schedule = match &spec.method {
        MixMethod::Regmix(regmix) => regmix::regmix(regmix, loaded, &shards)?,
        MixMethod::Sdm {
            utilities,
            objective,
        } => {
            let path = (utilities.clone())
                .unwrap_or_else(|| simulation_dir(&workspace.out).join(UTILITIES_FILE));
            sdm::sdm(Some(&path), *objective, loaded, &shards)?
        }
        MixMethod::Own(objective) => sdm::sdm(None, *objective, loaded, &shards)?,
        MixMethod::Doremi(weights) => {
            let path = (weights.clone())
                .unwrap_or_else(|| simulation_dir(&workspace.out).join(DOREMI_FILE));
            baseline::doremi(&path, &shards)?
        }
        MixMethod::Uniform | MixMethod::Natural | MixMethod::Unimax => {
            baseline::baseline(&spec.method, loaded, &shards)?
        }
    };
    write_mixture(&output, &schedule)?;
    Ok((schedule, output))
}

/// Training tokens per domain of the verified shards, in manifest order.
fn shard_tokens(shards: &ShardsDir) -> anyhow::Result<Vec<(String, u64)>> {
    let shards = shards
        .open()
        .context("the mixture needs the shards' token counts")?;
    Ok(shards.manifest().split_tokens(Split::Train))
}

/// The token budget of `[train]`: steps × tokens per step, refusing a product that overflows.
fn train_budget(loaded: &LoadedConfig) -> anyhow::Result<u64> {
    let train = &loaded.config.train;
    train
        .steps
        .checked_mul(train.tokens_per_step())
        .ok_or_else(|| {
            anyhow::anyhow!(Usage(format!(
                "{}: [train] steps × tokens per step overflows",
                loaded.path.display()
            )))
        })
}

/// Training tokens of `domains` in the shards; every domain must be there.
fn tokens_of(domains: &[String], shards: &ShardsDir) -> anyhow::Result<Vec<u64>> {
    let tokens: BTreeMap<String, u64> = shard_tokens(shards)?.into_iter().collect();
    domains
        .iter()
        .map(|d| {
            tokens.get(d).copied().ok_or_else(|| {
                anyhow::anyhow!(Usage(format!(
                    "domain {d:?} of the run table is not in the shards under {} (needed for --prior tokens and [mix].max_epochs)",
                    shards.path.display()
                )))
            })
        })
        .collect()
}

/// `[mix]` bounds plus, with `--config`, epoch caps from the shards' token counts and `[train]`'s
/// budget (`tokens` are then always given: caps are never dropped silently).
fn bounds(
    domains: &[String],
    mix: &MixConfig,
    loaded: Option<&LoadedConfig>,
    tokens: Option<&[u64]>,
) -> anyhow::Result<Bounds> {
    let caps = match (loaded, mix.max_epochs) {
        (Some(loaded), Some(max_epochs)) => {
            let tokens = tokens.expect("token counts are read when epoch caps apply");
            Some(epoch_caps(tokens, train_budget(loaded)?, max_epochs))
        }
        _ => None,
    };
    Bounds::from_config(domains, mix, caps.as_deref()).context(Usage("[mix]".into()))
}
