//! The token shard format (DESIGN.md, "Formats"): its Arrow schema, writer and reader.
//!
//! One Parquet row per document: `doc_id: UInt64`, `source: Dictionary<Int32, Utf8>`, `split: Utf8`,
//! `tokens: List<UInt32>`, `n_tokens: UInt32`. Files are `shards/<domain>/part-NNNNN.parquet`, written
//! atomically (`mixlab_artefacts::atomic`), so a reader never sees half a file. Token lists hold
//! the document only; samplers add the end-of-text token between documents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, ListArray, RecordBatch, StringArray, StringDictionaryBuilder,
    UInt32Array, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, UInt32Type, UInt64Type};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use mixlab_artefacts::atomic::write_atomic_with;
use mixlab_artefacts::split::Split;

use crate::checksum::sha256_file;
use crate::error::{Error, Result};

/// One document of a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardDocument {
    /// Stable hash of source label and text.
    pub doc_id: u64,
    /// The source label (see `SourceConfig::label`).
    pub source: String,
    /// Train, valid or probe.
    pub split: Split,
    /// Token ids, without an end-of-text token.
    pub tokens: Vec<u32>,
}

/// The Arrow schema of a token shard.
pub fn shard_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::UInt64, false),
        Field::new_dictionary("source", DataType::Int32, DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new(
            "tokens",
            DataType::List(Arc::new(Field::new_list_field(DataType::UInt32, false))),
            false,
        ),
        Field::new("n_tokens", DataType::UInt32, false),
    ]))
}

/// A file written by [`ShardWriter`], as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardFile {
    /// Path relative to the shard directory, e.g. `code/part-00000.parquet`.
    pub path: String,
    /// Documents in the file.
    pub rows: u64,
    /// Tokens in the file.
    pub tokens: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
}

/// Writes one domain's documents into `part-NNNNN.parquet` files of at most `rows_per_file` rows.
#[derive(Debug)]
pub struct ShardWriter {
    root: PathBuf,
    domain: String,
    rows_per_file: usize,
    first_part: usize,
    pending: Vec<ShardDocument>,
    files: Vec<ShardFile>,
}

impl ShardWriter {
    /// A writer for `root/<domain>/`; the directory is created on the first file.
    pub fn new(root: &Path, domain: &str, rows_per_file: usize) -> Self {
        Self {
            root: root.to_owned(),
            domain: domain.to_owned(),
            rows_per_file: rows_per_file.max(1),
            first_part: 0,
            pending: Vec::new(),
            files: Vec::new(),
        }
    }

    /// This writer, numbering its files from `part-<first>`: a Ballista write job writes its
    /// share of a domain's files, after those of the jobs before it.
    ///
    /// # Example
    /// ```
    /// use mixlab_artefacts::split::Split;
    /// use mixlab_ingest::shard::{ShardDocument, ShardWriter};
    /// let dir = tempfile::tempdir()?;
    /// let mut writer = ShardWriter::new(dir.path(), "code", 2).numbered_from(3);
    /// for doc_id in 0..3 {
    ///     writer.push(ShardDocument { doc_id, source: "a.jsonl".into(), split: Split::Train, tokens: vec![1] })?;
    /// }
    /// let files = writer.finish()?;
    /// assert_eq!(files[0].path, "code/part-00003.parquet");
    /// assert_eq!((files[1].path.as_str(), files[1].rows), ("code/part-00004.parquet", 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn numbered_from(self, first: usize) -> Self {
        Self {
            first_part: first,
            ..self
        }
    }

    /// Adds a document, writing a file when `rows_per_file` are pending.
    ///
    /// # Errors
    /// I/O or Parquet errors naming the shard file.
    pub fn push(&mut self, doc: ShardDocument) -> Result<()> {
        self.pending.push(doc);
        if self.pending.len() >= self.rows_per_file {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is pending and returns every file written, in order.
    ///
    /// # Errors
    /// I/O or Parquet errors naming the shard file.
    pub fn finish(mut self) -> Result<Vec<ShardFile>> {
        self.flush()?;
        Ok(self.files)
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let docs = std::mem::take(&mut self.pending);
        let part = self.first_part + self.files.len();
        let rel = format!("{}/part-{part:05}.parquet", self.domain);
        let path = self.root.join(&rel);
        let tokens = write_shard_file(&path, &docs)?;
        let bytes = fs_err::metadata(&path)?.len();
        self.files.push(ShardFile {
            path: rel,
            rows: docs.len() as u64,
            tokens,
            bytes,
            sha256: sha256_file(&path)?,
        });
        Ok(())
    }
}

/// Writes documents to one shard file atomically (temporary name, then rename); returns the token count.
///
/// # Errors
/// I/O or Parquet errors naming the file.
pub fn write_shard_file(path: &Path, docs: &[ShardDocument]) -> Result<u64> {
    let batch = to_record_batch(docs)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("mixlab-ingest {}", env!("CARGO_PKG_VERSION")))
        .build();
    // A Parquet failure travels as an I/O error so the atomic write removes its temporary file;
    // its message then names the shard.
    write_atomic_with(path, |file| {
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))
            .map_err(std::io::Error::other)?;
        writer.write(&batch).map_err(std::io::Error::other)?;
        writer.close().map_err(std::io::Error::other).map(drop)
    })?;
    Ok(docs.iter().map(|d| d.tokens.len() as u64).sum())
}

