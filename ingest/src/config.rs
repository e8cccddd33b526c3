//! The ingest sections of `datasets.toml`: `[tokenizer]`, `[ingest]` and `[[domain]]`.
//!
//! Every struct denies unknown keys, so a typo is a configuration error naming the key instead of a
//! silently ignored setting. Defaults live in one `Default` impl per struct and cite where they come from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `[tokenizer]`: load a Hugging Face `tokenizer.json` (`path = "..."`), or train a byte-level BPE
/// on the corpus (`[tokenizer.train]`); a table with both or neither is refused when it loads.
///
/// # Example
/// ```
/// use mixlab_ingest::config::TokenizerConfig;
/// let file: TokenizerConfig = serde_json::from_str(r#"{ "path": "bpe.json" }"#)?;
/// assert_eq!(file, TokenizerConfig::File("bpe.json".into()));
/// assert!(serde_json::from_str::<TokenizerConfig>("{}").is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TokenizerTable", into = "TokenizerTable")]
pub enum TokenizerConfig {
    /// A Hugging Face tokenizer file, relative to the configuration file.
    File(PathBuf),
    /// A byte-level BPE trained on a sample of the corpus.
    Train(TrainTokenizerConfig),
}

/// `[tokenizer]` as written: the two keys of which exactly one is set (also the shape it is
/// hashed in, so ingest's inputs hash is that of the table).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizerTable {
    path: Option<PathBuf>,
    train: Option<TrainTokenizerConfig>,
}

impl TryFrom<TokenizerTable> for TokenizerConfig {
    type Error = &'static str;

    fn try_from(table: TokenizerTable) -> std::result::Result<Self, Self::Error> {
        match (table.path, table.train) {
            (Some(path), None) => Ok(Self::File(path)),
            (None, Some(train)) => Ok(Self::Train(train)),
            _ => Err("[tokenizer]: set exactly one of `path` and `train`"),
        }
    }
}

impl From<TokenizerConfig> for TokenizerTable {
    fn from(config: TokenizerConfig) -> Self {
        match config {
            TokenizerConfig::File(path) => Self {
                path: Some(path),
                train: None,
            },
            TokenizerConfig::Train(train) => Self {
                path: None,
                train: Some(train),
            },
        }
    }
}

/// `[tokenizer.train]`: settings for training a byte-level BPE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainTokenizerConfig {
    /// Target vocabulary size, special tokens included. Must be at least 257 (256 bytes + end of text).
    pub vocab_size: u32,
    /// Characters of text to train on, taken in equal shares from each domain in read order.
    /// Default: 4,000,000 (enough for a stable 8k vocabulary; training takes a few seconds).
    #[serde(default = "default_sample_bytes")]
    pub sample_bytes: u64,
}

fn default_sample_bytes() -> u64 {
    4_000_000
}

/// What to do with a malformed record (bad JSON line, invalid UTF-8, missing text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop with an error naming the file and line (the default: bad data should be seen).
    #[default]
    Fail,
    /// Skip the record and count it in the summary (`skipped_records`).
    Skip,
}

/// `[ingest]`: splits, quality filters, dedup and shard sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Share of documents put in the `valid` split, decided by a hash of `doc_id`. Default: 0.02.
    pub valid_fraction: f64,
    /// Share of documents put in the `probe` split (held out for utility estimation). Default: 0.01.
    pub probe_fraction: f64,
    /// Documents shorter than this many characters are dropped as `too_short`. Default: 32.
    pub min_chars: usize,
    /// Documents longer than this many characters are dropped as `too_long`. Default: 200,000.
    pub max_chars: usize,
    /// Documents per shard file. Default: 4,096 (a few MB of tokens per file).
    pub shard_rows: usize,
    /// Records per batch read from a source; bounds memory together with `shard_rows`. Default: 1,024.
    pub batch_rows: usize,
    /// Malformed records: `fail` (default) or `skip`.
    pub on_error: OnError,
    /// Quality filters for every domain; a domain's `filters` table overrides single values.
    pub filters: FilterConfig,
    /// Exact and near-duplicate removal.
    pub dedup: DedupConfig,
    /// Where the per-record work runs: `local` (default) or `ballista`. Not part of the shards'
    /// identity: both engines write the same shards.
    pub engine: Engine,
    /// The Ballista scheduler's `HOST:PORT` for `engine = "ballista"`. Default: 127.0.0.1:50050.
    pub scheduler: String,
    /// Ballista jobs running at once for `engine = "ballista"` (stage and write jobs, one per
    /// source file each), and the partitions of the dedup queries; about twice the cluster's
    /// executor cores keeps it busy. Default: 8.
    pub cluster_jobs: usize,
}

