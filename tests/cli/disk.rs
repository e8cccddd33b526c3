//! A full disk, a read-only output, a file-size limit and a closed pipe: a clear error naming the
//! path, nothing partial where a reader looks, and the previous good artefacts untouched.
//!
//! The file-system cases mount a small tmpfs in a private user and mount namespace
//! (`unshare -rm`), so they need no privileges and leave no mount behind; where the kernel or
//! sandbox refuses namespaces they are skipped with a printed reason.

use std::process::{Command, Stdio};

use mixlab_artefacts::eval::read_eval;

use crate::util::{Project, Run};

/// Runs the shell `script` in `p` inside a private mount namespace, with `$M` the mixlab binary,
/// and returns its stdout (panicking with its output unless it succeeded); `None` (and a printed
/// reason) where namespaces are not available.
fn in_mount_namespace(p: &Project, script: &str) -> Option<String> {
    let probe = Command::new("unshare").args(["-rm", "true"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!("skipped: `unshare -rm` (user and mount namespaces) is not available here");
        return None;
    }
    let output = Command::new("unshare")
        .args(["-rm", "sh", "-ec", script])
        .current_dir(p.dir.path())
        .env("M", env!("CARGO_BIN_EXE_mixlab"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run unshare");
    Some(Run::from(output).expect_code(0).stdout)
}

/// The project's config with the validation fraction changed, so that ingest writes new shards.
fn with_other_valid_fraction(p: &Project) {
    let toml = std::fs::read_to_string(p.path("datasets.toml")).unwrap();
    let changed = toml.replace("valid_fraction = 0.05", "valid_fraction = 0.06");
    p.write("datasets.toml.changed", changed);
}

#[test]
fn a_full_disk_fails_ingest_naming_the_file_and_keeps_the_previous_shards() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0); // writes the demo corpus outside the small disk
    std::fs::remove_dir_all(p.path("out")).unwrap();
    std::fs::create_dir(p.path("out")).unwrap();
    with_other_valid_fraction(&p);
    // The demo shards take about 0.75 MB: one set fits, a second beside it does not.
    let script = r#"
        mount -t tmpfs -o size=1100k tmpfs out
        "$M" ingest -q > /dev/null
        before=$(cat out/shards/manifest.json)
        if "$M" ingest -q -c datasets.toml.changed 2> err; then echo "second ingest succeeded"; exit 1; fi
        cat err
        ls -a out
        [ "$(cat out/shards/manifest.json)" = "$before" ] && echo "manifest unchanged"
        "$M" inspect | head -1
    "#;
    let Some(out) = in_mount_namespace(&p, script) else {
        return;
    };
    assert!(
        out.contains("out/shards.partial/") && out.contains("No space left on device"),
        "{out}"
    );
    assert!(
        !out.contains("shards.partial\n"),
        "staging left behind: {out}"
    );
    assert!(out.contains("manifest unchanged"), "{out}");
    assert!(out.contains("verified: every checksum matches"), "{out}");
}

#[test]
fn a_read_only_output_fails_naming_the_path_and_keeps_the_previous_shards() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    std::fs::remove_dir_all(p.path("out")).unwrap();
    std::fs::create_dir(p.path("out")).unwrap();
    with_other_valid_fraction(&p);
    let script = r#"
        mount -t tmpfs -o size=4m tmpfs out
        "$M" ingest -q > /dev/null
        mount -o remount,ro out
        if "$M" ingest -q -c datasets.toml.changed 2> err; then echo "ingest succeeded"; exit 1; fi
        cat err
        "$M" inspect | head -1
    "#;
    let Some(out) = in_mount_namespace(&p, script) else {
        return;
    };
    assert!(
        out.contains("out/.ingest.lock: Read-only file system"),
        "{out}"
    );
    assert!(out.contains("verified: every checksum matches"), "{out}");
}

#[test]
fn a_full_disk_at_a_checkpoint_keeps_the_previous_one_and_the_run_resumes() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.edit_config("checkpoint_every = 100", "checkpoint_every = 20");
    let train = ["train", "-q", "--run", "runs/lone", "--steps", "60"];
    p.run(&train).expect_code(0);
    let expected = read_eval(&p.path("out/runs/lone/eval.parquet")).unwrap();

    std::fs::create_dir(p.path("out/runs/a")).unwrap();
    // A checkpoint of the demo model takes about 11 MB: step 20 fits, step 40 does not.
    let script = r#"
        mount -t tmpfs -o size=16m tmpfs out/runs/a
        if "$M" train -q --run runs/a --steps 60 2> err; then echo "train succeeded"; exit 1; fi
        cat err
        ls -a out/runs/a/checkpoints
        mount -o remount,size=64m out/runs/a
        RUST_LOG=info "$M" train -q --run runs/a --steps 60 2> resumed
        cat resumed
        cp out/runs/a/eval.parquet eval.parquet
    "#;
    let Some(out) = in_mount_namespace(&p, script) else {
        return;
    };
    assert!(
        out.contains("checkpoints/step-40.optim.bpk") && out.contains("No space left on device"),
        "{out}"
    );
    let listing: Vec<&str> = out.lines().filter(|l| l.starts_with("step-")).collect();
    assert_eq!(
        listing,
        ["step-20.bpk", "step-20.json", "step-20.optim.bpk"],
        "{out}"
    );
    assert!(out.contains("resumed from step 20"), "{out}");
    assert_eq!(read_eval(&p.path("eval.parquet")).unwrap(), expected);
}

#[test]
fn a_file_size_limit_is_an_error_naming_the_file_not_a_kill() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        println!("skipped: `prlimit` (util-linux) is not installed");
        return;
    }
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.edit_config("checkpoint_every = 100", "checkpoint_every = 20");
    // The weights (3.7 MB) fit under 5 MB, the optimizer state (7.4 MB) does not.
    let output = Command::new("prlimit")
        .args(["--fsize=5000000", env!("CARGO_BIN_EXE_mixlab")])
        .args(["train", "-q", "--run", "runs/a", "--steps", "40"])
        .current_dir(p.dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let run = Run::from(output).expect_code(1);
    assert!(
        run.stderr.contains("checkpoints/step-20.optim.bpk")
            && run.stderr.contains("File too large"),
        "{}",
        run.stderr
    );
    let left: Vec<_> = std::fs::read_dir(p.path("out/runs/a/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "partial checkpoint files left: {left:?}");
}

#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // the reader is gone before anything is printed, as in `mixlab inspect | true`
    let child = p
        .command(&["inspect"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!output.status.success(), "{:?}", output.status);
}
