//! `mixlab export` and `quantize`'s GGUF: a run for Hugging Face transformers and llama.cpp.

use std::collections::BTreeMap;

use gguf::{GGMLType, GGUFFile, GGUFMetadataValue};

use crate::util::Project;

#[test]
fn a_run_exports_to_hugging_face_safetensors() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/fp", "--steps", "2"])
        .expect_code(0);
    let out = p.run(&["export", "--run", "runs/fp"]).expect_code(0);
    assert!(out.stdout.contains("step 2"), "{}", out.stdout);
    let dir = p.path("out/runs/fp/hf");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    // The safetensors header: an 8-byte length, then JSON naming every tensor.
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    let q = &header["model.layers.0.self_attn.q_proj.weight"];
    assert_eq!(q["dtype"], "F32");
    assert_eq!(q["shape"], serde_json::json!([128, 128])); // tiny: d_model 128
    assert!(header.get("model.embed_tokens.weight").is_some());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "llama");
    assert_eq!(
        config["mixlab_provenance"]["run_hash"],
        p.run_hash("runs/fp").as_str()
    );
    assert_eq!(
        std::fs::read(dir.join("tokenizer.json")).unwrap(),
        std::fs::read(p.path("out/shards/tokenizer.json")).unwrap()
    );
}

/// A GGUF file's metadata by key, read with the `gguf` crate's parser.
fn metadata(file: &GGUFFile) -> BTreeMap<&str, &GGUFMetadataValue> {
    let entries = file.header.metadata.iter();
    entries.map(|m| (m.key.as_str(), &m.value)).collect()
}

fn strings(value: &GGUFMetadataValue) -> Vec<String> {
    let GGUFMetadataValue::Array(array) = value else {
        panic!("expected an array, got {value:?}")
    };
    let item = |v: &GGUFMetadataValue| match v {
        GGUFMetadataValue::String(s) => s.clone(),
        other => panic!("expected strings, got {other:?}"),
    };
    array.value.iter().map(item).collect()
}

fn string(value: &GGUFMetadataValue) -> &str {
    match value {
        GGUFMetadataValue::String(s) => s,
        other => panic!("expected a string, got {other:?}"),
    }
}

/// A `tokenizer.json` rebuilt from the GGUF's `tokenizer.ggml.*` keys alone, as a runtime
/// reading the file would rebuild it.
fn tokenizer_from_gguf(keys: &BTreeMap<&str, &GGUFMetadataValue>) -> tokenizers::Tokenizer {
    let tokens = strings(keys["tokenizer.ggml.tokens"]);
    let vocab: serde_json::Map<_, _> = (tokens.iter().enumerate())
        .map(|(id, token)| (token.clone(), id.into()))
        .collect();
    let byte_level = serde_json::json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true
    });
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{
            "id": 0, "content": tokens[0], "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }],
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": null,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "vocab": vocab,
            "merges": strings(keys["tokenizer.ggml.merges"]),
        },
    });
    json.to_string()
        .parse()
        .expect("a tokenizer.json from the GGUF keys")
}

