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
use arrow::datatypes::{DataType, Fields, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use futures::StreamExt;
use tokio::runtime::Runtime;

use crate::config::{OnError, SourceConfig, SourceFormat};
use crate::error::{Error, Result};
use crate::lines::{LineSource, ReadCounters};

/// The files a source's `path` (a file or a glob) resolves to, sorted.
///
/// The config's own directory is taken literally, even when its name holds glob metacharacters.
/// Symbolic links are followed, but a loop is not entered and a file reached twice (through a link
/// and directly, or through two links) is read once.
///
/// # Errors
/// [`Error::BadSource`] when the pattern is invalid or matches no file.
pub fn resolve_files(source: &SourceConfig, base_dir: &Path) -> Result<Vec<PathBuf>> {
    let base = if base_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base_dir
    };
    let pattern_path = base.join(&source.path);
    let invalid = |e: glob::PatternError| Error::BadSource {
        path: pattern_path.clone(),
        message: format!("invalid glob pattern: {e}"),
    };
    let relative = glob::Pattern::new(&source.path).map_err(invalid)?;
    let escaped_base = glob::Pattern::escape(&base.to_string_lossy());
    let pattern = if Path::new(&source.path).is_absolute() {
        relative
    } else {
        let joined = Path::new(&escaped_base).join(&source.path);
        glob::Pattern::new(&joined.to_string_lossy()).map_err(invalid)?
    };
    let (root, depth) = walk_root(base, Path::new(&source.path));
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut seen = std::collections::HashSet::new();
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(&root)
        .follow_links(true)
        .max_depth(depth)
        .sort_by_file_name()
        .into_iter()
        // Loops (walkdir detects them) and vanished or unreadable entries are not sources.
        .filter_map(std::result::Result::ok)
        .filter(|e| e.file_type().is_file() && pattern.matches_path_with(e.path(), options))
        .map(walkdir::DirEntry::into_path)
        .filter(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::BadSource {
            path: pattern_path,
            message: "no such file: the source path matched nothing (paths are relative to the config file)".into(),
        });
    }
    Ok(files)
}

