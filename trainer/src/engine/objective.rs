//! What a training step minimises: the [`Objective`] the loop is given.
//!
//! The loop ([`crate::engine::train`]) owns everything that does not change between stages (sampling,
//! accumulation, clipping, the optimizer, checkpoints); an objective only turns one micro-batch into a
//! scalar loss on the model being trained. Pre-training uses [`CrossEntropy`]; distillation (KL to a
//! teacher's logits, run through [`crate::inference::Inference`]), and quantization-aware training plug
//! in here.

use burn::tensor::{Int, Tensor};

use crate::data::sampler::Batch;
use crate::kernels;
use crate::model::{Model, ModelInput};

/// One micro-batch as the objective sees it: the sampler's batch and its tensors on the training
/// device.
#[derive(Debug)]
pub struct MicroBatch<'a> {
    /// The packed sequences (token ids, positions, domains), for objectives that need more than the
    /// tensors (a teacher's forward pass, per-domain weighting).
    pub batch: &'a Batch,
    /// Model input on the training device.
    pub input: ModelInput,
    /// Target ids, `[batch · seq]`.
    pub targets: Tensor<1, Int>,
}

/// A training loss.
///
/// Implementors: [`CrossEntropy`]; DoReMi's excess-loss objective (`mixlab-simulator`). Called by
/// [`crate::engine::train`] once per micro-batch.
pub trait Objective {
    /// The scalar loss of one micro-batch (a mean over its target tokens), on the autodiff model;
    /// the loop backpropagates it.
    ///
    /// # Shapes
    /// Output `[1]`.
    fn loss(&self, model: &Model, micro: MicroBatch<'_>) -> Tensor<1>;

    /// [`Objective::loss`], with the final hidden states `[batch, seq, d_model]` of the model being
    /// trained when the objective forms them, for hooks that read activations
    /// ([`crate::engine::hooks::Hook::wants_activations`]); `None` by default.
    fn loss_with_hidden(
        &self,
        model: &Model,
        micro: MicroBatch<'_>,
    ) -> (Tensor<1>, Option<Tensor<3>>) {
        (self.loss(model, micro), None)
    }

    /// What the objective carries from one step to the next (DoReMi's domain weights), saved with
    /// every checkpoint so that a resumed run continues it; stateless objectives keep `None`.
    fn state(&self) -> Option<serde_json::Value> {
        None
    }

    /// Takes back the state [`Objective::state`] saved in the checkpoint a run resumes from.
    ///
    /// # Errors
    /// Why the saved state does not fit this objective.
    fn restore(&self, _state: Option<serde_json::Value>) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Next-token cross-entropy, the pre-training objective.
///
/// # Example
/// ```
/// use burn::tensor::Device;
/// use mixlab_trainer::config::Preset;
/// use mixlab_trainer::model::input::to_model_input;
/// use mixlab_trainer::model::Model;
/// use mixlab_trainer::engine::objective::{CrossEntropy, MicroBatch, Objective};
/// use mixlab_trainer::data::store::DomainDocs;
/// use mixlab_trainer::data::sampler::MixtureSampler;
/// let config = Preset::Tiny.config(32);
/// let device = Device::flex();
/// let model = Model::new(&config, &device);
/// let docs = vec![DomainDocs::from_tokens("a", vec![vec![1, 2, 3]])];
/// let batch = MixtureSampler::new(docs, vec![1.0], 6, 0, 0, false)?.next_batch(2)?;
/// let (input, targets) = to_model_input(&batch, &config, false, &device);
/// let loss = CrossEntropy.loss(&model, MicroBatch { batch: &batch, input, targets });
/// assert!((loss.into_scalar::<f32>() - 32f32.ln()).abs() < 1.0);
/// # Ok::<(), mixlab_trainer::error::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CrossEntropy;

impl Objective for CrossEntropy {
    fn loss(&self, model: &Model, micro: MicroBatch<'_>) -> Tensor<1> {
        model.token_losses(&micro.input, micro.targets).mean()
    }

    /// The same loss and graph as [`Objective::loss`] on the autodiff model.
    fn loss_with_hidden(
        &self,
        model: &Model,
        micro: MicroBatch<'_>,
    ) -> (Tensor<1>, Option<Tensor<3>>) {
        let hidden = model.hidden(&micro.input);
        let logits = model.logits(hidden.clone());
        let loss = kernels::cross_entropy(logits, micro.targets).mean();
        (loss, Some(hidden))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::config::Preset;
    use crate::data::sampler::MixtureSampler;
    use crate::data::store::DomainDocs;
    use crate::inference::Inference;
    use crate::model::input::to_model_input;

    #[test]
    fn cross_entropy_is_the_mean_token_loss_of_the_inference_path() {
        let _rng = crate::test_rng::lock();
        let config = Preset::Tiny.config(40);
        let device = Device::flex().autodiff();
        device.seed(7);
        let model = Model::new(&config, &device);
        let docs = vec![DomainDocs::from_tokens(
            "a",
            vec![vec![3, 9, 27, 1, 5], vec![2, 4]],
        )];
        let batch = MixtureSampler::new(docs, vec![1.0], 8, 0, 0, false)
            .unwrap()
            .next_batch(3)
            .unwrap();
        let (input, targets) = to_model_input(&batch, &config, false, &device);
        let loss = CrossEntropy
            .loss(
                &model,
                MicroBatch {
                    batch: &batch,
                    input,
                    targets,
                },
            )
            .into_scalar::<f32>();
        let plain = Inference::of_trained(&model, &config).token_losses(&batch, false);
        let mean = plain.iter().sum::<f32>() / plain.len() as f32;
        assert!(
            (loss - mean).abs() < 1e-5,
            "autodiff {loss} vs inference {mean}"
        );
    }
}
