//! Per-domain bounds on mixture weights and the projection onto them.

use serde::{Deserialize, Serialize};

use crate::config::MixConfig;
use crate::error::{Error, Result};
use crate::names::position;

/// Lower and upper bounds per domain; a mixture must also sum to 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    lower: Vec<f64>,
    upper: Vec<f64>,
}

impl Bounds {
    /// Bounds `[0, 1]` for each of `n` domains.
    pub fn unbounded(n: usize) -> Self {
        Self {
            lower: vec![0.0; n],
            upper: vec![1.0; n],
        }
    }

    /// Bounds from per-domain limits.
    ///
    /// # Errors
    /// [`Error::Invalid`] when a lower bound exceeds its upper bound, or the bounds admit no mixture
    /// (Σ lower > 1 or Σ upper < 1).
    pub fn new(lower: Vec<f64>, upper: Vec<f64>) -> Result<Self> {
        if lower.len() != upper.len() {
            return Err(Error::Invalid(
                "lower and upper bounds differ in length".into(),
            ));
        }
        let valid = |i: usize| {
            lower[i].is_finite() && upper[i].is_finite() && 0.0 <= lower[i] && lower[i] <= upper[i]
        };
        if let Some(i) = (0..lower.len()).find(|&i| !valid(i)) {
            return Err(Error::Invalid(format!(
                "domain {i}: bounds [{}, {}] are empty or negative",
                lower[i], upper[i]
            )));
        }
        let (lo, hi): (f64, f64) = (lower.iter().sum(), upper.iter().sum());
        if lo > 1.0 + 1e-12 || hi < 1.0 - 1e-12 {
            return Err(Error::Invalid(format!(
                "no mixture fits the bounds: lower bounds sum to {lo:.4} and upper bounds to {hi:.4}; need ≤ 1 ≤"
            )));
        }
        Ok(Self { lower, upper })
    }

    /// The bounds a mixing method applies: `[mix].bounds` by domain name, tightened by per-domain
    /// upper `caps` (from [`crate::baselines::epoch_caps`]) where given.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bound on an unknown domain (with a suggestion), or bounds and caps
    /// that admit no mixture.
    ///
    /// # Example
    /// ```
    /// use mixlab_mixer::bounds::Bounds;
    /// use mixlab_mixer::config::MixConfig;
    /// let mut mix = MixConfig::default();
    /// mix.bounds.insert("code".into(), (0.1, 0.5));
    /// let b = Bounds::from_config(&["code".into(), "prose".into()], &mix, Some(&[1.0, 0.6]))?;
    /// let w = b.project(&[0.0, 1.0]);
    /// assert!((w[0] - 0.4).abs() < 1e-9 && (w[1] - 0.6).abs() < 1e-9);
    /// # Ok::<(), mixlab_mixer::Error>(())
    /// ```
    pub fn from_config(domains: &[String], mix: &MixConfig, caps: Option<&[f64]>) -> Result<Self> {
        let names: Vec<&str> = domains.iter().map(String::as_str).collect();
        let mut lower = vec![0.0; domains.len()];
        let mut upper = vec![1.0; domains.len()];
        for (name, &(lo, hi)) in &mix.bounds {
            let i = position(name, &names, "[mix].bounds")?;
            (lower[i], upper[i]) = (lo, hi);
        }
        if let Some(caps) = caps {
            for (u, (cap, lo)) in upper.iter_mut().zip(caps.iter().zip(&lower)) {
                *u = u.min(*cap).max(*lo);
            }
        }
        Self::new(lower, upper)
    }

    /// The lower bound of each domain.
    pub fn lower(&self) -> &[f64] {
        &self.lower
    }

    /// The upper bound of each domain (epoch caps included).
    pub fn upper(&self) -> &[f64] {
        &self.upper
    }

    /// Whether these are the trivial bounds `[0, 1]` for every domain (then any mixture fits).
    pub fn is_unbounded(&self) -> bool {
        self.lower.iter().all(|l| *l <= 0.0) && self.upper.iter().all(|u| *u >= 1.0)
    }

    /// The Euclidean projection of `w` onto `{x : Σx = 1, lower ≤ x ≤ upper}`:
    /// `x_i = clamp(w_i − τ, lower_i, upper_i)` with τ found by bisection.
    ///
    /// # Example
    /// ```
    /// use mixlab_mixer::bounds::Bounds;
    /// let b = Bounds::new(vec![0.0, 0.0], vec![0.6, 1.0])?;
    /// let x = b.project(&[0.9, 0.1]);
    /// assert!((x[0] - 0.6).abs() < 1e-9 && (x[1] - 0.4).abs() < 1e-9);
    /// # Ok::<(), mixlab_mixer::Error>(())
    /// ```
    pub fn project(&self, w: &[f64]) -> Vec<f64> {
        let total = |tau: f64| -> f64 {
            w.iter()
                .zip(&self.lower)
                .zip(&self.upper)
                .map(|((v, lo), hi)| (v - tau).clamp(*lo, *hi))
                .sum()
        };
        let (mut lo, mut hi) = (
            w.iter().copied().fold(f64::INFINITY, f64::min) - 1.0,
            w.iter().copied().fold(f64::NEG_INFINITY, f64::max) + 1.0,
        );
        // 64 halvings shrink the bracket below f64 resolution.
        for _ in 0..64 {
            let mid = 0.5 * (lo + hi);
            if total(mid) > 1.0 { lo = mid } else { hi = mid }
        }
        let tau = 0.5 * (lo + hi);
        let x: Vec<f64> = w
            .iter()
            .zip(&self.lower)
            .zip(&self.upper)
            .map(|((v, lo), hi)| (v - tau).clamp(*lo, *hi))
            .collect();
        // Remove the bisection's last rounding error so the sum is exactly 1 up to float precision.
        let s: f64 = x.iter().sum();
        x.into_iter().map(|v| v / s).collect()
    }
}
