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
        if self.top_k == 0 || self.top_k > self.samples {
            return Err(Error::Invalid(format!(
                "[mix].top_k = {} must be in 1..=samples ({})",
                self.top_k, self.samples
            )));
        }
        Ok(())
    }
}
