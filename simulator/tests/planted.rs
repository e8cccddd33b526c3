//! A corpus whose answer is known by construction, generated here in seconds: does the estimator
//! rank domains by what training on them does to the target?
//!
//! Domains of pseudo-word text (words of two or three syllables), tokenized with a byte-level BPE
//! trained on the corpus, so sub-words hide the word transitions as they do in real text:
//! - `own`: the target's Markov chain over its words (the target is its probe split);
//! - `half`: the same words, half of them followed as in `own`, half by other successors;
//! - `half_short`: `half`'s generator in documents a third as long (the twin of `half`);
//! - `reversed`, `shuffled`: `own`'s documents with their words reversed or shuffled (decoys:
//!   the target's word frequencies, the wrong order);
//! - `disjoint`: a chain over words of other letters;
//! - `mix`: half `own` documents, half `disjoint` ones.
//!
//! Ground truth: leave-one-out (LOO), the same proxy trained once more without each domain,
//! averaged over proxy seeds.

use std::collections::BTreeMap;
use std::path::Path;

use mixlab_artefacts::split::Split;
use mixlab_artefacts::utilities::{JOINT_TARGET, overall};
use mixlab_ingest::tokenize::{TextTokenizer, train_byte_level_bpe};
use mixlab_mixer::metrics::spearman;
use mixlab_mixer::schedule::{MixtureSchedule, Provenance};
use mixlab_simulator::config::{Comparison, Precondition};
use mixlab_simulator::domain::DomainScoring;
use mixlab_simulator::estimate::{TargetSet, sample_documents};
use mixlab_simulator::projection::GradientProjection;
use mixlab_simulator::score::{Scoring, score_checkpoints, summarize};
use mixlab_trainer::config::{KeepCheckpoints, ModelConfig, Preset, TrainConfig};
use mixlab_trainer::data::Corpus;
use mixlab_trainer::data::store::{DomainDocs, Store};
use mixlab_trainer::engine::objective::CrossEntropy;
use mixlab_trainer::engine::schedule::StagePlan;
use mixlab_trainer::engine::{RunPaths, RunSpec, train};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DOMAINS: [&str; 7] = [
    "own",
    "half",
    "half_short",
    "reversed",
    "shuffled",
    "disjoint",
    "mix",
];
const WORDS: usize = 160;
const LONG: usize = 120;
const DOCS: usize = 90;

/// Pseudo-words from syllables of the given letters.
fn vocabulary(rng: &mut ChaCha8Rng, consonants: &[u8], vowels: &[u8]) -> Vec<String> {
    let mut words = Vec::new();
    while words.len() < WORDS {
        let syllables = rng.random_range(2..=3);
        let word: String = (0..syllables)
            .flat_map(|_| {
                [
                    consonants[rng.random_range(0..consonants.len())] as char,
                    vowels[rng.random_range(0..vowels.len())] as char,
                ]
            })
            .collect();
        if !words.contains(&word) {
            words.push(word);
        }
    }
    words
}

/// Each word's three successors, taken with probabilities 0.6, 0.3 and 0.1.
type Chain = Vec<[usize; 3]>;

fn chain(rng: &mut ChaCha8Rng) -> Chain {
    (0..WORDS)
        .map(|_| {
            let mut next: Vec<usize> = (0..WORDS).collect();
            next.shuffle(rng);
            [next[0], next[1], next[2]]
        })
        .collect()
}

fn walk(rng: &mut ChaCha8Rng, chain: &Chain, words: usize) -> Vec<usize> {
    let mut at = rng.random_range(0..WORDS);
    let mut out = vec![at];
    while out.len() < words {
        let r: f64 = rng.random();
        at = chain[at][if r < 0.6 {
            0
        } else if r < 0.9 {
            1
        } else {
            2
        }];
        out.push(at);
    }
    out
}

fn text(words: &[String], ids: &[usize]) -> String {
    let parts: Vec<&str> = ids.iter().map(|&i| words[i].as_str()).collect();
    parts.join(" ")
}

