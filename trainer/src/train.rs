//! The training loop: AdamW with warmup + cosine, global-norm clipping, gradient accumulation,
//! periodic evaluation and checkpoints, exact resume.
//!
//! Written as a plain loop (not burn's `Learner`) so that it reads top to bottom in the order things
//! happen, and so the sampler state, the stage plan and the metrics file are saved with the weights.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use crate::checkpoint::{self, CheckpointFiles, TrainState};
use crate::config::{ModelConfig, TrainConfig};
use crate::data::Corpus;
use crate::error::{Error, Result};
use crate::eval::{DomainLoss, evaluate};
use crate::input::to_model_input;
use crate::metrics::{MetricRow, read_metrics, write_eval, write_metrics};
use crate::model::Model;
use crate::sampler::MixtureSampler;
use crate::schedule::{StagePlan, learning_rate};

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
}

/// Receives progress from [`train`].
pub trait TrainProgress {
    /// Training starts (or resumes) at `start_step` of `total_steps`.
    fn started(&self, _start_step: u64, _total_steps: u64) {}
    /// A step finished.
    fn step(&self, _step: u64, _loss: f32, _tokens_per_second: f64) {}
    /// An evaluation finished.
    fn evaluated(&self, _step: u64, _losses: &[DomainLoss]) {}
}

/// A [`TrainProgress`] that reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl TrainProgress for Silent {}

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

/// Builds AdamW with decay on matrices only: norms and embeddings are in a no-decay group.
pub fn optimizer(train: &TrainConfig) -> ModuleOptimizer {
    let adamw = |weight_decay: f64| {
        AdamWConfig::new()
            .with_beta_1(train.beta1)
            .with_beta_2(train.beta2)
            .with_epsilon(train.eps)
            .with_weight_decay(weight_decay as f32)
    };
    adamw(train.weight_decay).init().with_group(
        ParamGroup::from_any_predicates(vec!["norm", "embedding"]),
        adamw(0.0).build(),
        None,
    )
}

