//! `mixlab train`: train a model on the shards with a mixture schedule, resumably.

use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mixlab_ingest::manifest::ShardSet;
use mixlab_mixer::schedule::MixtureSchedule;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::eval::DomainLoss;
use mixlab_trainer::schedule::StagePlan;
use mixlab_trainer::train::{RunSpec, TrainProgress, train};

use crate::cli::{GlobalArgs, TrainArgs};
use crate::config::LoadedConfig;
use crate::exit::UsageError;
use crate::run_dir::{ResolvedRun, RunDir, write_atomic};
use crate::table::{Table, thousands};

/// Trains (or resumes, or skips a finished) run and prints its final evaluation.
pub fn run(global: &GlobalArgs, args: &TrainArgs) -> anyhow::Result<()> {
    let loaded = LoadedConfig::load(&args.config)?;
    let shards_dir = global.out_root().join("shards");
    let shards = open_shards(&shards_dir)?;
    let corpus = Corpus::load(&shards).context("reading the shards")?;
    let mixture = match &args.mixture {
        Some(path) => read_mixture(path)?,
        None => {
            let names: Vec<&str> = corpus.domains.iter().map(String::as_str).collect();
            MixtureSchedule::uniform(&names)
        }
    };
    let mut train_config = loaded.config.train.clone();
    train_config.steps = args.steps.unwrap_or(train_config.steps);
    train_config.seed = args.seed.unwrap_or(train_config.seed);
    let model_config = loaded
        .config
        .model
        .resolve(
            args.preset.as_deref(),
            corpus.vocab_size,
            train_config.seq_len,
        )
        .map_err(|e| UsageError(e.to_string()))?;
    let plan = StagePlan::new(&mixture, &corpus.domains, &train_config)
        .map_err(|e| UsageError(e.to_string()))?;
    let resolved = ResolvedRun::new(
        shards_dir.clone(),
        shards.manifest().inputs_hash.clone(),
        model_config.clone(),
        train_config.clone(),
        mixture,
    );
    let run_dir = RunDir::new(global.out_root().join(&args.run));
    let outcome = train_run(&run_dir, &resolved, plan, &corpus, global.quiet)?;
    if let Some(losses) = outcome {
        print!("{}", eval_table(&losses));
    }
    Ok(())
}

/// Runs `resolved` in `run_dir`; `None` when the run had already finished with the same inputs.
pub fn train_run(
    run_dir: &RunDir,
    resolved: &ResolvedRun,
    plan: StagePlan,
    corpus: &Corpus,
    quiet: bool,
) -> anyhow::Result<Option<Vec<DomainLoss>>> {
    match run_dir.finished_hash() {
        Some(hash) if hash == resolved.run_hash => {
            println!(
                "{}: already finished with these inputs; nothing to do",
                run_dir.root.display()
            );
            return Ok(None);
        }
        Some(_) => {
            return Err(UsageError(format!(
                "{}: holds a finished run with other inputs (config, mixture or shards); choose another --run",
                run_dir.root.display()
            ))
            .into());
        }
        None => {}
    }
    run_dir.write_config(resolved)?;
    tracing::info!(
        run = %run_dir.root.display(),
        parameters = resolved.model.parameter_count(),
        steps = resolved.train.steps,
        "training"
    );
    let spec = RunSpec {
        model: resolved.model.clone(),
        train: resolved.train.clone(),
        plan,
        corpus,
        paths: run_dir.paths(),
        run_hash: resolved.run_hash.clone(),
    };
    let bar = TrainBar::new(resolved.train.steps, quiet);
    let outcome =
        train(&spec, &bar).with_context(|| format!("training {}", run_dir.root.display()))?;
    bar.bar.finish_and_clear();
    if outcome.resumed_from > 0 {
        tracing::info!("resumed from step {}", outcome.resumed_from);
    }
    let steps_run = outcome.steps - outcome.resumed_from;
    let eval_tokens: u64 = outcome.final_eval.iter().map(|l| l.tokens).sum();
    tracing::info!(
        steps = steps_run,
        train_seconds = outcome.train_seconds,
        train_tokens_per_second =
            (steps_run * resolved.train.tokens_per_step()) as f64 / outcome.train_seconds.max(1e-9),
        eval_tokens_per_second = eval_tokens as f64 / outcome.eval_seconds.max(1e-9),
        peak_rss_mb = peak_rss_mb(),
        "trained"
    );
    run_dir.mark_done(&resolved.run_hash)?;
    Ok(Some(outcome.final_eval))
}

/// Opens and verifies the shards, with a hint when ingest has not run.
pub fn open_shards(dir: &Path) -> anyhow::Result<ShardSet> {
    if !dir.join(mixlab_ingest::manifest::MANIFEST_FILE).exists() {
        anyhow::bail!(
            "{}: no shards (no manifest.json); run `mixlab ingest` first",
            dir.display()
        );
    }
    ShardSet::open(dir).with_context(|| format!("verifying {}", dir.display()))
}

/// Reads and parses a `mixture.toml`.
pub fn read_mixture(path: &Path) -> anyhow::Result<MixtureSchedule> {
    let text = fs_err::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read the mixture: {e}")))?;
    toml::from_str(&text)
        .map_err(|e| UsageError(format!("{}: {}", path.display(), e.to_string().trim_end())).into())
}

/// Writes a `mixture.toml` atomically.
pub fn write_mixture(path: &Path, schedule: &MixtureSchedule) -> anyhow::Result<()> {
    let text = toml::to_string_pretty(schedule).context("serializing the mixture")?;
    write_atomic(path, text.as_bytes())
}

/// A per-domain loss and perplexity table.
pub fn eval_table(losses: &[DomainLoss]) -> String {
    let mut t = Table::new(&["domain", "split", "loss", "perplexity", "tokens"]);
    for l in losses {
        t.row(vec![
            l.domain.clone(),
            l.split.clone(),
            format!("{:.4}", l.loss),
            format!("{:.2}", l.perplexity()),
            thousands(l.tokens),
        ]);
    }
    t.render()
}

/// Training progress: a step bar with loss and tokens/s.
struct TrainBar {
    bar: ProgressBar,
}

impl TrainBar {
    fn new(steps: u64, quiet: bool) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(steps)
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} steps ({eta}) {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix("train");
        Self { bar }
    }
}

impl TrainProgress for TrainBar {
    fn started(&self, start_step: u64, _total_steps: u64) {
        self.bar.set_position(start_step);
    }

    fn step(&self, step: u64, loss: f32, tokens_per_second: f64) {
        tracing::debug!(step, loss, tokens_per_second, "step");
        self.bar.set_position(step);
        self.bar
            .set_message(format!("loss {loss:.4}, {tokens_per_second:.0} tok/s"));
    }

    fn evaluated(&self, step: u64, losses: &[DomainLoss]) {
        let mean = losses.iter().map(|l| l.loss).sum::<f64>() / losses.len().max(1) as f64;
        let rss = rss_mb();
        self.bar.suspend(|| {
            tracing::info!(
                step,
                mean_valid_loss = format!("{mean:.4}"),
                rss_mb = rss,
                "evaluated"
            )
        });
    }
}

/// Resident memory of this process in MB (Linux `/proc`; 0 elsewhere).
fn rss_mb() -> f64 {
    proc_status_kb("VmRSS:") / 1024.0
}

/// Peak resident memory of this process in MB (Linux `/proc`; 0 elsewhere).
fn peak_rss_mb() -> f64 {
    proc_status_kb("VmHWM:") / 1024.0
}

fn proc_status_kb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0.0)
}
