//! The client side of a Ballista ingest: each source becomes parts (one per file when its SQL
//! works row by row, else one for the whole source). A part's first job ([`Cluster::stage`])
//! scans its files, runs the SQL, judges every record with `mixlab_judge` and stages the
//! candidates for dedup on the executors; dedup runs as distributed queries over what the stage
//! jobs wrote ([`Cluster::find_groups`]); a part's second job ([`Cluster::write`]) runs its query
//! again into the shard writer. Jobs run at most `jobs_in_flight` at once, in the order started.

use std::net::{TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::DataType;
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, LogicalPlan, lit};
use datafusion::logical_expr::{LogicalPlanBuilder, cast};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext, ident};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

use super::codec::{LogicalCodec, PhysicalCodec};
use super::groups::{StagedFiles, find_groups, register};
use super::judge::{JudgeSpec, judge_udf};
use super::scan::{LineScan, LineTable, ScanCounts};
use super::sink::{SinkTask, TaskTable};
use super::stage::{JUDGED_COLUMN, StageReceipt, StageSpec};
use super::write::{Receipt, TEXT_COLUMN, WriteSpec};
use crate::config::{SourceConfig, SourceFormat};
use crate::dedup::Groups;
use crate::error::{Error, Result};
use crate::source::{
    ReadOptions, check_parquet_footer, open_lines, parquet_table, query_err, source_frame,
    sql_error,
};

/// How long [`Cluster::connect`] waits for the scheduler's port to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a Ballista scheduler, with the runtime its jobs run on.
pub struct Cluster {
    runtime: Runtime,
    /// Stage and write jobs: one partition, so a part's rows keep their order.
    ctx: SessionContext,
    /// Dedup queries: as many partitions as jobs in flight, so their group-bys spread.
    dedup_ctx: SessionContext,
    address: String,
    /// Stage and write jobs running at once are at most `jobs_in_flight`.
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("address", &self.address)
            .finish()
    }
}

/// Every source's parts, planned.
pub struct Plan {
    parts: Vec<Part>,
    /// The parts of each source, in order.
    sources: Vec<Range<usize>>,
}

impl Plan {
    /// The parts of source `source` (its index in [`Cluster::plan`]'s requests).
    pub fn parts_of(&self, source: usize) -> Range<usize> {
        self.sources.get(source).cloned().unwrap_or_default()
    }

    /// The bytes on disk of part `part`'s files.
    pub fn bytes_of(&self, part: usize) -> u64 {
        self.parts.get(part).map_or(0, |p| p.bytes)
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("parts", &self.parts.len())
            .finish()
    }
}

