//! Readers for line-oriented sources (JSON lines, CSV, plain text), plain or gzip-compressed.
//!
//! They turn files into Arrow record batches that DataFusion scans as a streaming table, so the
//! optional SQL runs over them like over Parquet. They exist, instead of DataFusion's own JSON and
//! CSV scans, to report the file and line of a malformed record and to skip such records under
//! `on_error = "skip"` (the engine's readers fail a whole batch without a line number).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::json::reader::{
    Decoder, ReaderBuilder as JsonReaderBuilder, infer_json_schema_from_iterator,
};
use flate2::read::MultiGzDecoder;
use serde_json::Value;

use crate::config::{OnError, SourceFormat};
use crate::error::{Error, Result};

/// Lines read to infer a JSON-lines or CSV schema.
const SCHEMA_SAMPLE_LINES: usize = 1000;

/// Counters shared between a reader running inside the query engine and the pipeline.
#[derive(Debug, Default)]
pub struct ReadCounters {
    /// Bytes of the raw (possibly compressed) files consumed so far.
    pub raw_bytes: AtomicU64,
    /// Records skipped under `on_error = "skip"`.
    pub skipped: AtomicU64,
    /// The first error, kept whole so the pipeline can report it with its file and line.
    pub error: Mutex<Option<Error>>,
}

impl ReadCounters {
    /// Takes the recorded error, if any.
    pub fn take_error(&self) -> Option<Error> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }
}

/// A line-oriented source: its files, format, inferred schema and error policy.
#[derive(Debug, Clone)]
pub struct LineSource {
    files: Vec<PathBuf>,
    format: SourceFormat,
    schema: SchemaRef,
    /// Checked on every record when there is no SQL to derive it: `Some(column)`.
    required_text: Option<String>,
    batch_rows: usize,
    on_error: OnError,
    counters: Arc<ReadCounters>,
}

impl LineSource {
    /// Opens a source, inferring its schema from the first file.
    ///
    /// `required_text` names a column every record must hold as a string (checked per line for JSON).
    ///
    /// # Errors
    /// [`Error::BadSource`] or [`Error::BadRecord`] naming the file when the schema cannot be inferred.
    pub fn open(
        files: Vec<PathBuf>,
        format: SourceFormat,
        required_text: Option<String>,
        batch_rows: usize,
        on_error: OnError,
    ) -> Result<Self> {
        let first = files
            .first()
            .ok_or_else(|| Error::Internal("LineSource::open with no files".into()))?;
        let schema = match format {
            SourceFormat::Jsonl | SourceFormat::Csv => first_schema(&files, format)?.ok_or_else(|| Error::BadSource {
                path: first.clone(),
                message: format!(
                    "no records in {} matched file(s) (all empty or malformed); expected {format:?} records",
                    files.len()
                ),
            })?,
            SourceFormat::Text => Arc::new(Schema::new(vec![
                Field::new("text", DataType::Utf8, false),
                Field::new("path", DataType::Utf8, false),
            ])),
            SourceFormat::Parquet => {
                return Err(Error::Internal("Parquet is not line-oriented".into()));
            }
        };
        Ok(Self {
            files,
            format,
            schema,
            required_text,
            batch_rows,
            on_error,
            counters: Arc::default(),
        })
    }

    /// Everything a reader of this source on another machine needs (files, format, schema,
    /// checks, batch size and error policy), for a query plan that travels to an executor.
    #[cfg(feature = "cluster")]
    pub fn spec(&self) -> LineSpec {
        LineSpec {
            files: self.files.clone(),
            format: self.format,
            schema: self.schema.as_ref().clone(),
            required_text: self.required_text.clone(),
            batch_rows: self.batch_rows,
            on_error: self.on_error,
        }
    }

    /// The source a [`LineSpec`] describes, with fresh counters (no schema inference).
    #[cfg(feature = "cluster")]
    pub fn from_spec(spec: LineSpec) -> Self {
        Self {
            files: spec.files,
            format: spec.format,
            schema: Arc::new(spec.schema),
            required_text: spec.required_text,
            batch_rows: spec.batch_rows,
            on_error: spec.on_error,
            counters: Arc::default(),
        }
    }

