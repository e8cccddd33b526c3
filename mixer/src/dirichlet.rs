//! The Dirichlet sampler, shared by the simplex search and RegMix's sampling of proxy-run mixtures.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

use crate::error::{Error, Result};

/// A Dirichlet distribution over the simplex with concentrations `alphas`.
#[derive(Debug, Clone)]
pub struct Dirichlet {
    alphas: Vec<f64>,
    boosted: Vec<Gamma<f64>>,
}

impl Dirichlet {
    /// A Dirichlet with the given concentrations.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty vector or a concentration that is not positive and finite.
    pub fn new(alphas: Vec<f64>) -> Result<Self> {
        if alphas.is_empty() || alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
            return Err(Error::Invalid(format!(
                "Dirichlet concentrations must be positive and finite: {alphas:?}"
            )));
        }
        let boosted = alphas
            .iter()
            .map(|a| {
                Gamma::new(a + 1.0, 1.0)
                    .map_err(|e| Error::Invalid(format!("Dirichlet concentration {a}: {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(Self { alphas, boosted })
    }

    /// One draw, computed in log space so tiny concentrations do not underflow:
    /// `ln G(α) = ln G(α + 1) + ln(U) / α` (Marsaglia and Tsang's boost), then a softmax.
    ///
    /// # Example
    /// ```
    /// use mixlab_mixer::dirichlet::Dirichlet;
    /// use rand::SeedableRng;
    /// let d = Dirichlet::new(vec![0.01, 1.0, 5.0])?;
    /// let w = d.sample(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    /// assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12 && w.iter().all(|v| *v >= 0.0));
    /// # Ok::<(), mixlab_mixer::Error>(())
    /// ```
    pub fn sample(&self, rng: &mut impl Rng) -> Vec<f64> {
        let logs: Vec<f64> = self
            .alphas
            .iter()
            .zip(&self.boosted)
            .map(|(a, g)| {
                let u: f64 = 1.0 - rng.random::<f64>();
                g.sample(rng).ln() + u.ln() / a
            })
            .collect();
        let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = logs.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        exps.into_iter().map(|e| e / total).collect()
    }
}

/// RegMix's sampling temperature on the token prior (§3.1).
const TEMPERATURE: f64 = 0.5;
/// RegMix's range of Dirichlet strengths: 15 log-spaced values between 0.1 and 5.
const STRENGTHS: (f64, f64, usize) = (0.1, 5.0, 15);
/// Weights below this are set to zero (RegMix: 2e-4).
pub const MIN_WEIGHT: f64 = 2e-4;

/// `n` mixtures drawn as RegMix draws the mixtures of its proxy runs: Dirichlet around the token
/// distribution raised to the power 0.5, with a strength picked per sample from 15 log-spaced
/// values between 0.1 and 5, weights below [`MIN_WEIGHT`] set to zero.
///
/// # Errors
/// [`Error::Invalid`] when the domains hold no tokens.
///
/// # Example
/// ```
/// use mixlab_mixer::dirichlet::regmix_proxy_mixtures;
/// let mixtures = regmix_proxy_mixtures(&[1000, 10, 500], 4, 0)?;
/// assert_eq!(mixtures.len(), 4);
/// assert!(mixtures.iter().all(|w| (w.iter().sum::<f64>() - 1.0).abs() < 1e-9));
/// # Ok::<(), mixlab_mixer::Error>(())
/// ```
pub fn regmix_proxy_mixtures(domain_tokens: &[u64], n: usize, seed: u64) -> Result<Vec<Vec<f64>>> {
    let total: f64 = domain_tokens.iter().map(|&t| t as f64).sum();
    if total <= 0.0 {
        return Err(Error::Invalid("the domains hold no training tokens".into()));
    }
    let tempered: Vec<f64> = domain_tokens
        .iter()
        .map(|&t| (t as f64 / total).powf(TEMPERATURE))
        .collect();
    let tempered_total: f64 = tempered.iter().sum();
    let prior: Vec<f64> = tempered
        .iter()
        .map(|p| (p / tempered_total).max(1e-6))
        .collect();
    let (lo, hi, count) = STRENGTHS;
    let samplers = (0..count)
        .map(|i| {
            let strength = (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / (count - 1) as f64).exp();
            Dirichlet::new(prior.iter().map(|p| p * strength).collect())
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let draw = samplers[rng.random_range(0..samplers.len())].sample(&mut rng);
        let kept: Vec<f64> = draw
            .iter()
            .map(|&w| if w < MIN_WEIGHT { 0.0 } else { w })
            .collect();
        let kept_sum: f64 = kept.iter().sum();
        if kept_sum > 0.0 {
            out.push(kept.into_iter().map(|w| w / kept_sum).collect());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_follow_the_concentrations() {
        let prior = [0.6, 0.3, 0.1];
        let d = Dirichlet::new(prior.iter().map(|p| p * 5.0).collect()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let n = 20_000;
        let mut mean = [0.0; 3];
        for _ in 0..n {
            let w = d.sample(&mut rng);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            mean.iter_mut()
                .zip(&w)
                .for_each(|(m, v)| *m += v / n as f64);
        }
        for (m, p) in mean.iter().zip(prior) {
            assert!((m - p).abs() < 0.01, "mean {m} vs prior {p}");
        }
    }

    #[test]
    fn proxy_mixtures_are_deterministic_sparse_and_varied() {
        let a = regmix_proxy_mixtures(&[1000, 10, 500], 50, 3).unwrap();
        assert_eq!(a, regmix_proxy_mixtures(&[1000, 10, 500], 50, 3).unwrap());
        for w in &a {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(w.iter().all(|v| *v == 0.0 || *v >= MIN_WEIGHT));
        }
        assert_ne!(a[0], a[1]);
        assert!(regmix_proxy_mixtures(&[0, 0], 1, 0).is_err());
    }
}
