//! `mixlab ingest`: sources → token shards, with a per-domain summary.

use mixlab_ingest::config::Engine;
use mixlab_stages::config::LoadedConfig;
use mixlab_stages::ingest::ingest;

use crate::cli::{EngineArg, GlobalArgs, IngestArgs};
use crate::print::ingested;
use crate::progress::IngestBars;

/// Runs the ingest stage and prints the summary on stdout.
pub fn run(global: &GlobalArgs, args: &IngestArgs) -> anyhow::Result<()> {
    let mut loaded = LoadedConfig::load(&args.config.config)?;
    let ingest_config = &mut loaded.config.ingest;
    if let Some(engine) = args.engine {
        ingest_config.engine = match engine {
            EngineArg::Local => Engine::Local,
            EngineArg::Ballista => Engine::Ballista,
        };
    }
    if let Some(scheduler) = &args.scheduler {
        ingest_config.scheduler.clone_from(scheduler);
    }
    if let Some(jobs) = args.jobs {
        ingest_config.cluster_jobs = usize::try_from(jobs)?;
    }
    let workspace = global.workspace();
    let outcome = ingest(&workspace, &loaded, &IngestBars::new(global.quiet))?;
    ingested(&workspace.shards().path, &outcome);
    Ok(())
}