#[test]
fn gguf_files_hold_llama_cpp_metadata_shapes_and_the_shards_tokenizer() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/fp", "--steps", "2"])
        .expect_code(0);
    let out = p
        .run(&["export", "--run", "runs/fp", "--format", "gguf"])
        .expect_code(0);
    assert!(out.stdout.contains("model-f16.gguf"), "{}", out.stdout);
    p.run(&["quantize", "-q", "--run", "runs/fp"])
        .expect_code(0);
    let cases = [
        (
            "out/runs/fp/gguf/model-f16.gguf",
            "runs/fp",
            1,
            GGMLType::F16,
        ),
        (
            "out/runs/fp-int4/model-q4_0.gguf",
            "runs/fp-int4",
            2,
            GGMLType::Q4_0,
        ),
    ];
    let shards = tokenizers::Tokenizer::from_file(p.path("out/shards/tokenizer.json")).unwrap();
    let texts = [
        "The quick brown fox: 12,345 jumps!\n\n  def f(x):\n\treturn x ** 2  # ok",
        "naïve café — ünïcödé, 日本語 and emoji 🎉 don't won't I'll",
    ];
    for (file, run, file_type, matrix_type) in cases {
        let bytes = std::fs::read(p.path(file)).unwrap();
        let parsed = GGUFFile::read(&bytes).unwrap().expect("a whole GGUF file");
        let keys = metadata(&parsed);
        assert_eq!(string(keys["general.architecture"]), "llama");
        assert_eq!(
            keys["general.file_type"],
            &GGUFMetadataValue::Uint32(file_type)
        );
        assert_eq!(string(keys["tokenizer.ggml.model"]), "gpt2");
        assert_eq!(string(keys["tokenizer.ggml.pre"]), "gpt-2");
        assert_eq!(string(keys["mixlab.run_hash"]), p.run_hash(run), "{file}");
        assert_eq!(
            keys["tokenizer.ggml.eos_token_id"],
            &GGUFMetadataValue::Uint32(shards.token_to_id("<|endoftext|>").unwrap())
        );
        assert_eq!(
            strings(keys["tokenizer.ggml.tokens"]).len(),
            shards.get_vocab_size(true)
        );
        // Tiny: 4 layers of 9 tensors, the embedding (tied: no output.weight) and the last norm.
        assert_eq!(parsed.tensors.len(), 2 + 9 * 4);
        let tensor = |name: &str| parsed.tensors.iter().find(|t| t.name == name).unwrap();
        let embedding = tensor("token_embd.weight");
        assert_eq!(embedding.dimensions, [128, 1024]);
        assert_eq!(embedding.tensor_type, matrix_type);
        assert_eq!(tensor("blk.3.ffn_down.weight").dimensions, [384, 128]);
        assert_eq!(tensor("blk.0.attn_k.weight").dimensions, [128, 64]);
        assert_eq!(tensor("blk.0.attn_norm.weight").tensor_type, GGMLType::F32);
        assert!(parsed.tensors.iter().all(|t| t.name != "output.weight"));

        let rebuilt = tokenizer_from_gguf(&keys);
        for text in texts {
            let ids = |t: &tokenizers::Tokenizer| t.encode(text, false).unwrap().get_ids().to_vec();
            assert_eq!(ids(&rebuilt), ids(&shards), "{text}");
            assert_eq!(rebuilt.decode(&ids(&rebuilt), false).unwrap(), text);
        }
    }
}

#[test]
fn score_prints_each_texts_tokens_and_next_token_losses_from_the_checkpoint_or_a_gguf() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/fp", "--steps", "2"])
        .expect_code(0);
    p.run(&[
        "export",
        "--run",
        "runs/fp",
        "--format",
        "gguf",
        "--precision",
        "f32",
    ])
    .expect_code(0);
    let long = "word ".repeat(200);
    p.write(
        "texts.jsonl",
        format!("{{\"text\": \"one two three\"}}\n{{\"text\": \"{long}\"}}\n"),
    );
    let score = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["score", "--run", "runs/fp", "--texts", "texts.jsonl"];
        args.extend_from_slice(extra);
        let out = p.run(&args).expect_code(0);
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let checkpoint = score(&[]);
    assert_eq!(checkpoint.len(), 2);
    let tokens = checkpoint[0]["tokens"].as_array().unwrap().len();
    assert_eq!(
        checkpoint[0]["losses"].as_array().unwrap().len(),
        tokens - 1
    );
    // The long text is cut at the model's window (tiny: 64 tokens).
    assert_eq!(checkpoint[1]["tokens"].as_array().unwrap().len(), 64);
    // The F32 GGUF holds the checkpoint's weights: the same losses.
    let gguf = score(&["--gguf", "out/runs/fp/gguf/model-f32.gguf"]);
    let losses = |v: &serde_json::Value| -> Vec<f64> {
        let values = v["losses"].as_array().unwrap().iter();
        values.map(|l| l.as_f64().unwrap()).collect()
    };
    for (a, b) in losses(&checkpoint[1]).iter().zip(losses(&gguf[1])) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    let out = p.run(&[
        "score",
        "--run",
        "runs/fp",
        "--texts",
        "texts.jsonl",
        "--gguf",
    ]);
    let out = out.expect_code(2);
    assert!(
        out.stderr.contains("model-q4_0.gguf does not exist"),
        "{}",
        out.stderr
    );
}
