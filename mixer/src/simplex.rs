//! Minimising a costly function of weights on the probability simplex without gradients: the
//! merger's search for its specialists' weights (each evaluation is a merged model's validation
//! loss).
//!
//! Weights are `softmax(θ)`, so Nelder–Mead (argmin) searches an unconstrained `θ ∈ ℝᵏ`, starting
//! from equal weights with a simplex of unit steps along each axis.

use argmin::core::{CostFunction, Executor};
use argmin::solver::neldermead::NelderMead;
use ndarray::Array1;

use crate::error::{Error, Result};

/// The best weights found and their cost.
#[derive(Debug, Clone, PartialEq)]
pub struct SimplexMinimum {
    /// Non-negative weights summing to 1.
    pub weights: Vec<f64>,
    /// The cost at `weights`.
    pub cost: f64,
    /// Evaluations of the cost function made.
    pub evaluations: usize,
}

/// Minimises `cost` over weights of `k` parts on the simplex with at most `max_iters` Nelder–Mead
/// iterations (each costs one or two evaluations, a shrink `k`). Equal weights are the first point
/// tried, so the result is never worse than them.
///
/// # Errors
/// [`Error::Invalid`] for `k == 0`, [`Error::Fit`] when the optimizer fails or the cost is not a
/// finite number anywhere it looked.
///
/// # Example
/// ```
/// use mixlab_mixer::simplex::minimize_on_simplex;
/// // The closest point of the simplex to (0.2, 0.5, 0.3) is itself.
/// let target = [0.2, 0.5, 0.3];
/// let cost = |w: &[f64]| w.iter().zip(&target).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
/// let best = minimize_on_simplex(3, cost, 200)?;
/// assert!(best.weights.iter().zip(&target).all(|(a, b)| (a - b).abs() < 1e-3));
/// # Ok::<(), mixlab_mixer::error::Error>(())
/// ```
pub fn minimize_on_simplex(
    k: usize,
    cost: impl Fn(&[f64]) -> f64,
    max_iters: u64,
) -> Result<SimplexMinimum> {
    if k == 0 {
        return Err(Error::Invalid("no weights to search".into()));
    }
    let problem = OnSimplex {
        cost,
        evaluations: std::cell::Cell::new(0),
    };
    if k == 1 {
        let weights = vec![1.0];
        let cost = (problem.cost)(&weights);
        return Ok(SimplexMinimum {
            weights,
            cost,
            evaluations: 1,
        });
    }
    let start = Array1::<f64>::zeros(k);
    let mut vertices = vec![start.clone()];
    vertices.extend((0..k).map(|i| {
        let mut v = start.clone();
        v[i] += 1.0;
        v
    }));
    let solver = NelderMead::new(vertices)
        .with_sd_tolerance(1e-6)
        .map_err(|e| Error::Fit(e.to_string()))?;
    let result = Executor::new(&problem, solver)
        .configure(|state| state.max_iters(max_iters))
        .run()
        .map_err(|e| Error::Fit(e.to_string()))?;
    let state = result.state;
    if !state.best_cost.is_finite() {
        return Err(Error::Fit(
            "the cost is not a finite number at any weights tried".into(),
        ));
    }
    let theta = state
        .best_param
        .ok_or_else(|| Error::Fit("Nelder-Mead returned no point".into()))?;
    Ok(SimplexMinimum {
        weights: softmax(&theta),
        cost: state.best_cost,
        evaluations: problem.evaluations.get(),
    })
}

/// `cost ∘ softmax`, counting its evaluations.
struct OnSimplex<F> {
    cost: F,
    evaluations: std::cell::Cell<usize>,
}

impl<F: Fn(&[f64]) -> f64> CostFunction for &OnSimplex<F> {
    type Param = Array1<f64>;
    type Output = f64;

    fn cost(&self, theta: &Array1<f64>) -> std::result::Result<f64, argmin::core::Error> {
        self.evaluations.set(self.evaluations.get() + 1);
        // argmin's Nelder-Mead panics on a cost error, so a NaN counts as the worst cost.
        let value = (self.cost)(&softmax(theta));
        Ok(if value.is_nan() { f64::INFINITY } else { value })
    }
}

fn softmax(theta: &Array1<f64>) -> Vec<f64> {
    let max = theta.fold(f64::NEG_INFINITY, |m, &x| m.max(x));
    let e: Vec<f64> = theta.iter().map(|x| (x - max).exp()).collect();
    let total: f64 = e.iter().sum();
    e.into_iter().map(|x| x / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_corner_and_never_loses_to_equal_weights() {
        // A linear cost is lowest at the corner of its smallest coefficient.
        let c = [3.0, 1.0, 2.0, 5.0];
        let cost = |w: &[f64]| w.iter().zip(&c).map(|(w, c)| w * c).sum::<f64>();
        let best = minimize_on_simplex(4, cost, 300).unwrap();
        assert!(best.weights[1] > 0.95, "{best:?}");
        assert!((best.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(best.cost <= cost(&[0.25; 4]));
        assert!(best.evaluations > 4);
    }

    #[test]
    fn one_part_is_all_weight_and_none_is_an_error() {
        let best = minimize_on_simplex(1, |w| w[0], 10).unwrap();
        assert_eq!(best.weights, [1.0]);
        assert!(minimize_on_simplex(0, |_| 0.0, 10).is_err());
        let failing = minimize_on_simplex(2, |_| f64::NAN, 10);
        assert!(failing.is_err(), "{failing:?}");
    }
}
