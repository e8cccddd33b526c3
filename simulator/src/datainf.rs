//! DataInf's influence of training documents on a target (Kwon et al. 2024), on gradients of one
//! parameter block.
//!
//! The influence of up-weighting document `x` on the target's loss is `−vᵀ H⁻¹ g_x`, with `v` the
//! mean target gradient and `H` the loss Hessian. DataInf approximates `H⁻¹` by the mean of the
//! inverses of the damped per-sample curvatures `λI + gᵢgᵢᵀ` (closed form by Sherman–Morrison):
//!
//! `H⁻¹v ≈ (1/(nλ)) Σᵢ [v − (v·gᵢ)/(λ + ‖gᵢ‖²) · gᵢ]`, with `λ = 0.1 · mean(g²)`.
//!
//! The utility of `x` is `u(x) = (H⁻¹v) · g_x`: positive when a gradient step on `x` lowers the
//! target's loss.

use ndarray::{Array1, ArrayView1, ArrayView2, Axis};

/// The damping's share of the mean squared gradient entry (DataInf's default).
pub const DAMPING_SCALE: f64 = 0.1;

/// The utilities of every row of `train` (one document's gradient each, `[n, p]`) for the target
/// whose mean gradient is `target` (`[p]`), with the training rows themselves as DataInf's sample.
///
/// Returns zeros when every training gradient is zero (nothing to estimate).
///
/// # Panics
/// When the widths differ or `train` has no rows.
///
/// # Example
/// ```
/// use ndarray::array;
/// use mixlab_simulator::datainf::utilities;
/// // Two documents: one pushes along the target's gradient, one against it.
/// let train = array![[1.0f32, 0.0], [-1.0, 0.0]];
/// let u = utilities(train.view(), array![1.0f32, 0.0].view());
/// assert!(u[0] > 0.0 && u[1] < 0.0);
/// ```
pub fn utilities(train: ArrayView2<f32>, target: ArrayView1<f32>) -> Array1<f64> {
    weighted_utilities(train, Array1::ones(train.nrows()).view(), target)
}