/// Trains (or resumes) the run; returns when `train.steps` are done.
///
/// # Errors
/// [`Error::NonFiniteLoss`] when the loss diverges (the last checkpoint is kept), checkpoint and
/// metrics I/O errors, and [`Error::Checkpoint`] for checkpoints of another run.
pub fn train(spec: &RunSpec<'_>, progress: &dyn TrainProgress) -> Result<TrainOutcome> {
    let (cfg, tc) = (&spec.model, &spec.train);
    let device = Device::flex().autodiff();
    device.seed(tc.seed);
    let plain = Device::flex();
    let mut model = Model::new(cfg, &device);
    let mut optim = optimizer(tc);
    let initial_stage = spec
        .plan
        .stages
        .first()
        .ok_or_else(|| Error::Config("the mixture has no stage".into()))?;
    let mut sampler = MixtureSampler::new(
        spec.corpus.train.clone(),
        initial_stage.weights.clone(),
        tc.seq_len,
        spec.corpus.eos,
        tc.seed,
        tc.document_mask,
    )?;

    let (mut step, mut tokens, mut rows) = (0u64, 0u64, Vec::new());
    if let Some(&last) = checkpoint::complete_steps(&spec.paths.checkpoints).last() {
        let state = checkpoint::read_state(&spec.paths.checkpoints, last)?;
        let files = CheckpointFiles::at(&spec.paths.checkpoints, last);
        if state.run_hash != spec.run_hash {
            return Err(Error::Checkpoint {
                path: files.state,
                message: "checkpoint of a run with other inputs (config, mixture or shards); use a new run directory".into(),
            });
        }
        model = checkpoint::load_model(model, &files.model)?;
        optim = checkpoint::load_optimizer(optim, &files.optimizer)?;
        let stage = state.sampler.stage;
        sampler.enter_stage(stage, spec.plan.stages[stage].weights.clone())?;
        sampler.restore(state.sampler)?;
        (step, tokens) = (state.step, state.tokens);
        if spec.paths.metrics.exists() {
            rows = read_metrics(&spec.paths.metrics)?
                .into_iter()
                .filter(|r| r.step <= step)
                .collect();
        }
    } else if tc.steps == 0 {
        save_checkpoint(spec, &model, &optim, &sampler, 0, 0, &rows)?;
    }
    let resumed_from = step;
    progress.started(step, tc.steps);
    let mut train_seconds = 0.0;

    while step < tc.steps {
        let stage_index = spec.plan.stage_at(tokens);
        let stage = &spec.plan.stages[stage_index];
        if stage_index != sampler.state().stage {
            sampler.enter_stage(stage_index, stage.weights.clone())?;
        }
        let lr = learning_rate(step, tc.steps, tc.warmup_steps, stage.lr, tc.min_lr_ratio);
        let started = Instant::now();
        let mut accumulator = GradientsAccumulator::<Model>::new();
        let mut loss_sum = 0.0f32;
        for _ in 0..tc.grad_accum {
            let batch = sampler.next_batch(tc.batch_size);
            let (input, targets) = to_model_input(&batch, cfg, tc.document_mask, &device);
            let loss: Tensor<1> = model.token_losses(&input, targets).mean();
            let value = loss.clone().into_scalar::<f32>();
            if !value.is_finite() {
                let last_good = checkpoint::complete_steps(&spec.paths.checkpoints)
                    .last()
                    .map_or("none".to_owned(), |s| format!("step-{s}"));
                return Err(Error::NonFiniteLoss {
                    step: step + 1,
                    loss: value,
                    last_good,
                });
            }
            loss_sum += value;
            let grads = (loss / tc.grad_accum as f32).backward();
            accumulator.accumulate(&model, GradientsParams::from_grads(grads, &model));
        }
        let grads = clip_global_norm(&model, accumulator.grads(), tc.grad_clip);
        model = optim.step(lr, model, grads);
        step += 1;
        tokens += tc.tokens_per_step();
        let loss = loss_sum / tc.grad_accum as f32;
        let seconds = started.elapsed().as_secs_f64();
        train_seconds += seconds;
        progress.step(step, loss, tc.tokens_per_step() as f64 / seconds);
        rows.push(MetricRow {
            step,
            tokens,
            lr,
            loss: Some(f64::from(loss)),
            split: None,
            domain: None,
            eval_loss: None,
        });

        if step % tc.eval_every == 0 || step == tc.steps {
            let losses = evaluate(
                &model.valid(),
                cfg,
                tc,
                "valid",
                &spec.corpus.valid,
                spec.corpus.eos,
                &plain,
            );
            progress.evaluated(step, &losses);
            rows.extend(losses.iter().map(|l| MetricRow {
                step,
                tokens,
                lr,
                loss: None,
                split: Some(l.split.clone()),
                domain: Some(l.domain.clone()),
                eval_loss: Some(l.loss),
            }));
        }
        if step % tc.checkpoint_every == 0 || step == tc.steps {
            save_checkpoint(spec, &model, &optim, &sampler, step, tokens, &rows)?;
        }
    }

    let valid = model.valid();
    let eval_started = Instant::now();
    let mut final_eval = evaluate(
        &valid,
        cfg,
        tc,
        "valid",
        &spec.corpus.valid,
        spec.corpus.eos,
        &plain,
    );
    final_eval.extend(evaluate(
        &valid,
        cfg,
        tc,
        "probe",
        &spec.corpus.probe,
        spec.corpus.eos,
        &plain,
    ));
    let eval_seconds = eval_started.elapsed().as_secs_f64();
    write_eval(&spec.paths.eval, step, &final_eval)?;
    Ok(TrainOutcome {
        resumed_from,
        steps: step,
        tokens,
        final_eval,
        train_seconds,
        eval_seconds,
    })
}

fn save_checkpoint(
    spec: &RunSpec<'_>,
    model: &Model,
    optim: &ModuleOptimizer,
    sampler: &MixtureSampler,
    step: u64,
    tokens: u64,
    rows: &[MetricRow],
) -> Result<()> {
    // Metrics first: a checkpoint's presence then implies metrics up to its step are on disk.
    write_metrics(&spec.paths.metrics, rows)?;
    let state = TrainState {
        step,
        tokens,
        sampler: sampler.state().clone(),
        run_hash: spec.run_hash.clone(),
    };
    checkpoint::save(
        &spec.paths.checkpoints,
        model,
        optim,
        &state,
        spec.train.keep_checkpoints,
    )
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (burn's own clipping is per
/// tensor, which changes the update direction).
fn clip_global_norm(model: &Model, mut grads: GradientsParams, max_norm: f32) -> GradientsParams {
    // Sums stay on the device; one read of the total per step instead of one per parameter.
    struct SquaredNorm<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SquaredNorm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let squares = g.square().sum();
                self.total = Some(match self.total.take() {
                    Some(total) => total + squares,
                    None => squares,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f32,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads
                    .register::<D>(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut norm = SquaredNorm {
        grads: &grads,
        total: None,
    };
    model.visit(&mut norm);
    let total = norm.total.map_or(0.0, |t| t.into_scalar::<f32>().sqrt());
    if total > max_norm {
        model.visit(&mut Scale {
            grads: &mut grads,
            factor: max_norm / (total + 1e-6),
        });
    }
    grads
}
