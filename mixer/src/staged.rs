//! The Scalable Data Mixer's staged schedules: domain utilities measured at the checkpoints of one
//! simulation run, weighted to each stage's part of that run, and one mixture optimized per stage.
//!
//! A stage that covers the first 30 % of the target run's tokens is optimized on the utilities of
//! the checkpoints in the first 30 % of the simulation run (`α_t ∝ t` within it): what a domain
//! does to the target early in training differs from what it does late.

/// The joint (target-weighted) utility of every domain: over the whole simulation run, and at each
/// checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct JointUtilities {
    /// Domain names; every vector below is in this order.
    pub domains: Vec<String>,
    /// Utilities over all checkpoints.
    pub overall: Vec<f64>,
    /// Checkpoint steps, ascending.
    pub steps: Vec<u64>,
    /// Per step of `steps`, the utilities (NaN where a domain has no estimate at that step).
    pub by_step: Vec<Vec<f64>>,
}

impl JointUtilities {
    /// Whether every checkpoint has a utility for every domain (what staging needs).
    pub fn has_every_checkpoint(&self) -> bool {
        !self.steps.is_empty() && self.by_step.iter().flatten().all(|u| !u.is_nan())
    }

    /// The utilities of the checkpoints in `window` (the part `(start, end]` of the run, as
    /// fractions), weighted by [`window_weights`].
    ///
    /// # Example
    /// ```
    /// use mixlab_mixer::staged::JointUtilities;
    /// let joint = JointUtilities {
    ///     domains: vec!["code".into(), "prose".into()],
    ///     overall: vec![0.5, 0.5],
    ///     steps: vec![100, 200],
    ///     by_step: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
    /// };
    /// assert_eq!(joint.in_window((0.0, 0.5)), [1.0, 0.0]);
    /// assert_eq!(joint.in_window((0.5, 1.0)), [0.0, 1.0]);
    /// ```
    pub fn in_window(&self, window: (f64, f64)) -> Vec<f64> {
        let alpha = window_weights(&self.steps, window);
        (0..self.domains.len())
            .map(|d| alpha.iter().zip(&self.by_step).map(|(a, u)| a * u[d]).sum())
            .collect()
    }
}

/// Weights per stage from `optimize` (given the stage's index and its utilities), one stage per
/// window of `windows`, and the objective of the schedule: `Σ_s (end_s − start_s) · w_s · u_s`, the
/// token-weighted mean of each stage's expected utility.
///
/// # Errors
/// The first error of `optimize`.
///
/// # Example
/// ```
/// use mixlab_mixer::staged::{JointUtilities, staged_weights};
/// let joint = JointUtilities {
///     domains: vec!["code".into(), "prose".into()],
///     overall: vec![0.5, 0.5],
///     steps: vec![100, 200],
///     by_step: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
/// };
/// // All weight on the domain with the larger utility in each half.
/// let argmax = |_stage: usize, u: &[f64]| -> Result<Vec<f64>, String> {
///     Ok(if u[0] >= u[1] { vec![1.0, 0.0] } else { vec![0.0, 1.0] })
/// };
/// let (weights, objective) = staged_weights(&joint, &[(0.0, 0.5), (0.5, 1.0)], argmax)?;
/// assert_eq!(weights, [[1.0, 0.0], [0.0, 1.0]]);
/// assert_eq!(objective, 1.0);
/// # Ok::<(), String>(())
/// ```
pub fn staged_weights<E>(
    joint: &JointUtilities,
    windows: &[(f64, f64)],
    mut optimize: impl FnMut(usize, &[f64]) -> Result<Vec<f64>, E>,
) -> Result<(Vec<Vec<f64>>, f64), E> {
    let mut objective = 0.0;
    let mut stages = Vec::with_capacity(windows.len());
    for (i, &window) in windows.iter().enumerate() {
        let utilities = joint.in_window(window);
        let weights = optimize(i, &utilities)?;
        objective += (window.1 - window.0) * expected_utility(&weights, &utilities);
        stages.push(weights);
    }
    Ok((stages, objective))
}

/// The utility a mixture is expected to bring: `Σ_d w_d · u_d`.
///
/// # Example
/// ```
/// use mixlab_mixer::staged::expected_utility;
/// assert_eq!(expected_utility(&[0.25, 0.75], &[4.0, 0.0]), 1.0);
/// ```
pub fn expected_utility(weights: &[f64], utilities: &[f64]) -> f64 {
    weights.iter().zip(utilities).map(|(w, u)| w * u).sum()
}

/// Checkpoint weights for one stage of a multi-stage schedule: `α_t ∝ t` over the checkpoints whose
/// place in the proxy run, `step / last step`, falls in the stage's part of the run `(start, end]`
/// (the first stage also takes step 0), zero elsewhere, summing to 1. A stage shorter than the
/// checkpoint spacing takes the checkpoint nearest to its middle.
///
/// # Example
/// ```
/// use mixlab_mixer::staged::window_weights;
/// let steps = [100, 200, 300, 400];
/// assert_eq!(window_weights(&steps, (0.0, 0.5)), [1.0 / 3.0, 2.0 / 3.0, 0.0, 0.0]);
/// assert_eq!(window_weights(&steps, (0.9, 0.95)), [0.0, 0.0, 0.0, 1.0]);
/// ```
pub fn window_weights(steps: &[u64], (start, end): (f64, f64)) -> Vec<f64> {
    let last = steps.iter().copied().max().unwrap_or(0).max(1) as f64;
    let place = |s: u64| s as f64 / last;
    let inside = |s: u64| (place(s) > start || (start == 0.0 && s == 0)) && place(s) <= end;
    let mut weights: Vec<f64> = steps
        .iter()
        .map(|&s| if inside(s) { s as f64 } else { 0.0 })
        .collect();
    if weights.iter().all(|&w| w == 0.0) {
        let middle = (start + end) / 2.0;
        let nearest = (0..steps.len()).min_by(|&a, &b| {
            (place(steps[a]) - middle)
                .abs()
                .total_cmp(&(place(steps[b]) - middle).abs())
        });
        if let Some(i) = nearest {
            weights[i] = 1.0;
        }
    }
    let total: f64 = weights.iter().sum();
    weights
        .iter()
        .map(|w| w / total.max(f64::MIN_POSITIVE))
        .collect()
}
