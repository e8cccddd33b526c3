//! The client side of a Ballista ingest: each source becomes parts (one per file when its SQL
//! works row by row, else one for the whole source). A part's first job scans its files, runs the
//! SQL and judges every record with `mixlab_judge` on the executors. All sources are planned
//! first; judge jobs then run a few at a time across sources, and their results are read back in
//! source and file order, so the records reach dedup in the order the local engine reads them.
//! A part's second job ([`Cluster::write`]) runs its query again into the shard writer.

use std::collections::VecDeque;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{LogicalPlan, lit};
use datafusion::logical_expr::{LogicalPlanBuilder, cast};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext, ident};
use futures::StreamExt;
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, mpsc};

use super::codec::{LogicalCodec, PhysicalCodec};
use super::judge::{JudgeSpec, judge_udf, verdicts};
use super::scan::{LineScan, LineTable, ScanCounts};
use super::write::{Receipt, ShardTable, TEXT_COLUMN, WriteSpec};
use crate::config::{SourceConfig, SourceFormat};
use crate::error::{Error, Result};
use crate::record::Verdict;
use crate::source::{
    ReadOptions, check_parquet_footer, open_lines, parquet_table, query_err, source_frame,
    sql_error,
};

/// How long [`Cluster::connect`] waits for the scheduler's port to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Result batches a job may hold in the client before the client reads them.
const JOB_BUFFER_BATCHES: usize = 4;

/// A connection to a Ballista scheduler, with the runtime its jobs run on.
pub struct Cluster {
    runtime: Runtime,
    ctx: SessionContext,
    address: String,
    jobs_in_flight: usize,
    /// Write jobs running at once are at most `jobs_in_flight`.
    write_permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("address", &self.address)
            .finish()
    }
}

/// A batch of judged records and the source bytes read once it is used.
#[derive(Debug)]
pub struct JudgedBatch {
    /// The part of the source the records are from ([`Cluster::write`] takes it).
    pub part: usize,
    /// The first record's row number in the part's query output.
    pub first_row: u64,
    /// Raw length and verdict of each record, in record order.
    pub verdicts: Vec<(usize, Verdict)>,
    /// Bytes of the source's files whose jobs are complete.
    pub raw_bytes_done: u64,
}

/// Every source's parts and judge jobs, planned, and the judge jobs running.
pub struct Plan {
    parts: Vec<Part>,
    pending: VecDeque<PlannedJob>,
    running: VecDeque<RunningJob>,
}

/// A part's query before judging: its second job runs it again.
struct Part {
    frame: DataFrame,
    text_column: String,
    label: PathBuf,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("pending", &self.pending.len())
            .field("running", &self.running.len())
            .finish()
    }
}

/// A judge job's query, not started.
struct PlannedJob {
    source: usize,
    part: usize,
    frame: DataFrame,
    job: Job,
    label: PathBuf,
}

/// A started judge job and where its results arrive.
struct RunningJob {
    source: usize,
    part: usize,
    results: mpsc::Receiver<datafusion::error::Result<RecordBatch>>,
    bytes: u64,
    counts: Option<PathBuf>,
    label: PathBuf,
}

/// A source's table over all its files.
enum SourceTable {
    /// Parquet files through DataFusion's listing table.
    Parquet(Arc<ListingTable>),
    /// Line-oriented files through mixlab's scan.
    Lines(LineTable),
}

impl SourceTable {
    fn provider(&self) -> Arc<dyn TableProvider> {
        match self {
            Self::Parquet(table) => Arc::clone(table) as Arc<dyn TableProvider>,
            Self::Lines(table) => Arc::new(table.clone()),
        }
    }
}

/// One job: the files it scans (in order) and their size on disk.
struct Job {
    files: Vec<PathBuf>,
    bytes: u64,
    counts: Option<PathBuf>,
}

