//! Fake quantization of weights: symmetric, group-wise, with a straight-through estimator.
//!
//! A [`crate::model::Projection`] with a [`FakeQuant`] set rounds its weight to `bits`-bit integers
//! per group of `group` input weights (scale = max |w| / (2^(bits-1) − 1)) in the forward pass, while
//! gradients flow to the full-precision weight as if rounding were the identity. This is the step
//! quantization-aware training (QAT) takes; post-training quantization and packed int4 export build
//! on the same rounding.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Group-wise symmetric weight quantization settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeQuant {
    /// Bits per weight (4 for int4).
    pub bits: u32,
    /// Input weights sharing one scale (32 in MobileLLM-Pro's int4 scheme).
    pub group: usize,
}

impl FakeQuant {
    /// int4, groups of 32 (DESIGN.md, "Quantizer").
    pub const INT4_G32: FakeQuant = FakeQuant { bits: 4, group: 32 };

    /// The quantized weight with straight-through gradients.
    ///
    /// # Shapes
    /// - `weight`: `[d_in, d_out]` with `d_in` a multiple of `group`; output the same.
    pub fn apply(&self, weight: Tensor<2>) -> Tensor<2> {
        let [d_in, d_out] = weight.dims();
        let q_max = ((1u32 << (self.bits - 1)) - 1) as f32;
        let grouped = weight
            .clone()
            .transpose()
            .reshape([d_out, d_in / self.group, self.group]);
        let scale = grouped.clone().abs().max_dim(2).clamp_min(1e-8) / q_max;
        let quantized = (grouped / scale.clone()).round().clamp(-q_max - 1.0, q_max) * scale;
        let quantized = quantized.reshape([d_out, d_in]).transpose();
        weight.clone() + (quantized - weight).detach()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn int4_groups_hold_at_most_16_levels_and_gradients_pass_through() {
        let device = Device::flex().autodiff();
        let w =
            Tensor::<2>::random([64, 3], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let q = FakeQuant::INT4_G32.apply(w.clone());
        let values: Vec<f32> = q.clone().transpose().into_data().try_to_vec().unwrap();
        for group in values.chunks(32) {
            let mut levels: Vec<i64> = group.iter().map(|v| (v * 1e4).round() as i64).collect();
            levels.sort_unstable();
            levels.dedup();
            assert!(levels.len() <= 16, "{} levels in a group", levels.len());
        }
        let grads = q.sum().backward();
        let g: Vec<f32> = w.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
        assert!(
            g.iter().all(|v| (v - 1.0).abs() < 1e-6),
            "straight-through gradient must be 1"
        );
    }
}