/// `[ingest] engine`: where filters, hashes and tokenization run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// In this process, on every core (rayon).
    #[default]
    Local,
    /// On an Apache DataFusion Ballista cluster (`mixlab cluster scheduler|executor`), one job
    /// per source file; dedup and shard writing stay in this process.
    Ballista,
}

impl IngestConfig {
    /// The keys that choose how ingest runs, not what it writes (left out of the shards' hash).
    pub const ENGINE_KEYS: [&'static str; 3] = ["engine", "scheduler", "cluster_jobs"];
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            valid_fraction: 0.02,
            probe_fraction: 0.01,
            min_chars: 32,
            max_chars: 200_000,
            shard_rows: 4096,
            batch_rows: 1024,
            on_error: OnError::Fail,
            filters: FilterConfig::default(),
            dedup: DedupConfig::default(),
            engine: Engine::Local,
            scheduler: "127.0.0.1:50050".to_owned(),
            cluster_jobs: 8,
        }
    }
}

/// Gopher-style quality rules (Rae et al. 2021, "Scaling Language Models", appendix A.1.1).
///
/// A rule is switched off by its permissive value (`0` for a minimum, `1.0` for a maximum share).
/// Prose rules (stop words, alphabetic words) drop most code and math, so code domains should set
/// `min_stop_words = 0` and `min_alpha_word_fraction = 0.0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Minimum number of words (`too_few_words`). Gopher: 50; default 0 since short demo documents are valid.
    pub min_words: usize,
    /// Minimum share of non-whitespace characters that are alphabetic (`low_alpha_chars`). Default: 0.5.
    pub min_alpha_char_fraction: f64,
    /// Minimum share of words containing an alphabetic character (`low_alpha_words`). Gopher: 0.8.
    pub min_alpha_word_fraction: f64,
    /// Minimum count of English stop words (the, be, to, of, and, that, have, with) (`few_stop_words`). Gopher: 2.
    pub min_stop_words: usize,
    /// Mean word length must lie in `[min, max]` characters (`word_length`). Gopher: 3 to 10.
    pub mean_word_length: (f64, f64),
    /// Maximum share of lines that duplicate an earlier line (`repeated_lines`). Gopher: 0.30.
    pub max_duplicate_line_fraction: f64,
    /// Maximum share of characters covered by the most frequent word 2-, 3- and 4-gram
    /// (`repeated_ngrams`). Gopher: 0.20, 0.18, 0.16.
    pub max_top_ngram_fraction: [f64; 3],
    /// Maximum share of characters in duplicated word 5- to 10-grams (`repeated_ngrams`).
    /// Gopher: 0.15, 0.14, 0.13, 0.12, 0.11, 0.10.
    pub max_duplicate_ngram_fraction: [f64; 6],
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            min_words: 0,
            min_alpha_char_fraction: 0.5,
            min_alpha_word_fraction: 0.8,
            min_stop_words: 2,
            mean_word_length: (3.0, 10.0),
            max_duplicate_line_fraction: 0.30,
            max_top_ngram_fraction: [0.20, 0.18, 0.16],
            max_duplicate_ngram_fraction: [0.15, 0.14, 0.13, 0.12, 0.11, 0.10],
        }
    }
}

/// A domain's `filters` table: any subset of [`FilterConfig`]'s keys, applied over `[ingest.filters]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterOverrides {
    /// See [`FilterConfig::min_words`].
    pub min_words: Option<usize>,
    /// See [`FilterConfig::min_alpha_char_fraction`].
    pub min_alpha_char_fraction: Option<f64>,
    /// See [`FilterConfig::min_alpha_word_fraction`].
    pub min_alpha_word_fraction: Option<f64>,
    /// See [`FilterConfig::min_stop_words`].
    pub min_stop_words: Option<usize>,
    /// See [`FilterConfig::mean_word_length`].
    pub mean_word_length: Option<(f64, f64)>,
    /// See [`FilterConfig::max_duplicate_line_fraction`].
    pub max_duplicate_line_fraction: Option<f64>,
    /// See [`FilterConfig::max_top_ngram_fraction`].
    pub max_top_ngram_fraction: Option<[f64; 3]>,
    /// See [`FilterConfig::max_duplicate_ngram_fraction`].
    pub max_duplicate_ngram_fraction: Option<[f64; 6]>,
}