/// The texts of every domain (training documents) and the target's probe documents.
fn planted_texts(seed: u64) -> (BTreeMap<&'static str, Vec<String>>, Vec<String>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let letters = vocabulary(&mut rng, b"bdfgklmnprstvz", b"aeiou");
    let other = vocabulary(&mut rng, b"BDFGKLMNPRSTVZ", b"AEIOU");
    let own = chain(&mut rng);
    let mut half = chain(&mut rng);
    for (w, next) in half.iter_mut().enumerate() {
        if w % 2 == 0 {
            *next = own[w];
        }
    }
    let disjoint = chain(&mut rng);
    let mut docs = BTreeMap::new();
    let gen_docs = |chain: &Chain, words: &[String], n: usize, len: usize, rng: &mut _| {
        (0..n)
            .map(|_| text(words, &walk(rng, chain, len)))
            .collect::<Vec<_>>()
    };
    docs.insert("own", gen_docs(&own, &letters, DOCS, LONG, &mut rng));
    docs.insert("half", gen_docs(&half, &letters, DOCS, LONG, &mut rng));
    docs.insert(
        "half_short",
        gen_docs(&half, &letters, DOCS * 3, LONG / 3, &mut rng),
    );
    let reorder = |rng: &mut ChaCha8Rng, shuffle: bool| -> Vec<String> {
        (0..DOCS)
            .map(|_| {
                let mut ids = walk(rng, &own, LONG);
                if shuffle {
                    ids.shuffle(rng);
                } else {
                    ids.reverse();
                }
                text(&letters, &ids)
            })
            .collect()
    };
    docs.insert("reversed", reorder(&mut rng, false));
    docs.insert("shuffled", reorder(&mut rng, true));
    docs.insert(
        "disjoint",
        gen_docs(&disjoint, &other, DOCS, LONG, &mut rng),
    );
    let mut mix = gen_docs(&own, &letters, DOCS / 2, LONG, &mut rng);
    mix.extend(gen_docs(&disjoint, &other, DOCS / 2, LONG, &mut rng));
    docs.insert("mix", mix);
    let probe = gen_docs(&own, &letters, 24, LONG, &mut rng);
    (docs, probe)
}

/// The planted corpus tokenized with a 512-token byte-level BPE trained on it.
fn planted_corpus(seed: u64, dir: &Path) -> Corpus {
    let (docs, probe) = planted_texts(seed);
    let all: Vec<String> = docs.values().flatten().chain(&probe).cloned().collect();
    let path = dir.join("tokenizer.json");
    train_byte_level_bpe(&all, 512, &path).unwrap();
    let tokenizer = TextTokenizer::load(&path).unwrap();
    let encode = |texts: &[String]| -> Vec<Vec<u32>> {
        texts.iter().map(|t| tokenizer.encode(t).unwrap()).collect()
    };
    let split =
        |name: &str, texts: Vec<Vec<u32>>| Store::from(DomainDocs::from_tokens(name, texts));
    Corpus {
        domains: DOMAINS.iter().map(|d| (*d).to_owned()).collect(),
        train: DOMAINS.iter().map(|d| split(d, encode(&docs[d]))).collect(),
        valid: DOMAINS.iter().map(|d| split(d, Vec::new())).collect(),
        probe: DOMAINS
            .iter()
            .map(|d| {
                split(
                    d,
                    if *d == "own" {
                        encode(&probe)
                    } else {
                        Vec::new()
                    },
                )
            })
            .collect(),
        eos: tokenizer.eos_id(),
        vocab_size: tokenizer.vocab_size() as usize,
    }
}

fn proxy_model(vocab: usize) -> ModelConfig {
    ModelConfig {
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        ffn_hidden: 192,
        ..Preset::Tiny.config(vocab)
    }
}

fn proxy_train(seed: u64) -> TrainConfig {
    TrainConfig {
        steps: 240,
        batch_size: 8,
        seq_len: 64,
        warmup_steps: 20,
        eval_every: 10_000,
        eval_sequences: 24,
        checkpoint_every: 40,
        keep_checkpoints: KeepCheckpoints::All,
        seed,
        ..TrainConfig::default()
    }
}

