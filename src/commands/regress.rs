//! `mixlab regress`: fit loss = f(mixture) on a table of runs and report how well it predicts.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use mixlab_mixer::metrics::FitMetrics;
use mixlab_mixer::regress::{FittedModel, ModelKind, cross_validate, fit};
use mixlab_mixer::runs::RunTable;

use crate::cli::{GlobalArgs, RegressArgs, RunTableArgs};
use crate::run_dir::write_atomic;
use crate::table::Table;
use crate::tables::NumericTable;

/// Folds of the cross-validation reported for every fit.
pub const CV_FOLDS: usize = 5;

/// Fits each requested model, prints cross-validated (and test) ρ, r and MSE, saves the models.
pub fn run(global: &GlobalArgs, args: &RegressArgs) -> anyhow::Result<()> {
    let train = load_run_table(&args.table, &args.table.runs, &args.table.losses)?;
    let test = match (&args.test_runs, &args.test_losses) {
        (Some(r), Some(l)) => Some(load_run_table(&args.table, r, l)?),
        (None, None) => None,
        _ => anyhow::bail!(crate::exit::UsageError(
            "--test-runs and --test-losses go together".into()
        )),
    };
    if let Some(test) = &test
        && test.domains != train.domains
    {
        anyhow::bail!(crate::exit::UsageError(format!(
            "test runs have domains {:?} but training runs have {:?}",
            test.domains, train.domains
        )));
    }
    let kinds: Vec<ModelKind> = args.model.iter().map(|m| m.kind()).collect();
    let mut out = Table::new(&[
        "model", "cv ρ", "cv r", "cv mse", "test ρ", "test r", "test mse", "fit s",
    ]);
    for kind in kinds {
        let cv = cross_validate(kind, &train, CV_FOLDS, args.seed)?;
        let started = Instant::now();
        let model = fit(kind, &train)?;
        let fit_seconds = started.elapsed().as_secs_f64();
        let test_metrics = test
            .as_ref()
            .map(|t| FitMetrics::of(&model.predict_table(t), t.losses.as_slice().unwrap_or(&[])));
        let cell =
            |m: Option<FitMetrics>, f: fn(&FitMetrics) -> String| m.as_ref().map_or("-".into(), f);
        out.row(vec![
            kind.name().into(),
            format!("{:.2}", 100.0 * cv.spearman),
            format!("{:.2}", 100.0 * cv.pearson),
            format!("{:.5}", cv.mse),
            cell(test_metrics, |m| format!("{:.2}", 100.0 * m.spearman)),
            cell(test_metrics, |m| format!("{:.2}", 100.0 * m.pearson)),
            cell(test_metrics, |m| format!("{:.5}", m.mse)),
            format!("{fit_seconds:.2}"),
        ]);
        let path = args
            .save
            .clone()
            .unwrap_or_else(|| default_model_path(global, &args.table.target, kind));
        save_model(&path, &model)?;
        tracing::info!(model = kind.name(), path = %path.display(), "saved the fitted model");
    }
    println!(
        "target {} ({} training runs, {}-fold cross-validation; ρ and r ×100)",
        args.table.target,
        train.len(),
        CV_FOLDS
    );
    print!("{}", out.render());
    Ok(())
}

fn default_model_path(global: &GlobalArgs, target: &str, kind: ModelKind) -> PathBuf {
    let target: String = target
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    global
        .out_root()
        .join("models")
        .join(format!("{target}.{}.json", kind.name()))
}

fn save_model(path: &Path, model: &FittedModel) -> anyhow::Result<()> {
    let json = serde_json::to_string(model).context("serializing the model")?;
    write_atomic(path, json.as_bytes())
}

/// Tolerance on row sums under `--normalize`.
const NORMALIZE_TOLERANCE: f64 = 0.01;

/// Joins a mixtures table and a losses table on the index column into a validated run table
/// (`args` gives the target, index and `--normalize`; the paths may be the test tables).
pub fn load_run_table(
    args: &RunTableArgs,
    runs_path: &Path,
    losses_path: &Path,
) -> anyhow::Result<RunTable> {
    let runs_table = NumericTable::read(runs_path, &args.index)?;
    let losses_table = NumericTable::read(losses_path, &args.index)?;
    let loss_column = losses_table.column(&args.target)?;
    let rows = losses_table.align_to(&runs_table.ids)?;
    let weights: Vec<Vec<f64>> = (0..runs_table.ids.len())
        .map(|r| runs_table.values.iter().map(|col| col[r]).collect())
        .collect();
    let losses: Vec<f64> = rows.iter().map(|&r| loss_column[r]).collect();
    let (domains, ids) = (runs_table.columns.clone(), runs_table.ids.clone());
    let table = if args.normalize {
        RunTable::new_normalized(
            domains,
            ids,
            weights,
            losses,
            &args.target,
            NORMALIZE_TOLERANCE,
        )
    } else {
        RunTable::new(domains, ids, weights, losses, &args.target)
    };
    table.with_context(|| format!("{} + {}", runs_path.display(), losses_path.display()))
}
