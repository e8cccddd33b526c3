//! The `quantize` stage: int4 quantization of a finished run into a new run directory, after
//! post-training rounding alone or after quantization-aware training distilled from the run.

use std::path::{Path, PathBuf};

use anyhow::Context;
use mixlab_artefacts::eval::DomainLoss;
use mixlab_ingest::manifest::ShardSet;
use mixlab_trainer::config::ModelConfig;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::downstream::distill::{DistillSettings, Distillation};
use mixlab_trainer::downstream::quant::{QuantAware, QuantConfig, quantize_checkpoint};
use mixlab_trainer::inference::Inference;

use crate::Usage;
use crate::corpus::open_corpus;
use crate::export::gguf_metadata;
use crate::run_dir::{DistillSource, GGUF_FILE, InitWeights, ResolvedRun, RunDir};
use crate::run_names::quantize_run_names;
use crate::training::{run_of_weights, run_training};
use crate::workspace::Workspace;

/// A finished run rounded to int4, with or without quantization-aware training first.
#[derive(Debug, Clone)]
pub struct QuantizeSpec {
    /// The finished run, relative to the workspace.
    pub run: PathBuf,
    /// The int4 run, relative to the workspace; `None`: named after `run` (see
    /// [`quantize_run_names`]).
    pub out_run: Option<PathBuf>,
    /// Weights per scale.
    pub group_size: usize,
    /// Steps of quantization-aware training (0: rounding only).
    pub qat_steps: u64,
    /// Their learning rate; `None`: a tenth of the run's.
    pub qat_lr: Option<f64>,
    /// The self-distillation of quantization-aware training.
    pub settings: DistillSettings,
    /// Activations rounded to int8 as well.
    pub int8_activations: bool,
}

/// The self-distillation of quantization-aware training unless told otherwise: the full-precision
/// model's distribution alone, at temperature 1.
pub const QAT_DISTILLATION: DistillSettings = DistillSettings {
    alpha: 1.0,
    temperature: 1.0,
};

impl QuantizeSpec {
    /// `run` rounded in groups of `group_size` after `qat_steps`, with every other setting at its
    /// default: the int4 run named after `run`, a tenth of its learning rate,
    /// [`QAT_DISTILLATION`], full-precision activations.
    pub fn new(run: PathBuf, group_size: usize, qat_steps: u64) -> Self {
        Self {
            run,
            out_run: None,
            group_size,
            qat_steps,
            qat_lr: None,
            settings: QAT_DISTILLATION,
            int8_activations: false,
        }
    }
}

/// A finished run's newest checkpoint: the weights a quantization starts from.
struct Weights<'a> {
    run: &'a ResolvedRun,
    dir: RunDir,
    step: u64,
    path: PathBuf,
}

/// Quantizes the newest checkpoint of `spec.run` (after `qat_steps` of quantization-aware
/// training, when given) and evaluates the int4 model as a run; its final evaluation, or `None`
/// when that run had already finished.
///
/// # Errors
/// An unfinished run, a group size that does not divide the model's rows, bad training settings
/// ([`Usage`]), and training failures.
pub fn quantize(
    workspace: &Workspace,
    spec: &QuantizeSpec,
) -> anyhow::Result<Option<Vec<DomainLoss>>> {
    let config = QuantConfig {
        group_size: spec.group_size,
    };
    let source_dir = RunDir::new(workspace.path(&spec.run));
    let source = source_dir.read_finished(&format!("--run {}", spec.run.display()))?;
    config
        .validate(&source.model)
        .map_err(|e| Usage(format!("--group-size {}: {e}", spec.group_size)))?;
    if spec.qat_steps > 0 {
        spec.settings.validate().context(Usage("quantize".into()))?;
    }
    let shards = source.open_shards(workspace.verification)?;
    let data = Data {
        corpus: &open_corpus(&shards, workspace.quiet)?,
        shards: &shards,
        quiet: workspace.quiet,
    };
    let model = ModelConfig {
        int8_activations: spec.int8_activations,
        ..source.model.clone()
    };
    let (step, path) = source_dir.latest_model()?;
    let source_weights = Weights {
        run: &source,
        dir: source_dir,
        step,
        path,
    };
    let [latent_dir, default_out] =
        quantize_run_names(&spec.run, spec.qat_steps, spec.int8_activations)
            .map(|run| workspace.path(&run));
    let latent;
    let rounded_from = if spec.qat_steps > 0 {
        latent = quant_aware_training(&data, spec, (&source_weights, &model), config, &latent_dir)?;
        let dir = RunDir::new(latent_dir);
        let (step, path) = dir.latest_model()?;
        Weights {
            run: &latent,
            dir,
            step,
            path,
        }
    } else {
        source_weights
    };
    let out = spec
        .out_run
        .as_ref()
        .map_or(default_out, |r| workspace.path(r));
    round(&data, (&rounded_from, &model), config, &out)
}

