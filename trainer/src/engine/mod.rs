//! The training loop: one skeleton for every stage that trains (pre-training, the SDM simulation run,
//! distillation, quantization-aware training), given an [`Objective`] and [`Hook`]s.
//!
//! Written as a plain loop (not burn's `Learner`) so that it reads top to bottom in the order things
//! happen, and so the sampler state, the stage plan and the metrics file are saved with the weights.
//! What a step does lives in `session`; what it minimises in [`objective`].

pub mod checkpoint;
pub mod hooks;
pub mod objective;
pub mod optim;
pub mod schedule;
mod session;

use std::path::PathBuf;
use std::time::Instant;

use mixlab_artefacts::eval::DomainLoss;

use crate::config::{ModelConfig, TrainConfig};
use crate::data::Corpus;
use crate::engine::hooks::{DueCheckpoint, Hook, SavedCheckpoint};
use crate::engine::objective::Objective;
use crate::engine::schedule::StagePlan;
use crate::engine::session::Session;
use crate::error::{Error, Result};

/// Where a run keeps its files; the binary decides the layout.
#[derive(Debug, Clone)]
pub struct RunPaths {
    /// Checkpoint directory.
    pub checkpoints: PathBuf,
    /// `metrics.parquet`.
    pub metrics: PathBuf,
    /// `eval.parquet`.
    pub eval: PathBuf,
}

/// Everything that defines a training run.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// Model shape.
    pub model: ModelConfig,
    /// Training hyperparameters.
    pub train: TrainConfig,
    /// Mixture stages resolved against the corpus domains.
    pub plan: StagePlan,
    /// The data.
    pub corpus: &'a Corpus,
    /// Files of the run.
    pub paths: RunPaths,
    /// Hash of all inputs; checkpoints of other inputs are refused.
    pub run_hash: String,
    /// Weights a fresh run starts from instead of a random initialisation (a checkpoint's
    /// `step-N.bpk` of the same shape); a resumed run ignores them.
    pub init: Option<PathBuf>,
}

/// What [`train`] did.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The step training started from (0, or a checkpoint's).
    pub resumed_from: u64,
    /// Steps done in total.
    pub steps: u64,
    /// Tokens consumed in total.
    pub tokens: u64,
    /// The final evaluation (valid and probe splits), also in `eval.parquet`.
    pub final_eval: Vec<DomainLoss>,
    /// Wall time of the optimizer steps run by this call (forward, backward, update), in seconds.
    pub train_seconds: f64,
    /// Wall time of the final evaluation, in seconds (forward passes without autodiff).
    pub eval_seconds: f64,
}

/// Trains (or resumes) the run on `objective` until `train.steps` are done, calling `hooks` after
/// each step, evaluation and checkpoint.
///
/// # Errors
/// [`Error::NonFiniteLoss`] when the loss diverges (the last checkpoint is kept), checkpoint and
/// metrics I/O errors, [`Error::Checkpoint`] for checkpoints of another run, [`Error::Hook`]
/// when a hook fails, and [`Error::Interrupted`] after a hook asked to stop (a checkpoint at the
/// step it stopped at is on disk, so the run resumes from there).
pub fn train(
    spec: &RunSpec<'_>,
    objective: &dyn Objective,
    hooks: &mut [&mut dyn Hook],
) -> Result<TrainOutcome> {
    let tc = &spec.train;
    let mut session = Session::open(spec, objective)?;
    let resumed_from = session.step;
    hooks
        .iter_mut()
        .for_each(|h| h.started(resumed_from, tc.steps));
    let mut train_seconds = 0.0;
    while session.step < tc.steps {
        let report = session.optimizer_step(objective, hooks)?;
        train_seconds += report.seconds;
        for hook in hooks.iter_mut() {
            hook.after_step(&report).map_err(Error::Hook)?;
        }
        if session.due(tc.eval_every) {
            let losses = session.evaluate()?;
            for hook in hooks.iter_mut() {
                hook.after_eval(session.step, &losses)
                    .map_err(Error::Hook)?;
            }
        }
        if session.due(tc.checkpoint_every) {
            let due = DueCheckpoint {
                step: session.step,
                model: session.model(),
                config: &spec.model,
            };
            for hook in hooks.iter_mut() {
                hook.before_checkpoint(&due).map_err(Error::Hook)?;
            }
            let files = session.checkpoint(objective)?;
            let saved = SavedCheckpoint {
                step: session.step,
                files: &files,
                model: session.model(),
                config: &spec.model,
            };
            for hook in hooks.iter_mut() {
                hook.after_checkpoint(&saved).map_err(Error::Hook)?;
            }
        }
        if session.step < tc.steps && stop_now(hooks, session.step) {
            if !session.due(tc.checkpoint_every) {
                session.interruption_checkpoint(objective)?;
            }
            return Err(Error::Interrupted { step: session.step });
        }
    }
    let eval_started = Instant::now();
    let final_eval = session.final_evaluation()?;
    Ok(TrainOutcome {
        resumed_from,
        steps: session.step,
        tokens: session.tokens,
        final_eval,
        train_seconds,
        eval_seconds: eval_started.elapsed().as_secs_f64(),
    })
}

/// Whether a hook asked to stop and every hook can resume exactly from a checkpoint at `step`.
fn stop_now(hooks: &[&mut dyn Hook], step: u64) -> bool {
    hooks.iter().any(|h| h.stop_requested()) && hooks.iter().all(|h| h.can_stop_at(step))
}
