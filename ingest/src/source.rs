//! Reading a configured source through DataFusion as a stream of text batches.
//!
//! Each source becomes a table named `source` in its own session: Parquet through DataFusion's
//! listing table (the scan Ballista distributes), line-oriented formats through the streaming readers
//! of [`crate::lines`]. The optional SQL runs on that table; the result streams in record batches of
//! `batch_rows`, with one target partition so rows arrive in file order and output is deterministic.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use tokio::runtime::Runtime;

use crate::config::{OnError, SourceConfig, SourceFormat};
use crate::error::{Error, Result};
use crate::lines::{LineSource, ReadCounters};

/// The files a source's `path` (a file or a glob) resolves to, sorted.
///
/// # Errors
/// [`Error::BadSource`] when the pattern is invalid or matches no file.
pub fn resolve_files(source: &SourceConfig, base_dir: &Path) -> Result<Vec<PathBuf>> {
    let pattern = base_dir.join(&source.path);
    let pattern_str = pattern.to_string_lossy().into_owned();
    let mut files: Vec<PathBuf> = glob::glob(&pattern_str)
        .map_err(|e| Error::BadSource {
            path: pattern.clone(),
            message: format!("invalid glob pattern: {e}"),
        })?
        .filter_map(std::result::Result::ok)
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::BadSource {
            path: pattern,
            message: "no such file: the source path matched nothing (paths are relative to the config file)".into(),
        });
    }
    Ok(files)
}

/// A running query over one source, yielding its text column batch by batch.
pub struct SourceReader<'rt> {
    runtime: &'rt Runtime,
    stream: SendableRecordBatchStream,
    text_column: String,
    label: PathBuf,
    counters: Option<Arc<ReadCounters>>,
    parquet_bytes: u64,
    finished: bool,
}

impl std::fmt::Debug for SourceReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceReader")
            .field("source", &self.label)
            .finish()
    }
}

/// Options for opening a source, from `[ingest]`.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Records per batch.
    pub batch_rows: usize,
    /// What to do with malformed records.
    pub on_error: OnError,
}

impl<'rt> SourceReader<'rt> {
    /// Registers the source's files as table `source`, plans its SQL and starts the stream.
    ///
    /// # Errors
    /// [`Error::BadSource`] for unreadable files or a missing text column; [`Error::Query`] for SQL
    /// that does not plan.
    pub fn open(
        runtime: &'rt Runtime,
        source: &SourceConfig,
        files: Vec<PathBuf>,
        options: ReadOptions,
    ) -> Result<Self> {
        let label = PathBuf::from(&source.path);
        let config = SessionConfig::new()
            .with_target_partitions(1)
            .with_batch_size(options.batch_rows)
            .with_repartition_file_scans(false);
        let ctx = SessionContext::new_with_config(config);
        let mut counters = None;
        let mut parquet_bytes = 0;
        if source.format == SourceFormat::Parquet {
            for file in &files {
                check_parquet_footer(file)?;
                parquet_bytes += fs_err::metadata(file)?.len();
            }
            let table = runtime
                .block_on(parquet_table(&ctx, &files))
                .map_err(|e| query_err(&label, &e))?;
            ctx.register_table("source", table)
                .map_err(|e| query_err(&label, &e))?;
        } else {
            let required = source.sql.is_none().then(|| source.text_column.clone());
            let lines = LineSource::open(
                files,
                source.format,
                required,
                options.batch_rows,
                options.on_error,
            )?;
            counters = Some(lines.counters());
            let partition: Arc<dyn PartitionStream> = Arc::new(LinePartition { lines });
            let schema = Arc::clone(partition.schema());
            let table = StreamingTable::try_new(schema, vec![partition])
                .map_err(|e| query_err(&label, &e))?;
            ctx.register_table("source", Arc::new(table))
                .map_err(|e| query_err(&label, &e))?;
        }
        let sql = source
            .sql
            .clone()
            .unwrap_or_else(|| "SELECT * FROM source".to_owned());
        let frame = runtime.block_on(ctx.sql(&sql)).map_err(|e| Error::Query {
            path: label.clone(),
            message: format!("sql {sql:?} failed to plan: {e}"),
        })?;
        let columns: Vec<String> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        if !columns.iter().any(|c| c == &source.text_column) {
            return Err(Error::BadSource {
                path: label,
                message: format!(
                    "no column {:?} (columns: {}); set text_column, or make the sql select it",
                    source.text_column,
                    columns.join(", ")
                ),
            });
        }
        let stream = runtime
            .block_on(frame.execute_stream())
            .map_err(|e| query_err(&label, &e))?;
        Ok(Self {
            runtime,
            stream,
            text_column: source.text_column.clone(),
            label,
            counters,
            parquet_bytes,
            finished: false,
        })
    }

