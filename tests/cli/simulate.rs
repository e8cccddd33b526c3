//! `mixlab simulate` and `mixlab mix --method sdm` on the demo corpus.

use std::collections::HashMap;

use mixlab_artefacts::mixture::read_mixture;
use mixlab_artefacts::utilities::{
    DomainUtility, JOINT_TARGET, read_document_utilities, read_utilities,
};

use crate::util::Project;

/// The default configuration with a shorter proxy run (100 steps, 4 checkpoints), so the test
/// takes seconds.
fn project() -> Project {
    project_with("gradients = \"training\"")
}

/// [`project`] with the default estimator: per-domain gradients through every parameter.
fn domain_project() -> Project {
    project_with("gradients = \"domain\"")
}

/// [`project`] scoring 24 sampled documents a domain at every checkpoint.
fn sampling_project() -> Project {
    project_with("gradients = \"sample\"\ncapture_steps = 8\ndocs_per_domain = 24")
}

/// The default configuration, its proxy run shortened, with `[simulate]`'s gradient settings
/// starting with `gradients`.
fn project_with(gradients: &str) -> Project {
    let p = Project::with_default_config();
    let config = std::fs::read_to_string(p.path("datasets.toml")).unwrap();
    let short = config.replacen(
        "[simulate]\npreset = \"tiny\"\nsteps = 300\ncheckpoints = 10\ngradients = \"domain\"\ndomain_sequences = 2\ntarget_sequences = 6\ncapture_steps = 8\ndocs_per_domain = 64",
        &format!("[simulate]\npreset = \"tiny\"\nsteps = 100\ncheckpoints = 4\n{gradients}"),
        1,
    );
    assert_ne!(
        config, short,
        "datasets.toml has the expected [simulate] table"
    );
    p.write("datasets.toml", short);
    p.run(&["ingest", "-q"]).expect_code(0);
    p
}

/// The domain with the lowest utility.
fn lowest(utilities: &HashMap<String, f64>) -> &str {
    let (domain, _) = utilities
        .iter()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .expect("utilities of some domain");
    domain
}

/// The domain most useful for `target` over all checkpoints.
fn best_domain<'a>(rows: &'a [DomainUtility], target: &str) -> &'a str {
    rows.iter()
        .filter(|u| u.target == target && u.checkpoint_step.is_none())
        .max_by(|a, b| a.utility.total_cmp(&b.utility))
        .map(|u| u.domain.as_str())
        .expect("a utility for the target")
}

/// Joint utility per domain over all checkpoints.
fn joint(p: &Project) -> HashMap<String, f64> {
    read_utilities(&p.path("out/simulate/utilities.parquet"))
        .unwrap()
        .into_iter()
        .filter(|u| u.target == JOINT_TARGET && u.checkpoint_step.is_none())
        .map(|u| (u.domain, u.utility))
        .collect()
}

/// The joint utilities, after checking that noise has the lowest and that arithmetic and code
/// each help their own probe set more than any other domain does.
fn noise_last_and_targets_first(p: &Project) -> HashMap<String, f64> {
    let utilities = joint(p);
    println!("joint utilities: {utilities:?}");
    assert_eq!(utilities.len(), 5, "{utilities:?}");
    assert_eq!(lowest(&utilities), "noise", "{utilities:?}");
    let rows = read_utilities(&p.path("out/simulate/utilities.parquet")).unwrap();
    for target in ["arithmetic", "code"] {
        assert_eq!(best_domain(&rows, target), target, "{rows:?}");
    }
    utilities
}

