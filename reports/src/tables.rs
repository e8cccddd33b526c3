//! The report's tables, aggregated with polars from lazy scans of the runs' Parquet files.
//!
//! Every file is checked against its owner module's schema (`mixlab_artefacts`) before it is
//! scanned; each scan is labelled with its arm, seed and stage, and the scans are concatenated,
//! grouped and joined lazily, collected once per table.

use std::collections::BTreeMap;
use std::path::Path;

use mixlab_artefacts::eval::check_eval;
use mixlab_artefacts::metrics::check_metrics;
use mixlab_artefacts::split::Split;
use mixlab_artefacts::utilities::{JOINT_TARGET, check_utilities};
use polars::prelude::*;
use serde::Serialize;

use crate::Result;
use crate::input::ReportInput;
use crate::paired::SeedLoss;

/// The row of the targets' weighted mean probe loss.
pub const TARGETS: &str = "targets";

/// A final model's loss on one split and domain (or `mean` over the domains, or the weighted
/// mean of the [`TARGETS`]), over the seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FinalLoss {
    /// The arm.
    pub arm: String,
    /// `valid` or `probe`.
    pub split: Split,
    /// The domain, or `mean`.
    pub domain: String,
    /// Mean over the seeds.
    pub mean: f64,
    /// Lowest seed.
    pub min: f64,
    /// Highest seed.
    pub max: f64,
    /// Seeds.
    pub seeds: u64,
}

/// One stage's mean validation loss within an arm (train, distill, merge, quantize), and its
/// change from the arm's trained model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageLoss {
    /// The arm.
    pub arm: String,
    /// Position in the arm's chain (0: train).
    pub order: u64,
    /// The stage.
    pub stage: String,
    /// Mean over the domains' validation losses, then over the seeds.
    pub mean: f64,
    /// Lowest seed.
    pub min: f64,
    /// Highest seed.
    pub max: f64,
    /// Relative change from the arm's trained model, in percent.
    pub change_pct: f64,
}

/// A point of a loss curve: the training loss (`domain` = `train`) or a domain's validation
/// loss, averaged over the seeds of the arm's trained run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurvePoint {
    /// The arm.
    pub arm: String,
    /// `train`, or the domain evaluated.
    pub domain: String,
    /// Optimizer step.
    pub step: u64,
    /// Loss.
    pub loss: f64,
}

/// A domain's utility for one target, over all checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UtilityRow {
    /// The domain.
    pub domain: String,
    /// The target, or `joint`.
    pub target: String,
    /// Utility (positive: helps).
    pub utility: f64,
    /// Bootstrap standard error.
    pub stderr: f64,
    /// Documents scored.
    pub n_samples: u64,
}

/// One arm's mixture weight of one domain in one stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MixtureWeight {
    /// The arm.
    pub arm: String,
    /// The mixture stage.
    pub stage: String,
    /// The domain.
    pub domain: String,
    /// Its weight.
    pub weight: f64,
}

/// All tables of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tables {
    /// Final models per arm, split and domain.
    pub final_losses: Vec<FinalLoss>,
    /// Final models per arm, seed and split on the aggregate rows (`mean`, `targets`): what arms
    /// are paired by.
    pub seed_losses: Vec<SeedLoss>,
    /// Each arm's stages.
    pub stage_losses: Vec<StageLoss>,
    /// Loss curves of the trained runs.
    pub curves: Vec<CurvePoint>,
    /// The targets' domains' weighted validation loss along each arm's trained runs (domain
    /// [`TARGETS`]; empty without targets). Evaluations during training score the valid split; the
    /// probe split is scored at the end only.
    pub target_curves: Vec<CurvePoint>,
    /// Mixture weights.
    pub mixtures: Vec<MixtureWeight>,
    /// Domain utilities (joint target first).
    pub utilities: Vec<UtilityRow>,
}

