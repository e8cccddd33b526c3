//! Line-oriented sources (JSONL, CSV, text, gzipped or not) as a table provider and a scan node
//! that can be sent to a Ballista executor: both are the same [`LineScan`] data (a [`LineSpec`]
//! plus where to report the read counters), serialized by [`super::codec`].
//!
//! The scan has one partition. The client sends one job per file when the source's SQL works row
//! by row, so files are read in parallel on the cluster and their records still come back in
//! file order; a source whose SQL needs all its rows at once is one job over all its files.

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use serde::{Deserialize, Serialize};

use super::allowed::AllowedDirs;
use super::shared::{read_json, write_json};
use crate::lines::{LineSource, LineSpec};

/// A line source to scan and the file its read counters go to when the scan ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineScan {
    /// The source.
    pub lines: LineSpec,
    /// Where the scan writes [`ScanCounts`] (JSON) after its last batch, replacing the file.
    pub counts: PathBuf,
    /// Columns of the source's schema to produce, in order (all when `None`).
    pub projection: Option<Vec<usize>>,
}

/// What a finished scan read beyond its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanCounts {
    /// Records skipped under `on_error = "skip"`.
    pub skipped: u64,
    /// Bytes of the files (compressed size for gzip).
    pub raw_bytes: u64,
}

impl ScanCounts {
    /// The counts a scan wrote to `path`; zero when it wrote none (it was not read to the end).
    ///
    /// # Errors
    /// [`crate::Error::Io`] or [`crate::Error::Internal`] for an unreadable or malformed file.
    pub fn read(path: &Path) -> crate::Result<Self> {
        if !path.exists() {
            return Ok(Self::default());
        }
        read_json(path, "scan counts")
    }
}

impl LineScan {
    /// The schema of the source.
    fn full_schema(&self) -> SchemaRef {
        Arc::new(self.lines.schema.clone())
    }

    /// The schema of what the scan produces.
    fn output_schema(&self) -> Result<SchemaRef> {
        match &self.projection {
            None => Ok(self.full_schema()),
            Some(columns) => Ok(Arc::new(self.lines.schema.project(columns)?)),
        }
    }
}

/// A line source as a table (the client plans its SQL over it; the scheduler scans it).
#[derive(Debug, Clone)]
pub struct LineTable {
    /// The scan this table stands for (its projection is `None`).
    pub scan: LineScan,
}

#[async_trait]
impl TableProvider for LineTable {
    fn schema(&self) -> SchemaRef {
        self.scan.full_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scan = LineScan {
            projection: projection.cloned(),
            ..self.scan.clone()
        };
        Ok(Arc::new(LineScanExec::new(scan)?))
    }
}

/// The physical scan: one partition reading the files in order.
#[derive(Debug)]
pub struct LineScanExec {
    /// What it reads.
    pub scan: LineScan,
    /// On an executor: the directories its files and counts must lie in (checked when it runs,
    /// so the refusal reaches the client as the task's error).
    allowed: Option<AllowedDirs>,
    properties: Arc<PlanProperties>,
}

impl LineScanExec {
    /// The node for `scan`.
    ///
    /// # Errors
    /// A projection outside the schema.
    pub fn new(scan: LineScan) -> Result<Self> {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(scan.output_schema()?),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            scan,
            allowed: None,
            properties: Arc::new(properties),
        })
    }

    /// This node, refusing to run when a path it reads or writes lies outside `allowed`.
    #[must_use]
    pub fn within(self, allowed: AllowedDirs) -> Self {
        Self {
            allowed: Some(allowed),
            ..self
        }
    }

    fn check_paths(&self) -> Result<()> {
        let Some(allowed) = &self.allowed else {
            return Ok(());
        };
        for file in &self.scan.lines.files {
            allowed.check(file)?;
        }
        allowed.check(&self.scan.counts)
    }
}

impl DisplayAs for LineScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LineScanExec: {} {:?} file(s), first {}",
            self.scan.lines.files.len(),
            self.scan.lines.format,
            self.scan
                .lines
                .files
                .first()
                .map_or(String::new(), |p| p.display().to_string())
        )
    }
}

impl ExecutionPlan for LineScanExec {
    fn name(&self) -> &str {
        "LineScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "LineScanExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "LineScanExec has one partition, asked for {partition}"
            )));
        }
        self.check_paths()?;
        let source = LineSource::from_spec(self.scan.lines.clone());
        let counters = source.counters();
        let projection = self.scan.projection.clone();
        let counts_path = self.scan.counts.clone();
        let mut batches = source.batches();
        let mut finished = false;
        // The readers block on file I/O like the local engine's; a task is one file's work.
        let stream = futures::stream::iter(std::iter::from_fn(move || {
            if finished {
                return None;
            }
            let next = match batches.next() {
                Some(Ok(batch)) => Some(match &projection {
                    Some(columns) => batch.project(columns).map_err(DataFusionError::from),
                    None => Ok(batch),
                }),
                Some(Err(e)) => Some(Err(DataFusionError::External(Box::new(e)))),
                None => {
                    finished = true;
                    let counts = ScanCounts {
                        skipped: counters.skipped.load(Ordering::Relaxed),
                        raw_bytes: counters.raw_bytes.load(Ordering::Relaxed),
                    };
                    write_counts(&counts_path, &counts).err().map(Err)
                }
            };
            if matches!(next, Some(Err(_))) {
                finished = true;
            }
            next
        }));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}

/// Writes `counts` to `path` atomically (a retried task writes the same file again).
fn write_counts(path: &Path, counts: &ScanCounts) -> Result<()> {
    write_json(path, counts).map_err(|e| DataFusionError::External(Box::new(e)))
}

/// `node` as a [`LineScanExec`], if it is one.
pub(crate) fn as_line_scan(node: &dyn ExecutionPlan) -> Option<&LineScanExec> {
    (node as &dyn Any).downcast_ref()
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;
    use futures::StreamExt;

    use super::*;
    use crate::config::{OnError, SourceFormat};

    #[test]
    fn a_scan_streams_its_records_and_reports_what_it_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.jsonl");
        let body = "{\"text\": \"one\", \"n\": 1}\n{broken\n{\"text\": \"two\", \"n\": 2}\n";
        std::fs::write(&file, body).unwrap();
        let lines = LineSource::open(
            vec![file],
            SourceFormat::Jsonl,
            Some("text".into()),
            1,
            OnError::Skip,
        )
        .unwrap();
        let scan = LineScan {
            lines: lines.spec(),
            counts: dir.path().join("counts.json"),
            projection: Some(vec![lines.schema().index_of("text").unwrap()]),
        };
        let exec = LineScanExec::new(scan.clone()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let batches: Vec<_> = runtime.block_on(async {
            let stream = exec.execute(0, SessionContext::new().task_ctx()).unwrap();
            stream.collect::<Vec<_>>().await
        });
        let texts: Vec<String> = batches
            .into_iter()
            .map(|b| b.unwrap())
            .flat_map(|b| {
                let column = b.column(0).clone();
                let strings = arrow::array::AsArray::as_string::<i32>(&column).clone();
                strings
                    .iter()
                    .map(|s| s.unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(texts, ["one", "two"]);
        let counts = ScanCounts::read(&scan.counts).unwrap();
        assert_eq!(
            counts,
            ScanCounts {
                skipped: 1,
                raw_bytes: body.len() as u64
            }
        );
        assert!(exec.execute(1, SessionContext::new().task_ctx()).is_err());
    }
}