/// Where to walk for `pattern` (its components up to the first with a glob metacharacter) and
/// how deep (unbounded for `**`).
fn walk_root(base: &Path, pattern: &Path) -> (PathBuf, usize) {
    let is_glob =
        |c: &std::path::Component<'_>| c.as_os_str().to_string_lossy().contains(['*', '?', '[']);
    let components: Vec<_> = pattern.components().collect();
    let literal = components.iter().take_while(|c| !is_glob(c)).count();
    let root = base.join(components[..literal].iter().collect::<PathBuf>());
    let rest = &components[literal..];
    let depth = if rest.iter().any(|c| c.as_os_str() == "**") {
        usize::MAX
    } else {
        rest.len()
    };
    (root, depth)
}

/// A line-oriented source (JSONL, CSV, text) as a streaming table, with its read counters.
fn line_table(
    runtime: &Runtime,
    source: &SourceConfig,
    files: Vec<PathBuf>,
    options: ReadOptions,
) -> Result<(Arc<dyn TableProvider>, Arc<ReadCounters>)> {
    let lines = open_lines(runtime, source, files, options)?;
    let counters = lines.counters();
    let partition: Arc<dyn PartitionStream> = Arc::new(LinePartition { lines });
    let schema = Arc::clone(partition.schema());
    let table = StreamingTable::try_new(schema, vec![partition])
        .map_err(|e| query_err(Path::new(&source.path), &e))?;
    Ok((Arc::new(table), counters))
}

/// A line-oriented source's reader, its schema inferred. A JSONL source decodes only the columns
/// its text column and SQL use.
pub(crate) fn open_lines(
    runtime: &Runtime,
    source: &SourceConfig,
    files: Vec<PathBuf>,
    options: ReadOptions,
) -> Result<LineSource> {
    let required = source.sql.is_none().then(|| source.text_column.clone());
    let mut lines = LineSource::open(
        files,
        source.format,
        required,
        options.batch_rows,
        options.on_error,
    )?;
    if source.format == SourceFormat::Jsonl {
        let used = runtime.block_on(used_columns(lines.schema(), source));
        lines.keep_columns(&used);
    }
    Ok(lines)
}

/// Checks that the query's result has the source's text column, as text.
pub(crate) fn check_text_column(fields: &Fields, source: &SourceConfig) -> Result<()> {
    let path = PathBuf::from(&source.path);
    let Some(text) = fields.iter().find(|f| f.name() == &source.text_column) else {
        let columns: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        return Err(Error::BadSource {
            path,
            message: format!(
                "no column {:?} (columns: {}); set text_column, or make the sql select it",
                source.text_column,
                columns.join(", ")
            ),
        });
    };
    if matches!(
        text.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return Ok(());
    }
    Err(Error::BadSource {
        path,
        message: format!(
            "column {:?} is {}, not text; point text_column at a string column, or convert it in sql (CAST(... AS VARCHAR) AS {})",
            source.text_column,
            text.data_type(),
            source.text_column
        ),
    })
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
        let (table, counters, parquet_bytes) = if source.format == SourceFormat::Parquet {
            let mut parquet_bytes = 0;
            for file in &files {
                check_parquet_footer(file)?;
                parquet_bytes += fs_err::metadata(file)?.len();
            }
            let table = runtime
                .block_on(parquet_table(&ctx, &files, None))
                .map_err(|e| query_err(&label, &e))?;
            (table as Arc<dyn TableProvider>, None, parquet_bytes)
        } else {
            let (table, counters) = line_table(runtime, source, files, options)?;
            (table, Some(counters), 0)
        };
        let frame = source_frame(runtime, &ctx, table, source)?;
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

/// A source's SQL that did not plan, naming the source and the SQL.
/// `source`'s SQL (default `SELECT * FROM source`) planned over `table`, registered in `ctx` as
/// `source` (replacing one registered before), with its text column checked.
///
/// # Errors
/// [`Error::Query`] for SQL that does not plan, naming the source; [`Error::BadSource`] for a
/// result without the text column.
pub(crate) fn source_frame(
    runtime: &Runtime,
    ctx: &SessionContext,
    table: Arc<dyn TableProvider>,
    source: &SourceConfig,
) -> Result<DataFrame> {
    let label = Path::new(&source.path);
    ctx.deregister_table("source")
        .map_err(|e| query_err(label, &e))?;
    ctx.register_table("source", table)
        .map_err(|e| query_err(label, &e))?;
    let sql = source.sql.as_deref().unwrap_or("SELECT * FROM source");
    let frame = runtime
        .block_on(ctx.sql(sql))
        .map_err(|e| sql_error(label, sql, &e))?;
    check_text_column(frame.schema().fields(), source)?;
    Ok(frame)
}

pub(crate) fn sql_error(path: &Path, sql: &str, e: &DataFusionError) -> Error {
    Error::Query {
        path: path.to_owned(),
        message: format!("sql {sql:?} failed to plan: {e}"),
    }
}

pub(crate) fn query_err(path: &Path, e: &DataFusionError) -> Error {
    Error::Query {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Opens the Parquet footer so an unreadable file is named before the engine sees it.
pub(crate) fn check_parquet_footer(path: &Path) -> Result<()> {
    let file = fs_err::File::open(path)?;
    parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&file.into_parts().0)
        .map_err(|e| Error::BadSource {
            path: path.to_owned(),
            message: format!("not a readable Parquet file: {e}"),
        })?;
    Ok(())
}

/// Parquet `files` as one listing table, its schema inferred from them or, when `schema` is
/// given, that one (a part of a source read with the whole source's schema).
pub(crate) async fn parquet_table(
    ctx: &SessionContext,
    files: &[PathBuf],
    schema: Option<SchemaRef>,
) -> datafusion::error::Result<Arc<ListingTable>> {
    let urls = files
        .iter()
        .map(|f| {
            let absolute =
                std::path::absolute(f).map_err(|e| DataFusionError::External(Box::new(e)))?;
            // A URL, not `parse` of a path: a directory named with `[` or `*` is not a glob.
            let url = url::Url::from_file_path(&absolute).map_err(|()| {
                DataFusionError::Plan(format!("{}: not a file path", absolute.display()))
            })?;
            ListingTableUrl::try_new(url, None)
        })
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension("");
    let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options);
    let config = match schema {
        Some(schema) => config.with_schema(schema),
        None => config.infer_schema(&ctx.state()).await?,
    };
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// The columns of `schema` that the source reads: the text column without SQL, else the ones
/// the SQL's table scan keeps after DataFusion's projection pushdown (planned over an empty table
/// of that schema). All columns when the text column is missing or the SQL does not plan, so that
/// the real query reports those errors with every column listed.
async fn used_columns(schema: &SchemaRef, source: &SourceConfig) -> Vec<String> {
    let all = || schema.fields().iter().map(|f| f.name().clone()).collect();
    let Some(sql) = &source.sql else {
        return match schema.field_with_name(&source.text_column) {
            Ok(_) => vec![source.text_column.clone()],
            Err(_) => all(),
        };
    };
    let scanned = async {
        let ctx = SessionContext::new();
        let empty = MemTable::try_new(Arc::clone(schema), vec![vec![]])?;
        ctx.register_table("source", Arc::new(empty))?;
        let state = ctx.state();
        let plan = state.optimize(&state.create_logical_plan(sql).await?)?;
        let mut used = Vec::new();
        plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                used.extend(
                    scan.projected_schema
                        .fields()
                        .iter()
                        .map(|f| f.name().clone()),
                );
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok::<_, DataFusionError>(used)
    };
    scanned.await.unwrap_or_else(|_| all())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn jsonl_source(path: &str) -> SourceConfig {
        SourceConfig {
            path: path.to_owned(),
            format: SourceFormat::Jsonl,
            text_column: "text".to_owned(),
            sql: None,
            name: None,
        }
    }

    #[test]
    fn json_lines_decode_only_the_columns_the_source_reads() {
        use arrow::datatypes::{Field, Schema};
        let schema: SchemaRef = Arc::new(Schema::new(
            ["text", "meta", "n", "lang"]
                .map(|name| Field::new(name, DataType::Utf8, true))
                .to_vec(),
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let columns = |sql: Option<&str>, text_column: &str| {
            let mut source = jsonl_source("a.jsonl");
            source.sql = sql.map(str::to_owned);
            source.text_column = text_column.to_owned();
            runtime.block_on(used_columns(&schema, &source))
        };
        assert_eq!(columns(None, "text"), ["text"]);
        assert_eq!(
            columns(Some("SELECT text FROM source WHERE lang = 'en'"), "text"),
            ["text", "lang"]
        );
        assert_eq!(
            columns(Some("SELECT meta AS text FROM source"), "text"),
            ["meta"]
        );
        // A missing text column or SQL that does not plan keep every column for the real error.
        assert_eq!(columns(None, "body").len(), 4);
        assert_eq!(columns(Some("SELECT nope FROM source"), "text").len(), 4);
    }

    #[cfg(unix)]
    #[test]
    fn globs_follow_links_once_and_take_the_config_directory_literally() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("we[ir]d*dir");
        let data = base.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("a.jsonl"), "{}\n").unwrap();
        std::fs::write(data.join("b.txt"), "x").unwrap();
        symlink(data.join("a.jsonl"), data.join("alias.jsonl")).unwrap();
        // Two loops: each would repeat the tree, together they would never end.
        symlink(&data, data.join("loop1")).unwrap();
        symlink(&base, data.join("loop2")).unwrap();
        let files = resolve_files(&jsonl_source("data/**/*.jsonl"), &base).unwrap();
        assert_eq!(files, [data.join("a.jsonl")]);
        let files = resolve_files(&jsonl_source("data/a.jsonl"), &base).unwrap();
        assert_eq!(files, [data.join("a.jsonl")]);
        let err = resolve_files(&jsonl_source("data/*.csv"), &base)
            .unwrap_err()
            .to_string();
        assert!(err.contains("data/*.csv: no such file"), "{err}");
    }
}
