//! `mixlab quantize`: int4 post-training quantization of a finished run into a new run.

use mixlab_artefacts::eval::read_eval;

use crate::util::Project;

#[test]
fn a_quantized_run_is_evaluated_close_to_its_source_and_a_rerun_does_nothing() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/fp", "--steps", "40"])
        .expect_code(0);
    p.run(&["quantize", "-q", "--run", "runs/fp"])
        .expect_code(0);
    let (fp, int4) = (
        read_eval(&p.path("out/runs/fp/eval.parquet")).unwrap(),
        read_eval(&p.path("out/runs/fp-int4/eval.parquet")).unwrap(),
    );
    assert_eq!(fp.len(), int4.len());
    for (a, b) in fp.iter().zip(&int4) {
        // Rounding moves every loss, a little (at most a few percent for this model).
        assert!(
            a.loss != b.loss && (a.loss - b.loss).abs() < 0.05 * a.loss,
            "{a:?} → {b:?}"
        );
    }
    let config = std::fs::read_to_string(p.path("out/runs/fp-int4/config.toml")).unwrap();
    assert!(config.contains("[quantize]\ngroup_size = 32"), "{config}");
    assert!(!p.path("out/runs/fp-int4/init.bpk").exists());
    // The quantized run reads like any run.
    let eval = p
        .run(&["eval", "--run", "runs/fp-int4", "--json"])
        .expect_code(0);
    assert!(eval.stdout.contains("\"step\": 0"), "{}", eval.stdout);
    // Its packed int4 file gives the same losses, at under 0.16× the f32 weights.
    let packed = p
        .run(&["eval", "--run", "runs/fp-int4", "--json", "--gguf"])
        .expect_code(0);
    let mean = |json: &str| -> f64 {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        value["mean_loss"].as_f64().unwrap()
    };
    assert!((mean(&eval.stdout) - mean(&packed.stdout)).abs() < 1e-3);
    let size = |rel: &str| std::fs::metadata(p.path(rel)).unwrap().len() as f64;
    let (gguf, f32_weights) = (
        size("out/runs/fp-int4/model-q4_0.gguf"),
        size("out/runs/fp/checkpoints/step-40.bpk"),
    );
    assert!(gguf < 0.16 * f32_weights, "{gguf} vs {f32_weights} bytes");
    let again = p
        .run(&["quantize", "-q", "--run", "runs/fp"])
        .expect_code(0);
    assert!(
        again.stdout.contains("already finished"),
        "{}",
        again.stdout
    );
}

#[test]
fn a_group_size_that_does_not_divide_the_model_and_an_unfinished_run_are_refused() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/fp", "--steps", "2"])
        .expect_code(0);
    let out = p
        .run(&["quantize", "--run", "runs/fp", "--group-size", "48"])
        .expect_code(2);
    assert!(
        out.stderr.contains("--group-size 48") && out.stderr.contains("does not divide"),
        "{}",
        out.stderr
    );
    std::fs::remove_file(p.path("out/runs/fp/done")).unwrap();
    let out = p.run(&["quantize", "--run", "runs/fp"]).expect_code(2);
    assert!(out.stderr.contains("has not finished"), "{}", out.stderr);
    let out = p
        .run(&["eval", "--run", "runs/fp", "--gguf"])
        .expect_code(2);
    assert!(
        out.stderr.contains("model-q4_0.gguf does not exist"),
        "{}",
        out.stderr
    );
    assert!(!p.path("out/runs/fp-int4").exists());
}

#[test]
fn quant_aware_training_distils_from_the_source_then_rounds_its_result() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/fp", "--steps", "20"])
        .expect_code(0);
    let qat = ["quantize", "-q", "--run", "runs/fp", "--qat-steps", "6"];
    p.run(&qat).expect_code(0);
    let read =
        |run: &str| std::fs::read_to_string(p.path(&format!("out/{run}/config.toml"))).unwrap();
    let (latent, int4) = (read("runs/fp-qat"), read("runs/fp-qat-int4"));
    // The latent run: 6 steps from the source's weights, distilled from the source (α = 1, τ = 1),
    // at a tenth of its learning rate.
    assert!(
        latent.contains("steps = 6\n") && latent.contains("lr = 0.0003"),
        "{latent}"
    );
    assert!(
        latent.contains(&format!("teacher_run_hash = \"{}\"", p.run_hash("runs/fp"))),
        "{latent}"
    );
    assert!(
        latent.contains("[distill.settings]\nalpha = 1.0\ntemperature = 1.0"),
        "{latent}"
    );
    // The int4 run rounds the latent run's final checkpoint.
    assert!(int4.contains("[init]\npath = "), "{int4}");
    assert!(
        int4.contains(&format!(
            "run_hash = \"{}\"\nstep = 6",
            p.run_hash("runs/fp-qat")
        )),
        "{int4}"
    );
    let again = p.run(&qat).expect_code(0);
    assert!(
        again.stdout.contains("already finished"),
        "{}",
        again.stdout
    );

    let out = p
        .run(&[
            "quantize",
            "--run",
            "runs/fp",
            "--qat-steps",
            "6",
            "--qat-lr=-1",
            "--out-run",
            "runs/x",
        ])
        .expect_code(2);
    assert!(out.stderr.contains("--qat-lr"), "{}", out.stderr);
}

#[test]
fn int8_activations_round_every_projection_input_in_training_eval_and_the_packed_model() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/fp", "--steps", "30"])
        .expect_code(0);
    p.run(&["quantize", "-q", "--run", "runs/fp"])
        .expect_code(0);
    p.run(&["quantize", "-q", "--run", "runs/fp", "--int8-activations"])
        .expect_code(0);
    // Same int4 weights; rounding the activations too moves the loss, by little.
    let (w4, w4a8) = (
        p.eval_mean_loss(&["--run", "runs/fp-int4"]),
        p.eval_mean_loss(&["--run", "runs/fp-w4a8"]),
    );
    assert!(
        w4 != w4a8 && (w4 - w4a8).abs() < 0.02 * w4,
        "{w4} vs {w4a8}"
    );
    let config = std::fs::read_to_string(p.path("out/runs/fp-w4a8/config.toml")).unwrap();
    assert!(config.contains("int8_activations = true"), "{config}");
    // The packed file carries the weights; the run's model rounds the activations.
    let packed = p.eval_mean_loss(&["--run", "runs/fp-w4a8", "--gguf"]);
    assert!((packed - w4a8).abs() < 1e-3, "{packed} vs {w4a8}");

    p.run(&[
        "quantize",
        "-q",
        "--run",
        "runs/fp",
        "--int8-activations",
        "--qat-steps",
        "4",
    ])
    .expect_code(0);
    let latent = std::fs::read_to_string(p.path("out/runs/fp-qat-a8/config.toml")).unwrap();
    assert!(latent.contains("int8_activations = true"), "{latent}");
    assert!(p.path("out/runs/fp-qat-w4a8/eval.parquet").exists());
}
