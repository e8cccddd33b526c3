//! The Data Mixing Law (Ye et al. 2024, eq. 1): `L(r) = c + k·exp(Σ_j t_j r_j)`.
//!
//! Fitted by L-BFGS (argmin) on a Huber loss of the residuals, from several starting points; the
//! parameters are `[c, ln k, t_1..t_d]` so `k` stays positive. Each start fixes `c` and solves
//! `ln(L - c) = ln k + t·r` in closed form, so L-BFGS begins near a good basin.

use argmin::core::{CostFunction, Executor, Gradient};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use ndarray::{Array1, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use super::linear::Affine;
use crate::error::{Error, Result};

/// Huber threshold in loss units: residuals beyond it count linearly, so a few diverged runs do not
/// dominate the fit (Data Mixing Laws, §3 fitting details, use Huber for the same reason).
const HUBER_DELTA: f64 = 0.02;

/// L-BFGS iterations per start.
const MAX_ITERS: u64 = 300;

/// Fractions of `min(loss)` tried as the starting irreducible loss `c`.
const C_STARTS: [f64; 4] = [0.0, 0.5, 0.8, 0.95];

/// A fitted mixing law.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixingLaw {
    /// Irreducible loss `c`.
    pub c: f64,
    /// `ln k`.
    pub ln_k: f64,
    /// One exponent coefficient per domain.
    pub t: Vec<f64>,
}

impl MixingLaw {
    /// `c + k·exp(t·r)`.
    pub fn predict(&self, r: &[f64]) -> f64 {
        self.c + (self.ln_k + self.t.iter().zip(r).map(|(t, v)| t * v).sum::<f64>()).exp()
    }

    /// Fits the law to rows of mixture weights and their losses.
    ///
    /// # Errors
    /// [`Error::Fit`] when no start converges to a finite objective.
    pub fn fit<'a>(x: ArrayView2<'a, f64>, y: ArrayView1<'a, f64>) -> Result<MixingLaw> {
        let y_min = y.iter().copied().fold(f64::INFINITY, f64::min);
        let mut best: Option<(f64, Array1<f64>)> = None;
        for fraction in C_STARTS {
            let c0 = fraction * y_min;
            let shifted = y.mapv(|v| (v - c0).max(1e-9).ln());
            let Ok(start) = Affine::fit(x, shifted.view()) else {
                continue;
            };
            let mut init = vec![c0, start.intercept];
            init.extend(start.coefficients);
            let problem = HuberObjective { x, y };
            let Ok(line) = MoreThuenteLineSearch::new().with_c(1e-4, 0.9) else {
                continue;
            };
            let Ok(solver) = LBFGS::new(line, 10).with_tolerance_cost(1e-14) else {
                continue;
            };
            let run = Executor::new(problem, solver)
                .configure(|s| s.param(Array1::from(init)).max_iters(MAX_ITERS))
                .timer(false)
                .run();
            if let Ok(mut result) = run {
                let cost = result.state().get_best_cost();
                if let Some(param) = result.state.take_best_param()
                    && cost.is_finite()
                    && best.as_ref().is_none_or(|(b, _)| cost < *b)
                {
                    best = Some((cost, param));
                }
            }
        }
        let (_, p) = best
            .ok_or_else(|| Error::Fit("the mixing law did not converge from any start".into()))?;
        Ok(MixingLaw {
            c: p[0],
            ln_k: p[1],
            t: p.iter().skip(2).copied().collect(),
        })
    }
}

struct HuberObjective<'a> {
    x: ArrayView2<'a, f64>,
    y: ArrayView1<'a, f64>,
}

impl HuberObjective<'_> {
    /// Mean Huber loss and its gradient with respect to `[c, ln k, t..]`.
    fn evaluate(&self, p: &Array1<f64>) -> (f64, Array1<f64>) {
        let (c, ln_k) = (p[0], p[1]);
        let t = p.slice(ndarray::s![2..]);
        let mut cost = 0.0;
        let mut grad = Array1::<f64>::zeros(p.len());
        let n = self.y.len() as f64;
        for (row, &y) in self.x.rows().into_iter().zip(self.y.iter()) {
            let e = (ln_k + row.dot(&t)).min(50.0).exp();
            let r = c + e - y;
            let (h, dh) = if r.abs() <= HUBER_DELTA {
                (0.5 * r * r, r)
            } else {
                (
                    HUBER_DELTA * (r.abs() - 0.5 * HUBER_DELTA),
                    HUBER_DELTA * r.signum(),
                )
            };
            cost += h / n;
            grad[0] += dh / n;
            grad[1] += dh * e / n;
            for (j, v) in row.iter().enumerate() {
                grad[2 + j] += dh * e * v / n;
            }
        }
        (cost, grad)
    }
}

impl CostFunction for HuberObjective<'_> {
    type Param = Array1<f64>;
    type Output = f64;
    fn cost(&self, p: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.evaluate(p).0)
    }
}

impl Gradient for HuberObjective<'_> {
    type Param = Array1<f64>;
    type Gradient = Array1<f64>;
    fn gradient(&self, p: &Self::Param) -> std::result::Result<Array1<f64>, argmin::core::Error> {
        Ok(self.evaluate(p).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};

    #[test]
    fn recovers_a_known_law() {
        let truth = MixingLaw {
            c: 1.5,
            ln_k: 0.7,
            t: vec![-1.2, 0.4, 0.9],
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let rows: Vec<f64> = (0..60)
            .flat_map(|_| {
                let v: Vec<f64> = (0..3).map(|_| rng.random::<f64>()).collect();
                let s: f64 = v.iter().sum();
                v.into_iter().map(move |x| x / s)
            })
            .collect();
        let x = Array2::from_shape_vec((60, 3), rows).unwrap();
        let y = Array1::from_iter(
            x.rows()
                .into_iter()
                .map(|r| truth.predict(r.as_slice().unwrap())),
        );
        let fit = MixingLaw::fit(x.view(), y.view()).unwrap();
        let max_err = x
            .rows()
            .into_iter()
            .zip(&y)
            .map(|(r, want)| (fit.predict(r.as_slice().unwrap()) - want).abs())
            .fold(0.0, f64::max);
        assert!(
            max_err < 1e-3,
            "max prediction error {max_err}, fit {fit:?}"
        );
    }
}
