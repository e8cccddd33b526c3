//! Exit classes at the binary's edge (usage or configuration → 2, a stage failing → 1) with the cause
//! chain kept, and refusal of shards a run was not made from.

use crate::util::Project;

/// The JSON event of the final error on stderr.
fn error_event(stderr: &str) -> serde_json::Value {
    stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON log line"))
        .find(|e| e["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no error event in:\n{stderr}"))
}

#[test]
fn a_missing_mixture_file_is_a_usage_error_with_its_cause() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    let out = p
        .run(&["--log-format", "json", "train", "--mixture", "nope.toml"])
        .expect_code(2);
    let event = error_event(&out.stderr);
    assert_eq!(event["fields"]["exit_code"], 2, "{event}");
    let causes = event["fields"]["causes"].as_str().unwrap_or_default();
    assert!(
        event["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("--mixture nope.toml")
            && causes.contains("nope.toml")
            && causes.to_lowercase().contains("no such file"),
        "{event}"
    );
}

#[test]
fn a_bad_configuration_value_is_a_usage_error_naming_the_key() {
    let p = Project::with_default_config();
    let config = std::fs::read_to_string(p.path("datasets.toml")).unwrap();
    let bad = config.replacen("[mix]\n", "[mix]\nbounds = { code = [0.5, 0.2] }\n", 1);
    assert_ne!(config, bad, "datasets.toml has a [mix] table");
    p.write("bad.toml", bad);
    let out = p.run(&["train", "--config", "bad.toml"]).expect_code(2);
    assert!(
        out.stderr.contains("bad.toml") && out.stderr.contains("[mix].bounds.code"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_stage_failure_is_exit_1_and_says_how_to_fix_it() {
    let p = Project::with_default_config();
    let out = p.run(&["train", "-q"]).expect_code(1);
    assert!(out.stderr.contains("mixlab ingest"), "{}", out.stderr);
}

#[test]
fn eval_refuses_shards_the_run_was_not_made_from() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/a", "--steps", "0"])
        .expect_code(0);
    let before = mixlab_ingest::manifest::Manifest::read(&p.path("out/shards")).unwrap();
    let config = std::fs::read_to_string(p.path("datasets.toml")).unwrap();
    let changed = config.replacen("valid_fraction = 0.05", "valid_fraction = 0.08", 1);
    assert_ne!(config, changed, "datasets.toml sets valid_fraction");
    p.write("datasets.toml", changed);
    p.run(&["ingest", "-q"]).expect_code(0);
    let after = mixlab_ingest::manifest::Manifest::read(&p.path("out/shards")).unwrap();
    let names_both =
        |stderr: &str| stderr.contains(&before.inputs_hash) && stderr.contains(&after.inputs_hash);
    let out = p.run(&["eval", "--run", "runs/a"]).expect_code(1);
    assert!(names_both(&out.stderr), "{}", out.stderr);
    let out = p
        .run(&["generate", "--run", "runs/a", "--prompt", "x"])
        .expect_code(1);
    assert!(names_both(&out.stderr), "{}", out.stderr);
    // Continuing an unfinished run on the new shards is refused too, naming both.
    std::fs::remove_file(p.path("out/runs/a/done")).unwrap();
    let out = p
        .run(&["train", "-q", "--run", "runs/a", "--steps", "0"])
        .expect_code(2);
    assert!(names_both(&out.stderr), "{}", out.stderr);
}

#[test]
fn a_bad_matrix_kernel_override_is_a_usage_error_before_any_work() {
    let p = Project::with_default_config();
    let run_with = |isa: &str| {
        let mut cmd = p.command(&["ingest", "-q"]);
        cmd.env("MIXLAB_MATMUL_ISA", isa);
        cmd.output().expect("run mixlab")
    };
    let out = run_with("avx1024");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("MIXLAB_MATMUL_ISA=\"avx1024\"")
            && stderr.contains("avx512, avx2 or portable"),
        "{stderr}"
    );
    assert!(
        !p.path("out/shards").exists(),
        "nothing is ingested after a usage error"
    );
    #[cfg(target_arch = "x86_64")]
    if !std::arch::is_x86_feature_detected!("avx512f") {
        let out = run_with("avx512");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("not supported by this CPU"), "{stderr}");
    }
}

/// `datasets.toml` with `from` replaced by `to` (which must occur).
fn config_with(p: &Project, from: &str, to: &str) -> String {
    let config = std::fs::read_to_string(p.path("datasets.toml")).unwrap();
    assert!(config.contains(from), "datasets.toml lacks {from:?}");
    config.replacen(from, to, 1)
}

