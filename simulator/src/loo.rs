//! Leave-one-out utilities, the ground truth the influence estimates are checked against: the
//! proxy trained without domain `d`, and the change in each target's loss.

use mixlab_artefacts::eval::DomainLoss;
use mixlab_artefacts::utilities::{DomainUtility, JOINT_TARGET};

use crate::config::TargetConfig;
use crate::error::{Error, Result};

/// A target's loss in a run's final evaluation: the probe split of its domain.
fn target_loss(losses: &[DomainLoss], target: &TargetConfig) -> Result<f64> {
    if target.path.is_some() {
        return Err(Error::Config(format!(
            "target {:?}: leave-one-out needs probe-split targets (files are not evaluated by training runs)",
            target.name
        )));
    }
    losses
        .iter()
        .find(|l| l.domain == target.probe && l.split == "probe")
        .map(|l| l.loss)
        .ok_or_else(|| {
            Error::Config(format!(
                "no probe loss of domain {:?} in the evaluation",
                target.probe
            ))
        })
}

/// `u(d, c) = loss_without_d(c) − loss_full(c)` per left-out domain and target (positive: removing
/// the domain hurts, so it helps), and the joint `Σ_c w_c u(d, c)`; one row per domain and target,
/// `checkpoint_step` empty, no standard error (one run each).
///
/// # Errors
/// [`Error::Config`] when an evaluation lacks a target's probe loss.
///
/// # Example
/// ```
/// use mixlab_artefacts::eval::DomainLoss;
/// use mixlab_simulator::config::TargetConfig;
/// use mixlab_simulator::loo::loo_utilities;
/// let probe = |loss| vec![DomainLoss { domain: "code".into(), split: "probe".into(), loss, tokens: 10 }];
/// let target = TargetConfig { name: "code".into(), probe: "code".into(), path: None, weight: 1.0 };
/// let rows = loo_utilities(&probe(2.0), &[("code".into(), probe(3.0))], &[target])?;
/// assert_eq!(rows[0].utility, 1.0); // without code, the code target is 1 nat worse
/// # Ok::<(), mixlab_simulator::Error>(())
/// ```
pub fn loo_utilities(
    full: &[DomainLoss],
    without: &[(String, Vec<DomainLoss>)],
    targets: &[TargetConfig],
) -> Result<Vec<DomainUtility>> {
    let mut rows = Vec::new();
    for (domain, losses) in without {
        let mut joint = 0.0;
        for target in targets {
            let utility = target_loss(losses, target)? - target_loss(full, target)?;
            joint += target.weight * utility;
            rows.push(row(domain, &target.name, utility));
        }
        rows.push(row(domain, JOINT_TARGET, joint));
    }
    Ok(rows)
}

fn row(domain: &str, target: &str, utility: f64) -> DomainUtility {
    DomainUtility {
        domain: domain.to_owned(),
        target: target.to_owned(),
        checkpoint_step: None,
        utility,
        stderr: 0.0,
        n_samples: 1,
    }
}
