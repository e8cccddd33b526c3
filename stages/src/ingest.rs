//! The `ingest` stage: sources → token shards under `<out>/shards` (the demo corpus written first
//! when `[demo]` asks for it), locked against a second writer.

use std::path::Path;

use anyhow::Context;
use mixlab_ingest::config::Engine;
use mixlab_ingest::demo::{DEMO_DOMAINS, write_demo_corpus};
use mixlab_ingest::pipeline::{IngestOutcome, IngestRequest, Progress, ingest as run_ingest};

use crate::config::LoadedConfig;
use crate::locks::lock_dir;
use crate::workspace::Workspace;

/// Ingests the sources of `loaded` into the workspace's shards, or finds them up to date.
///
/// # Errors
/// Unreadable or bad sources (naming the file and line), a bad tokenizer, another process
/// writing the same output directory, and write failures.
pub fn ingest(
    workspace: &Workspace,
    loaded: &LoadedConfig,
    progress: &dyn Progress,
) -> anyhow::Result<IngestOutcome> {
    if loaded.config.ingest.engine == Engine::Ballista {
        crate::signals::ignore_sigpipe();
    }
    let _lock = lock_dir(&workspace.out, "ingest")?;
    ensure_demo_corpus(loaded)?;
    let shards_dir = workspace.path(Path::new("shards"));
    let config_hash = loaded.ingest_hash();
    let request = IngestRequest {
        tokenizer: &loaded.config.tokenizer,
        ingest: &loaded.config.ingest,
        domains: &loaded.config.domain,
        base_dir: &loaded.base_dir,
        shards_dir: &shards_dir,
        config_hash: &config_hash,
    };
    run_ingest(&request, progress).with_context(|| format!("ingest of {}", loaded.path.display()))
}

/// Writes the demo corpus first when `[demo]` is configured and a file is missing.
fn ensure_demo_corpus(loaded: &LoadedConfig) -> anyhow::Result<()> {
    let Some(demo) = &loaded.config.demo else {
        return Ok(());
    };
    let dir = loaded.base_dir.join(&demo.dir);
    let complete = dir.is_dir()
        && DEMO_DOMAINS.iter().all(|d| {
            std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with(d))
                })
                .unwrap_or(false)
        });
    if !complete {
        tracing::info!("writing the demo corpus to {}", dir.display());
        write_demo_corpus(&dir, demo.seed)
            .with_context(|| format!("writing the demo corpus to {}", dir.display()))?;
    }
    Ok(())
}
