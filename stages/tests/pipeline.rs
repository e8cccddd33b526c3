//! A whole pipeline driven through `mixlab-stages` alone, without the binary: ingest, simulate,
//! mix, train, quantize and the report's input, on the embedded demo corpus at a tiny budget.

use std::path::{Path, PathBuf};

use mixlab_ingest::pipeline::{IngestOutcome, Progress};
use mixlab_ingest::verified::Verification;
use mixlab_stages::arms::SdmObjective;
use mixlab_stages::config::LoadedConfig;
use mixlab_stages::ingest::ingest;
use mixlab_stages::mix::{MixMethod, MixSpec, SdmSettings, mix};
use mixlab_stages::quantize::{QuantizeSpec, quantize};
use mixlab_stages::report::{ReportSource, report_input};
use mixlab_stages::simulate::{SimulateMethod, SimulateOutcome, SimulateSpec, simulate};
use mixlab_stages::train::{TrainSpec, train};
use mixlab_stages::workspace::Workspace;
use mixlab_trainer::downstream::distill::DistillSettings;

/// No progress shown.
struct Quiet;

impl Progress for Quiet {}

/// The repository's `datasets.toml` in `dir`, at a budget of seconds.
fn tiny_config(dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets.toml"))
            .expect("the repository's datasets.toml");
    let edits = [
        ("steps = 300\nbatch_size", "steps = 40\nbatch_size"),
        ("eval_every = 100", "eval_every = 20"),
        ("checkpoint_every = 100", "checkpoint_every = 20"),
        (
            "steps = 300\ncheckpoints = 10",
            "steps = 20\ncheckpoints = 2",
        ),
    ];
    let text = edits.iter().fold(text, |text, (from, to)| {
        assert!(text.contains(from), "datasets.toml lacks {from:?}");
        text.replace(from, to)
    });
    let path = dir.join("datasets.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_pipeline_runs_through_the_library_and_a_rerun_finds_every_stage_done() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path());
    let loaded = LoadedConfig::load(&config).unwrap();
    let workspace = Workspace {
        out: dir.path().join("out"),
        verification: Verification::Recorded,
        quiet: true,
    };

    let ingested = ingest(&workspace, &loaded, &Quiet).unwrap();
    assert!(matches!(ingested, IngestOutcome::Written(_)));
    assert_eq!(ingested.manifest().domains.len(), 5);

    let spec = SimulateSpec {
        config: config.clone(),
        method: SimulateMethod::Influence,
    };
    let SimulateOutcome::Utilities { path, rows, .. } = simulate(&workspace, &spec).unwrap() else {
        panic!("influence writes utilities");
    };
    assert!(path.exists() && !rows.is_empty());

    let mixture = workspace.path(Path::new("mixtures/sdm.toml"));
    let objective = SdmSettings {
        objective: SdmObjective::Proportional,
        temperature: 0.3,
        floor: 0.02,
    };
    let spec = MixSpec {
        method: MixMethod::Sdm {
            utilities: None,
            objective,
        },
        config: Some(loaded.clone()),
        output: Some(mixture.clone()),
    };
    let (schedule, written) = mix(&workspace, &spec).unwrap();
    assert_eq!(written, mixture);
    let weights = &schedule.stage[0].weights;
    assert_eq!(weights.len(), 5);
    assert!(
        (weights.values().sum::<f64>() - 1.0).abs() < 1e-9,
        "{weights:?}"
    );

    let run = TrainSpec {
        config: config.clone(),
        mixture: Some(mixture),
        run: PathBuf::from("runs/sdm"),
        preset: None,
        steps: None,
        seed: None,
        init_from: None,
    };
    let trained = train(&workspace, &run).unwrap().expect("a new run trains");
    let mean = |losses: &[mixlab_artefacts::eval::DomainLoss]| {
        losses.iter().map(|l| l.loss).sum::<f64>() / losses.len() as f64
    };
    // Below the entropy of a uniform guess over the 1,024-token vocabulary: it learned.
    assert!(mean(&trained) < (1024f64).ln(), "{trained:?}");

    let spec = QuantizeSpec {
        run: PathBuf::from("runs/sdm"),
        out_run: None,
        group_size: 32,
        qat_steps: 0,
        qat_lr: None,
        settings: DistillSettings {
            alpha: 1.0,
            temperature: 1.0,
        },
        int8_activations: false,
    };
    let rounded = quantize(&workspace, &spec)
        .unwrap()
        .expect("a new int4 run");
    assert!(
        (mean(&rounded) - mean(&trained)).abs() < 0.5,
        "{rounded:?} vs {trained:?}"
    );

    let runs = vec![PathBuf::from("runs/sdm"), PathBuf::from("runs/sdm-int4")];
    let input = report_input(&workspace, &ReportSource::Runs(runs), "library").unwrap();
    let arms: Vec<&str> = input.arms.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(arms, ["sdm", "sdm-int4"]);
    mixlab_reports::build(&input).unwrap();

    // Everything is up to date the second time.
    assert!(matches!(
        ingest(&workspace, &loaded, &Quiet).unwrap(),
        IngestOutcome::UpToDate(_)
    ));
    assert!(train(&workspace, &run).unwrap().is_none());
    assert!(quantize(&workspace, &spec).unwrap().is_none());
}
