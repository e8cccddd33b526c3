//! RMSNorm over the last dimension, forward and backward, one pass over each row each way.
//!
//! The composed version (square, mean, add, sqrt, divide, scale) allocates five full-size
//! intermediates and differentiates each; here the forward pass keeps one reciprocal
//! root-mean-square per row, and the backward pass needs only the input, `gamma` and those.

use rayon::prelude::*;

use super::vecmath;

/// Rows handed to one rayon task.
const ROWS_PER_TASK: usize = 64;

/// `y = x / √(mean(x²) + eps) ⊙ gamma` per row of `gamma.len()` values; returns `y` and the
/// reciprocal root-mean-squares, one per row.
///
/// # Panics
/// When `x` is not a whole number of rows.
pub fn forward(x: &[f32], gamma: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    assert!(
        d > 0 && x.len().is_multiple_of(d),
        "rms norm: {} values are not rows of {d}",
        x.len()
    );
    let rows = x.len() / d;
    let mut y = vec![0.0f32; x.len()];
    let mut rstd = vec![0.0f32; rows];
    y.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
        .enumerate()
        .for_each(|(chunk, (y, rstd))| {
            let x = &x[chunk * ROWS_PER_TASK * d..];
            for (i, (y, r)) in y.chunks_exact_mut(d).zip(rstd).enumerate() {
                let row = &x[i * d..(i + 1) * d];
                *r = 1.0 / (vecmath::dot(row, row) / d as f32 + eps).sqrt();
                vecmath::scale_by(row, *r, gamma, y);
            }
        });
    (y, rstd)
}

/// Turns `dy` into `∂L/∂x` in place and returns `∂L/∂gamma`.
///
/// # Panics
/// When the sizes disagree.
pub fn backward_in_place(x: &[f32], gamma: &[f32], rstd: &[f32], dy: &mut [f32]) -> Vec<f32> {
    let d = gamma.len();
    assert!(
        x.len() == dy.len() && x.len() == rstd.len() * d,
        "rms norm backward: sizes"
    );
    let partials: Vec<Vec<f32>> = dy
        .par_chunks_mut(d * ROWS_PER_TASK)
        .enumerate()
        .map(|(chunk, dy)| {
            let mut d_gamma = vec![0.0f32; d];
            let first = chunk * ROWS_PER_TASK;
            for (i, dy) in dy.chunks_exact_mut(d).enumerate() {
                let row = &x[(first + i) * d..(first + i + 1) * d];
                vecmath::rms_norm_backward_row(row, dy, gamma, rstd[first + i], &mut d_gamma);
            }
            d_gamma
        })
        .collect();
    // Summed in chunk order, so the result does not depend on how rayon split the work.
    partials
        .into_iter()
        .fold(vec![0.0f32; d], |mut total, part| {
            total.iter_mut().zip(&part).for_each(|(t, p)| *t += p);
            total
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_match_finite_differences() {
        let _rng = crate::test_rng::lock();
        let d = 12;
        let x: Vec<f32> = (0..5 * d).map(|i| (i as f32 * 0.9).sin() * 2.0).collect();
        let gamma: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 * 0.1).collect();
        let w: Vec<f32> = (0..5 * d).map(|i| (i as f32 * 0.31).cos()).collect();
        let loss = |x: &[f32], gamma: &[f32]| -> f64 {
            forward(x, gamma, 1e-5)
                .0
                .iter()
                .zip(&w)
                .map(|(y, w)| (*y * *w) as f64)
                .sum()
        };
        let (y, rstd) = forward(&x, &gamma, 1e-5);
        let r0 = 1.0 / (x[..d].iter().map(|v| v * v).sum::<f32>() / d as f32 + 1e-5).sqrt();
        assert!((y[3] - x[3] * r0 * gamma[3]).abs() < 1e-5);
        let mut dx = w.clone();
        let d_gamma = backward_in_place(&x, &gamma, &rstd, &mut dx);
        let eps = 1e-3;
        for i in [0, 7, 30, 59] {
            let (mut p, mut m) = (x.clone(), x.clone());
            p[i] += eps;
            m[i] -= eps;
            let numeric = (loss(&p, &gamma) - loss(&m, &gamma)) / (2.0 * eps as f64);
            assert!(
                (numeric - dx[i] as f64).abs() < 2e-3,
                "dx[{i}]: {numeric} vs {}",
                dx[i]
            );
        }
        for j in [0, 11] {
            let (mut p, mut m) = (gamma.clone(), gamma.clone());
            p[j] += eps;
            m[j] -= eps;
            let numeric = (loss(&x, &p) - loss(&x, &m)) / (2.0 * eps as f64);
            assert!(
                (numeric - d_gamma[j] as f64).abs() < 2e-3,
                "dgamma[{j}]: {numeric} vs {}",
                d_gamma[j]
            );
        }
    }

    #[test]
    fn gamma_gradients_do_not_depend_on_the_thread_count() {
        let _rng = crate::test_rng::lock();
        let d = 16;
        let x: Vec<f32> = (0..1_000 * d).map(|i| (i as f32 * 0.013).sin()).collect();
        let gamma = vec![1.0f32; d];
        let (_, rstd) = forward(&x, &gamma, 1e-5);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut dy: Vec<f32> = (0..1_000 * d).map(|i| (i as f32 * 0.7).cos()).collect();
            pool.install(|| backward_in_place(&x, &gamma, &rstd, &mut dy))
        };
        assert_eq!(run(1), run(3));
    }
}
