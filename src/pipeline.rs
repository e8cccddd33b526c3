//! `mixlab run`: the whole pipeline as one restartable batch job.
//!
//! Ingest first (it decides on its own whether its inputs changed), then the stages
//! [`plan::plan`] derives from `[run]` and `[[ablation]]`, each a typed [`StageSpec`] run by
//! calling the stages library and printed as its subcommand would print it. The [`Ledger`] skips
//! the stages that finished with their current key; a stage killed mid-way resumes (training from
//! its last checkpoint); a stage whose key changed reruns from scratch, its run directories
//! removed first. One lock per output directory keeps a second `mixlab run` out.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use mixlab_artefacts::atomic::write_atomic;
use mixlab_stages::checks;
use mixlab_stages::config::LoadedConfig;
use mixlab_stages::ingest::ingest;
use mixlab_stages::ledger::{Ledger, Progress};
use mixlab_stages::locks::lock_dir;
use mixlab_stages::plan::{self, PLAN_FILE, Stage, StageKind, StageSpec};
use mixlab_stages::workspace::Workspace;

use crate::cli::{GlobalArgs, RunArgs};
use crate::print;
use crate::progress::IngestBars;

/// Runs every stage of the pipeline that is not up to date, then prints where the report is.
///
/// # Errors
/// A bad configuration (exit code 2) before anything runs; a failing stage, named, with its
/// cause; another `mixlab run` holding the output directory.
pub fn run(global: &GlobalArgs, args: &RunArgs) -> anyhow::Result<()> {
    let loaded = LoadedConfig::load(&args.config)?;
    let arms = loaded.arms()?;
    checks::before_work(&loaded, &arms)?;
    let workspace = global.workspace();
    fs_err::create_dir_all(&workspace.out)?;
    let _lock = lock_dir(&workspace.out, "pipeline")?;
    let job = Job {
        workspace: &workspace,
        loaded: &loaded,
        ledger: Ledger::new(&workspace.out),
        forced: |kind: StageKind| args.force || args.from.is_some_and(|from| kind >= from),
    };
    if (job.forced)(StageKind::Ingest) {
        job.remove(Path::new("shards"))?;
    }
    println!("== ingest");
    let ingested = ingest(&workspace, &loaded, &IngestBars::new(global.quiet))?;
    print::ingested(&workspace.shards().path, &ingested);
    let plan = plan::plan(&loaded, &arms, &ingested.manifest().inputs_hash)?;
    let plan_file = workspace.path(Path::new(PLAN_FILE));
    if let Some(dir) = plan_file.parent() {
        fs_err::create_dir_all(dir)?;
    }
    write_atomic(&plan_file, serde_json::to_string_pretty(&plan)?.as_bytes())?;
    let total = plan.stages.len();
    for (i, stage) in plan.stages.iter().enumerate() {
        job.stage(stage, i + 1, total)?;
    }
    if let Some(report) = plan.report_dir() {
        let html = workspace.path(&report).join("report.html");
        println!("report: {}", html.display());
    }
    Ok(())
}

/// What every stage of one `mixlab run` shares.
struct Job<'a, F: Fn(StageKind) -> bool> {
    workspace: &'a Workspace,
    loaded: &'a LoadedConfig,
    ledger: Ledger,
    forced: F,
}

impl<F: Fn(StageKind) -> bool> Job<'_, F> {
    /// Runs `stage` unless it finished with its key; removes its runs first when it ran with
    /// another key (or is forced).
    fn stage(&self, stage: &Stage, index: usize, total: usize) -> anyhow::Result<()> {
        let record = self.ledger.read(&stage.id);
        let same_key = record.as_ref().is_some_and(|r| r.key == stage.key);
        let done = same_key
            && record
                .as_ref()
                .is_some_and(|r| r.progress == Progress::Done);
        let forced = (self.forced)(stage.kind());
        if done && !forced {
            println!("== [{index}/{total}] {}: up to date, skipped", stage.id);
            tracing::info!(stage = %stage.id, event = "skipped", "stage up to date");
            return Ok(());
        }
        if forced || (record.is_some() && !same_key) {
            for run in &stage.runs {
                self.remove(run)?;
            }
        }
        println!(
            "== [{index}/{total}] {}: {}",
            stage.id,
            self.command_line(&stage.spec)
        );
        tracing::info!(stage = %stage.id, event = "started", key = %stage.key, "stage");
        let started = Instant::now();
        self.ledger
            .write(&stage.id, &stage.key, Progress::Started)?;
        let outcome = (stage.spec.run(self.workspace, self.loaded))
            .with_context(|| format!("stage {} failed", stage.id))?;
        print::outcome(&outcome)?;
        self.ledger.write(&stage.id, &stage.key, Progress::Done)?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(stage = %stage.id, event = "finished", seconds, "stage");
        Ok(())
    }

    /// The command line that would run `spec` by hand.
    fn command_line(&self, spec: &StageSpec) -> String {
        spec.command_line(&self.workspace.out, &self.loaded.path)
    }

    /// Removes `path` (relative to the output directory) when it exists.
    fn remove(&self, path: &Path) -> anyhow::Result<()> {
        let full = self.workspace.path(path);
        if full.exists() {
            tracing::info!(
                "removing {} (made with other settings, or forced)",
                full.display()
            );
            fs_err::remove_dir_all(&full)?;
        }
        Ok(())
    }
}
