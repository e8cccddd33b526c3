//! A run's weights in other runtimes' formats, with the tokenizer and provenance each records:
//! GGUF for llama.cpp, safetensors and `config.json` for Hugging Face transformers.

use std::path::{Path, PathBuf};

use mixlab_ingest::checksum::sha256_hex;
use mixlab_ingest::manifest::ShardSet;
use mixlab_ingest::tokenize::TextTokenizer;
use mixlab_trainer::export::gguf::vocab::Vocab;
use mixlab_trainer::export::gguf::{self, Metadata, Precision};
use mixlab_trainer::export::provenance::Provenance;
use mixlab_trainer::export::{checkpoint_model, hf};

use crate::run_dir::ResolvedRun;

/// The formats a run exports to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A directory with `model.safetensors`, `config.json` and `tokenizer.json`.
    HuggingFace,
    /// One GGUF file at the given precision.
    Gguf(Precision),
}

/// The provenance of `run`'s weights at `step`.
pub fn provenance(run: &ResolvedRun, step: u64) -> Provenance {
    let mixture = serde_json::to_vec(&run.mixture).expect("a mixture serializes");
    Provenance {
        run_hash: run.run_hash.clone(),
        mixture_sha256: sha256_hex(&mixture),
        tokenizer_sha256: run.tokenizer_sha256.clone(),
        step,
    }
}

/// The tokenizer (from `shards`) and provenance a GGUF of `run`'s weights at `step` carries.
///
/// # Errors
/// A tokenizer that cannot be read or is not a byte-level BPE (llama.cpp's `gpt2`), naming it.
pub fn gguf_metadata(run: &ResolvedRun, shards: &ShardSet, step: u64) -> anyhow::Result<Metadata> {
    let tokenizer = TextTokenizer::load(&shards.tokenizer_path())?;
    Ok(Metadata {
        vocab: Vocab {
            tables: tokenizer.byte_level_bpe()?,
            eos_id: tokenizer.eos_id(),
        },
        provenance: provenance(run, step),
    })
}

/// Writes the checkpoint `weights` (step `step` of `run`, trained on `shards`) as `format` into
/// `dir`; returns the file or directory written.
///
/// # Errors
/// Unreadable weights, a tokenizer llama.cpp cannot represent, and write errors, naming the path.
pub fn export(
    run: &ResolvedRun,
    shards: &ShardSet,
    (step, weights): (u64, &Path),
    format: Format,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    let model = checkpoint_model(&run.model, weights)?;
    match format {
        Format::HuggingFace => {
            hf::export(&model, &run.model, &provenance(run, step), dir)?;
            let tokenizer = fs_err::read(shards.tokenizer_path())?;
            mixlab_artefacts::atomic::write_atomic(&dir.join("tokenizer.json"), &tokenizer)?;
            Ok(dir.to_owned())
        }
        Format::Gguf(precision) => {
            let path = dir.join(format!("model-{}.gguf", precision.name()));
            let metadata = gguf_metadata(run, shards, step)?;
            fs_err::create_dir_all(dir)?;
            gguf::write(&model, &run.model, precision, &metadata, &path)?;
            Ok(path)
        }
    }
}
