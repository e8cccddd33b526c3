//! Property-based fuzzing of everything mixlab parses from users: `datasets.toml`, JSON-lines and
//! CSV sources, token shards with their manifest, and `mixture.toml`.
//!
//! proptest rather than `cargo fuzz`: the parsers sit on DataFusion, Arrow and burn, which a
//! coverage-instrumented nightly build compiles in about an hour on 2 cores, and CI has no nightly
//! toolchain. The inputs are structure-aware instead: valid seed files from
//! `tests/fuzz-corpus/<target>/` with edits that keep most of the syntax (values swapped for
//! extreme ones, keys moved between tables, lines dropped or copied, bytes spliced in).
//!
//! `cargo test --bin mixlab fuzz` runs 256 fixed-seed cases per target. `MIXLAB_FUZZ_SECONDS=600`
//! runs each target for that long on fresh seeds (`bench/fuzz.sh`). Every file in a target's
//! corpus, seeds and inputs that once failed (`found-*`), is replayed by that target's corpus test.

mod config;
mod lines;
mod mixture;
mod shards;
mod toml_edits;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseResult, TestError, TestRng, TestRunner};

/// Cases per runner: the whole run in CI, one round of a timed run.
const CASES: u32 = 256;

/// Runs `property` on inputs drawn from `strategy`; panics with the smallest failing input.
///
/// Without `MIXLAB_FUZZ_SECONDS` this is one deterministic round of [`CASES`]; with it, rounds on
/// fresh seeds until the time is spent, and the case count is printed.
fn fuzz<S: Strategy>(target: &str, strategy: S, property: impl Fn(S::Value) -> TestCaseResult)
where
    S::Value: std::fmt::Debug,
{
    let budget = std::env::var("MIXLAB_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let start = Instant::now();
    let mut rounds = 0u64;
    loop {
        let config = Config {
            cases: CASES,
            failure_persistence: None,
            ..Config::default()
        };
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&rounds.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
        let mut runner = TestRunner::new_with_rng(config, rng);
        match runner.run(&strategy, &property) {
            Ok(()) => {}
            Err(TestError::Fail(reason, input)) => {
                panic!("fuzz target {target}, round {rounds}: {reason}\nminimal input: {input:#?}")
            }
            Err(TestError::Abort(reason)) => panic!("fuzz target {target}: aborted: {reason}"),
        }
        rounds += 1;
        if budget.is_none_or(|b| start.elapsed() >= b) {
            break;
        }
    }
    println!(
        "fuzz target {target}: {} cases in {:.0} s, no failure",
        rounds * u64::from(CASES),
        start.elapsed().as_secs_f64()
    );
}

/// The files of a target's corpus, sorted: seeds (`seed-*`) and former findings (`found-*`).
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    files
}

/// The seed files of a target's corpus, read as text.
fn seeds(target: &str) -> Vec<String> {
    corpus(target)
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}
