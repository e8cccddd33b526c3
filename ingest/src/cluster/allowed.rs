//! The directories an executor may read and write: Ballista runs any plan a client sends, so an
//! executor refuses mixlab plan pieces that name a path outside the directories it was started
//! with (`mixlab cluster executor --allow-dir`, default its working directory).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};

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
