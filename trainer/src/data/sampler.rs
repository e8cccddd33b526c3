//! The deterministic mixture sampler: packs documents of weighted domains into training sequences.
//!
//! Each sequence comes from one domain: the one furthest below its target share of the sequences
//! drawn so far in the stage (largest `w_d · (n + 1) − count_d`, ties to the first domain), so every
//! prefix of the stream matches the weights to within one sequence per domain. Within a domain,
//! documents follow a random order seeded by (seed, domain, epoch) — a [`Permutation`] computed
//! position by position, so no order is stored — and are packed end to end with an end-of-text
//! token after each; a sequence may end inside a document, and the next sequence from that domain
//! continues where it stopped. A domain that runs out starts a new epoch with a new order. The
//! whole position in the stream is a small [`SamplerState`], so a resumed run continues the exact
//! same stream.
//!
//! Documents are read from each domain's [`Store`] as they are needed, at most `read_ahead` tokens
//! at a time, so the sampler holds at most `domains × read_ahead` tokens whatever the corpus size.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::data::permutation::Permutation;
use crate::data::store::{DocumentEntry, Store};
use crate::error::{Error, Result};

/// Tokens read from a domain's store at a time, unless set otherwise: 256 KiB of `u32`s.
pub const DEFAULT_READ_AHEAD: usize = 1 << 16;

/// Where a domain's stream stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainCursor {
    /// Current epoch (0-based): how many times the domain has been exhausted.
    pub epoch: u64,
    /// Position in this epoch's document order of the document being read.
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

/// A batch of packed sequences, row-major `[batch, seq]` in every per-token field.
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
    /// The source label of each document the batch holds, in order of first appearance.
    pub sources: Vec<DocumentSource>,
}

/// Which source a document of a batch comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentSource {
    /// The document's domain index.
    pub domain: usize,
    /// The shard document id.
    pub doc_id: u64,
    /// The shard's `source` label.
    pub source: Arc<str>,
}

/// Draws packed sequences from weighted domains.
#[derive(Debug, Clone)]
pub struct MixtureSampler {
    streams: Vec<DomainStream>,
    weights: Vec<f64>,
    seq_len: usize,
    eos: u32,
    seed: u64,
    restart_positions: bool,
    read_ahead: usize,
    state: SamplerState,
}

/// One domain's store and what the sampler holds of it: the current epoch's order and the part of
/// the current document read so far.
#[derive(Debug, Clone)]
struct DomainStream {
    store: Store,
    order: Option<(u64, Permutation)>,
    /// The document at the cursor, once read from the index.
    current: Option<DocumentEntry>,
    /// Tokens of the current document from `buffer_start` on.
    buffer: Vec<u32>,
    buffer_start: usize,
}

impl DomainStream {
    fn new(store: Store) -> Self {
        Self {
            store,
            order: None,
            current: None,
            buffer: Vec::new(),
            buffer_start: 0,
        }
    }

    /// Forgets the current document (the cursor moved on, or was restored).
    fn leave_document(&mut self) {
        self.current = None;
        self.buffer.clear();
        self.buffer_start = 0;
    }

    /// The document at `cursor`, read from the store's index once.
    fn document(&mut self, cursor: &DomainCursor, key: [u64; 2]) -> Result<DocumentEntry> {
        if let Some(entry) = &self.current {
            return Ok(entry.clone());
        }
        let n = self.store.documents();
        if !matches!(&self.order, Some((epoch, _)) if *epoch == cursor.epoch) {
            let order = Permutation::new(n, [key[0], key[1], cursor.epoch]);
            self.order = Some((cursor.epoch, order));
        }
        let (_, order) = self.order.as_ref().expect("set above");
        let entry = self.store.entry(order.at(cursor.next_doc as u64))?;
        self.current = Some(entry.clone());
        Ok(entry)
    }

