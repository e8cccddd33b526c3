//! `mixlab export`: a run's newest checkpoint in Hugging Face's Llama layout.

use mixlab_stages::run_dir::RunDir;
use mixlab_trainer::export::hf::export_checkpoint;

use crate::cli::{ExportArgs, GlobalArgs};

/// Writes `model.safetensors`, `config.json` and the shards' `tokenizer.json` to `--dir`
/// (default `<run>/hf`).
pub fn run(global: &GlobalArgs, args: &ExportArgs) -> anyhow::Result<()> {
    let run_dir = RunDir::new(global.out_root().join(&args.run));
    let resolved = run_dir.read_config()?;
    let (step, weights) = run_dir.latest_model()?;
    let shards = resolved.open_shards(global.verification())?;
    let dir = args.dir.clone().unwrap_or_else(|| run_dir.root.join("hf"));
    export_checkpoint(&resolved.model, &weights, &dir)?;
    mixlab_artefacts::atomic::write_atomic(
        &dir.join("tokenizer.json"),
        &fs_err::read(shards.tokenizer_path())?,
    )?;
    println!(
        "wrote {} (step {step}: model.safetensors, config.json, tokenizer.json)",
        dir.display()
    );
    Ok(())
}
