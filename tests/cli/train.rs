//! `mixlab train`, `eval` and `generate` on the demo corpus.

use std::collections::HashMap;

use mixlab_artefacts::split::Split;
use mixlab_ingest::manifest::ShardSet;
use mixlab_ingest::verified::Verification;

use crate::util::Project;

fn ingested() -> Project {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p
}

fn eval_json(p: &Project, run: &str) -> serde_json::Value {
    let out = p.run(&["eval", "--run", run, "--json"]).expect_code(0);
    serde_json::from_str(&out.stdout).expect("eval --json prints JSON")
}

/// Entropy (nats) of the unigram distribution of the training tokens.
fn unigram_entropy(p: &Project) -> f64 {
    let shards = ShardSet::open(&p.path("out/shards"), Verification::Full).unwrap();
    let mut counts: HashMap<u32, f64> = HashMap::new();
    for d in &shards.manifest().domains {
        for doc in shards.read_domain(&d.name, Some(Split::Train)).unwrap() {
            doc.tokens
                .iter()
                .for_each(|t| *counts.entry(*t).or_default() += 1.0);
        }
    }
    let total: f64 = counts.values().sum();
    counts
        .values()
        .map(|c| -(c / total) * (c / total).ln())
        .sum()
}

#[test]
fn tiny_model_learns_far_below_unigram_entropy() {
    let p = ingested();
    let out = p
        .run(&["train", "--run", "runs/tiny", "--steps", "200"])
        .expect_code(0);
    assert!(out.stdout.contains("perplexity"), "{}", out.stdout);
    let eval = eval_json(&p, "runs/tiny");
    let mean = eval["mean_loss"].as_f64().unwrap();
    let entropy = unigram_entropy(&p);
    assert!(
        mean < 0.75 * entropy,
        "mean validation loss {mean:.3} vs unigram entropy {entropy:.3}"
    );
    for file in [
        "config.toml",
        "metrics.parquet",
        "eval.parquet",
        "done",
        "checkpoints/step-200.bpk",
    ] {
        assert!(
            p.path("out/runs/tiny").join(file).exists(),
            "run directory lacks {file}"
        );
    }
    let again = p
        .run(&["train", "--run", "runs/tiny", "--steps", "200"])
        .expect_code(0);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    let other = p
        .run(&["train", "--run", "runs/tiny", "--steps", "201"])
        .expect_code(2);
    assert!(
        other
            .stderr
            .contains("other settings (train.steps 200 → 201; the learning rate decays"),
        "{}",
        other.stderr
    );
    let text = p.run(&[
        "generate",
        "--run",
        "runs/tiny",
        "--prompt",
        "Ava has 3 apples.",
        "--max-tokens",
        "16",
    ]);
    let text = text.expect_code(0);
    assert!(
        text.stdout.starts_with("Ava has 3 apples.") && text.stdout.len() > 20,
        "{}",
        text.stdout
    );
}

#[test]
fn the_sampler_routes_data_by_mixture() {
    let p = ingested();
    let only = |domain: &str| {
        format!(
            "[[stage]]\nname = \"main\"\nweights = {{ {domain} = 1.0 }}\n[provenance]\nmethod = \"test\"\n"
        )
    };
    p.write("arith.toml", only("arithmetic"));
    p.write("prose.toml", only("prose"));
    p.run(&[
        "train",
        "-q",
        "--mixture",
        "arith.toml",
        "--run",
        "runs/arith",
        "--steps",
        "80",
    ])
    .expect_code(0);
    p.run(&[
        "train",
        "-q",
        "--mixture",
        "prose.toml",
        "--run",
        "runs/prose",
        "--steps",
        "80",
    ])
    .expect_code(0);
    let (a, b) = (eval_json(&p, "runs/arith"), eval_json(&p, "runs/prose"));
    let loss = |v: &serde_json::Value, d: &str| v["domains"][d]["loss"].as_f64().unwrap();
    assert!(
        loss(&a, "arithmetic") + 0.5 < loss(&b, "arithmetic"),
        "{a} vs {b}"
    );
    assert!(loss(&b, "prose") + 0.5 < loss(&a, "prose"), "{a} vs {b}");

    // Texts outside the shards (here the demo's own arithmetic source file) are scored too.
    let texts = |run: &str| {
        let args = [
            "eval",
            "--run",
            run,
            "--json",
            "--texts",
            "sums=data/demo/arithmetic.jsonl",
        ];
        let out = p.run(&args).expect_code(0);
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        json["texts"]["sums"]["loss"].as_f64().unwrap()
    };
    assert!(texts("runs/arith") + 0.5 < texts("runs/prose"));
    let out = p
        .run(&[
            "eval",
            "--run",
            "runs/arith",
            "--texts",
            "sums=missing.jsonl",
        ])
        .expect_code(2);
    assert!(out.stderr.contains("missing.jsonl"), "{}", out.stderr);
    let out = p
        .run(&["eval", "--run", "runs/arith", "--texts", "sums"])
        .expect_code(2);
    assert!(out.stderr.contains("NAME=FILE"), "{}", out.stderr);
}