impl FilterConfig {
    /// These filters with a domain's overrides applied.
    pub fn with_overrides(&self, o: &FilterOverrides) -> FilterConfig {
        FilterConfig {
            min_words: o.min_words.unwrap_or(self.min_words),
            min_alpha_char_fraction: o
                .min_alpha_char_fraction
                .unwrap_or(self.min_alpha_char_fraction),
            min_alpha_word_fraction: o
                .min_alpha_word_fraction
                .unwrap_or(self.min_alpha_word_fraction),
            min_stop_words: o.min_stop_words.unwrap_or(self.min_stop_words),
            mean_word_length: o.mean_word_length.unwrap_or(self.mean_word_length),
            max_duplicate_line_fraction: o
                .max_duplicate_line_fraction
                .unwrap_or(self.max_duplicate_line_fraction),
            max_top_ngram_fraction: o
                .max_top_ngram_fraction
                .unwrap_or(self.max_top_ngram_fraction),
            max_duplicate_ngram_fraction: o
                .max_duplicate_ngram_fraction
                .unwrap_or(self.max_duplicate_ngram_fraction),
        }
    }
}

/// `[ingest.dedup]`: exact and MinHash near-duplicate removal, across all domains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// Drop documents whose normalized text (lower case, collapsed whitespace) was seen before. Default: true.
    pub exact: bool,
    /// Near-duplicate removal by MinHash LSH; absent or `false`-like values turn it off.
    pub minhash: Option<MinHashConfig>,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            exact: true,
            minhash: Some(MinHashConfig::default()),
        }
    }
}

/// `[ingest.dedup.minhash]`: MinHash signatures over word n-grams, banded for LSH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinHashConfig {
    /// Estimated Jaccard similarity at or above which a document is a near duplicate. Default: 0.8.
    pub threshold: f64,
    /// Hash permutations per signature. Default: 128.
    pub num_perm: usize,
    /// LSH bands; `num_perm` must be a multiple. Default: 16 bands of 8 rows, whose candidate
    /// threshold (1/16)^(1/8) ≈ 0.71 lies below `threshold`, so candidates are then verified on the
    /// full signature (recall high, no false positives beyond the estimate's noise).
    pub bands: usize,
    /// Words per shingle. Default: 5 (datatrove's and most web-dedup pipelines' choice).
    pub ngram: usize,
}

impl Default for MinHashConfig {
    fn default() -> Self {
        Self {
            threshold: 0.8,
            num_perm: 128,
            bands: 16,
            ngram: 5,
        }
    }
}

/// `[[domain]]`: a named group of sources whose documents share a mixture weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// Domain name: lower case letters, digits, `_` and `-` (it names a directory).
    pub name: String,
    /// One or more sources.
    pub source: Vec<SourceConfig>,
    /// Overrides of `[ingest.filters]` for this domain.
    #[serde(default)]
    pub filters: FilterOverrides,
}

/// The file formats a source can have; each may be gzip-compressed (`.gz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// Apache Parquet, read by DataFusion's Parquet scan.
    Parquet,
    /// JSON lines: one object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
    /// Plain text: each file is one document (columns `text` and `path`).
    Text,
}

/// `[[domain.source]]`: files read as one table named `source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A file or a glob pattern (`data/*.jsonl.gz`), relative to the config file.
    pub path: String,
    /// File format.
    pub format: SourceFormat,
    /// Column holding the document text. Default: `text`.
    #[serde(default = "default_text_column")]
    pub text_column: String,
    /// Optional SQL over the table `source`, run by DataFusion: a filter or projection that must
    /// keep `text_column`, e.g. `SELECT text FROM source WHERE lang = 'en'`.
    pub sql: Option<String>,
    /// Name recorded in the shards' `source` column. Default: the file name of `path`.
    pub name: Option<String>,
}

fn default_text_column() -> String {
    "text".to_owned()
}

impl SourceConfig {
    /// The label stored in the `source` column of every document from this source.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.path
                .rsplit(['/', '\\'])
                .next()
                .unwrap_or(&self.path)
                .to_owned()
        })
    }
}

/// The most records `ingest.batch_rows` may hold in memory at once.
pub const MAX_BATCH_ROWS: usize = 1 << 20;

/// The largest vocabulary `tokenizer.train` may ask for.
pub const MAX_VOCAB_SIZE: u32 = 1 << 22;

/// Checks values serde cannot: ranges, names, an empty domain list, duplicate domains.
///
/// # Errors
/// [`Error::Config`] naming the offending key and the expected range.
pub fn validate(
    tokenizer: &TokenizerConfig,
    ingest: &IngestConfig,
    domains: &[DomainConfig],
) -> Result<()> {
    validate_tokenizer(tokenizer)
        .and_then(|()| validate_ingest(ingest))
        .and_then(|()| validate_domains(domains))
        .map_err(Error::Config)
}

