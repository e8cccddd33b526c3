//! `mixlab eval`: per-domain loss and perplexity of a run's newest checkpoint, and of probe texts
//! outside the shards.

use std::collections::BTreeMap;

use mixlab_artefacts::eval::DomainLoss;
use mixlab_artefacts::split::Split;
use mixlab_ingest::tokenize::TextTokenizer;
use mixlab_stages::corpus::open_corpus;
use mixlab_stages::run_dir::RunDir;
use mixlab_stages::texts::read_texts;
use mixlab_trainer::data::store::{DomainDocs, Store};
use mixlab_trainer::inference::Inference;
use mixlab_trainer::inference::eval::evaluate;

use crate::cli::{EvalArgs, GlobalArgs};
use crate::table::eval_table;

/// Evaluates the validation and probe splits, and the `--texts` files, at the newest checkpoint.
pub fn run(global: &GlobalArgs, args: &EvalArgs) -> anyhow::Result<()> {
    let run_dir = RunDir::new(global.out_root().join(&args.run));
    let mut resolved = run_dir.read_config()?;
    if let Some(seq_len) = args.seq_len {
        resolved.train.seq_len = seq_len as usize;
        resolved.model.max_seq_len = resolved.model.max_seq_len.max(seq_len as usize);
    }
    let shards = resolved.open_shards(global.verification())?;
    let corpus = open_corpus(&shards, global.quiet)?;
    let texts = if args.texts.is_empty() {
        Vec::new()
    } else {
        let tokenizer = TextTokenizer::load(&shards.tokenizer_path())?;
        let read = |(name, path): &(String, std::path::PathBuf)| {
            let docs = read_texts(path, &tokenizer)?;
            anyhow::Ok(Store::from(DomainDocs::from_tokens(name, docs)))
        };
        args.texts.iter().map(read).collect::<anyhow::Result<_>>()?
    };
    let (step, model_path) = run_dir.latest_model()?;
    let inference = if args.gguf {
        Inference::load_gguf(&resolved.model, &run_dir.packed_model()?)?
    } else {
        Inference::load(&resolved.model, &model_path)?
    };
    let split = |split: Split, docs: &[Store]| {
        evaluate(&inference, &resolved.train, split, docs, corpus.eos)
    };
    let valid = split(Split::Valid, &corpus.valid)?;
    let probe = split(Split::Probe, &corpus.probe)?;
    // Texts outside the shards are probes too; the table names them apart.
    let texts = split(Split::Probe, &texts)?;
    if args.json {
        let mean = valid.iter().map(|l| l.loss).sum::<f64>() / valid.len().max(1) as f64;
        let json = serde_json::json!({
            "step": step,
            "domains": by_name(&valid),
            "mean_loss": mean,
            "probe": by_name(&probe),
            "texts": by_name(&texts),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!("{} at step {step}", run_dir.root.display());
    print!("{}", eval_table(&[valid, probe].concat(), &texts));
    Ok(())
}

/// `{name: {"loss": x, "ppl": y}}`.
fn by_name(losses: &[DomainLoss]) -> BTreeMap<&str, serde_json::Value> {
    losses
        .iter()
        .map(|l| {
            let value = serde_json::json!({ "loss": l.loss, "ppl": l.perplexity() });
            (l.domain.as_str(), value)
        })
        .collect()
}
