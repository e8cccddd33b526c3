//! The Scalable Data Mixer's optimizer: domain utilities → mixture weights on the simplex.
//!
//! Utilities are rescaled by their largest magnitude first, so the floor and the temperature mean
//! the same whatever the estimator's units.

use argmin::core::{CostFunction, Executor};
use argmin::solver::brent::BrentRoot;

use crate::bounds::Bounds;
use crate::error::{Error, Result};

/// `w ∝ max(ρ, 0) / Σ max(ρ, 0) + floor`, then projected onto `bounds`: weights in proportion to
/// the positive utilities, every domain keeping at least a share of about `floor`.
///
/// # Errors
/// [`Error::Invalid`] when no utility is positive or one is not finite, or `floor` is negative.
///
/// # Example
/// ```
/// use mixlab_mixer::bounds::Bounds;
/// use mixlab_mixer::utility::proportional;
/// let w = proportional(&[3.0, 1.0, -2.0], 0.0, &Bounds::unbounded(3))?;
/// assert_eq!(w, [0.75, 0.25, 0.0]);
/// # Ok::<(), mixlab_mixer::Error>(())
/// ```
pub fn proportional(utilities: &[f64], floor: f64, bounds: &Bounds) -> Result<Vec<f64>> {
    if !(floor.is_finite() && floor >= 0.0) {
        return Err(Error::Invalid(format!(
            "floor {floor}: expected a finite share ≥ 0"
        )));
    }
    let positive = positive_parts(utilities)?;
    let total: f64 = positive.iter().sum();
    let raw: Vec<f64> = positive.iter().map(|p| p / total + floor).collect();
    let sum: f64 = raw.iter().sum();
    let weights: Vec<f64> = raw.iter().map(|w| w / sum).collect();
    Ok(if bounds.is_unbounded() {
        weights
    } else {
        bounds.project(&weights)
    })
}

/// The weights maximizing `Σ w·ρ̂ + τ·H(w)` over the simplex within `bounds` (per-domain epoch caps
/// go in the upper bounds), `ρ̂ = ρ / max|ρ|`, `H` the entropy: `τ → 0` puts all weight on the best
/// domains the bounds allow, `τ → ∞` tends to uniform. Solved exactly: at the optimum
/// `w_d = clamp(exp((ρ̂_d − μ)/τ − 1), lo_d, hi_d)`, with the multiplier `μ` found by Brent's
/// method so that the weights sum to 1.
///
/// # Errors
/// [`Error::Invalid`] for a temperature that is not positive and finite, non-finite utilities, or
/// no positive utility.
///
/// # Example
/// ```
/// use mixlab_mixer::bounds::Bounds;
/// use mixlab_mixer::utility::utilimax;
/// let w = utilimax(&[2.0, 1.0, -1.0], 0.5, &Bounds::unbounded(3))?;
/// assert!(w[0] > w[1] && w[1] > w[2]);
/// assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
/// # Ok::<(), mixlab_mixer::Error>(())
/// ```
pub fn utilimax(utilities: &[f64], temperature: f64, bounds: &Bounds) -> Result<Vec<f64>> {
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::Invalid(format!(
            "temperature {temperature}: expected a finite number > 0"
        )));
    }
    positive_parts(utilities)?;
    let scale = utilities.iter().fold(0.0f64, |m, u| m.max(u.abs()));
    let scaled: Vec<f64> = utilities.iter().map(|u| u / scale).collect();
    let problem = WeightSum {
        utilities: &scaled,
        temperature,
        bounds,
    };
    // Σw(μ) falls from Σhi to Σlo as μ rises; this bracket holds both ends for |ρ̂| ≤ 1.
    let (low, high) = (-1.0 - 60.0 * temperature, 1.0 + 60.0 * temperature);
    let mu = Executor::new(problem, BrentRoot::new(low, high, 1e-13))
        .configure(|state| state.param(0.0).max_iters(200))
        .run()
        .map_err(|e| Error::Invalid(format!("utilimax: {e}")))?
        .state
        .best_param
        .ok_or_else(|| Error::Invalid("utilimax: no multiplier found".into()))?;
    let w = WeightSum {
        utilities: &scaled,
        temperature,
        bounds,
    }
    .weights(mu);
    let sum: f64 = w.iter().sum();
    Ok(w.iter().map(|x| x / sum).collect())
}

