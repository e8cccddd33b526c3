//! Full-precision export in Hugging Face's Llama layout: `model.safetensors` with
//! `LlamaForCausalLM` tensor names (`model.layers.N.self_attn.q_proj.weight`, …; weights
//! `[out, in]`, f32) and the `config.json` keys that describe the shape, so the weights load
//! outside mixlab. Rotary embeddings already use Hugging Face's `rotate_half` convention, so q and
//! k need no permutation. The output layer is tied to the embedding (`tie_word_embeddings`).
//! mixlab's local attention windows have no Llama equivalent: `config.json` records them under
//! `mixlab_*` keys, and a plain Llama loader attends globally in every layer.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::export::named::{self, Exported, Names};
use crate::export::provenance::Provenance;
use crate::model::Model;

/// Per-layer parameters: burn's path below `layers.N.` and Hugging Face's below `model.layers.N.`.
const LAYER_NAMES: [(&str, &str); 9] = [
    ("attn_norm.gamma", "input_layernorm.weight"),
    ("ffn_norm.gamma", "post_attention_layernorm.weight"),
    ("attention.wq.weight", "self_attn.q_proj.weight"),
    ("attention.wk.weight", "self_attn.k_proj.weight"),
    ("attention.wv.weight", "self_attn.v_proj.weight"),
    ("attention.wo.weight", "self_attn.o_proj.weight"),
    ("ffn.w1.weight", "mlp.gate_proj.weight"),
    ("ffn.w3.weight", "mlp.up_proj.weight"),
    ("ffn.w2.weight", "mlp.down_proj.weight"),
];

/// Parameters outside the layers.
const MODEL_NAMES: [(&str, &str); 2] = [
    ("embedding.weight", "model.embed_tokens.weight"),
    ("norm.gamma", "model.norm.weight"),
];

/// Hugging Face's names.
const NAMES: Names = Names {
    model: &MODEL_NAMES,
    layer: &LAYER_NAMES,
    prefix: "model.layers.",
};

/// Writes `model` as `model.safetensors`, and its shape and `provenance` as `config.json`, into
/// `dir` (atomically).
///
/// # Example
/// ```
/// use burn::tensor::Device;
/// use mixlab_trainer::config::Preset;
/// use mixlab_trainer::export::hf::{export, import};
/// use mixlab_trainer::export::provenance::Provenance;
/// use mixlab_trainer::model::Model;
/// let shape = Preset::Tiny.config(64);
/// let provenance = Provenance {
///     run_hash: "r".into(),
///     mixture_sha256: "m".into(),
///     tokenizer_sha256: "t".into(),
///     step: 0,
/// };
/// let dir = tempfile::tempdir()?;
/// export(&Model::new(&shape, &Device::flex()), &shape, &provenance, dir.path())?;
/// assert!(dir.path().join("config.json").exists());
/// let back = import(&shape, dir.path(), &Device::flex())?;
/// # let _ = back;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Error::Config`] for a parameter without a Hugging Face name; file errors naming the path.
pub fn export(
    model: &Model,
    shape: &ModelConfig,
    provenance: &Provenance,
    dir: &Path,
) -> Result<()> {
    let mut tensors = Vec::new();
    for (path, Exported { dims, values }) in named::parameters(model) {
        let name = NAMES
            .external(&path)
            .ok_or_else(|| Error::Config(format!("no Hugging Face name for parameter {path}")))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((name, dims, bytes));
    }
    let views = tensors.iter().map(|(name, dims, bytes)| {
        let view = TensorView::new(Dtype::F32, dims.clone(), bytes).expect("sizes match");
        (name.as_str(), view)
    });
    let metadata = [("format".to_owned(), "pt".to_owned())]
        .into_iter()
        .collect();
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Config(format!("cannot serialize the weights: {e}")))?;
    fs_err::create_dir_all(dir)?;
    mixlab_artefacts::atomic::write_atomic(&dir.join("model.safetensors"), &bytes)?;
    let config = config_json(shape, provenance);
    let config = serde_json::to_string_pretty(&config).expect("plain JSON");
    mixlab_artefacts::atomic::write_atomic(&dir.join("config.json"), config.as_bytes())?;
    Ok(())
}

