//! DoReMi (Xie et al. 2023, "DoReMi: Optimizing Data Mixtures Speeds Up Language Model
//! Pretraining"), the classic single-proxy baseline of the ablation: a proxy trained with group DRO
//! against a reference model, whose domain weights follow the per-domain excess loss.
//!
//! At every micro-batch (Algorithm 1 of the paper): the excess loss of domain d is
//! `λ_d = mean over d's tokens of max(ℓ_proxy − ℓ_reference, 0)`; the weights take an
//! exponentiated-gradient step `α ← normalize(α·exp(η·λ))`, smoothed `α ← (1 − c)·α + c/k`; the proxy
//! then descends `Σ_d α_d · mean loss of d's tokens`. The mixture DoReMi recommends is the average of
//! α over all updates. Here the reference is the uniform simulation proxy (`simulate`'s own run), and
//! the objective plugs into the one training loop; its weights travel with every checkpoint
//! ([`Objective::state`]), so a killed DoReMi run resumes where it stopped.

use std::cell::RefCell;

use burn::tensor::{Tensor, TensorData};
use mixlab_trainer::data::sampler::Batch;
use mixlab_trainer::engine::objective::{MicroBatch, Objective};
use mixlab_trainer::inference::Inference;
use mixlab_trainer::model::Model;
use serde::{Deserialize, Serialize};

use crate::config::DoremiConfig;

/// DoReMi's domain weights and their running sum.
///
/// # Example
/// ```
/// use mixlab_simulator::config::DoremiConfig;
/// use mixlab_simulator::doremi::GroupWeights;
/// let mut weights = GroupWeights::uniform(3);
/// // The second domain's loss is furthest above the reference's: it gains weight.
/// weights.update(&[0.0, 2.0, 0.5], &DoremiConfig::default());
/// assert!(weights.weights[1] > weights.weights[2] && weights.weights[2] > weights.weights[0]);
/// assert!((weights.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
/// assert_eq!(weights.average(), weights.weights);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupWeights {
    /// The current weights α (sum 1).
    pub weights: Vec<f64>,
    /// Sum of α over all updates.
    pub sum: Vec<f64>,
    /// Updates done.
    pub updates: u64,
}

impl GroupWeights {
    /// Equal weights over `domains` domains, no update yet.
    pub fn uniform(domains: usize) -> Self {
        Self {
            weights: vec![1.0 / domains as f64; domains],
            sum: vec![0.0; domains],
            updates: 0,
        }
    }

    /// One exponentiated-gradient step on the per-domain excess losses, then smoothing towards
    /// uniform. Computed in log space, so large steps cannot overflow.
    pub fn update(&mut self, excess: &[f64], config: &DoremiConfig) {
        let k = self.weights.len() as f64;
        let logits: Vec<f64> = self
            .weights
            .iter()
            .zip(excess)
            .map(|(w, l)| w.ln() + config.step_size * l)
            .collect();
        let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let unnormalized: Vec<f64> = logits.iter().map(|l| (l - top).exp()).collect();
        let total: f64 = unnormalized.iter().sum();
        for ((w, u), s) in self
            .weights
            .iter_mut()
            .zip(&unnormalized)
            .zip(&mut self.sum)
        {
            *w = (1.0 - config.smoothing) * u / total + config.smoothing / k;
            *s += *w;
        }
        self.updates += 1;
    }

    /// The weights DoReMi recommends: the mean of α over all updates (uniform before any).
    pub fn average(&self) -> Vec<f64> {
        if self.updates == 0 {
            return self.weights.clone();
        }
        self.sum.iter().map(|s| s / self.updates as f64).collect()
    }
}

/// Per-domain excess loss of a batch: the mean over each domain's target tokens of
/// `max(proxy − reference, 0)` (0 for a domain without tokens in the batch), and the domains'
/// token counts.
///
/// # Example
/// ```
/// use mixlab_simulator::doremi::domain_excess;
/// // Two sequences of two tokens: domain 1, then domain 0.
/// let (excess, tokens) = domain_excess(&[1, 0], 2, &[3.0, 1.0, 2.0, 2.0], &[1.0, 2.0, 1.5, 1.0], 3);
/// assert_eq!(excess, vec![0.75, 1.0, 0.0]); // token excesses (0.5, 1.0), (2.0, clipped 0)
/// assert_eq!(tokens, vec![2, 2, 0]);
/// ```
pub fn domain_excess(
    sequence_domains: &[usize],
    seq_len: usize,
    proxy: &[f32],
    reference: &[f32],
    domains: usize,
) -> (Vec<f64>, Vec<usize>) {
    let mut sums = vec![0.0f64; domains];
    let mut tokens = vec![0usize; domains];
    for (row, &domain) in sequence_domains.iter().enumerate() {
        let span = row * seq_len..(row + 1) * seq_len;
        sums[domain] += proxy[span.clone()]
            .iter()
            .zip(&reference[span])
            .map(|(p, r)| f64::from((p - r).max(0.0)))
            .sum::<f64>();
        tokens[domain] += seq_len;
    }
    let excess = sums
        .iter()
        .zip(&tokens)
        .map(|(s, &n)| if n == 0 { 0.0 } else { s / n as f64 })
        .collect();
    (excess, tokens)
}

