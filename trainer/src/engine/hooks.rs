//! Hooks: code that runs inside the training loop at fixed points, without changing it.
//!
//! The binary's progress bar is a hook; the SDM simulation run scores the training documents it
//! captured in [`Hook::before_checkpoint`] at each of its K checkpoints; reports read what hooks
//! log.

use mixlab_artefacts::eval::DomainLoss;

use burn::tensor::Tensor;

use crate::config::ModelConfig;
use crate::data::sampler::Batch;
use crate::engine::checkpoint::CheckpointFiles;
use crate::model::Model;

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Steps done (1-based).
    pub step: u64,
    /// Training tokens consumed so far.
    pub tokens: u64,
    /// Learning rate of the step.
    pub lr: f64,
    /// Mean objective over the step's micro-batches.
    pub loss: f32,
    /// Wall time of the step (forward, backward, update), in seconds.
    pub seconds: f64,
}

/// A checkpoint that was just written.
#[derive(Debug, Clone, Copy)]
pub struct SavedCheckpoint<'a> {
    /// Its step.
    pub step: u64,
    /// Its files.
    pub files: &'a CheckpointFiles,
    /// The model at that step (the training model: use `model.valid()` or
    /// [`crate::inference::Inference::of_trained`] for forward passes).
    pub model: &'a Model,
    /// The model's shape.
    pub config: &'a ModelConfig,
}

/// A checkpoint about to be written: the model at its step, before anything of it is on disk.
#[derive(Debug, Clone, Copy)]
pub struct DueCheckpoint<'a> {
    /// Its step.
    pub step: u64,
    /// The model at that step (the training model, as in [`SavedCheckpoint::model`]).
    pub model: &'a Model,
    /// The model's shape.
    pub config: &'a ModelConfig,
}

/// The final hidden states of one micro-batch of a training step, as the objective formed them
/// on the way to its loss (no extra forward pass).
#[derive(Debug)]
pub struct Activations<'a> {
    /// The step being taken (1-based).
    pub step: u64,
    /// The micro-batch.
    pub batch: &'a Batch,
    /// The model being trained, before the step's update.
    pub model: &'a Model,
    /// Its final hidden states, `[batch, seq, d_model]`, in the autodiff graph (detach them).
    pub hidden: Tensor<3>,
}

/// An error a hook returns; the loop stops with [`crate::error::Error::Hook`].
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// Called by [`crate::engine::train`] at fixed points of the loop. Every method has a default that does
/// nothing, so a hook implements only what it needs.
///
/// Implementors: the binary's progress bar; the SDM influence pass (`mixlab-simulator`).
pub trait Hook {
    /// Training starts at `start_step` (0, or the step of the checkpoint it resumed from).
    fn started(&mut self, _start_step: u64, _total_steps: u64) {}

    /// Whether the hook reads the activations of the micro-batches of step `step` (1-based).
    fn wants_activations(&self, _step: u64) -> bool {
        false
    }

    /// The activations of one micro-batch of a step [`Hook::wants_activations`] asked for.
    ///
    /// # Errors
    /// Whatever stops the run.
    fn activations(&mut self, _activations: Activations<'_>) -> Result<(), HookError> {
        Ok(())
    }

    /// An optimizer step finished.
    ///
    /// # Errors
    /// Whatever stops the run.
    fn after_step(&mut self, _report: &StepReport) -> Result<(), HookError> {
        Ok(())
    }

    /// A periodic evaluation (validation split) finished.
    ///
    /// # Errors
    /// Whatever stops the run.
    fn after_eval(&mut self, _step: u64, _losses: &[DomainLoss]) -> Result<(), HookError> {
        Ok(())
    }

    /// A checkpoint is due and not yet written. What a hook writes here is complete before the
    /// checkpoint is: a run killed in between resumes from an earlier checkpoint and calls the
    /// hook again for this step, so a hook that must not lose work tied to a step writes it here.
    ///
    /// # Errors
    /// Whatever stops the run (the checkpoint is then not written).
    fn before_checkpoint(&mut self, _checkpoint: &DueCheckpoint<'_>) -> Result<(), HookError> {
        Ok(())
    }

    /// Whether the run should stop as soon as it can (a signal asked for it). The loop then writes
    /// a checkpoint at the current step and returns [`crate::error::Error::Interrupted`].
    fn stop_requested(&self) -> bool {
        false
    }

    /// Whether a run stopped after `step` (with a checkpoint there) would resume to exactly the
    /// result of an uninterrupted run. A hook holding work tied to later steps (documents
    /// captured for the next scheduled checkpoint) says no, and the stop waits.
    fn can_stop_at(&self, _step: u64) -> bool {
        true
    }

    /// A checkpoint (and the metrics up to it) is on disk.
    ///
    /// # Errors
    /// Whatever stops the run.
    fn after_checkpoint(&mut self, _checkpoint: &SavedCheckpoint<'_>) -> Result<(), HookError> {
        Ok(())
    }
}
