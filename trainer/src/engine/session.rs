//! A training run in progress: the model, optimizer, sampler, counters and metric rows, with the
//! operations the loop ([`crate::engine::train`]) calls in order.

use std::time::Instant;

use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use mixlab_artefacts::eval::{DomainLoss, write_eval};
use mixlab_artefacts::metrics::{MetricRow, read_metrics, write_metrics};
use mixlab_artefacts::split::Split;

use crate::data::sampler::MixtureSampler;
use crate::engine::RunSpec;
use crate::engine::checkpoint::{self, CheckpointFiles, STATE_VERSION, TrainState};
use crate::engine::hooks::{Activations, Hook, StepReport};
use crate::engine::objective::{MicroBatch, Objective};
use crate::engine::optim::{clip_global_norm, optimizer};
use crate::engine::schedule::learning_rate;
use crate::error::{Error, Result};
use crate::inference::Inference;
use crate::inference::eval::evaluate;
use crate::model::Model;
use crate::model::input::to_model_input;

pub(crate) struct Session<'s, 'c> {
    spec: &'s RunSpec<'c>,
    device: Device,
    /// Always present between calls; taken during an update so the optimizer owns the only
    /// reference to the weights and can update them in place.
    model: Option<Model>,
    optim: ModuleOptimizer,
    sampler: MixtureSampler,
    /// Optimizer steps done.
    pub step: u64,
    /// Training tokens consumed.
    pub tokens: u64,
    rows: Vec<MetricRow>,
}

impl<'s, 'c> Session<'s, 'c> {
    /// A fresh run, or the run resumed from its newest complete checkpoint (with `objective`'s
    /// state). A fresh run of zero steps saves the initial model as checkpoint 0.
    pub fn open(spec: &'s RunSpec<'c>, objective: &dyn Objective) -> Result<Self> {
        let tc = &spec.train;
        let device = Device::flex().autodiff();
        device.seed(tc.seed);
        let first = spec
            .plan
            .stages
            .first()
            .ok_or_else(|| Error::Config("the mixture has no stage".into()))?;
        let sampler = MixtureSampler::new(
            spec.corpus.train.clone(),
            first.weights.clone(),
            tc.seq_len,
            spec.corpus.eos,
            tc.seed,
            tc.document_mask,
        )?
        .with_read_ahead(tc.read_ahead_tokens);
        let mut session = Session {
            model: Some(Model::new(&spec.model, &device)),
            optim: optimizer(tc),
            device,
            sampler,
            step: 0,
            tokens: 0,
            rows: Vec::new(),
            spec,
        };
        let resumed = session.resume_newest_intact(objective)?;
        if !resumed && let Some(init) = &spec.init {
            session.model = Some(checkpoint::load_model(session.model().clone(), init)?);
        }
        if !resumed && tc.steps == 0 {
            session.checkpoint(objective)?;
        }
        Ok(session)
    }

    /// Resumes from the newest checkpoint whose files load, skipping damaged ones (an empty or
    /// truncated file from a crash) with a warning; returns whether there was one to resume.
    fn resume_newest_intact(&mut self, objective: &dyn Objective) -> Result<bool> {
        let dir = &self.spec.paths.checkpoints;
        for &step in checkpoint::complete_steps(dir).iter().rev() {
            match self.resume(step, objective) {
                Ok(()) => return Ok(true),
                Err(err @ Error::DamagedCheckpoint { .. }) => {
                    tracing::warn!("{err}; falling back to the previous checkpoint");
                }
                Err(err) => return Err(err),
            }
        }
        Ok(false)
    }

