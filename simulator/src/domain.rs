//! Utilities from per-domain gradients of every parameter (`[simulate].gradients = "domain"`).
//!
//! Every training sequence comes from one domain, so what training on a domain does to a target
//! is the step its sequences' gradients take. At each checkpoint, `domain_sequences` packed
//! sequences of each domain (windows at random positions of its token stream, drawn afresh) each get a backward pass through
//! the whole model; the gradient `g_s` is scaled as AdamW scales it (`P = 1/(√v̂ + ε)` from the
//! proxy's own optimizer state) and met with each target's gradient `g_c` over its packed
//! sequences: `u(s, c) = (P·g_s)·g_c`, the first-order decrease of the target's loss per unit
//! learning rate of a step on `s`. A domain's utility is the mean over its sequences (= the
//! utility of their batch, by linearity), with a bootstrap error over sequences.
//!
//! Unlike the output layer's gradient through the logits alone ([`crate::projection`]), this
//! sees the embedding's look-up path and every block: what a domain teaches about order, not only
//! which next tokens are frequent.

use std::sync::Arc;

use mixlab_artefacts::utilities::DocumentUtility;
use mixlab_trainer::config::{ModelConfig, TrainConfig};
use mixlab_trainer::data::sampler::Batch;
use mixlab_trainer::data::store::{DocumentEntry, DomainDocs, Store};
use mixlab_trainer::engine::checkpoint::CheckpointFiles;
use mixlab_trainer::inference::eval::held_out_batches;
use mixlab_trainer::inference::influence::Checkpoint;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::Precondition;
use crate::error::{Error, Result};
use crate::estimate::TargetSet;

/// What scoring a checkpoint with per-domain gradients needs.
#[derive(Debug)]
pub struct DomainScoring<'a> {
    /// The proxy model's shape.
    pub model: &'a ModelConfig,
    /// The proxy's training settings: sequence length, document masks, AdamW's β₂ and ε.
    pub train: &'a TrainConfig,
    /// End-of-text token between packed documents.
    pub eos: u32,
    /// Every domain's training documents, in domain order.
    pub domains: &'a [Store],
    /// The targets (their whole documents).
    pub targets: &'a [TargetSet],
    /// Sequences scored per domain at each checkpoint.
    pub sequences: usize,
    /// Sequences of each target whose mean-loss gradient is the target's.
    pub target_sequences: usize,
    /// How training gradients are scaled.
    pub precondition: Precondition,
    /// Seed of the sequences drawn (with the checkpoint's step and the domain).
    pub seed: u64,
}

impl DomainScoring<'_> {
    /// Every scored sequence's utility for every target at the checkpoint of `files`: one row per
    /// sequence and target. A row's `doc_id` is the sequence's index within its domain (the same
    /// indices at every checkpoint, so the over-all estimate [`crate::score::summarize`] forms is
    /// `Σ_t α_t·(mean at t)`), its `source` the label of the sequence's first document.
    ///
    /// # Errors
    /// A checkpoint whose weights or optimizer state cannot be read.
    pub fn score_checkpoint(
        &self,
        step: u64,
        files: &CheckpointFiles,
    ) -> Result<Vec<DocumentUtility>> {
        let checkpoint = Checkpoint::load(self.model, files)?;
        let targets = self.scaled_target_gradients(&checkpoint, files)?;
        let mut rows = Vec::new();
        for (d, docs) in self.domains.iter().enumerate() {
            for (i, (sequence, source)) in self.domain_sequences(d, docs, step)?.iter().enumerate()
            {
                let g = checkpoint.gradient(sequence, self.train.document_mask);
                for (target, scaled) in self.targets.iter().zip(&targets) {
                    rows.push(DocumentUtility {
                        domain: docs.name().to_owned(),
                        doc_id: i as u64,
                        source: source.to_string(),
                        tokens: sequence.inputs.len() as u64,
                        target: target.name.clone(),
                        checkpoint_step: step,
                        utility: dot(&g, scaled),
                    });
                }
            }
        }
        Ok(rows)
    }

    /// Each target's gradient scaled by the preconditioner: P is diagonal, so
    /// `(P·g_s)·g_c = g_s·(P·g_c)` and each target is scaled once instead of every sequence.
    fn scaled_target_gradients(
        &self,
        checkpoint: &Checkpoint,
        files: &CheckpointFiles,
    ) -> Result<Vec<Vec<f32>>> {
        let scale = match self.precondition {
            Precondition::Adam => Some(checkpoint.preconditioner(&files.optimizer, self.train)?),
            Precondition::None => None,
        };
        self.targets
            .iter()
            .map(|t| {
                let mut g = self.target_gradient(checkpoint, t)?;
                if let Some(p) = &scale {
                    g.iter_mut().zip(p).for_each(|(g, p)| *g *= p);
                }
                Ok(g)
            })
            .collect()
    }

    /// The gradient of a target's mean token loss over its packed sequences: the batches its
    /// evaluation would score ([`held_out_batches`]), so every checkpoint sees the same tokens.
    fn target_gradient(&self, checkpoint: &Checkpoint, target: &TargetSet) -> Result<Vec<f32>> {
        let docs: Store = DomainDocs::from_tokens(&target.name, target.docs.clone()).into();
        let batches = held_out_batches(&docs, self.train, self.target_sequences, self.eos)?;
        let n: usize = batches.iter().map(|b| b.batch_size).sum();
        if n == 0 {
            return Err(Error::Config(format!(
                "target {:?}: no documents to take a gradient over",
                target.name
            )));
        }
        let mut sum = vec![0.0f32; checkpoint.parameter_count()];
        for batch in &batches {
            let g = checkpoint.gradient(batch, self.train.document_mask);
            let share = batch.batch_size as f32 / n as f32;
            sum.iter_mut().zip(g).for_each(|(s, g)| *s += share * g);
        }
        Ok(sum)
    }

    /// `sequences` packed sequences of domain `d` for the checkpoint at `step`, each with the source
    /// label of the first document it holds: windows at random positions of the domain's token
    /// stream (so a document is drawn in proportion to its length, an offset uniform within it),
    /// packed on from there like training data with documents drawn at random.
    fn domain_sequences(
        &self,
        d: usize,
        docs: &Store,
        step: u64,
    ) -> Result<Vec<(Batch, Arc<str>)>> {
        let seed = self.seed ^ step.rotate_left(20) ^ (d as u64).rotate_left(40);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = docs.documents();
        if n == 0 {
            return Ok(Vec::new());
        }
        let stream = docs.token_count() + n;
        (0..self.sequences)
            .map(|_| {
                let (first, offset) = docs.locate(rng.random_range(0..stream))?;
                let mut window = Window::new(self.train.seq_len + 1, self.train.document_mask);
                window.push(docs, &first, offset, self.eos)?;
                while !window.is_full() {
                    let next = docs.entry(rng.random_range(0..n))?;
                    window.push(docs, &next, 0, self.eos)?;
                }
                Ok((window.into_batch(d), Arc::clone(&first.source)))
            })
            .collect()
    }
}