fn to_record_batch(docs: &[ShardDocument]) -> Result<RecordBatch> {
    let ids = UInt64Array::from_iter_values(docs.iter().map(|d| d.doc_id));
    let mut sources = StringDictionaryBuilder::<Int32Type>::new();
    docs.iter().for_each(|d| sources.append_value(&d.source));
    let splits = StringArray::from_iter_values(docs.iter().map(|d| d.split.as_str()));
    let n_tokens = UInt32Array::from_iter_values(docs.iter().map(|d| d.tokens.len() as u32));
    let values = UInt32Array::from_iter_values(docs.iter().flat_map(|d| d.tokens.iter().copied()));
    let offsets = OffsetBuffer::from_lengths(docs.iter().map(|d| d.tokens.len()));
    let item = Arc::new(Field::new_list_field(DataType::UInt32, false));
    let tokens = ListArray::try_new(item, offsets, Arc::new(values), None)
        .map_err(|e| Error::Internal(format!("building token lists: {e}")))?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids),
        Arc::new(sources.finish()),
        Arc::new(splits),
        Arc::new(tokens),
        Arc::new(n_tokens),
    ];
    RecordBatch::try_new(shard_schema(), columns)
        .map_err(|e| Error::Internal(format!("shard batch: {e}")))
}

/// Reads every document of a shard file, optionally only those of one split.
///
/// # Errors
/// [`Error::Parquet`] for an unreadable file, [`Error::Manifest`] when columns differ from the format.
///
/// # Example
/// ```
/// use mixlab_artefacts::split::Split;
/// use mixlab_ingest::shard::{read_shard_file, write_shard_file, ShardDocument};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("part-00000.parquet");
/// let doc = ShardDocument { doc_id: 7, source: "a.jsonl".into(), split: Split::Train, tokens: vec![1, 2, 3] };
/// write_shard_file(&path, &[doc.clone()])?;
/// assert_eq!(read_shard_file(&path, None)?, vec![doc]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_shard_file(path: &Path, only: Option<Split>) -> Result<Vec<ShardDocument>> {
    // The parquet crate still panics on some damaged files instead of returning an error
    // (apache/arrow-rs#9742; our fuzzing hit asserts in its bit unpacker and metadata reader), so a
    // damaged shard is caught here and reported like any other. A bogus size that makes it
    // allocate beyond memory aborts the process and cannot be caught.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_shard_file(path, only)
    }))
    .unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::Manifest {
            path: path.to_owned(),
            message: format!(
                "damaged shard file: the Parquet decoder failed ({reason}); re-run `mixlab ingest`"
            ),
        })
    })
}

/// [`read_shard_file`] without the panic guard.
fn decode_shard_file(path: &Path, only: Option<Split>) -> Result<Vec<ShardDocument>> {
    let parquet_err = |source| Error::Parquet {
        path: path.to_owned(),
        source,
    };
    let file = fs_err::File::open(path)?;
    // The schema is ours, not the file's: decoding the Arrow schema embedded in a damaged file
    // panics inside arrow-ipc (found by fuzzing, `tests/fuzz-corpus/shards`).
    let options = ArrowReaderOptions::new()
        .with_skip_arrow_metadata(true)
        .with_schema(shard_schema());
    let reader =
        ParquetRecordBatchReaderBuilder::try_new_with_options(file.into_parts().0, options)
            .map_err(parquet_err)?
            .with_batch_size(8192)
            .build()
            .map_err(parquet_err)?;
    let mut docs = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::Parquet {
            path: path.to_owned(),
            source: e.into(),
        })?;
        read_batch(path, &batch, only, &mut docs)?;
    }
    Ok(docs)
}

fn read_batch(
    path: &Path,
    batch: &RecordBatch,
    only: Option<Split>,
    out: &mut Vec<ShardDocument>,
) -> Result<()> {
    let wrong = |what: &str| Error::Manifest {
        path: path.to_owned(),
        message: format!(
            "column {what} is missing or has the wrong type; expected the mixlab shard schema (re-run `mixlab ingest`)"
        ),
    };
    let column = |name: &str| batch.column_by_name(name).ok_or_else(|| wrong(name));
    let ids = column("doc_id")?
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| wrong("doc_id"))?;
    let sources =
        arrow::compute::cast(column("source")?, &DataType::Utf8).map_err(|_| wrong("source"))?;
    let sources = sources
        .as_string_opt::<i32>()
        .ok_or_else(|| wrong("source"))?;
    let splits = column("split")?
        .as_string_opt::<i32>()
        .ok_or_else(|| wrong("split"))?;
    let tokens = column("tokens")?
        .as_list_opt::<i32>()
        .ok_or_else(|| wrong("tokens"))?;
    let values = tokens
        .values()
        .as_primitive_opt::<UInt32Type>()
        .ok_or_else(|| wrong("tokens"))?;
    for row in 0..batch.num_rows() {
        let split = (splits.value(row).parse::<Split>()).map_err(|e| Error::Manifest {
            path: path.to_owned(),
            message: format!("row {row}: {e}"),
        })?;
        if only.is_some_and(|s| s != split) {
            continue;
        }
        let offsets = tokens.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        let doc_tokens = values
            .values()
            .get(start..end)
            .ok_or_else(|| Error::Manifest {
                path: path.to_owned(),
                message: format!("row {row}: token offsets {start}..{end} are outside the column"),
            })?;
        out.push(ShardDocument {
            doc_id: ids.value(row),
            source: sources.value(row).to_owned(),
            split,
            tokens: doc_tokens.to_vec(),
        });
    }
    debug_assert!(values.null_count() == 0);
    Ok(())
}
