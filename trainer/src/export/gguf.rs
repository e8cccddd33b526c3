//! int4 export in GGUF's container with `Q4_0` blocks, and the loader that runs inference from it.
//!
//! GGUF (version 3, ggml's file format) holds typed metadata and named tensors; `Q4_0` is its
//! block of 32 int4 weights with one f16 scale: `d` (2 bytes), then 16 bytes whose low nibbles
//! are weights 0–15 and high nibbles weights 16–31, each stored as `q + 8`. That is exactly
//! [`crate::downstream::quant`]'s rounding at group size 32, so the file reads back to the fake-quantized
//! model bit for bit. Weight matrices and the embedding are `Q4_0` with `ne0` the input
//! features; norms are `F32`. Tensor names and metadata keys follow llama.cpp's Llama convention
//! (`token_embd.weight`, `blk.N.attn_q.weight`, `llama.block_count`, …), but the file is not a
//! llama.cpp model: it carries no tokenizer, and q/k are not permuted to llama.cpp's rotary layout.
//!
//! Written by hand: the `gguf` crates on crates.io read files only, or pull in a tensor runtime.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use burn::tensor::Device;
use half::f16;

use crate::config::ModelConfig;
use crate::downstream::quant::quantize_group;
use crate::error::{Error, Result};
use crate::export::named::{self, Exported, Names};
use crate::model::Model;

const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
const ALIGNMENT: u64 = 32;
/// Weights per `Q4_0` block.
pub const BLOCK: usize = 32;
const TYPE_F32: u32 = 0;
const TYPE_Q4_0: u32 = 2;
const VALUE_U32: u32 = 4;
const VALUE_F32: u32 = 6;
const VALUE_STRING: u32 = 8;

/// A tensor's bytes as stored, and its ggml type.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    kind: u32,
    bytes: Vec<u8>,
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

/// Packs rows of `BLOCK`-multiple length into `Q4_0` blocks.
fn pack_q4_0(rows: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() / BLOCK * 18);
    for block in rows.chunks(BLOCK) {
        let group = quantize_group(block);
        out.extend_from_slice(&group.scale.to_le_bytes());
        let stored: Vec<u8> = group.values.iter().map(|&q| (q + 8) as u8).collect();
        out.extend((0..BLOCK / 2).map(|j| stored[j] | (stored[j + BLOCK / 2] << 4)));
    }
    out
}

/// Reads `Q4_0` blocks back to values.
fn unpack_q4_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / 18 * BLOCK);
    for block in bytes.chunks(18) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let qs = &block[2..];
        let value = |nibble: u8| f32::from(nibble as i8 - 8) * d;
        out.extend(qs.iter().map(|b| value(b & 0x0f)));
        out.extend(qs.iter().map(|b| value(b >> 4)));
    }
    out
}

/// Writes `model` (of `shape`) as int4 GGUF to `path` (atomically) and returns its size in bytes.
///
/// # Example
/// ```
/// use burn::tensor::Device;
/// use mixlab_trainer::config::Preset;
/// use mixlab_trainer::export::gguf::{read_q4_0, write_q4_0};
/// use mixlab_trainer::model::Model;
/// let shape = Preset::Tiny.config(64);
/// let model = Model::new(&shape, &Device::flex());
/// let dir = tempfile::tempdir()?;
/// let bytes = write_q4_0(&model, &shape, &dir.path().join("m.gguf"))?;
/// // 4.5 bits a weight: about a seventh of the f32 parameters.
/// assert!((bytes as f64) < 0.16 * 4.0 * shape.parameter_count() as f64);
/// let back = read_q4_0(&shape, &dir.path().join("m.gguf"), &Device::flex())?;
/// # let _ = back;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Error::Config`] when a dimension is not a multiple of 32 or a parameter has no GGUF name;
/// [`Error::Checkpoint`] naming the file when it cannot be written.
pub fn write_q4_0(model: &Model, shape: &ModelConfig, path: &Path) -> Result<u64> {
    let mut tensors = Vec::new();
    for (burn_path, Exported { dims, values }) in named::parameters(model) {
        let name = NAMES
            .external(&burn_path)
            .ok_or_else(|| Error::Config(format!("no GGUF name for parameter {burn_path}")))?;
        let stored = if dims.len() == 2 {
            if dims[1] % BLOCK != 0 {
                return Err(Error::Config(format!(
                    "{name}: {} input features are not a multiple of {BLOCK} (Q4_0 blocks)",
                    dims[1]
                )));
            }
            Stored {
                kind: TYPE_Q4_0,
                bytes: pack_q4_0(&values),
            }
        } else {
            Stored {
                kind: TYPE_F32,
                bytes: values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            }
        };
        // GGUF lists ne0 (the innermost, contiguous dimension) first.
        let ne: Vec<u64> = dims.iter().rev().map(|&d| d as u64).collect();
        tensors.push((name, ne, stored));
    }
    let bytes = encode(&metadata(shape), &tensors);
    mixlab_artefacts::atomic::write_atomic(path, &bytes)?;
    Ok(bytes.len() as u64)
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    U32(u32),
    F32(f32),
    Str(String),
}