/// Trains a proxy on `domains` (uniform) in `dir`; returns the target's final probe loss.
fn train_proxy(corpus: &Corpus, domains: &[&str], seed: u64, dir: &Path) -> f64 {
    let train_config = proxy_train(seed);
    let weights = domains
        .iter()
        .map(|d| ((*d).to_owned(), 1.0 / domains.len() as f64));
    let all: BTreeMap<String, f64> = DOMAINS
        .iter()
        .map(|d| ((*d).to_owned(), 0.0))
        .chain(weights)
        .collect();
    let schedule = MixtureSchedule::single(all, Provenance::default());
    let spec = RunSpec {
        model: proxy_model(corpus.vocab_size),
        plan: StagePlan::new(&schedule, &corpus.domains, &train_config).unwrap(),
        train: train_config,
        corpus,
        paths: RunPaths {
            checkpoints: dir.join("checkpoints"),
            metrics: dir.join("metrics.parquet"),
            eval: dir.join("eval.parquet"),
        },
        run_hash: format!("planted {domains:?} {seed}"),
        init: None,
    };
    let outcome = train(&spec, &CrossEntropy, &mut []).unwrap();
    outcome
        .final_eval
        .iter()
        .find(|l| l.domain == "own" && l.split == Split::Probe)
        .unwrap()
        .loss
}

/// Each domain's leave-one-out utility for the target, averaged over `seeds`.
fn leave_one_out(corpus: &Corpus, seeds: &[u64], dir: &Path) -> Vec<f64> {
    let mut utilities = vec![0.0; DOMAINS.len()];
    for &seed in seeds {
        let full = train_proxy(corpus, &DOMAINS, seed, &dir.join(format!("full-{seed}")));
        for (d, out) in DOMAINS.iter().enumerate() {
            let kept: Vec<&str> = DOMAINS.iter().copied().filter(|x| x != out).collect();
            let without = train_proxy(corpus, &kept, seed, &dir.join(format!("{out}-{seed}")));
            utilities[d] += (without - full) / seeds.len() as f64;
        }
    }
    utilities
}

/// The target: own's probe documents, each cut to its first `tokens`.
fn target(corpus: &Corpus, tokens: usize) -> TargetSet {
    let docs = corpus.probe[0].to_memory().unwrap().docs;
    TargetSet {
        name: "own".into(),
        weight: 1.0,
        docs: docs
            .iter()
            .map(|d| d.tokens[..d.tokens.len().min(tokens)].to_vec())
            .collect(),
    }
}

/// Each domain's joint utility from one proxy's checkpoints, per-domain gradients, and its
/// bootstrap standard error.
fn estimate(corpus: &Corpus, seed: u64, dir: &Path) -> (Vec<f64>, Vec<f64>) {
    let run = dir.join(format!("proxy-{seed}"));
    train_proxy(corpus, &DOMAINS, seed, &run);
    let target = target(corpus, usize::MAX);
    let (model, train_config) = (proxy_model(corpus.vocab_size), proxy_train(seed));
    let scoring = DomainScoring {
        model: &model,
        train: &train_config,
        eos: corpus.eos,
        domains: &corpus.train,
        targets: std::slice::from_ref(&target),
        sequences: 32,
        target_sequences: 16,
        precondition: Precondition::Adam,
        seed,
    };
    let mut score = |step, files: &_| scoring.score_checkpoint(step, files);
    let rows = score_checkpoints(
        &run.join("checkpoints"),
        &run.join("scores"),
        &mut score,
        &mut |_, _, _| {},
    )
    .unwrap();
    let summary = summarize(&rows, &[target], &corpus.domains, 200, seed).unwrap();
    DOMAINS
        .iter()
        .map(|d| {
            let u = overall(&summary, d, JOINT_TARGET).unwrap();
            (u.utility, u.stderr)
        })
        .unzip()
}

/// The same proxy's utilities from the output layer's gradients through the logits alone
/// (`gradients = "sample"`): 32 documents a domain, DataInf off.
fn output_layer_estimate(corpus: &Corpus, seed: u64, dir: &Path) -> Vec<f64> {
    let run = dir.join(format!("proxy-{seed}"));
    let target = target(corpus, 129);
    let model = proxy_model(corpus.vocab_size);
    let sample = sample_documents(&corpus.train, 32, 128, seed).unwrap();
    let projection = GradientProjection::new(corpus.vocab_size, model.d_model, 32, 32, seed);
    let scoring = Scoring {
        model: &model,
        domains: &corpus.domains,
        sample: &sample,
        targets: std::slice::from_ref(&target),
        projection: &projection,
        comparison: Comparison::default(),
    };
    let rows = scoring
        .score_all(
            &run.join("checkpoints"),
            &run.join("output-scores"),
            &mut |_, _, _| {},
        )
        .unwrap();
    let summary = summarize(&rows, &[target], &corpus.domains, 50, seed).unwrap();
    DOMAINS
        .iter()
        .map(|d| overall(&summary, d, JOINT_TARGET).unwrap().utility)
        .collect()
}