/// Aggregates every table of `input`.
///
/// # Errors
/// A missing file, or one of another format or schema (named), and polars errors.
pub fn tables(input: &ReportInput) -> Result<Tables> {
    let evals = labelled_scans(input, |run| run.eval.as_path(), check_eval)?;
    let (final_losses, seed_losses) = final_losses(evals.clone(), &input.targets)?;
    Ok(Tables {
        final_losses,
        seed_losses,
        stage_losses: stage_losses(evals)?,
        curves: curves(input)?,
        target_curves: target_curves(input)?,
        mixtures: mixtures(input),
        utilities: match &input.utilities {
            Some(path) => utilities(path)?,
            None => Vec::new(),
        },
    })
}

/// One lazy scan of every run's file (`file` picks it), labelled with `arm`, `seed`, `order`,
/// `stage` and `final` (the last run of its seed), concatenated.
fn labelled_scans(
    input: &ReportInput,
    file: impl Fn(&crate::input::RunInput) -> &Path,
    check: impl Fn(&Path) -> mixlab_artefacts::Result<()>,
) -> Result<LazyFrame> {
    let mut frames = Vec::new();
    for (arm, seed, order, run) in input.runs() {
        let path = file(run);
        check(path)?;
        let last = order + 1 == seed.runs.len();
        frames.push(scan(path)?.with_columns([
            lit(arm.name.clone()).alias("arm"),
            lit(seed.seed).alias("seed"),
            lit(order as u64).alias("order"),
            lit(run.stage.clone()).alias("stage"),
            lit(last).alias("final"),
        ]));
    }
    if frames.is_empty() {
        return Err(crate::Error::Empty);
    }
    Ok(concat(frames, UnionArgs::default())?)
}

fn scan(path: &Path) -> Result<LazyFrame> {
    let path = PlRefPath::new(path.to_string_lossy().as_ref());
    Ok(LazyFrame::scan_parquet(path, ScanArgsParquet::default())?)
}

/// Loss of each arm's final models per split and domain, their mean over the domains, and the
/// weighted mean of the targets' probe losses (when there are targets); and the aggregate rows
/// per seed.
fn final_losses(
    evals: LazyFrame,
    targets: &[(String, f64)],
) -> Result<(Vec<FinalLoss>, Vec<SeedLoss>)> {
    let keys = [col("arm"), col("seed"), col("split")];
    let finals = evals.filter(col("final"));
    let per_domain = finals.clone().select([
        col("arm"),
        col("seed"),
        col("split"),
        col("domain"),
        col("loss"),
    ]);
    let mean_of_domains = finals
        .clone()
        .group_by(keys.clone())
        .agg([col("loss").mean()]);
    let mut rows = vec![per_domain, labelled(mean_of_domains, "mean")];
    if !targets.is_empty() {
        let (domains, weights): (Vec<&str>, Vec<f64>) =
            targets.iter().map(|(d, w)| (d.as_str(), *w)).unzip();
        let weights = df!("domain" => domains, "weight" => weights)?.lazy();
        let weighted = finals
            .filter(col("split").eq(lit(Split::Probe.as_str())))
            .join(
                weights,
                [col("domain")],
                [col("domain")],
                JoinArgs::new(JoinType::Inner),
            )
            .group_by(keys)
            .agg([((col("loss") * col("weight")).sum() / col("weight").sum()).alias("loss")]);
        rows.push(labelled(weighted, TARGETS));
    }
    let per_seed = concat(rows, UnionArgs::default())?;
    let aggregates = per_seed
        .clone()
        .filter(
            col("domain")
                .eq(lit("mean"))
                .or(col("domain").eq(lit(TARGETS))),
        )
        .sort(
            ["split", "domain", "arm", "seed"],
            SortMultipleOptions::default(),
        )
        .collect()?;
    let seed_losses = seed_losses(&aggregates)?;
    let df = per_seed
        .group_by([col("arm"), col("split"), col("domain")])
        .agg(spread("loss"))
        .sort(["split", "domain", "arm"], SortMultipleOptions::default())
        .collect()?;
    let (arm, split, domain) = (strs(&df, "arm")?, splits(&df)?, strs(&df, "domain")?);
    let (mean, min, max, seeds) = (
        f64s(&df, "mean")?,
        f64s(&df, "min")?,
        f64s(&df, "max")?,
        u64s(&df, "seeds")?,
    );
    let finals = (0..df.height())
        .map(|i| FinalLoss {
            arm: arm[i].clone(),
            split: split[i],
            domain: domain[i].clone(),
            mean: mean[i],
            min: min[i],
            max: max[i],
            seeds: seeds[i],
        })
        .collect();
    Ok((finals, seed_losses))
}