/// `HOST:PORT` with a non-empty host and a port number.
fn is_host_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// `[tokenizer]`: a vocabulary in range.
fn validate_tokenizer(tokenizer: &TokenizerConfig) -> std::result::Result<(), String> {
    match tokenizer {
        TokenizerConfig::Train(t) if !(257..=MAX_VOCAB_SIZE).contains(&t.vocab_size) => {
            Err(format!(
                "tokenizer.train.vocab_size = {}: expected 257 to {MAX_VOCAB_SIZE}",
                t.vocab_size
            ))
        }
        _ => Ok(()),
    }
}

/// `[ingest]`: split fractions, batch and shard sizes, length bounds, MinHash settings.
fn validate_ingest(ingest: &IngestConfig) -> std::result::Result<(), String> {
    let split = ingest.valid_fraction + ingest.probe_fraction;
    if !(0.0..1.0).contains(&ingest.valid_fraction)
        || !(0.0..1.0).contains(&ingest.probe_fraction)
        || split >= 1.0
    {
        return Err(format!(
            "ingest.valid_fraction + ingest.probe_fraction = {split}: expected each in [0, 1) and their sum below 1"
        ));
    }
    if ingest.cluster_jobs == 0 {
        return Err("ingest.cluster_jobs must be at least 1".into());
    }
    if ingest.engine == Engine::Ballista && !is_host_port(&ingest.scheduler) {
        return Err(format!(
            "ingest.scheduler = {:?}: expected HOST:PORT (the address of `mixlab cluster scheduler`)",
            ingest.scheduler
        ));
    }
    if ingest.shard_rows == 0 || ingest.batch_rows == 0 {
        return Err("ingest.shard_rows and ingest.batch_rows must be at least 1".into());
    }
    if ingest.batch_rows > MAX_BATCH_ROWS {
        return Err(format!(
            "ingest.batch_rows = {}: expected at most {MAX_BATCH_ROWS} (records held in memory at once)",
            ingest.batch_rows
        ));
    }
    if ingest.min_chars > ingest.max_chars {
        return Err(format!(
            "ingest.min_chars = {} exceeds ingest.max_chars = {}",
            ingest.min_chars, ingest.max_chars
        ));
    }
    let Some(m) = &ingest.dedup.minhash else {
        return Ok(());
    };
    if m.num_perm == 0 || m.bands == 0 || m.num_perm % m.bands != 0 {
        return Err(format!(
            "ingest.dedup.minhash: num_perm = {} must be a positive multiple of bands = {}",
            m.num_perm, m.bands
        ));
    }
    if !(0.0..=1.0).contains(&m.threshold) || m.ngram == 0 {
        return Err(
            "ingest.dedup.minhash: threshold must be in [0, 1] and ngram at least 1".into(),
        );
    }
    Ok(())
}

/// `[[domain]]`: at least one, each with a valid unique name and at least one source.
fn validate_domains(domains: &[DomainConfig]) -> std::result::Result<(), String> {
    if domains.is_empty() {
        return Err("no [[domain]] defined: expected at least one".into());
    }
    let mut seen = BTreeMap::new();
    for (i, d) in domains.iter().enumerate() {
        let valid_name = !d.name.is_empty()
            && d.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid_name {
            return Err(format!(
                "domain[{i}].name = {:?}: expected lower-case letters, digits, '_' or '-'",
                d.name
            ));
        }
        if seen.insert(d.name.as_str(), i).is_some() {
            return Err(format!("domain {:?} is defined twice", d.name));
        }
        if d.source.is_empty() {
            return Err(format!(
                "domain {:?} has no [[domain.source]]: expected at least one",
                d.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tokenizer_table_is_a_file_or_a_training_request_and_keeps_its_shape() {
        let parse = |json: &str| serde_json::from_str::<TokenizerConfig>(json);
        let train = parse(r#"{ "train": { "vocab_size": 512 } }"#).unwrap();
        assert!(matches!(&train, TokenizerConfig::Train(t) if t.vocab_size == 512));
        for bad in [
            r#"{}"#,
            r#"{ "path": "a.json", "train": { "vocab_size": 512 } }"#,
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("exactly one of `path` and `train`"), "{err}");
        }
        // Written back as the table it was read from: ingest's inputs hash does not move.
        let file = TokenizerConfig::File("bpe.json".into());
        assert_eq!(
            serde_json::to_string(&file).unwrap(),
            r#"{"path":"bpe.json","train":null}"#
        );
    }
}
