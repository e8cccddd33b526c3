//! Export to GGUF (version 3, llama.cpp's file format) that llama.cpp loads and runs, and the
//! loader that runs mixlab's inference from such a file.
//!
//! The file is llama.cpp's `llama` architecture: tensor names and shape keys as its converter
//! writes them (`token_embd.weight`, `blk.N.attn_q.weight`, `llama.block_count`, …); weight
//! matrices and the embedding as F32, F16 or [`q4_0`] with `ne0` the input features, norms F32;
//! the output layer tied to the embedding (no `output.weight`, which llama.cpp then shares); q and
//! k rows in llama.cpp's [`rotary`] layout; the tokenizer as `tokenizer.ggml.*` ([`vocab`]); the
//! run's [`Provenance`] under `mixlab.*`.
//!
//! Local attention: llama.cpp's `llama` architecture has no sliding windows (only architectures
//! with other blocks or extra tensors do), so the window and the global layers are recorded under
//! `mixlab.attention.*` and llama.cpp attends globally in every layer: identical to mixlab for
//! contexts within the window, different beyond it.

pub mod container;
pub mod q4_0;
pub mod rotary;
pub mod vocab;

use std::borrow::Cow;
use std::path::Path;

use burn::tensor::Device;

use self::container::{StoredTensor, TensorType, Value};
use self::vocab::Vocab;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::export::named::{self, Exported, Names};
use crate::export::provenance::Provenance;
use crate::model::Model;

pub use self::q4_0::BLOCK;

/// How weight matrices and the embedding are stored (norms are always F32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats: the weights exactly.
    F32,
    /// Half floats.
    F16,
    /// ggml's int4 blocks of 32 (the rounding of `mixlab quantize` at group size 32).
    Q4_0,
}

impl Precision {
    /// Lower-case name, as in file names (`model-f16.gguf`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q4_0 => "q4_0",
        }
    }

    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_ALL_F32`, `MOSTLY_F16`, `MOSTLY_Q4_0`).
    fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
        }
    }

    fn matrix_type(self) -> TensorType {
        match self {
            Self::F32 => TensorType::F32,
            Self::F16 => TensorType::F16,
            Self::Q4_0 => TensorType::Q4_0,
        }
    }
}

/// What a GGUF file carries besides the weights and their shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// The tokenizer the model was trained with.
    pub vocab: Vocab,
    /// The run behind the weights.
    pub provenance: Provenance,
}

/// Per-layer parameters: burn's path below `layers.N.` and llama.cpp's name below `blk.N.`.
const LAYER_NAMES: [(&str, &str); 9] = [
    ("attn_norm.gamma", "attn_norm.weight"),
    ("ffn_norm.gamma", "ffn_norm.weight"),
    ("attention.wq.weight", "attn_q.weight"),
    ("attention.wk.weight", "attn_k.weight"),
    ("attention.wv.weight", "attn_v.weight"),
    ("attention.wo.weight", "attn_output.weight"),
    ("ffn.w1.weight", "ffn_gate.weight"),
    ("ffn.w3.weight", "ffn_up.weight"),
    ("ffn.w2.weight", "ffn_down.weight"),
];

/// Parameters outside the layers: burn's path and llama.cpp's name.
const MODEL_NAMES: [(&str, &str); 2] = [
    ("embedding.weight", "token_embd.weight"),
    ("norm.gamma", "output_norm.weight"),
];

/// llama.cpp's names.
const NAMES: Names = Names {
    model: &MODEL_NAMES,
    layer: &LAYER_NAMES,
    prefix: "blk.",
};

/// Writes `model` (of `shape`) as GGUF at `precision` to `path` (atomically) with `metadata`;
/// returns the file's size in bytes.
///
/// # Example
/// ```
/// use burn::tensor::Device;
/// use mixlab_ingest::tokenize::BpeTables;
/// use mixlab_trainer::config::Preset;
/// use mixlab_trainer::export::gguf::vocab::Vocab;
/// use mixlab_trainer::export::gguf::{Metadata, Precision, read, write};
/// use mixlab_trainer::export::provenance::Provenance;
/// use mixlab_trainer::model::Model;
/// let shape = Preset::Tiny.config(64);
/// let model = Model::new(&shape, &Device::flex());
/// let tokens = (0..64).map(|i| format!("t{i}")).collect();
/// let metadata = Metadata {
///     vocab: Vocab {
///         tables: BpeTables { tokens, special: vec![false; 64], merges: Vec::new() },
///         eos_id: 0,
///     },
///     provenance: Provenance {
///         run_hash: "r".into(),
///         mixture_sha256: "m".into(),
///         tokenizer_sha256: "t".into(),
///         step: 0,
///     },
/// };
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("m.gguf");
/// let bytes = write(&model, &shape, Precision::Q4_0, &metadata, &path)?;
/// // 4.5 bits a weight: about a seventh of the f32 parameters.
/// assert!((bytes as f64) < 0.16 * 4.0 * shape.parameter_count() as f64);
/// let back = read(&shape, &path, &Device::flex())?;
/// # let _ = back;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Error::Config`] when a dimension is not a multiple of 32 for `Q4_0`, a parameter has no GGUF
/// name or the tokenizer has more tokens than the model rows; [`Error::Checkpoint`] naming the
/// file when it cannot be written.
pub fn write(
    model: &Model,
    shape: &ModelConfig,
    precision: Precision,
    metadata: &Metadata,
    path: &Path,
) -> Result<u64> {
    let tensors = named::parameters(model)
        .into_iter()
        .map(|(burn_path, exported)| stored(shape, precision, &burn_path, exported))
        .collect::<Result<Vec<_>>>()?;
    let mut keys = shape_keys(shape, precision);
    keys.extend(metadata.vocab.keys(shape.vocab_size)?);
    keys.extend(provenance_keys(shape, &metadata.provenance));
    let bytes = container::encode(&keys, &tensors);
    mixlab_artefacts::atomic::write_atomic(path, &bytes)?;
    Ok(bytes.len() as u64)
}

