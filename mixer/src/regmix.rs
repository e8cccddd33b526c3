//! RegMix (Liu et al. 2024) end to end: fit a regression model on a run table, search the simplex
//! with it, and report how well the model predicts held-out runs.

use crate::bounds::Bounds;
use crate::error::Result;
use crate::metrics::FitMetrics;
use crate::regress::{CV_FOLDS, ModelKind, cross_validate, fit};
use crate::runs::RunTable;
use crate::search::{SearchParams, SearchResult, search};

/// What [`recommend`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The recommended mixture, in the table's domain order.
    pub weights: Vec<f64>,
    /// The model's predicted loss for it.
    pub predicted_loss: f64,
    /// Cross-validated fit metrics of the model ([`CV_FOLDS`] folds).
    pub cv: FitMetrics,
    /// The search's top-k and best predicted losses.
    pub search: SearchResult,
}

/// Fits `kind` on `table`, cross-validates it (seeded by `params.seed`) and searches the simplex
/// around `prior` within `bounds` for the mixture of lowest predicted loss.
///
/// # Errors
/// Fit errors, too few runs for cross-validation, and invalid search settings.
///
/// # Example
/// ```
/// use mixlab_mixer::bounds::Bounds;
/// use mixlab_mixer::regmix::recommend;
/// use mixlab_mixer::regress::ModelKind;
/// use mixlab_mixer::runs::RunTable;
/// use mixlab_mixer::search::SearchParams;
/// let rows: Vec<Vec<f64>> = (0..10).map(|i| vec![i as f64 / 10.0, 1.0 - i as f64 / 10.0]).collect();
/// let losses = rows.iter().map(|r| 3.0 - r[0]).collect();
/// let ids = (0..10).map(|i| i.to_string()).collect();
/// let table = RunTable::new(vec!["a".into(), "b".into()], ids, rows, losses, "loss")?;
/// let params = SearchParams { samples: 5_000, top_k: 8, ..SearchParams::default() };
/// let r = recommend(&table, ModelKind::Linear, &[0.5, 0.5], &Bounds::unbounded(2), &params)?;
/// assert!(r.weights[0] > 0.9 && r.cv.spearman > 0.99);
/// # Ok::<(), mixlab_mixer::Error>(())
/// ```
pub fn recommend(
    table: &RunTable,
    kind: ModelKind,
    prior: &[f64],
    bounds: &Bounds,
    params: &SearchParams,
) -> Result<Recommendation> {
    let cv = cross_validate(kind, table, CV_FOLDS, params.seed)?;
    let model = fit(kind, table)?;
    let search = search(prior, bounds, params, |w| model.predict_rows(w))?;
    Ok(Recommendation {
        predicted_loss: model.predict(&search.weights),
        weights: search.weights.clone(),
        cv,
        search,
    })
}
