//! Who wins each target, by how much, and whether that is more than run-to-run noise.

use mixlab_artefacts::split::Split;
use serde::Serialize;

use crate::tables::FinalLoss;

/// The outcome on one split and domain (or `mean`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// `valid` or `probe`.
    pub split: Split,
    /// The domain, or `mean`.
    pub domain: String,
    /// The arm with the lowest mean loss.
    pub winner: String,
    /// Its mean loss.
    pub loss: f64,
    /// The second best arm, if any.
    pub runner_up: Option<String>,
    /// How much lower the winner's loss is than the runner-up's.
    pub margin: f64,
    /// The larger seed spread (max − min) of the two arms; `None` when either has one seed.
    pub noise: Option<f64>,
    /// How the margin compares with the noise.
    pub call: Call,
}

/// How far a win can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// The margin exceeds both arms' seed spreads.
    BeyondNoise,
    /// The margin is within an arm's seed spread: not a difference.
    WithinNoise,
    /// An arm has one seed: the noise is unknown.
    SingleSeed,
    /// Only one arm.
    Alone,
}

impl Call {
    /// Words for the reader.
    pub fn words(self) -> &'static str {
        match self {
            Call::BeyondNoise => "beyond seed noise",
            Call::WithinNoise => "within seed noise: not a difference",
            Call::SingleSeed => "single seed: noise unknown, run ≥ 2 seeds",
            Call::Alone => "one arm: nothing to compare",
        }
    }
}

/// One verdict per split and domain of `losses`, in their order.
///
/// # Example
/// ```
/// use mixlab_artefacts::split::Split;
/// use mixlab_reports::tables::FinalLoss;
/// use mixlab_reports::verdict::{verdicts, Call};
/// let row = |arm: &str, mean: f64, min: f64, max: f64| FinalLoss {
///     arm: arm.into(), split: Split::Valid, domain: "mean".into(), mean, min, max, seeds: 2,
/// };
/// let v = verdicts(&[row("sdm", 2.0, 1.95, 2.05), row("uniform", 2.3, 2.25, 2.35)]);
/// assert_eq!((v[0].winner.as_str(), v[0].call), ("sdm", Call::BeyondNoise));
/// assert!((v[0].margin - 0.3).abs() < 1e-12);
/// ```
pub fn verdicts(losses: &[FinalLoss]) -> Vec<Verdict> {
    let mut targets: Vec<(Split, &str)> = Vec::new();
    for l in losses {
        if !targets.contains(&(l.split, l.domain.as_str())) {
            targets.push((l.split, &l.domain));
        }
    }
    targets
        .into_iter()
        .filter_map(|(split, domain)| {
            let mut arms: Vec<&FinalLoss> = losses
                .iter()
                .filter(|l| l.split == split && l.domain == domain)
                .collect();
            arms.sort_by(|a, b| a.mean.total_cmp(&b.mean));
            let best = *arms.first()?;
            Some(verdict(best, arms.get(1).copied()))
        })
        .collect()
}

fn verdict(best: &FinalLoss, second: Option<&FinalLoss>) -> Verdict {
    let spread = |l: &FinalLoss| (l.seeds >= 2).then_some(l.max - l.min);
    let (margin, noise, call) = match second {
        None => (0.0, None, Call::Alone),
        Some(second) => {
            let margin = second.mean - best.mean;
            match (spread(best), spread(second)) {
                (Some(a), Some(b)) => {
                    let noise = a.max(b);
                    let call = if margin > noise {
                        Call::BeyondNoise
                    } else {
                        Call::WithinNoise
                    };
                    (margin, Some(noise), call)
                }
                _ => (margin, None, Call::SingleSeed),
            }
        }
    };
    Verdict {
        split: best.split,
        domain: best.domain.clone(),
        winner: best.arm.clone(),
        loss: best.mean,
        runner_up: second.map(|s| s.arm.clone()),
        margin,
        noise,
        call,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(arm: &str, domain: &str, mean: f64, spread: f64, seeds: u64) -> FinalLoss {
        FinalLoss {
            arm: arm.into(),
            split: Split::Probe,
            domain: domain.into(),
            mean,
            min: mean - spread / 2.0,
            max: mean + spread / 2.0,
            seeds,
        }
    }

    #[test]
    fn a_margin_inside_either_arms_spread_is_flagged_as_noise() {
        let v = verdicts(&[
            row("a", "code", 2.0, 0.05, 2),
            row("b", "code", 2.1, 0.3, 2),
            row("c", "code", 2.5, 0.0, 2),
        ]);
        assert_eq!(
            (v[0].winner.as_str(), v[0].runner_up.as_deref()),
            ("a", Some("b"))
        );
        assert_eq!(v[0].call, Call::WithinNoise);
        assert!((v[0].noise.unwrap() - 0.3).abs() < 1e-12);
    }

    #[test]
    fn one_seed_or_one_arm_is_said_so() {
        let v = verdicts(&[row("a", "code", 2.0, 0.0, 1), row("b", "code", 2.4, 0.1, 2)]);
        assert_eq!(v[0].call, Call::SingleSeed);
        let v = verdicts(&[row("a", "math", 2.0, 0.1, 2)]);
        assert_eq!((v[0].call, v[0].runner_up.clone()), (Call::Alone, None));
    }

    #[test]
    fn each_target_gets_its_own_winner_in_first_seen_order() {
        let v = verdicts(&[
            row("a", "code", 2.0, 0.0, 2),
            row("b", "code", 2.5, 0.0, 2),
            row("a", "math", 3.0, 0.0, 2),
            row("b", "math", 2.0, 0.0, 2),
        ]);
        let winners: Vec<(&str, &str)> = v
            .iter()
            .map(|v| (v.domain.as_str(), v.winner.as_str()))
            .collect();
        assert_eq!(winners, [("code", "a"), ("math", "b")]);
        assert_eq!(v[1].call, Call::BeyondNoise);
    }
}
