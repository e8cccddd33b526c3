//! The tokenizer as llama.cpp reads it from GGUF: `tokenizer.ggml.*` for a byte-level BPE.
//!
//! llama.cpp's `gpt2` vocabulary type is byte-level BPE; its pre-tokenizer `gpt-2` splits text with
//! GPT-2's regex, which is what mixlab's tokenizers use (byte-level, no prefix space). Tokens are
//! written in the byte-level alphabet, merges as `"left right"` in rank order, special tokens as
//! `CONTROL` (never matched in plain text) and ids past the tokenizer's vocabulary, if the model
//! has more rows, as unused `[PAD{id}]`. There is no beginning-of-text token: the end-of-text id
//! serves as both, and llama.cpp is told not to add either.

use mixlab_ingest::tokenize::BpeTables;

use super::container::Value;
use crate::error::{Error, Result};

/// llama.cpp's token types (`llama_token_type`).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const UNUSED: i32 = 5;

/// A byte-level BPE and its end-of-text id, as written to GGUF.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    /// The tokenizer's tables.
    pub tables: BpeTables,
    /// The end-of-text id.
    pub eos_id: u32,
}

impl Vocab {
    /// The `tokenizer.ggml.*` keys for a model of `vocab_size` embedding rows.
    ///
    /// # Errors
    /// [`Error::Config`] when the model has fewer rows than the tokenizer has tokens.
    pub fn keys(&self, vocab_size: usize) -> Result<Vec<(String, Value)>> {
        let tokens = &self.tables.tokens;
        if vocab_size < tokens.len() {
            return Err(Error::Config(format!(
                "the model has {vocab_size} token rows but its tokenizer {} tokens",
                tokens.len()
            )));
        }
        let names = (0..vocab_size).map(|id| {
            Value::Str(
                tokens
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| format!("[PAD{id}]")),
            )
        });
        let types = (0..vocab_size).map(|id| match self.tables.special.get(id) {
            Some(true) => Value::I32(CONTROL),
            Some(false) => Value::I32(NORMAL),
            None => Value::I32(UNUSED),
        });
        let merges = self.tables.merges.iter();
        let merges = merges.map(|(left, right)| Value::Str(format!("{left} {right}")));
        let key = |k: &str| format!("tokenizer.ggml.{k}");
        Ok(vec![
            (key("model"), Value::Str("gpt2".into())),
            (key("pre"), Value::Str("gpt-2".into())),
            (key("tokens"), Value::Array(names.collect())),
            (key("token_type"), Value::Array(types.collect())),
            (key("merges"), Value::Array(merges.collect())),
            (key("bos_token_id"), Value::U32(self.eos_id)),
            (key("eos_token_id"), Value::U32(self.eos_id)),
            (key("padding_token_id"), Value::U32(self.eos_id)),
            (key("add_bos_token"), Value::Bool(false)),
            (key("add_eos_token"), Value::Bool(false)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocab {
        let tokens = ["<|endoftext|>", "a", "b", "Ġ", "Ġa", "ab"];
        Vocab {
            tables: BpeTables {
                tokens: tokens.map(String::from).to_vec(),
                special: vec![true, false, false, false, false, false],
                merges: vec![("Ġ".into(), "a".into()), ("a".into(), "b".into())],
            },
            eos_id: 0,
        }
    }

    #[test]
    fn tokens_types_and_merges_as_llama_cpp_reads_them() {
        let keys: std::collections::BTreeMap<_, _> = vocab().keys(8).unwrap().into_iter().collect();
        let Value::Array(tokens) = &keys["tokenizer.ggml.tokens"] else {
            panic!("tokens are an array")
        };
        assert_eq!(tokens.len(), 8);
        assert_eq!(tokens[4], Value::Str("Ġa".into()));
        assert_eq!(tokens[7], Value::Str("[PAD7]".into()));
        let types = &keys["tokenizer.ggml.token_type"];
        let expected = [3, 1, 1, 1, 1, 1, 5, 5].map(Value::I32).to_vec();
        assert_eq!(types, &Value::Array(expected));
        let merges = &keys["tokenizer.ggml.merges"];
        let expected = ["Ġ a", "a b"].map(|m| Value::Str(m.into())).to_vec();
        assert_eq!(merges, &Value::Array(expected));
        assert_eq!(keys["tokenizer.ggml.eos_token_id"], Value::U32(0));
        assert_eq!(keys["tokenizer.ggml.add_bos_token"], Value::Bool(false));
    }

    #[test]
    fn a_model_with_fewer_rows_than_tokens_is_refused() {
        let err = vocab().keys(5).unwrap_err().to_string();
        assert!(
            err.contains("5 token rows") && err.contains("6 tokens"),
            "{err}"
        );
    }
}
