//! `mixlab passkey`, `train --init-from` and `eval --seq-len`: the pieces of a context extension.

use std::io::Read;

use crate::util::Project;

#[test]
fn passkey_make_writes_the_same_tasks_for_the_same_seed_and_refuses_bad_counts() {
    let p = Project::new();
    let make = |file: &str, seed: &str| {
        p.run(&[
            "passkey",
            "make",
            "--output",
            file,
            "--docs",
            "25",
            "--min-filler",
            "1",
            "--max-filler",
            "4",
            "--seed",
            seed,
        ])
        .expect_code(0);
        std::fs::read(p.path(file)).unwrap()
    };
    let bytes = make("a.jsonl.gz", "1");
    assert_eq!(bytes, make("b.jsonl.gz", "1"), "reproducible, no timestamp");
    assert_ne!(bytes, make("c.jsonl.gz", "2"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_string(&mut text)
        .unwrap();
    let docs: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(docs.len(), 25);
    for doc in &docs {
        let key = doc.trim_end_matches('.').rsplit(' ').next().unwrap();
        assert!(key.len() == 5 && key.parse::<u32>().is_ok(), "{doc}");
        assert!(
            doc.contains(&format!("The pass key is {key}. Remember it.")),
            "{doc}"
        );
    }
    let refused = p
        .run(&[
            "passkey",
            "make",
            "--output",
            "d.jsonl",
            "--min-filler",
            "5",
            "--max-filler",
            "2",
        ])
        .expect_code(2);
    assert!(
        refused.stderr.contains("--min-filler ≤ --max-filler"),
        "{}",
        refused.stderr
    );
    assert!(!p.path("d.jsonl").exists());
}

#[test]
fn a_run_continues_from_another_with_a_new_rope_base_and_is_scored_at_any_context() {
    let p = Project::with_default_config();
    // Evaluation covers every validation document at any context length below, so contexts are
    // compared on the same tokens.
    p.edit_config("eval_sequences = 8", "eval_sequences = 4096");
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/short", "--steps", "30"])
        .expect_code(0);
    let short = p.eval_mean_loss(&["--run", "runs/short"]);

    // Zero steps from the run's weights: the very same model.
    p.run(&[
        "train",
        "-q",
        "--run",
        "runs/copy",
        "--steps",
        "0",
        "--init-from",
        "runs/short",
    ])
    .expect_code(0);
    let copy = p.eval_mean_loss(&["--run", "runs/copy"]);
    assert!((copy - short).abs() < 1e-9, "{copy} vs {short}");
    let config = std::fs::read_to_string(p.path("out/runs/copy/config.toml")).unwrap();
    assert!(config.contains(&p.run_hash("runs/short")), "{config}");

    // The same weights under another RoPE base see other positions.
    p.edit_config(
        "[model]\npreset = \"tiny\"",
        "[model]\npreset = \"tiny\"\nrope_theta = 500000.0",
    );
    p.run(&[
        "train",
        "-q",
        "--run",
        "runs/theta",
        "--steps",
        "0",
        "--init-from",
        "runs/short",
    ])
    .expect_code(0);
    let theta = p.eval_mean_loss(&["--run", "runs/theta"]);
    assert!((theta - short).abs() > 1e-4, "{theta} vs {short}");

    // Evaluating at another context length: shorter contexts predict worse.
    let at_32 = p.eval_mean_loss(&["--run", "runs/short", "--seq-len", "32"]);
    assert!(at_32 > short, "{at_32} at 32 tokens vs {short} at 128");

    let shapes = p
        .run(&[
            "train",
            "-q",
            "--run",
            "runs/x",
            "--preset",
            "small",
            "--init-from",
            "runs/short",
        ])
        .expect_code(2);
    assert!(
        shapes.stderr.contains("d_model = 128 (here 256)"),
        "{}",
        shapes.stderr
    );
    let missing = p
        .run(&["train", "-q", "--run", "runs/y", "--init-from", "runs/none"])
        .expect_code(2);
    assert!(
        missing.stderr.contains("--init-from runs/none"),
        "{}",
        missing.stderr
    );
}

#[test]
fn passkey_eval_counts_every_prompt_per_depth() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/r", "--steps", "5"])
        .expect_code(0);
    let out = p
        .run(&[
            "passkey",
            "eval",
            "--run",
            "runs/r",
            "--context",
            "200",
            "--depths",
            "0,0.5,1",
            "--trials",
            "3",
            "--json",
        ])
        .expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["context"], 200);
    assert_eq!(json["step"], 5);
    let depths = json["depths"].as_array().unwrap();
    let found: Vec<(f64, u64)> = depths
        .iter()
        .map(|d| (d["depth"].as_f64().unwrap(), d["trials"].as_u64().unwrap()))
        .collect();
    assert_eq!(found, [(0.0, 3), (0.5, 3), (1.0, 3)]);
    // Five steps cannot spell a random five-digit key.
    assert_eq!(json["accuracy"].as_f64(), Some(0.0), "{json}");
    // Nor give it much probability: each depth's answer loss is far from zero, and the total is
    // their mean (equal trials).
    let losses: Vec<f64> = depths
        .iter()
        .map(|d| d["answer_loss"].as_f64().unwrap())
        .collect();
    assert!(losses.iter().all(|&l| l > 2.0), "{json}");
    let mean = losses.iter().sum::<f64>() / 3.0;
    assert!((json["answer_loss"].as_f64().unwrap() - mean).abs() < 1e-9);
    let table = p
        .run(&[
            "passkey",
            "eval",
            "--run",
            "runs/r",
            "--context",
            "200",
            "--trials",
            "1",
        ])
        .expect_code(0);
    assert!(
        table.stdout.contains("passkey retrieval at 200 tokens"),
        "{}",
        table.stdout
    );
    assert_eq!(table.stdout.matches('%').count(), 6, "{}", table.stdout);

    let short = p
        .run(&["passkey", "eval", "--run", "runs/r", "--context", "20"])
        .expect_code(2);
    assert!(
        short.stderr.contains("more than the context of 20"),
        "{}",
        short.stderr
    );
}
