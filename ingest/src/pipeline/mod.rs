//! The ingest pipeline: sources → clean → filter → dedup → tokenize → shards + manifest.
//!
//! Per batch of records: filtering and signatures run in parallel (rayon), dedup runs sequentially
//! in record order (so the first occurrence wins, across domains in configuration order), and the
//! survivors are tokenized in parallel. Output bytes depend only on the configuration and inputs.
//! On a Ballista cluster (the `remote` module) the executors judge, deduplicate (as distributed
//! queries), tokenize and write; the manifest is assembled here.
//!
//! Everything is written into `<shards>.partial/` and moved into place only when the manifest is
//! complete, so a killed run leaves no shard directory a reader would accept; the next run starts
//! over. A run whose inputs hash equals the existing manifest's does nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, StringArray};
use rayon::prelude::*;

use mixlab_artefacts::atomic::replace_dir;
use mixlab_artefacts::split::Split;

use crate::checksum::{sha256_file, sha256_hex};
use crate::config::{DomainConfig, IngestConfig, SourceConfig, TokenizerConfig};
use crate::dedup::{DedupIndex, Duplicate, MinHasher};
use crate::engine::EngineSession;
use crate::error::{Error, Result};
use crate::filter::QualityFilter;
use crate::manifest::{
    DomainManifest, DomainStats, FORMAT_VERSION, Manifest, ShardSet, SplitCounts, TOKENIZER_FILE,
    TokenizerInfo,
};
use crate::record::{Body, Candidate, Judge, Verdict, clean, doc_id};
use crate::shard::{ShardDocument, ShardWriter};
use crate::source::{ReadOptions, SourceReader, resolve_files};
use crate::tokenize::{TextTokenizer, train_byte_level_bpe};
use crate::verified::{Snapshot, Verification};

#[cfg(feature = "cluster")]
mod remote;

/// Batches read ahead of processing (each at most `batch_rows` records).
const READ_AHEAD_BATCHES: usize = 2;

/// What an ingest run needs: the parsed configuration and where things are.
#[derive(Debug, Clone)]
pub struct IngestRequest<'a> {
    /// `[tokenizer]`.
    pub tokenizer: &'a TokenizerConfig,
    /// `[ingest]`.
    pub ingest: &'a IngestConfig,
    /// `[[domain]]`, in order (earlier domains win duplicates).
    pub domains: &'a [DomainConfig],
    /// Directory that relative source and tokenizer paths are resolved against (the config's).
    pub base_dir: &'a Path,
    /// The shard directory to produce (`<out>/shards`).
    pub shards_dir: &'a Path,
    /// Hex hash of the resolved configuration, recorded in the manifest.
    pub config_hash: &'a str,
}

/// Receives progress from a running ingest (the CLI draws progress bars from it).
pub trait Progress: Sync {
    /// A domain starts; `input_bytes` is the size of its source files on disk.
    fn domain_started(&self, _domain: &str, _input_bytes: u64) {}
    /// Work on the current domain advanced to `input_bytes_done` of its files.
    fn domain_advanced(&self, _domain: &str, _input_bytes_done: u64, _documents: u64) {}
    /// A domain is complete.
    fn domain_finished(&self, _domain: &str, _stats: &DomainStats) {}
    /// On a Ballista cluster: `done` of the `jobs` that write shards on the executors ended.
    fn shards_written(&self, _done: usize, _jobs: usize) {}
    /// A step outside the per-domain loop (tokenizer training, verification).
    fn message(&self, _message: &str) {}
}

/// How an ingest run ended.
#[derive(Debug, Clone)]
pub enum IngestOutcome {
    /// Shards with the same inputs hash already existed and verified; nothing was done.
    UpToDate(Manifest),
    /// New shards were written.
    Written(Manifest),
}

impl IngestOutcome {
    /// The manifest of the shards now in place.
    pub fn manifest(&self) -> &Manifest {
        match self {
            IngestOutcome::UpToDate(m) | IngestOutcome::Written(m) => m,
        }
    }
}

