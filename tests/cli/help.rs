//! `--help` of every subcommand, and exit codes of usage errors.

use crate::util::Project;

#[test]
fn help_lists_subcommands_and_exit_codes() {
    let p = Project::new();
    let out = p.run(&["--help"]).expect_code(0);
    for sub in [
        "ingest",
        "inspect",
        "demo-data",
        "train",
        "eval",
        "generate",
        "regress",
        "mix",
        "sweep",
    ] {
        assert!(
            out.stdout.contains(sub),
            "--help lacks {sub}:\n{}",
            out.stdout
        );
        let sub_help = p.run(&[sub, "--help"]).expect_code(0);
        assert!(
            sub_help.stdout.contains("--out"),
            "{sub} --help lacks the global --out:\n{}",
            sub_help.stdout
        );
    }
    assert!(
        out.stdout.contains("Exit codes: 0 success"),
        "{}",
        out.stdout
    );
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let p = Project::new();
    let out = p.run(&["ingest", "--no-such-flag"]).expect_code(2);
    assert!(out.stderr.contains("--no-such-flag"), "{}", out.stderr);
}
