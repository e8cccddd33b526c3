//! Turning sampler batches into model inputs on a device.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::ModelConfig;
use crate::kernels::Positions;
use crate::mask::AttentionMasks;
use crate::model::ModelInput;
use crate::sampler::Batch;

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
