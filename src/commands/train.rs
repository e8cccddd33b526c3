//! `mixlab train`: train a model on the shards with a mixture schedule, resumably.

use anyhow::Context;
use mixlab_artefacts::mixture::read_mixture;
use mixlab_ingest::manifest::ShardSet;
use mixlab_mixer::schedule::MixtureSchedule;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::objective::CrossEntropy;

use crate::cli::{GlobalArgs, TrainArgs};
use crate::config::LoadedConfig;
use crate::exit::Usage;
use crate::run_dir::{ResolvedRun, RunDir};
use crate::table::eval_table;
use crate::training::run_training;

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
    let shards = ShardSet::open(&global.out_root().join("shards"))?;
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
    Ok((resolved, corpus))
}