#[test]
fn a_killed_run_resumes_to_the_same_result() {
    let p = ingested();
    let config = std::fs::read_to_string(p.path("datasets.toml")).unwrap();
    p.write(
        "datasets.toml",
        config.replace("checkpoint_every = 100", "checkpoint_every = 10"),
    );
    p.run(&["train", "-q", "--run", "runs/straight", "--steps", "60"])
        .expect_code(0);

    let mut child = p
        .command(&["train", "-q", "--run", "runs/killed", "--steps", "60"])
        .spawn()
        .unwrap();
    let marker = p.path("out/runs/killed/checkpoints/step-20.json");
    let started = std::time::Instant::now();
    while !marker.exists() && started.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !p.path("out/runs/killed/done").exists(),
        "the run finished before it could be killed"
    );
    p.run(&["train", "-q", "--run", "runs/killed", "--steps", "60"])
        .expect_code(0);

    let read = |run: &str| {
        mixlab_artefacts::metrics::read_metrics(&p.path(&format!("out/{run}/metrics.parquet")))
            .unwrap()
    };
    let (straight, resumed) = (read("runs/straight"), read("runs/killed"));
    assert_eq!(
        straight, resumed,
        "a resumed run must log exactly the same losses"
    );
    let eval = |run: &str| {
        mixlab_artefacts::eval::read_eval(&p.path(&format!("out/{run}/eval.parquet"))).unwrap()
    };
    assert_eq!(eval("runs/straight"), eval("runs/killed"));
}

#[test]
fn zero_steps_saves_the_initial_model_and_training_builds_the_token_cache() {
    let p = ingested();
    let cache = |p: &Project| p.run(&["inspect"]).expect_code(0).stdout;
    assert!(cache(&p).contains("(missing: the first stage that trains builds it)"));
    p.run(&["train", "-q", "--run", "runs/init", "--steps", "0"])
        .expect_code(0);
    assert!(p.path("out/runs/init/checkpoints/step-0.bpk").exists());
    assert!(cache(&p).contains("(ready: "), "{}", cache(&p));
    // A truncated index is named, with the fix; rebuilding makes the cache ready again.
    let index = p.path("out/shards/cache/000/valid.index");
    let bytes = std::fs::read(&index).unwrap();
    std::fs::write(&index, &bytes[..bytes.len() - 1]).unwrap();
    let err = p.run(&["eval", "--run", "runs/init"]).expect_code(1).stderr;
    assert!(
        err.contains("000/valid.index") && err.contains("--rebuild-cache"),
        "{err}"
    );
    assert!(cache(&p).contains("damaged"));
    p.run(&["inspect", "--rebuild-cache"]).expect_code(0);
    assert!(cache(&p).contains("(ready: "));
    let eval = eval_json(&p, "runs/init");
    // An untrained model is close to uniform over the 1,024-token vocabulary: ln 1024 ≈ 6.93.
    let mean = eval["mean_loss"].as_f64().unwrap();
    assert!((mean - 1024f64.ln()).abs() < 0.5, "{mean}");
}

