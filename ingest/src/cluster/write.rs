//! Shard writing on Ballista's executors: the second job over each part of a source.
//!
//! The first job staged the part's candidates (records that passed the filters) with their row
//! numbers and document ids ([`super::stage`]); dedup on the cluster found which of them are
//! duplicates, and the client listed those rows per part (a dropped list). The second job runs the
//! part's query again into a [`super::sink::TaskTable`] whose task is a [`WriteSpec`]: on an
//! executor it reads the rows once more, checks each kept row's document id (the source's SQL
//! must give the same rows in the same order both times), tokenizes, assigns splits, writes the
//! domain's shard files from `part-<first>` on, and last a [`Receipt`] of what it wrote.
//!
//! A retried task writes the same files under the same names again, each atomically, so a shard
//! is never doubled; the client reads the receipts of jobs that succeeded only, and removes
//! whatever a killed attempt left in the staging directory before it publishes anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use mixlab_artefacts::atomic::write_atomic;
use mixlab_artefacts::split::Split;

use super::shared::{Memo, read_json, write_json};
use super::sink::TaskJob;
use super::stage::read_candidates;
use crate::checksum::sha256_file;
use crate::error::Error;
use crate::manifest::SplitCounts;
use crate::record::{clean, doc_id};
use crate::shard::{ShardDocument, ShardFile, ShardWriter};
use crate::tokenize::TextTokenizer;

/// The one column a write job takes: the record's text, as the source's SQL gives it.
pub const TEXT_COLUMN: &str = "text";

/// What a write job writes and from what: everything is data, so it travels in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteSpec {
    /// The domain (its directory in the shard directory).
    pub domain: String,
    /// The source's label (each document's `source` and part of its id).
    pub label: String,
    /// The staging shard directory, on a file system the executors share.
    pub shards_dir: PathBuf,
    /// The number of the job's first file (`part-<first_part>.parquet`).
    pub first_part: usize,
    /// Documents per shard file.
    pub shard_rows: usize,
    /// The part's candidates, as its stage job wrote them.
    pub candidates: PathBuf,
    /// The rows among them that dedup dropped, as [`write_rows`] wrote them.
    pub dropped: PathBuf,
    /// Where the [`Receipt`] goes.
    pub receipt: PathBuf,
    /// The run's tokenizer file.
    pub tokenizer: PathBuf,
    /// Its SHA-256: an executor refuses a file that changed since the client planned the job.
    pub tokenizer_sha256: String,
    /// `[ingest] valid_fraction`.
    pub valid_fraction: f64,
    /// `[ingest] probe_fraction`.
    pub probe_fraction: f64,
}

impl WriteSpec {
    /// Every file the job reads or writes (the domain's directory by a file in it).
    pub(super) fn paths(&self) -> Vec<PathBuf> {
        let shard = self.shards_dir.join(&self.domain).join("part.parquet");
        let read = [&self.candidates, &self.dropped, &self.tokenizer];
        let mut paths: Vec<PathBuf> = read.into_iter().cloned().collect();
        paths.extend([shard, self.receipt.clone()]);
        paths
    }
}

/// A record that dedup kept: its row in the job's query output and its document id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// Row number in the job's output, from 0.
    pub row: u64,
    /// Its document id, from the first read.
    pub doc_id: u64,
}

/// Writes rows (in increasing order) to `path` atomically, as little-endian `u64`s.
///
/// # Errors
/// I/O errors naming the file.
pub fn write_rows(path: &Path, rows: &[u64]) -> crate::Result<()> {
    let bytes: Vec<u8> = rows.iter().flat_map(|r| r.to_le_bytes()).collect();
    write_atomic(path, &bytes)?;
    Ok(())
}

/// Reads what [`write_rows`] wrote.
///
/// # Example
/// ```
/// use mixlab_ingest::cluster::write::{read_rows, write_rows};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("dropped-0.bin");
/// write_rows(&path, &[0, 3, 1 << 40])?;
/// assert_eq!(read_rows(&path)?, [0, 3, 1 << 40]);
/// write_rows(&path, &[3, 0])?; // out of order
/// assert!(read_rows(&path).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// I/O errors naming the file; [`Error::Internal`] for a file of another shape.
pub fn read_rows(path: &Path) -> crate::Result<Vec<u64>> {
    let bytes = fs_err::read(path)?;
    let bad = |what: &str| Error::Internal(format!("{}: a rows file {what}", path.display()));
    if bytes.len() % 8 != 0 {
        return Err(bad("whose size is not a multiple of 8 bytes"));
    }
    let rows: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    if !rows.windows(2).all(|w| w[0] < w[1]) {
        return Err(bad("whose rows are not in increasing order"));
    }
    Ok(rows)
}

