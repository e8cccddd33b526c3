//! The tokenizer stage: load a Hugging Face `tokenizer.json`, or train a byte-level BPE on a sample.
//!
//! Whatever its origin, the tokenizer is saved as `tokenizer.json` next to the shards and its SHA-256
//! goes into the manifest, so token ids are never read with a different vocabulary.

use std::path::{Path, PathBuf};

use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

use crate::error::{Error, Result};

/// End-of-text token of tokenizers trained by mixlab (id 0).
pub const EOS_TOKEN: &str = "<|endoftext|>";

/// End-of-text tokens recognised in loaded tokenizers, in order of preference.
const KNOWN_EOS_TOKENS: [&str; 4] = [EOS_TOKEN, "</s>", "<|end_of_text|>", "<eos>"];

/// A loaded tokenizer with its end-of-text id.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    eos_id: u32,
    path: PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("path", &self.path)
            .field("eos_id", &self.eos_id)
            .finish()
    }
}

impl TextTokenizer {
    /// Loads a `tokenizer.json`; the end-of-text token must be one of `<|endoftext|>`, `</s>`,
    /// `<|end_of_text|>` or `<eos>`.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] naming the file when it cannot be parsed or has no end-of-text token.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::Tokenizer {
                path: path.to_owned(),
                message: "file not found".into(),
            });
        }
        let inner = Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
            path: path.to_owned(),
            message: format!("not a tokenizer.json: {e}"),
        })?;
        check_dense_ids(&inner).map_err(|message| Error::Tokenizer {
            path: path.to_owned(),
            message,
        })?;
        let eos_id = KNOWN_EOS_TOKENS
            .iter()
            .find_map(|t| inner.token_to_id(t))
            .ok_or_else(|| Error::Tokenizer {
                path: path.to_owned(),
                message: format!(
                    "no end-of-text token; expected one of {}",
                    KNOWN_EOS_TOKENS.join(", ")
                ),
            })?;
        Ok(Self {
            inner,
            eos_id,
            path: path.to_owned(),
        })
    }

    /// Token ids of `text`, without special tokens.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if the tokenizer rejects the text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer {
                path: self.path.clone(),
                message: format!("encoding failed: {e}"),
            })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of token ids (for generation and inspection).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if an id is outside the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| Error::Tokenizer {
            path: self.path.clone(),
            message: format!("decoding failed: {e}"),
        })
    }

    /// Vocabulary size, special tokens included.
    pub fn vocab_size(&self) -> u32 {
        self.inner.get_vocab_size(true) as u32
    }

    /// Id of the end-of-text token.
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }
}

/// Trains a byte-level BPE (GPT-2 style pre-tokenization, no normalizer) and saves it to `out`.
///
/// `<|endoftext|>` is the first special token, so its id is 0. Training is deterministic for a
/// given sample order.
///
/// # Errors
/// [`Error::Tokenizer`] when training or saving fails.
pub fn train_byte_level_bpe(texts: &[String], vocab_size: u32, out: &Path) -> Result<()> {
    let err = |message: String| Error::Tokenizer {
        path: out.to_owned(),
        message,
    };
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size as usize)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOS_TOKEN, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
        .with_post_processor(Some(ByteLevel::default()))
        .with_decoder(Some(ByteLevel::default()))
        .build()
        .map_err(|e| err(format!("building the tokenizer: {e}")))?;
    tokenizer
        .train(&mut trainer, texts.iter())
        .map_err(|e| err(format!("training: {e}")))?;
    let json = tokenizer
        .to_string(false)
        .map_err(|e| err(format!("saving: {e}")))?;
    mixlab_artefacts::atomic::write_atomic(out, json.as_bytes())?;
    Ok(())
}

/// Checks that the token ids are exactly 0..n (the model's embedding rows), each used once.
fn check_dense_ids(tokenizer: &Tokenizer) -> std::result::Result<(), String> {
    let vocab = tokenizer.get_vocab(true);
    let mut seen = vec![false; vocab.len()];
    for (token, &id) in &vocab {
        match seen.get_mut(id as usize) {
            Some(used) if !*used => *used = true,
            _ => {
                return Err(format!(
                    "token {token:?} has id {id}; mixlab needs the ids 0..{} each used once (the model has one embedding row per id)",
                    vocab.len()
                ));
            }
        }
    }
    Ok(())
}