/// `max(ρ, 0)`, refusing non-finite utilities and all-non-positive ones.
fn positive_parts(utilities: &[f64]) -> Result<Vec<f64>> {
    if let Some(i) = utilities.iter().position(|u| !u.is_finite()) {
        return Err(Error::Invalid(format!(
            "utility of domain {i} is {}",
            utilities[i]
        )));
    }
    if !utilities.iter().any(|u| *u > 0.0) {
        return Err(Error::Invalid(
            "no domain has a positive utility: no data is estimated to help the targets; check the targets and the simulation run".into(),
        ));
    }
    Ok(utilities.iter().map(|u| u.max(0.0)).collect())
}

/// `Σ_d w_d(μ) − 1` for the optimality conditions of [`utilimax`].
struct WeightSum<'a> {
    utilities: &'a [f64],
    temperature: f64,
    bounds: &'a Bounds,
}

impl WeightSum<'_> {
    fn weights(&self, mu: f64) -> Vec<f64> {
        self.utilities
            .iter()
            .zip(self.bounds.lower().iter().zip(self.bounds.upper()))
            .map(|(u, (lo, hi))| ((u - mu) / self.temperature - 1.0).exp().clamp(*lo, *hi))
            .collect()
    }
}

impl CostFunction for WeightSum<'_> {
    type Param = f64;
    type Output = f64;

    fn cost(&self, mu: &f64) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.weights(*mu).iter().sum::<f64>() - 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Σ w·ρ̂ + τ·H(w)`.
    fn objective(w: &[f64], u: &[f64], t: f64) -> f64 {
        let scale = u.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        w.iter()
            .zip(u)
            .map(|(w, u)| w * u / scale - if *w > 0.0 { t * w * w.ln() } else { 0.0 })
            .sum()
    }

    #[test]
    fn utilimax_beats_every_other_feasible_mixture_and_respects_caps() {
        let u = [0.9, 0.5, -0.2, 0.1];
        let bounds = Bounds::new(vec![0.05, 0.0, 0.0, 0.0], vec![0.4, 1.0, 1.0, 1.0]).unwrap();
        let w = utilimax(&u, 0.2, &bounds).unwrap();
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(w[0] <= 0.4 + 1e-9, "the cap holds: {w:?}");
        let best = objective(&w, &u, 0.2);
        // Random feasible mixtures (projected onto the bounds) never do better.
        for k in 0..200 {
            let raw: Vec<f64> = (0..4)
                .map(|d| (((k * 7 + d * 13) % 17) as f64 + 0.5) / 17.0)
                .collect();
            let s: f64 = raw.iter().sum();
            let other = bounds.project(&raw.iter().map(|x| x / s).collect::<Vec<_>>());
            assert!(
                objective(&other, &u, 0.2) <= best + 1e-9,
                "{other:?} beats {w:?}"
            );
        }
    }

    #[test]
    fn temperatures_move_between_greedy_and_uniform() {
        let u = [1.0, 0.5, 0.2];
        let cold = utilimax(&u, 0.01, &Bounds::unbounded(3)).unwrap();
        let hot = utilimax(&u, 100.0, &Bounds::unbounded(3)).unwrap();
        assert!(cold[0] > 0.99, "{cold:?}");
        assert!(hot.iter().all(|w| (w - 1.0 / 3.0).abs() < 0.01), "{hot:?}");
    }

    #[test]
    fn infeasible_requests_are_errors_not_fallbacks() {
        let err = proportional(&[-1.0, 0.0], 0.1, &Bounds::unbounded(2))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no domain has a positive utility"), "{err}");
        assert!(utilimax(&[1.0, f64::NAN], 0.1, &Bounds::unbounded(2)).is_err());
        assert!(utilimax(&[1.0, 0.5], 0.0, &Bounds::unbounded(2)).is_err());
        let floored = proportional(&[1.0, 0.0], 0.5, &Bounds::unbounded(2)).unwrap();
        assert!((floored[1] - 0.25).abs() < 1e-12, "{floored:?}");
    }
}
