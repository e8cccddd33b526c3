//! Learning-rate schedule (linear warmup, cosine decay) and mixture stages over the token budget.

use mixlab_mixer::schedule::MixtureSchedule;

use crate::config::TrainConfig;
use crate::error::{Error, Result};

/// Learning rate at `step` (0-based) for a run of `total_steps`: linear warmup from `peak / warmup`
/// to `peak`, then a cosine to `peak · min_ratio` at the last step.
///
/// # Example
/// ```
/// use mixlab_trainer::engine::schedule::learning_rate;
/// assert_eq!(learning_rate(0, 100, 10, 1.0, 0.1), 0.1);
/// assert_eq!(learning_rate(9, 100, 10, 1.0, 0.1), 1.0);
/// assert!((learning_rate(99, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
/// ```
pub fn learning_rate(step: u64, total_steps: u64, warmup: u64, peak: f64, min_ratio: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total_steps.saturating_sub(warmup).saturating_sub(1).max(1);
    let progress = ((step - warmup) as f64 / decay_steps as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    peak * (min_ratio + (1.0 - min_ratio) * cosine)
}

/// A mixture schedule resolved against the run's domains: weights per stage and where stages start.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    /// Per stage: name, first token, weights in domain order, peak learning rate.
    pub stages: Vec<PlannedStage>,
}

/// One resolved stage.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStage {
    /// Stage name.
    pub name: String,
    /// The token count at which this stage begins.
    pub start_tokens: u64,
    /// Weights in the run's domain order.
    pub weights: Vec<f64>,
    /// Peak learning rate of the stage.
    pub lr: f64,
}

impl StagePlan {
    /// Resolves a schedule: validates it against `domains` and orders its weights.
    ///
    /// # Errors
    /// [`Error::Config`] for unknown domains, weights that do not sum to 1, or a stage without a
    /// token budget before the last stage.
    pub fn new(
        schedule: &MixtureSchedule,
        domains: &[String],
        train: &TrainConfig,
    ) -> Result<Self> {
        let names: Vec<&str> = domains.iter().map(String::as_str).collect();
        schedule
            .validate(&names)
            .map_err(|e| Error::Config(format!("mixture: {e}")))?;
        let mut start = 0u64;
        let mut stages = Vec::new();
        for (i, s) in schedule.stage.iter().enumerate() {
            let weights = domains
                .iter()
                .map(|d| s.weights.get(d).copied().unwrap_or(0.0))
                .collect();
            stages.push(PlannedStage {
                name: s.name.clone(),
                start_tokens: start,
                weights,
                lr: s.lr.unwrap_or(train.lr),
            });
            match s.tokens {
                Some(t) => start += t,
                None if i + 1 < schedule.stage.len() => {
                    return Err(Error::Config(format!(
                        "mixture: stage {:?} has no `tokens` but is not the last stage",
                        s.name
                    )));
                }
                None => {}
            }
        }
        Ok(Self { stages })
    }

    /// Index of the stage active at `tokens`.
    pub fn stage_at(&self, tokens: u64) -> usize {
        self.stages
            .iter()
            .rposition(|s| s.start_tokens <= tokens)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mixlab_mixer::schedule::{Provenance, Stage};

    #[test]
    fn stages_switch_at_their_token_budgets() {
        let _rng = crate::test_rng::lock();
        let stage = |name: &str, tokens, a: f64| Stage {
            name: name.into(),
            tokens,
            lr: None,
            weights: [("a".to_owned(), a), ("b".to_owned(), 1.0 - a)].into(),
        };
        let schedule = MixtureSchedule {
            stage: vec![stage("one", Some(1000), 0.9), stage("two", None, 0.2)],
            provenance: Provenance::default(),
        };
        let plan = StagePlan::new(
            &schedule,
            &["a".into(), "b".into()],
            &TrainConfig::default(),
        )
        .unwrap();
        assert_eq!(plan.stage_at(999), 0);
        assert_eq!(plan.stage_at(1000), 1);
        assert_eq!(plan.stages[1].weights, vec![0.2, 0.8]);
    }

    #[test]
    fn cosine_decays_monotonically_after_warmup() {
        let _rng = crate::test_rng::lock();
        let lrs: Vec<f64> = (0..50)
            .map(|s| learning_rate(s, 50, 5, 1e-3, 0.1))
            .collect();
        assert!(lrs[5..].windows(2).all(|w| w[1] <= w[0]));
        assert!(lrs[..5].windows(2).all(|w| w[1] > w[0]));
    }
}
