//! `mixlab run`: the pipeline as one restartable batch job, and `mixlab report`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mixlab_artefacts::eval::read_eval;
use mixlab_artefacts::metrics::read_metrics;

use crate::util::{Project, Run};

/// The default configuration, made small: 40 proxy steps, 30 training steps a run.
fn project(pipeline: &str) -> Project {
    let p = Project::with_default_config();
    p.edit_config(
        "[simulate]\npreset = \"tiny\"\nsteps = 300\ncheckpoints = 10",
        "[simulate]\npreset = \"tiny\"\nsteps = 40\ncheckpoints = 4",
    );
    p.edit_config("[train]\nsteps = 300", "[train]\nsteps = 30");
    p.edit_config("checkpoint_every = 100", "checkpoint_every = 10");
    let toml = std::fs::read_to_string(p.path("datasets.toml")).unwrap();
    let at = toml.find("\n[run]").expect("datasets.toml has [run]");
    p.write("datasets.toml", format!("{}\n{pipeline}", &toml[..at]));
    p
}

const ABLATION: &str = r#"
[run]
seeds = [0, 1]
quantize = { group_size = 32 }

[[ablation]]
name = "sdm"

[[ablation]]
name = "uniform"
mix = "uniform"
"#;

fn stage_lines<'a>(run: &'a Run, what: &str) -> Vec<&'a str> {
    run.stdout
        .lines()
        .filter(|l| l.starts_with("== [") && l.contains(what))
        .collect()
}

#[test]
fn run_skips_what_is_up_to_date_and_reruns_what_a_change_touches() {
    let p = project(ABLATION);
    let first = p.run(&["run", "-q"]).expect_code(0);
    // simulate, 2 mixes, 4 trainings, 4 quantizations, the report.
    assert_eq!(stage_lines(&first, "mixlab ").len(), 12, "{}", first.stdout);
    let report = p.path("out/reports/datasets/report.html");
    assert!(
        first
            .stdout
            .contains("report: out/reports/datasets/report.html"),
        "{}",
        first.stdout
    );
    let html = std::fs::read_to_string(&report).unwrap();
    for text in [
        "sdm",
        "uniform",
        "Verdicts",
        "Final losses",
        "Domain utilities",
        "Stages",
        "quantize",
    ] {
        assert!(html.contains(text), "{text} missing from the report");
    }
    let md = std::fs::read_to_string(p.path("out/reports/datasets/report.md")).unwrap();
    assert!(
        md.contains("probe · mean: ") && md.contains("probe · targets: "),
        "{md}"
    );
    assert!(
        md.contains("the probe splits of arithmetic (1), code (1), prose (1)"),
        "{md}"
    );
    for figure in [
        "final-losses",
        "mixtures",
        "utilities",
        "curves-sdm",
        "curves-uniform",
    ] {
        let svg =
            std::fs::read_to_string(p.path(&format!("out/reports/datasets/{figure}.svg"))).unwrap();
        assert!(
            svg.contains("<svg") && md.contains(&format!("({figure}.svg)")),
            "{figure}"
        );
    }
    let int4 = read_eval(&p.path("out/runs/uniform-s1-int4/eval.parquet")).unwrap();
    assert!(!int4.is_empty());

    // Nothing changed: every stage is skipped, and says so in JSON lines.
    let mut json_run = p.command(&["--log-format", "json", "run"]);
    let again = Run::from(json_run.env("RUST_LOG", "info").output().unwrap()).expect_code(0);
    assert_eq!(
        stage_lines(&again, "up to date, skipped").len(),
        12,
        "{}",
        again.stdout
    );
    let events: Vec<serde_json::Value> = again
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let skipped = events
        .iter()
        .filter(|e| e["fields"]["event"] == "skipped")
        .count();
    assert_eq!(skipped, 12, "{}", again.stderr);

    // A [mix] change reruns the mixtures and everything after them, not the simulation.
    p.edit_config("max_epochs = 4.0", "max_epochs = 3.0");
    let changed = p.run(&["run", "-q"]).expect_code(0);
    assert_eq!(
        stage_lines(&changed, "simulate/influence: up to date").len(),
        1,
        "{}",
        changed.stdout
    );
    assert_eq!(
        stage_lines(&changed, "mixlab train").len(),
        4,
        "{}",
        changed.stdout
    );

    // --from quantize reruns the quantizations and the report only.
    let from = p.run(&["run", "-q", "--from", "quantize"]).expect_code(0);
    assert_eq!(
        stage_lines(&from, "up to date, skipped").len(),
        7,
        "{}",
        from.stdout
    );
    assert_eq!(
        stage_lines(&from, "mixlab quantize").len(),
        4,
        "{}",
        from.stdout
    );

    // The same tables as JSON.
    let json = p
        .run(&[
            "report",
            "--plan",
            "out/pipeline/plan.json",
            "--format",
            "json",
        ])
        .expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let finals = json["tables"]["final_losses"].as_array().unwrap();
    assert!(
        finals
            .iter()
            .any(|f| f["arm"] == "uniform" && f["seeds"] == 2)
    );
    assert!(
        json["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["domain"] == "mean")
    );

    check_in_browser(&report);

    // --force reruns every stage.
    let forced = p.run(&["run", "-q", "--force"]).expect_code(0);
    assert_eq!(
        stage_lines(&forced, "mixlab ").len(),
        12,
        "{}",
        forced.stdout
    );
}

/// Renders the report in headless Chromium: no console messages, every figure drawn.
fn check_in_browser(report: &Path) {
    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| which(c))
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs chromium for the report check (.ci/run installs it)"
        );
        println!("skipped the browser check of the report: no chromium on this machine");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let shot = profile.path().join("report.png");
    let url = format!("file://{}", report.display());
    let browser = |extra: &[&str]| {
        let output = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--enable-logging=stderr", "--v=0"])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    let dom = browser(&["--dump-dom"]);
    let (dom_text, log) = (
        String::from_utf8_lossy(&dom.stdout),
        String::from_utf8_lossy(&dom.stderr),
    );
    assert!(!log.contains("CONSOLE"), "console messages: {log}");
    let figures = dom_text.matches("<figure").count();
    assert!(figures >= 5, "{figures} figures");
    assert_eq!(dom_text.matches("<svg").count(), figures);
    assert!(
        dom_text.matches("<text").count() > 50,
        "figures without text"
    );
    browser(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1200,4000",
    ]);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}