/// The part's kept records: its candidates but the dropped rows.
fn kept_rows(spec: &WriteSpec) -> crate::Result<Vec<Kept>> {
    let dropped = read_rows(&spec.dropped)?;
    let mut kept = read_candidates(&spec.candidates)?;
    kept.retain(|k| dropped.binary_search(&k.row).is_err());
    Ok(kept)
}

/// What a write job wrote, for the client's manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// Shard files in order, paths relative to the shard directory.
    pub files: Vec<ShardFile>,
    /// Documents and tokens per split.
    pub splits: BTreeMap<Split, SplitCounts>,
}

impl Receipt {
    /// Reads the receipt a finished job wrote.
    ///
    /// # Errors
    /// I/O errors naming the file; [`Error::Internal`] for one that does not parse.
    pub fn read(path: &Path) -> crate::Result<Self> {
        read_json(path, "write receipt")
    }

    /// Documents written.
    pub fn documents(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// Tokens written.
    pub fn tokens(&self) -> u64 {
        self.files.iter().map(|f| f.tokens).sum()
    }
}

/// The schema a write job takes.
pub(super) fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        TEXT_COLUMN,
        DataType::Utf8,
        true,
    )]))
}

/// One write job under way: the kept rows not yet reached and the files written so far.
pub(super) struct ShardJob<'a> {
    spec: &'a WriteSpec,
    tokenizer: Arc<TextTokenizer>,
    kept: Vec<Kept>,
    /// The first kept row not written yet.
    next: usize,
    /// Rows of the query output seen so far.
    rows: u64,
    writer: ShardWriter,
    splits: BTreeMap<Split, SplitCounts>,
}

impl<'a> ShardJob<'a> {
    /// The job of `spec`, its tokenizer loaded and checked.
    pub(super) fn start(spec: &'a WriteSpec) -> crate::Result<Self> {
        let writer = ShardWriter::new(&spec.shards_dir, &spec.domain, spec.shard_rows)
            .numbered_from(spec.first_part);
        Ok(Self {
            tokenizer: tokenizer(&spec.tokenizer, &spec.tokenizer_sha256)?,
            kept: kept_rows(spec)?,
            spec,
            next: 0,
            rows: 0,
            writer,
            splits: BTreeMap::new(),
        })
    }

    /// The shard document of kept row `kept` (in the batch that starts at row `self.rows`).
    fn document(&self, texts: &StringArray, kept: &Kept) -> crate::Result<ShardDocument> {
        let i = (kept.row - self.rows) as usize;
        let text = (!texts.is_null(i)).then(|| clean(texts.value(i)));
        let id = text.as_ref().map(|t| doc_id(&self.spec.label, t));
        let Some(text) = text.filter(|_| id == Some(kept.doc_id)) else {
            let now = id.map_or_else(|| "a null text".to_owned(), |id| format!("document {id}"));
            return Err(self.not_repeatable(&format!(
                "row {} reads differently the second time ({now}, first document {})",
                kept.row, kept.doc_id
            )));
        };
        let spec = self.spec;
        Ok(ShardDocument {
            doc_id: kept.doc_id,
            source: spec.label.clone(),
            split: Split::of(kept.doc_id, spec.valid_fraction, spec.probe_fraction),
            tokens: self.tokenizer.encode(&text)?,
        })
    }

    /// The error for a source whose query gave other rows when it ran again.
    fn not_repeatable(&self, what: &str) -> Error {
        Error::Query {
            path: PathBuf::from(&self.spec.label),
            message: format!(
                "{what}: on a Ballista cluster the source's SQL runs twice and must return the \
                 same rows in the same order both times (no random(), no LIMIT without ORDER BY)"
            ),
        }
    }
}