    /// The current document's tokens from `offset` on, as far as the buffer holds them; reads up
    /// to `read_ahead` tokens when it holds none of them.
    fn tokens_from(
        &mut self,
        entry: &DocumentEntry,
        offset: usize,
        read_ahead: usize,
    ) -> Result<&[u32]> {
        let held = self.buffer_start..self.buffer_start + self.buffer.len();
        if !held.contains(&offset) {
            let count = read_ahead.min(entry.tokens - offset);
            self.buffer.resize(count, 0);
            self.store.read(entry, offset, &mut self.buffer)?;
            self.buffer_start = offset;
        }
        Ok(&self.buffer[offset - self.buffer_start..])
    }
}

/// One sequence of `seq_len + 1` tokens being packed.
#[derive(Debug, Default)]
struct Packed {
    tokens: Vec<u32>,
    segments: Vec<u32>,
    positions: Vec<u32>,
    doc_ids: Vec<u64>,
}

impl Packed {
    fn clear(&mut self) {
        self.tokens.clear();
        self.segments.clear();
        self.positions.clear();
        self.doc_ids.clear();
    }
}

impl MixtureSampler {
    /// A sampler at the start of the stream, reading [`DEFAULT_READ_AHEAD`] tokens at a time.
    ///
    /// `restart_positions` makes positions restart at each document (for document masking).
    ///
    /// # Errors
    /// [`Error::Config`] if weights do not match the domains, or a weighted domain has no tokens.
    pub fn new<S: Into<Store>>(
        domains: Vec<S>,
        weights: Vec<f64>,
        seq_len: usize,
        eos: u32,
        seed: u64,
        restart_positions: bool,
    ) -> Result<Self> {
        let streams: Vec<DomainStream> = domains
            .into_iter()
            .map(|d| DomainStream::new(d.into()))
            .collect();
        let state = SamplerState {
            cursors: vec![DomainCursor::default(); streams.len()],
            stage_counts: vec![0; streams.len()],
            stage: 0,
            sequences: 0,
        };
        let mut sampler = Self {
            streams,
            weights: Vec::new(),
            seq_len,
            eos,
            seed,
            restart_positions,
            read_ahead: DEFAULT_READ_AHEAD,
            state,
        };
        sampler.enter_stage(0, weights)?;
        Ok(sampler)
    }

    /// The same sampler reading at most `tokens` tokens of a document at a time (at least 1): what
    /// bounds the training data it holds in memory to `domains × tokens`. The stream is the same
    /// whatever the read-ahead.
    ///
    /// # Example
    /// ```
    /// use mixlab_trainer::data::sampler::MixtureSampler;
    /// use mixlab_trainer::data::store::DomainDocs;
    /// let docs = || vec![DomainDocs::from_tokens("a", vec![(1..100).collect(); 3])];
    /// let mut whole = MixtureSampler::new(docs(), vec![1.0], 16, 0, 7, false)?;
    /// let mut narrow = MixtureSampler::new(docs(), vec![1.0], 16, 0, 7, false)?.with_read_ahead(4);
    /// assert_eq!(whole.next_batch(5)?, narrow.next_batch(5)?);
    /// assert!(narrow.buffered_tokens() <= 4);
    /// # Ok::<(), mixlab_trainer::error::Error>(())
    /// ```
    #[must_use]
    pub fn with_read_ahead(mut self, tokens: usize) -> Self {
        self.read_ahead = tokens.max(1);
        self
    }

    /// Tokens the sampler holds in its read buffers now.
    pub fn buffered_tokens(&self) -> usize {
        self.streams.iter().map(|s| s.buffer.len()).sum()
    }

