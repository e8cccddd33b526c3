//! `mixlab sweep`: many small proxy runs on sampled mixtures, giving the run table regression
//! mode fits (RegMix §3.1; mixtures from `mixlab_mixer::dirichlet::regmix_proxy_mixtures`).
//!
//! Each run lives in `<out>/sweep/run-NNN/` and is skipped when finished, so a killed sweep resumes
//! where it stopped.

use std::collections::BTreeMap;

use indicatif::ProgressBar;
use mixlab_artefacts::eval::read_eval;
use mixlab_artefacts::run_table::NumericTable;
use mixlab_artefacts::split::Split;
use mixlab_mixer::dirichlet::regmix_proxy_mixtures;
use mixlab_mixer::schedule::{MixtureSchedule, Provenance};
use mixlab_stages::config::LoadedConfig;
use mixlab_stages::corpus::open_corpus;
use mixlab_stages::locks::lock_dir;
use mixlab_stages::run_dir::{ResolvedRun, RunDir};
use mixlab_stages::training::run_training;
use mixlab_trainer::engine::objective::CrossEntropy;

use crate::cli::{GlobalArgs, SweepArgs};

/// Trains `--n` proxy runs and writes `runs.csv` and `losses.csv` under `<out>/sweep/`.
pub fn run(global: &GlobalArgs, args: &SweepArgs) -> anyhow::Result<()> {
    let loaded = LoadedConfig::load(&args.config)?;
    let shards = global.shards().open()?;
    let corpus = open_corpus(&shards, global.quiet)?;
    let mixtures = regmix_proxy_mixtures(&corpus.train_tokens(), args.n, args.seed)?;
    let mut train_config = loaded.config.train.clone();
    train_config.steps = args.steps.unwrap_or(train_config.steps);
    let model = loaded.config.model.resolve(
        Some(args.preset.preset()),
        corpus.vocab_size,
        train_config.seq_len,
    )?;
    let sweep_dir = global.out_root().join("sweep");
    let _lock = lock_dir(&sweep_dir, "sweep")?;
    let bar = if global.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.n as u64)
    };
    let mut losses = Vec::new();
    for (i, weights) in mixtures.iter().enumerate() {
        let named = corpus
            .domains
            .iter()
            .cloned()
            .zip(weights.iter().copied())
            .collect();
        let provenance = Provenance {
            method: "sweep".into(),
            ..Provenance::default()
        };
        let schedule = MixtureSchedule::single(named, provenance);
        let resolved = ResolvedRun::new(&shards, model.clone(), train_config.clone(), schedule);
        let run_dir = RunDir::new(sweep_dir.join(format!("run-{i:03}")));
        bar.suspend(|| run_training(&run_dir, &resolved, &corpus, &CrossEntropy, true))?;
        let eval = read_eval(&run_dir.paths().eval)?;
        let by_domain: BTreeMap<String, f64> = eval
            .iter()
            .filter(|l| l.split == Split::Valid)
            .map(|l| (l.domain.clone(), l.loss))
            .collect();
        losses.push(by_domain);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (runs_csv, losses_csv) = (sweep_dir.join("runs.csv"), sweep_dir.join("losses.csv"));
    runs_table(&corpus.domains, &mixtures).write_csv(&runs_csv)?;
    losses_table(&corpus.domains, &losses).write_csv(&losses_csv)?;
    println!("wrote {} and {}", runs_csv.display(), losses_csv.display());
    println!(
        "next: mixlab mix --method regmix --runs {} --losses {} --target mean",
        runs_csv.display(),
        losses_csv.display()
    );
    Ok(())
}

fn run_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// One row per run, one column per domain weight.
fn runs_table(domains: &[String], mixtures: &[Vec<f64>]) -> NumericTable {
    NumericTable {
        index: "index".into(),
        ids: run_ids(mixtures.len()),
        columns: domains.to_vec(),
        values: (0..domains.len())
            .map(|d| mixtures.iter().map(|w| w[d]).collect())
            .collect(),
    }
}

/// One row per run: the validation loss per domain and their mean.
fn losses_table(domains: &[String], losses: &[BTreeMap<String, f64>]) -> NumericTable {
    let cell = |l: &BTreeMap<String, f64>, d: &String| l.get(d).copied().unwrap_or(f64::NAN);
    let mut values: Vec<Vec<f64>> = domains
        .iter()
        .map(|d| losses.iter().map(|l| cell(l, d)).collect())
        .collect();
    let mean = losses
        .iter()
        .map(|l| domains.iter().map(|d| cell(l, d)).sum::<f64>() / domains.len().max(1) as f64)
        .collect();
    values.push(mean);
    let mut columns = domains.to_vec();
    columns.push("mean".into());
    NumericTable {
        index: "index".into(),
        ids: run_ids(losses.len()),
        columns,
        values,
    }
}
