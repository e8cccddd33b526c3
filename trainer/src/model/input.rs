//! Turning sampler batches into model inputs on a device.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::ModelConfig;
use crate::data::sampler::Batch;
use crate::kernels::Positions;
use crate::model::ModelInput;
use crate::model::mask::AttentionMasks;

/// Model input and flattened targets (`[batch · seq]`) of a batch.
///
/// With `document_mask`, attention stays within each packed document (the sampler then also
/// restarts positions per document).
pub fn to_model_input(
    batch: &Batch,
    config: &ModelConfig,
    document_mask: bool,
    device: &Device,
) -> (ModelInput, Tensor<1, Int>) {
    let (b, t) = (batch.batch_size, batch.seq_len);
    let ids = |v: &[u32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<i64>>();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids(&batch.inputs), [b, t]), device);
    let positions = Positions::new(batch.positions.clone());
    let targets =
        Tensor::<1, Int>::from_data(TensorData::new(ids(&batch.targets), [b * t]), device);
    let segments = document_mask.then_some(batch.segments.as_slice());
    let masks = AttentionMasks::new(b, t, config.window, segments);
    (
        ModelInput {
            tokens,
            positions,
            masks,
        },
        targets,
    )
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use crate::config::Preset;
    use crate::data::sampler::MixtureSampler;
    use crate::data::store::DomainDocs;
    use crate::inference::Inference;
    use crate::model::Model;

    /// RoPE makes attention scores depend on query−key distances only, so under document-causal
    /// masks running positions change nothing: implicit positional distillation has to pack
    /// with plain causal attention (across documents) for long distances to occur at all.
    #[test]
    fn under_document_masks_running_positions_give_the_same_logits_as_restarted_ones() {
        let _rng = crate::test_rng::lock();
        let config = Preset::Tiny.config(40);
        let docs: Vec<Vec<u32>> = (0..6)
            .map(|d| (0..9 + d).map(|t| 1 + (t * 7 + d * 3) % 38).collect())
            .collect();
        let batch = |restart| {
            let domains = vec![DomainDocs::from_tokens("a", docs.clone())];
            MixtureSampler::new(domains, vec![1.0], 48, 39, 0, restart)
                .unwrap()
                .next_batch(2)
                .unwrap()
        };
        let (restarted, running) = (batch(true), batch(false));
        assert_eq!(restarted.inputs, running.inputs);
        assert_ne!(restarted.positions, running.positions);
        let model = Inference::of_trained(&Model::new(&config, &Device::flex()), &config);
        let logits = |b, document_mask| -> Vec<f32> {
            model
                .batch_logits(b, document_mask)
                .into_data()
                .try_to_vec()
                .unwrap()
        };
        let (a, b) = (logits(&restarted, true), logits(&running, true));
        let largest = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(largest < 1e-3, "document masks: {largest}");
        // Without document masks attention crosses documents and the positions matter.
        let (a, b) = (logits(&restarted, false), logits(&running, false));
        let largest = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(largest > 1e-3, "causal packing: {largest}");
    }
}
