//! What one planned stage does, typed: [`StageSpec`], and the command line that replays it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::arms::{DistillStage, MixChoice, QuantizeStage, SdmObjective};
use crate::merge::MergeWeights;
use crate::simulate::SimulateMethod;

use super::StageKind;

/// Stands for the job's configuration file in a stage's arguments.
pub const CONFIG: &str = "{config}";

/// Stands for the job's output directory in a stage's arguments.
pub const OUT: &str = "{out}";

/// One stage of `mixlab run`: paths relative to the output directory, the configuration the job's.
///
/// [`StageSpec::args`] writes it as the subcommand a user would type to run it by hand (with
/// [`CONFIG`] and [`OUT`] standing for the job's file and directory); the stage key hashes those.
///
/// # Example
/// ```
/// use mixlab_stages::plan::{ModelRun, StageKind, StageSpec};
///
/// let train = StageSpec::Train(ModelRun {
///     mixture: "mixtures/sdm.toml".into(),
///     run: "runs/sdm".into(),
///     seed: 1,
/// });
/// assert_eq!(train.kind(), StageKind::Train);
/// assert_eq!(
///     train.args().join(" "),
///     "train --config {config} --mixture {out}/mixtures/sdm.toml --run runs/sdm --seed 1"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "lowercase")]
pub enum StageSpec {
    /// The SDM's simulation (influence) or DoReMi's proxy.
    Simulate {
        /// The estimator.
        method: SimulateMethod,
    },
    /// An arm's mixture.
    Mix {
        /// How it is made.
        method: MixChoice,
        /// The SDM objective (for the methods that take one).
        objective: SdmObjective,
        /// The mixture file.
        mixture: PathBuf,
    },
    /// A training run.
    Train(ModelRun),
    /// A student distilled from a finished run.
    Distill {
        /// The teacher run.
        teacher: PathBuf,
        /// The student's preset and steps, and the loss's settings.
        settings: DistillStage,
        /// The student run.
        student: ModelRun,
    },
    /// Specialists annealed from a run and merged.
    Merge {
        /// The run they start from.
        base: PathBuf,
        /// The specialists file (absolute).
        specialists: PathBuf,
        /// How they are weighted.
        weights: MergeWeights,
    },
    /// int4 weights of a run.
    Quantize {
        /// The run quantized.
        run: PathBuf,
        /// Group size and quantization-aware training steps.
        settings: QuantizeStage,
    },
    /// The report over every arm of the plan.
    Report {
        /// Written to `reports/<name>`.
        name: String,
    },
}

/// A run trained on an arm's mixture at one seed, with the job's `[model]` and `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRun {
    /// The arm's mixture file.
    pub mixture: PathBuf,
    /// The run directory.
    pub run: PathBuf,
    /// Seed of initialisation and data order.
    pub seed: u64,
}

impl StageSpec {
    /// Its kind.
    pub fn kind(&self) -> StageKind {
        match self {
            StageSpec::Simulate { .. } => StageKind::Simulate,
            StageSpec::Mix { .. } => StageKind::Mix,
            StageSpec::Train(_) => StageKind::Train,
            StageSpec::Distill { .. } => StageKind::Distill,
            StageSpec::Merge { .. } => StageKind::Merge,
            StageSpec::Quantize { .. } => StageKind::Quantize,
            StageSpec::Report { .. } => StageKind::Report,
        }
    }

    /// The subcommand and arguments that run this stage by hand (without the global flags).
    pub fn args(&self) -> Vec<String> {
        let mut args = Args(vec![self.kind().name().to_owned()]);
        match self {
            StageSpec::Simulate { method } => {
                args.pairs([("--config", CONFIG), ("--method", method.name())]);
            }
            StageSpec::Mix {
                method,
                objective,
                mixture,
            } => {
                args.pairs([("--method", method.name()), ("--config", CONFIG)]);
                if method.takes_objective() {
                    args.pairs([("--objective", objective.name())]);
                }
                args.pairs([("--output", &in_out(mixture))]);
            }
            StageSpec::Train(run) => args.model_run(run),
            StageSpec::Distill {
                teacher,
                settings,
                student,
            } => {
                args.pairs([
                    ("--teacher", &teacher.display().to_string()),
                    ("--alpha", &settings.alpha.to_string()),
                    ("--temperature", &settings.temperature.to_string()),
                ]);
                args.model_run(student);
                args.pairs([("--preset", settings.preset.name())]);
                if let Some(steps) = settings.steps {
                    args.pairs([("--steps", &steps.to_string())]);
                }
            }
            StageSpec::Merge {
                base,
                specialists,
                weights,
            } => args.pairs([
                ("--base", &base.display().to_string()),
                ("--specialists", &specialists.display().to_string()),
                ("--weights", &weights.to_string()),
            ]),
            StageSpec::Quantize { run, settings } => args.pairs([
                ("--run", &run.display().to_string()),
                ("--group-size", &settings.group_size.to_string()),
                ("--qat-steps", &settings.qat_steps.to_string()),
            ]),
            StageSpec::Report { name } => {
                args.pairs([
                    ("--plan", &in_out(Path::new(super::PLAN_FILE))),
                    ("--name", name),
                ]);
            }
        }
        args.0
    }

    /// The command line that runs this stage by hand, for a job writing to `out` with `config`.
    ///
    /// # Example
    /// ```
    /// use mixlab_stages::plan::StageSpec;
    /// use std::path::Path;
    ///
    /// let report = StageSpec::Report { name: "ablation".into() };
    /// assert_eq!(
    ///     report.command_line(Path::new("out"), Path::new("datasets.toml")),
    ///     "mixlab report --plan out/pipeline/plan.json --name ablation"
    /// );
    /// ```
    pub fn command_line(&self, out: &Path, config: &Path) -> String {
        let (out, config) = (out.display().to_string(), config.display().to_string());
        let args = (self.args().into_iter()).map(|a| a.replace(OUT, &out).replace(CONFIG, &config));
        std::iter::once("mixlab".to_owned())
            .chain(args)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `path` under the job's output directory, as the arguments spell it.
fn in_out(path: &Path) -> String {
    format!("{OUT}/{}", path.display())
}

/// A stage's arguments, built in order.
struct Args(Vec<String>);

impl Args {
    fn pairs<const N: usize>(&mut self, pairs: [(&str, &str); N]) {
        for (flag, value) in pairs {
            self.0.extend([flag.to_owned(), value.to_owned()]);
        }
    }

    /// The arguments `train` and `distill` share.
    fn model_run(&mut self, run: &ModelRun) {
        self.pairs([
            ("--config", CONFIG),
            ("--mixture", &in_out(&run.mixture)),
            ("--run", &run.run.display().to_string()),
            ("--seed", &run.seed.to_string()),
        ]);
    }
}
