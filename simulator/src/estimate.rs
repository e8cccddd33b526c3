//! Utilities of sampled training documents for each target at one checkpoint.

use std::sync::Arc;

use mixlab_trainer::data::permutation::Permutation;
use mixlab_trainer::data::store::Store;
use mixlab_trainer::inference::Inference;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, CowArray, Ix2};

use crate::config::{Comparison, Curvature, Similarity};
use crate::datainf;
use crate::error::Result;
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
/// replacement (the first such documents of a seeded permutation), each cut to its first
/// `max_tokens + 1` tokens; in domain order, and in store order within a domain. Reads only the
/// documents it keeps (and the index entries of those it passes over).
///
/// # Errors
/// A store's read error.
///
/// # Example
/// ```
/// use mixlab_simulator::estimate::sample_documents;
/// use mixlab_trainer::data::store::DomainDocs;
/// let code = DomainDocs::from_tokens("code", vec![vec![1, 2, 3, 4], vec![5], vec![6, 7]]);
/// let sample = sample_documents(&[code.into()], 5, 2, 0)?;
/// // The one-token document cannot be scored; the others keep their first 3 tokens.
/// assert_eq!(sample.len(), 2);
/// assert_eq!(sample[0].tokens, [1, 2, 3]);
/// assert_eq!(sample[0].scored_tokens(), 2);
/// # Ok::<(), mixlab_simulator::Error>(())
/// ```
pub fn sample_documents(
    domains: &[Store],
    per_domain: usize,
    max_tokens: usize,
    seed: u64,
) -> Result<Vec<SampledDoc>> {
    let mut out = Vec::new();
    for (domain, docs) in domains.iter().enumerate() {
        let order = Permutation::new(docs.documents(), [seed, domain as u64, 0]);
        let mut picked = Vec::new();
        for position in 0..order.len() {
            if picked.len() == per_domain {
                break;
            }
            let index = order.at(position);
            let entry = docs.entry(index)?;
            if entry.tokens >= 2 {
                picked.push((index, entry));
            }
        }
        picked.sort_unstable_by_key(|(index, _)| *index);
        for (_, entry) in picked {
            let mut tokens = vec![0; entry.tokens.min(max_tokens + 1)];
            docs.read(&entry, 0, &mut tokens)?;
            out.push(SampledDoc {
                domain,
                doc_id: entry.doc_id,
                source: entry.source,
                tokens,
            });
        }
    }
    Ok(out)
}

/// Documents per batched forward pass.
const BATCH_DOCUMENTS: usize = 16;

/// The projected output-layer gradients of `docs` (each predicting its tokens `1..` from `..n-1`),
/// one row each, from batched forward passes.
fn gradients(
    inference: &Inference,
    projection: &GradientProjection,
    docs: &[&[u32]],
) -> Array2<f32> {
    let mut rows = Array2::zeros((docs.len(), projection.width()));
    for (chunk, mut out) in docs
        .chunks(BATCH_DOCUMENTS)
        .zip(rows.axis_chunks_iter_mut(ndarray::Axis(0), BATCH_DOCUMENTS))
    {
        let inputs: Vec<&[u32]> = chunk.iter().map(|d| &d[..d.len() - 1]).collect();
        let targets: Vec<&[u32]> = chunk.iter().map(|d| &d[1..]).collect();
        let activations = inference.sequences_hidden_and_logits(&inputs);
        let gradients = projection.document_gradients(activations, &targets);
        for (gradient, mut row) in gradients.into_iter().zip(out.rows_mut()) {
            row.assign(&Array1::from(gradient));
        }
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
    comparison: Comparison,
    train: &[SampledDoc],
    targets: &[TargetSet],
) -> Vec<Vec<f64>> {
    let docs: Vec<&[u32]> = train.iter().map(|d| d.tokens.as_slice()).collect();
    let g = gradients(inference, projection, &docs);
    let equal = Array1::ones(g.nrows());
    let train = Influence::new(g.view(), equal.view(), comparison);
    target_utilities(inference, projection, &train, targets)
}

/// Training documents' projected gradients (one row each) as they are compared with a target's,
/// and their weights in DataInf's curvature estimate ([`datainf::weighted_utilities`]).
#[derive(Debug, Clone)]
pub struct Influence<'a> {
    gradients: CowArray<'a, f32, Ix2>,
    weights: ArrayView1<'a, f64>,
    comparison: Comparison,
}