    /// Decodes only `columns` of the inferred schema (JSON lines: the fields the source reads), so
    /// a field nothing reads may change type after the inference window. Names not in the schema
    /// are ignored.
    pub fn keep_columns(&mut self, columns: &[String]) {
        let kept: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .filter(|f| columns.contains(f.name()))
            .map(|f| f.as_ref().clone())
            .collect();
        self.schema = Arc::new(Schema::new(kept));
    }

    /// The inferred Arrow schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Counters shared with every stream this source produces.
    pub fn counters(&self) -> Arc<ReadCounters> {
        Arc::clone(&self.counters)
    }

    /// Record batches of all files in order. On error the iterator records it in the counters
    /// and yields it once.
    pub fn batches(&self) -> Box<dyn Iterator<Item = Result<RecordBatch>> + Send> {
        let this = self.clone();
        let iter = self.files.clone().into_iter().flat_map(move |path| {
            let result: Box<dyn Iterator<Item = Result<RecordBatch>> + Send> = match this.format {
                SourceFormat::Jsonl => Box::new(JsonlBatches::open(&this, &path)),
                SourceFormat::Csv => csv_batches(&this, &path),
                _ => Box::new(std::iter::once(text_batch(&this, &path))),
            };
            result
        });
        let counters = self.counters();
        Box::new(FuseOnError {
            inner: Box::new(iter),
            counters,
            failed: false,
        })
    }
}

/// A [`LineSource`] as data: what [`LineSource::spec`] gives and [`LineSource::from_spec`] takes.
#[cfg(feature = "cluster")]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LineSpec {
    /// The files, read in this order.
    pub files: Vec<PathBuf>,
    /// Their format.
    pub format: SourceFormat,
    /// The columns decoded (inferred once, on the client).
    pub schema: Schema,
    /// A column every record must hold as a string.
    pub required_text: Option<String>,
    /// Records per batch.
    pub batch_rows: usize,
    /// What to do with malformed records.
    pub on_error: OnError,
}

/// The schema of the first file that holds a record (an empty file matched by a glob has none).
fn first_schema(files: &[PathBuf], format: SourceFormat) -> Result<Option<SchemaRef>> {
    for file in files {
        let schema = match format {
            SourceFormat::Csv => infer_csv_schema(file)?,
            _ => infer_jsonl_schema(file)?,
        };
        if schema.is_some() {
            return Ok(schema);
        }
    }
    Ok(None)
}

/// Stops after the first error and records a copy of it for the pipeline.
struct FuseOnError {
    inner: Box<dyn Iterator<Item = Result<RecordBatch>> + Send>,
    counters: Arc<ReadCounters>,
    failed: bool,
}

impl Iterator for FuseOnError {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.inner.next()? {
            Ok(batch) => Some(Ok(batch)),
            Err(e) => {
                self.failed = true;
                let summary = Error::Internal(e.to_string());
                if let Ok(mut slot) = self.counters.error.lock() {
                    slot.get_or_insert(e);
                }
                Some(Err(summary))
            }
        }
    }
}

/// A failed read (a truncated or corrupt `.gz`, an I/O error), naming the file, the line reached
/// and `at`, the raw bytes of the file read so far (the failure lies within them: reads are
/// buffered).
fn read_error(path: &Path, line: u64, at: u64, e: &std::io::Error) -> Error {
    let hint = if path.extension().is_some_and(|x| x == "gz") {
        "; the gzip file is truncated or corrupt"
    } else {
        ""
    };
    Error::BadSource {
        path: path.to_owned(),
        message: format!(
            "read failed after line {line}, within the first {at} bytes of the file: {e}{hint}"
        ),
    }
}

