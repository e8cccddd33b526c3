//! Utilities of sampled training documents for each target at one checkpoint.

use std::sync::Arc;

use mixlab_trainer::inference::Inference;
use mixlab_trainer::sampler::DomainDocs;
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use crate::datainf;
use crate::projection::GradientProjection;

/// A training document sampled for scoring, cut to the scored length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampledDoc {
    /// Index of its domain.
    pub domain: usize,
    /// Its id in the shards.
    pub doc_id: u64,
    /// Its source label.
    pub source: Arc<str>,
    /// The scored tokens (the document's first `max_tokens + 1`).
    pub tokens: Vec<u32>,
}

impl SampledDoc {
    /// Positions scored: every token but the last predicts the next.
    pub fn scored_tokens(&self) -> u64 {
        self.tokens.len().saturating_sub(1) as u64
    }
}

/// A target: named probe documents and the weight of its utility in the joint utility.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSet {
    /// Name in tables and files.
    pub name: String,
    /// Weight in the joint utility.
    pub weight: f64,
    /// Token ids of each probe document (cut like the training documents).
    pub docs: Vec<Vec<u32>>,
}

/// Up to `per_domain` documents of each domain with at least two tokens, drawn without
/// replacement (seeded), each cut to its first `max_tokens + 1` tokens; in domain order.
pub fn sample_documents(
    domains: &[DomainDocs],
    per_domain: usize,
    max_tokens: usize,
    seed: u64,
) -> Vec<SampledDoc> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (domain, docs) in domains.iter().enumerate() {
        let usable: Vec<_> = docs.docs.iter().filter(|d| d.tokens.len() >= 2).collect();
        let mut picked = sample(&mut rng, usable.len(), per_domain.min(usable.len())).into_vec();
        picked.sort_unstable();
        out.extend(picked.into_iter().map(|i| SampledDoc {
            domain,
            doc_id: usable[i].doc_id,
            source: Arc::clone(&usable[i].source),
            tokens: usable[i].tokens[..usable[i].tokens.len().min(max_tokens + 1)].to_vec(),
        }));
    }
    out
}

/// The projected output-layer gradient of one document's mean next-token loss.
fn gradient(inference: &Inference, projection: &GradientProjection, tokens: &[u32]) -> Vec<f32> {
    let (inputs, targets) = (&tokens[..tokens.len() - 1], &tokens[1..]);
    let (hidden, logits) = inference.sequence_hidden_and_logits(inputs);
    projection.document_gradient(hidden, logits, targets)
}

/// The projected gradients of `docs`, one row each.
fn gradients<'a>(
    inference: &Inference,
    projection: &GradientProjection,
    docs: impl ExactSizeIterator<Item = &'a [u32]>,
) -> Array2<f32> {
    let mut rows = Array2::zeros((docs.len(), projection.width()));
    for (mut row, tokens) in rows.rows_mut().into_iter().zip(docs) {
        row.assign(&Array1::from(gradient(inference, projection, tokens)));
    }
    rows
}

/// The utility of every training document for every target at this checkpoint: `[target][doc]`.
///
/// # Panics
/// When `train` is empty or a document has fewer than two tokens.
pub fn checkpoint_utilities(
    inference: &Inference,
    projection: &GradientProjection,
    train: &[SampledDoc],
    targets: &[TargetSet],
) -> Vec<Vec<f64>> {
    let g = gradients(
        inference,
        projection,
        train.iter().map(|d| d.tokens.as_slice()),
    );
    targets
        .iter()
        .map(|target| {
            let usable: Vec<&[u32]> = target
                .docs
                .iter()
                .filter(|d| d.len() >= 2)
                .map(Vec::as_slice)
                .collect();
            let per_doc = gradients(inference, projection, usable.iter().copied());
            // The mean gradient of the target's token loss: documents weighted by their tokens.
            let weights = Array1::from_iter(usable.iter().map(|d| (d.len() - 1) as f32));
            let v = per_doc.t().dot(&weights) / weights.sum().max(1.0);
            datainf::utilities(g.view(), v.view()).to_vec()
        })
        .collect()
}
