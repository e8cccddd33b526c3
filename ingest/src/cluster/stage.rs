//! The first job over each part of a source: its records judged by `mixlab_judge` and staged on
//! the executor for dedup on the cluster ([`super::groups`]).
//!
//! The stage sink writes a part's candidates (records that passed the filters) to
//! `candidates/part-<n>.parquet`: ordinal ([`ordinal`]), exact hash, document id and MinHash
//! signature; with near dedup on, each candidate's LSH band keys to `bands/part-<n>.parquet`; and
//! last a [`StageReceipt`] counting the part's records by verdict. Nothing per record returns to
//! the client. Every file is written atomically under a fixed name, so a retried task leaves the
//! same files.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, ListBuilder, RecordBatch, UInt32Builder, UInt64Array, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use mixlab_artefacts::atomic::AtomicFile;

use super::judge::{judged_field, verdicts};
use super::shared::{read_json, write_json};
use super::sink::TaskJob;
use super::write::Kept;
use crate::dedup::{Ordinal, band_keys};
use crate::error::{Error, Result};
use crate::record::{Body, Verdict};

/// The one column a stage job takes: `mixlab_judge`'s output.
pub const JUDGED_COLUMN: &str = "judged";

/// Bits of an [`Ordinal`] that hold the row within its part.
const ROW_BITS: u32 = 40;

/// The ordinal of row `row` of part `part`: parts in ingest order, rows in query order.
///
/// # Example
/// ```
/// use mixlab_ingest::cluster::stage::{ordinal, row_of};
/// let (a, b) = (ordinal(0, 5).unwrap(), ordinal(1, 0).unwrap());
/// assert!(a < b);
/// assert_eq!(row_of(b), 0);
/// assert_eq!(row_of(ordinal(3, 7).unwrap()), 7);
/// assert!(ordinal(0, 1 << 40).is_none());
/// ```
pub fn ordinal(part: usize, row: u64) -> Option<Ordinal> {
    let part = u64::try_from(part).ok()?;
    (row < 1 << ROW_BITS && part < 1 << (64 - ROW_BITS)).then_some(part << ROW_BITS | row)
}

/// The row within its part of an [`ordinal`].
pub fn row_of(ordinal: Ordinal) -> u64 {
    ordinal & ((1 << ROW_BITS) - 1)
}

/// The part of an [`ordinal`].
pub fn part_of(ordinal: Ordinal) -> usize {
    (ordinal >> ROW_BITS) as usize
}

/// What a stage job writes: everything is data, so it travels in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSpec {
    /// The part's number in ingest order (the high bits of its ordinals).
    pub part: usize,
    /// Where its candidates go.
    pub candidates: PathBuf,
    /// Where its band keys go, with near dedup on.
    pub bands: Option<BandsFile>,
    /// Where the [`StageReceipt`] goes.
    pub receipt: PathBuf,
}

/// A part's LSH band keys: one row (key, ordinal) per band per candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandsFile {
    /// The file.
    pub path: PathBuf,
    /// Bands per signature (`[ingest.dedup.minhash] bands`).
    pub bands: usize,
}

impl StageSpec {
    /// Every file the job writes.
    pub(super) fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.candidates.clone(), self.receipt.clone()];
        paths.extend(self.bands.iter().map(|b| b.path.clone()));
        paths
    }
}

/// What a stage job counted, for the client's statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageReceipt {
    /// Records the part's query returned.
    pub records: u64,
    /// Their raw text bytes.
    pub bytes: u64,
    /// Records with a null text.
    pub nulls: u64,
    /// The row of the first of them.
    pub first_null: Option<u64>,
    /// Records dropped by each rule.
    pub filtered: BTreeMap<String, u64>,
    /// Records that passed the filters (the rows of the candidates file).
    pub candidates: u64,
}

impl StageReceipt {
    /// Reads the receipt a finished job wrote.
    ///
    /// # Errors
    /// I/O errors naming the file; [`Error::Internal`] for one that does not parse.
    pub fn read(path: &Path) -> Result<Self> {
        read_json(path, "stage receipt")
    }
}

