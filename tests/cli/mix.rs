//! `mixlab mix` baselines on the demo shards, and epoch caps that are never dropped silently.

use crate::util::Project;

fn weights(p: &Project, file: &str) -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(p.path(file)).unwrap();
    let schedule: toml::Value = toml::from_str(&text).unwrap();
    schedule["stage"][0]["weights"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(d, w)| (d.clone(), w.as_float().unwrap()))
        .collect()
}

#[test]
fn baselines_follow_the_shards_token_counts() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    let manifest = mixlab_ingest::manifest::Manifest::read(&p.path("out/shards")).unwrap();
    let tokens = manifest.split_tokens(mixlab_artefacts::split::Split::Train);
    let total: u64 = tokens.iter().map(|(_, t)| t).sum();
    p.run(&["mix", "--method", "natural", "--output", "natural.toml"])
        .expect_code(0);
    for (domain, w) in weights(&p, "natural.toml") {
        let t = tokens.iter().find(|(d, _)| *d == domain).unwrap().1;
        assert!((w - t as f64 / total as f64).abs() < 1e-12, "{domain}: {w}");
    }
    p.run(&[
        "mix",
        "--method",
        "unimax",
        "--config",
        "datasets.toml",
        "--output",
        "unimax.toml",
    ])
    .expect_code(0);
    let unimax = weights(&p, "unimax.toml");
    assert!((unimax.iter().map(|(_, w)| w).sum::<f64>() - 1.0).abs() < 1e-9);
    let text = std::fs::read_to_string(p.path("unimax.toml")).unwrap();
    assert!(text.starts_with("format_version = 1"), "{text}");
    assert!(text.contains("method = \"unimax\""), "{text}");
    // The written schedule trains.
    p.run(&["train", "-q", "--mixture", "unimax.toml", "--steps", "0"])
        .expect_code(0);
}

#[test]
fn epoch_caps_without_shards_are_an_error_not_a_silent_fallback() {
    let p = Project::with_default_config();
    p.write(
        "runs.csv",
        "index,arithmetic,code\n1,0.5,0.5\n2,0.2,0.8\n3,0.9,0.1\n4,0.4,0.6\n5,0.7,0.3\n",
    );
    p.write(
        "losses.csv",
        "index,loss\n1,3.0\n2,3.3\n3,2.6\n4,3.1\n5,2.8\n",
    );
    let regmix = |extra: &[&str]| {
        let mut args = vec![
            "mix",
            "--runs",
            "runs.csv",
            "--losses",
            "losses.csv",
            "--target",
            "loss",
            "--model",
            "linear",
            "--samples",
            "2000",
            "--top-k",
            "8",
        ];
        args.extend_from_slice(extra);
        p.run(&args)
    };
    regmix(&[]).expect_code(0);
    let out = regmix(&["--config", "datasets.toml"]).expect_code(1);
    assert!(
        out.stderr.contains("token counts") && out.stderr.contains("mixlab ingest"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_own_domain_control_puts_the_weight_on_the_targets_domains() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&[
        "mix",
        "--method",
        "own",
        "--objective",
        "proportional",
        "--config",
        "datasets.toml",
        "--output",
        "own.toml",
    ])
    .expect_code(0);
    let own = weights(&p, "own.toml");
    let targets = ["arithmetic", "code", "prose"];
    let weight = |d: &str| own.iter().find(|(x, _)| x == d).unwrap().1;
    for (domain, w) in &own {
        if !targets.contains(&domain.as_str()) {
            assert!(targets.iter().all(|t| weight(t) > 5.0 * w), "{own:?}");
        }
    }
    let text = std::fs::read_to_string(p.path("own.toml")).unwrap();
    assert!(text.contains("method = \"own-proportional\""), "{text}");
    // Without --config there are no targets to take the domains from.
    let err = p.run(&["mix", "--method", "own"]).expect_code(2);
    assert!(err.stderr.contains("--config"), "{}", err.stderr);
}