impl Cluster {
    /// Connects to the scheduler at `address` (`HOST:PORT`); jobs return batches of `batch_rows`
    /// records, and at most `jobs_in_flight` run at once.
    ///
    /// # Errors
    /// [`Error::Cluster`] naming the address when nothing accepts connections there within 10 s.
    pub fn connect(address: &str, batch_rows: usize, jobs_in_flight: usize) -> Result<Self> {
        wait_for_port(address, CONNECT_TIMEOUT)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("starting the query runtime: {e}")))?;
        // One partition and no repartitioning: a job's records come back in file order.
        let config = SessionConfig::new_with_ballista()
            .with_target_partitions(1)
            .with_repartition_file_scans(false)
            .with_batch_size(batch_rows)
            .with_ballista_logical_extension_codec(Arc::new(LogicalCodec::default()))
            .with_ballista_physical_extension_codec(Arc::new(PhysicalCodec::default()));
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        let ctx = runtime
            .block_on(SessionContext::remote_with_state(
                &format!("df://{address}"),
                state,
            ))
            .map_err(|e| Error::Cluster {
                address: address.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            runtime,
            ctx,
            address: address.to_owned(),
            jobs_in_flight,
            write_permits: Arc::new(Semaphore::new(jobs_in_flight.max(1))),
        })
    }

    /// Plans the jobs of every source, in ingest order (source `i` is `requests[i]`); nothing
    /// runs until [`Cluster::judge_next`] asks for the first source.
    ///
    /// # Errors
    /// Bad sources and SQL as the local engine reports them, before any job runs.
    pub fn plan(&self, requests: &[SourceRequest<'_>]) -> Result<Plan> {
        let (mut parts, mut pending) = (Vec::new(), VecDeque::new());
        for (source, request) in requests.iter().enumerate() {
            let whole = self.table(request)?;
            for job in self.jobs(request, &whole)? {
                let label = PathBuf::from(&request.source.path);
                let frame = self.source_frame(request, &whole, &job)?;
                pending.push_back(PlannedJob {
                    source,
                    part: parts.len(),
                    frame: judged(frame.clone(), request)?,
                    job,
                    label: label.clone(),
                });
                parts.push(Part {
                    frame,
                    text_column: request.source.text_column.clone(),
                    label,
                });
            }
        }
        Ok(Plan {
            parts,
            pending,
            running: VecDeque::new(),
        })
    }

    /// Judges every record of the plan's next source, handing batches to `sink` in record order;
    /// returns the records skipped under `on_error = "skip"`. Up to `jobs_in_flight` jobs run
    /// at once, those of later sources included, so a corpus of one file per domain still keeps
    /// several executors busy.
    ///
    /// # Errors
    /// A failed job with the executor's message (naming file and line for a malformed record);
    /// errors from `sink`.
    pub fn judge_next(
        &self,
        plan: &mut Plan,
        sink: &mut dyn FnMut(JudgedBatch) -> Result<()>,
    ) -> Result<u64> {
        let next = self.top_up(plan);
        let Some(source) = next else {
            return Err(Error::Internal("no planned source left".into()));
        };
        let (mut done_bytes, mut skipped) = (0, 0);
        while plan.running.front().is_some_and(|j| j.source == source) {
            let Some(mut job) = plan.running.pop_front() else {
                break;
            };
            let mut rows = 0;
            while let Some(batch) = job.results.blocking_recv() {
                let batch = batch.map_err(|e| job_error(&job.label, &e))?;
                let verdicts = verdicts(batch.column(0).as_ref())?;
                let first_row = rows;
                rows += verdicts.len() as u64;
                sink(JudgedBatch {
                    part: job.part,
                    first_row,
                    verdicts,
                    raw_bytes_done: done_bytes,
                })?;
            }
            done_bytes += job.bytes;
            if let Some(counts) = &job.counts {
                skipped += ScanCounts::read(counts)?.skipped;
            }
            sink(JudgedBatch {
                part: job.part,
                first_row: rows,
                verdicts: Vec::new(),
                raw_bytes_done: done_bytes,
            })?;
            self.top_up(plan);
        }
        Ok(skipped)
    }

    /// Starts planned jobs until `jobs_in_flight` run; returns the source of the oldest one.
    fn top_up(&self, plan: &mut Plan) -> Option<usize> {
        while plan.running.len() < self.jobs_in_flight
            && let Some(planned) = plan.pending.pop_front()
        {
            plan.running.push_back(RunningJob {
                source: planned.source,
                part: planned.part,
                results: self.spawn(planned.frame),
                bytes: planned.job.bytes,
                counts: planned.job.counts,
                label: planned.label,
            });
        }
        plan.running.front().map(|j| j.source)
    }

    /// The source's jobs: one per file when the SQL works row by row, else one.
    fn jobs(&self, request: &SourceRequest<'_>, whole: &SourceTable) -> Result<Vec<Job>> {
        let per_row = match &request.source.sql {
            None => true,
            Some(sql) => self.is_row_by_row(request, whole, sql)?,
        };
        let groups: Vec<Vec<PathBuf>> = if per_row {
            request.files.iter().map(|f| vec![f.clone()]).collect()
        } else {
            vec![request.files.to_vec()]
        };
        let line_format = request.source.format != SourceFormat::Parquet;
        groups
            .into_iter()
            .enumerate()
            .map(|(i, files)| {
                let mut bytes = 0;
                for file in &files {
                    bytes += fs_err::metadata(file)?.len();
                }
                let counts = line_format.then(|| request.work_dir.join(format!("scan-{i}.json")));
                Ok(Job {
                    files,
                    bytes,
                    counts,
                })
            })
            .collect()
    }

    /// Whether `sql` only filters and projects rows (so running it per file changes nothing).
    /// Subqueries inside expressions are visited too: one over `source` (`WHERE x < (SELECT
    /// max(x) FROM source)`) sees the whole source, so the source is one job.
    fn is_row_by_row(
        &self,
        request: &SourceRequest<'_>,
        whole: &SourceTable,
        sql: &str,
    ) -> Result<bool> {
        let table = whole.provider();
        let local = SessionContext::new();
        local
            .register_table("source", table)
            .map_err(|e| query_err(Path::new(&request.source.path), &e))?;
        let plan = self
            .runtime
            .block_on(local.state().create_logical_plan(sql))
            .map_err(|e| sql_error(Path::new(&request.source.path), sql, &e))?;
        let mut row_by_row = true;
        plan.apply_with_subqueries(|node| {
            row_by_row &= matches!(
                node,
                LogicalPlan::Projection(_)
                    | LogicalPlan::Filter(_)
                    | LogicalPlan::TableScan(_)
                    | LogicalPlan::SubqueryAlias(_)
            );
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|e| query_err(Path::new(&request.source.path), &e))?;
        Ok(row_by_row)
    }

    /// The source's table over all its files, its schema inferred once (as the local engine
    /// does): Parquet through DataFusion's listing table, line formats through [`LineTable`].
    fn table(&self, request: &SourceRequest<'_>) -> Result<SourceTable> {
        let label = Path::new(&request.source.path);
        let files = request.files;
        if request.source.format == SourceFormat::Parquet {
            for file in files {
                check_parquet_footer(file)?;
            }
            let table = self
                .runtime
                .block_on(parquet_table(&self.ctx, files, None))
                .map_err(|e| query_err(label, &e))?;
            return Ok(SourceTable::Parquet(table));
        }
        let lines = open_lines(
            &self.runtime,
            request.source,
            files.to_vec(),
            request.options,
        )?;
        let scan = LineScan {
            lines: lines.spec(),
            // The whole source's table only plans the SQL; jobs scan parts of it.
            counts: request.work_dir.join("never-scanned.json"),
            projection: None,
        };
        Ok(SourceTable::Lines(LineTable { scan }))
    }

    /// `whole` restricted to a job's files, with the whole source's schema.
    fn part(&self, whole: &SourceTable, job: &Job, label: &Path) -> Result<Arc<dyn TableProvider>> {
        match whole {
            SourceTable::Parquet(table) => {
                let schema = table.schema();
                let part = self
                    .runtime
                    .block_on(parquet_table(&self.ctx, &job.files, Some(schema)))
                    .map_err(|e| query_err(label, &e))?;
                Ok(part)
            }
            SourceTable::Lines(table) => {
                let mut scan = table.scan.clone();
                scan.lines.files.clone_from(&job.files);
                scan.counts = job.counts.clone().unwrap_or(scan.counts);
                Ok(Arc::new(LineTable { scan }))
            }
        }
    }

    /// The part's query: the source's SQL over its files.
    fn source_frame(
        &self,
        request: &SourceRequest<'_>,
        whole: &SourceTable,
        job: &Job,
    ) -> Result<DataFrame> {
        let label = PathBuf::from(&request.source.path);
        let table = self.part(whole, job, &label)?;
        source_frame(&self.runtime, &self.ctx, table, request.source)
    }

    /// Starts the part's second job: its query again, into the shard writer of `spec`, which
    /// writes the rows `spec.kept` lists. At most `jobs_in_flight` write jobs run at once; the
    /// rest wait in this process.
    ///
    /// # Errors
    /// [`Error::Internal`] for a part that was not planned; [`Error::Query`] when the insert
    /// does not plan.
    pub fn write(&self, plan: &Plan, part: usize, spec: WriteSpec) -> Result<ShardWrite> {
        let part = plan
            .parts
            .get(part)
            .ok_or_else(|| Error::Internal(format!("no planned part {part}")))?;
        let label = part.label.clone();
        let text = cast(ident(&part.text_column), DataType::Utf8).alias(TEXT_COLUMN);
        let input = part
            .frame
            .clone()
            .select(vec![text])
            .map_err(|e| query_err(&label, &e))?;
        let receipt = spec.receipt.clone();
        let table = provider_as_source(Arc::new(ShardTable { spec }));
        let insert = LogicalPlanBuilder::insert_into(
            input.logical_plan().clone(),
            "mixlab_shards",
            table,
            InsertOp::Append,
        )
        .and_then(LogicalPlanBuilder::build)
        .map_err(|e| query_err(&label, &e))?;
        let frame = DataFrame::new(self.ctx.state(), insert);
        let permits = Arc::clone(&self.write_permits);
        let task = self.runtime.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|e| Error::Internal(format!("write job permits: {e}")))?;
            frame.collect().await.map_err(|e| job_error(&label, &e))?;
            Receipt::read(&receipt)
        });
        Ok(ShardWrite { task })
    }

    /// Starts `frame` as a job; its result batches arrive on the returned channel.
    fn spawn(&self, frame: DataFrame) -> mpsc::Receiver<datafusion::error::Result<RecordBatch>> {
        let (tx, rx) = mpsc::channel(JOB_BUFFER_BATCHES);
        self.runtime.spawn(async move {
            let mut stream = match frame.execute_stream().await {
                Ok(stream) => stream,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            while let Some(batch) = stream.next().await {
                let failed = batch.is_err();
                if tx.send(batch).await.is_err() || failed {
                    break;
                }
            }
        });
        rx
    }
}