/// llama.cpp's Llama keys for the model's shape.
fn metadata(shape: &ModelConfig) -> Vec<(String, Value)> {
    let u = |v: usize| Value::U32(v as u32);
    vec![
        ("general.architecture".into(), Value::Str("llama".into())),
        ("general.name".into(), Value::Str("mixlab".into())),
        ("general.alignment".into(), Value::U32(ALIGNMENT as u32)),
        ("llama.vocab_size".into(), u(shape.vocab_size)),
        ("llama.context_length".into(), u(shape.max_seq_len)),
        ("llama.embedding_length".into(), u(shape.d_model)),
        ("llama.block_count".into(), u(shape.n_layers)),
        ("llama.feed_forward_length".into(), u(shape.ffn_hidden)),
        ("llama.attention.head_count".into(), u(shape.n_heads)),
        ("llama.attention.head_count_kv".into(), u(shape.n_kv_heads)),
        (
            "llama.rope.freq_base".into(),
            Value::F32(shape.rope_theta as f32),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(shape.norm_eps as f32),
        ),
    ]
}

/// The whole file: header, metadata, tensor infos, aligned data.
fn encode(metadata: &[(String, Value)], tensors: &[(String, Vec<u64>, Stored)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    for (key, value) in metadata {
        string(&mut out, key);
        match value {
            Value::U32(v) => {
                out.extend_from_slice(&VALUE_U32.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::F32(v) => {
                out.extend_from_slice(&VALUE_F32.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::Str(v) => {
                out.extend_from_slice(&VALUE_STRING.to_le_bytes());
                string(&mut out, v);
            }
        }
    }
    let mut offset = 0u64;
    let mut data = Vec::new();
    for (name, ne, stored) in tensors {
        string(&mut out, name);
        out.extend_from_slice(&(ne.len() as u32).to_le_bytes());
        ne.iter()
            .for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
        out.extend_from_slice(&stored.kind.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        data.extend_from_slice(&stored.bytes);
        data.resize(data.len().next_multiple_of(ALIGNMENT as usize), 0);
        offset = data.len() as u64;
    }
    out.resize(out.len().next_multiple_of(ALIGNMENT as usize), 0);
    out.extend_from_slice(&data);
    out
}

/// Reads a GGUF file written by [`write_q4_0`] into a model of `shape` on `device`.
///
/// # Errors
/// [`Error::Checkpoint`] naming the file for a bad magic or version, an unknown value or tensor
/// type, a truncated file, or tensors that do not fit `shape`.
pub fn read_q4_0(shape: &ModelConfig, path: &Path, device: &Device) -> Result<Model> {
    let bytes = fs_err::read(path)?;
    let bad = |message: String| Error::Checkpoint {
        path: path.to_owned(),
        message,
    };
    let tensors = decode(&bytes).map_err(|e| bad(format!("not a mixlab GGUF file: {e}")))?;
    let by_path = tensors
        .into_iter()
        .filter_map(|(name, (ne, values))| {
            // GGUF lists ne0 (the innermost dimension) first.
            let dims = ne.iter().rev().map(|&d| d as usize).collect();
            Some((NAMES.internal(&name)?, Exported { dims, values }))
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

/// Tensors by GGUF name: dimensions (`ne0` first) and values read back to f32.
type Tensors = BTreeMap<String, (Vec<u64>, Vec<f32>)>;

/// Named tensors of a GGUF file, values read back to f32 in stored (`ne0`-innermost) order.
fn decode(bytes: &[u8]) -> std::io::Result<Tensors> {
    let mut r = bytes;
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    let version = read_u32(&mut r)?;
    if &magic != MAGIC || version != VERSION {
        return Err(invalid(format!(
            "magic {magic:?} version {version}; expected GGUF 3"
        )));
    }
    let (n_tensors, n_kv) = (read_u64(&mut r)?, read_u64(&mut r)?);
    for _ in 0..n_kv {
        read_string(&mut r)?;
        match read_u32(&mut r)? {
            VALUE_U32 | VALUE_F32 => {
                read_u32(&mut r)?;
            }
            VALUE_STRING => {
                read_string(&mut r)?;
            }
            other => return Err(invalid(format!("metadata value type {other}"))),
        }
    }
    let mut infos = Vec::new();
    for _ in 0..n_tensors.min(1 << 20) {
        let name = read_string(&mut r)?;
        let n_dims = read_u32(&mut r)?.min(4);
        let ne: Vec<u64> = (0..n_dims)
            .map(|_| read_u64(&mut r))
            .collect::<std::io::Result<_>>()?;
        let (kind, offset) = (read_u32(&mut r)?, read_u64(&mut r)?);
        infos.push((name, ne, kind, offset));
    }
    let header = bytes.len() - r.len();
    let data_start = header.next_multiple_of(ALIGNMENT as usize);
    let mut out = BTreeMap::new();
    for (name, ne, kind, offset) in infos {
        let count = ne.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let count = count.ok_or_else(|| invalid(format!("{name}: dimensions overflow")))? as usize;
        let size = match kind {
            TYPE_F32 => count.checked_mul(4),
            TYPE_Q4_0 if count.is_multiple_of(BLOCK) => Some(count / BLOCK * 18),
            _ => None,
        }
        .ok_or_else(|| invalid(format!("{name}: tensor type {kind} with {count} values")))?;
        let start = data_start.saturating_add(offset as usize);
        let raw = bytes
            .get(start..start.saturating_add(size))
            .ok_or_else(|| invalid(format!("{name}: data beyond the end of the file")))?;
        let values = if kind == TYPE_F32 {
            raw.chunks(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            unpack_q4_0(raw)
        };
        out.insert(name, (ne, values));
    }
    Ok(out)
}

fn read_u32(r: &mut &[u8]) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut &[u8]) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_string(r: &mut &[u8]) -> std::io::Result<String> {
    let len = read_u64(r)?;
    let len = usize::try_from(len).ok().filter(|&l| l <= r.len());
    let len = len.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
    let (s, rest) = r.split_at(len);
    *r = rest;
    Ok(String::from_utf8_lossy(s).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use crate::data::sampler::MixtureSampler;
    use crate::data::store::DomainDocs;
    use crate::downstream::quant::{QuantConfig, fake_quantize};
    use crate::inference::Inference;

    #[test]
    fn blocks_hold_the_scale_then_low_and_high_nibbles() {
        let _rng = crate::test_rng::lock();
        let values: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) / 2.0).collect();
        let packed = pack_q4_0(&values);
        assert_eq!(packed.len(), 18);
        // The extreme is −8 → q = −8, stored 0; d = −8 / −8 = 1.
        assert_eq!(f16::from_le_bytes([packed[0], packed[1]]).to_f32(), 1.0);
        // Weight 0 (−8 → stored 0) in the low nibble, weight 16 (0 → stored 8) in the high one.
        assert_eq!(packed[2], 0x80);
        assert_eq!(
            unpack_q4_0(&packed),
            crate::downstream::quant::fake_quantize_rows(&values, 32)
        );
    }

    #[test]
    fn the_file_reads_back_to_the_fake_quantized_model_at_a_seventh_of_f32() {
        let _rng = crate::test_rng::lock();
        let shape = Preset::Tiny.config(64);
        let device = Device::flex();
        let model = Model::new(&shape, &device);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        let size = write_q4_0(&model, &shape, &path).unwrap();
        let loaded = read_q4_0(&shape, &path, &device).unwrap();
        let rounded = fake_quantize(model, &shape, QuantConfig::default()).unwrap();
        let docs = vec![DomainDocs::from_tokens("a", vec![(1..60).collect()])];
        let batch = MixtureSampler::new(docs, vec![1.0], 24, 0, 0, false)
            .unwrap()
            .next_batch(2)
            .unwrap();
        let losses = |m: &Model| Inference::of_trained(m, &shape).token_losses(&batch, false);
        assert_eq!(losses(&loaded), losses(&rounded));
        // 4.5 bits a weight for the matrices; the norms stay f32.
        let weights = shape.parameter_count() as f64;
        assert!(
            (size as f64) < 0.16 * 4.0 * weights,
            "{size} bytes for {weights} weights"
        );
    }

    #[test]
    fn damaged_files_are_errors_naming_the_file() {
        let _rng = crate::test_rng::lock();
        let shape = Preset::Tiny.config(64);
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        write_q4_0(&Model::new(&shape, &device), &shape, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 3, 40, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = read_q4_0(&shape, &path, &device).unwrap_err().to_string();
            assert!(err.contains("model.gguf"), "cut {cut}: {err}");
        }
        std::fs::write(&path, &bytes).unwrap();
        let other = Preset::Tiny.config(128);
        let err = read_q4_0(&other, &path, &device).unwrap_err().to_string();
        assert!(err.contains("token_embd.weight"), "{err}");
    }
}
