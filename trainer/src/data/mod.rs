//! The run's data: every domain's documents, split into train, valid and probe, read on demand
//! from the shards' token cache.
//!
//! | module | what it holds |
//! |---|---|
//! | [`cache`] | the token cache built from a shard set: flat token files and document indexes |
//! | [`store`] | [`store::DocumentStore`], what the sampler reads documents through (cache or memory) |
//! | [`permutation`] | the seeded per-epoch document order, computed without storing it |
//! | [`sampler`] | the mixture sampler that packs documents of weighted domains into sequences |

pub mod cache;
pub mod permutation;
pub mod sampler;
pub mod store;

use std::sync::Arc;

use mixlab_artefacts::split::Split;
use mixlab_ingest::manifest::ShardSet;

use crate::data::cache::TokenCache;
use crate::data::store::Store;
use crate::error::Result;

/// Every domain's documents by split, and the tokenizer facts the model needs.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Domain names in manifest order.
    pub domains: Vec<String>,
    /// Training documents per domain.
    pub train: Vec<Store>,
    /// Validation documents per domain.
    pub valid: Vec<Store>,
    /// Probe documents per domain.
    pub probe: Vec<Store>,
    /// End-of-text token id.
    pub eos: u32,
    /// Vocabulary size.
    pub vocab_size: usize,
}

impl Corpus {
    /// The documents of a verified shard set, read through its token cache (built first when
    /// missing or stale; `progress` gets the tokens written and the total). Nothing is read into
    /// memory here.
    ///
    /// # Errors
    /// A damaged cache or shard, naming the file; I/O errors.
    pub fn open(shards: &ShardSet, progress: &mut dyn FnMut(u64, u64)) -> Result<Corpus> {
        let cache = TokenCache::open_or_build(shards, progress)?;
        let manifest = shards.manifest();
        let stores = |split: Split| -> Result<Vec<Store>> {
            (0..manifest.domains.len())
                .map(|d| Ok(Arc::new(cache.store(d, split)?) as Store))
                .collect()
        };
        Ok(Corpus {
            domains: manifest.domains.iter().map(|d| d.name.clone()).collect(),
            train: stores(Split::Train)?,
            valid: stores(Split::Valid)?,
            probe: stores(Split::Probe)?,
            eos: manifest.tokenizer.eos_id,
            vocab_size: manifest.tokenizer.vocab_size as usize,
        })
    }

    /// Training tokens per domain, in domain order.
    pub fn train_tokens(&self) -> Vec<u64> {
        self.train.iter().map(|s| s.token_count()).collect()
    }
}
