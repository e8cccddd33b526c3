//! Per-domain evaluation loss on held-out splits, without autodiff.

use mixlab_artefacts::eval::DomainLoss;

use crate::config::TrainConfig;
use crate::inference::Inference;
use crate::sampler::{DomainDocs, MixtureSampler};

/// The seed of the held-out documents' order, the same for every run.
pub const EVAL_SEED: u64 = 0;

/// Evaluates the model on each domain's documents of one split (`valid` or `probe`).
///
/// Each domain is packed like training data (same sequence length) into at most
/// `train.eval_sequences` sequences, fewer when the split holds fewer tokens, in an order seeded with
/// [`EVAL_SEED`] (not the training seed: runs that differ only in their seed are scored on the same
/// tokens). Domains without documents in the split are left out.
pub fn evaluate(
    inference: &Inference,
    train: &TrainConfig,
    split: &str,
    domains: &[DomainDocs],
    eos: u32,
) -> Vec<DomainLoss> {
    let mut out = Vec::new();
    for docs in domains {
        if docs.docs.is_empty() {
            continue;
        }
        let tokens = docs.token_count() as usize + docs.docs.len();
        let n_seq = tokens
            .div_ceil(train.seq_len + 1)
            .clamp(1, train.eval_sequences.max(1));
        let Ok(mut sampler) = MixtureSampler::new(
            vec![docs.clone()],
            vec![1.0],
            train.seq_len,
            eos,
            EVAL_SEED,
            train.document_mask,
        ) else {
            continue;
        };
        let (mut sum, mut count) = (0.0f64, 0u64);
        let mut remaining = n_seq;
        while remaining > 0 {
            let b = remaining.min(train.batch_size);
            remaining -= b;
            let losses = inference.token_losses(&sampler.next_batch(b), train.document_mask);
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
