//! `[mix]` in `datasets.toml`: the constraints and search settings every mixing method applies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `[mix]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MixConfig {
    /// Per-domain `[lower, upper]` weight bounds, e.g. `{ code = [0.05, 0.5] }`. Default: none.
    pub bounds: BTreeMap<String, (f64, f64)>,
    /// Upper bound on epochs over any domain's training tokens during `[train]`'s token budget:
    /// `w_d · budget ≤ max_epochs · tokens_d`. Default: 4 (Muennighoff et al. 2023: up to about four
    /// epochs of repeated data cost little).
    pub max_epochs: Option<f64>,
    /// Dirichlet samples searched. Default: 1,000,000.
    pub samples: usize,
    /// Best samples averaged. Default: 128 (RegMix).
    pub top_k: usize,
    /// Dirichlet concentration multiplier on the prior. Default: 1.0 (RegMix).
    pub strength: f64,
    /// Seed of the search. Default: 42.
    pub seed: u64,
    /// `[[mix.stage]]`: a multi-stage schedule for `mix --method sdm`, each stage weighted by the
    /// utilities the proxy measured over the matching part of its run. Default: one stage.
    pub stage: Vec<StageConfig>,
}

/// `[[mix.stage]]`: one stage of a multi-stage schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Stage name (`pretrain`, `anneal`, ...).
    pub name: String,
    /// Training tokens of the stage; absent only on the last stage (the rest of the run).
    pub tokens: Option<u64>,
    /// Peak learning rate of the stage; absent: `[train].lr`.
    pub lr: Option<f64>,
}

impl Default for MixConfig {
    fn default() -> Self {
        Self {
            bounds: BTreeMap::new(),
            max_epochs: Some(4.0),
            samples: 1_000_000,
            top_k: 128,
            strength: 1.0,
            seed: 42,
            stage: Vec::new(),
        }
    }
}

impl MixConfig {
    /// Checks ranges: bounds finite within `[0, 1]` and ordered, `max_epochs` and `strength`
    /// positive and finite, `top_k` in `1..=samples`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the key.
    ///
    /// # Example
    /// ```
    /// use mixlab_mixer::config::MixConfig;
    /// let mut mix = MixConfig::default();
    /// assert!(mix.validate().is_ok());
    /// mix.bounds.insert("code".into(), (f64::NAN, 0.5));
    /// assert!(mix.validate().unwrap_err().to_string().contains("[mix].bounds.code"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        for (domain, &(lo, hi)) in &self.bounds {
            if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi && hi <= 1.0) {
                return Err(Error::Invalid(format!(
                    "[mix].bounds.{domain} = [{lo}, {hi}]: expected 0 ≤ lower ≤ upper ≤ 1"
                )));
            }
        }
        if let Some(e) = self.max_epochs
            && !(e.is_finite() && e > 0.0)
        {
            return Err(Error::Invalid(format!(
                "[mix].max_epochs = {e}: expected a positive number"
            )));
        }
        if !(self.strength.is_finite() && self.strength > 0.0) {
            return Err(Error::Invalid(format!(
                "[mix].strength = {}: expected a positive number",
                self.strength
            )));
        }
        self.validate_stages()?;
        if self.top_k == 0 || self.top_k > self.samples {
            return Err(Error::Invalid(format!(
                "[mix].top_k = {} must be in 1..=samples ({})",
                self.top_k, self.samples
            )));
        }
        Ok(())
    }

    fn validate_stages(&self) -> Result<()> {
        let fail =
            |i: usize, what: &str| Err(Error::Invalid(format!("[[mix.stage]] {}: {what}", i + 1)));
        for (i, stage) in self.stage.iter().enumerate() {
            if stage.name.is_empty() || self.stage[..i].iter().any(|s| s.name == stage.name) {
                return fail(i, "expected a name used by no other stage");
            }
            match stage.tokens {
                Some(0) => return fail(i, "tokens: expected a positive number"),
                None if i + 1 < self.stage.len() => {
                    return fail(
                        i,
                        "tokens: expected a budget (only the last stage may omit it)",
                    );
                }
                _ => {}
            }
            if let Some(lr) = stage.lr
                && !(lr.is_finite() && lr > 0.0)
            {
                return fail(i, "lr: expected a positive number");
            }
        }
        Ok(())
    }
}

/// The part of a run each stage covers, as fractions `(start, end]` of `budget` tokens: stage
/// budgets in order, the last stage to the end of the run.
///
/// # Errors
/// [`Error::Invalid`] when a stage runs past the budget or the earlier stages leave a stage none.
///
/// # Example
/// ```
/// use mixlab_mixer::config::stage_windows;
/// let windows = stage_windows(&[Some(600), Some(300), None], 1000)?;
/// assert_eq!(windows, vec![(0.0, 0.6), (0.6, 0.9), (0.9, 1.0)]);
/// # Ok::<(), mixlab_mixer::Error>(())
/// ```
pub fn stage_windows(tokens: &[Option<u64>], budget: u64) -> Result<Vec<(f64, f64)>> {
    let mut start = 0u64;
    let mut windows = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        let end = if last {
            budget
        } else {
            start.saturating_add(t.unwrap_or(0))
        };
        if end > budget {
            return Err(Error::Invalid(format!(
                "[[mix.stage]] {}: ends at token {end}, past the end of the {budget}-token [train] budget; shorten it or raise [train].steps",
                i + 1
            )));
        }
        if end <= start {
            return Err(Error::Invalid(format!(
                "[[mix.stage]] {}: starts at token {start} of a {budget}-token run and leaves it no tokens; shorten the earlier stages or raise [train].steps",
                i + 1
            )));
        }
        windows.push((start as f64 / budget as f64, end as f64 / budget as f64));
        start = end;
    }
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, tokens: Option<u64>) -> StageConfig {
        StageConfig {
            name: name.into(),
            tokens,
            lr: None,
        }
    }

    #[test]
    fn stages_need_unique_names_and_budgets_before_the_last() {
        let with = |stages: Vec<StageConfig>| MixConfig {
            stage: stages,
            ..MixConfig::default()
        };
        with(vec![stage("a", Some(10)), stage("b", None)])
            .validate()
            .unwrap();
        let cases = [
            (
                vec![stage("a", None), stage("b", None)],
                "[[mix.stage]] 1: tokens",
            ),
            (
                vec![stage("a", Some(1)), stage("a", None)],
                "[[mix.stage]] 2: expected a name",
            ),
            (
                vec![stage("a", Some(0))],
                "[[mix.stage]] 1: tokens: expected a positive",
            ),
        ];
        for (stages, expected) in cases {
            let err = with(stages).validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        let mut nan_lr = with(vec![stage("a", None)]);
        nan_lr.stage[0].lr = Some(f64::NAN);
        assert!(nan_lr.validate().unwrap_err().to_string().contains("lr"));
    }

    #[test]
    fn a_stage_left_without_tokens_is_refused() {
        let err = stage_windows(&[Some(1000), None], 1000)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[[mix.stage]] 2") && err.contains("no tokens"),
            "{err}"
        );
        let err = stage_windows(&[Some(2000), None], 1000)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[[mix.stage]] 1") && err.contains("past the end"),
            "{err}"
        );
        assert_eq!(stage_windows(&[None], 1000).unwrap(), vec![(0.0, 1.0)]);
    }
}
