//! `mixlab sweep`: many small proxy runs on sampled mixtures, giving the run table regression
//! mode fits (RegMix §3.1).
//!
//! Mixtures are drawn as RegMix draws them: Dirichlet around the token distribution raised to the
//! power 0.5 (temperature), with a concentration picked per sample from 15 log-spaced strengths
//! between 0.1 and 5, weights below 2e-4 set to zero. Each run lives in `<out>/sweep/run-NNN/`
//! and is skipped when finished, so a killed sweep resumes where it stopped.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::Context;
use indicatif::ProgressBar;
use mixlab_mixer::schedule::{MixtureSchedule, Provenance};
use mixlab_trainer::data::Corpus;
use mixlab_trainer::metrics::read_eval;
use mixlab_trainer::schedule::StagePlan;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

use crate::cli::{GlobalArgs, SweepArgs};
use crate::commands::train::{open_shards, train_run};
use crate::config::LoadedConfig;
use crate::exit::UsageError;
use crate::run_dir::{ResolvedRun, RunDir, write_atomic};

/// RegMix's sampling temperature on the token prior.
const TEMPERATURE: f64 = 0.5;
/// RegMix's range of Dirichlet strengths (15 log-spaced values).
const STRENGTHS: (f64, f64, usize) = (0.1, 5.0, 15);
/// Weights below this are set to zero (RegMix: 2e-4).
const MIN_WEIGHT: f64 = 2e-4;

/// Trains `--n` proxy runs and writes `runs.csv` and `losses.csv` under `<out>/sweep/`.
pub fn run(global: &GlobalArgs, args: &SweepArgs) -> anyhow::Result<()> {
    let loaded = LoadedConfig::load(&args.config)?;
    let shards_dir = global.out_root().join("shards");
    let shards = open_shards(&shards_dir)?;
    let corpus = Corpus::load(&shards).context("reading the shards")?;
    let prior: Vec<f64> = corpus
        .train
        .iter()
        .map(|d| d.docs.iter().map(|x| x.len() as f64).sum())
        .collect();
    let mixtures = sample_mixtures(&prior, args.n, args.seed)?;
    let mut train_config = loaded.config.train.clone();
    train_config.steps = args.steps.unwrap_or(train_config.steps);
    let model = loaded
        .config
        .model
        .resolve(Some(&args.preset), corpus.vocab_size, train_config.seq_len)
        .map_err(|e| UsageError(e.to_string()))?;
    let sweep_dir = global.out_root().join("sweep");
    let bar = if global.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.n as u64)
    };
    let mut losses = Vec::new();
    for (i, weights) in mixtures.iter().enumerate() {
        let named: BTreeMap<String, f64> = corpus
            .domains
            .iter()
            .cloned()
            .zip(weights.iter().copied())
            .collect();
        let schedule = MixtureSchedule::single(
            named,
            Provenance {
                method: "sweep".into(),
                ..Provenance::default()
            },
        );
        let plan = StagePlan::new(&schedule, &corpus.domains, &train_config)
            .map_err(|e| UsageError(e.to_string()))?;
        let resolved = ResolvedRun::new(
            shards_dir.clone(),
            shards.manifest().inputs_hash.clone(),
            model.clone(),
            train_config.clone(),
            schedule,
        );
        let run_dir = RunDir::new(sweep_dir.join(format!("run-{i:03}")));
        bar.suspend(|| -> anyhow::Result<()> {
            train_run(&run_dir, &resolved, plan, &corpus, true)?;
            Ok(())
        })?;
        let eval = read_eval(&run_dir.paths().eval)?;
        let by_domain: BTreeMap<String, f64> = eval
            .iter()
            .filter(|l| l.split == "valid")
            .map(|l| (l.domain.clone(), l.loss))
            .collect();
        losses.push(by_domain);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let runs_csv = sweep_dir.join("runs.csv");
    let losses_csv = sweep_dir.join("losses.csv");
    write_atomic(&runs_csv, runs_table(&corpus.domains, &mixtures).as_bytes())?;
    write_atomic(
        &losses_csv,
        losses_table(&corpus.domains, &losses).as_bytes(),
    )?;
    println!("wrote {} and {}", runs_csv.display(), losses_csv.display());
    println!(
        "next: mixlab mix --method regmix --runs {} --losses {} --target mean",
        runs_csv.display(),
        losses_csv.display()
    );
    Ok(())
}

/// `n` mixtures drawn as RegMix draws its training mixtures.
fn sample_mixtures(token_counts: &[f64], n: usize, seed: u64) -> anyhow::Result<Vec<Vec<f64>>> {
    let total: f64 = token_counts.iter().sum();
    if total <= 0.0 {
        anyhow::bail!("the shards hold no training tokens");
    }
    let tempered: Vec<f64> = token_counts
        .iter()
        .map(|t| (t / total).powf(TEMPERATURE))
        .collect();
    let tempered_total: f64 = tempered.iter().sum();
    let prior: Vec<f64> = tempered
        .iter()
        .map(|p| (p / tempered_total).max(1e-6))
        .collect();
    let (lo, hi, count) = STRENGTHS;
    let strengths: Vec<f64> = (0..count)
        .map(|i| (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / (count - 1) as f64).exp())
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let strength = strengths[rng.random_range(0..strengths.len())];
        let draws: Vec<f64> = prior
            .iter()
            .map(|p| {
                Gamma::new(p * strength, 1.0)
                    .map(|g| g.sample(&mut rng))
                    .unwrap_or(0.0)
            })
            .collect();
        let sum: f64 = draws.iter().sum();
        if sum <= 0.0 {
            continue;
        }
        let kept: Vec<f64> = draws
            .iter()
            .map(|d| if d / sum < MIN_WEIGHT { 0.0 } else { d / sum })
            .collect();
        let kept_sum: f64 = kept.iter().sum();
        out.push(kept.into_iter().map(|w| w / kept_sum).collect());
    }
    Ok(out)
}

fn runs_table(domains: &[String], mixtures: &[Vec<f64>]) -> String {
    let mut s = format!("index,{}\n", domains.join(","));
    for (i, w) in mixtures.iter().enumerate() {
        let cells: Vec<String> = w.iter().map(|v| format!("{v:.6}")).collect();
        let _ = writeln!(s, "{i},{}", cells.join(","));
    }
    s
}

fn losses_table(domains: &[String], losses: &[BTreeMap<String, f64>]) -> String {
    let mut s = format!("index,{},mean\n", domains.join(","));
    for (i, l) in losses.iter().enumerate() {
        let cells: Vec<f64> = domains
            .iter()
            .map(|d| l.get(d).copied().unwrap_or(f64::NAN))
            .collect();
        let mean = cells.iter().sum::<f64>() / cells.len().max(1) as f64;
        let text: Vec<String> = cells.iter().map(|v| format!("{v:.6}")).collect();
        let _ = writeln!(s, "{i},{},{mean:.6}", text.join(","));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_mixtures_are_on_the_simplex_and_deterministic() {
        let a = sample_mixtures(&[1000.0, 10.0, 500.0], 50, 3).unwrap();
        assert_eq!(a, sample_mixtures(&[1000.0, 10.0, 500.0], 50, 3).unwrap());
        for w in &a {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(w.iter().all(|v| *v == 0.0 || *v >= MIN_WEIGHT));
        }
        assert_ne!(a[0], a[1]);
    }
}