impl TaskJob for ShardJob<'_> {
    /// Writes the kept rows of the next batch of the query's output.
    fn push(&mut self, batch: &RecordBatch) -> crate::Result<()> {
        let column = batch
            .columns()
            .first()
            .ok_or_else(|| Error::Internal("a write job's input has no column".into()))?;
        let texts = arrow::compute::cast(column, &DataType::Utf8)
            .map_err(|e| Error::Internal(format!("a write job's text column: {e}")))?;
        let texts = texts.as_string::<i32>();
        let end = self.rows + batch.num_rows() as u64;
        let here = self.kept[self.next..].partition_point(|k| k.row < end);
        let docs = self.kept[self.next..self.next + here]
            .par_iter()
            .map(|k| self.document(texts, k))
            .collect::<crate::Result<Vec<_>>>()?;
        (self.next, self.rows) = (self.next + here, end);
        for doc in docs {
            let counts = self.splits.entry(doc.split).or_default();
            counts.documents += 1;
            counts.tokens += doc.tokens.len() as u64;
            self.writer.push(doc)?;
        }
        Ok(())
    }

    /// Writes the last file and the receipt; returns the documents written.
    fn finish(self) -> crate::Result<u64> {
        if let Some(k) = self.kept.get(self.next) {
            let rows = self.rows;
            return Err(self.not_repeatable(&format!(
                "the second read ended after {rows} rows, before row {}",
                k.row
            )));
        }
        let receipt = Receipt {
            files: self.writer.finish()?,
            splits: self.splits,
        };
        write_json(&self.spec.receipt, &receipt)?;
        Ok(receipt.documents())
    }
}

/// Tokenizers loaded by this process, by path and SHA-256 (one or two per run).
static TOKENIZERS: Memo<(PathBuf, String), TextTokenizer> = Memo::new(8);

