//! From per-document utilities to domain utilities: checkpoint weights, token-weighted domain
//! means and their bootstrap standard errors.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Weights `α_t ∝ t` of checkpoints at `steps`, summing to 1: later checkpoints, closer to the
/// trained model, count more.
///
/// # Example
/// ```
/// use mixlab_simulator::aggregate::checkpoint_weights;
/// assert_eq!(checkpoint_weights(&[100, 300]), [0.25, 0.75]);
/// ```
pub fn checkpoint_weights(steps: &[u64]) -> Vec<f64> {
    let total: u64 = steps.iter().sum();
    steps
        .iter()
        .map(|&s| s as f64 / total.max(1) as f64)
        .collect()
}

/// One scored document: its token count and utility.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Tokens scored (the document's weight).
    pub tokens: u64,
    /// Utility.
    pub utility: f64,
}

/// A domain's mean utility and its standard error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Token-weighted mean utility.
    pub mean: f64,
    /// Bootstrap standard error of the mean.
    pub stderr: f64,
}

/// Token-weighted mean of `docs` with the standard deviation of `resamples` bootstrap means
/// (documents drawn with replacement, seeded).
///
/// # Example
/// ```
/// use mixlab_simulator::aggregate::{domain_estimate, Scored};
/// let docs = [Scored { tokens: 1, utility: 1.0 }, Scored { tokens: 3, utility: 3.0 }];
/// let e = domain_estimate(&docs, 200, 0);
/// assert_eq!(e.mean, 2.5);
/// assert!(e.stderr > 0.0 && e.stderr < 1.0);
/// ```
pub fn domain_estimate(docs: &[Scored], resamples: usize, seed: u64) -> Estimate {
    let mean = |pick: &mut dyn FnMut() -> Scored| {
        let (mut weighted, mut tokens) = (0.0, 0.0);
        for _ in 0..docs.len() {
            let d = pick();
            weighted += d.tokens as f64 * d.utility;
            tokens += d.tokens as f64;
        }
        if tokens > 0.0 { weighted / tokens } else { 0.0 }
    };
    let mut i = 0;
    let full = mean(&mut || {
        i += 1;
        docs[i - 1]
    });
    if docs.len() < 2 || resamples < 2 {
        return Estimate {
            mean: full,
            stderr: 0.0,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let boots: Vec<f64> = (0..resamples)
        .map(|_| mean(&mut || docs[rng.random_range(0..docs.len())]))
        .collect();
    let centre = boots.iter().sum::<f64>() / resamples as f64;
    let variance = boots.iter().map(|b| (b - centre).powi(2)).sum::<f64>() / (resamples - 1) as f64;
    Estimate {
        mean: full,
        stderr: variance.sqrt(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_error_shrinks_like_one_over_root_n_and_is_seeded() {
        let docs = |n: usize| -> Vec<Scored> {
            (0..n)
                .map(|i| Scored {
                    tokens: 10,
                    utility: if i % 2 == 0 { 1.0 } else { -1.0 },
                })
                .collect()
        };
        let (small, large) = (
            domain_estimate(&docs(16), 400, 1),
            domain_estimate(&docs(256), 400, 1),
        );
        assert_eq!(small.mean, 0.0);
        // σ/√n: 1/4 and 1/16.
        assert!((small.stderr - 0.25).abs() < 0.05, "{small:?}");
        assert!((large.stderr - 0.0625).abs() < 0.0125, "{large:?}");
        assert_eq!(domain_estimate(&docs(16), 400, 1), small);
        assert_eq!(domain_estimate(&docs(1), 400, 1).stderr, 0.0);
    }
}