/// The schema a stage job takes.
pub(super) fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![judged_field(JUDGED_COLUMN)]))
}

/// The candidates file's columns.
pub fn candidates_schema() -> SchemaRef {
    let signature = DataType::List(Arc::new(Field::new_list_field(DataType::UInt32, false)));
    Arc::new(Schema::new(vec![
        Field::new("ord", DataType::UInt64, false),
        Field::new("hash_hi", DataType::UInt64, true),
        Field::new("hash_lo", DataType::UInt64, true),
        Field::new("doc_id", DataType::UInt64, false),
        Field::new("signature", signature, true),
    ]))
}

/// The bands file's columns.
pub fn bands_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::UInt64, false),
        Field::new("ord", DataType::UInt64, false),
    ]))
}

/// One stage job under way.
pub(super) struct StageJob<'a> {
    spec: &'a StageSpec,
    candidates: ArrowWriter<AtomicFile>,
    bands: Option<ArrowWriter<AtomicFile>>,
    receipt: StageReceipt,
}

impl<'a> StageJob<'a> {
    /// The job of `spec`, its files started.
    pub(super) fn start(spec: &'a StageSpec) -> Result<Self> {
        let bands = match &spec.bands {
            Some(b) => Some(parquet_writer(&b.path, bands_schema())?),
            None => None,
        };
        Ok(Self {
            spec,
            candidates: parquet_writer(&spec.candidates, candidates_schema())?,
            bands,
            receipt: StageReceipt::default(),
        })
    }
}

impl TaskJob for StageJob<'_> {
    /// Counts the next batch's records and stages its candidates.
    fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        let column = batch
            .columns()
            .first()
            .ok_or_else(|| Error::Internal("a stage job's input has no column".into()))?;
        let mut staged = Staged::default();
        for (raw_len, verdict) in verdicts(column.as_ref())? {
            let row = self.receipt.records;
            self.receipt.records += 1;
            self.receipt.bytes += raw_len as u64;
            match verdict {
                Verdict::Null => {
                    self.receipt.nulls += 1;
                    self.receipt.first_null.get_or_insert(row);
                }
                Verdict::Filtered(rule) => {
                    *self.receipt.filtered.entry(rule.into_owned()).or_default() += 1;
                }
                Verdict::Candidate(c) => {
                    let ord = ordinal(self.spec.part, row).ok_or_else(|| {
                        Error::Internal(format!("part {} has over 2^40 rows", self.spec.part))
                    })?;
                    let Body::Remote { doc_id } = c.body else {
                        return Err(Error::Internal("a judged record without its id".into()));
                    };
                    self.receipt.candidates += 1;
                    let bands = self.spec.bands.as_ref().map(|b| b.bands);
                    staged.push(ord, c.hash, doc_id, c.signature.as_deref(), bands);
                }
            }
        }
        let (candidates, bands) = staged.finish()?;
        write_batch(&mut self.candidates, &candidates)?;
        if let Some(writer) = &mut self.bands {
            write_batch(writer, &bands)?;
        }
        Ok(())
    }

    /// Closes the files, then writes the receipt; returns the records read.
    fn finish(self) -> Result<u64> {
        commit(self.candidates, &self.spec.candidates)?;
        if let (Some(writer), Some(bands)) = (self.bands, &self.spec.bands) {
            commit(writer, &bands.path)?;
        }
        write_json(&self.spec.receipt, &self.receipt)?;
        Ok(self.receipt.records)
    }
}

/// One batch's candidates and band keys, as columns being built.
#[derive(Default)]
struct Staged {
    ord: UInt64Builder,
    hash_hi: UInt64Builder,
    hash_lo: UInt64Builder,
    doc_id: UInt64Builder,
    signature: ListBuilder<UInt32Builder>,
    key: UInt64Builder,
    key_ord: UInt64Builder,
}

