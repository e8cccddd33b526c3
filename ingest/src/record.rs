//! The per-record work of ingest that needs no shared state: cleaning, the quality filters and
//! dedup hashes.
//!
//! Both engines judge records with [`Judge`]: the local engine in rayon loops, the Ballista engine
//! inside a UDF on the executors ([`crate::cluster`]). Dedup follows in record order (local) or as
//! distributed queries ([`crate::cluster::groups`]); tokenization, split assignment and shard
//! writing then run in this process (local) or on the executors ([`crate::cluster::write`]), with
//! the same documents either way.

use std::borrow::Cow;

use arrow::array::{Array, StringArray};
use xxhash_rust::xxh3::Xxh3;

use crate::dedup::{MinHasher, exact_hash, normalize};
use crate::filter::QualityFilter;

/// The verdict on one record before dedup.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The text column is null (a malformed record under `on_error`).
    Null,
    /// A quality rule dropped the record; the rule's name.
    Filtered(Cow<'static, str>),
    /// The record passed the filters and goes on to dedup.
    Candidate(Candidate),
}

/// A record that passed the filters: its dedup hashes and its text or tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Exact-dedup hash of the normalized text (when exact dedup is on).
    pub hash: Option<u128>,
    /// MinHash signature of the normalized text (when near dedup is on).
    pub signature: Option<Vec<u32>>,
    /// What the shard will be made of.
    pub body: Body,
}

/// A candidate's content: the cleaned text (tokenized after dedup, in this process), or only its
/// document id (judged on a Ballista executor, which reads the record again to tokenize and write
/// it once dedup has kept it).
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// The cleaned text.
    Text(String),
    /// The document's id: [`doc_id`] of the source label and cleaned text.
    Remote {
        /// [`doc_id`] of the source label and cleaned text.
        doc_id: u64,
    },
}

/// The checks of one domain's records.
#[derive(Debug, Clone, Copy)]
pub struct Judge<'a> {
    /// Length limits and Gopher rules.
    pub filter: &'a QualityFilter,
    /// Whether exact dedup is on (the hash is computed).
    pub exact: bool,
    /// The MinHash hasher when near dedup is on.
    pub hasher: Option<&'a MinHasher>,
}

impl Judge<'_> {
    /// Record `i`'s raw length in bytes and verdict, its body the cleaned text.
    ///
    /// # Example
    /// ```
    /// use arrow::array::StringArray;
    /// use mixlab_ingest::config::FilterConfig;
    /// use mixlab_ingest::filter::QualityFilter;
    /// use mixlab_ingest::record::{Body, Judge, Verdict};
    /// let filter = QualityFilter { min_chars: 10, max_chars: 1000, rules: FilterConfig::default() };
    /// let judge = Judge { filter: &filter, exact: true, hasher: None };
    /// let texts = StringArray::from(vec![Some("tiny"), None, Some(" The cat sat on the mat and that was that.\r\n")]);
    /// assert_eq!(judge.verdict(&texts, 0).1, Verdict::Filtered("too_short".into()));
    /// assert_eq!(judge.verdict(&texts, 1), (0, Verdict::Null));
    /// let (raw_len, Verdict::Candidate(c)) = judge.verdict(&texts, 2) else { panic!() };
    /// assert_eq!(raw_len, 44);
    /// assert_eq!(c.body, Body::Text("The cat sat on the mat and that was that.".into()));
    /// assert!(c.hash.is_some() && c.signature.is_none());
    /// ```
    pub fn verdict(&self, texts: &StringArray, i: usize) -> (usize, Verdict) {
        if texts.is_null(i) {
            return (0, Verdict::Null);
        }
        let raw_len = texts.value(i).len();
        let text = clean(texts.value(i));
        if let Some(reason) = self.filter.check(&text) {
            return (raw_len, Verdict::Filtered(Cow::Borrowed(reason)));
        }
        let normalized = if self.exact || self.hasher.is_some() {
            normalize(&text)
        } else {
            String::new()
        };
        let candidate = Candidate {
            hash: self.exact.then(|| exact_hash(&normalized)),
            signature: self.hasher.map(|h| h.signature(&normalized)),
            body: Body::Text(text),
        };
        (raw_len, Verdict::Candidate(candidate))
    }
}

/// Cleaning applied to every text before anything else: trimmed, Windows line ends made Unix.
///
/// # Example
/// ```
/// assert_eq!(mixlab_ingest::record::clean("  a\r\nb \n"), "a\nb");
/// ```
pub fn clean(text: &str) -> String {
    text.trim().replace("\r\n", "\n")
}

/// Stable id of a document: a hash (xxh3) of its source label, a zero byte and its text, streamed
/// (the text is not copied).
///
/// # Example
/// ```
/// use mixlab_ingest::record::doc_id;
/// use xxhash_rust::xxh3::xxh3_64;
/// assert_eq!(doc_id("books", "text"), xxh3_64(b"books\0text"));
/// assert_ne!(doc_id("books", "text"), doc_id("book", "stext"));
/// ```
pub fn doc_id(source_label: &str, text: &str) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(source_label.as_bytes());
    hasher.update(&[0]);
    hasher.update(text.as_bytes());
    hasher.digest()
}
