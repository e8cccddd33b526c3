//! The run's data: every domain's documents from verified shards, split into train, valid and probe.

pub mod sampler;

use std::collections::HashMap;
use std::sync::Arc;

use mixlab_artefacts::split::Split;
use mixlab_ingest::manifest::ShardSet;

use crate::data::sampler::{Document, DomainDocs};
use crate::error::Result;

/// Documents of every domain by split, and the tokenizer facts the model needs.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Domain names in manifest order.
    pub domains: Vec<String>,
    /// Training documents per domain.
    pub train: Vec<DomainDocs>,
    /// Validation documents per domain.
    pub valid: Vec<DomainDocs>,
    /// Probe documents per domain.
    pub probe: Vec<DomainDocs>,
    /// End-of-text token id.
    pub eos: u32,
    /// Vocabulary size.
    pub vocab_size: usize,
}

impl Corpus {
    /// Reads all documents of a verified shard set into memory, keeping each document's `doc_id`
    /// and source label.
    ///
    /// # Errors
    /// Shard read errors naming the file.
    pub fn load(shards: &ShardSet) -> Result<Corpus> {
        let manifest = shards.manifest();
        let mut corpus = Corpus {
            domains: Vec::new(),
            train: Vec::new(),
            valid: Vec::new(),
            probe: Vec::new(),
            eos: manifest.tokenizer.eos_id,
            vocab_size: manifest.tokenizer.vocab_size as usize,
        };
        // One shared label per source: documents of a domain usually come from a handful.
        let mut labels: HashMap<String, Arc<str>> = HashMap::new();
        for domain in &manifest.domains {
            let mut by_split = [Vec::new(), Vec::new(), Vec::new()];
            for doc in shards.read_domain(&domain.name, None)? {
                let slot = match doc.split {
                    Split::Train => 0,
                    Split::Valid => 1,
                    Split::Probe => 2,
                };
                let source = labels
                    .entry(doc.source)
                    .or_insert_with_key(|s| Arc::from(s.as_str()));
                by_split[slot].push(Document {
                    doc_id: doc.doc_id,
                    source: Arc::clone(source),
                    tokens: doc.tokens,
                });
            }
            let [train, valid, probe] = by_split.map(|docs| DomainDocs {
                name: domain.name.clone(),
                docs,
            });
            corpus.domains.push(domain.name.clone());
            corpus.train.push(train);
            corpus.valid.push(valid);
            corpus.probe.push(probe);
        }
        Ok(corpus)
    }

    /// Training tokens per domain, in domain order.
    pub fn train_tokens(&self) -> Vec<u64> {
        self.train.iter().map(DomainDocs::token_count).collect()
    }
}
