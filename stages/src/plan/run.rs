//! A planned stage run by calling the library: [`StageSpec::run`].

use std::path::PathBuf;

use mixlab_artefacts::eval::DomainLoss;
use mixlab_mixer::schedule::MixtureSchedule;

use crate::arms::MixChoice;
use crate::config::LoadedConfig;
use crate::merge::{DEFAULT_SEARCH_ITERS, MergeOutcome, MergeSpec, merge};
use crate::mix::{MixMethod, MixSpec, SdmSettings, mix};
use crate::quantize::{QuantizeSpec, quantize};
use crate::report::{ReportSource, write_report};
use crate::simulate::{SimulateOutcome, SimulateSpec, simulate};
use crate::train::{DistillSpec, TrainSpec, distill, train};
use crate::workspace::Workspace;

use super::{ModelRun, PLAN_FILE, StageSpec};

/// What a stage wrote, for the caller to show.
#[derive(Debug)]
pub enum StageOutcome {
    /// The simulation's utilities or DoReMi's weights.
    Simulated(SimulateOutcome),
    /// A mixture, made by `method`, written to `path`.
    Mixed {
        /// How it was made.
        method: MixChoice,
        /// The schedule.
        schedule: MixtureSchedule,
        /// Its file.
        path: PathBuf,
    },
    /// A trained, distilled or quantized run's final evaluation (`None`: it had finished before).
    Evaluated(Option<Vec<DomainLoss>>),
    /// The specialists, the merge and its weights.
    Merged(MergeOutcome),
    /// The report's directory.
    Reported(PathBuf),
}

impl StageSpec {
    /// Runs this stage in `workspace` with the job's configuration `loaded`; settings the plan
    /// does not fix take the defaults the subcommand has.
    ///
    /// # Errors
    /// Those of the stage called.
    pub fn run(
        &self,
        workspace: &Workspace,
        loaded: &LoadedConfig,
    ) -> anyhow::Result<StageOutcome> {
        Ok(match self {
            StageSpec::Simulate { method } => {
                let spec = SimulateSpec {
                    config: loaded.path.clone(),
                    method: *method,
                };
                StageOutcome::Simulated(simulate(workspace, &spec)?)
            }
            StageSpec::Mix {
                method,
                objective,
                mixture,
            } => {
                let spec = MixSpec {
                    method: mix_method(*method, SdmSettings::new(*objective)),
                    config: Some(loaded.clone()),
                    output: Some(workspace.path(mixture)),
                };
                let (schedule, path) = mix(workspace, &spec)?;
                StageOutcome::Mixed {
                    method: *method,
                    schedule,
                    path,
                }
            }
            StageSpec::Train(run) => {
                StageOutcome::Evaluated(train(workspace, &train_spec(workspace, loaded, run))?)
            }
            StageSpec::Distill {
                teacher,
                settings,
                student,
            } => {
                let spec = DistillSpec {
                    teacher: teacher.clone(),
                    settings: settings.loss(),
                    student: TrainSpec {
                        preset: Some(settings.preset),
                        steps: settings.steps,
                        ..train_spec(workspace, loaded, student)
                    },
                };
                StageOutcome::Evaluated(distill(workspace, &spec)?)
            }
            StageSpec::Merge {
                base,
                specialists,
                weights,
            } => {
                let spec = MergeSpec {
                    base: base.clone(),
                    specialists: specialists.clone(),
                    weights: weights.clone(),
                    search_iters: DEFAULT_SEARCH_ITERS,
                    run: None,
                };
                StageOutcome::Merged(merge(workspace, &spec)?)
            }
            StageSpec::Quantize { run, settings } => {
                let spec = QuantizeSpec::new(run.clone(), settings.group_size, settings.qat_steps);
                StageOutcome::Evaluated(quantize(workspace, &spec)?)
            }
            StageSpec::Report { name } => {
                let plan = ReportSource::Plans(vec![workspace.path(PLAN_FILE.as_ref())]);
                StageOutcome::Reported(write_report(workspace, &plan, name)?)
            }
        })
    }
}

/// The mix method of an arm's choice, on the simulation's files where it reads them.
fn mix_method(choice: MixChoice, sdm: SdmSettings) -> MixMethod {
    match choice {
        MixChoice::Sdm => MixMethod::Sdm {
            utilities: None,
            objective: sdm,
        },
        MixChoice::Own => MixMethod::Own(sdm),
        MixChoice::Doremi => MixMethod::Doremi(None),
        MixChoice::Uniform => MixMethod::Uniform,
        MixChoice::Natural => MixMethod::Natural,
        MixChoice::Unimax => MixMethod::Unimax,
    }
}

/// The training run `run` on the job's configuration.
fn train_spec(workspace: &Workspace, loaded: &LoadedConfig, run: &ModelRun) -> TrainSpec {
    TrainSpec {
        config: loaded.path.clone(),
        mixture: Some(workspace.path(&run.mixture)),
        run: run.run.clone(),
        preset: None,
        steps: None,
        seed: Some(run.seed),
        init_from: None,
    }
}
