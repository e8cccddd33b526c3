//! Per-document gradients of the output layer, formed from activations and projected to a few
//! thousand numbers.
//!
//! With logits `z = h Eᵀ` (the tied embedding `E`, `[vocab, d]`), the gradient of a document's
//! mean token loss is `∂L/∂E = (1/T) Δᵀ H`, where `H` (`[T, d]`) holds the final hidden states and
//! `Δ = softmax(z) − onehot(targets)` (`[T, vocab]`): one forward pass gives it, with no backward
//! pass per document. It has `vocab · d` entries (2M for `small`), too many to keep for thousands
//! of documents, so it is projected with a Kronecker-structured random map (LoGra, Choe et al.
//! 2024): `Pᵥᵀ (∂L/∂E) P_d = (1/T) (Δ Pᵥ)ᵀ (H P_d)`, `[k_vocab, k_hidden]`, which keeps inner
//! products in expectation (Johnson–Lindenstrauss) and never forms the full gradient. `P_d` is a
//! dense Gaussian map; `Pᵥ` is a count sketch (one ±1 per vocabulary row), so `Δ Pᵥ` is one pass
//! over each row of logits, fused with its softmax, instead of a `[T, vocab] · [vocab, k]` product.

use burn::tensor::{Device, Distribution, Tensor};
use mixlab_trainer::kernels::softmax_in_place;
use ndarray::{Array2, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// A fixed random projection of `[vocab, d]` output-layer gradients to `[k_vocab, k_hidden]`.
#[derive(Debug, Clone)]
pub struct GradientProjection {
    /// The vocabulary side, `Pᵥ`.
    vocab: VocabSketch,
    /// `[d, k_hidden]`, entries N(0, 1/k_hidden).
    hidden: Tensor<2>,
}

/// A count sketch of the vocabulary (Charikar et al. 2002): as a `[vocab, k]` matrix, row `v` holds
/// `sign[v]` in column `bucket[v]` and zeros elsewhere. Like a dense Gaussian map it keeps inner
/// products in expectation.
///
/// Written by hand: no crate applies a count sketch to the softmax of a logits row in one pass.
#[derive(Debug, Clone)]
struct VocabSketch {
    bucket: Vec<usize>,
    sign: Vec<f32>,
    k: usize,
}

impl VocabSketch {
    fn new(vocab: usize, k: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (bucket, sign) = (0..vocab)
            .map(|_| {
                let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                (rng.random_range(0..k), sign)
            })
            .unzip();
        Self { bucket, sign, k }
    }

    /// `(softmax(z) − onehot(y)) Pᵥ` of every row `z` of `logits` (row-major, one row per target
    /// `y`; overwritten by the softmax), `[rows, k]`; the rows run in parallel.
    fn project_delta(&self, logits: &mut [f32], targets: &[u32]) -> Array2<f32> {
        let (vocab, k) = (self.bucket.len(), self.k);
        let mut out = vec![0.0f32; targets.len() * k];
        out.par_chunks_mut(k)
            .zip(logits.par_chunks_mut(vocab))
            .zip(targets.par_iter())
            .for_each(|((row, z), &y)| {
                softmax_in_place(z);
                for ((&p, &bucket), &sign) in z.iter().zip(&self.bucket).zip(&self.sign) {
                    row[bucket] += sign * p;
                }
                row[self.bucket[y as usize]] -= self.sign[y as usize];
            });
        Array2::from_shape_vec((targets.len(), k), out).expect("rows of k values")
    }

    /// The sketch as a dense `[vocab, k]` matrix.
    #[cfg(test)]
    fn dense(&self) -> Array2<f32> {
        let mut m = Array2::zeros((self.bucket.len(), self.k));
        for (v, (&b, &sign)) in self.bucket.iter().zip(&self.sign).enumerate() {
            m[[v, b]] = sign;
        }
        m
    }
}

impl GradientProjection {
    /// A projection seeded with `seed`: the count sketch from its own generator, the Gaussian map
    /// from burn's (process-wide: the draw is reproducible when nothing else draws at the same
    /// time).
    pub fn new(vocab: usize, d_model: usize, k_vocab: usize, k_hidden: usize, seed: u64) -> Self {
        let device = &Device::flex();
        device.seed(seed);
        let std = (1.0 / k_hidden as f64).sqrt();
        Self {
            vocab: VocabSketch::new(vocab, k_vocab, seed),
            hidden: Tensor::random([d_model, k_hidden], Distribution::Normal(0.0, std), device),
        }
    }

    /// Entries of a projected gradient.
    pub fn width(&self) -> usize {
        self.vocab.k * self.hidden.dims()[1]
    }

    /// The projected gradient of the mean loss of predicting `targets[t]` from position `t`,
    /// row-major `[k_vocab, k_hidden]`.
    ///
    /// # Shapes
    /// `hidden`: `[T, d]`, `logits`: `[T, vocab]`, `targets`: `T` ids.
    ///
    /// # Panics
    /// When the shapes disagree or a target is outside the vocabulary.
    ///
    /// # Example
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use mixlab_simulator::projection::GradientProjection;
    /// let device = Device::flex();
    /// let projection = GradientProjection::new(3, 2, 4, 4, 0);
    /// // A model already certain of its targets has nothing to learn: a zero gradient.
    /// let hidden = Tensor::<2>::from_floats([[1.0, 0.5]], &device);
    /// let logits = Tensor::<2>::from_floats([[40.0, 0.0, 0.0]], &device);
    /// let g = projection.document_gradient(hidden, logits, &[0]);
    /// assert_eq!(g.len(), projection.width());
    /// assert!(g.iter().all(|x| x.abs() < 1e-6));
    /// ```
    pub fn document_gradient(
        &self,
        hidden: Tensor<2>,
        logits: Tensor<2>,
        targets: &[u32],
    ) -> Vec<f32> {
        self.document_gradients(vec![(hidden, logits)], &[targets])
            .pop()
            .expect("one document in, one out")
    }

    /// [`GradientProjection::document_gradient`] of several documents at once: their positions
    /// are stacked, so the softmax and both projections are one product each, and only the small
    /// `[k_vocab, T] · [T, k_hidden]` products are per document.
    ///
    /// # Panics
    /// As [`GradientProjection::document_gradient`], for any document.
    pub fn document_gradients(
        &self,
        activations: Vec<(Tensor<2>, Tensor<2>)>,
        targets: &[&[u32]],
    ) -> Vec<Vec<f32>> {
        assert_eq!(
            activations.len(),
            targets.len(),
            "one target list per document"
        );
        if activations.is_empty() {
            return Vec::new();
        }
        let lengths: Vec<usize> = activations.iter().map(|(h, _)| h.dims()[0]).collect();
        for (len, t) in lengths.iter().zip(targets) {
            assert_eq!(*len, t.len(), "one target per position");
        }
        let (hidden, logits): (Vec<_>, Vec<_>) = activations.into_iter().unzip();
        let targets: Vec<u32> = targets.concat();
        self.segment_gradients(
            Tensor::cat(hidden, 0),
            Tensor::cat(logits, 0),
            &targets,
            &lengths,
        )
    }

    /// The projected gradients of consecutive runs of positions (segments of `lengths[i]`
    /// positions each, in order), each of its own mean token loss.
    ///
    /// # Shapes
    /// `hidden`: `[N, d]`, `logits`: `[N, vocab]`, `targets`: N ids, `lengths` summing to N.
    ///
    /// # Panics
    /// When the shapes disagree, a length is 0 or a target is outside the vocabulary.
    pub fn segment_gradients(
        &self,
        hidden: Tensor<2>,
        logits: Tensor<2>,
        targets: &[u32],
        lengths: &[usize],
    ) -> Vec<Vec<f32>> {
        let rows = hidden.dims()[0];
        self.segment_gradients_with(
            hidden,
            |from, _| logits.clone().narrow(0, from, rows),
            rows,
            targets,
            lengths,
        )
    }

    /// [`GradientProjection::segment_gradients`] with the logits made a block of `block` positions
    /// at a time by `logits_of(hidden rows)`: a packed training batch's documents, from its final
    /// hidden states, with a `[block, vocab]` buffer that the allocator reuses where a
    /// `[N, vocab]` one would be mapped and unmapped for every batch.
    ///
    /// # Panics
    /// As [`GradientProjection::segment_gradients`].
    pub fn segment_gradients_of_hidden(
        &self,
        hidden: Tensor<2>,
        logits_of: impl Fn(Tensor<2>) -> Tensor<2>,
        targets: &[u32],
        lengths: &[usize],
    ) -> Vec<Vec<f32>> {
        let rows = hidden.dims()[0];
        let source = hidden.clone();
        let block = LOGIT_BLOCK.min(rows.max(1));
        self.segment_gradients_with(
            hidden,
            |from, len| logits_of(source.clone().narrow(0, from, len)),
            block,
            targets,
            lengths,
        )
    }

    /// The shared body: `logits(from, len)` gives the logits of positions `from..from + len`,
    /// asked for `block` positions at a time.
    fn segment_gradients_with(
        &self,
        hidden: Tensor<2>,
        logits: impl Fn(usize, usize) -> Tensor<2>,
        block: usize,
        targets: &[u32],
        lengths: &[usize],
    ) -> Vec<Vec<f32>> {
        let positions = hidden.dims()[0];
        assert_eq!(positions, targets.len(), "one target per position");
        assert_eq!(
            positions,
            lengths.iter().sum::<usize>(),
            "segments cover every position"
        );
        assert!(lengths.iter().all(|&l| l > 0), "no empty segment");
        let mut delta = Array2::zeros((positions, self.vocab.k));
        for from in (0..positions).step_by(block.max(1)) {
            let len = block.min(positions - from);
            let mut values: Vec<f32> = logits(from, len)
                .into_data()
                .try_into_vec()
                .expect("f32 logits");
            let rows = self
                .vocab
                .project_delta(&mut values, &targets[from..from + len]);
            delta.slice_mut(s![from..from + len, ..]).assign(&rows);
        }
        let k_hidden = self.hidden.dims()[1];
        let hidden: Vec<f32> = hidden
            .matmul(self.hidden.clone())
            .into_data()
            .try_to_vec()
            .expect("f32 values");
        let hidden = Array2::from_shape_vec((positions, k_hidden), hidden).expect("rows of k");
        let mut start = 0;
        lengths
            .iter()
            .map(|&len| {
                let rows = s![start..start + len, ..];
                start += len;
                let gradient = delta.slice(rows).t().dot(&hidden.slice(rows)) / len as f32;
                gradient.iter().copied().collect()
            })
            .collect()
    }
}

/// Positions whose logits [`GradientProjection::segment_gradients_of_hidden`] makes at once.
const LOGIT_BLOCK: usize = 512;

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

    use super::*;

    /// The projection of burn's own gradient of the output matrix (autodiff through
    /// `cross_entropy(h · Eᵀ)` with `h` held fixed) equals the projection formed from activations.
    #[test]
    fn matches_the_projected_autodiff_gradient() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let (tokens, d, vocab) = (6, 5, 11);
        let hidden = Tensor::<2>::random([tokens, d], Distribution::Normal(0.0, 1.0), &device);
        let embedding =
            Tensor::<2>::random([vocab, d], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let targets = [3u32, 0, 10, 7, 7, 1];
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(
                targets.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(),
                [tokens],
            ),
            &device,
        );
        let logits = hidden.clone().matmul(embedding.clone().transpose());
        let loss = burn::tensor::activation::log_softmax(logits.clone(), 1)
            .gather(1, ids.reshape([tokens, 1]))
            .neg()
            .mean();
        let full = embedding.grad(&loss.backward()).unwrap(); // [vocab, d]

        let plain = Device::flex();
        let projection = GradientProjection::new(vocab, d, 4, 3, 9);
        let sketch = projection.vocab.dense();
        let sketch = Tensor::<2>::from_data(
            TensorData::new(sketch.iter().copied().collect::<Vec<f32>>(), [vocab, 4]),
            &Device::flex(),
        );
        let expected: Vec<f32> = sketch
            .transpose()
            .matmul(full)
            .matmul(projection.hidden.clone())
            .into_data()
            .try_to_vec()
            .unwrap();
        let from_activations = projection.document_gradient(
            Tensor::from_data(hidden.into_data(), &plain),
            Tensor::from_data(logits.into_data(), &plain),
            &targets,
        );
        assert_eq!(from_activations.len(), projection.width());
        for (a, b) in from_activations.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{from_activations:?} vs {expected:?}");
        }
        assert!(expected.iter().any(|x| x.abs() > 1e-3));
    }

    #[test]
    fn stacked_documents_get_the_gradients_they_get_alone() {
        let device = Device::flex();
        let projection = GradientProjection::new(13, 6, 5, 4, 2);
        let docs: Vec<(Tensor<2>, Tensor<2>, Vec<u32>)> = [3usize, 7]
            .into_iter()
            .map(|t| {
                let hidden = Tensor::<2>::random([t, 6], Distribution::Normal(0.0, 1.0), &device);
                let logits = Tensor::<2>::random([t, 13], Distribution::Normal(0.0, 1.0), &device);
                (hidden, logits, (0..t as u32).map(|i| i * 5 % 13).collect())
            })
            .collect();
        let alone: Vec<Vec<f32>> = docs
            .iter()
            .map(|(h, l, t)| projection.document_gradient(h.clone(), l.clone(), t))
            .collect();
        let targets: Vec<&[u32]> = docs.iter().map(|(_, _, t)| t.as_slice()).collect();
        let stacked = projection.document_gradients(
            docs.iter()
                .map(|(h, l, _)| (h.clone(), l.clone()))
                .collect(),
            &targets,
        );
        for (a, b) in alone.iter().zip(&stacked) {
            assert!(
                a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5),
                "{a:?} vs {b:?}"
            );
        }
        assert_ne!(alone[0], alone[1]);
    }
}