fn which(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_stopped_or_killed_run_resumes_to_the_result_of_an_uninterrupted_one() {
    let single = "\n[run]\nname = \"main\"\nmix = \"uniform\"\n";
    let straight = project(single);
    straight.edit_config("[train]\nsteps = 30", "[train]\nsteps = 60");
    straight.run(&["run", "-q"]).expect_code(0);

    let p = project(single);
    p.edit_config("[train]\nsteps = 30", "[train]\nsteps = 60");
    // SIGINT: training stops after writing a checkpoint; exit code 130.
    let child = spawn_until(&p, "out/runs/main/checkpoints/step-20.json");
    signal(&child, libc::SIGINT);
    let stopped = Run::from(child.wait_with_output().unwrap()).expect_code(130);
    assert!(
        stopped.stderr.contains("stopped on request at step"),
        "{}",
        stopped.stderr
    );
    // A second job on the same directory is refused while one runs; SIGKILL leaves a stale lock.
    let mut child = spawn_until(&p, "out/runs/main/checkpoints/step-40.json");
    let refused = p.run(&["run", "-q"]).expect_code(1);
    assert!(
        refused
            .stderr
            .contains("another mixlab pipeline is writing here"),
        "{}",
        refused.stderr
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = p.run(&["run", "-q"]).expect_code(0);
    assert!(
        resumed.stdout.contains("mix/main: up to date, skipped"),
        "{}",
        resumed.stdout
    );
    let read = |p: &Project| {
        let run = p.path("out/runs/main");
        (
            read_eval(&run.join("eval.parquet")).unwrap(),
            read_metrics(&run.join("metrics.parquet")).unwrap(),
        )
    };
    assert_eq!(read(&p), read(&straight));
}

/// Starts `mixlab run -q` in `p` and returns once `file` exists.
fn spawn_until(p: &Project, file: &str) -> std::process::Child {
    let mut child = p
        .command(&["run", "-q"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !p.path(file).exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {file}"
        );
        assert!(started.elapsed() < Duration::from_secs(300), "no {file}");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn signal(child: &std::process::Child, signal: i32) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: sends a signal to our own child process.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0);
}

#[test]
fn bad_arms_are_configuration_errors_before_any_work() {
    let p = project("\n[[ablation]]\nmix = \"uniform\"\n");
    let run = p.run(&["run"]).expect_code(2);
    assert!(
        run.stderr
            .contains("[[ablation]] 1: every arm needs a `name`"),
        "{}",
        run.stderr
    );
    assert!(!p.path("out/shards").exists());
}

#[test]
fn every_section_the_job_reads_is_checked_before_any_work() {
    let cases: [(&str, &str, &str); 4] = [
        (
            "[model]\npreset = \"tiny\"",
            "[model]\npreset = \"tiny\"\nn_heads = 3",
            "[model]",
        ),
        (
            "checkpoints = 4",
            "checkpoints = 0",
            "[simulate].checkpoints",
        ),
        (
            "quantize = { group_size = 32 }",
            "quantize = { group_size = 48 }",
            "quantize.group_size",
        ),
        (
            "quantize = { group_size = 32 }",
            "quantize = { group_size = 32 }\ndistill = { preset = \"huge\" }",
            "unknown variant `huge`",
        ),
    ];
    for (from, to, expected) in cases {
        let p = project(ABLATION);
        p.edit_config(from, to);
        let run = p.run(&["run"]).expect_code(2);
        assert!(
            run.stderr.contains("datasets.toml") && run.stderr.contains(expected),
            "{to}: {}",
            run.stderr
        );
        assert!(
            !p.path("out/shards").exists(),
            "{to}: ingested before the check"
        );
    }
}