/// Runs the ingest stage.
///
/// # Errors
/// Any [`Error`] from reading, filtering or writing; nothing is left in `shards_dir` on failure
/// except the previous complete shards, if there were any.
pub fn ingest(req: &IngestRequest<'_>, progress: &dyn Progress) -> Result<IngestOutcome> {
    crate::config::validate(req.tokenizer, req.ingest, req.domains)?;
    let sources = resolve_all(req)?;
    let inputs_hash = inputs_hash(req, &sources)?;
    if let Ok(manifest) = Manifest::read(req.shards_dir)
        && manifest.inputs_hash == inputs_hash
        && ShardSet::open(req.shards_dir, Verification::Recorded).is_ok()
    {
        return Ok(IngestOutcome::UpToDate(manifest));
    }

    // A scheduler that is not there fails the run before anything is written.
    let engine = EngineSession::start(req.ingest)?;
    let staging = sibling(req.shards_dir, "partial");
    if let Some(manifest) = finished_staging(&staging, &inputs_hash) {
        // A run killed between its last write and the swap: publish its work instead of redoing it.
        replace_dir(&staging, req.shards_dir)?;
        return Ok(IngestOutcome::Written(manifest));
    }
    if staging.exists() {
        fs_err::remove_dir_all(&staging)?;
    }
    fs_err::create_dir_all(&staging)?;
    match write_staging(req, &engine, &sources, inputs_hash, &staging, progress) {
        Ok(manifest) => {
            replace_dir(&staging, req.shards_dir)?;
            Ok(IngestOutcome::Written(manifest))
        }
        Err(e) => {
            // Unfinished work is never resumed, and on a full disk it holds the space a rerun needs.
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Writes the tokenizer, every domain's shards and the manifest into `staging`.
fn write_staging(
    req: &IngestRequest<'_>,
    engine: &EngineSession,
    sources: &[Vec<Vec<PathBuf>>],
    inputs_hash: String,
    staging: &Path,
    progress: &dyn Progress,
) -> Result<Manifest> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Error::Internal(format!("starting the query runtime: {e}")))?;

    let tok_path = staging.join(TOKENIZER_FILE);
    let origin = prepare_tokenizer(req, sources, &runtime, &tok_path, progress)?;
    let tokenizer = TextTokenizer::load(&tok_path)?;
    let tokenizer_info = TokenizerInfo {
        file: TOKENIZER_FILE.to_owned(),
        sha256: sha256_file(&tok_path)?,
        vocab_size: tokenizer.vocab_size(),
        eos_id: tokenizer.eos_id(),
        origin,
    };

    let minhash = req.ingest.dedup.minhash.as_ref();
    let mut stage = DomainStage {
        req,
        engine,
        runtime: &runtime,
        tokenizer: &tokenizer,
        hasher: minhash.map(MinHasher::new),
        index: DedupIndex::new(minhash),
        staging,
        #[cfg(feature = "cluster")]
        remote: remote::Remote::plan(req, engine, sources, staging, &tokenizer_info.sha256)?,
    };
    let mut domains = Vec::with_capacity(req.domains.len());
    for (domain, files) in req.domains.iter().zip(sources) {
        domains.push(stage.run(domain, files, progress)?);
    }
    #[cfg(feature = "cluster")]
    stage.complete_remote(&mut domains, progress)?;
    engine.finish(staging)?;

    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        created_by: created_by(),
        config_hash: req.config_hash.to_owned(),
        inputs_hash,
        tokenizer: tokenizer_info,
        domains,
    };
    manifest.write(staging)?;
    // Every checksum in the manifest was just computed from the written files: record that.
    if let Some(snapshot) = Snapshot::of(staging, &manifest) {
        snapshot.record(staging);
    }
    Ok(manifest)
}

/// Files of every source of every domain, resolved up front so a missing file fails fast.
fn resolve_all(req: &IngestRequest<'_>) -> Result<Vec<Vec<Vec<PathBuf>>>> {
    req.domains
        .iter()
        .map(|d| {
            d.source
                .iter()
                .map(|s| resolve_files(s, req.base_dir))
                .collect()
        })
        .collect()
}

/// Hash of the configuration and the contents of every input file (and a loaded tokenizer).
fn inputs_hash(req: &IngestRequest<'_>, sources: &[Vec<Vec<PathBuf>>]) -> Result<String> {
    let mut parts = vec![
        format!("format {FORMAT_VERSION}"),
        // A new mixlab may filter, deduplicate or tokenize differently: it re-ingests.
        created_by(),
        req.config_hash.to_owned(),
    ];
    for file in sources.iter().flatten().flatten() {
        parts.push(format!("{} {}", file.display(), sha256_file(file)?));
    }
    if let TokenizerConfig::File(path) = req.tokenizer {
        parts.push(format!(
            "tokenizer {}",
            sha256_file(&req.base_dir.join(path))?
        ));
    }
    Ok(sha256_hex(parts.join("\n").as_bytes()))
}

