//! Per-document gradients from the simulation run's own training batches.
//!
//! The proxy's forward pass already makes the final hidden states and logits of every document it
//! trains on, so the projected output-layer gradient of each document (see
//! [`crate::projection`]) costs one softmax and two small products more, and no forward pass of its
//! own. The proxy trains on plain next-token cross-entropy; in the last [`CaptureWindow::steps`]
//! steps before each checkpoint the training loop hands the final hidden states of its batches to
//! a hook ([`crate::score::InRunScoring`]), which adds their documents to [`Captured`] and scores
//! them at the checkpoint that follows, with the weights they were trained with a few steps earlier
//! (TracIn's approximation: the gradient of a document where it was trained stands for its gradient
//! at the checkpoint).

use std::collections::BTreeMap;
use std::time::Instant;

use burn::tensor::{Int, Tensor};
use mixlab_trainer::data::sampler::Batch;
use mixlab_trainer::model::Model;

use crate::projection::GradientProjection;

/// The steps whose batches are captured: the last `steps` of every `every` (checkpoint spacing).
///
/// # Example
/// ```
/// use mixlab_simulator::capture::CaptureWindow;
/// let window = CaptureWindow { every: 30, steps: 4 };
/// let captured: Vec<u64> = (1..=60).filter(|&s| window.contains(s)).collect();
/// assert_eq!(captured, [27, 28, 29, 30, 57, 58, 59, 60]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureWindow {
    /// Steps between checkpoints.
    pub every: u64,
    /// Steps captured before each checkpoint (at most `every`).
    pub steps: u64,
}

impl CaptureWindow {
    /// Whether the batches of optimizer step `step` (1-based) are captured.
    pub fn contains(&self, step: u64) -> bool {
        let every = self.every.max(1);
        step > 0 && (step - 1) % every >= every.saturating_sub(self.steps)
    }
}

/// One captured document: the token-weighted mean of the gradients of its pieces in the captured
/// batches (a document longer than a sequence is trained in pieces).
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedDoc {
    /// Index of its domain.
    pub domain: usize,
    /// Its id in the shards.
    pub doc_id: u64,
    /// Positions it was trained on in the captured batches.
    pub tokens: u64,
    /// Its projected gradient: the mean token loss's, over the first `max_piece_tokens` scored
    /// positions of each of its pieces ([`Captured::new`]).
    pub gradient: Vec<f32>,
}

/// The documents captured since the last checkpoint.
#[derive(Debug)]
pub struct Captured {
    eos: u32,
    max_piece_tokens: usize,
    /// (domain, doc id) → its sums so far.
    docs: BTreeMap<(usize, u64), DocSums>,
    seconds: f64,
}

/// A captured document's sums over its pieces.
#[derive(Debug)]
struct DocSums {
    /// Positions trained on.
    tokens: u64,
    /// Positions whose gradient was formed.
    scored: u64,
    /// Σ scored positions · the pieces' mean gradients.
    gradient: Vec<f32>,
}

impl Captured {
    /// An empty buffer for batches whose documents end with the token `eos`, forming each piece's
    /// gradient from its first `max_piece_tokens` positions (at least 1).
    ///
    /// The logits and softmax of those positions are most of the capturing's cost, so the cap
    /// bounds it per piece; `[simulate].max_doc_tokens` is the cap, as it is the number of
    /// positions a sampled or target document is scored on.
    ///
    /// # Example
    /// ```
    /// use mixlab_simulator::capture::Captured;
    /// let mut captured = Captured::new(0, 128);
    /// assert!(captured.is_empty());
    /// assert!(captured.take().is_empty());
    /// ```
    pub fn new(eos: u32, max_piece_tokens: usize) -> Self {
        Self {
            eos,
            max_piece_tokens: max_piece_tokens.max(1),
            docs: BTreeMap::new(),
            seconds: 0.0,
        }
    }