/// A part of a source: its query (run by the stage and the write job) and what it reads.
struct Part {
    frame: DataFrame,
    text_column: String,
    label: PathBuf,
    /// The judge spec as JSON, for the stage job.
    spec: String,
    /// The files' size on disk.
    bytes: u64,
    /// The line scan's counters (line formats only).
    counts: Option<PathBuf>,
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
        // Ballista's adaptive planner re-plans the near query's stages without end when the
        // anti join's side of exact duplicates is empty (the scheduler reached 14,450 stages for
        // six parts); the static distributed planner runs it as planned.
        let dedup_config = ctx
            .copied_config()
            .with_target_partitions(jobs_in_flight.max(1))
            .with_repartition_file_scans(true)
            .with_ballista_adaptive_query_planner(false);
        let dedup_state = SessionStateBuilder::new_from_existing(ctx.state())
            .with_config(dedup_config)
            .build();
        Ok(Self {
            runtime,
            ctx,
            dedup_ctx: SessionContext::new_with_state(dedup_state),
            address: address.to_owned(),
            permits: Arc::new(Semaphore::new(jobs_in_flight.max(1))),
        })
    }

    /// Plans the parts of every source, in ingest order (source `i` is `requests[i]`); nothing
    /// runs until [`Cluster::stage`] starts a part's first job.
    ///
    /// # Errors
    /// Bad sources and SQL as the local engine reports them, before any job runs.
    pub fn plan(&self, requests: &[SourceRequest<'_>]) -> Result<Plan> {
        let (mut parts, mut sources) = (Vec::new(), Vec::new());
        for request in requests {
            let whole = self.table(request)?;
            let first = parts.len();
            let spec = serde_json::to_string(request.spec)
                .map_err(|e| Error::Internal(format!("serializing the judge spec: {e}")))?;
            for job in self.jobs(request, &whole)? {
                parts.push(Part {
                    frame: self.source_frame(request, &whole, &job)?,
                    text_column: request.source.text_column.clone(),
                    label: PathBuf::from(&request.source.path),
                    spec: spec.clone(),
                    bytes: job.bytes,
                    counts: job.counts,
                });
            }
            sources.push(first..parts.len());
        }
        Ok(Plan { parts, sources })
    }

    /// Starts part `part`'s first job: its query, judged by `mixlab_judge`, into the stage sink
    /// of `spec`. It waits in this process while `jobs_in_flight` jobs run.
    ///
    /// # Errors
    /// [`Error::Internal`] for a part that was not planned; [`Error::Query`] when the insert
    /// does not plan.
    pub fn stage(&self, plan: &Plan, part: usize, spec: StageSpec) -> Result<SinkJob<Staged>> {
        let part = planned(plan, part)?;
        let judged = judge_udf()
            .call(vec![ident(&part.text_column), lit(part.spec.clone())])
            .alias(JUDGED_COLUMN);
        let receipt = spec.receipt.clone();
        let counts = part.counts.clone();
        let job = self.insert(part, judged, SinkTask::Stage(spec))?;
        Ok(self.start(job, move || {
            let skipped = match &counts {
                Some(counts) => ScanCounts::read(counts)?.skipped,
                None => 0,
            };
            let receipt = StageReceipt::read(&receipt)?;
            Ok(Staged { receipt, skipped })
        }))
    }

    /// Finds the duplicate groups among the staged candidates of every part, with queries on
    /// the cluster: exact duplicates when `exact`, band collisions when `near`.
    ///
    /// # Errors
    /// A failed job with the executor's message.
    pub fn find_groups(&self, files: &StagedFiles, exact: bool, near: bool) -> Result<Groups> {
        let ctx = &self.dedup_ctx;
        self.runtime
            .block_on(async {
                register(ctx, files).await?;
                find_groups(ctx, exact, near).await
            })
            .map_err(|e| Error::Cluster {
                address: self.address.clone(),
                message: format!("the dedup job failed: {e}"),
            })
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

    /// Starts part `part`'s second job: its query again, into the shard writer of `spec`. It
    /// waits in this process while `jobs_in_flight` jobs run.
    ///
    /// # Errors
    /// [`Error::Internal`] for a part that was not planned; [`Error::Query`] when the insert
    /// does not plan.
    pub fn write(&self, plan: &Plan, part: usize, spec: WriteSpec) -> Result<SinkJob<Receipt>> {
        let part = planned(plan, part)?;
        let text = cast(ident(&part.text_column), DataType::Utf8).alias(TEXT_COLUMN);
        let receipt = spec.receipt.clone();
        let job = self.insert(part, text, SinkTask::Write(spec))?;
        Ok(self.start(job, move || Receipt::read(&receipt)))
    }

    /// The part's query, with `column` its one column, inserted into a table doing `task`.
    fn insert(&self, part: &Part, column: Expr, task: SinkTask) -> Result<(DataFrame, PathBuf)> {
        let label = part.label.clone();
        let input = part
            .frame
            .clone()
            .select(vec![column])
            .map_err(|e| query_err(&label, &e))?;
        let table = provider_as_source(Arc::new(TaskTable { task }));
        let insert = LogicalPlanBuilder::insert_into(
            input.logical_plan().clone(),
            "mixlab_sink",
            table,
            InsertOp::Append,
        )
        .and_then(LogicalPlanBuilder::build)
        .map_err(|e| query_err(&label, &e))?;
        Ok((DataFrame::new(self.ctx.state(), insert), label))
    }

    /// Runs `job` when a permit is free, then `done` (which reads what the job wrote).
    fn start<T: Send + 'static>(
        &self,
        (frame, label): (DataFrame, PathBuf),
        done: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> SinkJob<T> {
        let permits = Arc::clone(&self.permits);
        let task = self.runtime.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|e| Error::Internal(format!("job permits: {e}")))?;
            frame.collect().await.map_err(|e| job_error(&label, &e))?;
            done()
        });
        SinkJob { task }
    }
}

/// What a stage job found in its part.
#[derive(Debug, Clone)]
pub struct Staged {
    /// Its counts by verdict.
    pub receipt: StageReceipt,
    /// Malformed records the scan skipped under `on_error = "skip"`.
    pub skipped: u64,
}

/// Part `part` of `plan`.
fn planned(plan: &Plan, part: usize) -> Result<&Part> {
    plan.parts
        .get(part)
        .ok_or_else(|| Error::Internal(format!("no planned part {part}")))
}

/// A job started by [`Cluster::stage`] or [`Cluster::write`].
#[derive(Debug)]
pub struct SinkJob<T> {
    task: tokio::task::JoinHandle<Result<T>>,
}

impl<T> SinkJob<T> {
    /// Waits for the job to end; returns what it wrote.
    ///
    /// # Errors
    /// A failed job with the executor's message, naming the source.
    pub fn wait(self, cluster: &Cluster) -> Result<T> {
        cluster
            .runtime
            .block_on(self.task)
            .map_err(|e| Error::Internal(format!("a job's task: {e}")))?
    }
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
