//! A table of runs: one row per proxy run, its mixture weights over domains and its measured loss.

use ndarray::{Array1, Array2};

use crate::error::{Error, Result};

/// Tolerance on the sum of a row's mixture weights.
pub const WEIGHT_SUM_TOLERANCE: f64 = 1e-3;

/// Mixture weights (`[runs, domains]`) and one target loss per run, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTable {
    /// Domain names, one per weight column.
    pub domains: Vec<String>,
    /// Run ids, one per row (for error messages and provenance).
    pub run_ids: Vec<String>,
    /// Weights, `[runs, domains]`; each row sums to 1 within [`WEIGHT_SUM_TOLERANCE`].
    pub weights: Array2<f64>,
    /// Target losses, `[runs]`, all finite.
    pub losses: Array1<f64>,
}

impl RunTable {
    /// Builds and validates a table.
    ///
    /// # Errors
    /// [`Error::Table`] naming the run and column of a negative or non-finite weight, a row whose
    /// weights do not sum to 1 (±1e-3), or a NaN/infinite loss; [`Error::Invalid`] for mismatched sizes.
    ///
    /// # Example
    /// ```
    /// use mixlab_mixer::runs::RunTable;
    /// let t = RunTable::new(
    ///     vec!["a".into(), "b".into()],
    ///     vec!["r1".into(), "r2".into()],
    ///     vec![vec![0.5, 0.5], vec![0.2, 0.8]],
    ///     vec![3.0, 2.5],
    ///     "loss",
    /// )?;
    /// assert_eq!(t.weights.nrows(), 2);
    /// let bad = RunTable::new(vec!["a".into()], vec!["r1".into()], vec![vec![0.7]], vec![1.0], "loss");
    /// assert!(bad.unwrap_err().to_string().contains("r1"));
    /// # Ok::<(), mixlab_mixer::Error>(())
    /// ```
    pub fn new(
        domains: Vec<String>,
        run_ids: Vec<String>,
        rows: Vec<Vec<f64>>,
        losses: Vec<f64>,
        target: &str,
    ) -> Result<Self> {
        if rows.is_empty() {
            return Err(Error::Invalid("the run table has no rows".into()));
        }
        if rows.len() != losses.len() || rows.len() != run_ids.len() {
            return Err(Error::Invalid(format!(
                "{} weight rows, {} losses and {} run ids: expected equal counts",
                rows.len(),
                losses.len(),
                run_ids.len()
            )));
        }
        let n_domains = domains.len();
        for (id, row) in run_ids.iter().zip(&rows) {
            if row.len() != n_domains {
                return Err(Error::Invalid(format!(
                    "run {id}: {} weights for {n_domains} domains",
                    row.len()
                )));
            }
            for (w, d) in row.iter().zip(&domains) {
                if !w.is_finite() || *w < 0.0 {
                    return Err(Error::Table {
                        row: id.clone(),
                        column: d.clone(),
                        message: format!("weight {w} is not a finite non-negative number"),
                    });
                }
            }
            let sum: f64 = row.iter().sum();
            if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
                return Err(Error::Table {
                    row: id.clone(),
                    column: "(all weights)".into(),
                    message: format!(
                        "weights sum to {sum:.6}; expected 1 ± {WEIGHT_SUM_TOLERANCE}"
                    ),
                });
            }
        }
        for (id, loss) in run_ids.iter().zip(&losses) {
            if !loss.is_finite() {
                return Err(Error::Table {
                    row: id.clone(),
                    column: target.to_owned(),
                    message: format!("loss is {loss}; expected a finite number"),
                });
            }
        }
        let flat: Vec<f64> = rows.into_iter().flatten().collect();
        let weights = Array2::from_shape_vec((losses.len(), n_domains), flat)
            .map_err(|e| Error::Invalid(format!("weights table: {e}")))?;
        Ok(Self {
            domains,
            run_ids,
            weights,
            losses: Array1::from(losses),
        })
    }

    /// Like [`RunTable::new`], but first rescales each row to sum to exactly 1, provided it sums to
    /// 1 within `tolerance`. For tables whose weights were rounded: RegMix's published mixtures have
    /// three decimals over 17 domains, so their rows sum to 1 ± 0.004.
    ///
    /// # Errors
    /// As [`RunTable::new`]; a row off by more than `tolerance` is still an error naming it.
    pub fn new_normalized(
        domains: Vec<String>,
        run_ids: Vec<String>,
        mut rows: Vec<Vec<f64>>,
        losses: Vec<f64>,
        target: &str,
        tolerance: f64,
    ) -> Result<Self> {
        for (id, row) in run_ids.iter().zip(rows.iter_mut()) {
            let sum = check_sum(id, row, tolerance)?;
            row.iter_mut().for_each(|w| *w /= sum);
        }
        Self::new(domains, run_ids, rows, losses, target)
    }

    /// Number of runs.
    pub fn len(&self) -> usize {
        self.losses.len()
    }

    /// Whether the table has no runs (never true for a validated table).
    pub fn is_empty(&self) -> bool {
        self.losses.is_empty()
    }

    /// The sub-table of the given rows (for cross-validation folds).
    pub fn select(&self, rows: &[usize]) -> RunTable {
        RunTable {
            domains: self.domains.clone(),
            run_ids: rows.iter().map(|&r| self.run_ids[r].clone()).collect(),
            weights: self.weights.select(ndarray::Axis(0), rows),
            losses: self.losses.select(ndarray::Axis(0), rows),
        }
    }
}

/// The row's sum, or an error naming the run when it is not 1 within `tolerance`.
fn check_sum(id: &str, row: &[f64], tolerance: f64) -> Result<f64> {
    let sum: f64 = row.iter().sum();
    if (sum - 1.0).abs() > tolerance {
        return Err(Error::Table {
            row: id.to_owned(),
            column: "(all weights)".into(),
            message: format!("weights sum to {sum:.6}; expected 1 ± {tolerance}"),
        });
    }
    Ok(sum)
}