/// One packed sequence being filled, as the trainer's sampler fills one: documents followed by
/// end-of-text, segment ids per document, positions running or restarting per document.
struct Window {
    need: usize,
    restart_positions: bool,
    tokens: Vec<u32>,
    segments: Vec<u32>,
    positions: Vec<u32>,
    doc_ids: Vec<u64>,
}

impl Window {
    fn new(need: usize, restart_positions: bool) -> Self {
        Self {
            need,
            restart_positions,
            tokens: Vec::with_capacity(need),
            segments: Vec::with_capacity(need),
            positions: Vec::with_capacity(need),
            doc_ids: Vec::with_capacity(need),
        }
    }

    fn is_full(&self) -> bool {
        self.tokens.len() >= self.need
    }

    /// Appends `doc` from `offset` on, then end-of-text, as far as the window has room.
    fn push(&mut self, store: &Store, doc: &DocumentEntry, offset: usize, eos: u32) -> Result<()> {
        let segment = self.segments.last().map_or(0, |s| s + 1);
        let start = match (self.restart_positions, self.positions.last()) {
            (false, Some(&p)) => p + 1,
            _ => 0,
        };
        let room = self.need - self.tokens.len();
        let offset = offset.min(doc.tokens);
        let mut with_eos = vec![0; (doc.tokens - offset).min(room)];
        store.read(doc, offset, &mut with_eos)?;
        if with_eos.len() < room {
            with_eos.push(eos);
        }
        for (position, token) in (start..).zip(with_eos) {
            self.tokens.push(token);
            self.segments.push(segment);
            self.positions.push(position);
            self.doc_ids.push(doc.doc_id);
        }
        Ok(())
    }

    /// The window as a batch of one sequence of domain `d` (inputs the first `need − 1` tokens,
    /// targets the last).
    fn into_batch(self, d: usize) -> Batch {
        let t = self.need - 1;
        Batch {
            batch_size: 1,
            seq_len: t,
            inputs: self.tokens[..t].to_vec(),
            targets: self.tokens[1..].to_vec(),
            positions: self.positions[..t].to_vec(),
            segments: self.segments[..t].to_vec(),
            doc_ids: self.doc_ids[..t].to_vec(),
            domains: vec![d],
            sources: Vec::new(),
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_packs_from_an_offset_as_the_sampler_packs() {
        let mut docs =
            DomainDocs::from_tokens("d", vec![vec![10, 11, 12, 13], vec![20, 21, 22, 23, 24]]);
        docs.docs[0].doc_id = 1;
        docs.docs[1].doc_id = 2;
        let store: Store = docs.into();
        let (first, second) = (store.entry(0).unwrap(), store.entry(1).unwrap());
        for restart in [true, false] {
            let mut window = Window::new(7, restart);
            window.push(&store, &first, 2, 99).unwrap();
            assert!(!window.is_full());
            window.push(&store, &second, 0, 99).unwrap();
            assert!(window.is_full());
            let batch = window.into_batch(3);
            assert_eq!(batch.inputs, [12, 13, 99, 20, 21, 22]);
            assert_eq!(batch.targets, [13, 99, 20, 21, 22, 23]);
            assert_eq!(batch.segments, [0, 0, 0, 1, 1, 1]);
            assert_eq!(batch.doc_ids, [1, 1, 1, 2, 2, 2]);
            let positions: &[u32] = if restart {
                &[0, 1, 2, 0, 1, 2]
            } else {
                &[0, 1, 2, 3, 4, 5]
            };
            assert_eq!(batch.positions, positions);
            assert_eq!(
                (batch.batch_size, batch.seq_len, batch.domains),
                (1, 6, vec![3])
            );
        }
    }
}
