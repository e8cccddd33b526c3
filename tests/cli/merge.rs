//! `mixlab merge`: specialists annealed from one run, merged by averaging their weights.

use mixlab_artefacts::eval::{DomainLoss, read_eval};
use mixlab_artefacts::split::Split;

use crate::util::{Project, Run};

const SPECIALISTS: &str = r#"steps = 20
lr = 1e-3

[[specialist]]
name = "arith"
weights = { arithmetic = 0.7, code = 0.1, prose = 0.1, duplicated = 0.1 }

[[specialist]]
name = "code"
weights = { code = 0.7, arithmetic = 0.1, prose = 0.1, duplicated = 0.1 }

[[specialist]]
name = "prose"
mixture = "prose.toml"
"#;

const PROSE_MIXTURE: &str = r#"format_version = 1

[[stage]]
name = "main"

[stage.weights]
prose = 0.7
arithmetic = 0.1
code = 0.1
duplicated = 0.1

[provenance]
method = "by hand"
"#;

/// `mixlab merge --base runs/base --specialists specialists.toml` and `extra` arguments.
fn merge(p: &Project, extra: &[&str]) -> Run {
    let mut args = vec![
        "merge",
        "--base",
        "runs/base",
        "--specialists",
        "specialists.toml",
    ];
    args.extend_from_slice(extra);
    p.run(&args)
}

fn mean(losses: &[DomainLoss], split: Split) -> f64 {
    let split: Vec<f64> = losses
        .iter()
        .filter(|l| l.split == split)
        .map(|l| l.loss)
        .collect();
    split.iter().sum::<f64>() / split.len() as f64
}

fn valid(losses: &[DomainLoss], domain: &str) -> f64 {
    losses
        .iter()
        .find(|l| l.split == Split::Valid && l.domain == domain)
        .unwrap()
        .loss
}

#[test]
fn specialists_learn_their_domains_and_their_average_beats_each_of_them() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/base", "--steps", "120"])
        .expect_code(0);
    p.write("specialists.toml", SPECIALISTS);
    p.write("prose.toml", PROSE_MIXTURE);
    let out = merge(&p, &["-q"]).expect_code(0);
    assert!(out.stdout.contains("merged (uniform)"), "{}", out.stdout);
    let eval = |run: &str| read_eval(&p.path(&format!("out/runs/{run}/eval.parquet"))).unwrap();
    let (base, merged) = (eval("base"), eval("base-merged"));
    let specialists = [eval("base-arith"), eval("base-code"), eval("base-prose")];
    // Each specialist moved towards its own domain, from the same start.
    for (s, domain) in specialists.iter().zip(["arithmetic", "code", "prose"]) {
        let others = specialists.iter().filter(|o| !std::ptr::eq(*o, s));
        for other in others {
            assert!(valid(s, domain) < valid(other, domain), "{domain}");
        }
    }
    // The average of all three is better than any one of them overall.
    for s in &specialists {
        assert!(
            mean(&merged, Split::Valid) < mean(s, Split::Valid),
            "{}",
            out.stdout
        );
    }
    assert_ne!(mean(&merged, Split::Valid), mean(&base, Split::Valid));
    let config = std::fs::read_to_string(p.path("out/runs/base-merged/config.toml")).unwrap();
    assert!(
        config.contains("[merge]") && config.contains("method = \"uniform\""),
        "{config}"
    );
    assert!(!p.path("out/runs/base-merged/init.bpk").exists());
    let spec_config = std::fs::read_to_string(p.path("out/runs/base-code/config.toml")).unwrap();
    assert!(spec_config.contains("[init]"), "{spec_config}");

    // A rerun trains and merges nothing again.
    let again = merge(&p, &["-q"]).expect_code(0);
    assert_eq!(
        again.stdout.matches("nothing to do").count(),
        4,
        "{}",
        again.stdout
    );

    // Searched weights do at least as well as equal ones on what they minimise.
    let searched = merge(
        &p,
        &[
            "-q",
            "--weights",
            "search",
            "--search-iters",
            "8",
            "--run",
            "runs/searched",
        ],
    )
    .expect_code(0);
    assert!(
        searched.stdout.contains("merged (search)"),
        "{}",
        searched.stdout
    );
    assert!(mean(&eval("searched"), Split::Valid) <= mean(&merged, Split::Valid) + 1e-9);
    // Given weights all on one specialist give back that specialist's losses.
    merge(&p, &["-q", "--weights", "0,1,0", "--run", "runs/code-only"]).expect_code(0);
    let (code_only, code) = (eval("code-only"), &specialists[1]);
    for (a, b) in code_only.iter().zip(code) {
        assert!((a.loss - b.loss).abs() < 1e-5, "{a:?} vs {b:?}");
    }
}

#[test]
fn bad_specialists_and_weights_are_refused_before_training() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/base", "--steps", "5"])
        .expect_code(0);
    let cases = [
        (
            SPECIALISTS.replace("name = \"code\"", "name = \"arith\""),
            "repeats",
        ),
        (SPECIALISTS.replace("steps = 20", "steps = 0"), "steps = 0"),
        (
            SPECIALISTS.replace("arithmetic = 0.7", "arithmetc = 0.7"),
            "did you mean \"arithmetic\"",
        ),
        (
            SPECIALISTS.replace("mixture = \"prose.toml\"", ""),
            "exactly one of weights",
        ),
        (
            SPECIALISTS.replace("name = \"prose\"", "name = \"../x\""),
            "names a run directory",
        ),
        (
            SPECIALISTS.replace("lr = 1e-3", "lr = 1e-3\nepochs = 2"),
            "epochs",
        ),
    ];
    p.write("prose.toml", PROSE_MIXTURE);
    for (text, expected) in cases {
        p.write("specialists.toml", text);
        let out = merge(&p, &[]).expect_code(2);
        assert!(out.stderr.contains(expected), "{expected}: {}", out.stderr);
        assert!(!p.path("out/runs/base-arith").exists(), "nothing trained");
    }
    p.write("specialists.toml", SPECIALISTS);
    let two_stages = PROSE_MIXTURE.replace(
        "[provenance]",
        "[[stage]]\nname = \"anneal\"\nweights = { prose = 1.0 }\n\n[provenance]",
    );
    let stageless = "stage = []\n[provenance]\nmethod = \"by hand\"\n";
    for (mixture, expected) in [
        (two_stages.as_str(), "has 2 stages"),
        (stageless, "at least one [[stage]]"),
    ] {
        p.write("prose.toml", mixture);
        let out = merge(&p, &[]).expect_code(2);
        assert!(
            out.stderr.contains("prose.toml") && out.stderr.contains(expected),
            "{expected}: {}",
            out.stderr
        );
    }
    p.write("prose.toml", PROSE_MIXTURE);
    let out = merge(&p, &["--weights", "1,2"]).expect_code(2);
    assert!(out.stderr.contains("3 numbers"), "{}", out.stderr);
    let out = p
        .run(&[
            "merge",
            "--base",
            "runs/missing",
            "--specialists",
            "specialists.toml",
        ])
        .expect_code(2);
    assert!(out.stderr.contains("runs/missing"), "{}", out.stderr);
}