/// Opens a file, transparently decompressing `.gz`, counting raw bytes read.
fn open_reader(path: &Path, counters: &Arc<ReadCounters>) -> Result<Box<dyn BufRead + Send>> {
    // The error names the path itself, so std::fs (whose messages do not) is used here.
    let file = std::fs::File::open(path).map_err(|e| Error::BadSource {
        path: path.to_owned(),
        message: format!("cannot open: {e}"),
    })?;
    let counting = CountingReader {
        inner: file,
        counters: Arc::clone(counters),
    };
    let gz = path.extension().is_some_and(|e| e == "gz");
    Ok(if gz {
        Box::new(BufReader::with_capacity(
            1 << 16,
            MultiGzDecoder::new(BufReader::new(counting)),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, counting))
    })
}

struct CountingReader<R> {
    inner: R,
    counters: Arc<ReadCounters>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counters
            .raw_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Parses one JSON line into an object, or says what is wrong with it.
fn parse_json_line(
    bytes: &[u8],
    required_text: Option<&str>,
) -> std::result::Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "invalid UTF-8 at byte {} of the line; expected UTF-8 text",
            e.valid_up_to()
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
    let Value::Object(fields) = &value else {
        return Err("expected a JSON object per line".into());
    };
    if let Some(column) = required_text {
        match fields.get(column) {
            Some(Value::String(_)) => {}
            Some(other) => return Err(format!("field {column:?} is {other}, expected a string")),
            None => {
                let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
                keys.sort_unstable();
                return Err(format!(
                    "field {column:?} is missing (fields: {}); set text_column",
                    keys.join(", ")
                ));
            }
        }
    }
    Ok(value)
}

/// The schema of a JSON-lines file's first records; `None` for a file without a line.
fn infer_jsonl_schema(path: &Path) -> Result<Option<SchemaRef>> {
    let counters = Arc::new(ReadCounters::default());
    let mut reader = open_reader(path, &counters)?;
    let mut sample = Vec::new();
    let mut line = Vec::new();
    let mut line_no = 0u64;
    while sample.len() < SCHEMA_SAMPLE_LINES {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| {
            read_error(
                path,
                line_no,
                counters.raw_bytes.load(Ordering::Relaxed),
                &e,
            )
        })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // Malformed lines are reported (or skipped) with their line number by the batch reader.
        if let Ok(value) = parse_json_line(&line, None) {
            sample.push(value);
        }
    }
    if sample.is_empty() {
        if line_no > 0 {
            return Err(Error::BadSource {
                path: path.to_owned(),
                message: format!(
                    "no JSON object in the first {line_no} lines; expected JSON lines"
                ),
            });
        }
        return Ok(None);
    }
    let schema =
        infer_json_schema_from_iterator(sample.iter().map(|v| Ok(v.clone()))).map_err(|e| {
            Error::BadSource {
                path: path.to_owned(),
                message: format!("cannot infer a schema: {e}"),
            }
        })?;
    Ok(Some(Arc::new(schema)))
}

/// JSON lines of one file, decoded into batches of `batch_rows` records.
struct JsonlBatches {
    path: PathBuf,
    reader: Option<Box<dyn BufRead + Send>>,
    schema: SchemaRef,
    decoder: Option<Decoder>,
    required_text: Option<String>,
    batch_rows: usize,
    on_error: OnError,
    counters: Arc<ReadCounters>,
    line_no: u64,
    /// The source's raw-byte count when this file was opened.
    start_bytes: u64,
    pending_error: Option<Error>,
}

impl JsonlBatches {
    fn open(source: &LineSource, path: &Path) -> Self {
        let mut this = Self {
            path: path.to_owned(),
            reader: None,
            schema: Arc::clone(&source.schema),
            decoder: None,
            required_text: source.required_text.clone(),
            batch_rows: source.batch_rows,
            on_error: source.on_error,
            counters: source.counters(),
            line_no: 0,
            start_bytes: source.counters.raw_bytes.load(Ordering::Relaxed),
            pending_error: None,
        };
        match (open_reader(path, &this.counters), this.new_decoder()) {
            (Ok(r), Ok(d)) => {
                this.reader = Some(r);
                this.decoder = Some(d);
            }
            (Err(e), _) => this.pending_error = Some(e),
            (_, Err(e)) => this.pending_error = Some(Error::Internal(format!("JSON decoder: {e}"))),
        }
        this
    }

