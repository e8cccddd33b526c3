//! Fuzz target `shards`: a shard directory as training opens and reads it ([`ShardSet`]), with
//! corrupted Parquet files (their checksum updated, so the bytes reach the Parquet reader) and
//! manifests with edited fields.

use std::collections::BTreeMap;
use std::path::Path;

use mixlab_artefacts::split::Split;
use mixlab_ingest::checksum::sha256_file;
use mixlab_ingest::manifest::{
    DomainManifest, DomainStats, FORMAT_VERSION, MANIFEST_FILE, Manifest, ShardSet, TOKENIZER_FILE,
    TokenizerInfo,
};
use mixlab_ingest::shard::{ShardDocument, ShardWriter};
use mixlab_ingest::verified::Verification;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{corpus, fuzz};

/// Manifest values that have broken readers: wrong types, out of range, paths leaving the directory.
const VALUES: &[&str] = &[
    "null",
    "-1",
    "0",
    "1",
    "4294967296",
    "18446744073709551615",
    "1e30",
    "\"\"",
    "\"..\"",
    "\"../../etc/passwd\"",
    "\"/\"",
    "\"a/part-00000.parquet\"",
    "\"manifest.json\"",
    "[]",
    "{}",
];

/// A corruption of a shard directory. The corpus holds lists of them as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Damage {
    /// XOR bytes of the first shard file at offsets (modulo its length), then cut it; the
    /// manifest's checksum and size are updated to match.
    Bytes {
        flips: Vec<(usize, u8)>,
        cut: Option<usize>,
    },
    /// Replace the `leaf`-th scalar of the manifest (in document order) with [`VALUES`]`[value]`.
    Field { leaf: usize, value: usize },
}

fn damage() -> impl Strategy<Value = Vec<Damage>> {
    let one = prop_oneof![
        (
            vec((any::<usize>(), 1..=255u8), 0..6),
            proptest::option::weighted(0.2, any::<usize>())
        )
            .prop_map(|(flips, cut)| Damage::Bytes { flips, cut }),
        (any::<usize>(), 0..VALUES.len()).prop_map(|(leaf, value)| Damage::Field { leaf, value }),
    ];
    vec(one, 1..4)
}

/// Documents of a small valid domain `a`: two shard files.
fn documents() -> Vec<ShardDocument> {
    (0..5)
        .map(|id| ShardDocument {
            doc_id: id,
            source: format!("s{}.jsonl", id % 2),
            split: Split::ALL[id as usize % 3],
            tokens: (0..id as u32 + 1).collect(),
        })
        .collect()
}

/// Writes a valid shard directory holding [`documents`]; returns its manifest.
fn write_shard_dir(dir: &Path) -> Manifest {
    std::fs::write(dir.join(TOKENIZER_FILE), b"{}").unwrap();
    let mut writer = ShardWriter::new(dir, "a", 3);
    for doc in documents() {
        writer.push(doc).unwrap();
    }
    let files = writer.finish().unwrap();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        created_by: "fuzz".into(),
        config_hash: String::new(),
        inputs_hash: String::new(),
        tokenizer: TokenizerInfo {
            file: TOKENIZER_FILE.into(),
            sha256: sha256_file(&dir.join(TOKENIZER_FILE)).unwrap(),
            vocab_size: 8,
            eos_id: 0,
            origin: "fuzz".into(),
        },
        domains: vec![DomainManifest {
            name: "a".into(),
            files,
            splits: BTreeMap::new(),
            stats: DomainStats::default(),
        }],
    };
    manifest.write(dir).unwrap();
    manifest
}

/// Applies `damage` to the shard directory at `dir`.
fn apply(dir: &Path, damage: &[Damage]) {
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    for d in damage {
        match d {
            Damage::Bytes { flips, cut } => {
                let file = dir.join("a/part-00000.parquet");
                let mut bytes = std::fs::read(&file).unwrap_or_default();
                for &(at, x) in flips {
                    if let Some(n) = bytes.len().checked_sub(1) {
                        bytes[at % (n + 1)] ^= x;
                    }
                }
                if let Some(at) = cut {
                    bytes.truncate(at % (bytes.len() + 1));
                }
                std::fs::write(&file, &bytes).unwrap();
                let entry = &mut manifest["domains"][0]["files"][0];
                if entry.is_object() {
                    entry["sha256"] = Value::from(sha256_file(&file).unwrap());
                    entry["bytes"] = Value::from(bytes.len());
                }
            }
            Damage::Field { leaf, value } => {
                let leaves = count_leaves(&manifest);
                if leaves > 0 {
                    *nth_leaf(&mut manifest, leaf % leaves).unwrap() =
                        serde_json::from_str(VALUES[*value]).unwrap();
                }
            }
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
}

fn count_leaves(v: &Value) -> usize {
    match v {
        Value::Array(items) => items.iter().map(count_leaves).sum(),
        Value::Object(map) => map.values().map(count_leaves).sum(),
        _ => 1,
    }
}

fn nth_leaf(v: &mut Value, n: usize) -> Option<&mut Value> {
    let mut left = n;
    find_leaf(v, &mut left)
}

fn find_leaf<'a>(v: &'a mut Value, left: &mut usize) -> Option<&'a mut Value> {
    match v {
        Value::Array(items) => items.iter_mut().find_map(|i| find_leaf(i, left)),
        Value::Object(map) => map.values_mut().find_map(|i| find_leaf(i, left)),
        leaf if *left == 0 => Some(leaf),
        _ => {
            *left -= 1;
            None
        }
    }
}

/// Opening and reading never panic; an undamaged directory reads back its documents; whatever is
/// read holds only token ids the manifest's tokenizer has.
fn open_is_total(dir: &Path, expected: Option<&[ShardDocument]>) -> TestCaseResult {
    let Ok(set) = ShardSet::open(dir, Verification::Full) else {
        return Ok(());
    };
    let vocab = set.manifest().tokenizer.vocab_size;
    let names: Vec<String> = set
        .manifest()
        .domains
        .iter()
        .map(|d| d.name.clone())
        .collect();
    for name in &names {
        for split in [None, Some(Split::Train), Some(Split::Valid)] {
            if let Ok(docs) = set.read_domain(name, split) {
                prop_assert!(docs.iter().all(|d| d.tokens.iter().all(|&t| t < vocab)));
                if let (Some(expected), None) = (expected, split) {
                    prop_assert_eq!(&docs, &expected);
                }
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_shards() {
    fuzz("shards", damage(), |damage| {
        let dir = tempfile::tempdir().unwrap();
        write_shard_dir(dir.path());
        apply(dir.path(), &damage);
        open_is_total(dir.path(), None)
    });
}

#[test]
fn an_undamaged_shard_directory_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    write_shard_dir(dir.path());
    open_is_total(dir.path(), Some(&documents())).unwrap();
    assert!(ShardSet::open(dir.path(), Verification::Full).is_ok());
}

/// Each corpus entry is a JSON list of [`Damage`]s to the directory of [`write_shard_dir`].
#[test]
fn shards_corpus_replays() {
    for path in corpus("shards") {
        let damage: Vec<Damage> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_shard_dir(dir.path());
        apply(dir.path(), &damage);
        open_is_total(dir.path(), None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