impl<'a> Influence<'a> {
    /// `gradients` (one row per document) weighted by `weights` (one per row), compared as they
    /// are or as unit-length directions (normalized here, once for every target).
    ///
    /// # Example
    /// ```
    /// use mixlab_simulator::config::{Comparison, Curvature, Similarity};
    /// use mixlab_simulator::estimate::Influence;
    /// use ndarray::array;
    /// let (g, w) = (array![[3.0f32, 0.0], [0.0, 1.0]], array![1.0, 1.0]);
    /// let target = array![1.0f32, 1.0];
    /// let with = |similarity, curvature| Comparison { similarity, curvature };
    /// // As they are, the larger gradient has the larger utility; as directions, both are equal.
    /// let inner = Influence::new(g.view(), w.view(), Comparison::default()).utilities(target.view());
    /// assert!(inner[0] > inner[1]);
    /// let cosine = with(Similarity::Cosine, Curvature::DataInf);
    /// let cosine = Influence::new(g.view(), w.view(), cosine).utilities(target.view());
    /// assert!((cosine[0] - cosine[1]).abs() < 1e-9);
    /// // Without curvature, a utility is the inner product itself.
    /// let tracin = with(Similarity::Inner, Curvature::Identity);
    /// let tracin = Influence::new(g.view(), w.view(), tracin).utilities(target.view());
    /// assert_eq!(tracin.to_vec(), [3.0, 1.0]);
    /// ```
    pub fn new(
        gradients: ArrayView2<'a, f32>,
        weights: ArrayView1<'a, f64>,
        comparison: Comparison,
    ) -> Self {
        let gradients = match comparison.similarity {
            Similarity::Inner => CowArray::from(gradients),
            Similarity::Cosine => {
                let mut unit = gradients.to_owned();
                unit.rows_mut().into_iter().for_each(normalize);
                CowArray::from(unit)
            }
        };
        Self {
            gradients,
            weights,
            comparison,
        }
    }

    /// Every document's utility for the target whose mean gradient is `target`.
    pub fn utilities(&self, target: ArrayView1<f32>) -> Array1<f64> {
        let target = match self.comparison.similarity {
            Similarity::Inner => CowArray::from(target),
            Similarity::Cosine => {
                let mut unit = target.to_owned();
                normalize(unit.view_mut());
                CowArray::from(unit)
            }
        };
        match self.comparison.curvature {
            Curvature::DataInf => {
                datainf::weighted_utilities(self.gradients.view(), self.weights, target.view())
            }
            Curvature::Identity => self.gradients.dot(&target).mapv(f64::from),
        }
    }
}

/// Scales `v` to unit length in place (a zero vector stays zero).
fn normalize(mut v: ArrayViewMut1<f32>) {
    let norm = v.dot(&v).sqrt();
    if norm > 0.0 {
        v /= norm;
    }
}

/// The utility for every target of the `train` documents, the targets' gradients formed at this
/// checkpoint: `[target][doc]`.
///
/// # Panics
/// When `train` has no row or the weights do not fit it.
pub fn target_utilities(
    inference: &Inference,
    projection: &GradientProjection,
    train: &Influence<'_>,
    targets: &[TargetSet],
) -> Vec<Vec<f64>> {
    targets
        .iter()
        .map(|target| {
            let usable: Vec<&[u32]> = target
                .docs
                .iter()
                .filter(|d| d.len() >= 2)
                .map(Vec::as_slice)
                .collect();
            let per_doc = gradients(inference, projection, &usable);
            // The mean gradient of the target's token loss: documents weighted by their tokens.
            let weights = Array1::from_iter(usable.iter().map(|d| (d.len() - 1) as f32));
            let v = per_doc.t().dot(&weights) / weights.sum().max(1.0);
            train.utilities(v.view()).to_vec()
        })
        .collect()
}
