//! Training data streamed from a real shard set through its token cache: the cache is built once,
//! rebuilt for other shards, refused when damaged; the streamed sampler draws exactly what the
//! in-memory sampler draws from the same documents, resumes at any step, and holds at most its
//! read-ahead.

use std::path::{Path, PathBuf};

use mixlab_artefacts::split::Split;
use mixlab_ingest::config::{DomainConfig, IngestConfig, TokenizerConfig};
use mixlab_ingest::manifest::{MANIFEST_FILE, ShardSet};
use mixlab_ingest::pipeline::{IngestRequest, Progress, ingest};
use mixlab_ingest::verified::Verification;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::data::cache::{CacheState, TokenCache};
use mixlab_trainer::data::sampler::{Batch, MixtureSampler};
use mixlab_trainer::data::store::Store;
use mixlab_trainer::error::Error;
use serde::Deserialize;

struct Quiet;

impl Progress for Quiet {}

#[derive(Deserialize)]
struct IngestFile {
    tokenizer: TokenizerConfig,
    ingest: IngestConfig,
    domain: Vec<DomainConfig>,
}

/// Three domains of pseudo-words, documents of 5 to 400 words (some longer than a read-ahead).
fn write_sources(dir: &Path, seed: u64) {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    for (d, letters) in ["abcdef", "ghijkl", "mnopqr"].iter().enumerate() {
        let letters: Vec<char> = letters.chars().collect();
        let mut lines = String::new();
        for doc in 0..60 {
            let words = 5 + next(if doc % 10 == 0 { 400 } else { 40 });
            let text: Vec<String> = (0..words)
                .map(|_| {
                    (0..2 + next(5))
                        .map(|_| letters[next(letters.len() as u64) as usize])
                        .collect()
                })
                .collect();
            lines += &serde_json::json!({ "text": format!("d{d} {doc} {}", text.join(" ")) })
                .to_string();
            lines.push('\n');
        }
        std::fs::write(dir.join(format!("d{d}.jsonl")), lines).unwrap();
    }
}

/// Ingests the sources of `seed` into `<dir>/shards` and opens them.
fn shards(dir: &Path, seed: u64) -> ShardSet {
    write_sources(dir, seed);
    let config = r#"
        [tokenizer]
        train = { vocab_size = 300, sample_bytes = 200000 }
        [ingest]
        valid_fraction = 0.1
        probe_fraction = 0.05
        min_chars = 1
        shard_rows = 16
        filters = { min_stop_words = 0, min_alpha_word_fraction = 0.0, min_alpha_char_fraction = 0.0, mean_word_length = [0.0, 100.0], max_duplicate_line_fraction = 1.0, max_top_ngram_fraction = [1.0, 1.0, 1.0], max_duplicate_ngram_fraction = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0] }
        [[domain]]
        name = "d0"
        source = [{ path = "d0.jsonl", format = "jsonl" }]
        [[domain]]
        name = "d1"
        source = [{ path = "d1.jsonl", format = "jsonl" }]
        [[domain]]
        name = "d2"
        source = [{ path = "d2.jsonl", format = "jsonl" }]
    "#;
    let file: IngestFile = toml::from_str(config).unwrap();
    let shards_dir = dir.join("shards");
    let request = IngestRequest {
        tokenizer: &file.tokenizer,
        ingest: &file.ingest,
        domains: &file.domain,
        base_dir: dir,
        shards_dir: &shards_dir,
        config_hash: &format!("test-{seed}"),
    };
    ingest(&request, &Quiet).unwrap();
    ShardSet::open(&shards_dir, Verification::Recorded).unwrap()
}

fn open(shards: &ShardSet) -> Corpus {
    Corpus::open(shards, &mut |_, _| {}).unwrap()
}

/// The same documents in memory, read from the shards themselves.
fn in_memory(shards: &ShardSet, split: Split) -> Vec<Store> {
    let corpus = open(shards);
    let stores = match split {
        Split::Train => corpus.train,
        Split::Valid => corpus.valid,
        Split::Probe => corpus.probe,
    };
    shards
        .manifest()
        .domains
        .iter()
        .zip(stores)
        .map(|(domain, store)| {
            let from_shards = shards.read_domain(&domain.name, Some(split)).unwrap();
            let memory = store.to_memory().unwrap();
            let ids: Vec<u64> = memory.docs.iter().map(|d| d.doc_id).collect();
            assert_eq!(
                ids,
                from_shards.iter().map(|d| d.doc_id).collect::<Vec<_>>()
            );
            for (cached, shard) in memory.docs.iter().zip(&from_shards) {
                assert_eq!(
                    (&cached.tokens, &*cached.source),
                    (&shard.tokens, &*shard.source)
                );
            }
            Store::from(memory)
        })
        .collect()
}

fn sampler(stores: Vec<Store>, read_ahead: usize) -> MixtureSampler {
    MixtureSampler::new(stores, vec![0.5, 0.3, 0.2], 24, 0, 11, true)
        .unwrap()
        .with_read_ahead(read_ahead)
}