    fn new_decoder(&self) -> std::result::Result<Decoder, arrow::error::ArrowError> {
        JsonReaderBuilder::new(Arc::clone(&self.schema))
            .with_batch_size(self.batch_rows)
            .build_decoder()
    }

    fn read_batch(&mut self) -> Result<Option<RecordBatch>> {
        let (Some(reader), Some(decoder)) = (&mut self.reader, &mut self.decoder) else {
            return Ok(None);
        };
        let mut rows = Vec::with_capacity(self.batch_rows);
        let mut line = Vec::new();
        while rows.len() < self.batch_rows {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(|e| {
                let at = self.counters.raw_bytes.load(Ordering::Relaxed) - self.start_bytes;
                read_error(&self.path, self.line_no, at, &e)
            })?;
            if n == 0 {
                self.reader = None;
                break;
            }
            self.line_no += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_json_line(&line, self.required_text.as_deref()) {
                Ok(value) => rows.push((self.line_no, value)),
                Err(_) if self.on_error == OnError::Skip => {
                    self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                }
                Err(message) => {
                    return Err(Error::BadRecord {
                        path: self.path.clone(),
                        line: self.line_no,
                        message,
                    });
                }
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let values: Vec<&Value> = rows.iter().map(|(_, v)| v).collect();
        if let Ok(batch) = decode(decoder, &values) {
            return Ok(batch);
        }
        // Some record does not fit the inferred schema: find it, then skip or report it by line.
        let mut fitting = Vec::with_capacity(rows.len());
        for (line, value) in &rows {
            let fits = self
                .new_decoder()
                .and_then(|mut one| decode(&mut one, &[value]));
            match fits {
                Ok(_) => fitting.push(value),
                Err(_) if self.on_error == OnError::Skip => {
                    self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    return Err(Error::BadRecord {
                        path: self.path.clone(),
                        line: *line,
                        message: format!(
                            "does not match the schema inferred from the first lines: {e}"
                        ),
                    });
                }
            }
        }
        let mut decoder = self
            .new_decoder()
            .map_err(|e| Error::Internal(format!("JSON decoder: {e}")))?;
        let batch = decode(&mut decoder, &fitting).map_err(|e| {
            Error::Internal(format!("records that decode alone fail together: {e}"))
        })?;
        self.decoder = Some(decoder);
        Ok(batch)
    }
}

/// `values` decoded into one batch (`None` when empty).
fn decode(
    decoder: &mut Decoder,
    values: &[&Value],
) -> std::result::Result<Option<RecordBatch>, arrow::error::ArrowError> {
    decoder.serialize(values)?;
    decoder.flush()
}

impl Iterator for JsonlBatches {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending_error.take() {
            return Some(Err(e));
        }
        self.read_batch().transpose()
    }
}

/// A CSV reader over a (possibly gzipped) file that accepts ragged records, so that they can be
/// reported with their line or skipped; arrow's reader fails the whole file on the first one.
fn csv_reader(
    path: &Path,
    counters: &Arc<ReadCounters>,
) -> Result<csv::Reader<Box<dyn BufRead + Send>>> {
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(open_reader(path, counters)?))
}

/// The header record, or an error naming the file.
fn csv_header(
    reader: &mut csv::Reader<Box<dyn BufRead + Send>>,
    path: &Path,
) -> Result<csv::ByteRecord> {
    let header = reader.byte_headers().map_err(|e| Error::BadSource {
        path: path.to_owned(),
        message: format!("not a CSV file with a header: {e}"),
    })?;
    Ok(header.clone())
}

