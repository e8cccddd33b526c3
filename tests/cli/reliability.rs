//! Batch-job reliability: one writer per directory, crash leftovers, damaged checkpoints.

use std::process::Stdio;

use mixlab_artefacts::eval::read_eval;
use mixlab_artefacts::lock::DirLock;
use mixlab_ingest::manifest::Manifest;

use crate::util::{Project, Run};

/// Starts `mixlab args` twice at once in `p` and waits for both.
fn twice_at_once(p: &Project, args: &[&str]) -> [Run; 2] {
    let spawn = || {
        p.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mixlab")
    };
    let (first, second) = (spawn(), spawn());
    [first, second].map(|child| Run::from(child.wait_with_output().expect("wait for mixlab")))
}

/// Exactly one of two runs worked; the other was refused by the lock, naming the holder's pid.
fn assert_one_refused(runs: &[Run; 2], stage: &str) {
    let codes = [runs[0].code, runs[1].code];
    assert!(codes == [0, 1] || codes == [1, 0], "exit codes {codes:?}");
    let refused = runs.iter().find(|r| r.code == 1).unwrap();
    assert!(
        refused
            .stderr
            .contains(&format!("another mixlab {stage} is writing here (pid ")),
        "{}",
        refused.stderr
    );
}

/// The shard files' checksums, by domain.
fn shard_checksums(p: &Project) -> Vec<String> {
    let manifest = Manifest::read(&p.path("out/shards")).expect("manifest");
    let files = manifest.domains.iter().flat_map(|d| &d.files);
    files.map(|f| f.sha256.clone()).collect()
}

#[test]
fn two_ingests_at_once_on_one_out_directory_one_works_like_a_lone_run() {
    let p = Project::with_default_config();
    // The demo corpus is written first, so that both ingests read the same files.
    p.run(&["ingest", "-q"]).expect_code(0);
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let runs = twice_at_once(&p, &["ingest", "-q"]);
    assert_one_refused(&runs, "ingest");
    p.run(&["inspect"]).expect_code(0);

    let lone = Project::with_default_config();
    lone.run(&["ingest", "-q"]).expect_code(0);
    assert_eq!(shard_checksums(&p), shard_checksums(&lone));
}

#[test]
fn a_held_lock_refuses_at_once_and_a_dead_holders_lock_is_taken_over() {
    let p = Project::with_default_config();
    let held = DirLock::acquire(&p.path("out"), "ingest").unwrap();
    let out = p.run(&["ingest", "-q"]).expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "another mixlab ingest is writing here (pid {}, started 20",
            std::process::id()
        )),
        "{}",
        out.stderr
    );
    assert!(!p.path("out/shards").exists());
    drop(held);

    // A holder killed with SIGKILL leaves its text in the lock file but holds no lock.
    p.write(
        "out/.ingest.lock",
        "pid 999999, started 2026-01-01 00:00:00 UTC, `mixlab ingest`\n",
    );
    let out = p.run(&["ingest", "-q"]).expect_code(0);
    assert!(
        out.stderr.contains("taking over from a mixlab ingest")
            && out.stderr.contains("pid 999999"),
        "{}",
        out.stderr
    );
    p.run(&["inspect"]).expect_code(0);
}

#[test]
fn two_trains_at_once_on_one_run_directory_one_works_like_a_lone_run() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    let args = ["train", "-q", "--run", "runs/a", "--steps", "40"];
    let runs = twice_at_once(&p, &args);
    assert_one_refused(&runs, "run");
    p.run(&["train", "-q", "--run", "runs/lone", "--steps", "40"])
        .expect_code(0);
    let eval = |run: &str| read_eval(&p.path(&format!("out/runs/{run}/eval.parquet"))).unwrap();
    assert_eq!(eval("a"), eval("lone"));
}

#[test]
fn a_damaged_newest_checkpoint_and_a_torn_done_marker_resume_and_a_killed_runs_leftovers_go() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.edit_config("checkpoint_every = 100", "checkpoint_every = 20");
    p.run(&["train", "-q", "--run", "runs/a", "--steps", "40"])
        .expect_code(0);
    let expected = read_eval(&p.path("out/runs/a/eval.parquet")).unwrap();

    // Killed while (or after) writing step 40: an empty state file, a torn (empty) done marker,
    // half-written leftovers.
    std::fs::write(p.path("out/runs/a/done"), b"").unwrap();
    std::fs::write(p.path("out/runs/a/checkpoints/step-40.json"), b"").unwrap();
    let leftovers = [
        p.write("out/runs/a/.metrics.parquet.Xy12.tmp", b"half"),
        p.write("out/runs/a/checkpoints/step-60.bpk", b"half"),
    ];
    let out = p
        .run(&["train", "-q", "--run", "runs/a", "--steps", "40"])
        .expect_code(0);
    assert!(
        out.stderr.contains("done marker that holds no run hash")
            && out.stderr.contains("step-40.json: damaged checkpoint")
            && out
                .stderr
                .contains("falling back to the previous checkpoint"),
        "{}",
        out.stderr
    );
    for path in leftovers {
        assert!(!path.exists(), "{} was left behind", path.display());
    }
    // Resumed from step 20, the run ends exactly where the undamaged run did.
    assert_eq!(
        read_eval(&p.path("out/runs/a/eval.parquet")).unwrap(),
        expected
    );
}

#[test]
fn eval_and_generate_refuse_a_checkpoint_of_another_run() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    p.run(&["train", "-q", "--run", "runs/a", "--steps", "10"])
        .expect_code(0);
    let state = p.path("out/runs/a/checkpoints/step-10.json");
    let text = std::fs::read_to_string(&state).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["run_hash"] = "0123abcd".into();
    std::fs::write(&state, json.to_string()).unwrap();
    for args in [
        &["eval", "--run", "runs/a"][..],
        &["generate", "--run", "runs/a", "--prompt", "a"],
    ] {
        let out = p.run(args).expect_code(1);
        assert!(
            out.stderr
                .contains("step-10.json: checkpoint of another run (run hash 0123abcd)"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn an_ingest_killed_before_publishing_is_published_without_redoing_it() {
    let p = Project::with_default_config();
    p.run(&["ingest", "-q"]).expect_code(0);
    // Killed after the manifest was written, before the swap: the complete set is in staging.
    std::fs::rename(p.path("out/shards"), p.path("out/shards.partial")).unwrap();
    let manifest = Manifest::read(&p.path("out/shards.partial")).unwrap();
    let first = &manifest.domains[0].files[0].path;
    let modified = |dir: &str| {
        std::fs::metadata(p.path(dir).join(first))
            .unwrap()
            .modified()
            .unwrap()
    };
    let written_at = modified("out/shards.partial");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = p.run(&["ingest", "-q"]).expect_code(0);
    assert!(out.stdout.contains("wrote"), "{}", out.stdout);
    assert!(!p.path("out/shards.partial").exists());
    assert_eq!(
        modified("out/shards"),
        written_at,
        "the shards were rewritten"
    );
    p.run(&["inspect"]).expect_code(0);
}
