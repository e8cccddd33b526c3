//! Linear and log-linear least squares: `loss ≈ b + w·r` and `ln loss ≈ b + w·r`.
//!
//! Mixture weights sum to 1, so an intercept plus one coefficient per domain is collinear; a tiny
//! ridge penalty on the coefficients (not the intercept) picks the minimum-norm-like solution, as
//! scikit-learn's `lstsq` does in the RegMix notebook. The d×d system is solved by a hand-written
//! Cholesky factorisation: ndarray's solvers need LAPACK (`ndarray-linalg`), which would need a
//! system BLAS for a 17×17 system.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Ridge strength relative to the mean diagonal of XᵀX: small enough not to bias the fit measurably.
const RELATIVE_RIDGE: f64 = 1e-8;

/// A fitted affine model `b + w·x`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affine {
    /// Intercept `b`.
    pub intercept: f64,
    /// One coefficient per feature.
    pub coefficients: Vec<f64>,
}

impl Affine {
    /// Least squares fit of `y ≈ b + w·x` over the rows of `x`.
    ///
    /// # Errors
    /// [`Error::Fit`] if the regularised normal equations are not positive definite (all-constant input).
    pub fn fit(x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<Affine> {
        let n = x.nrows() as f64;
        let x_mean = x
            .mean_axis(Axis(0))
            .ok_or_else(|| Error::Fit("no rows".into()))?;
        let y_mean = y.sum() / n;
        let xc = &x - &x_mean;
        let yc = &y - y_mean;
        let mut gram = xc.t().dot(&xc);
        let d = gram.nrows();
        let ridge = RELATIVE_RIDGE * (gram.diag().sum() / d as f64).max(1e-12);
        gram.diag_mut().mapv_inplace(|v| v + ridge);
        let rhs = xc.t().dot(&yc);
        let w = cholesky_solve(gram, rhs)?;
        let intercept = y_mean - x_mean.dot(&w);
        Ok(Affine {
            intercept,
            coefficients: w.to_vec(),
        })
    }

    /// `b + w·x`.
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.intercept
            + self
                .coefficients
                .iter()
                .zip(x)
                .map(|(w, v)| w * v)
                .sum::<f64>()
    }
}

/// Solves `a·x = b` for symmetric positive-definite `a`.
fn cholesky_solve(a: Array2<f64>, b: Array1<f64>) -> Result<Array1<f64>> {
    let n = a.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[[i, k]] * l[[j, k]]).sum();
            if i == j {
                let v = a[[i, i]] - s;
                if v <= 0.0 {
                    return Err(Error::Fit(
                        "normal equations are not positive definite".into(),
                    ));
                }
                l[[i, j]] = v.sqrt();
            } else {
                l[[i, j]] = (a[[i, j]] - s) / l[[j, j]];
            }
        }
    }
    let mut z = Array1::<f64>::zeros(n);
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[[i, k]] * z[k]).sum();
        z[i] = (b[i] - s) / l[[i, i]];
    }
    let mut x = Array1::<f64>::zeros(n);
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[[k, i]] * x[k]).sum();
        x[i] = (z[i] - s) / l[[i, i]];
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn recovers_an_exact_affine_function() {
        let x = array![[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [1.0, 3.0], [0.5, 0.5]];
        let y = x.map_axis(Axis(1), |r| 1.5 + 2.0 * r[0] - 0.5 * r[1]);
        let fit = Affine::fit(x.view(), y.view()).unwrap();
        assert!((fit.intercept - 1.5).abs() < 1e-6, "{fit:?}");
        assert!(
            (fit.coefficients[0] - 2.0).abs() < 1e-6 && (fit.coefficients[1] + 0.5).abs() < 1e-6
        );
    }

    #[test]
    fn collinear_simplex_weights_still_fit() {
        // Rows sum to one: intercept and coefficients are not identifiable, predictions still are.
        let x = array![[0.2, 0.8], [0.5, 0.5], [0.9, 0.1], [0.4, 0.6]];
        let y = x.map_axis(Axis(1), |r| 3.0 * r[0] + 1.0 * r[1]);
        let fit = Affine::fit(x.view(), y.view()).unwrap();
        for (row, want) in x.rows().into_iter().zip(&y) {
            assert!((fit.predict(row.as_slice().unwrap()) - want).abs() < 1e-6);
        }
    }
}
