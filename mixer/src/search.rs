//! Searching the simplex for the mixture with the best predicted loss (RegMix §3.3).
//!
//! Samples come from a Dirichlet centred on a prior (usually the natural token distribution), are
//! projected onto the configured bounds, scored by a fitted model, and the `top_k` best are averaged.
//! Sampling is split into fixed chunks, each with its own seeded generator, so the result is the same
//! for any number of threads.

use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::bounds::Bounds;
use crate::dirichlet::Dirichlet;
use crate::error::{Error, Result};

/// Samples per independently seeded chunk.
const CHUNK: usize = 4096;

/// Settings of [`search`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchParams {
    /// Number of Dirichlet samples. Default: 1,000,000 (RegMix used 100,000).
    pub samples: usize,
    /// Number of best samples averaged. Default: 128 (RegMix).
    pub top_k: usize,
    /// Dirichlet concentration = `strength · prior`. Default: 1.0 (RegMix).
    pub strength: f64,
    /// Seed of the sampler.
    pub seed: u64,
}

impl Default for SearchParams {
    fn default() -> Self {
        Self {
            samples: 1_000_000,
            top_k: 128,
            strength: 1.0,
            seed: 42,
        }
    }
}

/// The result of a search: the averaged mixture and the predicted losses behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    /// The recommended mixture (mean of the top-k samples, projected onto the bounds).
    pub weights: Vec<f64>,
    /// Mean predicted loss of the top-k samples.
    pub top_k_mean_loss: f64,
    /// Best predicted loss among all samples.
    pub best_loss: f64,
}

/// Samples the simplex around `prior`, scores the samples with `predict` (a batch `[samples, domains]`
/// at a time) and averages the best.
///
/// # Errors
/// [`Error::Invalid`] for a prior that is not a distribution, `top_k` of 0 or above `samples`.
///
/// # Example
/// ```
/// use mixlab_mixer::bounds::Bounds;
/// use mixlab_mixer::search::{search, SearchParams};
/// // Loss falls with the weight of domain 0: the search should put most weight there.
/// let params = SearchParams { samples: 20_000, top_k: 16, ..SearchParams::default() };
/// let loss = |w: ndarray::ArrayView2<f64>| w.rows().into_iter().map(|r| 3.0 - r[0]).collect();
/// let result = search(&[0.3, 0.3, 0.4], &Bounds::unbounded(3), &params, loss)?;
/// assert!(result.weights[0] > 0.8);
/// assert!((result.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
/// # Ok::<(), mixlab_mixer::Error>(())
/// ```
pub fn search(
    prior: &[f64],
    bounds: &Bounds,
    params: &SearchParams,
    predict: impl Fn(ArrayView2<f64>) -> Vec<f64> + Sync,
) -> Result<SearchResult> {
    let sum: f64 = prior.iter().sum();
    if prior.iter().any(|p| !p.is_finite() || *p <= 0.0) || (sum - 1.0).abs() > 1e-6 {
        return Err(Error::Invalid(format!(
            "the prior must be positive and sum to 1 (sums to {sum})"
        )));
    }
    if params.top_k == 0 || params.top_k > params.samples {
        return Err(Error::Invalid(format!(
            "top_k = {} must be in 1..={}",
            params.top_k, params.samples
        )));
    }
    let d = prior.len();
    let dirichlet = Dirichlet::new(prior.iter().map(|p| p * params.strength).collect())?;
    let n_chunks = params.samples.div_ceil(CHUNK);
    let best_per_chunk: Vec<Vec<(f64, Vec<f64>)>> = (0..n_chunks)
        .into_par_iter()
        .map(|chunk| {
            let mut rng = ChaCha8Rng::seed_from_u64(
                params.seed ^ (chunk as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let count = CHUNK.min(params.samples - chunk * CHUNK);
            let mut samples = Array2::<f64>::zeros((count, d));
            for mut row in samples.rows_mut() {
                let w = dirichlet.sample(&mut rng);
                let w = if bounds.is_unbounded() {
                    w
                } else {
                    bounds.project(&w)
                };
                row.iter_mut().zip(w).for_each(|(cell, v)| *cell = v);
            }
            let losses = predict(samples.view());
            let mut order: Vec<usize> = (0..count).collect();
            let k = params.top_k.min(count);
            order.select_nth_unstable_by(k - 1, |&a, &b| {
                losses[a].total_cmp(&losses[b]).then(a.cmp(&b))
            });
            order.truncate(k);
            order
                .into_iter()
                .map(|i| (losses[i], samples.row(i).to_vec()))
                .collect()
        })
        .collect();
    let mut best: Vec<(f64, Vec<f64>)> = best_per_chunk.into_iter().flatten().collect();
    best.sort_by(|a, b| a.0.total_cmp(&b.0));
    best.truncate(params.top_k);
    let k = best.len() as f64;
    let mut mean = vec![0.0; d];
    for (_, w) in &best {
        mean.iter_mut().zip(w).for_each(|(m, v)| *m += v / k);
    }
    Ok(SearchResult {
        weights: bounds.project(&mean),
        top_k_mean_loss: best.iter().map(|(l, _)| l).sum::<f64>() / k,
        best_loss: best.first().map_or(f64::NAN, |b| b.0),
    })
}

/// A search prior from raw non-negative masses (token counts, mean weights, a user's file):
/// normalized, with every domain given at least 1e-6 so the Dirichlet is defined.
///
/// # Errors
/// [`Error::Invalid`] when the masses are not finite and non-negative with a positive sum.
///
/// # Example
/// ```
/// let p = mixlab_mixer::search::prior_from_masses(&[3.0, 1.0, 0.0])?;
/// assert!((p[0] - 0.75).abs() < 1e-5 && p[2] > 0.0);
/// # Ok::<(), mixlab_mixer::Error>(())
/// ```
pub fn prior_from_masses(masses: &[f64]) -> Result<Vec<f64>> {
    let total: f64 = masses.iter().sum();
    if masses.iter().any(|m| !(m.is_finite() && *m >= 0.0)) || total <= 0.0 || !total.is_finite() {
        return Err(Error::Invalid(format!(
            "the prior gives no positive weight: {masses:?}"
        )));
    }
    let floor = 1e-6;
    let floored: Vec<f64> = masses.iter().map(|w| (w / total).max(floor)).collect();
    let sum: f64 = floored.iter().sum();
    Ok(floored.into_iter().map(|w| w / sum).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_is_deterministic_and_respects_bounds() {
        let bounds = Bounds::new(vec![0.0, 0.1, 0.0], vec![0.5, 1.0, 1.0]).unwrap();
        let params = SearchParams {
            samples: 10_000,
            top_k: 32,
            ..SearchParams::default()
        };
        let predict = |w: ArrayView2<f64>| {
            w.rows()
                .into_iter()
                .map(|r| 2.0 - r[0] + 0.1 * r[1])
                .collect()
        };
        let a = search(&[0.2, 0.3, 0.5], &bounds, &params, predict).unwrap();
        let b = search(&[0.2, 0.3, 0.5], &bounds, &params, predict).unwrap();
        assert_eq!(a, b);
        assert!(
            a.weights[0] <= 0.5 + 1e-9 && a.weights[1] >= 0.1 - 1e-9,
            "{:?}",
            a.weights
        );
        assert!(
            a.weights[0] > 0.45,
            "the search should push domain 0 to its bound: {:?}",
            a.weights
        );
    }
}
