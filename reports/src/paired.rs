//! Arms compared seed by seed: the mean paired difference of their final losses with a 95 %
//! Student-t interval, and what it allows the reader to conclude.

use mixlab_artefacts::split::Split;
use serde::Serialize;

/// A final model's loss at one seed on one split and domain (or aggregate row).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedLoss {
    /// The arm.
    pub arm: String,
    /// The training seed.
    pub seed: u64,
    /// `valid` or `probe`.
    pub split: Split,
    /// The domain, `mean` or `targets`.
    pub domain: String,
    /// The loss.
    pub loss: f64,
}

/// `arm − baseline` over the seeds both ran, on one split and domain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedDifference {
    /// `valid` or `probe`.
    pub split: Split,
    /// The domain, `mean` or `targets`.
    pub domain: String,
    /// The arm compared.
    pub arm: String,
    /// The arm it is compared with.
    pub baseline: String,
    /// Seeds both arms ran.
    pub seeds: u64,
    /// Mean of `loss(arm) − loss(baseline)` over those seeds (negative: the arm is better).
    pub mean: f64,
    /// Lower end of the 95 % t-interval (NaN with fewer than two seeds).
    pub low: f64,
    /// Upper end of the 95 % t-interval.
    pub high: f64,
    /// What the interval says.
    pub call: PairedCall,
}

/// What a paired interval allows one to conclude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PairedCall {
    /// The whole interval is below zero.
    Better,
    /// The whole interval is above zero.
    Worse,
    /// The interval crosses zero.
    NotSeparable,
    /// Fewer than two common seeds.
    TooFewSeeds,
}

impl PairedCall {
    /// Words for the reader.
    pub fn words(self) -> &'static str {
        match self {
            PairedCall::Better => "better (95 % interval below zero)",
            PairedCall::Worse => "worse (95 % interval above zero)",
            PairedCall::NotSeparable => "not separable at this budget",
            PairedCall::TooFewSeeds => "fewer than two paired seeds: run more seeds",
        }
    }
}

/// Every pair of `arms` (each against every arm before it in that order, so the first, often the
/// baseline, is subtracted from all others) on every split and domain of `losses`, paired by seed.
///
/// # Example
/// ```
/// use mixlab_artefacts::split::Split;
/// use mixlab_reports::paired::{paired_differences, PairedCall, SeedLoss};
/// let row = |arm: &str, seed, loss| SeedLoss {
///     arm: arm.into(), seed, split: Split::Probe, domain: "targets".into(), loss,
/// };
/// let losses = [row("sdm", 0, 2.0), row("sdm", 1, 2.1), row("sdm", 2, 2.3),
///               row("uniform", 0, 2.2), row("uniform", 1, 2.3), row("uniform", 2, 2.45)];
/// let d = &paired_differences(&losses, &["uniform", "sdm"])[0];
/// assert_eq!((d.arm.as_str(), d.baseline.as_str(), d.seeds), ("sdm", "uniform", 3));
/// assert!((d.mean + 0.1833).abs() < 1e-3);
/// assert_eq!(d.call, PairedCall::Better);
/// ```
pub fn paired_differences(losses: &[SeedLoss], arms: &[&str]) -> Vec<PairedDifference> {
    let mut rows: Vec<(Split, &str)> = Vec::new();
    for l in losses {
        if !rows.contains(&(l.split, l.domain.as_str())) {
            rows.push((l.split, &l.domain));
        }
    }
    let mut out = Vec::new();
    for &(split, domain) in &rows {
        for (i, &baseline) in arms.iter().enumerate() {
            for &arm in &arms[i + 1..] {
                out.push(difference(losses, split, domain, arm, baseline));
            }
        }
    }
    out
}

fn difference(
    losses: &[SeedLoss],
    split: Split,
    domain: &str,
    arm: &str,
    baseline: &str,
) -> PairedDifference {
    let on_row = |l: &&SeedLoss| l.split == split && l.domain == domain;
    let diffs: Vec<f64> = losses
        .iter()
        .filter(|l| l.arm == arm)
        .filter(on_row)
        .filter_map(|a| {
            losses
                .iter()
                .filter(on_row)
                .find(|b| b.arm == baseline && b.seed == a.seed)
                .map(|b| a.loss - b.loss)
        })
        .collect();
    let (mean, low, high) = t_interval(&diffs);
    let call = if diffs.len() < 2 {
        PairedCall::TooFewSeeds
    } else if high < 0.0 {
        PairedCall::Better
    } else if low > 0.0 {
        PairedCall::Worse
    } else {
        PairedCall::NotSeparable
    };
    PairedDifference {
        split,
        domain: domain.to_owned(),
        arm: arm.to_owned(),
        baseline: baseline.to_owned(),
        seeds: diffs.len() as u64,
        mean,
        low,
        high,
        call,
    }
}

/// Mean and 95 % Student-t interval of `x` (NaN ends with fewer than two values).
fn t_interval(x: &[f64]) -> (f64, f64, f64) {
    let n = x.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, f64::NAN, f64::NAN);
    }
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t_975(n - 1) * (var / n as f64).sqrt();
    (mean, mean - half, mean + half)
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom. Written by hand: a table of
/// the exact values for small samples (what ablations have) and the normal quantile beyond; no
/// crate in the tree computes it, and one number does not justify a statistics dependency.
fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        _ => 1.96 + 2.4 / df as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(arm: &str, seed: u64, loss: f64) -> SeedLoss {
        SeedLoss {
            arm: arm.into(),
            seed,
            split: Split::Probe,
            domain: "targets".into(),
            loss,
        }
    }

    #[test]
    fn an_interval_crossing_zero_is_not_separable() {
        let losses = [
            row("a", 0, 2.0),
            row("a", 1, 2.3),
            row("b", 0, 2.1),
            row("b", 1, 2.25),
        ];
        let d = &paired_differences(&losses, &["b", "a"])[0];
        assert_eq!(d.call, PairedCall::NotSeparable);
        // Differences −0.1 and +0.05: mean −0.025, sd 0.106, half-width 12.706 · 0.075.
        assert!((d.mean + 0.025).abs() < 1e-12);
        assert!((d.high - d.low - 2.0 * 12.706 * 0.075).abs() < 1e-9);
    }

    #[test]
    fn only_seeds_both_arms_ran_are_paired() {
        let losses = [row("a", 0, 2.0), row("a", 5, 9.0), row("b", 0, 2.5)];
        let d = &paired_differences(&losses, &["b", "a"])[0];
        assert_eq!(
            (d.seeds, d.mean, d.call),
            (1, -0.5, PairedCall::TooFewSeeds)
        );
        assert!(d.low.is_nan());
    }

    #[test]
    fn t_quantiles_match_the_table_and_approach_the_normal() {
        assert_eq!(t_975(4), 2.776);
        assert!((t_975(1000) - 1.96).abs() < 0.01);
        assert!(t_975(31) < t_975(30) + 0.01 && t_975(31) > 1.96);
    }
}
