//! The tokenizer stage: load a Hugging Face `tokenizer.json`, or train a byte-level BPE on a sample.
//!
//! Whatever its origin, the tokenizer is saved as `tokenizer.json` next to the shards and its SHA-256
//! goes into the manifest, so token ids are never read with a different vocabulary.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenizers::models::ModelWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
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

    /// The tables of a byte-level BPE with GPT-2's pre-tokenization (the tokenizers mixlab
    /// trains), as a runtime that rebuilds the tokenizer from its parts needs them (llama.cpp's
    /// `gpt2` vocabulary in GGUF).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] naming the file for any other kind of tokenizer: another model than
    /// BPE, a normalizer, a pre-tokenizer other than byte-level with GPT-2's regex and no prefix
    /// space, or BPE options (subword prefixes, byte fallback, dropout, ignored merges) that such a
    /// runtime would not reproduce.
    ///
    /// # Example
    /// ```
    /// use mixlab_ingest::tokenize::{TextTokenizer, train_byte_level_bpe};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("tokenizer.json");
    /// let texts = vec!["the cat sat on the mat, the end".to_string(); 4];
    /// train_byte_level_bpe(&texts, 300, &path)?;
    /// let tables = TextTokenizer::load(&path)?.byte_level_bpe()?;
    /// assert_eq!(tables.tokens[0], "<|endoftext|>");
    /// assert!(tables.special[0] && !tables.special[1]);
    /// // " the" is a merge of the byte-level "Ġ" (space) with "t", then "h", then "e".
    /// assert!(tables.tokens.iter().any(|t| t == "Ġthe"));
    /// assert_eq!(tables.tokens.len(), 256 + 1 + tables.merges.len());
    /// # Ok::<(), mixlab_ingest::Error>(())
    /// ```
    pub fn byte_level_bpe(&self) -> Result<BpeTables> {
        let refuse = |what: &str| Error::Tokenizer {
            path: self.path.clone(),
            message: format!("{what}; expected a byte-level BPE with GPT-2's pre-tokenization"),
        };
        if self.inner.get_normalizer().is_some() {
            return Err(refuse("it has a normalizer"));
        }
        match self.inner.get_pre_tokenizer() {
            Some(PreTokenizerWrapper::ByteLevel(b)) if b.use_regex && !b.add_prefix_space => {}
            _ => {
                return Err(refuse(
                    "its pre-tokenizer is not byte-level without a prefix space",
                ));
            }
        }
        let ModelWrapper::BPE(bpe) = self.inner.get_model() else {
            return Err(refuse("its model is not BPE"));
        };
        let options: BpeOptions = serde_json::to_value(bpe)
            .and_then(serde_json::from_value)
            .map_err(|e| refuse(&format!("its BPE model does not serialize: {e}")))?;
        if !options.is_plain() {
            return Err(refuse(
                "its BPE has a subword prefix or suffix, byte fallback, dropout or ignores merges",
            ));
        }
        let added = self.inner.get_added_tokens_decoder();
        let ids = 0..self.vocab_size();
        let tokens = ids
            .clone()
            .map(|id| self.inner.id_to_token(id).unwrap_or_default());
        Ok(BpeTables {
            tokens: tokens.collect(),
            special: ids
                .map(|id| added.get(&id).is_some_and(|t| t.special))
                .collect(),
            merges: options.merges,
        })
    }
}

/// A byte-level BPE's parts: what [`TextTokenizer::byte_level_bpe`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpeTables {
    /// Token strings by id, in the byte-level alphabet (`Ġ` stands for a space byte); special
    /// tokens as written (`<|endoftext|>`).
    pub tokens: Vec<String>,
    /// Whether each id is a special token (never produced from text).
    pub special: Vec<bool>,
    /// The merges in rank order (the first merge applies first).
    pub merges: Vec<(String, String)>,
}

/// The BPE options that change how text is split, and the merges, from the model's serialized
/// form (the merges have no accessor in `tokenizers`).
#[derive(Deserialize)]
struct BpeOptions {
    dropout: Option<f32>,
    continuing_subword_prefix: Option<String>,
    end_of_word_suffix: Option<String>,
    byte_fallback: bool,
    ignore_merges: bool,
    merges: Vec<(String, String)>,
}

impl BpeOptions {
    /// Plain BPE: every merge applies, in rank order, to bytes alone.
    fn is_plain(&self) -> bool {
        self.dropout.is_none()
            && self.continuing_subword_prefix.is_none()
            && self.end_of_word_suffix.is_none()
            && !self.byte_fallback
            && !self.ignore_merges
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