/// The program that writes shards, recorded in the manifest and part of the inputs hash.
fn created_by() -> String {
    format!("mixlab-ingest {}", env!("CARGO_PKG_VERSION"))
}

/// `dir` with `.suffix` appended to its file name.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

/// The manifest of a staging directory that a killed run completed for these inputs, if its
/// shards verify.
fn finished_staging(staging: &Path, inputs_hash: &str) -> Option<Manifest> {
    let manifest = Manifest::read(staging).ok()?;
    (manifest.inputs_hash == inputs_hash && ShardSet::open(staging, Verification::Recorded).is_ok())
        .then_some(manifest)
}

/// Copies or trains the tokenizer into `out`; returns its origin for the manifest.
fn prepare_tokenizer(
    req: &IngestRequest<'_>,
    sources: &[Vec<Vec<PathBuf>>],
    runtime: &tokio::runtime::Runtime,
    out: &Path,
    progress: &dyn Progress,
) -> Result<String> {
    let train = match req.tokenizer {
        TokenizerConfig::File(path) => {
            let path = req.base_dir.join(path);
            TextTokenizer::load(&path)?;
            fs_err::copy(&path, out)?;
            return Ok(path.display().to_string());
        }
        TokenizerConfig::Train(train) => train,
    };
    progress.message(&format!(
        "training a byte-level BPE tokenizer (vocabulary {})",
        train.vocab_size
    ));
    let quota = (train.sample_bytes / req.domains.len() as u64).max(1);
    let mut sample = Vec::new();
    for (domain, files) in req.domains.iter().zip(sources) {
        // The tokenizer learns from what the shards will hold: texts that pass the filters.
        let filter = quality_filter(req.ingest, domain);
        let mut taken = 0u64;
        'sources: for (source, files) in domain.source.iter().zip(files) {
            let mut reader =
                SourceReader::open(runtime, source, files.clone(), read_options(req.ingest))?;
            while let Some(texts) = reader.next_texts()? {
                for text in texts.iter().flatten() {
                    let text = clean(text);
                    if filter.check(&text).is_some() {
                        continue;
                    }
                    let text = cap_word_length(&text, MAX_SAMPLE_WORD_CHARS);
                    taken += text.len() as u64;
                    sample.push(text);
                    if taken >= quota {
                        break 'sources;
                    }
                }
            }
        }
    }
    train_byte_level_bpe(&sample, train.vocab_size, out)?;
    Ok("trained".to_owned())
}

/// The longest run of non-space characters the tokenizer is trained on: BPE training time grows
/// with the length of its words, and a megabyte without a space would take hours.
const MAX_SAMPLE_WORD_CHARS: usize = 256;

/// `text` with every run of non-whitespace characters cut to at most `max` characters.
fn cap_word_length(text: &str, max: usize) -> String {
    let mut capped = String::with_capacity(text.len());
    let mut run = 0;
    for c in text.chars() {
        run = if c.is_whitespace() { 0 } else { run + 1 };
        if run <= max {
            capped.push(c);
        }
    }
    capped
}

/// The length limits and Gopher rules of `domain`.
fn quality_filter(ingest: &IngestConfig, domain: &DomainConfig) -> QualityFilter {
    QualityFilter {
        min_chars: ingest.min_chars,
        max_chars: ingest.max_chars,
        rules: ingest.filters.with_overrides(&domain.filters),
    }
}

fn read_options(ingest: &IngestConfig) -> ReadOptions {
    ReadOptions {
        batch_rows: ingest.batch_rows,
        on_error: ingest.on_error,
    }
}

/// State carried across domains: the dedup index is shared so cross-domain duplicates are caught.
struct DomainStage<'a> {
    req: &'a IngestRequest<'a>,
    engine: &'a EngineSession,
    /// The Ballista engine's jobs and what they kept, for the Ballista engine.
    #[cfg(feature = "cluster")]
    remote: Option<remote::Remote>,
    runtime: &'a tokio::runtime::Runtime,
    tokenizer: &'a TextTokenizer,
    hasher: Option<MinHasher>,
    index: DedupIndex,
    staging: &'a Path,
}

/// What one domain has written so far.
#[derive(Default)]
struct DomainTally {
    stats: DomainStats,
    splits: BTreeMap<Split, SplitCounts>,
    /// Compressed bytes of the sources read to the end.
    done_bytes: u64,
}

