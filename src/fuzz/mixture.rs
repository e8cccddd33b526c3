//! Fuzz target `mixture`: `mixture.toml` as a training run reads and checks it.

use mixlab_artefacts::mixture::{read_mixture, write_mixture};
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

use super::toml_edits::{apply, edited};
use super::{corpus, fuzz, seeds};

/// The domains the seeds name (the real corpus of `bench/real-corpus.toml`).
const DOMAINS: &[&str] = &[
    "books",
    "code_python",
    "code_rust",
    "email_ham",
    "email_spam",
    "encyclopedia",
    "math",
    "scripture",
    "speeches",
];

/// Reading and checking never panic; a refusal names the file; a schedule that passes both is
/// written and read back unchanged.
fn read_is_total(bytes: &[u8]) -> TestCaseResult {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixture.toml");
    std::fs::write(&path, bytes).unwrap();
    let schedule = match read_mixture(&path) {
        Ok(schedule) => schedule,
        Err(e) => {
            prop_assert!(e.to_string().contains("mixture.toml"), "{}", e);
            return Ok(());
        }
    };
    if schedule.validate(DOMAINS).is_ok() {
        // Compared as written text: provenance may hold NaN, which is not equal to itself.
        let (copy, again) = (dir.path().join("copy.toml"), dir.path().join("again.toml"));
        write_mixture(&copy, &schedule).unwrap();
        write_mixture(&again, &read_mixture(&copy).unwrap()).unwrap();
        prop_assert_eq!(
            std::fs::read(&copy).unwrap(),
            std::fs::read(&again).unwrap()
        );
    }
    Ok(())
}

#[test]
fn fuzz_mixture() {
    let seeds = seeds("mixture");
    fuzz("mixture", edited(seeds.len()), |(seed, edits)| {
        read_is_total(&apply(&seeds[seed], &edits))
    });
}

#[test]
fn mixture_corpus_replays() {
    for path in corpus("mixture") {
        let bytes = std::fs::read(&path).unwrap();
        read_is_total(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    // Seeds are valid, or the edits would only ever exercise the TOML parser's errors.
    let dir = tempfile::tempdir().unwrap();
    for (i, seed) in seeds("mixture").iter().enumerate() {
        let path = dir.path().join(format!("{i}.toml"));
        std::fs::write(&path, seed).unwrap();
        let schedule = read_mixture(&path).unwrap();
        schedule.validate(DOMAINS).unwrap();
    }
}
