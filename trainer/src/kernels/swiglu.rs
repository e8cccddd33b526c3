//! The SwiGLU gate `silu(a) ⊙ b`, forward and backward, one pass each way.
//!
//! The composed version (sigmoid, two products) keeps three `[tokens, ffn_hidden]` intermediates
//! per layer and runs scalar `exp`; here the backward pass overwrites the saved inputs with their
//! gradients.

use rayon::prelude::*;

use super::vecmath;

/// Elements handed to one rayon task.
const CHUNK: usize = 16 * 1024;

/// `silu(a) ⊙ b`.
///
/// # Panics
/// When the lengths differ.
pub fn forward(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "swiglu: operand sizes");
    let mut out = vec![0.0f32; a.len()];
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(out, (a, b))| vecmath::swiglu(a, b, out));
    out
}

/// `b ← silu(a) ⊙ b`, for when `b` is not needed afterwards (no backward pass).
///
/// # Panics
/// When the lengths differ.
pub fn forward_in_place(a: &[f32], b: &mut [f32]) {
    assert_eq!(a.len(), b.len(), "swiglu: operand sizes");
    b.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK))
        .for_each(|(b, a)| vecmath::swiglu_in_place(a, b));
}

/// Replaces `a` and `b` by the gradients of `Σ grad ⊙ silu(a) ⊙ b` with respect to them.
///
/// # Panics
/// When the lengths differ.
pub fn backward_in_place(a: &mut [f32], b: &mut [f32], grad: &[f32]) {
    assert!(
        a.len() == b.len() && a.len() == grad.len(),
        "swiglu backward: sizes"
    );
    a.par_chunks_mut(CHUNK)
        .zip(b.par_chunks_mut(CHUNK).zip(grad.par_chunks(CHUNK)))
        .for_each(|(a, (b, grad))| vecmath::swiglu_backward(a, b, grad));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_gradients_match_the_definition() {
        let _rng = crate::test_rng::lock();
        let a: Vec<f32> = (0..50).map(|i| i as f32 * 0.37 - 9.0).collect();
        let b: Vec<f32> = (0..50).map(|i| (i as f32).cos()).collect();
        let g: Vec<f32> = (0..50).map(|i| (i as f32 * 0.7).sin()).collect();
        let silu = |x: f64| x / (1.0 + (-x).exp());
        let out = forward(&a, &b);
        let mut gated = b.clone();
        forward_in_place(&a, &mut gated);
        assert_eq!(gated, out);
        let (mut da, mut db) = (a.clone(), b.clone());
        backward_in_place(&mut da, &mut db, &g);
        for i in 0..50 {
            let (x, y) = (a[i] as f64, b[i] as f64);
            assert!((out[i] as f64 - silu(x) * y).abs() < 1e-5);
            let h = 1e-4;
            let d_silu = (silu(x + h) - silu(x - h)) / (2.0 * h);
            assert!(
                (da[i] as f64 - g[i] as f64 * y * d_silu).abs() < 1e-4,
                "da[{i}]"
            );
            assert!(
                (db[i] as f64 - g[i] as f64 * silu(x)).abs() < 1e-5,
                "db[{i}]"
            );
        }
    }
}
