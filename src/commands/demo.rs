//! `mixlab demo-data`: write the embedded synthetic corpus.

use anyhow::Context;
use std::path::PathBuf;

use crate::cli::{DemoArgs, GlobalArgs};

/// Writes the demo corpus to `--out` (default `data/demo`) and lists the files on stdout.
pub fn run(global: &GlobalArgs, args: &DemoArgs) -> anyhow::Result<()> {
    let dir = global
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("data/demo"));
    let files = mixlab_ingest::demo::write_demo_corpus(&dir, args.seed)
        .with_context(|| format!("writing the demo corpus to {}", dir.display()))?;
    for file in files {
        println!("{}", file.display());
    }
    Ok(())
}