/// The DoReMi proxy's training objective: `Σ_d α_d · mean loss of domain d's tokens`, with α
/// updated from the excess loss over `reference` before every micro-batch.
///
/// # Example
/// ```
/// use burn::tensor::Device;
/// use mixlab_simulator::config::DoremiConfig;
/// use mixlab_simulator::doremi::ExcessLoss;
/// use mixlab_trainer::config::Preset;
/// use mixlab_trainer::inference::Inference;
/// use mixlab_trainer::model::input::to_model_input;
/// use mixlab_trainer::model::Model;
/// use mixlab_trainer::engine::objective::{MicroBatch, Objective};
/// use mixlab_trainer::data::store::DomainDocs;
/// use mixlab_trainer::data::sampler::MixtureSampler;
/// let config = Preset::Tiny.config(16);
/// let device = Device::flex();
/// let reference = Inference::of_trained(&Model::new(&config, &device), &config);
/// let objective = ExcessLoss::new(reference, 2, false, DoremiConfig::default());
/// let docs = vec![
///     DomainDocs::from_tokens("a", vec![vec![1, 2, 3, 4, 5]]),
///     DomainDocs::from_tokens("b", vec![vec![9, 8, 7, 6, 5]]),
/// ];
/// let batch = MixtureSampler::new(docs, vec![0.5, 0.5], 4, 0, 0, false)?.next_batch(2)?;
/// let (input, targets) = to_model_input(&batch, &config, false, &device);
/// let model = Model::new(&config, &device);
/// objective.loss(&model, MicroBatch { batch: &batch, input, targets });
/// // One micro-batch, one update of the domain weights; their state travels with checkpoints.
/// assert_eq!(objective.weights().updates, 1);
/// assert!(objective.state().is_some());
/// # Ok::<(), mixlab_trainer::error::Error>(())
/// ```
pub struct ExcessLoss {
    reference: Inference,
    document_mask: bool,
    config: DoremiConfig,
    weights: RefCell<GroupWeights>,
}

impl ExcessLoss {
    /// The objective over `domains` domains, starting from equal weights; `document_mask` as the
    /// run trains (the reference scores the batches the same way).
    pub fn new(
        reference: Inference,
        domains: usize,
        document_mask: bool,
        config: DoremiConfig,
    ) -> Self {
        Self {
            reference,
            document_mask,
            config,
            weights: RefCell::new(GroupWeights::uniform(domains)),
        }
    }

    /// The domain weights so far.
    pub fn weights(&self) -> GroupWeights {
        self.weights.borrow().clone()
    }
}

impl Objective for ExcessLoss {
    fn loss(&self, model: &Model, micro: MicroBatch<'_>) -> Tensor<1> {
        let batch = micro.batch;
        let losses = model.token_losses(&micro.input, micro.targets);
        let proxy: Vec<f32> = losses
            .clone()
            .into_data()
            .try_to_vec()
            .expect("token losses are f32");
        let reference = self.reference.token_losses(batch, self.document_mask);
        let mut weights = self.weights.borrow_mut();
        let domains = weights.weights.len();
        let (excess, tokens) =
            domain_excess(&batch.domains, batch.seq_len, &proxy, &reference, domains);
        weights.update(&excess, &self.config);
        let scale = token_scale(batch, &weights.weights, &tokens);
        let n = scale.len();
        let scale = Tensor::<1>::from_data(TensorData::new(scale, [n]), &losses.device());
        (losses * scale).sum()
    }

    fn state(&self) -> Option<serde_json::Value> {
        Some(serde_json::to_value(&*self.weights.borrow()).expect("plain numbers serialize"))
    }

    fn restore(&self, state: Option<serde_json::Value>) -> Result<(), String> {
        let state = state.ok_or(
            "the checkpoint has no DoReMi domain weights (not a DoReMi run); remove the run directory to start over",
        )?;
        let restored: GroupWeights = serde_json::from_value(state)
            .map_err(|e| format!("malformed DoReMi domain weights: {e}"))?;
        let mut weights = self.weights.borrow_mut();
        if restored.weights.len() != weights.weights.len()
            || restored.sum.len() != restored.weights.len()
        {
            return Err(format!(
                "DoReMi domain weights for {} domains, but the run has {}",
                restored.weights.len(),
                weights.weights.len()
            ));
        }
        *weights = restored;
        Ok(())
    }
}