    /// Loads the checkpoint at `step`; on any error the session is left as it was.
    fn resume(&mut self, step: u64, objective: &dyn Objective) -> Result<()> {
        let dir = &self.spec.paths.checkpoints;
        let state = checkpoint::read_state(dir, step)?;
        let files = CheckpointFiles::at(dir, step);
        if state.run_hash != self.spec.run_hash {
            return Err(Error::Checkpoint {
                path: files.state,
                message: "checkpoint of a run with other inputs (config, mixture or shards); use a new run directory".into(),
            });
        }
        let model = checkpoint::load_model(self.model().clone(), &files.model)?;
        let optim = checkpoint::load_optimizer(optimizer(&self.spec.train), &files.optimizer)?;
        objective
            .restore(state.objective.clone())
            .map_err(|message| Error::Checkpoint {
                path: files.state.clone(),
                message,
            })?;
        (self.model, self.optim) = (Some(model), optim);
        let stage = state.sampler.stage;
        self.sampler
            .enter_stage(stage, self.spec.plan.stages[stage].weights.clone())?;
        self.sampler.restore(state.sampler)?;
        (self.step, self.tokens) = (state.step, state.tokens);
        if self.spec.paths.metrics.exists() {
            self.rows = read_metrics(&self.spec.paths.metrics)?
                .into_iter()
                .filter(|r| r.step <= step)
                .collect();
        }
        Ok(())
    }

    /// Whether a periodic action every `every` steps is due now (always at the last step).
    pub fn due(&self, every: u64) -> bool {
        self.step.is_multiple_of(every) || self.step == self.spec.train.steps
    }

    /// The model being trained.
    pub fn model(&self) -> &Model {
        self.model
            .as_ref()
            .expect("the model is present between steps")
    }

    /// The loss of one micro-batch of the coming step, its activations handed to the hooks that
    /// want them.
    fn micro_loss(
        &self,
        objective: &dyn Objective,
        micro: MicroBatch<'_>,
        hooks: &mut [&mut dyn Hook],
    ) -> Result<Tensor<1>> {
        let step = self.step + 1;
        if !hooks.iter().any(|h| h.wants_activations(step)) {
            return Ok(objective.loss(self.model(), micro));
        }
        let batch = micro.batch;
        let (loss, hidden) = objective.loss_with_hidden(self.model(), micro);
        let hidden = hidden.ok_or_else(|| {
            Error::Hook("a hook reads activations, and this objective does not hand them".into())
        })?;
        for hook in hooks.iter_mut().filter(|h| h.wants_activations(step)) {
            let activations = Activations {
                step,
                batch,
                model: self.model(),
                hidden: hidden.clone(),
            };
            hook.activations(activations).map_err(Error::Hook)?;
        }
        Ok(loss)
    }