/// The shards every run of a quantization reads (opened and verified once), and their corpus.
struct Data<'a> {
    shards: &'a ShardSet,
    corpus: &'a Corpus,
    quiet: bool,
}

/// Trains the full-precision weights of `source` as the `model` (int8 activations or not) for
/// `qat_steps` on the rounded model, distilled from `source` itself, in the run directory `dir`.
fn quant_aware_training(
    data: &Data<'_>,
    spec: &QuantizeSpec,
    (source, model): (&Weights<'_>, &ModelConfig),
    config: QuantConfig,
    dir: &Path,
) -> anyhow::Result<ResolvedRun> {
    let settings = spec.settings;
    let mut train = source.run.train.clone();
    train.steps = spec.qat_steps;
    train.lr = spec.qat_lr.unwrap_or(train.lr / 10.0);
    train.warmup_steps = train.warmup_steps.min(spec.qat_steps / 10);
    train
        .validate()
        .map_err(|e| Usage(format!("--qat-lr: {e}")))?;
    let resolved = ResolvedRun::new(
        data.shards,
        model.clone(),
        train,
        source.run.mixture.clone(),
    )
    .distilled(DistillSource {
        teacher: source.dir.root.clone(),
        teacher_run_hash: source.run.run_hash.clone(),
        teacher_step: source.step,
        settings,
    })
    .quantized(
        InitWeights {
            path: source.path.clone(),
            run_hash: source.run.run_hash.clone(),
            step: source.step,
        },
        config,
    );
    let teacher = Inference::load(&source.run.model, &source.path)?;
    let objective = QuantAware::new(
        Distillation::new(teacher, settings, resolved.train.document_mask)?,
        config,
    );
    run_training(
        &RunDir::new(dir.to_owned()),
        &resolved,
        data.corpus,
        &objective,
        data.quiet,
    )?;
    Ok(resolved)
}

/// Rounds `from`'s weights to int4 and evaluates them as `model` (int8 activations or not) in a run
/// of zero steps in `out`.
fn round(
    data: &Data<'_>,
    (from, model): (&Weights<'_>, &ModelConfig),
    config: QuantConfig,
    out: &Path,
) -> anyhow::Result<Option<Vec<DomainLoss>>> {
    let run_dir = RunDir::new(out.to_owned());
    let init = InitWeights {
        path: run_dir.root.join("init.bpk"),
        run_hash: from.run.run_hash.clone(),
        step: from.step,
    };
    let mut train = from.run.train.clone();
    train.steps = 0;
    let resolved = ResolvedRun::new(data.shards, model.clone(), train, from.run.mixture.clone())
        .quantized(init.clone(), config);
    let gguf = run_dir.root.join(GGUF_FILE);
    run_of_weights(
        &run_dir,
        &resolved,
        data.corpus,
        &init.path,
        data.quiet,
        || {
            let metadata = gguf_metadata(&resolved, data.shards, from.step)
                .inspect_err(|e| tracing::warn!("no {GGUF_FILE} for llama.cpp: {e:#}"))
                .ok();
            let packed = quantize_checkpoint(
                &from.run.model,
                &from.path,
                config,
                &init.path,
                metadata.as_ref().map(|m| (gguf.as_path(), m)),
            )?;
            if let Some(bytes) = packed {
                let weights = from.run.model.parameter_count() as f64;
                tracing::info!(
                    file = %gguf.display(),
                    bytes,
                    bits_per_parameter = bytes as f64 * 8.0 / weights,
                    "packed int4 weights"
                );
            }
            Ok(())
        },
    )
}