/// `config.json` of a `LlamaForCausalLM` of `shape`.
fn config_json(shape: &ModelConfig, provenance: &Provenance) -> serde_json::Value {
    let provenance: serde_json::Map<_, _> = (provenance.entries().into_iter())
        .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
        .collect();
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": shape.vocab_size,
        "hidden_size": shape.d_model,
        "intermediate_size": shape.ffn_hidden,
        "num_hidden_layers": shape.n_layers,
        "num_attention_heads": shape.n_heads,
        "num_key_value_heads": shape.n_kv_heads,
        "head_dim": shape.head_dim(),
        "max_position_embeddings": shape.max_seq_len,
        "rope_theta": shape.rope_theta,
        "rms_norm_eps": shape.norm_eps,
        "hidden_act": "silu",
        "tie_word_embeddings": true,
        "attention_bias": false,
        "torch_dtype": "float32",
        "mixlab_window": shape.window,
        "mixlab_global_every": shape.global_every,
        "mixlab_global_layers": shape.global_layers,
        "mixlab_provenance": provenance,
    })
}

/// Reads `model.safetensors` of `dir` (as [`export`] writes it) into a model of `shape`.
///
/// # Errors
/// [`Error::Checkpoint`] naming the file when it is not safetensors, holds non-f32 tensors, or
/// lacks tensors of `shape`.
pub fn import(shape: &ModelConfig, dir: &Path, device: &Device) -> Result<Model> {
    let path = dir.join("model.safetensors");
    let bytes = fs_err::read(&path)?;
    let bad = |message: String| Error::Checkpoint {
        path: path.clone(),
        message,
    };
    let file = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut by_path = BTreeMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!("{name}: {:?}; expected F32", view.dtype())));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(path) = NAMES.internal(&name) {
            let dims = view.shape().to_vec();
            by_path.insert(path, Exported { dims, values });
        }
    }
    named::model_from(shape, device, by_path).map_err(|missing| {
        let names: Vec<String> = missing.iter().filter_map(|p| NAMES.external(p)).collect();
        bad(format!(
            "tensors missing or of another shape: {}",
            names.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use crate::inference::Inference;

    fn provenance() -> Provenance {
        Provenance {
            run_hash: "run".into(),
            mixture_sha256: "mixture".into(),
            tokenizer_sha256: "tokenizer".into(),
            step: 7,
        }
    }

    #[test]
    fn a_round_trip_through_safetensors_gives_identical_logits() {
        let _rng = crate::test_rng::lock();
        let shape = Preset::Tiny.config(64);
        let device = Device::flex();
        let model = Model::new(&shape, &device);
        let dir = tempfile::tempdir().unwrap();
        export(&model, &shape, &provenance(), dir.path()).unwrap();
        let back = import(&shape, dir.path(), &device).unwrap();
        let tokens: Vec<u32> = (1..40).collect();
        let logits = |m: &Model| -> Vec<f32> {
            let inference = Inference::of_trained(m, &shape);
            inference
                .sequence_logits(&tokens)
                .into_data()
                .try_to_vec()
                .unwrap()
        };
        assert_eq!(logits(&back), logits(&model));

        let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let q = file
            .tensor("model.layers.0.self_attn.q_proj.weight")
            .unwrap();
        // [out, in], as torch.nn.Linear stores it.
        assert_eq!(q.shape(), [shape.n_heads * shape.head_dim(), shape.d_model]);
        let up = file.tensor("model.layers.1.mlp.up_proj.weight").unwrap();
        assert_eq!(up.shape(), [shape.ffn_hidden, shape.d_model]);
        assert_eq!(file.names().len(), 2 + 9 * shape.n_layers);
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["num_hidden_layers"], shape.n_layers);
        assert_eq!(config["tie_word_embeddings"], true);
        assert_eq!(config["mixlab_provenance"]["run_hash"], "run");
    }

    #[test]
    fn a_file_of_another_shape_is_refused_naming_a_tensor() {
        let _rng = crate::test_rng::lock();
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let small = Preset::Tiny.config(64);
        export(
            &Model::new(&small, &device),
            &small,
            &provenance(),
            dir.path(),
        )
        .unwrap();
        let err = import(&Preset::Tiny.config(128), dir.path(), &device).unwrap_err();
        assert!(
            err.to_string().contains("model.embed_tokens.weight"),
            "{err}"
        );
        std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
        let err = import(&small, dir.path(), &device).unwrap_err();
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }
}
