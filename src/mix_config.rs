//! `[mix]`: constraints and search settings every mixing method applies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[mix]` in `datasets.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MixConfig {
    /// Per-domain `[lower, upper]` weight bounds, e.g. `{ code = [0.05, 0.5] }`. Default: none.
    pub bounds: BTreeMap<String, (f64, f64)>,
    /// Upper bound on epochs over any domain's training tokens during `[train]`'s token budget:
    /// `w_d · budget ≤ max_epochs · tokens_d`. Applied when the shards are present. Default: 4
    /// (Muennighoff et al. 2023: up to about four epochs of repeated data cost little).
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