    /// Adds the documents of one packed batch from the final hidden states of `model`'s forward
    /// pass over it (the logits are made again outside the graph, a block of positions at a time:
    /// reading the graph's own `[tokens, vocab]` copy costs several times more). Only the scored
    /// positions are used, at most `max_piece_tokens` of each piece.
    ///
    /// # Shapes
    /// `hidden`: `[batch, seq, d_model]`.
    pub fn add_batch(
        &mut self,
        projection: &GradientProjection,
        batch: &Batch,
        model: &Model,
        hidden: Tensor<3>,
    ) {
        let started = Instant::now();
        let [b, t, d] = hidden.dims();
        let (pieces, rows) = scored_rows(&pieces(batch, self.eos), self.max_piece_tokens);
        if pieces.is_empty() {
            return;
        }
        let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let device = hidden.device();
        let hidden = hidden
            .without_autodiff()
            .reshape([b * t, d])
            .select(0, Tensor::<1, Int>::from_data(index.as_slice(), &device));
        let targets: Vec<u32> = rows.iter().map(|&r| batch.targets[r]).collect();
        let lengths: Vec<usize> = pieces.iter().map(|(_, scored)| *scored).collect();
        let gradients = projection.segment_gradients_of_hidden(
            hidden,
            |rows| model.untracked_logits(rows),
            &targets,
            &lengths,
        );
        for ((piece, scored), gradient) in pieces.iter().zip(gradients) {
            let sums = self
                .docs
                .entry((piece.domain, piece.doc_id))
                .or_insert_with(|| DocSums {
                    tokens: 0,
                    scored: 0,
                    gradient: vec![0.0; gradient.len()],
                });
            sums.tokens += piece.len as u64;
            sums.scored += *scored as u64;
            for (s, g) in sums.gradient.iter_mut().zip(gradient) {
                *s += g * *scored as f32;
            }
        }
        self.seconds += started.elapsed().as_secs_f64();
    }

    /// Whether no document was captured since the buffer was last taken.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The documents captured so far, in (domain, doc id) order; the buffer is left empty.
    pub fn take(&mut self) -> Vec<CapturedDoc> {
        std::mem::take(&mut self.docs)
            .into_iter()
            .map(|((domain, doc_id), sums)| CapturedDoc {
                domain,
                doc_id,
                tokens: sums.tokens,
                gradient: sums
                    .gradient
                    .into_iter()
                    .map(|s| s / sums.scored as f32)
                    .collect(),
            })
            .collect()
    }

    /// Wall time spent capturing, in seconds.
    pub fn seconds(&self) -> f64 {
        self.seconds
    }
}

/// A document's run of positions in one sequence of a packed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    domain: usize,
    doc_id: u64,
    len: usize,
    /// False for the positions that predict a document's end-of-text token and the one after it
    /// (whose target is the next document's first token): targets score a document's own tokens
    /// only, so its gradient leaves them out too.
    scored: bool,
}

/// The scored pieces, each with the number of its first positions whose gradient is formed (at
/// most `cap`), and those positions' rows in the batch, in order.
fn scored_rows(pieces: &[Piece], cap: usize) -> (Vec<(Piece, usize)>, Vec<usize>) {
    let mut kept = Vec::new();
    let mut rows = Vec::new();
    let mut start = 0;
    for piece in pieces {
        if piece.scored {
            let scored = piece.len.min(cap);
            kept.push((*piece, scored));
            rows.extend(start..start + scored);
        }
        start += piece.len;
    }
    (kept, rows)
}

