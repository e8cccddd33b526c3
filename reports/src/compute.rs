//! Gains expressed as compute: how many more steps the baseline arm would need to reach another
//! arm's final loss, from the baseline's own loss-vs-steps curve.

use serde::Serialize;

use crate::tables::CurvePoint;

/// One arm's final target loss as a multiple of the baseline's training compute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveCompute {
    /// The arm.
    pub arm: String,
    /// The arm the curve is the baseline's.
    pub baseline: String,
    /// The arm's final loss (the last point of its curve).
    pub loss: f64,
    /// Steps the baseline needs to reach that loss ÷ the arm's steps (> 1: the arm saves compute);
    /// NaN when the baseline's curve cannot say (it never came near, or rose at its end).
    pub multiplier: f64,
    /// Whether the baseline's curve had to be extrapolated past its last evaluation (a power law
    /// through its last two points), which the reader should trust less.
    pub extrapolated: bool,
}

/// Each arm's effective-compute multiplier against `baseline`, from the target-loss curves
/// (`curves`: points of one domain, every arm's, in step order). Arms without a curve, and the
/// baseline itself, are left out.
///
/// # Example
/// ```
/// use mixlab_reports::compute::effective_compute;
/// use mixlab_reports::tables::CurvePoint;
/// let point = |arm: &str, step, loss| CurvePoint { arm: arm.into(), domain: "targets".into(), step, loss };
/// let curves = [point("uniform", 100, 5.0), point("uniform", 200, 4.0), point("uniform", 400, 3.0),
///               point("sdm", 100, 4.5), point("sdm", 200, 3.0)];
/// let m = &effective_compute(&curves, "uniform")[0];
/// // sdm reaches at 200 steps what uniform reaches at 400.
/// assert_eq!((m.arm.as_str(), m.extrapolated), ("sdm", false));
/// assert!((m.multiplier - 2.0).abs() < 1e-9);
/// ```
pub fn effective_compute(curves: &[CurvePoint], baseline: &str) -> Vec<EffectiveCompute> {
    let of = |arm: &str| -> Vec<(f64, f64)> {
        curves
            .iter()
            .filter(|p| p.arm == arm)
            .map(|p| (p.step as f64, p.loss))
            .collect()
    };
    let reference = of(baseline);
    if reference.len() < 2 {
        return Vec::new();
    }
    let mut arms: Vec<&str> = Vec::new();
    for p in curves {
        if p.arm != baseline && !arms.contains(&p.arm.as_str()) {
            arms.push(&p.arm);
        }
    }
    arms.into_iter()
        .filter_map(|arm| {
            let &(steps, loss) = of(arm).last()?;
            let (needed, extrapolated) = steps_to_reach(&reference, loss);
            Some(EffectiveCompute {
                arm: arm.to_owned(),
                baseline: baseline.to_owned(),
                loss,
                multiplier: needed / steps,
                extrapolated,
            })
        })
        .collect()
}

/// Steps at which a falling curve reaches `loss`: interpolated in log steps between the two
/// evaluations around it, or past the last by the power law `loss ∝ steps^b` through the last
/// two; NaN above the curve's start or when its end does not fall.
fn steps_to_reach(curve: &[(f64, f64)], loss: f64) -> (f64, bool) {
    for pair in curve.windows(2) {
        let ((s0, l0), (s1, l1)) = (pair[0], pair[1]);
        if l0 >= loss && loss >= l1 && l0 > l1 {
            let f = (l0 - loss) / (l0 - l1);
            return ((s0.ln() + f * (s1.ln() - s0.ln())).exp(), false);
        }
    }
    let &[.., (s0, l0), (s1, l1)] = curve else {
        return (f64::NAN, false);
    };
    if loss > curve[0].1 || l1 >= l0 || loss <= 0.0 {
        return (f64::NAN, false);
    }
    let slope = (l1.ln() - l0.ln()) / (s1.ln() - s0.ln());
    ((s1.ln() + (loss.ln() - l1.ln()) / slope).exp(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_below_the_baselines_end_is_extrapolated_by_a_power_law() {
        // loss = 10·steps^(-1/2): 100 → 1.0, 400 → 0.5; 0.25 is reached at 1,600 steps.
        let (steps, extrapolated) = steps_to_reach(&[(100.0, 1.0), (400.0, 0.5)], 0.25);
        assert!((steps - 1600.0).abs() < 1e-6 && extrapolated, "{steps}");
    }

    #[test]
    fn a_loss_the_baseline_beat_early_is_less_compute() {
        let (steps, extrapolated) = steps_to_reach(&[(100.0, 4.0), (200.0, 3.0)], 4.0);
        assert!((steps - 100.0).abs() < 1e-9 && !extrapolated, "{steps}");
        assert!(
            steps_to_reach(&[(100.0, 4.0), (200.0, 3.0)], 4.5)
                .0
                .is_nan()
        );
        assert!(
            steps_to_reach(&[(100.0, 3.0), (200.0, 3.5)], 2.0)
                .0
                .is_nan()
        );
    }
}
