//! The executor's side of [`AllowedDirs`]: Ballista's execution engine with every query stage's
//! file scans checked before the stage runs, so a plan naming a file outside the executor's
//! directories fails its task with a message naming the file.

use std::sync::Arc;

use ballista_core::JobId;
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;

use crate::cluster::allowed::AllowedDirs;

/// Ballista's [`DefaultExecutionEngine`] behind a check of the stage's file scans.
pub struct CheckedEngine {
    inner: DefaultExecutionEngine,
    allowed: AllowedDirs,
}

impl CheckedEngine {
    /// The default engine, running stages whose files lie under `allowed`.
    pub fn new(allowed: AllowedDirs) -> Self {
        Self {
            inner: DefaultExecutionEngine::new(),
            allowed,
        }
    }
}

impl ExecutionEngine for CheckedEngine {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        self.allowed.check_file_scans(&plan)?;
        self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )
    }
}