/// The runs of equal segment ids in each sequence, in position order, each split into its scored
/// positions and the unscored ones around its end-of-text token `eos`.
fn pieces(batch: &Batch, eos: u32) -> Vec<Piece> {
    let mut out = Vec::new();
    for (row, &domain) in batch.domains.iter().enumerate() {
        let range = row * batch.seq_len..(row + 1) * batch.seq_len;
        let scored: Vec<bool> = batch.inputs[range.clone()]
            .iter()
            .zip(&batch.targets[range.clone()])
            .map(|(&input, &target)| input != eos && target != eos)
            .collect();
        let keys: Vec<(u32, bool)> = batch.segments[range.clone()]
            .iter()
            .copied()
            .zip(scored)
            .collect();
        let doc_ids = &batch.doc_ids[range];
        let mut start = 0;
        for run in keys.chunk_by(|a, b| a == b) {
            out.push(Piece {
                domain,
                doc_id: doc_ids[start],
                len: run.len(),
                scored: run[0].1,
            });
            start += run.len();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::tensor::Device;
    use mixlab_trainer::config::Preset;
    use mixlab_trainer::data::sampler::MixtureSampler;
    use mixlab_trainer::data::store::DomainDocs;
    use mixlab_trainer::engine::objective::{CrossEntropy, MicroBatch, Objective};
    use mixlab_trainer::model::input::to_model_input;

    use super::*;

    fn batch() -> Batch {
        let docs = vec![
            DomainDocs::from_tokens("a", vec![vec![1, 2, 3, 4, 5], vec![6, 7, 8]]),
            DomainDocs::from_tokens("b", vec![vec![9, 10, 11, 12, 13, 14, 15, 16, 17]]),
        ];
        MixtureSampler::new(docs, vec![0.5, 0.5], 7, 0, 3, false)
            .unwrap()
            .next_batch(4)
            .unwrap()
    }

    #[test]
    fn pieces_follow_segments_and_document_ids() {
        let batch = batch();
        let pieces = pieces(&batch, 0);
        assert_eq!(
            pieces.iter().map(|p| p.len).sum::<usize>(),
            batch.batch_size * batch.seq_len
        );
        let mut at = 0;
        for piece in &pieces {
            let ids = &batch.doc_ids[at..at + piece.len];
            assert!(ids.iter().all(|&id| id == piece.doc_id), "{pieces:?}");
            assert_eq!(piece.domain, batch.domains[at / batch.seq_len]);
            // Exactly the positions with an end-of-text input or target are left unscored.
            let unscored =
                (at..at + piece.len).all(|i| batch.inputs[i] == 0 || batch.targets[i] == 0);
            assert_eq!(!piece.scored, unscored, "{pieces:?}");
            at += piece.len;
        }
        assert!(pieces.iter().filter(|p| p.scored).count() > batch.batch_size);
        assert!(pieces.iter().any(|p| !p.scored));
    }

    /// Cross-entropy's loss is the same with its hidden states handed out; capturing them adds
    /// each document's gradient, the scored-position-weighted mean of its pieces' gradients (each
    /// from its first `cap` scored positions) formed from a separate forward pass.
    fn check_capture(cap: usize) {
        let config = Preset::Tiny.config(20);
        let device = Device::flex().autodiff();
        device.seed(5);
        let model = Model::new(&config, &device);
        let projection = GradientProjection::new(20, config.d_model, 4, 3, 1);
        let mut captured = Captured::new(0, cap);
        let batch = batch();
        let micro = || {
            let (input, targets) = to_model_input(&batch, &config, false, &device);
            MicroBatch {
                batch: &batch,
                input,
                targets,
            }
        };
        let (loss, hidden) = CrossEntropy.loss_with_hidden(&model, micro());
        let plain_loss = CrossEntropy.loss(&model, micro()).into_scalar::<f32>();
        assert_eq!(loss.into_scalar::<f32>(), plain_loss);
        assert!(captured.is_empty());
        captured.add_batch(
            &projection,
            &batch,
            &model,
            hidden.expect("cross-entropy hands them"),
        );
        let docs = captured.take();
        let pieces: Vec<Piece> = pieces(&batch, 0);
        assert_eq!(docs.len(), 3, "{pieces:?}");

        // Expected: per piece (start, length, scored positions, gradient), from the inference
        // path's activations.
        let plain = model.valid();
        let (input, _) = to_model_input(&batch, &config, false, &Device::flex());
        let hidden = plain.hidden(&input);
        let logits = plain.logits(hidden.clone());
        let hidden = hidden.reshape([batch.batch_size * batch.seq_len, config.d_model]);
        let mut start = 0;
        let mut per_piece = Vec::new();
        for piece in &pieces {
            let n = piece.len.min(cap);
            let gradient = projection.document_gradient(
                hidden.clone().narrow(0, start, n),
                logits.clone().narrow(0, start, n),
                &batch.targets[start..start + n],
            );
            per_piece.push((piece, n, gradient));
            start += piece.len;
        }
        for doc in &docs {
            let mine: Vec<_> = per_piece
                .iter()
                .filter(|(p, ..)| p.scored && (p.domain, p.doc_id) == (doc.domain, doc.doc_id))
                .collect();
            let tokens: usize = mine.iter().map(|(p, ..)| p.len).sum();
            let scored: usize = mine.iter().map(|(_, n, _)| n).sum();
            assert_eq!(doc.tokens, tokens as u64);
            for (k, value) in doc.gradient.iter().enumerate() {
                let expected: f32 =
                    mine.iter().map(|(_, n, g)| g[k] * *n as f32).sum::<f32>() / scored as f32;
                assert!((value - expected).abs() < 1e-4, "{value} vs {expected}");
            }
        }
        assert!(
            docs.iter()
                .any(|d| d.gradient.iter().any(|g| g.abs() > 1e-4))
        );
        assert!(captured.take().is_empty(), "taken");
    }

    #[test]
    fn captures_each_document_without_changing_the_loss() {
        check_capture(usize::MAX);
    }

    #[test]
    fn captures_the_first_positions_of_each_piece() {
        let pieces = pieces(&batch(), 0);
        assert!(pieces.iter().any(|p| p.scored && p.len > 2), "{pieces:?}");
        check_capture(2);
    }

    #[test]
    fn scored_rows_skip_unscored_pieces_and_cap_the_rest() {
        let piece = |len, scored| Piece {
            domain: 0,
            doc_id: 0,
            len,
            scored,
        };
        let (kept, rows) = scored_rows(&[piece(4, true), piece(2, false), piece(1, true)], 3);
        assert_eq!(kept.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [3, 1]);
        assert_eq!(rows, [0, 1, 2, 6]);
    }
}