impl DomainStage<'_> {
    fn run(
        &mut self,
        domain: &DomainConfig,
        files: &[Vec<PathBuf>],
        progress: &dyn Progress,
    ) -> Result<DomainManifest> {
        let mut input_bytes = 0;
        for file in files.iter().flatten() {
            input_bytes += fs_err::metadata(file)?.len();
        }
        progress.domain_started(&domain.name, input_bytes);
        let filter = quality_filter(self.req.ingest, domain);
        let mut tally = DomainTally::default();
        let mut writer = ShardWriter::new(self.staging, &domain.name, self.req.ingest.shard_rows);
        for (source, files) in domain.source.iter().zip(files) {
            let sink = BatchSink {
                domain: &domain.name,
                label: source.label(),
                source,
                filter: &filter,
                progress,
            };
            match self.engine {
                EngineSession::Local => {
                    let options = read_options(self.req.ingest);
                    let reader = SourceReader::open(self.runtime, source, files.clone(), options)?;
                    self.read_source(reader, &sink, &mut tally, &mut writer)?;
                }
                #[cfg(feature = "cluster")]
                EngineSession::Ballista(cluster) => {
                    self.read_remote(cluster, &sink, &mut tally)?;
                }
            }
        }
        let manifest = DomainManifest {
            name: domain.name.clone(),
            files: Vec::new(),
            splits: tally.splits,
            stats: tally.stats,
        };
        match self.engine {
            EngineSession::Local => {
                if manifest.stats.documents == 0 {
                    return Err(empty_domain(domain, &manifest.stats));
                }
                let manifest = DomainManifest {
                    files: writer.finish()?,
                    ..manifest
                };
                progress.domain_finished(&domain.name, &manifest.stats);
                Ok(manifest)
            }
            // Deduplicated and completed from the write jobs' receipts by `complete_remote`.
            #[cfg(feature = "cluster")]
            EngineSession::Ballista(_) => Ok(manifest),
        }
    }

    /// Reads one source to its end into `writer`. Reading (decompression, JSON, the query) runs on
    /// its own thread, a few batches ahead of filtering, dedup and tokenization, so the two overlap.
    fn read_source(
        &mut self,
        reader: SourceReader<'_>,
        sink: &BatchSink,
        tally: &mut DomainTally,
        writer: &mut ShardWriter,
    ) -> Result<()> {
        let (skipped, raw_bytes) = std::thread::scope(|scope| -> Result<(u64, u64)> {
            let (tx, rx) =
                std::sync::mpsc::sync_channel::<Result<(StringArray, u64)>>(READ_AHEAD_BATCHES);
            let producer = scope.spawn(move || read_ahead(reader, &tx));
            for item in rx {
                let (texts, raw_bytes) = item?;
                let verdicts = self.judge(&texts, sink);
                self.write_verdicts(verdicts, sink, tally, writer)?;
                let (done, records) = (tally.done_bytes + raw_bytes, tally.stats.records_read);
                sink.progress.domain_advanced(sink.domain, done, records);
            }
            producer
                .join()
                .map_err(|_| Error::Internal("the source reader thread panicked".into()))
        })?;
        tally.stats.skipped_records += skipped;
        tally.done_bytes += raw_bytes;
        Ok(())
    }

    /// Each record's raw length and verdict, judged in parallel on this machine.
    fn judge(&self, texts: &StringArray, sink: &BatchSink) -> Vec<(usize, Verdict)> {
        let judge = Judge {
            filter: sink.filter,
            exact: self.req.ingest.dedup.exact,
            hasher: self.hasher.as_ref(),
        };
        (0..texts.len())
            .into_par_iter()
            .map(|i| judge.verdict(texts, i))
            .collect()
    }

    /// Dedups judged records in order and writes the survivors' documents.
    fn write_verdicts(
        &mut self,
        verdicts: Vec<(usize, Verdict)>,
        sink: &BatchSink,
        tally: &mut DomainTally,
        writer: &mut ShardWriter,
    ) -> Result<()> {
        let survivors = self.admit(verdicts, sink, &mut tally.stats)?;
        let bodies = survivors.into_iter().map(|(_, body)| body).collect();
        for doc in self.documents(bodies, &sink.label)? {
            let counts = tally.splits.entry(doc.split).or_default();
            counts.documents += 1;
            counts.tokens += doc.tokens.len() as u64;
            tally.stats.documents += 1;
            tally.stats.tokens += doc.tokens.len() as u64;
            writer.push(doc)?;
        }
        Ok(())
    }

    /// Counts the verdicts and dedups the candidates in record order; returns the survivors with
    /// their positions in `verdicts`.
    fn admit(
        &mut self,
        verdicts: Vec<(usize, Verdict)>,
        sink: &BatchSink,
        stats: &mut DomainStats,
    ) -> Result<Vec<(usize, Body)>> {
        let mut survivors = Vec::new();
        for (position, (raw_len, verdict)) in verdicts.into_iter().enumerate() {
            stats.records_read += 1;
            stats.bytes_read += raw_len as u64;
            match verdict {
                Verdict::Null => {
                    if self.req.ingest.on_error == crate::config::OnError::Fail {
                        return Err(null_record(sink.source, stats.records_read));
                    }
                    stats.skipped_records += 1;
                }
                Verdict::Filtered(reason) => {
                    *stats.filtered.entry(reason.into_owned()).or_default() += 1
                }
                Verdict::Candidate(Candidate {
                    hash,
                    signature,
                    body,
                }) => match self.index.insert(hash, signature.as_deref()) {
                    Ok(()) => survivors.push((position, body)),
                    Err(Duplicate::Exact) => stats.exact_duplicates += 1,
                    Err(Duplicate::Near) => stats.near_duplicates += 1,
                },
            }
        }
        Ok(survivors)
    }

    /// The shard documents of the records that survived filtering and dedup (texts tokenized
    /// here, in parallel).
    fn documents(&self, bodies: Vec<Body>, label: &str) -> Result<Vec<ShardDocument>> {
        let (valid, probe) = (
            self.req.ingest.valid_fraction,
            self.req.ingest.probe_fraction,
        );
        bodies
            .into_par_iter()
            .map(|body| {
                let Body::Text(text) = body else {
                    return Err(Error::Internal(
                        "a record judged on a cluster reached the local shard writer".into(),
                    ));
                };
                let (doc_id, tokens) = (doc_id(label, &text), self.tokenizer.encode(&text)?);
                Ok(ShardDocument {
                    doc_id,
                    source: label.to_owned(),
                    split: Split::of(doc_id, valid, probe),
                    tokens,
                })
            })
            .collect()
    }
}

