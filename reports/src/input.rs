//! What a report is made of: arms, their seeds, and each seed's runs (stage by stage), named by
//! the files the binary's run directories hold. The report never walks a run directory itself.

use std::path::PathBuf;

use mixlab_mixer::schedule::MixtureSchedule;
use serde::Serialize;

/// Everything one report compares.
#[derive(Debug, Clone, Serialize)]
pub struct ReportInput {
    /// The report's title.
    pub title: String,
    /// The arms, in the order they are shown.
    pub arms: Vec<ArmInput>,
    /// The SDM's `utilities.parquet`, when an arm used it.
    pub utilities: Option<PathBuf>,
    /// The domains whose probe splits are the mixture's targets, with their weights: the
    /// report adds their weighted mean (`targets`), the number the mixer optimizes.
    pub targets: Vec<(String, f64)>,
}

/// One arm: a way of making the model (mixture method, downstream stages), run with some seeds.
#[derive(Debug, Clone, Serialize)]
pub struct ArmInput {
    /// Its name.
    pub name: String,
    /// Its mixture schedule, when known.
    #[serde(skip)]
    pub mixture: Option<MixtureSchedule>,
    /// One entry per seed.
    pub seeds: Vec<SeedInput>,
}

/// The runs of one seed of an arm.
#[derive(Debug, Clone, Serialize)]
pub struct SeedInput {
    /// The training seed.
    pub seed: u64,
    /// The runs in stage order (train, then distill, merge, quantize); the last is the arm's
    /// final model.
    pub runs: Vec<RunInput>,
}

/// One finished run's files.
#[derive(Debug, Clone, Serialize)]
pub struct RunInput {
    /// The stage that made it (`train`, `distill`, `merge`, `quantize`).
    pub stage: String,
    /// Its directory, as shown to the reader.
    pub name: String,
    /// Its `eval.parquet`.
    pub eval: PathBuf,
    /// Its `metrics.parquet`.
    pub metrics: PathBuf,
    /// Training tokens of the run (its budget).
    pub tokens: u64,
}

impl ReportInput {
    /// Every run with its arm, seed and position in its seed's chain.
    pub(crate) fn runs(&self) -> impl Iterator<Item = (&ArmInput, &SeedInput, usize, &RunInput)> {
        self.arms.iter().flat_map(|arm| {
            arm.seeds.iter().flat_map(move |seed| {
                seed.runs
                    .iter()
                    .enumerate()
                    .map(move |(order, run)| (arm, seed, order, run))
            })
        })
    }
}