#[test]
fn simulate_ranks_the_noise_domain_last_and_resumes_without_rescoring() {
    let p = sampling_project();
    let out = p.run(&["simulate", "-q"]).expect_code(0);
    assert!(
        out.stdout.contains("joint") && out.stdout.contains("noise"),
        "{}",
        out.stdout
    );
    let utilities = noise_last_and_targets_first(&p);
    let documents =
        read_document_utilities(&p.path("out/simulate/document_utilities.parquet")).unwrap();
    assert_eq!(
        documents.len(),
        5 * 24 * 3 * 4,
        "domains × documents × targets × checkpoints"
    );

    // A rerun skips the finished proxy and reuses every scored checkpoint (parts untouched) ...
    let parts: Vec<_> = walk(&p.path("out/simulate/scores"));
    assert_eq!(parts.len(), 4, "{parts:?}");
    let times = |files: &[std::path::PathBuf]| -> Vec<_> {
        files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().modified().unwrap())
            .collect()
    };
    let before = times(&parts);
    let again = p.run(&["simulate", "-q"]).expect_code(0);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert_eq!(times(&parts), before);
    assert_eq!(joint(&p), utilities);
    // ... and a lost part (a run killed while scoring) is recomputed to the same values.
    std::fs::remove_file(&parts[2]).unwrap();
    p.run(&["simulate", "-q"]).expect_code(0);
    assert_eq!(joint(&p), utilities);

    // The mixer turns the utilities into a mixture that gives noise the least weight.
    let mix = p
        .run(&[
            "mix",
            "--method",
            "sdm",
            "--config",
            "datasets.toml",
            "--output",
            "sdm.toml",
        ])
        .expect_code(0);
    assert!(
        mix.stdout.contains("joint utility of the mixture"),
        "{}",
        mix.stdout
    );
    let schedule: toml::Value =
        toml::from_str(&std::fs::read_to_string(p.path("sdm.toml")).unwrap()).unwrap();
    let weights = schedule["stage"][0]["weights"].as_table().unwrap();
    let w = |d: &str| weights[d].as_float().unwrap();
    assert!((weights.values().map(|v| v.as_float().unwrap()).sum::<f64>() - 1.0).abs() < 1e-6);
    assert!(
        ["arithmetic", "code", "prose"]
            .iter()
            .all(|d| w(d) > w("noise")),
        "{weights:?}"
    );
    assert_eq!(
        schedule["provenance"]["method"].as_str(),
        Some("sdm-utilimax")
    );

    // [[mix.stage]] gives one stage per entry, each from the checkpoints of its part of the run:
    // a first stage of one token takes the earliest checkpoint's utilities only.
    let config = std::fs::read_to_string(p.path("datasets.toml")).unwrap();
    let staged = |early: &str| {
        let stages = format!(
            "[mix]\nmax_epochs = 4.0\n\n[[mix.stage]]\nname = \"early\"\ntokens = {early}\n\n[[mix.stage]]\nname = \"late\"\nlr = 0.001\n"
        );
        config.replacen("[mix]\nmax_epochs = 4.0\n", &stages, 1)
    };
    p.write("staged.toml", staged("1"));
    let args = [
        "mix",
        "-q",
        "--method",
        "sdm",
        "--config",
        "staged.toml",
        "--output",
        "staged-mix.toml",
    ];
    p.run(&args).expect_code(0);
    let schedule = read_mixture(&p.path("staged-mix.toml")).unwrap();
    let names: Vec<_> = schedule
        .stage
        .iter()
        .map(|s| (s.name.as_str(), s.tokens, s.lr))
        .collect();
    assert_eq!(
        names,
        [("early", Some(1), None), ("late", None, Some(0.001))]
    );
    for stage in &schedule.stage {
        assert!(
            (stage.weights.values().sum::<f64>() - 1.0).abs() < 1e-6,
            "{schedule:?}"
        );
        assert!(
            stage.weights["noise"] < stage.weights["arithmetic"],
            "{schedule:?}"
        );
    }
    assert_ne!(schedule.stage[0].weights, schedule.stage[1].weights);
    // A first stage longer than the whole run is refused, naming it.
    p.write("staged.toml", staged("1000000000"));
    let out = p.run(&args).expect_code(2);
    assert!(
        out.stderr.contains("[[mix.stage]] 1") && out.stderr.contains("past the end"),
        "{}",
        out.stderr
    );

    // Another [simulate] configuration trains a proxy of its own beside the first.
    let config = std::fs::read_to_string(p.path("datasets.toml")).unwrap();
    let reseeded = config.replacen("projection = 32\nseed = 0", "projection = 32\nseed = 1", 1);
    assert_ne!(config, reseeded);
    p.write("datasets.toml", reseeded);
    p.run(&["simulate", "-q"]).expect_code(0);
    let proxies = std::fs::read_dir(p.path("out/simulate/proxy"))
        .unwrap()
        .count();
    assert_eq!(proxies, 2);
}