    /// One optimizer step: `grad_accum` micro-batches of `objective`, clipping, AdamW; the
    /// micro-batches' activations go to the `hooks` that want them.
    pub fn optimizer_step(
        &mut self,
        objective: &dyn Objective,
        hooks: &mut [&mut dyn Hook],
    ) -> Result<StepReport> {
        let spec = self.spec;
        let tc = &spec.train;
        let stage_index = spec.plan.stage_at(self.tokens);
        let stage = &spec.plan.stages[stage_index];
        if stage_index != self.sampler.state().stage {
            self.sampler
                .enter_stage(stage_index, stage.weights.clone())?;
        }
        let lr = learning_rate(
            self.step,
            tc.steps,
            tc.warmup_steps,
            stage.lr,
            tc.min_lr_ratio,
        );
        let started = Instant::now();
        let mut accumulator = GradientsAccumulator::<Model>::new();
        let mut loss_sum = 0.0f32;
        for _ in 0..tc.grad_accum {
            let batch = self.sampler.next_batch(tc.batch_size)?;
            let (input, targets) =
                to_model_input(&batch, &spec.model, tc.document_mask, &self.device);
            let micro = MicroBatch {
                batch: &batch,
                input,
                targets,
            };
            let loss = self.micro_loss(objective, micro, hooks)?;
            let value = loss.clone().into_scalar::<f32>();
            if !value.is_finite() {
                return Err(self.diverged(value));
            }
            loss_sum += value;
            let grads = (loss / tc.grad_accum as f32).backward();
            let model = self.model();
            accumulator.accumulate(model, GradientsParams::from_grads(grads, model));
        }
        let grads = clip_global_norm(self.model(), accumulator.grads(), tc.grad_clip);
        let model = self
            .model
            .take()
            .expect("the model is present between steps");
        self.model = Some(self.optim.step(lr, model, grads));
        self.step += 1;
        self.tokens += tc.tokens_per_step();
        let loss = loss_sum / tc.grad_accum as f32;
        self.rows.push(MetricRow {
            step: self.step,
            tokens: self.tokens,
            lr,
            loss: Some(f64::from(loss)),
            split: None,
            domain: None,
            eval_loss: None,
        });
        Ok(StepReport {
            step: self.step,
            tokens: self.tokens,
            lr,
            loss,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn diverged(&self, loss: f32) -> Error {
        let last_good = checkpoint::complete_steps(&self.spec.paths.checkpoints)
            .last()
            .map_or("none".to_owned(), |s| format!("step-{s}"));
        Error::NonFiniteLoss {
            step: self.step + 1,
            loss,
            last_good,
        }
    }

    /// Evaluates the validation split and records the losses as metric rows.
    pub fn evaluate(&mut self) -> Result<Vec<DomainLoss>> {
        let inference = Inference::of_trained(self.model(), &self.spec.model);
        let corpus = self.spec.corpus;
        let losses = evaluate(
            &inference,
            &self.spec.train,
            Split::Valid,
            &corpus.valid,
            corpus.eos,
        )?;
        let lr = self.rows.last().map_or(0.0, |r| r.lr);
        self.rows.extend(losses.iter().map(|l| MetricRow {
            step: self.step,
            tokens: self.tokens,
            lr,
            loss: None,
            split: Some(l.split),
            domain: Some(l.domain.clone()),
            eval_loss: Some(l.loss),
        }));
        Ok(losses)
    }

    /// Writes the metrics so far, then a scheduled checkpoint (whose presence implies the metrics
    /// up to its step are on disk), then removes the checkpoints a stopped run left off the
    /// schedule before it.
    pub fn checkpoint(&mut self, objective: &dyn Objective) -> Result<CheckpointFiles> {
        let files = self.save_checkpoint(objective, false)?;
        checkpoint::remove_unscheduled_before(&self.spec.paths.checkpoints, self.step)?;
        Ok(files)
    }

    /// Writes the metrics so far and a checkpoint off the schedule, for a run stopped on request.
    pub fn interruption_checkpoint(
        &mut self,
        objective: &dyn Objective,
    ) -> Result<CheckpointFiles> {
        self.save_checkpoint(objective, true)
    }

    fn save_checkpoint(
        &mut self,
        objective: &dyn Objective,
        unscheduled: bool,
    ) -> Result<CheckpointFiles> {
        write_metrics(&self.spec.paths.metrics, &self.rows)?;
        let state = TrainState {
            format_version: STATE_VERSION,
            step: self.step,
            tokens: self.tokens,
            sampler: self.sampler.state().clone(),
            run_hash: self.spec.run_hash.clone(),
            objective: objective.state(),
            unscheduled,
        };
        checkpoint::save(
            &self.spec.paths.checkpoints,
            self.model(),
            &self.optim,
            &state,
            self.spec.train.keep_checkpoints,
        )
    }

    /// Evaluates the validation and probe splits and writes `eval.parquet`.
    pub fn final_evaluation(&self) -> Result<Vec<DomainLoss>> {
        let inference = Inference::of_trained(self.model(), &self.spec.model);
        let (corpus, tc) = (self.spec.corpus, &self.spec.train);
        let mut losses = evaluate(&inference, tc, Split::Valid, &corpus.valid, corpus.eos)?;
        losses.extend(evaluate(
            &inference,
            tc,
            Split::Probe,
            &corpus.probe,
            corpus.eos,
        )?);
        write_eval(&self.spec.paths.eval, self.step, &losses)?;
        Ok(losses)
    }
}
