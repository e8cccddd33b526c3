//! Baseline mixtures computed from domain sizes alone: uniform, natural and UniMax.

use crate::error::{Error, Result};

/// Equal weights over `n` domains.
///
/// # Example
/// ```
/// assert_eq!(mixlab_mixer::baselines::uniform(4), [0.25; 4]);
/// ```
pub fn uniform(n: usize) -> Vec<f64> {
    vec![1.0 / n.max(1) as f64; n]
}

/// Weights proportional to each domain's training tokens (the "natural" distribution).
///
/// # Errors
/// [`Error::Invalid`] when the domains hold no tokens.
///
/// # Example
/// ```
/// assert_eq!(mixlab_mixer::baselines::natural(&[300, 100])?, [0.75, 0.25]);
/// # Ok::<(), mixlab_mixer::Error>(())
/// ```
pub fn natural(domain_tokens: &[u64]) -> Result<Vec<f64>> {
    let total: f64 = domain_tokens.iter().map(|&t| t as f64).sum();
    if total <= 0.0 {
        return Err(Error::Invalid("the domains hold no training tokens".into()));
    }
    Ok(domain_tokens.iter().map(|&t| t as f64 / total).collect())
}

/// UniMax (Chung et al. 2023, Algorithm 1): the budget is spread as evenly as possible, smallest
/// domains first, but no domain is repeated more than `max_epochs` times; what a capped domain cannot
/// take goes to the larger ones.
///
/// # Errors
/// [`Error::Invalid`] when even `max_epochs` of every domain cannot fill `budget_tokens`, or for a
/// non-positive `max_epochs`.
///
/// # Example
/// ```
/// use mixlab_mixer::baselines::unimax;
/// // Budget 1,000 tokens: the 100-token domain is capped at 2 epochs (200), the rest is split.
/// let w = unimax(&[100, 10_000, 10_000], 1_000, 2.0)?;
/// assert_eq!(w, [0.2, 0.4, 0.4]);
/// # Ok::<(), mixlab_mixer::Error>(())
/// ```
pub fn unimax(domain_tokens: &[u64], budget_tokens: u64, max_epochs: f64) -> Result<Vec<f64>> {
    if !(max_epochs.is_finite() && max_epochs > 0.0) || budget_tokens == 0 {
        return Err(Error::Invalid(format!(
            "UniMax needs a positive budget and max_epochs (got {budget_tokens} tokens, {max_epochs} epochs)"
        )));
    }
    let mut order: Vec<usize> = (0..domain_tokens.len()).collect();
    order.sort_by_key(|&d| (domain_tokens[d], d));
    let mut remaining = budget_tokens as f64;
    let mut allotted = vec![0.0; domain_tokens.len()];
    for (done, &d) in order.iter().enumerate() {
        let fair_share = remaining / (order.len() - done) as f64;
        allotted[d] = fair_share.min(max_epochs * domain_tokens[d] as f64);
        remaining -= allotted[d];
    }
    if remaining > 1e-9 * budget_tokens as f64 {
        return Err(Error::Invalid(format!(
            "UniMax: {max_epochs} epochs of every domain give {:.0} tokens, less than the budget of {budget_tokens}; raise [mix].max_epochs or lower the budget",
            budget_tokens as f64 - remaining
        )));
    }
    Ok(allotted
        .into_iter()
        .map(|a| a / budget_tokens as f64)
        .collect())
}

/// The largest weight each domain can take so that a run of `budget_tokens` repeats it at most
/// `max_epochs` times: `max_epochs · tokens_d / budget`, at most 1.
///
/// # Example
/// ```
/// // Budget 1,000 tokens, 4 epochs of a 100-token domain: weight at most 0.4.
/// assert_eq!(mixlab_mixer::baselines::epoch_caps(&[100, 100_000], 1_000, 4.0), [0.4, 1.0]);
/// ```
pub fn epoch_caps(domain_tokens: &[u64], budget_tokens: u64, max_epochs: f64) -> Vec<f64> {
    domain_tokens
        .iter()
        .map(|&t| {
            if budget_tokens == 0 {
                1.0
            } else {
                (max_epochs * t as f64 / budget_tokens as f64).min(1.0)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unimax_is_uniform_without_binding_caps_and_errs_when_infeasible() {
        assert_eq!(unimax(&[1_000, 1_000], 100, 1.0).unwrap(), [0.5, 0.5]);
        let err = unimax(&[10, 10], 100, 1.0).unwrap_err().to_string();
        assert!(err.contains("less than the budget"), "{err}");
    }

    #[test]
    fn unimax_weights_sum_to_one_and_respect_caps() {
        let tokens = [50, 7_000, 300, 90_000, 1_200];
        let (budget, epochs) = (20_000, 3.0);
        let w = unimax(&tokens, budget, epochs).unwrap();
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for (wi, cap) in w.iter().zip(epoch_caps(&tokens, budget, epochs)) {
            assert!(*wi <= cap + 1e-12, "{w:?}");
        }
    }
}