/// The tokenizer at `path`, checked against `sha256` and loaded once per process.
fn tokenizer(path: &Path, sha256: &str) -> crate::Result<Arc<TextTokenizer>> {
    TOKENIZERS.get_or_try_insert(&(path.to_owned(), sha256.to_owned()), || {
        let actual = sha256_file(path)?;
        if actual != sha256 {
            return Err(Error::Tokenizer {
                path: path.to_owned(),
                message: format!(
                    "sha256 {actual} on this executor, expected {sha256} (the file changed, or executors do not share the client's file system)"
                ),
            });
        }
        TextTokenizer::load(path)
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::StringArray;

    use super::*;
    use crate::cluster::allowed::AllowedDirs;
    use crate::cluster::sink::{SinkTask, TaskSink, insert_rows};
    use crate::cluster::stage::write_candidates;
    use crate::shard::read_shard_file;
    use crate::tokenize::train_byte_level_bpe;

    fn texts() -> Vec<Option<String>> {
        (0..7)
            .map(|i| (i != 2).then(|| format!("  Document number {i} says something.\r\n")))
            .collect()
    }

    /// A spec over a fresh tokenizer whose candidates are the rows of [`texts`] but the null
    /// one, rows 1 and 5 dropped: it keeps rows 0, 3, 4 and 6.
    fn spec(dir: &Path) -> WriteSpec {
        let tokenizer = dir.join("tokenizer.json");
        let sample: Vec<String> = texts().into_iter().flatten().collect();
        train_byte_level_bpe(&sample, 300, &tokenizer).unwrap();
        let spec = WriteSpec {
            domain: "prose".into(),
            label: "prose.jsonl".into(),
            shards_dir: dir.join("shards"),
            first_part: 3,
            shard_rows: 3,
            candidates: dir.join("candidates-1.parquet"),
            dropped: dir.join("dropped-1.bin"),
            receipt: dir.join("written-1.json"),
            tokenizer_sha256: sha256_file(&tokenizer).unwrap(),
            tokenizer,
            valid_fraction: 0.3,
            probe_fraction: 0.2,
        };
        let candidates: Vec<Kept> = [0, 1, 3, 4, 5, 6]
            .iter()
            .map(|&row| kept(&spec, row))
            .collect();
        write_candidates(&spec.candidates, 1, &candidates);
        write_rows(&spec.dropped, &[1, 5]).unwrap();
        spec
    }

    fn kept(spec: &WriteSpec, row: u64) -> Kept {
        let text = texts()[row as usize].clone().unwrap();
        Kept {
            row,
            doc_id: doc_id(&spec.label, &clean(&text)),
        }
    }

    /// Inserts `texts` (in batches of two rows) into the spec's shard table, as a write job does.
    fn insert(spec: &WriteSpec, texts: Vec<Option<String>>) -> datafusion::error::Result<u64> {
        let column = Arc::new(StringArray::from(texts)) as arrow::array::ArrayRef;
        insert_rows(SinkTask::Write(spec.clone()), column, 2)
    }

    #[test]
    fn a_write_job_writes_the_kept_rows_as_the_local_writer_would() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path());
        assert_eq!(insert(&spec, texts()).unwrap(), 4);

        let tokenizer = TextTokenizer::load(&spec.tokenizer).unwrap();
        let expected: Vec<ShardDocument> = [0, 3, 4, 6]
            .iter()
            .map(|&row| {
                let text = clean(texts()[row].as_deref().unwrap());
                let id = doc_id(&spec.label, &text);
                ShardDocument {
                    doc_id: id,
                    source: spec.label.clone(),
                    split: Split::of(id, 0.3, 0.2),
                    tokens: tokenizer.encode(&text).unwrap(),
                }
            })
            .collect();
        let local_dir = dir.path().join("local");
        let mut local = ShardWriter::new(&local_dir, "prose", 3).numbered_from(3);
        for doc in expected.clone() {
            local.push(doc).unwrap();
        }
        let local = local.finish().unwrap();

        let receipt = Receipt::read(&spec.receipt).unwrap();
        assert_eq!(receipt.files, local, "same names, rows, tokens and bytes");
        let paths: Vec<&str> = receipt.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["prose/part-00003.parquet", "prose/part-00004.parquet"]
        );
        let written: Vec<ShardDocument> = receipt
            .files
            .iter()
            .flat_map(|f| read_shard_file(&spec.shards_dir.join(&f.path), None).unwrap())
            .collect();
        assert_eq!(written, expected);
        let documents: u64 = receipt.splits.values().map(|c| c.documents).sum();
        assert_eq!((documents, receipt.documents()), (4, 4));

        // A retried task writes the same files again: no second copy, the same bytes.
        assert_eq!(insert(&spec, texts()).unwrap(), 4);
        assert_eq!(Receipt::read(&spec.receipt).unwrap(), receipt);
        let files = std::fs::read_dir(spec.shards_dir.join("prose")).unwrap();
        assert_eq!(files.count(), 2);
    }

    #[test]
    fn a_source_that_reads_differently_the_second_time_fails_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path());
        let mut changed = texts();
        changed.swap(3, 5);
        let err = insert(&spec, changed).unwrap_err().to_string();
        assert!(err.contains("row 3 reads differently"), "{err}");
        assert!(err.contains("same rows in the same order"), "{err}");
        let err = insert(&spec, texts()[..5].to_vec())
            .unwrap_err()
            .to_string();
        assert!(err.contains("ended after 5 rows, before row 6"), "{err}");
        assert!(!spec.receipt.exists(), "no receipt for a failed job");
    }

    #[test]
    fn an_executor_refuses_a_changed_tokenizer_and_paths_outside_its_directories() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path());
        let sink = |spec: &WriteSpec, allowed: &Path| {
            let allowed = AllowedDirs::new(&[allowed.to_owned()]).unwrap();
            TaskSink::new(SinkTask::Write(spec.clone())).within(allowed)
        };
        assert!(sink(&spec, dir.path()).check_paths().is_ok());
        let elsewhere = tempfile::tempdir().unwrap();
        let err = sink(&spec, elsewhere.path()).check_paths().unwrap_err();
        assert!(err.to_string().contains("outside the directories"), "{err}");
        spec.shards_dir = dir.path().join("../escape");
        assert!(sink(&spec, dir.path()).check_paths().is_err());

        spec.tokenizer_sha256 = "0".repeat(64);
        let err = ShardJob::start(&spec).err().unwrap().to_string();
        assert!(
            err.contains("tokenizer.json") && err.contains("sha256"),
            "{err}"
        );
    }

    #[test]
    fn rows_files_refuse_other_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dropped.bin");
        std::fs::write(&path, [0u8; 9]).unwrap();
        let err = read_rows(&path).unwrap_err().to_string();
        assert!(err.contains("multiple of 8"), "{err}");
    }
}
