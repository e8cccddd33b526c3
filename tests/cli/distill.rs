//! `mixlab distill`: a student run trained towards a finished teacher run.

use mixlab_artefacts::eval::read_eval;
use mixlab_artefacts::split::Split;

use crate::util::Project;

/// Mean validation loss of a finished run.
fn valid_loss(p: &Project, run: &str) -> f64 {
    let losses = read_eval(&p.path(&format!("out/{run}/eval.parquet"))).unwrap();
    let valid: Vec<f64> = losses
        .iter()
        .filter(|l| l.split == Split::Valid)
        .map(|l| l.loss)
        .collect();
    valid.iter().sum::<f64>() / valid.len() as f64
}

#[test]
fn a_student_learns_from_the_teacher_alone_and_a_rerun_does_nothing() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/teacher", "--steps", "60"])
        .expect_code(0);
    // alpha = 1: the student never sees the data's next tokens, only the teacher's distributions.
    let distill = [
        "distill",
        "-q",
        "--teacher",
        "runs/teacher",
        "--run",
        "runs/student",
        "--steps",
        "60",
        "--alpha",
        "1",
    ];
    p.run(&distill).expect_code(0);
    let (teacher, student) = (
        valid_loss(&p, "runs/teacher"),
        valid_loss(&p, "runs/student"),
    );
    let uniform = 1024f64.ln();
    // The soft targets (τ = 2) teach more slowly than the data: 60 steps take the student from
    // ln 1024 = 6.93 to about 4.6 nats, where the teacher reached about 3.5.
    assert!(
        student < uniform - 1.5 && student > teacher,
        "student {student}, teacher {teacher}, uniform {uniform}"
    );
    let config = std::fs::read_to_string(p.path("out/runs/student/config.toml")).unwrap();
    let teacher_hash = p.run_hash("runs/teacher");
    assert!(
        config.contains("[distill]")
            && config.contains(&format!("teacher_run_hash = \"{teacher_hash}\"")),
        "{config}"
    );

    let again = p.run(&distill).expect_code(0);
    assert!(
        again.stdout.contains("already finished"),
        "{}",
        again.stdout
    );
    let mut other = distill.to_vec();
    *other.last_mut().unwrap() = "0.5";
    let refused = p.run(&other).expect_code(2);
    assert!(
        refused.stderr.contains("distill.settings.alpha 1.0 → 0.5"),
        "{}",
        refused.stderr
    );
}

#[test]
fn an_unfinished_teacher_another_tokenizer_and_bad_settings_are_refused() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/teacher", "--steps", "4"])
        .expect_code(0);
    let student = [
        "distill",
        "-q",
        "--teacher",
        "runs/teacher",
        "--run",
        "runs/s",
        "--steps",
        "4",
    ];
    for (flags, expected) in [
        (
            ["--alpha", "1.5"],
            "alpha = 1.5: expected a number from 0 to 1",
        ),
        (
            ["--temperature", "0"],
            "temperature = 0: expected a positive number",
        ),
        (["--alpha", "NaN"], "alpha = NaN"),
    ] {
        let out = p.run(&[&student[..], &flags[..]].concat()).expect_code(2);
        assert!(out.stderr.contains(expected), "{flags:?}: {}", out.stderr);
    }

    let config = p.path("out/runs/teacher/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("tokenizer_sha256"))
        .unwrap();
    std::fs::write(&config, text.replace(line, "tokenizer_sha256 = \"0123\"")).unwrap();
    let out = p.run(&student).expect_code(2);
    assert!(
        out.stderr
            .contains("trained with another tokenizer (sha256 0123)"),
        "{}",
        out.stderr
    );

    std::fs::write(&config, &text).unwrap();
    std::fs::remove_file(p.path("out/runs/teacher/done")).unwrap();
    let out = p.run(&student).expect_code(2);
    assert!(
        out.stderr
            .contains("--teacher runs/teacher: the run in out/runs/teacher has not finished"),
        "{}",
        out.stderr
    );
    assert!(
        !p.path("out/runs/s").exists(),
        "a refused run left a directory"
    );
}
