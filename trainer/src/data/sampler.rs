//! The deterministic mixture sampler: packs documents of weighted domains into training sequences.
//!
//! Each sequence comes from one domain: the one furthest below its target share of the sequences
//! drawn so far in the stage (largest `w_d · (n + 1) − count_d`, ties to the first domain), so every
//! prefix of the stream matches the weights to within one sequence per domain. Within a domain,
//! documents follow a shuffled order seeded by (seed, domain, epoch) and are packed end to end with an
//! end-of-text token after each; a sequence may end inside a document, and the next sequence from
//! that domain continues where it stopped. A domain that runs out starts a new epoch with a new
//! shuffle. The whole position in the stream is a small [`SamplerState`], so a resumed run continues
//! the exact same stream.

use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One domain's documents.
#[derive(Debug, Clone)]
pub struct DomainDocs {
    /// Domain name.
    pub name: String,
    /// The documents, in shard order.
    pub docs: Vec<Document>,
}

/// A document with the identity it has in the shards, so later stages can sample documents and
/// report per-document results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The shard's `doc_id` (a stable hash of source and text).
    pub doc_id: u64,
    /// The shard's `source` label.
    pub source: Arc<str>,
    /// Token ids (no end-of-text token).
    pub tokens: Vec<u32>,
}

impl DomainDocs {
    /// A domain from bare token lists: document ids are their indices, the source is the domain name.
    ///
    /// # Example
    /// ```
    /// use mixlab_trainer::data::sampler::DomainDocs;
    /// let d = DomainDocs::from_tokens("code", vec![vec![1, 2], vec![3]]);
    /// assert_eq!((d.docs[1].doc_id, &*d.docs[1].source, d.token_count()), (1, "code", 3));
    /// ```
    pub fn from_tokens(name: &str, docs: Vec<Vec<u32>>) -> Self {
        let source: Arc<str> = Arc::from(name);
        let docs = docs
            .into_iter()
            .enumerate()
            .map(|(i, tokens)| Document {
                doc_id: i as u64,
                source: Arc::clone(&source),
                tokens,
            })
            .collect();
        Self {
            name: name.to_owned(),
            docs,
        }
    }

    /// Tokens in all documents (without end-of-text tokens).
    pub fn token_count(&self) -> u64 {
        self.docs.iter().map(|d| d.tokens.len() as u64).sum()
    }
}

/// Where a domain's stream stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainCursor {
    /// Current epoch (0-based): how many times the domain has been exhausted.
    pub epoch: u64,
    /// Index into this epoch's shuffled order of the document being read.
    pub next_doc: usize,
    /// Tokens of that document (counting its end-of-text token) already used.
    pub offset: usize,
    /// Tokens drawn from this domain so far (all stages).
    pub tokens_drawn: u64,
}

/// The sampler's complete position in its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    /// One cursor per domain, in domain order.
    pub cursors: Vec<DomainCursor>,
    /// Sequences drawn per domain in the current stage.
    pub stage_counts: Vec<u64>,
    /// Index of the current stage.
    pub stage: usize,
    /// Sequences drawn in total.
    pub sequences: u64,
}

/// A batch of packed sequences, row-major `[batch, seq]` in every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Sequences in the batch.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Input token ids.
    pub inputs: Vec<u32>,
    /// Target ids (inputs shifted by one).
    pub targets: Vec<u32>,
    /// Position of each input token: its index in the sequence, or within its document when
    /// positions restart per document.
    pub positions: Vec<u32>,
    /// Document index of each input token within its sequence (for document-causal masks).
    pub segments: Vec<u32>,
    /// Shard document id of each input token (what per-document scores are keyed by).
    pub doc_ids: Vec<u64>,
    /// Domain index of each sequence.
    pub domains: Vec<usize>,
}

/// Draws packed sequences from weighted domains.
#[derive(Debug, Clone)]
pub struct MixtureSampler {
    domains: Vec<DomainDocs>,
    weights: Vec<f64>,
    seq_len: usize,
    eos: u32,
    seed: u64,
    restart_positions: bool,
    state: SamplerState,
    orders: Vec<(u64, Vec<usize>)>,
}

impl MixtureSampler {
    /// A sampler at the start of the stream.
    ///
    /// `restart_positions` makes positions restart at each document (for document masking).
    ///
    /// # Errors
    /// [`Error::Config`] if weights do not match the domains, or a weighted domain has no tokens.
    pub fn new(
        domains: Vec<DomainDocs>,
        weights: Vec<f64>,
        seq_len: usize,
        eos: u32,
        seed: u64,
        restart_positions: bool,
    ) -> Result<Self> {
        let state = SamplerState {
            cursors: vec![DomainCursor::default(); domains.len()],
            stage_counts: vec![0; domains.len()],
            stage: 0,
            sequences: 0,
        };
        let mut sampler = Self {
            domains,
            weights: Vec::new(),
            seq_len,
            eos,
            seed,
            restart_positions,
            state,
            orders: Vec::new(),
        };
        sampler.enter_stage(0, weights)?;
        Ok(sampler)
    }

