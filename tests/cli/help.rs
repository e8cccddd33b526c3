//! `--help` of every subcommand, pinned by snapshots, and exit codes of usage errors.
//!
//! Snapshots live in `tests/cli/snapshots/`; after a deliberate change to the CLI, regenerate them
//! with `MIXLAB_UPDATE_SNAPSHOTS=1 cargo test --test cli help` and review the diff.

use std::path::PathBuf;

use crate::util::Project;

/// Every subcommand, nested ones as "parent child".
const SUBCOMMANDS: [&str; 23] = [
    "run",
    "report",
    "ingest",
    "inspect",
    "demo-data",
    "train",
    "distill",
    "quantize",
    "merge",
    "eval",
    "export",
    "score",
    "generate",
    "passkey",
    "passkey make",
    "passkey eval",
    "cluster",
    "cluster scheduler",
    "cluster executor",
    "regress",
    "mix",
    "sweep",
    "simulate",
];

/// Compares `actual` with the snapshot `name`, or rewrites it in update mode.
fn assert_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cli/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("MIXLAB_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing; run with MIXLAB_UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} --help differs from {} at line {}:\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            first + 1
        );
    }
}

#[test]
fn help_of_every_subcommand_matches_its_snapshot() {
    let p = Project::new();
    let out = p.run(&["--help"]).expect_code(0);
    assert_snapshot("mixlab", &out.stdout);
    for sub in SUBCOMMANDS {
        let mut args: Vec<&str> = sub.split(' ').collect();
        args.push("--help");
        let sub_help = p.run(&args).expect_code(0);
        assert_snapshot(&sub.replace(' ', "-"), &sub_help.stdout);
    }
}

#[test]
fn help_lists_subcommands_exit_codes_and_choices() {
    let p = Project::new();
    let out = p.run(&["--help"]).expect_code(0);
    for sub in SUBCOMMANDS.iter().filter(|s| !s.contains(' ')) {
        assert!(
            out.stdout.contains(sub),
            "--help lacks {sub}:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("Exit codes: 0 success"),
        "{}",
        out.stdout
    );
    let train = p.run(&["train", "--help"]).expect_code(0).stdout;
    assert!(
        train.contains("mobilellm-pro") && train.contains("--out"),
        "{train}"
    );
    let mix = p.run(&["mix", "--help"]).expect_code(0).stdout;
    assert!(
        mix.contains("unimax") && mix.contains("--prior-file"),
        "{mix}"
    );
}

#[test]
fn unknown_flag_and_value_are_usage_errors() {
    let p = Project::new();
    let out = p.run(&["ingest", "--no-such-flag"]).expect_code(2);
    assert!(out.stderr.contains("--no-such-flag"), "{}", out.stderr);
    let out = p.run(&["train", "--preset", "huge"]).expect_code(2);
    assert!(out.stderr.contains("tiny"), "{}", out.stderr);
}