/// Writes `records` as CSV text (no header) for arrow's decoder.
fn csv_bytes<'a>(records: impl IntoIterator<Item = &'a csv::ByteRecord>) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for record in records {
        // Writing into a Vec cannot fail.
        let _ = writer.write_byte_record(record);
    }
    writer.into_inner().unwrap_or_default()
}

/// The schema of the first well-formed records (ragged ones are reported later, by line).
fn infer_csv_schema(path: &Path) -> Result<Option<SchemaRef>> {
    let counters = Arc::new(ReadCounters::default());
    let mut reader = csv_reader(path, &counters)?;
    let header = csv_header(&mut reader, path)?;
    let width = header.len();
    let mut sample = vec![header];
    for record in reader.byte_records().take(SCHEMA_SAMPLE_LINES) {
        match record {
            Ok(record) if record.len() == width => sample.push(record),
            Ok(_) => {}
            Err(e) => return Err(csv_error(path, &e)),
        }
    }
    if sample.len() == 1 {
        return Ok(None);
    }
    let (schema, _) = arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(std::io::Cursor::new(csv_bytes(&sample)), None)
        .map_err(|e| Error::BadSource {
            path: path.to_owned(),
            message: format!("cannot infer a CSV schema: {e}"),
        })?;
    Ok(Some(Arc::new(schema)))
}

fn csv_error(path: &Path, e: &csv::Error) -> Error {
    match e.position() {
        Some(at) => Error::BadRecord {
            path: path.to_owned(),
            line: at.line(),
            message: format!("not valid CSV: {e}"),
        },
        None => Error::BadSource {
            path: path.to_owned(),
            message: format!("not valid CSV: {e} (truncated or corrupt gzip?)"),
        },
    }
}

fn csv_batches(
    source: &LineSource,
    path: &Path,
) -> Box<dyn Iterator<Item = Result<RecordBatch>> + Send> {
    match CsvBatches::open(source, path) {
        Ok(batches) => Box::new(batches),
        Err(e) => Box::new(std::iter::once(Err(e))),
    }
}

/// CSV records of one file, decoded into batches of `batch_rows`; a record with the wrong number
/// of fields, or a value that does not fit the inferred schema, is reported with its line or
/// skipped and counted under `on_error = "skip"`.
struct CsvBatches {
    path: PathBuf,
    reader: csv::Reader<Box<dyn BufRead + Send>>,
    width: usize,
    source: LineSource,
    done: bool,
}

impl CsvBatches {
    fn open(source: &LineSource, path: &Path) -> Result<Self> {
        let mut reader = csv_reader(path, &source.counters)?;
        let width = csv_header(&mut reader, path)?.len();
        Ok(Self {
            path: path.to_owned(),
            reader,
            width,
            source: source.clone(),
            done: false,
        })
    }

    /// A bad record: an error, or counted and dropped under `skip`.
    fn reject(&self, line: u64, message: String) -> Result<()> {
        if self.source.on_error == OnError::Skip {
            self.source.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        Err(Error::BadRecord {
            path: self.path.clone(),
            line,
            message,
        })
    }

    fn read_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut records = Vec::with_capacity(self.source.batch_rows);
        while !self.done && records.len() < self.source.batch_rows {
            let mut record = csv::ByteRecord::new();
            match self.reader.read_byte_record(&mut record) {
                Ok(false) => self.done = true,
                Ok(true) => {
                    let line = record.position().map_or(0, csv::Position::line);
                    if record.len() == self.width {
                        records.push((line, record));
                    } else {
                        let fields = record.len();
                        self.reject(
                            line,
                            format!("{fields} fields, but the header has {}", self.width),
                        )?;
                    }
                }
                Err(e) => return Err(csv_error(&self.path, &e)),
            }
        }
        if records.is_empty() {
            return Ok(None);
        }
        if let Ok(batch) = self.decode(records.iter().map(|(_, r)| r)) {
            return Ok(Some(batch));
        }
        // Some value does not fit the schema: find it, record by record.
        let mut fitting = Vec::with_capacity(records.len());
        for (line, record) in &records {
            match self.decode([record]) {
                Ok(_) => fitting.push(record),
                Err(e) => self.reject(
                    *line,
                    format!("does not match the schema inferred from the first records: {e}"),
                )?,
            }
        }
        self.decode(fitting)
            .map(Some)
            .map_err(|e| Error::Internal(format!("CSV: {e}")))
    }

