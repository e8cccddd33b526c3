//! `mixlab export`: a run's newest checkpoint for llama.cpp (GGUF) or Hugging Face transformers.

use mixlab_stages::export::{Format, export};
use mixlab_stages::run_dir::RunDir;
use mixlab_trainer::export::gguf::Precision;

use crate::cli::{ExportArgs, ExportFormat, GgufPrecision, GlobalArgs};

/// Writes the newest checkpoint of `--run` as `--format` into `--dir` (default `<run>/hf` or
/// `<run>/gguf`).
pub fn run(global: &GlobalArgs, args: &ExportArgs) -> anyhow::Result<()> {
    let run_dir = RunDir::new(global.out_root().join(&args.run));
    let resolved = run_dir.read_config()?;
    let (step, weights) = run_dir.latest_model()?;
    let shards = resolved.open_shards(global.verification())?;
    let (format, default_dir) = match args.format {
        ExportFormat::Hf => (Format::HuggingFace, "hf"),
        ExportFormat::Gguf => (Format::Gguf(precision(args.precision)), "gguf"),
    };
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| run_dir.root.join(default_dir));
    let written = export(&resolved, &shards, (step, &weights), format, &dir)?;
    let what = match format {
        Format::HuggingFace => "model.safetensors, config.json, tokenizer.json",
        Format::Gguf(_) => "llama.cpp's llama architecture with the tokenizer",
    };
    println!("wrote {} (step {step}: {what})", written.display());
    Ok(())
}

fn precision(arg: GgufPrecision) -> Precision {
    match arg {
        GgufPrecision::F32 => Precision::F32,
        GgufPrecision::F16 => Precision::F16,
        GgufPrecision::Q4_0 => Precision::Q4_0,
    }
}
