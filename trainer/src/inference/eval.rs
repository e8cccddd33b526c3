//! Per-domain evaluation loss on held-out splits, without autodiff.

use mixlab_artefacts::eval::DomainLoss;
use mixlab_artefacts::split::Split;

use crate::config::TrainConfig;
use crate::data::sampler::{Batch, MixtureSampler};
use crate::data::store::Store;
use crate::error::Result;
use crate::inference::Inference;

/// The seed of the held-out documents' order, the same for every run.
pub const EVAL_SEED: u64 = 0;

/// The batches a domain's held-out documents are scored in: packed like training data (same
/// sequence length) into at most `max_sequences` sequences, fewer when the documents hold fewer
/// tokens, in an order seeded with [`EVAL_SEED`] (not the training seed: runs that differ only in
/// their seed are scored on the same tokens), at most `train.batch_size` sequences a batch. None
/// for a domain without documents. Only the documents those sequences hold are read.
///
/// # Errors
/// A store's read error.
///
/// # Example
/// ```
/// use mixlab_trainer::config::TrainConfig;
/// use mixlab_trainer::inference::eval::held_out_batches;
/// use mixlab_trainer::data::store::DomainDocs;
/// let docs = DomainDocs::from_tokens("code", vec![vec![1; 100], vec![2; 100]]);
/// let train = TrainConfig { seq_len: 16, batch_size: 4, ..TrainConfig::default() };
/// let batches = held_out_batches(&docs.into(), &train, 10, 0)?;
/// // 202 tokens with end-of-text fill 12 sequences of 17; at most 10 are taken, 4 a batch.
/// assert_eq!(batches.iter().map(|b| b.batch_size).collect::<Vec<_>>(), [4, 4, 2]);
/// # Ok::<(), mixlab_trainer::error::Error>(())
/// ```
pub fn held_out_batches(
    docs: &Store,
    train: &TrainConfig,
    max_sequences: usize,
    eos: u32,
) -> Result<Vec<Batch>> {
    if docs.token_count() == 0 {
        return Ok(Vec::new());
    }
    let tokens = docs.token_count() + docs.documents();
    let n_seq = usize::try_from(tokens.div_ceil(train.seq_len as u64 + 1))
        .unwrap_or(usize::MAX)
        .clamp(1, max_sequences.max(1));
    let mut sampler = MixtureSampler::new(
        vec![docs.clone()],
        vec![1.0],
        train.seq_len,
        eos,
        EVAL_SEED,
        train.document_mask,
    )?;
    let batch_size = train.batch_size.max(1);
    (0..n_seq)
        .step_by(batch_size)
        .map(|first| sampler.next_batch(batch_size.min(n_seq - first)))
        .collect()
}

/// Evaluates the model on each domain's documents of one split (`valid` or `probe`): the mean
/// token loss over its [`held_out_batches`] of at most `train.eval_sequences` sequences. Domains
/// without documents in the split are left out.
///
/// # Errors
/// A store's read error.
pub fn evaluate(
    inference: &Inference,
    train: &TrainConfig,
    split: Split,
    domains: &[Store],
    eos: u32,
) -> Result<Vec<DomainLoss>> {
    let mut out = Vec::new();
    for docs in domains {
        let (mut sum, mut count) = (0.0f64, 0u64);
        for batch in held_out_batches(docs, train, train.eval_sequences, eos)? {
            let losses = inference.token_losses(&batch, train.document_mask);
            sum += losses.iter().map(|&l| f64::from(l)).sum::<f64>();
            count += losses.len() as u64;
        }
        if count == 0 {
            continue;
        }
        out.push(DomainLoss {
            domain: docs.name().to_owned(),
            split,
            loss: sum / count as f64,
            tokens: count,
        });
    }
    Ok(out)
}