    fn decode<'a>(
        &self,
        records: impl IntoIterator<Item = &'a csv::ByteRecord>,
    ) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
        let bytes = csv_bytes(records);
        let mut decoder = arrow::csv::ReaderBuilder::new(Arc::clone(&self.source.schema))
            .with_header(false)
            .with_batch_size(self.source.batch_rows)
            .build_decoder();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let used = decoder.decode(rest)?;
            if used == 0 {
                break;
            }
            rest = &rest[used..];
        }
        decoder.decode(&[])?;
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.source.schema))))
    }
}

impl Iterator for CsvBatches {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.read_batch().transpose()
    }
}

/// A whole file as one document, with its path.
fn text_batch(source: &LineSource, path: &Path) -> Result<RecordBatch> {
    let mut bytes = Vec::new();
    let start = source.counters.raw_bytes.load(Ordering::Relaxed);
    open_reader(path, &source.counters)?
        .read_to_end(&mut bytes)
        .map_err(|e| {
            let at = source.counters.raw_bytes.load(Ordering::Relaxed) - start;
            read_error(path, 0, at, &e)
        })?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() as u64;
            let err = Error::BadRecord {
                path: path.to_owned(),
                line,
                message: "invalid UTF-8; expected UTF-8 text".into(),
            };
            if source.on_error == OnError::Fail {
                return Err(err);
            }
            source.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(RecordBatch::new_empty(Arc::clone(&source.schema)));
        }
    };
    let columns = vec![
        Arc::new(StringArray::from(vec![text])) as _,
        Arc::new(StringArray::from(vec![path.display().to_string()])) as _,
    ];
    RecordBatch::try_new(Arc::clone(&source.schema), columns)
        .map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;

    fn write(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    fn texts(source: &LineSource) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for batch in source.batches() {
            let batch = batch?;
            let col = batch
                .column_by_name("text")
                .unwrap()
                .as_string::<i32>()
                .clone();
            out.extend(col.iter().map(|t| t.unwrap().to_owned()));
        }
        Ok(out)
    }

    #[test]
    fn jsonl_reads_in_order_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let body: String = (0..5)
            .map(|i| format!("{{\"text\": \"doc {i}\", \"n\": {i}}}\n"))
            .collect();
        let path = write(dir.path(), "a.jsonl", body.as_bytes());
        let source = LineSource::open(
            vec![path],
            SourceFormat::Jsonl,
            Some("text".into()),
            2,
            OnError::Fail,
        )
        .unwrap();
        assert_eq!(
            texts(&source).unwrap(),
            ["doc 0", "doc 1", "doc 2", "doc 3", "doc 4"]
        );
        assert!(source.schema().field_with_name("n").is_ok());
    }

    /// 1,001 records whose `meta` is a number, then one whose `meta` is a string.
    fn drifting_jsonl(dir: &Path) -> PathBuf {
        let mut body: String = (0..=SCHEMA_SAMPLE_LINES)
            .map(|i| format!("{{\"text\": \"doc {i}\", \"meta\": {i}}}\n"))
            .collect();
        body.push_str("{\"text\": \"late\", \"meta\": \"not a number\"}\n");
        write(dir, "drift.jsonl", body.as_bytes())
    }

    fn drifting_source(path: &Path, on_error: OnError) -> LineSource {
        LineSource::open(
            vec![path.to_owned()],
            SourceFormat::Jsonl,
            Some("text".into()),
            256,
            on_error,
        )
        .unwrap()
    }

    #[test]
    fn a_field_nothing_reads_may_change_type_after_the_inference_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = drifting_source(&drifting_jsonl(dir.path()), OnError::Fail);
        source.keep_columns(&["text".to_owned()]);
        let texts = texts(&source).unwrap();
        assert_eq!(texts.len(), SCHEMA_SAMPLE_LINES + 2);
        assert_eq!(texts.last().unwrap(), "late");
    }

    #[test]
    fn a_record_that_does_not_fit_the_schema_names_its_line_or_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = drifting_jsonl(dir.path());
        let failing = drifting_source(&path, OnError::Fail);
        let _ = texts(&failing);
        let err = failing
            .counters()
            .take_error()
            .expect("an error")
            .to_string();
        let line = SCHEMA_SAMPLE_LINES + 2;
        assert!(
            err.contains(&format!("drift.jsonl:{line}: does not match the schema")),
            "{err}"
        );
        let skipping = drifting_source(&path, OnError::Skip);
        let texts = texts(&skipping).unwrap();
        assert_eq!(texts.len(), SCHEMA_SAMPLE_LINES + 1);
        assert_eq!(texts.last().unwrap(), &format!("doc {SCHEMA_SAMPLE_LINES}"));
        assert_eq!(skipping.counters().skipped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn bad_json_line_names_file_and_line_or_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "b.jsonl",
            b"{\"text\": \"ok\"}\n{not json\n{\"text\": \"fine\"}\n",
        );
        let source = LineSource::open(
            vec![path.clone()],
            SourceFormat::Jsonl,
            Some("text".into()),
            10,
            OnError::Fail,
        )
        .unwrap();
        let _ = texts(&source);
        let err = source
            .counters()
            .take_error()
            .expect("an error")
            .to_string();
        assert!(err.contains("b.jsonl:2: not valid JSON"), "{err}");
        let skip = LineSource::open(
            vec![path],
            SourceFormat::Jsonl,
            Some("text".into()),
            10,
            OnError::Skip,
        )
        .unwrap();
        assert_eq!(texts(&skip).unwrap(), ["ok", "fine"]);
        assert_eq!(skip.counters().skipped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn non_utf8_and_missing_field_are_reported_with_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "c.jsonl",
            b"{\"text\": \"ok\"}\n{\"text\": \"bad \xff byte\"}\n",
        );
        let source = LineSource::open(
            vec![path],
            SourceFormat::Jsonl,
            Some("text".into()),
            10,
            OnError::Fail,
        )
        .unwrap();
        let _ = texts(&source);
        let err = source.counters().take_error().unwrap().to_string();
        assert!(err.contains("c.jsonl:2: invalid UTF-8"), "{err}");

        let path = write(dir.path(), "d.jsonl", b"{\"body\": \"ok\"}\n");
        let source = LineSource::open(
            vec![path],
            SourceFormat::Jsonl,
            Some("text".into()),
            10,
            OnError::Fail,
        )
        .unwrap();
        let _ = texts(&source);
        let err = source.counters().take_error().unwrap().to_string();
        assert!(
            err.contains("d.jsonl:1: field \"text\" is missing (fields: body)"),
            "{err}"
        );
    }

    #[test]
    fn gzip_and_csv_and_text_sources() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"text\": \"zipped\"}\n").unwrap();
        let path = write(dir.path(), "e.jsonl.gz", &gz.finish().unwrap());
        let source =
            LineSource::open(vec![path], SourceFormat::Jsonl, None, 10, OnError::Fail).unwrap();
        assert_eq!(texts(&source).unwrap(), ["zipped"]);

        let path = write(
            dir.path(),
            "f.csv",
            b"id,text\n1,hello there\n2,\"quoted, text\"\n",
        );
        let source =
            LineSource::open(vec![path], SourceFormat::Csv, None, 10, OnError::Fail).unwrap();
        assert_eq!(texts(&source).unwrap(), ["hello there", "quoted, text"]);

        let path = write(dir.path(), "g.txt", b"line one\nline two\n");
        let source =
            LineSource::open(vec![path], SourceFormat::Text, None, 10, OnError::Fail).unwrap();
        assert_eq!(texts(&source).unwrap(), ["line one\nline two\n"]);
    }

    /// Texts and the first error of `files` read with `on_error`.
    fn read_all(
        files: Vec<PathBuf>,
        format: SourceFormat,
        on_error: OnError,
    ) -> (Vec<String>, Option<String>, u64) {
        let source = LineSource::open(files, format, None, 2, on_error).unwrap();
        let texts = texts(&source).unwrap_or_default();
        let error = source.counters().take_error().map(|e| e.to_string());
        (
            texts,
            error,
            source.counters().skipped.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn ragged_csv_records_name_their_line_or_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"id,text\n1,one\n2,two,extra\n3,three\n5\n6,\"six,\nlines\"\n";
        let path = write(dir.path(), "r.csv", body);
        let (_, error, _) = read_all(vec![path.clone()], SourceFormat::Csv, OnError::Fail);
        let error = error.expect("an error");
        assert!(
            error.contains("r.csv:3: 3 fields, but the header has 2"),
            "{error}"
        );
        let (texts, error, skipped) = read_all(vec![path], SourceFormat::Csv, OnError::Skip);
        assert_eq!(error, None);
        // Line 3 has a field too many, line 5 one too few.
        assert_eq!(texts, ["one", "three", "six,\nlines"]);
        assert_eq!(skipped, 2);
    }

    #[test]
    fn drifting_csv_values_name_their_line_or_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        // The schema comes from the first records: ids are numbers there, not after.
        let mut body = String::from("id,text\n");
        for i in 0..SCHEMA_SAMPLE_LINES {
            body.push_str(&format!("{i},record {i}\n"));
        }
        body.push_str("x,drifted\nz,drifted too\n");
        let path = write(dir.path(), "d.csv", body.as_bytes());
        let (_, error, _) = read_all(vec![path.clone()], SourceFormat::Csv, OnError::Fail);
        let error = error.expect("an error");
        let line = SCHEMA_SAMPLE_LINES + 2;
        assert!(
            error.contains(&format!("d.csv:{line}: does not match the schema")),
            "{error}"
        );
        let (texts, error, skipped) = read_all(vec![path], SourceFormat::Csv, OnError::Skip);
        assert_eq!(
            (texts.len(), error, skipped),
            (SCHEMA_SAMPLE_LINES, None, 2)
        );
    }

    #[test]
    fn empty_files_matched_by_a_glob_hold_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "a.jsonl", b"");
        let full = write(dir.path(), "b.jsonl", b"{\"text\": \"hi\"}\n");
        let (texts, error, _) = read_all(
            vec![empty.clone(), full],
            SourceFormat::Jsonl,
            OnError::Fail,
        );
        assert_eq!((texts, error), (vec!["hi".to_owned()], None));
        let empty_csv = write(dir.path(), "a.csv", b"");
        let full_csv = write(dir.path(), "b.csv", b"text\nhi\n");
        let (texts, error, _) =
            read_all(vec![empty_csv, full_csv], SourceFormat::Csv, OnError::Fail);
        assert_eq!((texts, error), (vec!["hi".to_owned()], None));
        let err = LineSource::open(vec![empty], SourceFormat::Jsonl, None, 2, OnError::Fail)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.jsonl: no records in 1 matched file(s)"),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_gzip_names_file_line_and_offset() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for i in 0..2000 {
            writeln!(gz, "{{\"text\": \"record {i} of a file cut in half\"}}").unwrap();
        }
        let bytes = gz.finish().unwrap();
        let path = write(dir.path(), "t.jsonl.gz", &bytes[..bytes.len() / 2]);
        let (_, error, _) = read_all(vec![path], SourceFormat::Jsonl, OnError::Skip);
        let error = error.expect("an error");
        assert!(
            error.contains("t.jsonl.gz: read failed after line ")
                && error.contains(" bytes of the file: ")
                && error.contains("the gzip file is truncated or corrupt"),
            "{error}"
        );
    }
}
