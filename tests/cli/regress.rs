//! `mixlab regress` and `mixlab mix` on RegMix's public runs (a copy in tests/data/regmix).

use std::path::PathBuf;

use crate::util::Project;

const TARGET: &str = "metric/the_pile_pile_cc_val_loss";

fn regmix_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/regmix")
}

/// Test-set Spearman ρ (×100) per model, parsed from the `regress` table.
fn test_rho(stdout: &str) -> Vec<(String, f64)> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("model"))
        .skip(2)
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[0].to_owned(), cells[4].parse().unwrap())
        })
        .collect()
}

#[test]
fn regmix_rank_correlation_at_1m_and_60m() {
    let dir = regmix_dir();
    let p = Project::new();
    let f = |name: &str| dir.join(name).display().to_string();
    for scale in ["1m", "60m"] {
        let out = p
            .run(&[
                "regress",
                "--runs",
                &f("train_mixture_1m.csv"),
                "--losses",
                &f("train_pile_loss_1m.csv"),
                "--target",
                TARGET,
                "--normalize",
                "--model",
                "linear,gbm",
                "--test-runs",
                &f(&format!("test_mixture_{scale}.csv")),
                "--test-losses",
                &f(&format!("test_pile_loss_{scale}.csv")),
            ])
            .expect_code(0);
        let rho = test_rho(&out.stdout);
        let linear = rho.iter().find(|(m, _)| m == "linear").unwrap().1;
        let best = rho.iter().map(|(_, r)| *r).fold(f64::MIN, f64::max);
        assert!(linear >= 88.0, "{scale}: linear ρ {linear}\n{}", out.stdout);
        assert!(best >= 98.0, "{scale}: best ρ {best}\n{}", out.stdout);
    }
}

#[test]
fn mix_writes_a_regmix_mixture_favouring_pile_cc() {
    let dir = regmix_dir();
    let p = Project::new();
    let f = |name: &str| dir.join(name).display().to_string();
    let out = p
        .run(&[
            "mix",
            "--runs",
            &f("train_mixture_1m.csv"),
            "--losses",
            &f("train_pile_loss_1m.csv"),
            "--target",
            TARGET,
            "--normalize",
            "--samples",
            "20000",
            "--output",
            "mixture.toml",
        ])
        .expect_code(0);
    let text = std::fs::read_to_string(p.path("mixture.toml")).unwrap();
    let schedule: toml::Value = toml::from_str(&text).unwrap();
    let weights = schedule["stage"][0]["weights"].as_table().unwrap();
    let cc = weights["train_the_pile_pile_cc"].as_float().unwrap();
    let sum: f64 = weights.values().map(|v| v.as_float().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-6);
    assert!(cc > 0.5, "Pile-CC weight {cc}\n{}", out.stdout);
    assert_eq!(schedule["provenance"]["method"].as_str(), Some("regmix"));
}

/// `regress` on `runs.csv` and `losses.csv` of the project with `extra` arguments.
fn regress_local(p: &Project, target: &str, extra: &[&str]) -> crate::util::Run {
    let mut args = vec![
        "regress",
        "--runs",
        "runs.csv",
        "--losses",
        "losses.csv",
        "--target",
        target,
    ];
    args.extend_from_slice(extra);
    p.run(&args)
}

#[test]
fn malformed_run_tables_name_row_and_column() {
    let p = Project::new();
    p.write("runs.csv", "index,a,b\n1,0.5,0.5\n2,0.7,0.7\n");
    p.write("losses.csv", "index,loss\n1,3.0\n2,2.5\n");
    let out = regress_local(&p, "loss", &[]).expect_code(1);
    assert!(
        out.stderr.contains("row 2") && out.stderr.contains("sum to 1.4"),
        "{}",
        out.stderr
    );
    let out = regress_local(&p, "loss", &["--normalize"]).expect_code(1);
    assert!(out.stderr.contains("expected 1 ± 0.01"), "{}", out.stderr);
    p.write("runs.csv", "index,a,b\n1,0.5,0.5\n2,0.3,0.7\n");
    p.write("losses.csv", "index,loss\n1,3.0\n2,\n");
    let out = regress_local(&p, "loss", &[]).expect_code(1);
    assert!(
        out.stderr.contains("row 2, column \"loss\": loss is NaN"),
        "{}",
        out.stderr
    );
    let out = regress_local(&p, "nope", &[]).expect_code(2);
    assert!(out.stderr.contains("no column \"nope\""), "{}", out.stderr);
}
