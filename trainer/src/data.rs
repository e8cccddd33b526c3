//! The run's data: every domain's documents from verified shards, split into train, valid and probe.

use mixlab_ingest::manifest::ShardSet;
use mixlab_ingest::shard::Split;

use crate::error::Result;
use crate::sampler::DomainDocs;

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
    /// Hex SHA-256 of the tokenizer the ids come from.
    pub tokenizer_sha256: String,
}

impl Corpus {
    /// Reads all documents of a verified shard set into memory.
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
            tokenizer_sha256: manifest.tokenizer.sha256.clone(),
        };
        for domain in &manifest.domains {
            let mut by_split = [Vec::new(), Vec::new(), Vec::new()];
            for doc in shards.read_domain(&domain.name, None)? {
                let slot = match doc.split {
                    Split::Train => 0,
                    Split::Valid => 1,
                    Split::Probe => 2,
                };
                by_split[slot].push(doc.tokens);
            }
            let [train, valid, probe] = by_split;
            corpus.domains.push(domain.name.clone());
            corpus.train.push(DomainDocs {
                name: domain.name.clone(),
                docs: train,
            });
            corpus.valid.push(DomainDocs {
                name: domain.name.clone(),
                docs: valid,
            });
            corpus.probe.push(DomainDocs {
                name: domain.name.clone(),
                docs: probe,
            });
        }
        Ok(corpus)
    }
}
