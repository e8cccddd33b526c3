//! Regression mixers: fit `loss = f(mixture weights)` from a table of runs (RegMix, Data Mixing Laws).

pub mod gbm;
pub mod linear;
pub mod mixing_law;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::FitMetrics;
use crate::runs::RunTable;
use gbm::{Gbm, GbmInit, GbmParams};
use linear::Affine;
use mixing_law::MixingLaw;

/// The model families `mixlab regress --model` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Least squares `loss ≈ b + w·r`.
    Linear,
    /// Least squares on the log: `ln loss ≈ b + w·r`, i.e. `loss ≈ k·exp(t·r)` (a mixing law with c = 0).
    Loglinear,
    /// Data Mixing Law `loss ≈ c + k·exp(t·r)`, fitted by L-BFGS on a Huber loss.
    MixingLaw,
    /// Gradient-boosted trees with RegMix's LightGBM settings.
    Gbm,
    /// Gradient-boosted trees started from a linear fit (trees model only the non-linear rest).
    GbmLinear,
}

impl ModelKind {
    /// The name used on the command line and in saved models.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Linear => "linear",
            ModelKind::Loglinear => "loglinear",
            ModelKind::MixingLaw => "mixing-law",
            ModelKind::Gbm => "gbm",
            ModelKind::GbmLinear => "gbm-linear",
        }
    }
}

/// A fitted regression model over mixture weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "kebab-case")]
pub enum FittedModel {
    /// See [`ModelKind::Linear`].
    Linear(Affine),
    /// See [`ModelKind::Loglinear`]; the affine part predicts `ln loss`.
    Loglinear(Affine),
    /// See [`ModelKind::MixingLaw`].
    MixingLaw(MixingLaw),
    /// See [`ModelKind::Gbm`] and [`ModelKind::GbmLinear`].
    Gbm(Gbm),
}

impl FittedModel {
    /// Predicted loss for one mixture.
    pub fn predict(&self, weights: &[f64]) -> f64 {
        match self {
            FittedModel::Linear(a) => a.predict(weights),
            FittedModel::Loglinear(a) => a.predict(weights).exp(),
            FittedModel::MixingLaw(m) => m.predict(weights),
            FittedModel::Gbm(g) => g.predict(weights),
        }
    }

    /// Predicted losses for every row of `weights` (`[rows, domains]`).
    pub fn predict_rows(&self, weights: ndarray::ArrayView2<f64>) -> Vec<f64> {
        match self {
            FittedModel::Gbm(g) => g.predict_rows(weights),
            _ => weights
                .rows()
                .into_iter()
                .map(|r| self.predict(&r.to_vec()))
                .collect(),
        }
    }

    /// Predicted losses for every run of a table.
    pub fn predict_table(&self, table: &RunTable) -> Vec<f64> {
        self.predict_rows(table.weights.view())
    }
}

/// Fits a model of the given kind to a run table.
///
/// # Errors
/// [`Error::Fit`] when the fit fails numerically; [`Error::Invalid`] for a non-positive loss under
/// a log model.
///
/// # Example
/// ```
/// use mixlab_mixer::regress::{fit, ModelKind};
/// use mixlab_mixer::runs::RunTable;
/// let rows = vec![vec![0.1, 0.9], vec![0.5, 0.5], vec![0.9, 0.1], vec![0.3, 0.7]];
/// let losses: Vec<f64> = rows.iter().map(|r| 2.0 + r[0]).collect();
/// let ids = (0..4).map(|i| i.to_string()).collect();
/// let table = RunTable::new(vec!["a".into(), "b".into()], ids, rows, losses, "loss")?;
/// let model = fit(ModelKind::Linear, &table)?;
/// assert!((model.predict(&[0.2, 0.8]) - 2.2).abs() < 1e-6);
/// # Ok::<(), mixlab_mixer::Error>(())
/// ```
pub fn fit(kind: ModelKind, table: &RunTable) -> Result<FittedModel> {
    let (x, y) = (table.weights.view(), table.losses.view());
    Ok(match kind {
        ModelKind::Linear => FittedModel::Linear(Affine::fit(x, y)?),
        ModelKind::Loglinear => {
            if let Some(i) = y.iter().position(|v| *v <= 0.0) {
                return Err(Error::Invalid(format!(
                    "run {}: loss {} is not positive; the loglinear model needs positive losses",
                    table.run_ids[i], y[i]
                )));
            }
            FittedModel::Loglinear(Affine::fit(x, y.mapv(f64::ln).view())?)
        }
        ModelKind::MixingLaw => FittedModel::MixingLaw(MixingLaw::fit(x, y)?),
        ModelKind::Gbm => FittedModel::Gbm(Gbm::fit(x, y, &GbmParams::default())?),
        ModelKind::GbmLinear => FittedModel::Gbm(Gbm::fit(
            x,
            y,
            &GbmParams {
                init: GbmInit::Linear,
                ..GbmParams::default()
            },
        )?),
    })
}

/// Folds of the cross-validation `regress` and `mix` report for every fit.
pub const CV_FOLDS: usize = 5;

/// Out-of-fold metrics of `folds`-fold cross-validation with a seeded shuffle.
///
/// # Errors
/// [`Error::Invalid`] for fewer rows than folds; fit errors of any fold.
pub fn cross_validate(
    kind: ModelKind,
    table: &RunTable,
    folds: usize,
    seed: u64,
) -> Result<FitMetrics> {
    let n = table.len();
    if folds < 2 || n < folds {
        return Err(Error::Invalid(format!(
            "{folds}-fold cross-validation needs at least {folds} runs; have {n}"
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut predicted = vec![0.0; n];
    for k in 0..folds {
        let held: Vec<usize> = order.iter().copied().skip(k).step_by(folds).collect();
        let train: Vec<usize> = order
            .iter()
            .copied()
            .filter(|i| !held.contains(i))
            .collect();
        let model = fit(kind, &table.select(&train))?;
        for &i in &held {
            predicted[i] = model.predict(&table.weights.row(i).to_vec());
        }
    }
    Ok(FitMetrics::of(
        &predicted,
        table.losses.as_slice().unwrap_or(&table.losses.to_vec()),
    ))
}
