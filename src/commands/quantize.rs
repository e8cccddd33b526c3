//! `mixlab quantize`: int4 quantization of a finished run into a new run directory, after
//! post-training rounding alone or after quantization-aware training.

use std::path::{Path, PathBuf};

use anyhow::Context;
use mixlab_stages::Usage;
use mixlab_stages::run_dir::{DistillSource, GGUF_FILE, InitWeights, ResolvedRun, RunDir};
use mixlab_stages::run_names::quantize_run_names;
use mixlab_stages::training::{run_of_weights, run_training};
use mixlab_trainer::config::ModelConfig;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::distill::{DistillSettings, Distillation};
use mixlab_trainer::inference::Inference;
use mixlab_trainer::quant::{QuantAware, QuantConfig, quantize_checkpoint};

use crate::cli::{GlobalArgs, QuantizeArgs};
use crate::table::eval_table;

/// A finished run's newest checkpoint: the weights a quantization starts from.
struct Weights<'a> {
    run: &'a ResolvedRun,
    dir: RunDir,
    step: u64,
    path: PathBuf,
}

/// Quantizes the newest checkpoint of `--run` (after `--qat-steps` of quantization-aware
/// training, when given) and evaluates the int4 model as the run `--out-run`.
pub fn run(global: &GlobalArgs, args: &QuantizeArgs) -> anyhow::Result<()> {
    let config = QuantConfig {
        group_size: args.group_size,
    };
    let source_dir = RunDir::new(global.out_root().join(&args.run));
    let source = source_dir.read_finished(&format!("--run {}", args.run.display()))?;
    config
        .validate(&source.model)
        .map_err(|e| Usage(format!("--group-size {}: {e}", args.group_size)))?;
    let shards = source.open_shards(global.verification())?;
    let corpus = Corpus::load(&shards).context("reading the shards")?;
    let model = ModelConfig {
        int8_activations: args.int8_activations,
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
        quantize_run_names(&args.run, args.qat_steps, args.int8_activations)
            .map(|run| global.out_root().join(run));
    let latent;
    let rounded_from = if args.qat_steps > 0 {
        latent = quant_aware_training(
            global,
            args,
            (&source_weights, &model),
            config,
            &corpus,
            &latent_dir,
        )?;
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
    let out = args
        .out_run
        .as_ref()
        .map_or(default_out, |r| global.out_root().join(r));
    round(global, (&rounded_from, &model), config, &corpus, &out)
}

/// Trains the full-precision weights of `source` as the `model` (int8 activations or not) for
/// `--qat-steps` on the rounded model, distilled from `source` itself, in the run directory `dir`.
fn quant_aware_training(
    global: &GlobalArgs,
    args: &QuantizeArgs,
    (source, model): (&Weights<'_>, &ModelConfig),
    config: QuantConfig,
    corpus: &Corpus,
    dir: &Path,
) -> anyhow::Result<ResolvedRun> {
    let settings = DistillSettings {
        alpha: args.alpha,
        temperature: args.temperature,
    };
    settings.validate().map_err(|e| Usage(e.to_string()))?;
    let mut train = source.run.train.clone();
    train.steps = args.qat_steps;
    train.lr = args.qat_lr.unwrap_or(train.lr / 10.0);
    train.warmup_steps = train.warmup_steps.min(args.qat_steps / 10);
    train
        .validate()
        .map_err(|e| Usage(format!("--qat-lr: {e}")))?;
    let shards = source.run.open_shards(global.verification())?;
    let resolved = ResolvedRun::new(&shards, model.clone(), train, source.run.mixture.clone())
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
        corpus,
        &objective,
        global.quiet,
    )?;
    Ok(resolved)
}

/// Rounds `from`'s weights to int4 and evaluates them as `model` (int8 activations or not) in a run
/// of zero steps in `out`.
fn round(
    global: &GlobalArgs,
    (from, model): (&Weights<'_>, &ModelConfig),
    config: QuantConfig,
    corpus: &Corpus,
    out: &Path,
) -> anyhow::Result<()> {
    let run_dir = RunDir::new(out.to_owned());
    let init = InitWeights {
        path: run_dir.root.join("init.bpk"),
        run_hash: from.run.run_hash.clone(),
        step: from.step,
    };
    let mut train = from.run.train.clone();
    train.steps = 0;
    let shards = from.run.open_shards(global.verification())?;
    let resolved = ResolvedRun::new(&shards, model.clone(), train, from.run.mixture.clone())
        .quantized(init.clone(), config);
    let gguf = run_dir.root.join(GGUF_FILE);
    let finished = run_of_weights(
        &run_dir,
        &resolved,
        corpus,
        &init.path,
        global.quiet,
        || {
            let packed =
                quantize_checkpoint(&from.run.model, &from.path, config, &init.path, Some(&gguf))?;
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
    )?;
    if let Some(losses) = finished {
        print!("{}", eval_table(&losses));
    }
    Ok(())
}