#[test]
fn the_estimator_ranks_planted_domains_as_leave_one_out_does() {
    let checked = check_planted(11);
    println!("{}", checked.report);
    assert!(checked.rho >= 0.9, "{}", checked.report);
    // What the default replaced: the logit path sees the sub-word predictions every domain of
    // these words shares, not the word order that decides their value.
    assert!(
        checked.output_layer_fails,
        "the output-layer estimator passes now: update README's account of it\n{}",
        checked.report
    );
}

/// Other draws of the same construction (`cargo test --test planted -- --ignored`, about a minute
/// each). Every structural check holds on each; the rank agreement with leave-one-out does not
/// reach 0.9 on all (measured 0.893, 0.964 and 0.786: the reversed decoy, which first-order
/// influence at the checkpoints finds useful and leave-one-out finds the most harmful, is the
/// miss), so this asserts 0.75 and prints the figures (bench/RESULTS.md, 2026-12-06).
#[test]
#[ignore = "held-out instances, run by hand (bench/RESULTS.md)"]
fn held_out_planted_instances_pass_the_structural_checks() {
    for seed in [12, 13, 14] {
        let checked = check_planted(seed);
        println!("corpus seed {seed}:\n{}", checked.report);
        assert!(checked.rho >= 0.75, "{}", checked.report);
    }
}

/// What [`check_planted`] found.
struct Checked {
    /// The figures.
    report: String,
    /// Spearman ρ of the estimate against leave-one-out over the seven domains.
    rho: f64,
    /// Whether the output-layer estimator misses (ρ < 0.9 against LOO, or the half-structure
    /// domain below a decoy).
    output_layer_fails: bool,
}

/// Builds the planted corpus of `seed`, estimates, trains leave-one-out, asserts what the
/// construction implies of the default estimator (own domain first, both decoys below the
/// half-structure domain, the disjoint one near zero, twins within 15 % per token, the mix at the
/// token-weighted mean of its parts), and returns the figures with the rank agreement.
fn check_planted(seed: u64) -> Checked {
    let dir = tempfile::tempdir().unwrap();
    let corpus = planted_corpus(seed, dir.path());
    let (u, stderr) = estimate(&corpus, 0, dir.path());
    let old = output_layer_estimate(&corpus, 0, dir.path());
    let loo = leave_one_out(&corpus, &[0, 1], dir.path());
    let at = |d: &str| DOMAINS.iter().position(|x| *x == d).unwrap();
    let (own, half, short) = (u[at("own")], u[at("half")], u[at("half_short")]);
    let rho_old = spearman(&old, &loo);
    let report =
        format!("estimate {u:?} ± {stderr:?}\nLOO {loo:?}\noutput layer {old:?} (ρ {rho_old:.3})");
    let best = u
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    assert_eq!(DOMAINS[best], "own", "{report}");
    assert!(
        u[at("reversed")] < half && u[at("shuffled")] < half,
        "{report}"
    );
    assert!(u[at("disjoint")].abs() < 0.1 * own, "{report}");
    assert!(
        (half - short).abs() <= 0.15 * half.abs().max(short.abs()),
        "{report}"
    );
    // Half of the mix's documents are own's (the first half), but not half of its tokens: the
    // BPE, trained mostly on lower-case words, spells the disjoint words in more tokens.
    let mix = &corpus.train[at("mix")].to_memory().unwrap().docs;
    let tokens = |docs: &[mixlab_trainer::data::store::Document]| -> f64 {
        docs.iter().map(|d| d.tokens.len() as f64 + 1.0).sum()
    };
    let own_share = tokens(&mix[..DOCS / 2]) / tokens(mix);
    let mean = own_share * own + (1.0 - own_share) * u[at("disjoint")];
    // Which part a window falls in is a coin toss: the mix's error is mostly that sampling's.
    assert!(
        (u[at("mix")] - mean).abs() <= 3.0 * stderr[at("mix")],
        "mix {:.3} against {mean:.3} ({own_share:.2} of its tokens own's)\n{report}",
        u[at("mix")]
    );
    let rho = spearman(&u, &loo);
    Checked {
        report: format!("Spearman {rho:.3} against LOO\n{report}"),
        rho,
        output_layer_fails: rho_old < 0.9
            || old[at("half")] < old[at("reversed")].max(old[at("shuffled")]),
    }
}
