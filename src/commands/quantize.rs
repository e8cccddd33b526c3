//! `mixlab quantize`: post-training int4 quantization of a finished run into a new run directory.

use anyhow::Context;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::objective::CrossEntropy;
use mixlab_trainer::quant::{QuantConfig, quantize_checkpoint};

use crate::cli::{GlobalArgs, QuantizeArgs};
use crate::exit::Usage;
use crate::run_dir::{InitWeights, ResolvedRun, RunDir};
use crate::table::eval_table;
use crate::training::run_training;

/// Rounds the newest checkpoint of `--run` to int4 and evaluates it as the run `--out-run`.
pub fn run(global: &GlobalArgs, args: &QuantizeArgs) -> anyhow::Result<()> {
    let config = QuantConfig {
        group_size: args.group_size,
    };
    let source_dir = RunDir::new(global.out_root().join(&args.run));
    let source = source_dir.read_finished(&format!("--run {}", args.run.display()))?;
    config
        .validate(&source.model)
        .map_err(|e| Usage(format!("--group-size {}: {e}", args.group_size)))?;
    let (step, weights) = source_dir.latest_model()?;
    let shards = source.open_shards()?;
    let corpus = Corpus::load(&shards).context("reading the shards")?;
    let out_run = args.out_run.clone().unwrap_or_else(|| {
        let mut name = args.run.clone().into_os_string();
        name.push("-int4");
        name.into()
    });
    let run_dir = RunDir::new(global.out_root().join(out_run));
    let init = InitWeights {
        path: run_dir.root.join("init.bpk"),
        run_hash: source.run_hash.clone(),
        step,
    };
    // Zero training steps: the run saves the rounded weights as checkpoint 0 and evaluates them.
    let mut train = source.train.clone();
    train.steps = 0;
    let resolved = ResolvedRun::new(&shards, source.model.clone(), train, source.mixture.clone())
        .quantized(init.clone(), config);
    if run_dir.finished_hash().as_ref() != Some(&resolved.run_hash) {
        fs_err::create_dir_all(&run_dir.root)?;
        quantize_checkpoint(&source.model, &weights, config, &init.path)?;
    }
    let finished = run_training(&run_dir, &resolved, &corpus, &CrossEntropy, global.quiet)?;
    // Checkpoint 0 now holds the same weights.
    if run_dir.finished_hash().is_some() && init.path.exists() {
        fs_err::remove_file(&init.path)?;
    }
    if let Some(losses) = finished {
        print!("{}", eval_table(&losses));
    }
    Ok(())
}
