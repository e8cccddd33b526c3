//! `mixlab export`: a run in Hugging Face's Llama layout.

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
        std::fs::read(dir.join("tokenizer.json")).unwrap(),
        std::fs::read(p.path("out/shards/tokenizer.json")).unwrap()
    );
}