#[test]
fn simulate_refuses_a_target_naming_no_domain() {
    let p = Project::with_default_config();
    let config = std::fs::read_to_string(p.path("datasets.toml")).unwrap();
    p.write(
        "bad.toml",
        config.replacen("probe = \"code\"", "probe = \"cod\"", 1),
    );
    p.run(&["ingest", "-q"]).expect_code(0);
    let out = p.run(&["simulate", "--config", "bad.toml"]).expect_code(2);
    assert!(
        out.stderr.contains("[simulate].target[1].probe")
            && out.stderr.contains("did you mean \"code\""),
        "{}",
        out.stderr
    );
    assert!(
        !p.path("out/simulate").exists(),
        "nothing trained before the check"
    );
}

/// Every file under `dir`, sorted.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files.sort_by_key(|f| {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        name.trim_start_matches("step-")
            .trim_end_matches(".parquet")
            .parse::<u64>()
            .unwrap_or(0)
    });
    files
}

#[test]
fn simulate_scores_the_proxys_own_batches_and_a_killed_run_resumes_to_the_same_scores() {
    let p = project();
    p.run(&["simulate", "-q"]).expect_code(0);
    let utilities = joint(&p);
    println!("joint utilities: {utilities:?}");
    assert_eq!(lowest(&utilities), "noise", "{utilities:?}");
    let rows = read_utilities(&p.path("out/simulate/utilities.parquet")).unwrap();
    for target in ["arithmetic", "code", "prose"] {
        let best = best_domain(&rows, target);
        // Prose's best may be its duplicated notices, prose under another name.
        assert!(
            best == target || (target, best) == ("prose", "duplicated"),
            "{target}: {rows:?}"
        );
    }
    // Every document was trained in the 8 steps before the checkpoint it is scored at (25 steps
    // apart), once per target; nothing is scored twice at one checkpoint.
    let documents =
        read_document_utilities(&p.path("out/simulate/document_utilities.parquet")).unwrap();
    let mut steps: Vec<u64> = documents.iter().map(|d| d.checkpoint_step).collect();
    steps.dedup();
    assert_eq!(steps, [25, 50, 75, 100]);
    let mut keys: Vec<_> = documents
        .iter()
        .map(|d| {
            (
                d.checkpoint_step,
                d.target.clone(),
                d.domain.clone(),
                d.doc_id,
            )
        })
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n);
    assert!(
        documents
            .iter()
            .all(|d| d.tokens > 0 && !d.source.is_empty())
    );
    for domain in ["arithmetic", "code", "prose", "noise", "duplicated"] {
        let scored = documents
            .iter()
            .filter(|d| d.domain == domain && d.target == "code" && d.checkpoint_step == 100)
            .count();
        assert!(scored >= 2, "{domain}: {scored} documents at step 100");
    }
    // The scores are made while the proxy trains and kept beside its checkpoints.
    let parts: Vec<_> = walk(&p.path("out/simulate/proxy"))
        .into_iter()
        .filter(|f| f.parent().unwrap().ends_with("scores"))
        .collect();
    assert_eq!(parts.len(), 4, "{parts:?}");

    // Killed after its second checkpoint, the run resumes from it, captures the batches after it
    // again and ends with the same scores.
    std::fs::remove_dir_all(p.path("out/simulate")).unwrap();
    let mut child = p.command(&["simulate", "-q"]).spawn().unwrap();
    let started = std::time::Instant::now();
    let second = || {
        let proxies = p.path("out/simulate/proxy");
        proxies.exists()
            && walk(&proxies)
                .iter()
                .any(|f| f.ends_with("checkpoints/step-50.json"))
    };
    while !second() && started.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !p.path("out/simulate/utilities.parquet").exists(),
        "the run finished before it could be killed"
    );
    let again = p.run(&["simulate", "-q"]).expect_code(0);
    assert!(!again.stdout.contains("nothing to do"), "{}", again.stdout);
    let resumed =
        read_document_utilities(&p.path("out/simulate/document_utilities.parquet")).unwrap();
    assert_eq!(resumed.len(), documents.len());
    for (a, b) in resumed.iter().zip(&documents) {
        assert_eq!(
            (&a.domain, a.doc_id, &a.target, a.checkpoint_step, a.tokens),
            (&b.domain, b.doc_id, &b.target, b.checkpoint_step, b.tokens)
        );
        assert!(
            (a.utility - b.utility).abs() <= 1e-6 * b.utility.abs().max(1.0),
            "{a:?} vs {b:?}"
        );
    }

    // Scores whose part file is gone cannot be made again without training: the error says how.
    std::fs::remove_file(&parts[1]).unwrap();
    let out = p.run(&["simulate", "-q"]).expect_code(1);
    assert!(
        out.stderr.contains("step-50.parquet: missing") && out.stderr.contains("remove"),
        "{}",
        out.stderr
    );
}