/// Each target token's factor in the loss: `α_d / tokens_d` for its sequence's domain d, so the
/// sum over tokens is `Σ_d α_d · mean loss of d`.
fn token_scale(batch: &Batch, weights: &[f64], tokens: &[usize]) -> Vec<f32> {
    batch
        .domains
        .iter()
        .flat_map(|&d| {
            let factor = (weights[d] / tokens[d] as f64) as f32;
            std::iter::repeat_n(factor, batch.seq_len)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use mixlab_trainer::config::Preset;
    use mixlab_trainer::data::sampler::MixtureSampler;
    use mixlab_trainer::data::store::DomainDocs;
    use mixlab_trainer::model::input::to_model_input;

    use super::*;

    #[test]
    fn smoothing_keeps_every_domain_above_its_floor_and_the_average_tracks_the_updates() {
        let config = DoremiConfig {
            step_size: 50.0,
            smoothing: 0.1,
        };
        let mut weights = GroupWeights::uniform(4);
        for _ in 0..20 {
            weights.update(&[5.0, 0.0, 0.0, 0.0], &config);
        }
        assert!(weights.weights[1..].iter().all(|&w| w >= 0.1 / 4.0 - 1e-12));
        assert!((weights.weights[0] - (0.9 + 0.025)).abs() < 1e-9);
        let average = weights.average();
        assert!((average.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(average[0] > 0.9 && average[0] < weights.weights[0] + 1e-12);
    }

    fn two_domain_batch() -> Batch {
        let docs = vec![
            DomainDocs::from_tokens("a", vec![vec![1, 2, 3, 4, 5, 6, 7]]),
            DomainDocs::from_tokens("b", vec![vec![9, 8, 7, 6, 5, 4, 3]]),
        ];
        MixtureSampler::new(docs, vec![0.5, 0.5], 6, 0, 0, false)
            .unwrap()
            .next_batch(4)
            .unwrap()
    }

    #[test]
    fn the_loss_is_the_weighted_sum_of_domain_means_after_the_update() {
        let config = Preset::Tiny.config(16);
        let device = Device::flex().autodiff();
        device.seed(3);
        let model = Model::new(&config, &device);
        // Another initialization as the reference, so excess losses differ between domains.
        device.seed(4);
        let reference = Model::new(&config, &device);
        let reference = Inference::of_trained(&reference, &config);
        let batch = two_domain_batch();
        let objective = ExcessLoss::new(reference, 2, false, DoremiConfig::default());
        let (input, targets) = to_model_input(&batch, &config, false, &device);
        let loss = objective
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
        let alpha = objective.weights().weights;
        let mut expected = 0.0;
        for (d, weight) in alpha.iter().enumerate() {
            let rows: Vec<usize> = (0..4).filter(|&r| batch.domains[r] == d).collect();
            let tokens: Vec<f32> = rows
                .iter()
                .flat_map(|&r| plain[r * 6..(r + 1) * 6].to_vec())
                .collect();
            expected += weight * f64::from(tokens.iter().sum::<f32>()) / tokens.len() as f64;
        }
        assert!(
            (f64::from(loss) - expected).abs() < 1e-4,
            "{loss} vs {expected}"
        );
        assert_eq!(objective.weights().updates, 1);
        assert_ne!(alpha[0], alpha[1]);
    }

    #[test]
    fn the_weights_survive_a_checkpoint_and_a_foreign_state_is_refused() {
        let config = Preset::Tiny.config(16);
        let device = Device::flex();
        let reference = || Inference::of_trained(&Model::new(&config, &device), &config);
        let first = ExcessLoss::new(reference(), 2, false, DoremiConfig::default());
        first
            .weights
            .borrow_mut()
            .update(&[1.0, 0.0], &DoremiConfig::default());
        let resumed = ExcessLoss::new(reference(), 2, false, DoremiConfig::default());
        resumed.restore(first.state()).unwrap();
        assert_eq!(resumed.weights(), first.weights());
        let three = ExcessLoss::new(reference(), 3, false, DoremiConfig::default());
        assert!(
            three
                .restore(first.state())
                .unwrap_err()
                .contains("2 domains")
        );
        assert!(
            three
                .restore(None)
                .unwrap_err()
                .contains("not a DoReMi run")
        );
    }
}
