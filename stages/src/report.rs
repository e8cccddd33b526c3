//! The `report` stage's input: the arms of `mixlab run` plans, or run directories, with the files
//! of their finished runs (`mixlab-reports` builds the report from it).

use std::path::{Path, PathBuf};

use anyhow::Context;
use mixlab_reports::build;
use mixlab_reports::input::{ArmInput, ReportInput, RunInput, SeedInput};
use serde::Deserialize;

use crate::Usage;
use crate::arms::MixChoice;
use crate::plan::ArmRuns;
use crate::run_dir::RunDir;
use crate::simulate::{UTILITIES_FILE, simulation_dir};
use crate::workspace::Workspace;

/// What a report is over.
#[derive(Debug, Clone)]
pub enum ReportSource {
    /// The arms of these `mixlab run` plans (`pipeline/plan.json`), merged by name.
    Plans(Vec<PathBuf>),
    /// Each run directory (relative to the workspace) as an arm of one seed.
    Runs(Vec<PathBuf>),
}

/// The report's input, titled after `name`.
///
/// # Errors
/// No plan or run given, a file that is not a plan, and runs that are not finished ([`Usage`]).
pub fn report_input(
    workspace: &Workspace,
    source: &ReportSource,
    name: &str,
) -> anyhow::Result<ReportInput> {
    match source {
        ReportSource::Runs(runs) if runs.is_empty() => Err(anyhow::anyhow!(Usage(
            "give run directories (relative to --out) or --plan FILE".into()
        ))),
        ReportSource::Runs(runs) => from_runs(&workspace.out, runs, name),
        ReportSource::Plans(plans) => from_plans(&workspace.out, plans, name),
    }
}

/// Where the report named `name` goes: `<out>/reports/<name>`.
pub fn report_dir(out: &Path, name: &str) -> PathBuf {
    out.join("reports").join(name)
}

/// Builds the report over `source` and writes its files (report.md, report.html, figures) to
/// [`report_dir`]; that directory.
///
/// # Errors
/// Those of [`report_input`], a report that cannot be built, and write failures.
pub fn write_report(
    workspace: &Workspace,
    source: &ReportSource,
    name: &str,
) -> anyhow::Result<PathBuf> {
    let input = report_input(workspace, source, name)?;
    let report = build(&input).context("building the report")?;
    let dir = report_dir(&workspace.out, name);
    report.write(&dir)?;
    Ok(dir)
}

/// The arms of several `mixlab run` plans, merged by name (their seeds pooled); the first plan's
/// targets and utilities.
fn from_plans(out: &Path, plans: &[PathBuf], name: &str) -> anyhow::Result<ReportInput> {
    let mut merged: Option<ReportInput> = None;
    for plan in plans {
        // A plan's run directories are relative to the out directory holding its `pipeline/`.
        let plan_out = match plan.parent() {
            Some(dir) if dir.file_name().is_some_and(|n| n == "pipeline") => {
                dir.parent().unwrap_or(out).to_path_buf()
            }
            _ => out.to_path_buf(),
        };
        let input = from_plan(&plan_out, plan, name)?;
        let Some(into) = merged.as_mut() else {
            merged = Some(input);
            continue;
        };
        for arm in input.arms {
            match into.arms.iter_mut().find(|a| a.name == arm.name) {
                Some(same) => same.seeds.extend(arm.seeds),
                None => into.arms.push(arm),
            }
        }
    }
    merged.ok_or_else(|| anyhow::anyhow!(Usage("--plan: no plan given".into())))
}

/// What the report reads of a plan: its arms and targets (so plans whose stages were written by
/// another version still read).
#[derive(Deserialize)]
struct PlannedArms {
    arms: Vec<ArmRuns>,
    #[serde(default)]
    targets: Vec<(String, f64)>,
}

/// The arms of a `mixlab run` plan, with the SDM utilities when an arm used them.
fn from_plan(out: &Path, plan_file: &Path, name: &str) -> anyhow::Result<ReportInput> {
    let text =
        fs_err::read_to_string(plan_file).context(Usage("--plan: cannot read the plan".into()))?;
    let plan: PlannedArms = serde_json::from_str(&text).map_err(|e| {
        Usage(format!(
            "{}: not a plan written by `mixlab run`: {e}",
            plan_file.display()
        ))
    })?;
    let mut arms = Vec::new();
    for arm in &plan.arms {
        let mut seeds = Vec::new();
        for seed in &arm.seeds {
            let runs = seed
                .runs
                .iter()
                .map(|(stage, run)| run_input(out, run, stage.name()))
                .collect::<anyhow::Result<_>>()?;
            seeds.push(SeedInput {
                seed: seed.seed,
                runs,
            });
        }
        arms.push(arm_input(out, arm.arm.name.clone(), seeds)?);
    }
    let utilities = simulation_dir(out).join(UTILITIES_FILE);
    let used = plan.arms.iter().any(|a| a.arm.mix == MixChoice::Sdm);
    Ok(ReportInput {
        title: format!("mixlab report: {name}"),
        arms,
        utilities: (used && utilities.exists()).then_some(utilities),
        targets: plan.targets.clone(),
    })
}

/// Each run directory as an arm of one seed.
fn from_runs(out: &Path, runs: &[PathBuf], name: &str) -> anyhow::Result<ReportInput> {
    let mut arms = Vec::new();
    for run in runs {
        let input = run_input(out, run, "train")?;
        let seed = RunDir::new(out.join(run)).read_config()?.train.seed;
        let arm = run.file_name().map_or_else(
            || run.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        arms.push(arm_input(
            out,
            arm,
            vec![SeedInput {
                seed,
                runs: vec![input],
            }],
        )?);
    }
    Ok(ReportInput {
        title: format!("mixlab report: {name}"),
        arms,
        utilities: None,
        targets: Vec::new(),
    })
}

/// An arm whose mixture is its first run's.
fn arm_input(out: &Path, name: String, seeds: Vec<SeedInput>) -> anyhow::Result<ArmInput> {
    let first = seeds
        .first()
        .and_then(|s| s.runs.first())
        .map(|r| PathBuf::from(&r.name));
    let mixture = match first {
        Some(run) => Some(RunDir::new(out.join(run)).read_config()?.mixture),
        None => None,
    };
    Ok(ArmInput {
        name,
        mixture,
        seeds,
    })
}

/// A finished run's files.
fn run_input(out: &Path, run: &Path, stage: &str) -> anyhow::Result<RunInput> {
    let dir = RunDir::new(out.join(run));
    let resolved = dir.read_finished(&run.display().to_string())?;
    let paths = dir.paths();
    Ok(RunInput {
        stage: stage.to_owned(),
        name: run.display().to_string(),
        eval: paths.eval,
        metrics: paths.metrics,
        tokens: resolved.train.steps * resolved.train.tokens_per_step(),
    })
}
