//! `mixlab train`: train a model on the shards with a mixture schedule, resumably.

use std::path::Path;

use anyhow::Context;
use mixlab_artefacts::mixture::read_mixture;
use mixlab_mixer::schedule::MixtureSchedule;
use mixlab_trainer::config::ModelConfig;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::objective::CrossEntropy;

use crate::cli::{GlobalArgs, TrainArgs};
use crate::config::LoadedConfig;
use crate::table::eval_table;
use mixlab_stages::Usage;
use mixlab_stages::run_dir::{InitWeights, ResolvedRun, RunDir};
use mixlab_stages::training::run_training;

/// Trains (or resumes, or skips a finished) run and prints its final evaluation.
pub fn run(global: &GlobalArgs, args: &TrainArgs) -> anyhow::Result<()> {
    let (resolved, corpus) = resolve(global, args)?;
    let run_dir = RunDir::new(global.out_root().join(&args.run));
    if let Some(losses) = run_training(&run_dir, &resolved, &corpus, &CrossEntropy, global.quiet)? {
        print!("{}", eval_table(&losses));
    }
    Ok(())
}

/// The run `args` describe on `<out>/shards` (configuration, overrides, mixture), and the corpus.
pub fn resolve(global: &GlobalArgs, args: &TrainArgs) -> anyhow::Result<(ResolvedRun, Corpus)> {
    let loaded = LoadedConfig::load(&args.config)?;
    let shards = global.shards().open()?;
    let corpus = Corpus::load(&shards).context("reading the shards")?;
    let mixture = match &args.mixture {
        Some(path) => read_mixture(path).context(Usage(format!("--mixture {}", path.display())))?,
        None => {
            let names: Vec<&str> = corpus.domains.iter().map(String::as_str).collect();
            MixtureSchedule::uniform(&names)
        }
    };
    let mut train_config = loaded.config.train.clone();
    train_config.steps = args.steps.unwrap_or(train_config.steps);
    train_config.seed = args.seed.unwrap_or(train_config.seed);
    let model_config = loaded.config.model.resolve(
        args.preset.map(|p| p.preset()),
        corpus.vocab_size,
        train_config.seq_len,
    )?;
    let resolved = ResolvedRun::new(&shards, model_config, train_config, mixture);
    let resolved = match &args.init_from {
        Some(from) => {
            let weights = init_weights(global, from, &resolved)?;
            resolved.started_from(weights)
        }
        None => resolved,
    };
    Ok((resolved, corpus))
}

/// The newest checkpoint of the finished run `from`, checked to fit the run `resolved` describes:
/// the same tokenizer and the same parameter shapes.
fn init_weights(
    global: &GlobalArgs,
    from: &Path,
    resolved: &ResolvedRun,
) -> anyhow::Result<InitWeights> {
    let what = format!("--init-from {}", from.display());
    let dir = RunDir::new(global.out_root().join(from));
    let source = dir.read_finished(&what)?;
    if source.tokenizer_sha256 != resolved.tokenizer_sha256 {
        anyhow::bail!(Usage(format!(
            "{what}: trained with another tokenizer (sha256 {}) than the shards' (sha256 {})",
            source.tokenizer_sha256, resolved.tokenizer_sha256
        )));
    }
    if let Some(field) = shape_difference(&source.model, &resolved.model) {
        anyhow::bail!(Usage(format!(
            "{what}: its model has another {field}; [model] and --preset must give the same parameter shapes"
        )));
    }
    let (step, path) = dir.latest_model()?;
    Ok(InitWeights {
        path,
        run_hash: source.run_hash,
        step,
    })
}

/// The first field that gives two models different parameter shapes, as `name = a (here b)`.
fn shape_difference(from: &ModelConfig, to: &ModelConfig) -> Option<String> {
    [
        ("vocab_size", from.vocab_size, to.vocab_size),
        ("d_model", from.d_model, to.d_model),
        ("n_layers", from.n_layers, to.n_layers),
        ("n_heads", from.n_heads, to.n_heads),
        ("n_kv_heads", from.n_kv_heads, to.n_kv_heads),
        ("ffn_hidden", from.ffn_hidden, to.ffn_hidden),
    ]
    .into_iter()
    .find(|(_, a, b)| a != b)
    .map(|(name, a, b)| format!("{name} = {a} (here {b})"))
}
