//! Rotary position embeddings at arbitrary per-token positions.
//!
//! burn's `RotaryEncoding` takes one contiguous start offset for the whole batch; packed documents
//! with running positions (positions restart at each document) need a position per token, so the
//! tables are gathered by position here. Convention: `rotate_half` (first and second halves of the
//! head dimension form the pairs), as in Llama's Hugging Face implementation.

use std::sync::Arc;

use burn::module::Module;
use burn::tensor::Tensor;

use crate::kernels::{self, Positions, RopeTables};

/// Cosine and sine tables for positions `0..max_positions`, host-side constants (not parameters,
/// not saved in checkpoints: they are rebuilt from the config).
#[derive(Module, Debug)]
pub struct Rope {
    #[module(skip)]
    tables: RopeTables,
}

impl Rope {
    /// Tables for positions `0..max_positions` with base `theta`: angle `p · θ^(-2i/head_dim)`.
    pub fn new(head_dim: usize, max_positions: usize, theta: f64) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        for p in 0..max_positions {
            for i in 0..half {
                let inv_freq = theta.powf(-2.0 * i as f64 / head_dim as f64);
                let angle = p as f64 * inv_freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self {
            tables: RopeTables {
                half,
                cos: Arc::from(cos),
                sin: Arc::from(sin),
            },
        }
    }

    /// Rotates `x` by the angles of `positions`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, heads, head_dim]`
    /// - `positions`: `batch · seq` positions, each below `max_positions`
    /// - output: like `x`
    pub fn apply(&self, x: Tensor<4>, positions: &Positions) -> Tensor<4> {
        kernels::rope(x, positions, &self.tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn rotation_preserves_norm_and_position_zero_is_identity() {
        let _rng = crate::test_rng::lock();
        let device = Device::flex();
        let rope = Rope::new(8, 16, 10_000.0);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                (0..32).map(|v| v as f32 * 0.1).collect::<Vec<_>>(),
                [1, 4, 1, 8],
            ),
            &device,
        );
        let y = rope.apply(x.clone(), &Positions::new(vec![0, 1, 5, 15]));
        let norms =
            |t: Tensor<4>| -> Vec<f32> { t.square().sum_dim(3).into_data().try_to_vec().unwrap() };
        for (a, b) in norms(x.clone()).iter().zip(&norms(y.clone())) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        let x0: Vec<f32> = x.narrow(1, 0, 1).into_data().try_to_vec().unwrap();
        let y0: Vec<f32> = y.narrow(1, 0, 1).into_data().try_to_vec().unwrap();
        assert_eq!(x0, y0);
    }
}
