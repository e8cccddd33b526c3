//! `mixlab regress`: fit loss = f(mixture) on a table of runs and report how well it predicts.

use std::time::Instant;

use mixlab_mixer::metrics::FitMetrics;
use mixlab_mixer::regress::{CV_FOLDS, cross_validate, fit};
use mixlab_stages::Usage;

use crate::cli::{GlobalArgs, RegressArgs};
use crate::table::Table;

/// Fits each requested model and prints cross-validated (and test) ρ, r and MSE.
pub fn run(_global: &GlobalArgs, args: &RegressArgs) -> anyhow::Result<()> {
    let train = args
        .table
        .files(&args.table.runs, &args.table.losses)
        .load()?;
    let test = match (&args.test_runs, &args.test_losses) {
        (Some(r), Some(l)) => Some(args.table.files(r, l).load()?),
        (None, None) => None,
        _ => anyhow::bail!(Usage("--test-runs and --test-losses go together".into())),
    };
    if let Some(test) = &test
        && test.domains != train.domains
    {
        anyhow::bail!(Usage(format!(
            "test runs have domains {:?} but training runs have {:?}",
            test.domains, train.domains
        )));
    }
    let mut out = Table::new(&[
        "model", "cv ρ", "cv r", "cv mse", "test ρ", "test r", "test mse", "fit s",
    ]);
    for kind in args.model.iter().map(|m| m.kind()) {
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
