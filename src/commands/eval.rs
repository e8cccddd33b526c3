//! `mixlab eval`: per-domain loss and perplexity of a run's newest checkpoint.

use std::collections::BTreeMap;

use anyhow::Context;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::eval::evaluate;
use mixlab_trainer::inference::Inference;

use crate::cli::{EvalArgs, GlobalArgs};
use crate::run_dir::RunDir;
use crate::table::eval_table;

/// Evaluates the run on the validation split (and the probe split) and prints a table or JSON.
pub fn run(global: &GlobalArgs, args: &EvalArgs) -> anyhow::Result<()> {
    let run_dir = RunDir::new(global.out_root().join(&args.run));
    let resolved = run_dir.read_config()?;
    let corpus = Corpus::load(&resolved.open_shards()?).context("reading the shards")?;
    let (step, model_path) = run_dir.latest_model()?;
    let inference = Inference::load(&resolved.model, &model_path)?;
    let mut losses = evaluate(
        &inference,
        &resolved.train,
        "valid",
        &corpus.valid,
        corpus.eos,
    );
    if args.json {
        let domains: BTreeMap<&str, serde_json::Value> = losses
            .iter()
            .map(|l| {
                (
                    l.domain.as_str(),
                    serde_json::json!({ "loss": l.loss, "ppl": l.perplexity() }),
                )
            })
            .collect();
        let mean = losses.iter().map(|l| l.loss).sum::<f64>() / losses.len().max(1) as f64;
        let json = serde_json::json!({ "step": step, "domains": domains, "mean_loss": mean });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    losses.extend(evaluate(
        &inference,
        &resolved.train,
        "probe",
        &corpus.probe,
        corpus.eos,
    ));
    println!("{} at step {step}", run_dir.root.display());
    print!("{}", eval_table(&losses));
    Ok(())
}
