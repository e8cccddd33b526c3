//! The mixture schedule (`mixture.toml`, DESIGN.md "Formats"): stages of domain weights plus provenance.
//!
//! This module owns the types and their validation; reading and writing the file is the binary's job,
//! so the crate stays free of I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::position;

/// Tolerance on the sum of a stage's weights.
pub const STAGE_SUM_TOLERANCE: f64 = 1e-6;

/// A multi-stage mixture: `[[stage]]` tables and a `[provenance]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixtureSchedule {
    /// Stages in training order.
    pub stage: Vec<Stage>,
    /// How the weights were obtained.
    pub provenance: Provenance,
}

/// One stage of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Stage name (`pretrain`, `anneal`, ...).
    pub name: String,
    /// Training tokens of this stage; absent: the rest of the run.
    pub tokens: Option<u64>,
    /// Peak learning rate of this stage; absent: the trainer's configured rate.
    pub lr: Option<f64>,
    /// Weight per domain, summing to 1.
    pub weights: BTreeMap<String, f64>,
}

/// Where a schedule came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The method (`uniform`, `regmix`, ...).
    pub method: String,
    /// Hex hashes of the inputs, by input name.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Optimizer settings, as text.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// The objective the method predicts for this mixture (e.g. predicted loss), if any.
    pub predicted_objective: Option<f64>,
    /// Goodness-of-fit figures of the model behind the mixture, by name.
    #[serde(default)]
    pub fit: BTreeMap<String, f64>,
}

impl MixtureSchedule {
    /// A single-stage schedule.
    pub fn single(weights: BTreeMap<String, f64>, provenance: Provenance) -> Self {
        Self {
            stage: vec![Stage {
                name: "main".into(),
                tokens: None,
                lr: None,
                weights,
            }],
            provenance,
        }
    }

    /// Equal weights over the given domains.
    ///
    /// # Example
    /// ```
    /// let s = mixlab_mixer::schedule::MixtureSchedule::uniform(&["a", "b"]);
    /// assert_eq!(s.stage[0].weights["a"], 0.5);
    /// ```
    pub fn uniform(domains: &[&str]) -> Self {
        let w = 1.0 / domains.len().max(1) as f64;
        let weights = domains.iter().map(|d| ((*d).to_owned(), w)).collect();
        Self::single(
            weights,
            Provenance {
                method: "uniform".into(),
                ..Provenance::default()
            },
        )
    }

    /// Checks that every stage's weights are non-negative, sum to 1 and name only known domains,
    /// and that its learning rate and token budget, if set, are positive.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the stage and domain, with a suggestion for a misspelt name.
    pub fn validate(&self, known: &[&str]) -> Result<()> {
        if self.stage.is_empty() {
            return Err(Error::Invalid("the schedule has no [[stage]]".into()));
        }
        for stage in &self.stage {
            if let Some(lr) = stage.lr
                && !(lr.is_finite() && lr > 0.0)
            {
                return Err(Error::Invalid(format!(
                    "stage {:?}: lr = {lr}; expected a positive number",
                    stage.name
                )));
            }
            if stage.tokens == Some(0) {
                return Err(Error::Invalid(format!(
                    "stage {:?}: tokens = 0; expected a positive budget (or none: the rest of the run)",
                    stage.name
                )));
            }
            for (domain, w) in &stage.weights {
                position(
                    domain,
                    known,
                    &format!("stage {:?}: weight for", stage.name),
                )?;
                if !w.is_finite() || *w < 0.0 {
                    return Err(Error::Invalid(format!(
                        "stage {:?}: weight of {domain:?} is {w}",
                        stage.name
                    )));
                }
            }
            let sum: f64 = stage.weights.values().sum();
            if (sum - 1.0).abs() > STAGE_SUM_TOLERANCE {
                return Err(Error::Invalid(format!(
                    "stage {:?}: weights sum to {sum}; expected 1",
                    stage.name
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_domain_gets_a_suggestion() {
        let mut s = MixtureSchedule::uniform(&["math", "code"]);
        s.stage[0].weights = [("mathh".to_owned(), 0.5), ("code".to_owned(), 0.5)].into();
        let err = s.validate(&["math", "code"]).unwrap_err().to_string();
        assert!(
            err.contains("unknown domain \"mathh\" (did you mean \"math\"?)"),
            "{err}"
        );
    }

    #[test]
    fn weights_must_sum_to_one() {
        let mut s = MixtureSchedule::uniform(&["a", "b"]);
        assert!(s.validate(&["a", "b"]).is_ok());
        s.stage[0].weights.insert("a".into(), 0.7);
        assert!(
            s.validate(&["a", "b"])
                .unwrap_err()
                .to_string()
                .contains("sum to 1.2")
        );
    }
}