    /// Starts stage `stage` with new target weights; per-stage counts restart at zero.
    ///
    /// # Errors
    /// [`Error::Config`] for a wrong length, negative weights, no positive weight, or weight on an empty domain.
    pub fn enter_stage(&mut self, stage: usize, weights: Vec<f64>) -> Result<()> {
        let domains = self.streams.len();
        if weights.len() != domains || weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err(Error::Config(format!(
                "{} mixture weights for {domains} domains; expected one non-negative weight per domain",
                weights.len(),
            )));
        }
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return Err(Error::Config(
                "the mixture gives no domain a positive weight".into(),
            ));
        }
        for (s, w) in self.streams.iter().zip(&weights) {
            if *w > 0.0 && s.store.token_count() == 0 {
                return Err(Error::Config(format!(
                    "domain {:?} has weight {w} but no training tokens",
                    s.store.name()
                )));
            }
        }
        self.state.stage = stage;
        self.weights = weights.iter().map(|w| w / total).collect();
        self.state.stage_counts = vec![0; domains];
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
        let domains = self.streams.len();
        if state.cursors.len() != domains || state.stage_counts.len() != domains {
            return Err(Error::Config(format!(
                "sampler state has {} domains but the run has {domains}",
                state.cursors.len(),
            )));
        }
        self.streams
            .iter_mut()
            .for_each(DomainStream::leave_document);
        self.state = state;
        Ok(())
    }

    /// The domain the next sequence comes from.
    fn next_domain(&self) -> usize {
        let n = self.state.stage_counts.iter().sum::<u64>() as f64;
        let deficit = |d: usize| self.weights[d] * (n + 1.0) - self.state.stage_counts[d] as f64;
        (0..self.streams.len())
            .filter(|&d| self.weights[d] > 0.0)
            .fold(None::<usize>, |best, d| match best {
                Some(b) if deficit(b) >= deficit(d) => Some(b),
                _ => Some(d),
            })
            .expect("enter_stage guarantees a positive weight")
    }

    /// Packs `seq_len + 1` tokens of `domain` into `out`, with segment ids and positions, and
    /// notes the source of each document it starts in `sources`.
    fn fill(
        &mut self,
        domain: usize,
        out: &mut Packed,
        sources: &mut Vec<DocumentSource>,
    ) -> Result<()> {
        let need = self.seq_len + 1;
        let (mut segment, mut position) = (0u32, 0u32);
        let key = [self.seed, domain as u64];
        while out.tokens.len() < need {
            let stream = &mut self.streams[domain];
            let cursor = &mut self.state.cursors[domain];
            let entry = stream.document(cursor, key)?;
            if !sources
                .iter()
                .any(|s| s.domain == domain && s.doc_id == entry.doc_id)
            {
                sources.push(DocumentSource {
                    domain,
                    doc_id: entry.doc_id,
                    source: Arc::clone(&entry.source),
                });
            }
            let room = need - out.tokens.len();
            let take = if cursor.offset < entry.tokens {
                let tokens = stream.tokens_from(&entry, cursor.offset, self.read_ahead)?;
                let take = tokens.len().min(room);
                out.tokens.extend_from_slice(&tokens[..take]);
                take
            } else {
                out.tokens.push(self.eos);
                1
            };
            for _ in 0..take {
                out.segments.push(segment);
                out.positions.push(position);
                out.doc_ids.push(entry.doc_id);
                position += 1;
            }
            cursor.tokens_drawn += take as u64;
            cursor.offset += take;
            if cursor.offset == entry.tokens + 1 {
                stream.leave_document();
                cursor.offset = 0;
                cursor.next_doc += 1;
                segment += 1;
                if self.restart_positions {
                    position = 0;
                }
                if cursor.next_doc as u64 == stream.store.documents() {
                    cursor.next_doc = 0;
                    cursor.epoch += 1;
                }
            }
        }
        Ok(())
    }

    /// The next `batch_size` sequences.
    ///
    /// # Errors
    /// A store's read error (a damaged cache file, named).
    pub fn next_batch(&mut self, batch_size: usize) -> Result<Batch> {
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
            sources: Vec::new(),
        };
        let mut packed = Packed::default();
        for _ in 0..batch_size {
            let d = self.next_domain();
            packed.clear();
            self.fill(d, &mut packed, &mut batch.sources)?;
            batch.inputs.extend_from_slice(&packed.tokens[..t]);
            batch.targets.extend_from_slice(&packed.tokens[1..]);
            batch.segments.extend_from_slice(&packed.segments[..t]);
            batch.positions.extend_from_slice(&packed.positions[..t]);
            batch.doc_ids.extend_from_slice(&packed.doc_ids[..t]);
            batch.domains.push(d);
            self.state.stage_counts[d] += 1;
            self.state.sequences += 1;
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::store::DomainDocs;

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
            let b = s.next_batch(1).unwrap();
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
        let all: Vec<Batch> = (0..12).map(|_| straight.next_batch(3).unwrap()).collect();
        let mut first = MixtureSampler::new(domains(), vec![0.4, 0.4, 0.2], 7, 0, 9, true).unwrap();
        let head: Vec<Batch> = (0..5).map(|_| first.next_batch(3).unwrap()).collect();
        let saved = serde_json::to_string(first.state()).unwrap();
        let mut resumed =
            MixtureSampler::new(domains(), vec![0.4, 0.4, 0.2], 7, 0, 9, true).unwrap();
        resumed
            .restore(serde_json::from_str(&saved).unwrap())
            .unwrap();
        let tail: Vec<Batch> = (0..7).map(|_| resumed.next_batch(3).unwrap()).collect();
        assert_eq!(all, [head, tail].concat());
    }

    #[test]
    fn packing_inserts_eos_and_tracks_documents_and_epochs() {
        let _rng = crate::test_rng::lock();
        let docs = vec![DomainDocs::from_tokens("a", vec![vec![5, 6], vec![7]])];
        let mut s = MixtureSampler::new(docs, vec![1.0], 5, 0, 3, true).unwrap();
        let b = s.next_batch(1).unwrap();
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
        assert!((0..20).all(|_| s.next_batch(2).unwrap().domains.iter().all(|d| *d == 1)));
    }

    #[test]
    fn each_epoch_reads_every_document_once_in_a_new_order() {
        let _rng = crate::test_rng::lock();
        let n = 40;
        let docs = DomainDocs::from_tokens("a", (0..n).map(|i| vec![i + 1]).collect());
        // Sequences of one document each: token, end-of-text.
        let mut s = MixtureSampler::new(vec![docs], vec![1.0], 1, 0, 7, false).unwrap();
        let epochs: Vec<Vec<u32>> = (0..3)
            .map(|_| (0..n).map(|_| s.next_batch(1).unwrap().inputs[0]).collect())
            .collect();
        for (e, order) in epochs.iter().enumerate() {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (1..=n).collect::<Vec<_>>(), "epoch {e}: {order:?}");
        }
        assert_ne!(epochs[0], epochs[1]);
        assert_ne!(epochs[1], epochs[2]);
        assert_eq!(s.state().cursors[0].epoch, 3);
    }

    #[test]
    fn a_small_read_ahead_bounds_the_buffers_and_keeps_the_stream() {
        let _rng = crate::test_rng::lock();
        let long = || {
            (0..3)
                .map(|d| DomainDocs::from_tokens(&format!("d{d}"), vec![(0..500).collect(); 4]))
                .collect::<Vec<_>>()
        };
        let mut wide = MixtureSampler::new(long(), vec![0.5, 0.3, 0.2], 32, 9, 1, true).unwrap();
        let mut narrow = MixtureSampler::new(long(), vec![0.5, 0.3, 0.2], 32, 9, 1, true)
            .unwrap()
            .with_read_ahead(5);
        for _ in 0..100 {
            assert_eq!(wide.next_batch(4).unwrap(), narrow.next_batch(4).unwrap());
            assert!(
                narrow.buffered_tokens() <= 3 * 5,
                "{}",
                narrow.buffered_tokens()
            );
        }
        assert!(
            wide.buffered_tokens() > 15,
            "the wide sampler reads whole documents"
        );
    }

    #[test]
    fn a_batch_names_the_source_of_each_document_once() {
        let _rng = crate::test_rng::lock();
        let mut s = MixtureSampler::new(domains(), vec![0.4, 0.4, 0.2], 7, 0, 9, true).unwrap();
        let b = s.next_batch(6).unwrap();
        for (row, &domain) in b.domains.iter().enumerate() {
            for &id in &b.doc_ids[row * b.seq_len..(row + 1) * b.seq_len] {
                let named: Vec<_> = b
                    .sources
                    .iter()
                    .filter(|s| s.domain == domain && s.doc_id == id)
                    .collect();
                assert_eq!(named.len(), 1, "document {id} of domain {domain}");
                assert_eq!(&*named[0].source, format!("d{domain}"));
            }
        }
    }
}
