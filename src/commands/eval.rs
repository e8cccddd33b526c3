//! `mixlab eval`: per-domain loss and perplexity of a run's newest checkpoint.

use std::collections::BTreeMap;

use anyhow::Context;
use burn::tensor::Device;
use mixlab_trainer::checkpoint::load_model;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::eval::evaluate;
use mixlab_trainer::model::Model;

use crate::cli::{EvalArgs, GlobalArgs};
use crate::commands::train::{eval_table, open_shards};
use crate::run_dir::RunDir;

/// Evaluates the run on the validation split (and the probe split) and prints a table or JSON.
pub fn run(global: &GlobalArgs, args: &EvalArgs) -> anyhow::Result<()> {
    let run_dir = RunDir::new(global.out_root().join(&args.run));
    let resolved = run_dir.read_config()?;
    let shards = open_shards(&resolved.shards)?;
    if shards.manifest().inputs_hash != resolved.shards_inputs_hash {
        anyhow::bail!(
            "{}: the shards changed since this run was trained (inputs hash differs); re-ingest the same inputs or retrain",
            resolved.shards.display()
        );
    }
    let corpus = Corpus::load(&shards).context("reading the shards")?;
    let (step, model_path) = run_dir.latest_model()?;
    let device = Device::flex();
    let model = load_model(Model::new(&resolved.model, &device), &model_path)?;
    let mut losses = evaluate(
        &model,
        &resolved.model,
        &resolved.train,
        "valid",
        &corpus.valid,
        corpus.eos,
        &device,
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
        &model,
        &resolved.model,
        &resolved.train,
        "probe",
        &corpus.probe,
        corpus.eos,
        &device,
    ));
    println!("{} at step {step}", run_dir.root.display());
    print!("{}", eval_table(&losses));
    Ok(())
}