#[test]
fn sweep_writes_a_run_table_that_regress_reads() {
    let p = ingested();
    let out = p
        .run(&["sweep", "-q", "--n", "4", "--steps", "3"])
        .expect_code(0);
    assert!(out.stdout.contains("runs.csv"), "{}", out.stdout);
    let runs = std::fs::read_to_string(p.path("out/sweep/runs.csv")).unwrap();
    let losses = std::fs::read_to_string(p.path("out/sweep/losses.csv")).unwrap();
    assert_eq!(runs.lines().count(), 5, "{runs}");
    assert!(
        runs.starts_with("index,arithmetic,code,prose,noise,duplicated"),
        "{runs}"
    );
    assert!(
        losses
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .all(|c| c.parse::<f64>().is_ok_and(f64::is_finite)),
        "{losses}"
    );
    // A second sweep finds every run finished and only rewrites the tables.
    p.run(&["sweep", "-q", "--n", "4", "--steps", "3"])
        .expect_code(0);
    let out = p
        .run(&[
            "regress",
            "--runs",
            "out/sweep/runs.csv",
            "--losses",
            "out/sweep/losses.csv",
            "--target",
            "mean",
            "--model",
            "linear",
        ])
        .expect_code(1);
    // Four runs cannot fill five cross-validation folds: the error says so.
    assert!(
        out.stderr
            .contains("5-fold cross-validation needs at least 5 runs"),
        "{}",
        out.stderr
    );
}

/// The matrix-product kernels each override names (every one this CPU runs) train the demo model to
/// the same validation losses within fp32 noise, and the training log names the kernels used.
#[test]
fn every_matrix_kernel_this_cpu_runs_trains_to_the_same_losses() {
    let p = ingested();
    let isas: Vec<&str> = [("avx512", "avx512f"), ("avx2", "fma"), ("portable", "")]
        .into_iter()
        .filter(|(_, feature)| match *feature {
            "" => true,
            #[cfg(target_arch = "x86_64")]
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            "fma" => {
                std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("avx2")
            }
            _ => false,
        })
        .map(|(isa, _)| isa)
        .collect();
    let mut losses = Vec::new();
    for isa in &isas {
        let run = format!("runs/{isa}");
        let mut cmd = p.command(&[
            "--log-format",
            "json",
            "train",
            "--run",
            &run,
            "--steps",
            "30",
        ]);
        cmd.env("MIXLAB_MATMUL_ISA", isa).env("RUST_LOG", "info");
        let out = cmd.output().expect("run mixlab");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains(&format!("\"matmul\":\"{isa}\"")),
            "{stderr}"
        );
        losses.push(eval_json(&p, &run)["mean_loss"].as_f64().unwrap());
    }
    println!("kernels {isas:?}: mean validation losses {losses:?}");
    for (isa, loss) in isas.iter().zip(&losses) {
        assert!(
            (loss - losses[0]).abs() < 2e-3,
            "{isa}: {loss} vs {}: {}",
            isas[0],
            losses[0]
        );
    }
}

/// Continuing an unfinished run with other settings is refused before anything is written.
#[test]
fn a_refused_resume_leaves_the_run_directory_as_it_was() {
    let p = ingested();
    p.run(&["train", "-q", "--run", "runs/a", "--steps", "100"])
        .expect_code(0);
    // Unfinished: a run killed after its checkpoint at step 100 of a longer schedule.
    std::fs::remove_file(p.path("out/runs/a/done")).unwrap();
    let config = std::fs::read(p.path("out/runs/a/config.toml")).unwrap();
    let out = p
        .run(&[
            "train", "-q", "--run", "runs/a", "--steps", "100", "--seed", "7",
        ])
        .expect_code(2);
    assert!(
        out.stderr
            .contains("unfinished run with other settings (train.seed 0 → 7)"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(p.path("out/runs/a/config.toml")).unwrap(),
        config
    );
    // Settings that do not change the result (how often it evaluates and saves) still resume it.
    let toml = std::fs::read_to_string(p.path("datasets.toml")).unwrap();
    let toml = toml.replace("eval_every = 100", "eval_every = 50").replace(
        "checkpoint_every = 100",
        "checkpoint_every = 50\nkeep_checkpoints = 3",
    );
    p.write("datasets.toml", toml);
    p.run(&["train", "-q", "--run", "runs/a", "--steps", "100"])
        .expect_code(0);
    assert!(p.path("out/runs/a/done").exists());
    let config = std::fs::read_to_string(p.path("out/runs/a/config.toml")).unwrap();
    assert!(config.contains("checkpoint_every = 50"), "{config}");
    // And a finished run with only such changes is already done.
    let toml = std::fs::read_to_string(p.path("datasets.toml")).unwrap();
    p.write(
        "datasets.toml",
        toml.replace("eval_every = 50", "eval_every = 25"),
    );
    let again = p
        .run(&["train", "--run", "runs/a", "--steps", "100"])
        .expect_code(0);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
}
