//! Leave-one-out utilities, the ground truth the influence estimates are checked against: the
//! proxy trained without domain `d`, and the change in each target's loss.

use mixlab_artefacts::eval::DomainLoss;
use mixlab_artefacts::split::Split;
use mixlab_artefacts::utilities::{DomainUtility, JOINT_TARGET};

use crate::config::TargetConfig;
use crate::error::{Error, Result};

/// A target's loss in a run's final evaluation: the probe split of its domain.
fn target_loss(losses: &[DomainLoss], target: &TargetConfig) -> Result<f64> {
    losses
        .iter()
        .find(|l| Some(l.domain.as_str()) == target.probe() && l.split == Split::Probe)
        .map(|l| l.loss)
        .ok_or_else(|| {
            Error::Config(format!(
                "no probe loss of target {:?} in the evaluation",
                target.name
            ))
        })
}

/// Refuses targets leave-one-out cannot measure: files (training runs evaluate the domains' probe
/// splits only). Checked before any run is trained.
///
/// # Errors
/// [`Error::Config`] naming the first file target.
///
/// # Example
/// ```
/// use mixlab_simulator::config::{TargetConfig, TargetSource};
/// use mixlab_simulator::loo::ensure_probe_targets;
/// let texts = TargetSource::Texts("he.jsonl".into());
/// let file = TargetConfig { name: "he".into(), source: texts, weight: 1.0, domain: None };
/// assert!(ensure_probe_targets(&[file]).is_err());
/// ```
pub fn ensure_probe_targets(targets: &[TargetConfig]) -> Result<()> {
    match targets.iter().find(|t| t.probe().is_none()) {
        Some(t) => Err(Error::Config(format!(
            "target {:?}: leave-one-out needs probe-split targets (files are not evaluated by training runs)",
            t.name
        ))),
        None => Ok(()),
    }
}

/// `u(d, c) = loss_without_d(c) − loss_full(c)` per left-out domain and target (positive: removing
/// the domain hurts, so it helps), and the joint `Σ_c w_c u(d, c)`; one row per domain and target,
/// `checkpoint_step` empty, no standard error (one run each).
///
/// # Errors
/// [`Error::Config`] for a file target, or when an evaluation lacks a target's probe loss.
///
/// # Example
/// ```
/// use mixlab_artefacts::eval::DomainLoss;
/// use mixlab_artefacts::split::Split;
/// use mixlab_simulator::config::{TargetConfig, TargetSource};
/// use mixlab_simulator::loo::loo_utilities;
/// let probe = |loss| vec![DomainLoss { domain: "code".into(), split: Split::Probe, loss, tokens: 10 }];
/// let target = TargetConfig { name: "code".into(), source: TargetSource::Probe("code".into()), weight: 1.0, domain: None };
/// let rows = loo_utilities(&probe(2.0), &[("code".into(), probe(3.0))], &[target])?;
/// assert_eq!(rows[0].utility, 1.0); // without code, the code target is 1 nat worse
/// # Ok::<(), mixlab_simulator::Error>(())
/// ```
pub fn loo_utilities(
    full: &[DomainLoss],
    without: &[(String, Vec<DomainLoss>)],
    targets: &[TargetConfig],
) -> Result<Vec<DomainUtility>> {
    ensure_probe_targets(targets)?;
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
