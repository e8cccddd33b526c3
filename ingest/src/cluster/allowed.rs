//! The directories an executor may read and write: Ballista runs any plan a client sends, so an
//! executor refuses plans that name a path outside the directories it was started with (`mixlab
//! cluster executor --allow-dir`, default its working directory): mixlab's line scans and judge
//! when their tasks start, DataFusion's file scans (Parquet, …) before a stage runs
//! ([`AllowedDirs::check_file_scans`], from [`crate::cluster::guard`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::ExecutionPlan;

/// Directories, resolved (links followed) when the executor starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AllowedDirs(Arc<[PathBuf]>);

impl AllowedDirs {
    /// The directories `dirs`, which must exist.
    ///
    /// # Errors
    /// [`crate::Error::Io`] naming a directory that cannot be resolved.
    pub fn new(dirs: &[PathBuf]) -> crate::Result<Self> {
        let resolved = dirs
            .iter()
            .map(|d| std::fs::canonicalize(d).map_err(|e| crate::Error::io(d, e)))
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(Self(resolved.into()))
    }

    /// Checks that `path` (a file that may not exist yet) lies under one of the directories.
    ///
    /// # Errors
    /// A plan error naming the path and the directories.
    ///
    /// # Example
    /// ```
    /// use mixlab_ingest::cluster::allowed::AllowedDirs;
    /// let dir = tempfile::tempdir()?;
    /// let allowed = AllowedDirs::new(&[dir.path().to_owned()])?;
    /// assert!(allowed.check(&dir.path().join("data/a.jsonl")).is_ok());
    /// assert!(allowed.check(&dir.path().join("../elsewhere.jsonl")).is_err());
    /// assert!(allowed.check(std::path::Path::new("/etc/passwd")).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check(&self, path: &Path) -> Result<()> {
        if resolve(path).is_some_and(|r| self.0.iter().any(|dir| r.starts_with(dir))) {
            return Ok(());
        }
        let dirs: Vec<String> = self.0.iter().map(|d| d.display().to_string()).collect();
        Err(DataFusionError::Plan(format!(
            "{} is outside the directories this executor may use ({}); start the executor with --allow-dir for it",
            path.display(),
            dirs.join(", ")
        )))
    }

    /// Checks every file that a DataFusion file scan of `plan` reads (a `DataSourceExec` over a
    /// `FileScanConfig`: Parquet, CSV, JSON, Arrow): local files under the directories only.
    ///
    /// # Errors
    /// A plan error naming the first file outside the directories, or a file of another object
    /// store than the local file system.
    pub fn check_file_scans(&self, plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
        plan.apply(|node| {
            let scan = node
                .downcast_ref::<DataSourceExec>()
                .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>());
            if let Some(scan) = scan {
                let store = scan.object_store_url.as_str();
                for file in scan.file_groups.iter().flat_map(|g| g.files()) {
                    self.check(&local_file(store, file.object_meta.location.as_ref())?)?;
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(())
    }
}

/// The local path of `location` (an object store path: no leading slash, percent-encoded) in the
/// object store `store`, which must be the local file system.
fn local_file(store: &str, location: &str) -> Result<PathBuf> {
    let not_local = || {
        DataFusionError::Plan(format!(
            "{store}{location} is not a local file; executors read only local files"
        ))
    };
    if store != "file:///" {
        return Err(not_local());
    }
    let url = url::Url::parse(&format!("file:///{location}")).map_err(|_| not_local())?;
    url.to_file_path().map_err(|()| not_local())
}

/// `path` with links and `..` resolved as far as it exists (a file to be written may not);
/// `None` when no part of it exists or a `..` lies beyond what exists.
fn resolve(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(resolved) = std::fs::canonicalize(existing) {
            return Some(rest.iter().rev().fold(resolved, |p, part| p.join(part)));
        }
        let name = existing.file_name()?;
        rest.push(name.to_owned());
        existing = existing.parent()?;
    }
}

#[cfg(test)]
mod tests {
    use datafusion::dataframe::DataFrameWriteOptions;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};

    use super::*;

    #[test]
    fn parquet_scans_of_files_outside_the_directories_are_refused_naming_the_file() {
        let (data, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dir = data.path().join("with space");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("t.parquet");
        let ctx = SessionContext::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let plan = runtime
            .block_on(async {
                let options = DataFrameWriteOptions::new().with_single_file_output(true);
                let rows = ctx.sql("SELECT 'a' AS text").await?;
                rows.write_parquet(file.to_str().unwrap(), options, None)
                    .await?;
                let read = ctx.read_parquet(file.to_str().unwrap(), ParquetReadOptions::default());
                read.await?
                    .filter(datafusion::prelude::lit(true))?
                    .create_physical_plan()
                    .await
            })
            .unwrap();
        let allowed = AllowedDirs::new(&[data.path().to_owned()]).unwrap();
        allowed.check_file_scans(&plan).unwrap();
        let elsewhere = AllowedDirs::new(&[other.path().to_owned()]).unwrap();
        let err = elsewhere.check_file_scans(&plan).unwrap_err().to_string();
        assert!(
            err.contains("with space/t.parquet") && err.contains("outside the directories"),
            "{err}"
        );
        let remote = local_file("s3://bucket/", "data/t.parquet").unwrap_err();
        assert!(remote.to_string().contains("not a local file"), "{remote}");
    }
}
