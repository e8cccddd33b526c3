//! Where the stages of one job read and write: the artefact root (`--out`), its shards and how
//! they are verified, and whether progress is shown.

use std::path::{Path, PathBuf};

use mixlab_ingest::manifest::ShardSet;
use mixlab_ingest::verified::Verification;

/// The artefact root a stage works in.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The root of every artefact (`--out`).
    pub out: PathBuf,
    /// How shards are checked when a stage opens them.
    pub verification: Verification,
    /// No progress bars.
    pub quiet: bool,
}

impl Workspace {
    /// `relative` under the root (a run directory such as `runs/a`).
    ///
    /// # Example
    /// ```
    /// use std::path::{Path, PathBuf};
    /// use mixlab_ingest::verified::Verification;
    /// use mixlab_stages::workspace::Workspace;
    ///
    /// let workspace = Workspace { out: "out".into(), verification: Verification::Recorded, quiet: true };
    /// assert_eq!(workspace.path(Path::new("runs/a")), PathBuf::from("out/runs/a"));
    /// assert_eq!(workspace.shards().path, PathBuf::from("out/shards"));
    /// ```
    pub fn path(&self, relative: &Path) -> PathBuf {
        self.out.join(relative)
    }

    /// `<out>/shards`, verified as [`Workspace::verification`] says when opened.
    pub fn shards(&self) -> ShardsDir {
        ShardsDir {
            path: self.out.join("shards"),
            verification: self.verification,
        }
    }
}

/// A shard directory and how to verify it when a command opens it.
#[derive(Debug, Clone)]
pub struct ShardsDir {
    /// The directory holding `manifest.json`.
    pub path: PathBuf,
    /// Recorded state or every checksum.
    pub verification: Verification,
}

impl ShardsDir {
    /// Opens and verifies the shards.
    ///
    /// # Errors
    /// A missing manifest or a file that differs from it, naming the file.
    pub fn open(&self) -> mixlab_ingest::Result<ShardSet> {
        ShardSet::open(&self.path, self.verification)
    }
}