/// One parameter as stored: llama.cpp's name, rotary layout and tensor type.
fn stored(
    shape: &ModelConfig,
    precision: Precision,
    burn_path: &str,
    Exported { dims, values }: Exported,
) -> Result<StoredTensor<'static>> {
    let name = NAMES
        .external(burn_path)
        .ok_or_else(|| Error::Config(format!("no GGUF name for parameter {burn_path}")))?;
    // GGUF lists ne0 (the innermost, contiguous dimension) first.
    let ne: Vec<u64> = dims.iter().rev().map(|&d| d as u64).collect();
    let (kind, values) = match dims[..] {
        [_, row_len] if precision == Precision::Q4_0 && row_len % BLOCK != 0 => {
            return Err(Error::Config(format!(
                "{name}: {row_len} input features are not a multiple of {BLOCK} (Q4_0 blocks)"
            )));
        }
        [_, row_len] if is_rotated(&name) => (
            precision.matrix_type(),
            rotary::to_llama_cpp(&values, row_len, shape.head_dim()),
        ),
        [_, _] => (precision.matrix_type(), values),
        _ => (TensorType::F32, values),
    };
    let bytes = Cow::Owned(kind.encode(&values));
    Ok(StoredTensor {
        name,
        ne,
        kind,
        bytes,
    })
}

/// q and k, whose rows llama.cpp's rotary embedding expects in its own order.
fn is_rotated(gguf_name: &str) -> bool {
    gguf_name.ends_with("attn_q.weight") || gguf_name.ends_with("attn_k.weight")
}

