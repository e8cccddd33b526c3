//! The training stage as `train` and `sweep` run it: a run directory with its resolved
//! configuration, the `done` marker, a progress bar (a training hook) and the final figures.

use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mixlab_artefacts::atomic::remove_orphans;
use mixlab_artefacts::eval::DomainLoss;
use mixlab_trainer::config::TrainConfig;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::engine::checkpoint::{complete_steps, remove_incomplete};
use mixlab_trainer::engine::hooks::{Hook, HookError, StepReport};
use mixlab_trainer::engine::objective::{CrossEntropy, Objective};
use mixlab_trainer::engine::schedule::StagePlan;
use mixlab_trainer::engine::{RunSpec, TrainOutcome, train};
use mixlab_trainer::kernels::MatmulIsa;

use crate::Usage;
use crate::locks::lock_dir;
use crate::run_dir::{ResolvedRun, RunDir};
use crate::signals::{self, StoppableTraining};

/// Trains `resolved` in `run_dir` (or resumes it) on its mixture schedule with `objective`; `None`
/// when the run had already finished with the same inputs.
///
/// # Errors
/// A schedule that does not fit the corpus's domains, a run directory holding another run (other
/// inputs, or other shards: both hashes named), and training failures.
pub fn run_training(
    run_dir: &RunDir,
    resolved: &ResolvedRun,
    corpus: &Corpus,
    objective: &dyn Objective,
    quiet: bool,
) -> anyhow::Result<Option<Vec<DomainLoss>>> {
    let outcome = run_training_with(run_dir, resolved, corpus, objective, &mut [], quiet)?;
    Ok(outcome.map(|o| o.final_eval))
}

/// [`run_training`] with `hooks` besides the progress bar; `Some` with what this call trained.
///
/// # Errors
/// As [`run_training`], and a failing hook.
pub fn run_training_with(
    run_dir: &RunDir,
    resolved: &ResolvedRun,
    corpus: &Corpus,
    objective: &dyn Objective,
    hooks: &mut [&mut dyn Hook],
    quiet: bool,
) -> anyhow::Result<Option<TrainOutcome>> {
    let plan = StagePlan::new(&resolved.mixture, &corpus.domains, &resolved.train)?;
    let _lock = lock_dir(&run_dir.root, "run")?;
    remove_leftovers(run_dir)?;
    match run_dir.finished_hash() {
        Some(hash) if hash == resolved.run_hash => {
            println!(
                "{}: already finished with these inputs; nothing to do",
                run_dir.root.display()
            );
            return Ok(None);
        }
        Some(_) => anyhow::bail!(Usage(format!(
            "{}: holds a finished run with other settings ({}); choose another --run",
            run_dir.root.display(),
            changes_from(run_dir, resolved)
        ))),
        None => {}
    }
    if run_dir.exists() {
        ensure_same_run(run_dir, resolved)?;
    }
    run_dir.write_config(resolved)?;
    tracing::info!(
        run = %run_dir.root.display(),
        parameters = resolved.model.parameter_count(),
        steps = resolved.train.steps,
        matmul = %MatmulIsa::current(),
        "training"
    );
    let spec = RunSpec {
        model: resolved.model.clone(),
        train: resolved.train.clone(),
        plan,
        corpus,
        paths: run_dir.paths(),
        run_hash: resolved.run_hash.clone(),
        init: resolved.init.as_ref().map(|init| init.path.clone()),
    };
    let mut bar = TrainBar::new(&resolved.train, quiet);
    let mut all: Vec<&mut dyn Hook> = vec![&mut bar];
    all.extend(hooks.iter_mut().map(|h| &mut **h as &mut dyn Hook));
    let stoppable = StoppableTraining::start();
    let outcome = train(&spec, objective, &mut all)
        .with_context(|| format!("training {}", run_dir.root.display()))?;
    drop(stoppable);
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
        peak_rss_mb = proc_status_mb("VmHWM:"),
        "trained"
    );
    run_dir.mark_done(&resolved.run_hash)?;
    Ok(Some(outcome))
}