/// [`utilities`] with the sample's curvatures averaged with `weights` (one per row, e.g. each
/// document's tokens, so that the estimate of `H` counts every trained token once, as the loss
/// does): `H⁻¹v ≈ Σᵢ (wᵢ/W) (λI + gᵢgᵢᵀ)⁻¹ v`, `λ = 0.1 · Σᵢ wᵢ‖gᵢ‖² / (W·p)`. Integer weights give
/// the utilities of [`utilities`] with each row repeated that many times.
///
/// # Panics
/// When the widths differ, `train` has no rows, or `weights` has another length, a negative entry
/// or no positive one.
pub fn weighted_utilities(
    train: ArrayView2<f32>,
    weights: ArrayView1<f64>,
    target: ArrayView1<f32>,
) -> Array1<f64> {
    let (n, p) = train.dim();
    assert!(n > 0, "DataInf needs at least one training gradient");
    assert_eq!(p, target.len(), "gradient widths differ");
    assert_eq!(n, weights.len(), "one weight per training gradient");
    assert!(
        weights.iter().all(|&w| w >= 0.0),
        "weights are not negative"
    );
    let total = weights.sum();
    assert!(total > 0.0, "a weight is positive");
    let g = train.mapv(f64::from);
    let v = target.mapv(f64::from);
    let squared_norms: Array1<f64> = g.map_axis(Axis(1), |row| row.dot(&row));
    let lambda = DAMPING_SCALE * weights.dot(&squared_norms) / (total * p as f64);
    if lambda == 0.0 {
        return Array1::zeros(n);
    }
    let coefficients = &weights * &(g.dot(&v) / (squared_norms + lambda));
    // H⁻¹v = (1/λ)(v − (1/W) Σ wᵢ cᵢ gᵢ)
    let inverse_hvp = (&v - &(g.t().dot(&coefficients) / total)) / lambda;
    g.dot(&inverse_hvp)
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, array};

    use super::*;

    /// Solves `a · x = b` by Gaussian elimination with partial pivoting (small test systems).
    fn solve(mut a: Array2<f64>, mut b: Array1<f64>) -> Array1<f64> {
        let n = b.len();
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&i, &j| a[[i, col]].abs().total_cmp(&a[[j, col]].abs()))
                .unwrap();
            for k in 0..n {
                a.swap([col, k], [pivot, k]);
            }
            b.swap(col, pivot);
            for row in col + 1..n {
                let f = a[[row, col]] / a[[col, col]];
                for k in col..n {
                    a[[row, k]] -= f * a[[col, k]];
                }
                b[row] -= f * b[col];
            }
        }
        let mut x = Array1::zeros(n);
        for row in (0..n).rev() {
            let s: f64 = (row + 1..n).map(|k| a[[row, k]] * x[k]).sum();
            x[row] = (b[row] - s) / a[[row, row]];
        }
        x
    }

    #[test]
    fn matches_the_mean_of_explicitly_inverted_damped_curvatures() {
        let train = array![
            [0.5f32, -1.0, 0.25, 2.0],
            [1.5, 0.5, -0.75, 0.0],
            [-0.5, 1.0, 1.0, -1.0]
        ];
        let target = array![1.0f32, 0.5, -0.5, 0.25];
        let g = train.mapv(f64::from);
        let v = target.mapv(f64::from);
        let (n, p) = g.dim();
        let lambda = DAMPING_SCALE * g.iter().map(|x| x * x).sum::<f64>() / (n * p) as f64;
        let mut inverse_hvp = Array1::<f64>::zeros(p);
        for row in g.rows() {
            let outer = row
                .to_owned()
                .insert_axis(Axis(1))
                .dot(&row.to_owned().insert_axis(Axis(0)));
            let curvature = Array2::<f64>::eye(p) * lambda + outer;
            inverse_hvp = inverse_hvp + solve(curvature, v.clone()) / n as f64;
        }
        let expected = g.dot(&inverse_hvp);
        let got = utilities(train.view(), target.view());
        for (a, b) in got.iter().zip(&expected) {
            assert!(
                (a - b).abs() < 1e-9 * b.abs().max(1.0),
                "{got} vs {expected}"
            );
        }
    }

    #[test]
    fn integer_weights_count_like_repeated_rows() {
        let train = array![[0.5f32, -1.0, 0.25], [1.5, 0.5, -0.75], [-0.5, 1.0, 1.0]];
        let repeated = array![
            [0.5f32, -1.0, 0.25],
            [1.5, 0.5, -0.75],
            [1.5, 0.5, -0.75],
            [1.5, 0.5, -0.75],
            [-0.5, 1.0, 1.0]
        ];
        let target = array![1.0f32, 0.5, -0.5];
        let weighted =
            weighted_utilities(train.view(), array![1.0, 3.0, 1.0].view(), target.view());
        let plain = utilities(repeated.view(), target.view());
        for (a, b) in weighted.iter().zip([plain[0], plain[1], plain[4]]) {
            assert!(
                (a - b).abs() < 1e-9 * b.abs().max(1.0),
                "{weighted} vs {plain}"
            );
        }
        assert_ne!(weighted, utilities(train.view(), target.view()));
    }

    #[test]
    fn orthogonal_documents_have_no_utility_and_zero_gradients_give_zeros() {
        let u = utilities(
            array![[0.0f32, 3.0], [2.0, 0.0]].view(),
            array![1.0f32, 0.0].view(),
        );
        assert!(u[0].abs() < 1e-12 && u[1] > 0.0, "{u}");
        let zeros = utilities(
            Array2::<f32>::zeros((3, 2)).view(),
            array![1.0f32, 0.0].view(),
        );
        assert_eq!(zeros, Array1::<f64>::zeros(3));
    }
}