/// The Spearman ρ between influence and leave-one-out that `simulate --method loo` prints.
fn loo_agreement(stdout: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("Spearman ρ of the joint utilities, influence vs leave-one-out: ")
        })
        .unwrap_or_else(|| panic!("{stdout}"))
        .parse()
        .unwrap()
}

#[test]
fn leave_one_out_finds_arithmetic_and_code_useful_and_noise_worst() {
    let p = project();
    p.run(&["simulate", "-q"]).expect_code(0);
    let out = p.run(&["simulate", "-q", "--method", "loo"]).expect_code(0);
    // The influence estimates rank the domains as leave-one-out does.
    let rho = loo_agreement(&out.stdout);
    assert!(rho >= 0.6, "Spearman ρ {rho}");
    assert!(
        out.stdout.contains("loo_utilities.parquet"),
        "{}",
        out.stdout
    );
    let rows = read_utilities(&p.path("out/simulate/loo_utilities.parquet")).unwrap();
    let joint: HashMap<String, f64> = rows
        .into_iter()
        .filter(|u| u.target == JOINT_TARGET)
        .map(|u| (u.domain, u.utility))
        .collect();
    println!("leave-one-out joint utilities: {joint:?}");
    assert_eq!(joint.len(), 5, "{joint:?}");
    // Arithmetic and code have no stand-in among the other domains; prose has one (the
    // duplicated notices), so its leave-one-out utility is near zero. Noise only hurts.
    for domain in ["arithmetic", "code"] {
        assert!(joint[domain] > 0.0, "{joint:?}");
    }
    let lowest = joint.iter().min_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    assert_eq!(lowest, "noise", "{joint:?}");
    // One proxy without each domain, beside the uniform one.
    for domain in ["arithmetic", "code", "prose", "noise", "duplicated"] {
        let runs = walk(&p.path(&format!("out/simulate/loo/{domain}")));
        assert!(
            runs.iter().any(|f| f.ends_with("done")),
            "{domain}: {runs:?}"
        );
    }
}

#[test]
fn the_default_estimator_ranks_noise_last_agrees_with_leave_one_out_and_resumes() {
    let p = domain_project();
    p.run(&["simulate", "-q"]).expect_code(0);
    let utilities = noise_last_and_targets_first(&p);
    // One row per sequence, target and checkpoint.
    let sequences =
        read_document_utilities(&p.path("out/simulate/document_utilities.parquet")).unwrap();
    assert_eq!(
        sequences.len(),
        5 * 2 * 3 * 4,
        "domains × sequences × targets × checkpoints"
    );
    // A lost part (a run killed while scoring) is recomputed to the same values.
    let parts = walk(&p.path("out/simulate/scores"));
    assert_eq!(parts.len(), 4, "{parts:?}");
    std::fs::remove_file(&parts[1]).unwrap();
    p.run(&["simulate", "-q"]).expect_code(0);
    assert_eq!(joint(&p), utilities);
    let out = p.run(&["simulate", "-q", "--method", "loo"]).expect_code(0);
    let rho = loo_agreement(&out.stdout);
    assert!(rho >= 0.6, "Spearman ρ {rho}\n{}", out.stdout);
}

