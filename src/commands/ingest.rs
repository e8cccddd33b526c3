//! `mixlab ingest`: sources → token shards, with a per-domain summary.

use mixlab_stages::config::LoadedConfig;
use mixlab_stages::ingest::ingest;

use crate::cli::{ConfigArgs, GlobalArgs};
use crate::print::ingested;
use crate::progress::IngestBars;

/// Runs the ingest stage and prints the summary on stdout.
pub fn run(global: &GlobalArgs, args: &ConfigArgs) -> anyhow::Result<()> {
    let loaded = LoadedConfig::load(&args.config)?;
    let workspace = global.workspace();
    let outcome = ingest(&workspace, &loaded, &IngestBars::new(global.quiet))?;
    ingested(&workspace.shards().path, &outcome);
    Ok(())
}