/// Evaluates weights made outside training (rounded, merged) as a run of zero steps in `run_dir`:
/// unless the run already finished with these inputs, `write` puts them at `init`, the `[init]`
/// file of `resolved`; checkpoint 0 then holds them and the file is removed. `Some` with the
/// evaluation when this call ran it.
///
/// # Errors
/// As [`run_training`], and what `write` returns.
pub fn run_of_weights(
    run_dir: &RunDir,
    resolved: &ResolvedRun,
    corpus: &Corpus,
    init: &Path,
    quiet: bool,
    write: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Option<Vec<DomainLoss>>> {
    if run_dir.finished_hash().as_ref() != Some(&resolved.run_hash) {
        fs_err::create_dir_all(&run_dir.root)?;
        write()?;
    }
    let finished = run_training(run_dir, resolved, corpus, &CrossEntropy, quiet)?;
    if run_dir.finished_hash().is_some() && init.exists() {
        fs_err::remove_file(init)?;
    }
    Ok(finished)
}

/// Removes what a killed run left behind (temporary files, half-written checkpoints); only while
/// holding the run's lock.
fn remove_leftovers(run_dir: &RunDir) -> anyhow::Result<()> {
    let mut removed = remove_orphans(&run_dir.root)?;
    removed.extend(remove_incomplete(&run_dir.paths().checkpoints)?);
    for path in &removed {
        tracing::info!("removed {}, left by a killed run", path.display());
    }
    Ok(())
}

/// An unfinished run in `run_dir` is continued only with the same inputs: its shards (both hashes
/// named otherwise) and, once it has a checkpoint, its whole configuration. Checked before
/// `config.toml` is written, so a refused run leaves the directory as it was.
fn ensure_same_run(run_dir: &RunDir, resolved: &ResolvedRun) -> anyhow::Result<()> {
    let existing = run_dir.read_config()?;
    if (&existing.shards_inputs_hash, &existing.tokenizer_sha256)
        != (&resolved.shards_inputs_hash, &resolved.tokenizer_sha256)
    {
        anyhow::bail!(Usage(format!(
            "{}: the run was started on shards with inputs hash {} and tokenizer {}, but {} has inputs hash {} and tokenizer {}; re-ingest the run's inputs, or choose another --run",
            run_dir.root.display(),
            existing.shards_inputs_hash,
            existing.tokenizer_sha256,
            resolved.shards.display(),
            resolved.shards_inputs_hash,
            resolved.tokenizer_sha256
        )));
    }
    if existing.run_hash != resolved.run_hash
        && !complete_steps(&run_dir.paths().checkpoints).is_empty()
    {
        anyhow::bail!(Usage(format!(
            "{}: holds an unfinished run with other settings ({}); resume it with its own settings, or choose another --run",
            run_dir.root.display(),
            describe_changes(&existing, resolved)
        )));
    }
    Ok(())
}

/// What differs between the run saved in `run_dir` and `resolved`, for a refusal message.
fn changes_from(run_dir: &RunDir, resolved: &ResolvedRun) -> String {
    match run_dir.read_config() {
        Ok(existing) => describe_changes(&existing, resolved),
        Err(_) => "its config.toml is unreadable".to_owned(),
    }
}

/// The settings in which `resolved` differs from `existing`. A longer `steps` is a new run: the
/// learning rate decays over the whole run.
fn describe_changes(existing: &ResolvedRun, resolved: &ResolvedRun) -> String {
    let changes = existing.differences(resolved);
    let mut text = changes.join(", ");
    if changes.iter().any(|c| c.starts_with("train.steps ")) {
        text.push_str("; the learning rate decays over `steps`, so a longer run is not a continuation of a shorter one");
    }
    text
}

/// Training progress: a step bar with loss and tokens/s, and a log line per evaluation.
struct TrainBar {
    bar: ProgressBar,
    tokens_per_step: f64,
}

impl TrainBar {
    fn new(train: &TrainConfig, quiet: bool) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(train.steps)
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} steps ({eta}) {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix("train");
        Self {
            bar,
            tokens_per_step: train.tokens_per_step() as f64,
        }
    }
}

impl Hook for TrainBar {
    fn started(&mut self, start_step: u64, _total_steps: u64) {
        self.bar.set_position(start_step);
    }

    fn after_step(&mut self, report: &StepReport) -> Result<(), HookError> {
        let tokens_per_second = self.tokens_per_step / report.seconds.max(1e-9);
        let (step, loss) = (report.step, report.loss);
        tracing::debug!(step, loss, tokens_per_second, "step");
        self.bar.set_position(step);
        self.bar
            .set_message(format!("loss {loss:.4}, {tokens_per_second:.0} tok/s"));
        Ok(())
    }

    fn stop_requested(&self) -> bool {
        signals::stop_requested().is_some()
    }

    fn after_eval(&mut self, step: u64, losses: &[DomainLoss]) -> Result<(), HookError> {
        let mean = losses.iter().map(|l| l.loss).sum::<f64>() / losses.len().max(1) as f64;
        let rss = proc_status_mb("VmRSS:");
        self.bar.suspend(|| {
            tracing::info!(
                step,
                mean_valid_loss = format!("{mean:.4}"),
                rss_mb = rss,
                "evaluated"
            )
        });
        Ok(())
    }
}

/// A memory figure of this process in MB from Linux `/proc/self/status` (`VmRSS:` resident,
/// `VmHWM:` peak resident); 0 elsewhere.
fn proc_status_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}