#[test]
fn a_target_can_be_a_jsonl_file_whose_bad_lines_are_named() {
    let p = project();
    let config = std::fs::read_to_string(p.path("datasets.toml")).unwrap();
    let with_file = config.replacen(
        "name = \"arithmetic\"\nprobe = \"arithmetic\"",
        "name = \"arithmetic\"\npath = \"probes.jsonl\"",
        1,
    );
    assert_ne!(config, with_file);
    p.write("files.toml", with_file);
    p.write(
        "probes.jsonl",
        "{\"text\": \"Ava has 3 apples and buys 2 more. How many now? 5\"}\n{\"txt\": 1}\n",
    );
    let out = p
        .run(&["simulate", "--config", "files.toml"])
        .expect_code(2);
    assert!(
        out.stderr.contains("probes.jsonl: line 2") && out.stderr.contains("\"text\""),
        "{}",
        out.stderr
    );
    assert!(
        !p.path("out/simulate").exists(),
        "nothing trained before the check"
    );
    p.write(
        "probes.jsonl",
        "{\"text\": \"Ava has 3 apples and buys 2 more. How many now? 5\"}\n{\"text\": \"Tom had 10 pens and gave away 4. How many are left? 6\"}\n",
    );
    p.run(&["simulate", "-q", "--config", "files.toml"])
        .expect_code(0);
    let rows = read_utilities(&p.path("out/simulate/utilities.parquet")).unwrap();
    let scored = rows
        .iter()
        .filter(|u| u.target == "arithmetic" && u.checkpoint_step.is_none())
        .count();
    assert_eq!(scored, 5, "{rows:?}");
}

#[test]
fn doremi_downweights_the_noise_domain_and_mix_uses_its_average_weights() {
    let p = project();
    let out = p
        .run(&["simulate", "-q", "--method", "doremi"])
        .expect_code(0);
    assert!(out.stdout.contains("doremi.toml"), "{}", out.stdout);
    let weights = read_mixture(&p.path("out/simulate/doremi.toml")).unwrap();
    assert_eq!(weights.provenance.method, "doremi");
    assert_eq!(
        weights.provenance.settings["updates"], "100",
        "one update a step"
    );
    let average = &weights.stage[0].weights;
    println!("DoReMi weights: {average:?}");
    assert!((average.values().sum::<f64>() - 1.0).abs() < 1e-9);
    // Random tokens cannot be learned: the proxy's loss there never exceeds the reference's.
    let lowest = average.iter().min_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    assert_eq!(lowest, "noise", "{average:?}");
    assert!(average["noise"] < 0.2, "{average:?}");
    // The reference is the uniform simulation proxy, trained once for both.
    assert_eq!(
        walk(&p.path("out/simulate/proxy"))
            .iter()
            .filter(|f| f.ends_with("done"))
            .count(),
        1
    );

    // A rerun finds both runs finished and recovers the weights from the DoReMi checkpoint.
    let again = p
        .run(&["simulate", "-q", "--method", "doremi"])
        .expect_code(0);
    assert!(
        again.stdout.contains("already finished"),
        "{}",
        again.stdout
    );
    assert_eq!(
        read_mixture(&p.path("out/simulate/doremi.toml")).unwrap(),
        weights
    );

    p.run(&["mix", "-q", "--method", "doremi"]).expect_code(0);
    let mixture = read_mixture(&p.path("out/mixture.toml")).unwrap();
    assert_eq!(&mixture.stage[0].weights, average);
    assert!(mixture.provenance.inputs.contains_key("doremi_weights"));
    // Another kind of mixture file is not taken for DoReMi weights.
    p.run(&[
        "mix",
        "-q",
        "--method",
        "uniform",
        "--output",
        "uniform.toml",
    ])
    .expect_code(0);
    let out = p
        .run(&["mix", "--method", "doremi", "--doremi", "uniform.toml"])
        .expect_code(2);
    assert!(
        out.stderr.contains("uniform.toml") && out.stderr.contains("\"uniform\""),
        "{}",
        out.stderr
    );
}
