//! Where an ingest run judges its records: in this process, or on a Ballista cluster.

use std::path::{Path, PathBuf};

use crate::config::{Engine, IngestConfig};
use crate::error::{Error, Result};

/// The engine of one ingest run, connected before anything is written.
#[derive(Debug)]
pub enum EngineSession {
    /// rayon loops in this process.
    Local,
    /// A Ballista cluster.
    #[cfg(feature = "cluster")]
    Ballista(Box<crate::cluster::client::Cluster>),
}

impl EngineSession {
    /// Starts the configured engine; for Ballista, connects to the scheduler.
    ///
    /// # Errors
    /// [`Error::Cluster`] naming the scheduler's address when it cannot be reached;
    /// [`Error::Config`] for `engine = "ballista"` in a build without the `cluster` feature.
    pub fn start(ingest: &IngestConfig) -> Result<Self> {
        match ingest.engine {
            Engine::Local => Ok(Self::Local),
            #[cfg(feature = "cluster")]
            Engine::Ballista => {
                let cluster = crate::cluster::client::Cluster::connect(
                    &ingest.scheduler,
                    ingest.batch_rows,
                    ingest.cluster_jobs,
                )?;
                Ok(Self::Ballista(Box::new(cluster)))
            }
            #[cfg(not(feature = "cluster"))]
            Engine::Ballista => Err(Error::Config(
                "ingest.engine = \"ballista\": this build of mixlab-ingest has no `cluster` feature"
                    .into(),
            )),
        }
    }

    /// Removes what the engine left in the staging directory (the executors' scan counters).
    ///
    /// # Errors
    /// I/O errors removing it.
    pub fn finish(&self, staging: &Path) -> Result<()> {
        let dir = work_dir(staging);
        if dir.exists() {
            fs_err::remove_dir_all(&dir).map_err(Error::from)?;
        }
        Ok(())
    }
}

/// The directory in a staging directory that executors write their scan counters to.
pub fn work_dir(staging: &Path) -> PathBuf {
    staging.join(".cluster")
}