/// llama.cpp's Llama keys for the model's shape and the file's precision.
fn shape_keys(shape: &ModelConfig, precision: Precision) -> Vec<(String, Value)> {
    let u = |v: usize| Value::U32(v as u32);
    let mut keys = vec![
        ("general.architecture", Value::Str("llama".into())),
        ("general.name", Value::Str("mixlab".into())),
        ("general.alignment", u(container::ALIGNMENT)),
        ("general.file_type", Value::U32(precision.file_type())),
        ("llama.vocab_size", u(shape.vocab_size)),
        ("llama.context_length", u(shape.max_seq_len)),
        ("llama.embedding_length", u(shape.d_model)),
        ("llama.block_count", u(shape.n_layers)),
        ("llama.feed_forward_length", u(shape.ffn_hidden)),
        ("llama.attention.head_count", u(shape.n_heads)),
        ("llama.attention.head_count_kv", u(shape.n_kv_heads)),
        ("llama.rope.dimension_count", u(shape.head_dim())),
        ("llama.rope.freq_base", Value::F32(shape.rope_theta as f32)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(shape.norm_eps as f32),
        ),
    ];
    if precision == Precision::Q4_0 {
        // ggml's current quantization format version (`GGML_QNT_VERSION`).
        keys.push(("general.quantization_version", Value::U32(2)));
        let by = format!("mixlab {}", env!("CARGO_PKG_VERSION"));
        keys.push(("general.quantized_by", Value::Str(by)));
    }
    keys.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// `general.*` provenance and the `mixlab.*` keys: the run, and the attention windows that
/// llama.cpp's Llama graph does not apply.
fn provenance_keys(shape: &ModelConfig, provenance: &Provenance) -> Vec<(String, Value)> {
    let version = env!("CARGO_PKG_VERSION");
    let description = format!(
        "Trained by mixlab {version}. Local layers attend to {} tokens in mixlab; llama.cpp's \
         llama architecture attends globally, identical within that window.",
        shape.window
    );
    let mut keys = vec![
        ("general.description".to_owned(), Value::Str(description)),
        (
            "mixlab.attention.window".to_owned(),
            Value::U32(shape.window as u32),
        ),
        (
            "mixlab.attention.global_layers".to_owned(),
            Value::Array(
                shape
                    .global_layer_flags()
                    .into_iter()
                    .map(Value::Bool)
                    .collect(),
            ),
        ),
    ];
    keys.extend(
        provenance
            .entries()
            .into_iter()
            .map(|(k, v)| (format!("mixlab.{k}"), Value::Str(v))),
    );
    keys
}

/// Reads a GGUF file written by [`write`] (or by mixlab before the tokenizer and rotary layout
/// were added: such files keep mixlab's row order) into a model of `shape` on `device`.
///
/// # Errors
/// [`Error::Checkpoint`] naming the file for a bad magic or version, an unknown value or tensor
/// type, a truncated file, or tensors that do not fit `shape`.
pub fn read(shape: &ModelConfig, path: &Path, device: &Device) -> Result<Model> {
    let bytes = fs_err::read(path)?;
    let bad = |message: String| Error::Checkpoint {
        path: path.to_owned(),
        message,
    };
    let file = container::decode(&bytes).map_err(|e| bad(format!("not a GGUF file: {e}")))?;
    let llama_cpp_layout = file.metadata.contains_key("tokenizer.ggml.model");
    let by_path = file
        .tensors
        .into_values()
        .filter_map(|tensor| {
            let internal = NAMES.internal(&tensor.name)?;
            Some((internal, exported(shape, tensor, llama_cpp_layout)))
        })
        .collect();
    named::model_from(shape, device, by_path).map_err(|missing| {
        let names: Vec<String> = missing.iter().filter_map(|p| NAMES.external(p)).collect();
        bad(format!(
            "tensors missing or of another shape: {}",
            names.join(", ")
        ))
    })
}

/// A stored tensor's values in mixlab's layout.
fn exported(shape: &ModelConfig, tensor: StoredTensor<'_>, llama_cpp_layout: bool) -> Exported {
    let values = tensor.kind.decode(&tensor.bytes);
    let row_len = tensor.ne.first().map_or(1, |&n| n as usize);
    let rotated = llama_cpp_layout && tensor.ne.len() == 2 && is_rotated(&tensor.name);
    let whole_heads = row_len > 0
        && shape.head_dim() > 0
        && (values.len() / row_len).is_multiple_of(shape.head_dim());
    let values = if rotated && whole_heads {
        rotary::from_llama_cpp(&values, row_len, shape.head_dim())
    } else {
        values
    };
    Exported {
        dims: tensor.ne.iter().rev().map(|&d| d as usize).collect(),
        values,
    }
}

#[cfg(test)]
mod tests {
    use mixlab_ingest::tokenize::BpeTables;

    use super::*;
    use crate::config::Preset;
    use crate::data::sampler::MixtureSampler;
    use crate::data::store::DomainDocs;
    use crate::downstream::quant::{QuantConfig, fake_quantize};
    use crate::inference::Inference;

    fn metadata(vocab_size: usize) -> Metadata {
        let tokens = (0..vocab_size).map(|i| format!("t{i}")).collect();
        Metadata {
            vocab: Vocab {
                tables: BpeTables {
                    tokens,
                    special: vec![false; vocab_size],
                    merges: vec![("t1".into(), "t2".into())],
                },
                eos_id: 0,
            },
            provenance: Provenance {
                run_hash: "run".into(),
                mixture_sha256: "mixture".into(),
                tokenizer_sha256: "tokenizer".into(),
                step: 3,
            },
        }
    }

    fn losses(model: &Model, shape: &ModelConfig) -> Vec<f32> {
        let docs = vec![DomainDocs::from_tokens("a", vec![(1..60).collect()])];
        let batch = MixtureSampler::new(docs, vec![1.0], 24, 0, 0, false)
            .unwrap()
            .next_batch(2)
            .unwrap();
        Inference::of_trained(model, shape).token_losses(&batch, false)
    }

    #[test]
    fn int4_reads_back_to_the_fake_quantized_model_at_a_seventh_of_f32() {
        let _rng = crate::test_rng::lock();
        let shape = Preset::Tiny.config(64);
        let device = Device::flex();
        let model = Model::new(&shape, &device);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        let size = write(&model, &shape, Precision::Q4_0, &metadata(64), &path).unwrap();
        let loaded = read(&shape, &path, &device).unwrap();
        let rounded = fake_quantize(model, &shape, QuantConfig::default()).unwrap();
        assert_eq!(losses(&loaded, &shape), losses(&rounded, &shape));
        // 4.5 bits a weight for the matrices; the norms stay f32.
        let weights = shape.parameter_count() as f64;
        assert!(
            (size as f64) < 0.16 * 4.0 * weights,
            "{size} bytes for {weights} weights"
        );
    }

    #[test]
    fn full_precision_files_hold_q_and_k_in_llama_cpp_order_and_read_back() {
        let _rng = crate::test_rng::lock();
        let shape = Preset::Tiny.config(64);
        let device = Device::flex();
        let model = Model::new(&shape, &device);
        let dir = tempfile::tempdir().unwrap();
        let f32_path = dir.path().join("f32.gguf");
        write(&model, &shape, Precision::F32, &metadata(64), &f32_path).unwrap();
        assert_eq!(
            losses(&read(&shape, &f32_path, &device).unwrap(), &shape),
            losses(&model, &shape)
        );
        let bytes = std::fs::read(&f32_path).unwrap();
        let file = container::decode(&bytes).unwrap();
        let params: std::collections::BTreeMap<_, _> =
            named::parameters(&model).into_iter().collect();
        for (ours, theirs) in [("wq", "attn_q"), ("wk", "attn_k"), ("wv", "attn_v")] {
            let original = &params[&format!("layers.1.attention.{ours}.weight")];
            let stored = &file.tensors[&format!("blk.1.{theirs}.weight")];
            let values = exported(&shape, stored.clone(), false).values;
            let expected = if ours == "wv" {
                original.values.clone()
            } else {
                rotary::to_llama_cpp(&original.values, shape.d_model, shape.head_dim())
            };
            assert_eq!(values, expected, "{theirs}");
        }
        assert_eq!(file.metadata["general.file_type"], Value::U32(0));
        assert_eq!(file.metadata["mixlab.step"], Value::Str("3".into()));

        let f16_path = dir.path().join("f16.gguf");
        let f16_size = write(&model, &shape, Precision::F16, &metadata(64), &f16_path).unwrap();
        let from_f16 = losses(&read(&shape, &f16_path, &device).unwrap(), &shape);
        for (a, b) in from_f16.iter().zip(losses(&model, &shape)) {
            assert!((a - b).abs() < 1e-2, "{a} vs {b}");
        }
        let f32_size = std::fs::metadata(&f32_path).unwrap().len();
        assert!(f16_size * 10 < f32_size * 6, "{f16_size} vs {f32_size}");
    }

    #[test]
    fn damaged_files_are_errors_naming_the_file() {
        let _rng = crate::test_rng::lock();
        let shape = Preset::Tiny.config(64);
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        let model = Model::new(&shape, &device);
        write(&model, &shape, Precision::Q4_0, &metadata(64), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 3, 40, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = read(&shape, &path, &device).unwrap_err().to_string();
            assert!(err.contains("model.gguf"), "cut {cut}: {err}");
        }
        std::fs::write(&path, &bytes).unwrap();
        let other = Preset::Tiny.config(128);
        let err = read(&other, &path, &device).unwrap_err().to_string();
        assert!(err.contains("token_embd.weight"), "{err}");
    }
}