    /// The next batch of texts (nulls kept as nulls), or `None` at the end.
    ///
    /// # Errors
    /// The reader's own error (file and line) when there is one, else the engine's.
    pub fn next_texts(&mut self) -> Result<Option<StringArray>> {
        if self.finished {
            return Ok(None);
        }
        let next = self.runtime.block_on(self.stream.next());
        let batch: RecordBatch = match next {
            None => {
                self.finished = true;
                return Ok(None);
            }
            Some(Ok(batch)) => batch,
            Some(Err(e)) => {
                let own = self.counters.as_ref().and_then(|c| c.take_error());
                return Err(own.unwrap_or_else(|| query_err(&self.label, &e)));
            }
        };
        let column = batch.column_by_name(&self.text_column).ok_or_else(|| {
            Error::Internal(format!(
                "column {:?} vanished from the stream",
                self.text_column
            ))
        })?;
        let utf8 = arrow::compute::cast(column, &DataType::Utf8).map_err(|e| Error::BadSource {
            path: self.label.clone(),
            message: format!(
                "column {:?} is {} and cannot be read as text: {e}",
                self.text_column,
                column.data_type()
            ),
        })?;
        Ok(Some(utf8.as_string::<i32>().clone()))
    }

    /// Raw input bytes consumed so far (compressed size for `.gz`; whole files for Parquet at the end).
    pub fn raw_bytes_read(&self) -> u64 {
        match &self.counters {
            Some(c) => c.raw_bytes.load(Ordering::Relaxed),
            None if self.finished => self.parquet_bytes,
            None => 0,
        }
    }

    /// Records skipped under `on_error = "skip"`.
    pub fn skipped(&self) -> u64 {
        self.counters
            .as_ref()
            .map_or(0, |c| c.skipped.load(Ordering::Relaxed))
    }
}

fn query_err(path: &Path, e: &DataFusionError) -> Error {
    Error::Query {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Opens the Parquet footer so an unreadable file is named before the engine sees it.
fn check_parquet_footer(path: &Path) -> Result<()> {
    let file = fs_err::File::open(path)?;
    parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&file.into_parts().0)
        .map_err(|e| Error::BadSource {
            path: path.to_owned(),
            message: format!("not a readable Parquet file: {e}"),
        })?;
    Ok(())
}

async fn parquet_table(
    ctx: &SessionContext,
    files: &[PathBuf],
) -> datafusion::error::Result<Arc<ListingTable>> {
    let urls = files
        .iter()
        .map(|f| {
            let absolute =
                std::path::absolute(f).map_err(|e| DataFusionError::External(Box::new(e)))?;
            ListingTableUrl::parse(absolute.to_string_lossy())
        })
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension("");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .infer_schema(&ctx.state())
        .await?;
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// A line-oriented source as one DataFusion partition.
#[derive(Debug)]
struct LinePartition {
    lines: LineSource,
}

impl PartitionStream for LinePartition {
    fn schema(&self) -> &SchemaRef {
        self.lines.schema()
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches = self
            .lines
            .batches()
            .map(|b| b.map_err(|e| DataFusionError::External(Box::new(e))));
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(self.lines.schema()),
            futures::stream::iter(batches),
        ))
    }
}