    /// Starts stage `stage` with new target weights; per-stage counts restart at zero.
    ///
    /// # Errors
    /// [`Error::Config`] for a wrong length, negative weights, no positive weight, or weight on an empty domain.
    pub fn enter_stage(&mut self, stage: usize, weights: Vec<f64>) -> Result<()> {
        if weights.len() != self.domains.len() || weights.iter().any(|w| !w.is_finite() || *w < 0.0)
        {
            return Err(Error::Config(format!(
                "{} mixture weights for {} domains; expected one non-negative weight per domain",
                weights.len(),
                self.domains.len()
            )));
        }
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return Err(Error::Config(
                "the mixture gives no domain a positive weight".into(),
            ));
        }
        for (d, w) in self.domains.iter().zip(&weights) {
            if *w > 0.0 && d.docs.iter().all(|doc| doc.tokens.is_empty()) {
                return Err(Error::Config(format!(
                    "domain {:?} has weight {w} but no training tokens",
                    d.name
                )));
            }
        }
        self.state.stage = stage;
        self.weights = weights.iter().map(|w| w / total).collect();
        self.state.stage_counts = vec![0; self.domains.len()];
        Ok(())
    }

    /// The current state, to store in a checkpoint.
    pub fn state(&self) -> &SamplerState {
        &self.state
    }

    /// Restores a state saved by [`MixtureSampler::state`] (with the same domains, weights and seed).
    ///
    /// # Errors
    /// [`Error::Config`] if the state has a different number of domains.
    pub fn restore(&mut self, state: SamplerState) -> Result<()> {
        if state.cursors.len() != self.domains.len()
            || state.stage_counts.len() != self.domains.len()
        {
            return Err(Error::Config(format!(
                "sampler state has {} domains but the run has {}",
                state.cursors.len(),
                self.domains.len()
            )));
        }
        self.state = state;
        Ok(())
    }

    /// The domain the next sequence comes from.
    fn next_domain(&self) -> usize {
        let n = self.state.stage_counts.iter().sum::<u64>() as f64;
        let deficit = |d: usize| self.weights[d] * (n + 1.0) - self.state.stage_counts[d] as f64;
        (0..self.domains.len())
            .filter(|&d| self.weights[d] > 0.0)
            .fold(None::<usize>, |best, d| match best {
                Some(b) if deficit(b) >= deficit(d) => Some(b),
                _ => Some(d),
            })
            .expect("enter_stage guarantees a positive weight")
    }

    /// The shuffled document order of a domain's epoch.
    fn order(&mut self, domain: usize) -> &[usize] {
        let epoch = self.state.cursors[domain].epoch;
        if self.orders.len() != self.domains.len() {
            self.orders = vec![(u64::MAX, Vec::new()); self.domains.len()];
        }
        if self.orders[domain].0 != epoch {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&self.seed.to_le_bytes());
            seed[8..16].copy_from_slice(&(domain as u64).to_le_bytes());
            seed[16..24].copy_from_slice(&epoch.to_le_bytes());
            let mut order: Vec<usize> = (0..self.domains[domain].docs.len()).collect();
            order.shuffle(&mut ChaCha8Rng::from_seed(seed));
            self.orders[domain] = (epoch, order);
        }
        &self.orders[domain].1
    }

    /// Appends `seq_len + 1` tokens of `domain` to the buffers, with segment ids and positions.
    fn fill(
        &mut self,
        domain: usize,
        tokens: &mut Vec<u32>,
        segments: &mut Vec<u32>,
        positions: &mut Vec<u32>,
        doc_ids: &mut Vec<u64>,
    ) {
        let need = self.seq_len + 1;
        let (mut segment, mut position) = (0u32, 0u32);
        let mut taken = 0;
        while taken < need {
            let cursor = self.state.cursors[domain].clone();
            let doc_index = self.order(domain)[cursor.next_doc];
            let document = &self.domains[domain].docs[doc_index];
            let doc = &document.tokens;
            let len_with_eos = doc.len() + 1;
            let take = (len_with_eos - cursor.offset).min(need - taken);
            for i in cursor.offset..cursor.offset + take {
                tokens.push(if i < doc.len() { doc[i] } else { self.eos });
                segments.push(segment);
                positions.push(position);
                doc_ids.push(document.doc_id);
                position += 1;
            }
            taken += take;
            let c = &mut self.state.cursors[domain];
            c.tokens_drawn += take as u64;
            c.offset += take;
            if c.offset == len_with_eos {
                c.offset = 0;
                c.next_doc += 1;
                segment += 1;
                if self.restart_positions {
                    position = 0;
                }
                if c.next_doc == self.domains[domain].docs.len() {
                    c.next_doc = 0;
                    c.epoch += 1;
                }
            }
        }
    }

    /// The next `batch_size` sequences.
    pub fn next_batch(&mut self, batch_size: usize) -> Batch {
        let t = self.seq_len;
        let mut batch = Batch {
            batch_size,
            seq_len: t,
            inputs: Vec::with_capacity(batch_size * t),
            targets: Vec::with_capacity(batch_size * t),
            positions: Vec::with_capacity(batch_size * t),
            segments: Vec::with_capacity(batch_size * t),
            doc_ids: Vec::with_capacity(batch_size * t),
            domains: Vec::with_capacity(batch_size),
        };
        let (mut tokens, mut segments, mut positions) = (Vec::new(), Vec::new(), Vec::new());
        let mut doc_ids = Vec::new();
        for _ in 0..batch_size {
            let d = self.next_domain();
            tokens.clear();
            segments.clear();
            positions.clear();
            doc_ids.clear();
            self.fill(d, &mut tokens, &mut segments, &mut positions, &mut doc_ids);
            batch.inputs.extend_from_slice(&tokens[..t]);
            batch.targets.extend_from_slice(&tokens[1..]);
            batch.segments.extend_from_slice(&segments[..t]);
            batch.positions.extend_from_slice(&positions[..t]);
            batch.doc_ids.extend_from_slice(&doc_ids[..t]);
            batch.domains.push(d);
            self.state.stage_counts[d] += 1;
            self.state.sequences += 1;
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<DomainDocs> {
        (0..3)
            .map(|d| {
                DomainDocs::from_tokens(
                    &format!("d{d}"),
                    (0..5).map(|i| vec![100 * d + i; 3 + i as usize]).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn every_prefix_matches_the_weights_within_one_sequence() {
        let _rng = crate::test_rng::lock();
        let weights = vec![0.5, 0.3, 0.2];
        let mut s = MixtureSampler::new(domains(), weights.clone(), 8, 0, 1, false).unwrap();
        let mut counts = [0f64; 3];
        for n in 1..=200 {
            let b = s.next_batch(1);
            counts[b.domains[0]] += 1.0;
            for d in 0..3 {
                assert!(
                    (counts[d] - weights[d] * n as f64).abs() <= 1.0,
                    "prefix {n}: {counts:?}"
                );
            }
        }
    }

    #[test]
    fn resuming_from_a_state_continues_the_same_stream() {
        let _rng = crate::test_rng::lock();
        let mut straight =
            MixtureSampler::new(domains(), vec![0.4, 0.4, 0.2], 7, 0, 9, true).unwrap();
        let all: Vec<Batch> = (0..12).map(|_| straight.next_batch(3)).collect();
        let mut first = MixtureSampler::new(domains(), vec![0.4, 0.4, 0.2], 7, 0, 9, true).unwrap();
        let head: Vec<Batch> = (0..5).map(|_| first.next_batch(3)).collect();
        let saved = serde_json::to_string(first.state()).unwrap();
        let mut resumed =
            MixtureSampler::new(domains(), vec![0.4, 0.4, 0.2], 7, 0, 9, true).unwrap();
        resumed
            .restore(serde_json::from_str(&saved).unwrap())
            .unwrap();
        let tail: Vec<Batch> = (0..7).map(|_| resumed.next_batch(3)).collect();
        assert_eq!(all, [head, tail].concat());
    }

    #[test]
    fn packing_inserts_eos_and_tracks_documents_and_epochs() {
        let _rng = crate::test_rng::lock();
        let docs = vec![DomainDocs::from_tokens("a", vec![vec![5, 6], vec![7]])];
        let mut s = MixtureSampler::new(docs, vec![1.0], 5, 0, 3, true).unwrap();
        let b = s.next_batch(1);
        // Stream of one epoch: either [5 6 0 7 0] or [7 0 5 6 0], then the next epoch.
        let mut seen: Vec<u32> = b.inputs.clone();
        seen.push(*b.targets.last().unwrap());
        assert_eq!(seen.iter().filter(|t| **t == 0).count(), 2, "{seen:?}");
        assert_eq!(b.inputs[1..], b.targets[..4]);
        assert_eq!(s.state().cursors[0].epoch, 1);
        let first_doc_len = if seen[0] == 5 { 3 } else { 2 };
        assert_eq!(b.segments[first_doc_len], 1);
        assert_eq!(
            b.positions[first_doc_len], 0,
            "positions restart per document"
        );
        // Document ids follow the segments: from_tokens numbers documents 0, 1, ...
        let first_id = u64::from(seen[0] != 5);
        assert!(b.doc_ids[..first_doc_len].iter().all(|&id| id == first_id));
        assert_eq!(b.doc_ids[first_doc_len], 1 - first_id, "{:?}", b.doc_ids);
    }

    #[test]
    fn zero_weight_domains_are_never_drawn() {
        let _rng = crate::test_rng::lock();
        let mut s = MixtureSampler::new(domains(), vec![0.0, 1.0, 0.0], 4, 0, 0, false).unwrap();
        assert!((0..20).all(|_| s.next_batch(2).domains.iter().all(|d| *d == 1)));
    }
}