fn draw(sampler: &mut MixtureSampler, batches: usize) -> Vec<Batch> {
    (0..batches)
        .map(|_| sampler.next_batch(3).unwrap())
        .collect()
}

#[test]
fn the_cache_holds_the_shards_documents_and_streams_them_as_memory_does() {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path(), 1);
    assert!(matches!(
        TokenCache::state(&shards).unwrap(),
        CacheState::Missing
    ));
    let corpus = open(&shards);
    assert!(matches!(
        TokenCache::state(&shards).unwrap(),
        CacheState::Ready(_)
    ));
    for (store, domain) in corpus.train.iter().zip(&shards.manifest().domains) {
        let counts = domain.splits[&Split::Train];
        assert_eq!(
            (store.documents(), store.token_count()),
            (counts.documents, counts.tokens)
        );
    }
    // Several epochs of every domain, read 7 tokens at a time, as from memory.
    let memory = in_memory(&shards, Split::Train);
    let mut streamed = sampler(corpus.train.clone(), 7);
    let mut reference = sampler(memory, 1 << 16);
    let mut draws = 0;
    while streamed.state().cursors.iter().any(|c| c.epoch < 2) {
        assert_eq!(draw(&mut streamed, 1), draw(&mut reference, 1));
        assert!(streamed.buffered_tokens() <= 3 * 7);
        draws += 1;
        assert!(draws < 5000, "{:?}", streamed.state());
    }
    // A stream position names the same document and offset in the cache as in memory.
    let memory = in_memory(&shards, Split::Train);
    for (cached, held) in corpus.train.iter().zip(&memory) {
        let positions = cached.token_count() + cached.documents();
        for at in (0..positions).step_by(97).chain([positions - 1]) {
            let (a, offset_a) = cached.locate(at).unwrap();
            let (b, offset_b) = held.locate(at).unwrap();
            assert_eq!((a.doc_id, offset_a), (b.doc_id, offset_b), "position {at}");
        }
        assert!(cached.locate(positions).is_err());
    }
    // Held-out splits read back as the shards hold them.
    in_memory(&shards, Split::Valid);
    in_memory(&shards, Split::Probe);
}

#[test]
fn a_streamed_run_resumed_from_its_state_at_any_step_continues_the_same_stream() {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path(), 2);
    let corpus = open(&shards);
    let straight = draw(&mut sampler(corpus.train.clone(), 5), 40);
    for kill_at in [0, 1, 7, 23, 39] {
        let mut first = sampler(corpus.train.clone(), 5);
        let head = draw(&mut first, kill_at);
        let saved = serde_json::to_string(first.state()).unwrap();
        drop(first);
        // A new process: the cache opened again, the state read back.
        let reopened = open(&shards);
        let mut resumed = sampler(reopened.train, 5);
        resumed
            .restore(serde_json::from_str(&saved).unwrap())
            .unwrap();
        let tail = draw(&mut resumed, 40 - kill_at);
        assert_eq!([head, tail].concat(), straight, "killed at {kill_at}");
    }
}

#[test]
fn a_cache_of_other_shards_is_rebuilt_and_a_damaged_one_refused_by_name() {
    let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = shards(other.path(), 3);
    let before = open(&first).train[0].entry(0).unwrap();
    // The cache of other shards, moved beside these: stale, and rebuilt.
    let second = shards(dir.path(), 4);
    std::fs::rename(TokenCache::dir_of(&first), TokenCache::dir_of(&second)).unwrap();
    assert!(matches!(
        TokenCache::state(&second).unwrap(),
        CacheState::Stale
    ));
    let rebuilt = open(&second);
    assert_ne!(rebuilt.train[0].entry(0).unwrap(), before);
    let memory = in_memory(&second, Split::Train);
    assert_eq!(
        draw(&mut sampler(rebuilt.train.clone(), 64), 10),
        draw(&mut sampler(memory, 64), 10)
    );
    // A manifest edited after the cache was built: stale as well.
    let manifest = second.root().join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replacen("test-4", "test-5", 1)).unwrap();
    assert!(matches!(
        TokenCache::state(&second).unwrap(),
        CacheState::Stale
    ));
    std::fs::write(&manifest, text).unwrap();
    // A truncated token file: refused, naming the file and the rebuild.
    let tokens: PathBuf = TokenCache::dir_of(&second).join("001/train.tokens");
    let len = std::fs::metadata(&tokens).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&tokens)
        .unwrap()
        .set_len(len - 2)
        .unwrap();
    let err = Corpus::open(&second, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, Error::Cache { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("001/train.tokens") && message.contains("--rebuild-cache"),
        "{message}"
    );
    // Rebuilding makes it whole again.
    TokenCache::rebuild(&second, &mut |_, _| {}).unwrap();
    assert!(matches!(
        TokenCache::state(&second).unwrap(),
        CacheState::Ready(_)
    ));
}
