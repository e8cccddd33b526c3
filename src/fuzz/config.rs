//! Fuzz target `config`: `datasets.toml` as `mixlab` loads it (parse, then every stage's validation).

use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

use super::toml_edits::{apply, edited};
use super::{corpus, fuzz, seeds};
use mixlab_stages::config::LoadedConfig;

/// Loading never panics; a refusal names the file; a file that loads once loads the same twice.
fn load_is_total(bytes: &[u8]) -> TestCaseResult {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("datasets.toml");
    std::fs::write(&path, bytes).unwrap();
    match LoadedConfig::load(&path) {
        Ok(first) => {
            let again = LoadedConfig::load(&path).unwrap();
            prop_assert_eq!(first.ingest_hash(), again.ingest_hash());
        }
        Err(e) => {
            let message = format!("{e:#}");
            prop_assert!(message.contains("datasets.toml"), "{}", message);
        }
    }
    Ok(())
}

#[test]
fn fuzz_config() {
    let seeds = seeds("config");
    fuzz("config", edited(seeds.len()), |(seed, edits)| {
        load_is_total(&apply(&seeds[seed], &edits))
    });
}

#[test]
fn config_corpus_replays() {
    for path in corpus("config") {
        let bytes = std::fs::read(&path).unwrap();
        load_is_total(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    // Seeds are valid, or the edits would only ever exercise the TOML parser's errors.
    for seed in seeds("config") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("datasets.toml");
        std::fs::write(&path, seed).unwrap();
        if let Err(e) = LoadedConfig::load(&path) {
            panic!("a seed does not load: {e:#}");
        }
    }
}