impl Staged {
    fn push(
        &mut self,
        ord: Ordinal,
        hash: Option<u128>,
        doc_id: u64,
        signature: Option<&[u32]>,
        bands: Option<usize>,
    ) {
        self.ord.append_value(ord);
        self.hash_hi.append_option(hash.map(|h| (h >> 64) as u64));
        self.hash_lo.append_option(hash.map(|h| h as u64));
        self.doc_id.append_value(doc_id);
        self.signature
            .append_option(signature.map(|s| s.iter().map(|&v| Some(v))));
        if let (Some(signature), Some(bands)) = (signature, bands) {
            for key in band_keys(signature, bands) {
                self.key.append_value(key);
                self.key_ord.append_value(ord);
            }
        }
    }

    fn finish(mut self) -> Result<(RecordBatch, RecordBatch)> {
        let signature = self
            .signature
            .with_field(Arc::new(Field::new_list_field(DataType::UInt32, false)))
            .finish();
        let candidates: Vec<ArrayRef> = vec![
            Arc::new(self.ord.finish()),
            Arc::new(self.hash_hi.finish()),
            Arc::new(self.hash_lo.finish()),
            Arc::new(self.doc_id.finish()),
            Arc::new(signature),
        ];
        let bands: Vec<ArrayRef> =
            vec![Arc::new(self.key.finish()), Arc::new(self.key_ord.finish())];
        let batch = |schema, columns| {
            RecordBatch::try_new(schema, columns)
                .map_err(|e| Error::Internal(format!("a staged batch: {e}")))
        };
        Ok((
            batch(candidates_schema(), candidates)?,
            batch(bands_schema(), bands)?,
        ))
    }
}

fn parquet_writer(path: &Path, schema: SchemaRef) -> Result<ArrowWriter<AtomicFile>> {
    let file = AtomicFile::create(path).map_err(|e| Error::io(path, e))?;
    ArrowWriter::try_new(file, schema, None).map_err(|source| Error::Parquet {
        path: path.to_owned(),
        source,
    })
}

fn write_batch(writer: &mut ArrowWriter<AtomicFile>, batch: &RecordBatch) -> Result<()> {
    writer
        .write(batch)
        .map_err(|e| Error::Internal(format!("writing staged candidates: {e}")))
}

fn commit(writer: ArrowWriter<AtomicFile>, path: &Path) -> Result<()> {
    let file = writer.into_inner().map_err(|source| Error::Parquet {
        path: path.to_owned(),
        source,
    })?;
    file.commit().map_err(|e| Error::io(path, e))
}

/// The candidates a stage job wrote, as rows in their part with document ids, in row order.
///
/// # Errors
/// I/O and Parquet errors naming the file.
pub fn read_candidates(path: &Path) -> Result<Vec<Kept>> {
    let parquet = |source| Error::Parquet {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["ord", "doc_id"]);
    let mut kept = Vec::new();
    for batch in builder.with_projection(mask).build().map_err(parquet)? {
        let batch = batch.map_err(|e| parquet(e.into()))?;
        let column = |name: &str| -> Result<&UInt64Array> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                .ok_or_else(|| {
                    Error::Internal(format!("{}: no u64 column {name:?}", path.display()))
                })
        };
        let (ord, doc_id) = (column("ord")?, column("doc_id")?);
        kept.extend(
            ord.values()
                .iter()
                .zip(doc_id.values())
                .map(|(&o, &d)| Kept {
                    row: row_of(o),
                    doc_id: d,
                }),
        );
    }
    Ok(kept)
}

/// Writes a candidates file of `rows` of part `part`, as a stage job would (without hashes).
#[cfg(test)]
pub(crate) fn write_candidates(path: &Path, part: usize, rows: &[Kept]) {
    let mut staged = Staged::default();
    for k in rows {
        let ord = ordinal(part, k.row).unwrap();
        staged.push(ord, None, k.doc_id, None, None);
    }
    let (candidates, _) = staged.finish().unwrap();
    let mut writer = parquet_writer(path, candidates_schema()).unwrap();
    write_batch(&mut writer, &candidates).unwrap();
    commit(writer, path).unwrap();
}