/// A write job started by [`Cluster::write`].
#[derive(Debug)]
pub struct ShardWrite {
    task: tokio::task::JoinHandle<Result<Receipt>>,
}

impl ShardWrite {
    /// Waits for the job to end; returns what it wrote.
    ///
    /// # Errors
    /// A failed job with the executor's message, naming the source.
    pub fn wait(self, cluster: &Cluster) -> Result<Receipt> {
        cluster
            .runtime
            .block_on(self.task)
            .map_err(|e| Error::Internal(format!("a write job's task: {e}")))?
    }
}

/// The judge job of a part: its query, then `mixlab_judge` on the text column.
fn judged(frame: DataFrame, request: &SourceRequest<'_>) -> Result<DataFrame> {
    let spec = serde_json::to_string(request.spec)
        .map_err(|e| Error::Internal(format!("serializing the judge spec: {e}")))?;
    let judged = judge_udf()
        .call(vec![ident(&request.source.text_column), lit(spec)])
        .alias("judged");
    frame
        .select(vec![judged])
        .map_err(|e| query_err(Path::new(&request.source.path), &e))
}

/// What [`Cluster::plan`] reads for one source and how.
#[derive(Debug, Clone, Copy)]
pub struct SourceRequest<'a> {
    /// The source as configured.
    pub source: &'a SourceConfig,
    /// Its files, resolved.
    pub files: &'a [PathBuf],
    /// Batch size and error policy.
    pub options: ReadOptions,
    /// The domain's judge settings.
    pub spec: &'a JudgeSpec,
    /// A directory every executor can write (scan counters).
    pub work_dir: &'a Path,
}

/// A failed job as an ingest error naming the source (the executor's message names the file
/// and line of a malformed record).
fn job_error(label: &Path, e: &datafusion::error::DataFusionError) -> Error {
    Error::Query {
        path: label.to_owned(),
        message: format!("ballista job failed: {e}"),
    }
}

/// Waits up to `timeout` until something accepts TCP connections at `address` (`HOST:PORT`).
///
/// # Errors
/// [`Error::Cluster`] naming the address when it does not parse or nothing answers in time.
pub fn wait_for_port(address: &str, timeout: Duration) -> Result<()> {
    let error = |message: String| Error::Cluster {
        address: address.to_owned(),
        message,
    };
    let targets: Vec<_> = address
        .to_socket_addrs()
        .map_err(|e| error(format!("not an address: {e}")))?
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let reached = targets
            .iter()
            .any(|t| TcpStream::connect_timeout(t, Duration::from_secs(1)).is_ok());
        if reached {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(error(format!(
                "no scheduler answers (waited {} s); start one with `mixlab cluster scheduler --bind {address}`",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
