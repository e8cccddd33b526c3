//! Where a domain's documents are read from: the [`DocumentStore`] the sampler and evaluation read
//! through, one document (or part of one) at a time. The shards' token cache
//! ([`crate::data::cache`]) is the store of every stage; [`DomainDocs`] holds documents in memory
//! (texts given on the command line, tests).

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// One document's identity and size, and where its store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentEntry {
    /// The shard's `doc_id` (a stable hash of source and text).
    pub doc_id: u64,
    /// The shard's `source` label.
    pub source: Arc<str>,
    /// Tokens in the document (without end-of-text).
    pub tokens: usize,
    /// The store's own position of the document (an index or an offset).
    pub location: u64,
}

/// A domain's documents of one split, read on demand.
///
/// Implementations are cheap to share ([`Store`] is an `Arc`) and read through `&self`, so one
/// store serves every sampler of a run.
///
/// # Example
/// ```
/// use mixlab_trainer::data::store::{DocumentStore, DomainDocs, Store};
/// let store: Store = DomainDocs::from_tokens("code", vec![vec![1, 2, 3], vec![4, 5]]).into();
/// // Position 5 of the stream `1 2 3 <eos> 4 5 <eos>` is the second document's second token.
/// let (entry, offset) = store.locate(5)?;
/// assert_eq!((entry.doc_id, entry.tokens, offset), (1, 2, 1));
/// let mut tail = [0; 1];
/// store.read(&entry, offset, &mut tail)?;
/// assert_eq!(tail, [5]);
/// # Ok::<(), mixlab_trainer::error::Error>(())
/// ```
pub trait DocumentStore: fmt::Debug + Send + Sync {
    /// The domain's name.
    fn name(&self) -> &str;

    /// Documents in the store.
    fn documents(&self) -> u64;

    /// Tokens in all documents (without end-of-text tokens).
    fn token_count(&self) -> u64;

    /// The entry of document `index` (`< documents()`), in the store's order.
    ///
    /// # Errors
    /// A read error naming the store's file.
    fn entry(&self, index: u64) -> Result<DocumentEntry>;

    /// Fills `out` with the document's tokens from `start` on (`start + out.len() ≤ entry.tokens`).
    ///
    /// # Errors
    /// A read error naming the store's file.
    fn read(&self, entry: &DocumentEntry, start: usize, out: &mut [u32]) -> Result<()>;

    /// The document holding position `at` of the domain's token stream with one end-of-text
    /// token after each document (`at < token_count() + documents()`), and `at`'s offset in it.
    ///
    /// # Errors
    /// A read error naming the store's file.
    fn locate(&self, at: u64) -> Result<(DocumentEntry, usize)>;

    /// A whole document's tokens.
    ///
    /// # Errors
    /// A read error naming the store's file.
    fn tokens(&self, entry: &DocumentEntry) -> Result<Vec<u32>> {
        let mut out = vec![0; entry.tokens];
        self.read(entry, 0, &mut out)?;
        Ok(out)
    }

    /// Every document, read into memory (for small splits only: a target's documents, say).
    ///
    /// # Errors
    /// A read error naming the store's file.
    fn to_memory(&self) -> Result<DomainDocs> {
        let mut docs = Vec::with_capacity(usize::try_from(self.documents()).unwrap_or(0));
        for index in 0..self.documents() {
            let entry = self.entry(index)?;
            docs.push(Document {
                doc_id: entry.doc_id,
                tokens: self.tokens(&entry)?,
                source: entry.source,
            });
        }
        Ok(DomainDocs {
            name: self.name().to_owned(),
            docs,
        })
    }
}

/// A shared document store, as the sampler and the corpus hold it.
pub type Store = Arc<dyn DocumentStore>;

impl From<DomainDocs> for Store {
    fn from(docs: DomainDocs) -> Self {
        Arc::new(docs)
    }
}

/// One domain's documents, in memory.
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
    /// use mixlab_trainer::data::store::{DocumentStore, DomainDocs};
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

    fn document(&self, index: u64) -> &Document {
        &self.docs[usize::try_from(index).expect("an index of a document in memory")]
    }

    fn entry_of(index: u64, doc: &Document) -> DocumentEntry {
        DocumentEntry {
            doc_id: doc.doc_id,
            source: Arc::clone(&doc.source),
            tokens: doc.tokens.len(),
            location: index,
        }
    }
}

impl DocumentStore for DomainDocs {
    fn name(&self) -> &str {
        &self.name
    }

    fn documents(&self) -> u64 {
        self.docs.len() as u64
    }

    fn token_count(&self) -> u64 {
        self.docs.iter().map(|d| d.tokens.len() as u64).sum()
    }

    fn entry(&self, index: u64) -> Result<DocumentEntry> {
        Ok(Self::entry_of(index, self.document(index)))
    }

    fn read(&self, entry: &DocumentEntry, start: usize, out: &mut [u32]) -> Result<()> {
        let tokens = &self.document(entry.location).tokens;
        out.copy_from_slice(&tokens[start..start + out.len()]);
        Ok(())
    }

    fn locate(&self, mut at: u64) -> Result<(DocumentEntry, usize)> {
        for (index, doc) in self.docs.iter().enumerate() {
            let span = doc.tokens.len() as u64 + 1;
            if at < span {
                return Ok((Self::entry_of(index as u64, doc), at as usize));
            }
            at -= span;
        }
        Err(Error::Config(format!(
            "position beyond domain {:?}'s stream of {} tokens and {} documents",
            self.name,
            self.token_count(),
            self.docs.len()
        )))
    }

    fn to_memory(&self) -> Result<DomainDocs> {
        Ok(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_counts_one_end_of_text_after_each_document() {
        let docs = DomainDocs::from_tokens("a", vec![vec![1, 2], vec![], vec![3]]);
        let found: Vec<(u64, usize)> = (0..6)
            .map(|at| {
                let (entry, offset) = docs.locate(at).unwrap();
                (entry.doc_id, offset)
            })
            .collect();
        assert_eq!(found, [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (2, 1)]);
        assert!(docs.locate(6).is_err());
        let memory = docs.to_memory().unwrap();
        assert_eq!(memory.docs, docs.docs);
    }
}