/// Numbers out of range, non-finite or so large they would overflow or could not be allocated are
/// refused when the configuration is loaded: exit 2, the key named, no panic and no output.
#[test]
fn out_of_range_numbers_are_refused_before_any_work() {
    let p = Project::with_default_config();
    let cases = [
        (
            "batch_rows = 1024",
            "batch_rows = 4611686018427387904",
            "ingest",
            "ingest.batch_rows = 4611686018427387904: expected at most",
        ),
        (
            "vocab_size = 1024",
            "vocab_size = 1073741824",
            "ingest",
            "tokenizer.train.vocab_size = 1073741824: expected 257 to",
        ),
        (
            "batch_size = 8",
            "batch_size = 4611686018427387904",
            "train",
            "batch_size × seq_len = 4611686018427387904 × 128 is more than",
        ),
        (
            "seq_len = 128",
            "seq_len = 1048576",
            "train",
            "seq_len = 1048576 is more than 65536",
        ),
        (
            "steps = 300",
            "steps = 9223372036854775807",
            "train",
            "training tokens does not fit in 64 bits",
        ),
        (
            "lr = 3e-3",
            "lr = 3e-3\nbeta2 = nan",
            "train",
            "beta2 = NaN is out of range",
        ),
        (
            "[mix]\n",
            "[mix]\nbounds = { prose = [nan, 0.5] }\n",
            "mix",
            "[mix].bounds.prose = [NaN, 0.5]",
        ),
        (
            "max_epochs = 4.0\n",
            "max_epochs = 4.0\n[[mix.stage]]\nname = \"a\"\nlr = nan\n",
            "mix",
            "[[mix.stage]] 1: lr",
        ),
    ];
    for (from, to, command, expected) in cases {
        p.write("bad.toml", config_with(&p, from, to));
        let out = p.run(&[command, "--config", "bad.toml", "--out", "bad-out"]);
        assert_eq!(out.code, 2, "{to}: {}", out.stderr);
        assert!(
            out.stderr.contains("bad.toml") && out.stderr.contains(expected),
            "{to}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        assert!(!p.path("bad-out/shards").exists(), "{to}: wrote shards");
    }
}

/// A mixture file that names an unknown domain, has a negative weight, does not sum to 1 or has a
/// NaN learning rate is refused when loaded, before training starts.
#[test]
fn bad_mixture_files_are_refused_at_load() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    let weights = "arithmetic = 0.2, code = 0.2, duplicated = 0.2, noise = 0.2, prose = 0.2";
    let cases = [
        (
            "arithmetic = 0.2",
            "arithmetik = 0.2",
            "",
            "unknown domain \"arithmetik\" (did you mean \"arithmetic\"?)",
        ),
        (
            "arithmetic = 0.2",
            "arithmetic = -0.2",
            "",
            "weight of \"arithmetic\" is -0.2",
        ),
        (
            "arithmetic = 0.2",
            "arithmetic = 0.3",
            "",
            "weights sum to 1.09",
        ),
        (
            "",
            "",
            "lr = nan\n",
            "stage \"main\": lr = NaN; expected a positive number",
        ),
        ("", "", "tokens = 0\n", "stage \"main\": tokens = 0"),
    ];
    for (from, to, extra, expected) in cases {
        let stage_weights = weights.replacen(from, to, 1);
        p.write(
            "m.toml",
            format!("[[stage]]\nname = \"main\"\n{extra}weights = {{ {stage_weights} }}\n[provenance]\nmethod = \"test\"\n"),
        );
        let out = p.run(&[
            "train",
            "-q",
            "--mixture",
            "m.toml",
            "--run",
            "runs/m",
            "--steps",
            "2",
        ]);
        assert_eq!(out.code, 2, "{expected}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{expected}: {}", out.stderr);
        assert!(
            !p.path("out/runs/m/checkpoints").exists(),
            "{expected}: trained"
        );
    }
}

#[test]
fn shards_holding_token_ids_outside_the_tokenizer_are_refused_when_read() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    // Shards made with a larger tokenizer than the one the manifest names (here: the manifest's
    // vocabulary shrunk to 300 of the demo tokenizer's 1,024 ids).
    let path = p.path("out/shards/manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["tokenizer"]["vocab_size"] = serde_json::json!(300);
    std::fs::write(&path, manifest.to_string()).unwrap();
    let out = p
        .run(&["train", "-q", "--run", "runs/a", "--steps", "2"])
        .expect_code(1);
    assert!(
        out.stderr
            .contains("out/shards/arithmetic/part-00000.parquet: document")
            && out.stderr.contains("outside the tokenizer's 300 ids")
            && out.stderr.contains("re-ingest"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}