/// Where one source's batches go, and what they are checked against.
struct BatchSink<'a> {
    domain: &'a str,
    /// The source's label (each document's `source`).
    label: String,
    source: &'a SourceConfig,
    filter: &'a QualityFilter,
    progress: &'a dyn Progress,
}

/// Sends `reader`'s batches, each with the compressed bytes read so far, until the end or the
/// first error; returns the records it skipped and the bytes it read.
fn read_ahead(
    mut reader: SourceReader<'_>,
    tx: &std::sync::mpsc::SyncSender<Result<(StringArray, u64)>>,
) -> (u64, u64) {
    loop {
        let item = match reader.next_texts() {
            Ok(Some(texts)) => Ok((texts, reader.raw_bytes_read())),
            Ok(None) => break,
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        if tx.send(item).is_err() || failed {
            break;
        }
    }
    (reader.skipped(), reader.raw_bytes_read())
}

/// The error for record `number` (counted from 1 across the domain) of `source`, whose text is
/// null, under `on_error = "fail"`.
fn null_record(source: &SourceConfig, number: u64) -> Error {
    Error::BadSource {
        path: PathBuf::from(&source.path),
        message: format!(
            "record {number} has a null {:?}; expected text",
            source.text_column
        ),
    }
}

/// The error for a domain whose sources left no document, with where they went.
fn empty_domain(domain: &DomainConfig, stats: &DomainStats) -> Error {
    Error::BadSource {
        path: PathBuf::from(&domain.source[0].path),
        message: format!(
            "domain {:?} is empty: {} records read, {} skipped, {} filtered ({:?}), {} exact and {} near duplicates; \
             expected at least one document (check the sources, sql and filter overrides)",
            domain.name,
            stats.records_read,
            stats.skipped_records,
            stats.filtered_total(),
            stats.filtered,
            stats.exact_duplicates,
            stats.near_duplicates
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_samples_have_words_of_bounded_length() {
        let long = "x".repeat(1000);
        let capped = cap_word_length(&format!("a {long} bc\nd"), 3);
        assert_eq!(capped, "a xxx bc\nd");
    }
}
