//! `mixlab run`: the whole pipeline as one restartable batch job.
//!
//! Ingest first (it decides on its own whether its inputs changed), then the stages
//! [`plan::plan`] derives from `[run]` and `[[ablation]]`, each run as the subcommand a user
//! would type. The [`Ledger`] skips the stages that finished with their current key;
//! a stage killed mid-way resumes (training from its last checkpoint); a stage whose key changed
//! reruns from scratch, its run directories removed first. One lock per output directory keeps
//! a second `mixlab run` out.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use mixlab_artefacts::atomic::write_atomic;
use mixlab_ingest::manifest::ShardSet;
use mixlab_stages::Usage;
use mixlab_stages::checks;
use mixlab_stages::config::LoadedConfig;
use mixlab_stages::ledger::{Ledger, Progress};
use mixlab_stages::locks::lock_dir;
use mixlab_stages::plan::{self, Stage, StageKind};

use crate::cli::{Cli, GlobalArgs, RunArgs};

/// Runs every stage of the pipeline that is not up to date, then prints where the report is.
///
/// # Errors
/// A bad configuration (exit code 2) before anything runs; a failing stage, named, with its
/// cause; another `mixlab run` holding the output directory.
pub fn run(global: &GlobalArgs, args: &RunArgs) -> anyhow::Result<()> {
    let loaded = LoadedConfig::load(&args.config)?;
    let arms = loaded.arms()?;
    checks::before_work(&loaded, &arms)?;
    let out = global.out_root();
    fs_err::create_dir_all(&out)?;
    let _lock = lock_dir(&out, "pipeline")?;
    let job = Job {
        global,
        out: &out,
        config: &args.config,
        ledger: Ledger::new(&out),
        forced: |kind: StageKind| args.force || args.from.is_some_and(|from| kind >= from),
    };
    if (job.forced)(StageKind::Ingest) {
        job.remove(Path::new("shards"))?;
    }
    println!("== ingest");
    job.invoke(&["ingest".into(), "--config".into(), "{config}".into()])?;
    let shards = ShardSet::open(&out.join("shards"), global.verification())?;
    let plan = plan::plan(&loaded, &arms, &shards.manifest().inputs_hash)?;
    let plan_file = out.join("pipeline").join("plan.json");
    fs_err::create_dir_all(out.join("pipeline"))?;
    write_atomic(&plan_file, serde_json::to_string_pretty(&plan)?.as_bytes())?;
    let total = plan.stages.len();
    for (i, stage) in plan.stages.iter().enumerate() {
        job.stage(stage, i + 1, total)?;
    }
    if let Some(report) = plan.report_dir() {
        println!("report: {}", out.join(report).join("report.html").display());
    }
    Ok(())
}

/// What every stage of one `mixlab run` shares.
struct Job<'a, F: Fn(StageKind) -> bool> {
    global: &'a GlobalArgs,
    out: &'a Path,
    config: &'a Path,
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
        let forced = (self.forced)(stage.kind);
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
            "== [{index}/{total}] {}: mixlab {}",
            stage.id,
            self.expand(&stage.args).join(" ")
        );
        tracing::info!(stage = %stage.id, event = "started", key = %stage.key, "stage");
        let started = Instant::now();
        self.ledger
            .write(&stage.id, &stage.key, Progress::Started)?;
        self.invoke(&stage.args)
            .with_context(|| format!("stage {} failed", stage.id))?;
        self.ledger.write(&stage.id, &stage.key, Progress::Done)?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(stage = %stage.id, event = "finished", seconds, "stage");
        Ok(())
    }

    /// Runs a subcommand in this process with the job's global flags.
    fn invoke(&self, args: &[String]) -> anyhow::Result<()> {
        let mut argv = vec![
            "mixlab".to_owned(),
            "--out".into(),
            self.out.display().to_string(),
        ];
        if self.global.quiet {
            argv.push("--quiet".into());
        }
        if self.global.verify {
            argv.push("--verify".into());
        }
        argv.extend(self.expand(args));
        let cli = Cli::try_parse_from(&argv)
            .map_err(|e| Usage(format!("mixlab {}: {e}", args.join(" "))))?;
        crate::commands::run(&cli)
    }

    /// `args` with `{out}` and `{config}` replaced.
    fn expand(&self, args: &[String]) -> Vec<String> {
        let (out, config) = (
            self.out.display().to_string(),
            self.config.display().to_string(),
        );
        args.iter()
            .map(|a| a.replace("{out}", &out).replace("{config}", &config))
            .collect()
    }

    /// Removes `path` (relative to the output directory) when it exists.
    fn remove(&self, path: &Path) -> anyhow::Result<()> {
        let full: PathBuf = self.out.join(path);
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
