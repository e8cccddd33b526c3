//! Rotary position embeddings at per-token positions, applied in place; the backward pass is the
//! inverse rotation of the gradient.
//!
//! The composed version (gather the tables, split the halves, four products, concatenate) makes
//! about eight passes over the queries and keys each way; this is one.

use rayon::prelude::*;

/// Tokens handed to one rayon task.
const TOKENS_PER_TASK: usize = 64;

/// Cosine and sine tables, `[max_positions, half]` row-major, `half = head_dim / 2`.
#[derive(Debug, Clone)]
pub struct RopeTables {
    /// Half the head size: the number of rotated pairs.
    pub half: usize,
    /// `cos(p · θ_i)`.
    pub cos: std::sync::Arc<[f32]>,
    /// `sin(p · θ_i)`.
    pub sin: std::sync::Arc<[f32]>,
}

impl RopeTables {
    /// Positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.len() / self.half
    }
}

/// Rotates every head of every token of `x` (`[tokens, heads, 2 · half]` row-major) by the angles
/// of its token's position, `rotate_half` convention: pairs `(i, i + half)`. With `inverse`, rotates
/// the other way (the transpose, used for gradients).
///
/// # Panics
/// When `x` is not `positions.len()` tokens of whole heads, or a position is beyond the tables.
pub fn rotate(x: &mut [f32], positions: &[u32], tables: &RopeTables, inverse: bool) {
    let (half, tokens) = (tables.half, positions.len());
    assert!(
        tokens > 0 && x.len().is_multiple_of(tokens * 2 * half),
        "rope: {} values are not {tokens} tokens of heads of {}",
        x.len(),
        2 * half
    );
    if let Some(p) = positions
        .iter()
        .find(|p| **p as usize >= tables.max_positions())
    {
        panic!(
            "rope: position {p} is beyond the {} the tables cover",
            tables.max_positions()
        );
    }
    let per_token = x.len() / tokens;
    let sign = if inverse { -1.0f32 } else { 1.0 };
    x.par_chunks_mut(per_token * TOKENS_PER_TASK)
        .enumerate()
        .for_each(|(chunk, x)| {
            for (i, token) in x.chunks_exact_mut(per_token).enumerate() {
                let p = positions[chunk * TOKENS_PER_TASK + i] as usize;
                let cos = &tables.cos[p * half..(p + 1) * half];
                let sin = &tables.sin[p * half..(p + 1) * half];
                for head in token.chunks_exact_mut(2 * half) {
                    let (x1, x2) = head.split_at_mut(half);
                    for (((a, b), c), s) in x1.iter_mut().zip(x2.iter_mut()).zip(cos).zip(sin) {
                        let s = sign * s;
                        (*a, *b) = (*a * c - *b * s, *b * c + *a * s);
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_undoes_the_rotation_which_keeps_norms() {
        let _rng = crate::test_rng::lock();
        let tables = RopeTables {
            half: 2,
            cos: vec![1.0, 1.0, 0.6, 0.8].into(),
            sin: vec![0.0, 0.0, 0.8, 0.6].into(),
        };
        // Two tokens (positions 0 and 1) of two heads of size 4.
        let x: Vec<f32> = (0..16).map(|v| v as f32 - 5.0).collect();
        let mut y = x.clone();
        rotate(&mut y, &[0, 1], &tables, false);
        assert_eq!(y[..8], x[..8], "position 0 is the identity");
        // Pair (x[8], x[10]) at angle with cos 0.6, sin 0.8.
        assert!((y[8] - (x[8] * 0.6 - x[10] * 0.8)).abs() < 1e-6);
        assert!((y[10] - (x[10] * 0.6 + x[8] * 0.8)).abs() < 1e-6);
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((norm(&y) - norm(&x)).abs() < 1e-3);
        rotate(&mut y, &[0, 1], &tables, true);
        assert!(y.iter().zip(&x).all(|(a, b)| (a - b).abs() < 1e-5));
    }
}
