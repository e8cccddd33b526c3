//! The tables mixlab's jobs insert into: a [`TaskTable`] names what its insert does (a
//! [`SinkTask`]), and the scheduler plans the insert as DataFusion's `DataSinkExec` over a
//! [`TaskSink`] that does it on an executor: stage a part's judged records for dedup
//! ([`super::stage`]) or write its shard files ([`super::write`]). Each task writes files under
//! fixed names, atomically, and a receipt last, so a retried task leaves the same files.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::allowed::AllowedDirs;
use super::stage::{self, StageJob, StageSpec};
use super::write::{self, ShardJob, WriteSpec};

/// What an insert into a [`TaskTable`] does: everything is data, so it travels in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SinkTask {
    /// Stage a part's judged records for dedup (the input is `mixlab_judge`'s column).
    Stage(StageSpec),
    /// Write a part's kept records as shard files (the input is the text column).
    Write(WriteSpec),
}

impl SinkTask {
    /// The schema of the rows the task takes.
    pub fn schema(&self) -> SchemaRef {
        match self {
            Self::Stage(_) => stage::input_schema(),
            Self::Write(_) => write::input_schema(),
        }
    }

    /// Every file the task reads or writes (a directory's by a file in it).
    fn paths(&self) -> Vec<PathBuf> {
        match self {
            Self::Stage(spec) => spec.paths(),
            Self::Write(spec) => spec.paths(),
        }
    }
}

/// A table that queries insert into (the client plans the insert; the scheduler turns it into
/// a [`TaskSink`]).
#[derive(Debug, Clone)]
pub struct TaskTable {
    /// What the insert does.
    pub task: SinkTask,
}

#[async_trait]
impl TableProvider for TaskTable {
    fn schema(&self) -> SchemaRef {
        self.task.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Plan(
            "a mixlab task table is written, not read".into(),
        ))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let sink = TaskSink::new(self.task.clone());
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Runs a [`SinkTask`] over the rows of its job.
#[derive(Debug)]
pub struct TaskSink {
    /// What it does.
    pub task: SinkTask,
    schema: SchemaRef,
    /// On an executor: the directories it may read and write (checked when it runs, so the
    /// refusal reaches the client as the task's error).
    allowed: Option<AllowedDirs>,
}

impl TaskSink {
    /// The sink for `task`.
    pub fn new(task: SinkTask) -> Self {
        Self {
            schema: task.schema(),
            task,
            allowed: None,
        }
    }

    /// This sink, refusing to run when a path it reads or writes lies outside `allowed`.
    #[must_use]
    pub fn within(self, allowed: AllowedDirs) -> Self {
        Self {
            allowed: Some(allowed),
            ..self
        }
    }

    pub(crate) fn check_paths(&self) -> Result<()> {
        let Some(allowed) = &self.allowed else {
            return Ok(());
        };
        self.task.paths().iter().try_for_each(|p| allowed.check(p))
    }
}

impl DisplayAs for TaskSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.task {
            SinkTask::Stage(spec) => write!(f, "StageSink: part {}", spec.part),
            SinkTask::Write(spec) => write!(
                f,
                "ShardSink: {} from part-{:05}",
                spec.domain, spec.first_part
            ),
        }
    }
}

#[async_trait]
impl DataSink for TaskSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        self.check_paths()?;
        match &self.task {
            SinkTask::Stage(spec) => drive(StageJob::start(spec), data).await,
            SinkTask::Write(spec) => drive(ShardJob::start(spec), data).await,
        }
    }
}

/// `node` as the [`TaskSink`] of a [`DataSinkExec`], if it is one.
pub(crate) fn as_task_sink(node: &dyn ExecutionPlan) -> Option<&TaskSink> {
    let exec: &DataSinkExec = (node as &dyn Any).downcast_ref()?;
    exec.sink().downcast_ref()
}

/// A task's work on an executor: its job's rows batch by batch, then its files and receipt.
pub(super) trait TaskJob {
    /// Takes the next batch of the job's rows, in query order.
    fn push(&mut self, batch: &RecordBatch) -> crate::Result<()>;
    /// Completes the files and writes the receipt; returns the count the sink reports.
    fn finish(self) -> crate::Result<u64>;
}

/// Runs `job` (as it started) over `data`. Its work blocks, like the line scan's reads: a task is
/// one part's work on one executor slot.
async fn drive(
    job: crate::Result<impl TaskJob>,
    mut data: SendableRecordBatchStream,
) -> Result<u64> {
    let external = |e: crate::Error| DataFusionError::External(Box::new(e));
    let mut job = job.map_err(external)?;
    while let Some(batch) = data.next().await {
        job.push(&batch?).map_err(external)?;
    }
    job.finish().map_err(external)
}

/// Inserts `column` (in batches of `batch_rows` rows) into a table doing `task`, as a job does;
/// returns the sink's count.
#[cfg(test)]
pub(crate) fn insert_rows(
    task: SinkTask,
    column: arrow::array::ArrayRef,
    batch_rows: usize,
) -> Result<u64> {
    use arrow::array::AsArray;
    use datafusion::catalog::MemTable;
    use datafusion::logical_expr::LogicalPlanBuilder;
    use datafusion::prelude::SessionContext;

    let schema = task.schema();
    let batches = (0..column.len())
        .step_by(batch_rows)
        .map(|start| {
            let rows = column.slice(start, batch_rows.min(column.len() - start));
            RecordBatch::try_new(Arc::clone(&schema), vec![rows])
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let ctx = SessionContext::new();
    ctx.register_table("input", Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    runtime.block_on(async {
        let input = ctx.table("input").await?.logical_plan().clone();
        let table = datafusion::datasource::provider_as_source(Arc::new(TaskTable { task }));
        let plan =
            LogicalPlanBuilder::insert_into(input, "sink", table, InsertOp::Append)?.build()?;
        let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
        let counts = batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::UInt64Type>();
        Ok(counts.value(0))
    })
}
