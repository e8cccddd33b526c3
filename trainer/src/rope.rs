//! Rotary position embeddings at arbitrary per-token positions.
//!
//! burn's `RotaryEncoding` takes one contiguous start offset for the whole batch; packed documents
//! with running positions (positions restart at each document) need a position per token, so the
//! tables are gathered by position here. Convention: `rotate_half` (first and second halves of the
//! head dimension form the pairs), as in Llama's Hugging Face implementation.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

/// Cosine and sine tables `[max_positions, head_dim / 2]`, stored as constants (not parameters).
#[derive(Module, Debug)]
pub struct Rope {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl Rope {
    /// Tables for positions `0..max_positions` with base `theta`: angle `p · θ^(-2i/head_dim)`.
    pub fn new(head_dim: usize, max_positions: usize, theta: f64, device: &Device) -> Self {
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
        let shape = [max_positions, half];
        Self {
            cos: Tensor::from_data(burn::tensor::TensorData::new(cos, shape), device),
            sin: Tensor::from_data(burn::tensor::TensorData::new(sin, shape), device),
        }
    }

    /// Rotates `x` by the angles of `positions`.
    ///
    /// # Shapes
    /// - `x`: `[batch, heads, seq, head_dim]`
    /// - `positions`: `[batch, seq]`, each below `max_positions`
    /// - output: like `x`
    pub fn apply(&self, x: Tensor<4>, positions: &Tensor<2, Int>) -> Tensor<4> {
        let [b, _, t, hd] = x.dims();
        let half = hd / 2;
        let flat = positions.clone().reshape([b * t]);
        let cos = self
            .cos
            .clone()
            .select(0, flat.clone())
            .reshape([b, 1, t, half]);
        let sin = self.sin.clone().select(0, flat).reshape([b, 1, t, half]);
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        let rotated_1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
        let rotated_2 = x2 * cos + x1 * sin;
        Tensor::cat(vec![rotated_1, rotated_2], 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn rotation_preserves_norm_and_position_zero_is_identity() {
        let device = Device::flex();
        let rope = Rope::new(8, 16, 10_000.0, &device);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                (0..32).map(|v| v as f32 * 0.1).collect::<Vec<_>>(),
                [1, 1, 4, 8],
            ),
            &device,
        );
        let positions =
            Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 1, 5, 15], [1, 4]), &device);
        let y = rope.apply(x.clone(), &positions);
        let nx: Vec<f32> = x
            .clone()
            .square()
            .sum_dim(3)
            .into_data()
            .try_to_vec()
            .unwrap();
        let ny: Vec<f32> = y
            .clone()
            .square()
            .sum_dim(3)
            .into_data()
            .try_to_vec()
            .unwrap();
        for (a, b) in nx.iter().zip(&ny) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        let x0: Vec<f32> = x.narrow(2, 0, 1).into_data().try_to_vec().unwrap();
        let y0: Vec<f32> = y.narrow(2, 0, 1).into_data().try_to_vec().unwrap();
        assert_eq!(x0, y0);
    }
}