fn seed_losses(df: &DataFrame) -> Result<Vec<SeedLoss>> {
    let (arm, split, domain) = (strs(df, "arm")?, splits(df)?, strs(df, "domain")?);
    let (seed, loss) = (u64s(df, "seed")?, f64s(df, "loss")?);
    Ok((0..df.height())
        .map(|i| SeedLoss {
            arm: arm[i].clone(),
            seed: seed[i],
            split: split[i],
            domain: domain[i].clone(),
            loss: loss[i],
        })
        .collect())
}

/// Per-seed losses of an aggregate row (`mean`, `targets`) in the columns of the domains' rows.
fn labelled(losses: LazyFrame, domain: &str) -> LazyFrame {
    losses.select([
        col("arm"),
        col("seed"),
        col("split"),
        lit(domain.to_owned()).alias("domain"),
        col("loss"),
    ])
}

/// Mean, min, max and count of `column` in a group.
fn spread(column: &str) -> [Expr; 4] {
    [
        col(column).mean().alias("mean"),
        col(column).min().alias("min"),
        col(column).max().alias("max"),
        len().cast(DataType::UInt64).alias("seeds"),
    ]
}

/// Each stage's mean validation loss per arm, joined with the arm's trained model's.
fn stage_losses(evals: LazyFrame) -> Result<Vec<StageLoss>> {
    let stages = evals
        .filter(col("split").eq(lit(Split::Valid.as_str())))
        .group_by([col("arm"), col("seed"), col("order"), col("stage")])
        .agg([col("loss").mean()])
        .group_by([col("arm"), col("order"), col("stage")])
        .agg(spread("loss"));
    let trained = stages
        .clone()
        .filter(col("order").eq(lit(0u64)))
        .select([col("arm"), col("mean").alias("trained")]);
    let df = stages
        .join(
            trained,
            [col("arm")],
            [col("arm")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(((col("mean") / col("trained") - lit(1.0)) * lit(100.0)).alias("change_pct"))
        .sort(["arm", "order"], SortMultipleOptions::default())
        .collect()?;
    let (arm, stage, order) = (strs(&df, "arm")?, strs(&df, "stage")?, u64s(&df, "order")?);
    let (mean, min, max, change) = (
        f64s(&df, "mean")?,
        f64s(&df, "min")?,
        f64s(&df, "max")?,
        f64s(&df, "change_pct")?,
    );
    Ok((0..df.height())
        .map(|i| StageLoss {
            arm: arm[i].clone(),
            order: order[i],
            stage: stage[i].clone(),
            mean: mean[i],
            min: min[i],
            max: max[i],
            change_pct: change[i],
        })
        .collect())
}

/// Training loss and per-domain validation loss over the steps of each arm's trained runs,
/// averaged over the seeds.
/// Σ w·loss, Σ w and the targets seen, of one evaluation of one seed.
type WeightedSum = (f64, f64, usize);

/// The weighted mean of the targets' domains' validation losses at every evaluation of the
/// trained runs, averaged over the seeds (an evaluation missing a target's domain is left out).
fn target_curves(input: &ReportInput) -> Result<Vec<CurvePoint>> {
    if input.targets.is_empty() {
        return Ok(Vec::new());
    }
    let df = labelled_scans(input, |run| run.metrics.as_path(), check_metrics)?
        .filter(col("order").eq(lit(0u64)))
        .filter(
            col("split")
                .eq(lit(Split::Valid.as_str()))
                .and(col("eval_loss").is_not_null()),
        )
        .select([
            col("arm"),
            col("seed"),
            col("step"),
            col("domain"),
            col("eval_loss"),
        ])
        .collect()?;
    let (arm, seed, step) = (strs(&df, "arm")?, u64s(&df, "seed")?, u64s(&df, "step")?);
    let (domain, loss) = (strs(&df, "domain")?, f64s(&df, "eval_loss")?);
    let mut sums: BTreeMap<(&str, u64), BTreeMap<u64, WeightedSum>> = BTreeMap::new();
    for i in 0..df.height() {
        if let Some((_, w)) = input.targets.iter().find(|(d, _)| *d == domain[i]) {
            let entry = sums
                .entry((arm[i].as_str(), step[i]))
                .or_default()
                .entry(seed[i])
                .or_default();
            *entry = (entry.0 + w * loss[i], entry.1 + w, entry.2 + 1);
        }
    }
    let complete = input.targets.len();
    let mut points: Vec<CurvePoint> = sums
        .into_iter()
        .filter_map(|((arm, step), seeds)| {
            let means: Vec<f64> = seeds
                .values()
                .filter(|(_, _, n)| *n == complete)
                .map(|(sum, weight, _)| sum / weight)
                .collect();
            (!means.is_empty()).then(|| CurvePoint {
                arm: arm.to_owned(),
                domain: TARGETS.to_owned(),
                step,
                loss: means.iter().sum::<f64>() / means.len() as f64,
            })
        })
        .collect();
    points.sort_by(|a, b| (&a.arm, a.step).cmp(&(&b.arm, b.step)));
    Ok(points)
}

fn curves(input: &ReportInput) -> Result<Vec<CurvePoint>> {
    let metrics = labelled_scans(input, |run| run.metrics.as_path(), check_metrics)?
        .filter(col("order").eq(lit(0u64)));
    let train = metrics
        .clone()
        .filter(col("domain").is_null().and(col("loss").is_not_null()))
        .group_by([col("arm"), col("step")])
        .agg([col("loss").mean()])
        .select([
            col("arm"),
            lit("train").alias("domain"),
            col("step"),
            col("loss"),
        ]);
    let valid = metrics
        .filter(
            col("split")
                .eq(lit(Split::Valid.as_str()))
                .and(col("eval_loss").is_not_null()),
        )
        .group_by([col("arm"), col("domain"), col("step")])
        .agg([col("eval_loss").mean().alias("loss")])
        .select([col("arm"), col("domain"), col("step"), col("loss")]);
    let df = concat([train, valid], UnionArgs::default())?
        .sort(["arm", "domain", "step"], SortMultipleOptions::default())
        .collect()?;
    let (arm, domain, step, loss) = (
        strs(&df, "arm")?,
        strs(&df, "domain")?,
        u64s(&df, "step")?,
        f64s(&df, "loss")?,
    );
    Ok((0..df.height())
        .map(|i| CurvePoint {
            arm: arm[i].clone(),
            domain: domain[i].clone(),
            step: step[i],
            loss: loss[i],
        })
        .collect())
}

/// The utilities over all checkpoints, the joint target first.
fn utilities(path: &Path) -> Result<Vec<UtilityRow>> {
    check_utilities(path)?;
    let df = scan(path)?
        .filter(col("checkpoint_step").is_null())
        .with_column(col("target").neq(lit(JOINT_TARGET)).alias("not_joint"))
        .sort(
            ["not_joint", "target", "domain"],
            SortMultipleOptions::default(),
        )
        .collect()?;
    let (domain, target) = (strs(&df, "domain")?, strs(&df, "target")?);
    let (utility, stderr, n) = (
        f64s(&df, "utility")?,
        f64s(&df, "stderr")?,
        u64s(&df, "n_samples")?,
    );
    Ok((0..df.height())
        .map(|i| UtilityRow {
            domain: domain[i].clone(),
            target: target[i].clone(),
            utility: utility[i],
            stderr: stderr[i],
            n_samples: n[i],
        })
        .collect())
}

/// Every arm's mixture weights, stage by stage.
fn mixtures(input: &ReportInput) -> Vec<MixtureWeight> {
    input
        .arms
        .iter()
        .flat_map(|arm| {
            arm.mixture.iter().flat_map(move |m| {
                m.stage.iter().flat_map(move |stage| {
                    stage
                        .weights
                        .iter()
                        .map(move |(domain, &weight)| MixtureWeight {
                            arm: arm.name.clone(),
                            stage: stage.name.clone(),
                            domain: domain.clone(),
                            weight,
                        })
                })
            })
        })
        .collect()
}

fn strs(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    let column = df.column(name)?.as_materialized_series().str()?.clone();
    Ok(column
        .iter()
        .map(|v| v.unwrap_or_default().to_owned())
        .collect())
}

/// The `split` column, parsed.
fn splits(df: &DataFrame) -> Result<Vec<Split>> {
    let parse = |name: String| {
        (name.parse::<Split>()).map_err(|e| PolarsError::ComputeError(e.to_string().into()))
    };
    let names = strs(df, "split")?.into_iter().map(parse);
    Ok(names.collect::<std::result::Result<_, _>>()?)
}

fn f64s(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let column = df.column(name)?.cast(&DataType::Float64)?;
    let values = column.as_materialized_series().f64()?.clone();
    Ok(values.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

fn u64s(df: &DataFrame, name: &str) -> Result<Vec<u64>> {
    let column = df.column(name)?.cast(&DataType::UInt64)?;
    let values = column.as_materialized_series().u64()?.clone();
    Ok(values.iter().map(|v| v.unwrap_or_default()).collect())
}

#[cfg(test)]
mod tests {
    use mixlab_artefacts::eval::{DomainLoss, write_eval};
    use mixlab_artefacts::metrics::{MetricRow, write_metrics};

    use super::*;
    use crate::input::{ArmInput, RunInput, SeedInput};

    /// A finished run in `dir` whose validation and probe losses are `base` + the domain's
    /// offset (code +0, math +1), with training loss `base` + 1 at steps 1 and 2.
    fn run(dir: &Path, name: &str, stage: &str, base: f64) -> RunInput {
        let (eval, metrics) = (
            dir.join(format!("{name}.eval")),
            dir.join(format!("{name}.metrics")),
        );
        let loss = |domain: &str, split: Split, offset: f64| DomainLoss {
            domain: domain.into(),
            split,
            loss: base + offset,
            tokens: 64,
        };
        let losses = [Split::Valid, Split::Probe]
            .map(|s| [loss("code", s, 0.0), loss("math", s, 1.0)])
            .concat();
        write_eval(&eval, 2, &losses).unwrap();
        let row = |step: u64| MetricRow {
            step,
            tokens: 64 * step,
            lr: 1e-3,
            loss: Some(base + 1.0),
            split: None,
            domain: None,
            eval_loss: None,
        };
        write_metrics(&metrics, &[row(1), row(2)]).unwrap();
        RunInput {
            stage: stage.into(),
            name: name.into(),
            eval,
            metrics,
            tokens: 128,
        }
    }

    #[test]
    fn final_losses_span_the_seeds_and_weigh_the_targets_and_stages_join_their_trained_model() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let seed = |seed: u64, runs: Vec<RunInput>| SeedInput { seed, runs };
        let input = ReportInput {
            title: "t".into(),
            arms: vec![
                ArmInput {
                    name: "a".into(),
                    mixture: None,
                    seeds: vec![
                        seed(
                            0,
                            vec![run(d, "a0", "train", 2.0), run(d, "a0q", "quantize", 2.2)],
                        ),
                        seed(
                            1,
                            vec![run(d, "a1", "train", 2.4), run(d, "a1q", "quantize", 2.6)],
                        ),
                    ],
                },
                ArmInput {
                    name: "b".into(),
                    mixture: None,
                    seeds: vec![seed(0, vec![run(d, "b0", "train", 3.0)])],
                },
            ],
            utilities: None,
            targets: vec![("code".into(), 3.0), ("math".into(), 1.0)],
        };
        let t = tables(&input).unwrap();
        let find = |arm: &str, split: Split, domain: &str| {
            t.final_losses
                .iter()
                .find(|l| l.arm == arm && l.split == split && l.domain == domain)
                .unwrap_or_else(|| panic!("{arm} {split} {domain}: {:?}", t.final_losses))
                .clone()
        };
        // Arm a's final models are the quantized runs (2.2 and 2.6 on code).
        let code = find("a", Split::Probe, "code");
        assert!(
            (code.mean - 2.4).abs() < 1e-12 && (code.min, code.max, code.seeds) == (2.2, 2.6, 2)
        );
        // mean over code and math: base + 0.5; targets: base + 1/4.
        assert!((find("a", Split::Valid, "mean").mean - 2.9).abs() < 1e-12);
        assert!((find("b", Split::Probe, "targets").mean - 3.25).abs() < 1e-12);
        assert_eq!(find("b", Split::Probe, "targets").seeds, 1);
        // The quantize stage of a is 0.2 above its trained model: 2.7 → 2.9 mean valid loss.
        let q = t
            .stage_losses
            .iter()
            .find(|s| s.arm == "a" && s.stage == "quantize")
            .unwrap();
        let change = (q.change_pct - 0.2 / 2.7 * 100.0).abs();
        assert!((q.mean - 2.9).abs() < 1e-12 && change < 1e-9, "{q:?}");
        // Curves come from the trained runs only: training loss 3.2 (mean of 3.0 and 3.4).
        let a_curve: Vec<(u64, f64)> = t
            .curves
            .iter()
            .filter(|p| p.arm == "a")
            .map(|p| (p.step, p.loss))
            .collect();
        assert_eq!(a_curve.len(), 2);
        assert!(
            a_curve.iter().all(|&(_, l)| (l - 3.2).abs() < 1e-12),
            "{a_curve:?}"
        );
    }

    /// The targets' curve weighs the targets' domains, averages the seeds, and leaves out an
    /// evaluation that lacks a target's domain.
    #[test]
    fn the_targets_curve_weighs_their_domains_and_averages_the_seeds() {
        let dir = tempfile::tempdir().unwrap();
        let evaluated = |name: &str, base: f64, math_at_2: bool| {
            let mut input = run(dir.path(), name, "train", base);
            let row = |step: u64, domain: &str, loss: f64| MetricRow {
                step,
                tokens: 64 * step,
                lr: 1e-3,
                loss: None,
                split: Some(Split::Valid),
                domain: Some(domain.into()),
                eval_loss: Some(loss),
            };
            let mut rows = vec![row(1, "code", base), row(1, "math", base + 4.0)];
            rows.push(row(2, "code", base - 1.0));
            if math_at_2 {
                rows.push(row(2, "math", base + 3.0));
            }
            input.metrics = dir.path().join(format!("{name}.evals"));
            write_metrics(&input.metrics, &rows).unwrap();
            input
        };
        let input = ReportInput {
            title: "t".into(),
            arms: vec![ArmInput {
                name: "a".into(),
                mixture: None,
                seeds: vec![
                    SeedInput {
                        seed: 0,
                        runs: vec![evaluated("s0", 2.0, true)],
                    },
                    SeedInput {
                        seed: 1,
                        runs: vec![evaluated("s1", 4.0, false)],
                    },
                ],
            }],
            utilities: None,
            targets: vec![("code".into(), 3.0), ("math".into(), 1.0)],
        };
        let curve: Vec<(u64, f64)> = target_curves(&input)
            .unwrap()
            .into_iter()
            .map(|p| (p.step, p.loss))
            .collect();
        // Step 1: seeds 3.0 and 5.0 (base + 1/4 of 4.0); step 2: seed 0 only, (3·1 + 5)/4 = 2.0.
        assert_eq!(curve.len(), 2, "{curve:?}");
        assert!((curve[0].1 - 4.0).abs() < 1e-12, "{curve:?}");
        assert!((curve[1].1 - 2.0).abs() < 1e-12, "{curve:?}");
    }

    #[test]
    fn a_file_of_another_schema_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut good = run(dir.path(), "a", "train", 2.0);
        good.eval = good.metrics.clone();
        let input = ReportInput {
            title: "t".into(),
            arms: vec![ArmInput {
                name: "a".into(),
                mixture: None,
                seeds: vec![SeedInput {
                    seed: 0,
                    runs: vec![good],
                }],
            }],
            utilities: None,
            targets: Vec::new(),
        };
        let err = tables(&input).unwrap_err().to_string();
        assert!(
            err.contains("a.metrics") && err.contains("eval.parquet"),
            "{err}"
        );
    }
}
