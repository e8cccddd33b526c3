//! Per-domain evaluation loss on held-out splits, without autodiff.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::config::{ModelConfig, TrainConfig};
use crate::input::to_model_input;
use crate::model::Model;
use crate::sampler::{DomainDocs, MixtureSampler};

/// Mean loss of one domain on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainLoss {
    /// Domain name.
    pub domain: String,
    /// `valid` or `probe`.
    pub split: String,
    /// Mean token cross-entropy (nats).
    pub loss: f64,
    /// Tokens evaluated.
    pub tokens: u64,
}

impl DomainLoss {
    /// Perplexity `exp(loss)`.
    pub fn perplexity(&self) -> f64 {
        self.loss.exp()
    }
}

/// Evaluates `model` (a plain model from `valid()`, on a plain device) on each domain's documents.
///
/// Each domain is packed like training data (same sequence length, seeded order) into at most
/// `train.eval_sequences` sequences, fewer when the split holds fewer tokens. Domains without
/// documents in the split are left out.
pub fn evaluate(
    model: &Model,
    model_config: &ModelConfig,
    train: &TrainConfig,
    split: &str,
    domains: &[DomainDocs],
    eos: u32,
    device: &Device,
) -> Vec<DomainLoss> {
    let mut out = Vec::new();
    for docs in domains {
        let tokens: usize = docs.docs.iter().map(|d| d.len() + 1).sum();
        if docs.docs.is_empty() {
            continue;
        }
        let n_seq = tokens
            .div_ceil(train.seq_len + 1)
            .clamp(1, train.eval_sequences.max(1));
        let Ok(mut sampler) = MixtureSampler::new(
            vec![docs.clone()],
            vec![1.0],
            train.seq_len,
            eos,
            train.seed,
            train.document_mask,
        ) else {
            continue;
        };
        let (mut sum, mut count) = (0.0f64, 0u64);
        let mut remaining = n_seq;
        while remaining > 0 {
            let b = remaining.min(train.batch_size);
            remaining -= b;
            let batch = sampler.next_batch(b);
            let (input, targets) =
                to_model_input(&batch, model_config, train.document_mask, device);
            let losses: Vec<f32> = model
                .token_losses(&input, targets)
                .into_data()
                .try_to_vec()
                .expect("token losses are f32");
            sum += losses.iter().map(|&l| f64::from(l)).sum::<f64>();
            count += losses.len() as u64;
        }
        out.push(DomainLoss {
            domain: docs.name.clone(),
            split: split.to_owned(),
            loss: sum / count.max(1) as f64,
            tokens: count,
        });
    }
    out
}
