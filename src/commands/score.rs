//! `mixlab score`: per-token losses of texts, each scored alone from position 0, as JSON lines,
//! to compare mixlab's model with another runtime's on identical token sequences.

use std::io::Write;

use mixlab_ingest::tokenize::TextTokenizer;
use mixlab_stages::Usage;
use mixlab_stages::run_dir::RunDir;
use mixlab_stages::texts::read_texts;
use mixlab_trainer::inference::Inference;

use crate::cli::{GlobalArgs, ScoreArgs};

/// Prints `{"text": i, "tokens": [...], "losses": [...]}` for every text of `--texts`, its first
/// `--max-tokens` tokens (at most the model's context).
pub fn run(global: &GlobalArgs, args: &ScoreArgs) -> anyhow::Result<()> {
    let run_dir = RunDir::new(global.out_root().join(&args.run));
    let resolved = run_dir.read_config()?;
    let shards = resolved.open_shards(global.verification())?;
    let tokenizer = TextTokenizer::load(&shards.tokenizer_path())?;
    let texts = read_texts(&args.texts, &tokenizer)?;
    let inference = match &args.gguf {
        None => Inference::load(&resolved.model, &run_dir.latest_model()?.1)?,
        Some(None) => Inference::load_gguf(&resolved.model, &run_dir.packed_model()?)?,
        Some(Some(file)) if !file.exists() => {
            anyhow::bail!(Usage(format!("--gguf: {} does not exist", file.display())))
        }
        Some(Some(file)) => Inference::load_gguf(&resolved.model, file)?,
    };
    let model = &resolved.model;
    let max_tokens = args
        .max_tokens
        .map_or(model.window, |m| m as usize)
        .min(model.max_seq_len);
    let mut out = std::io::stdout().lock();
    for (index, tokens) in texts.iter().enumerate() {
        let tokens = &tokens[..tokens.len().min(max_tokens)];
        let losses = inference.next_token_losses(tokens);
        let line = serde_json::json!({ "text": index, "tokens": tokens, "losses": losses });
        writeln!(out, "{line}")?;
    }
    Ok(())
}
