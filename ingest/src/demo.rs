//! The embedded demo corpus: five small synthetic domains with known properties.
//!
//! `mixlab demo-data` writes it, and `mixlab ingest` writes it when the default `datasets.toml`
//! points at it and it is missing, so a fresh clone works offline. The domains differ on purpose:
//!
//! | domain | file | what it is | known property |
//! |---|---|---|---|
//! | `arithmetic` | `arithmetic.jsonl` | templated word problems with answers | answers are computable; a `difficulty` field for SQL filters |
//! | `code` | `code.jsonl.gz` | programs from a small grammar of Python functions | low stop-word share: prose filters must be off |
//! | `prose` | `prose.csv` | English-like sentences from a grammar | passes the Gopher rules |
//! | `noise` | `noise.jsonl` | random characters | no structure at all: useless to a language model |
//! | `duplicated` | `duplicated.jsonl` | base texts, copied exactly and with one word changed | 3/7 exact and about 3/7 near duplicates |
//!
//! Generation is seeded, so the bytes are identical on every machine.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;

/// Names of the demo domains, in the order `datasets.toml` lists them.
pub const DEMO_DOMAINS: [&str; 5] = ["arithmetic", "code", "prose", "noise", "duplicated"];

/// Documents per demo domain (before duplication in `duplicated`).
const DOCS_PER_DOMAIN: usize = 1000;

/// Writes the demo corpus into `dir` (created if needed) and returns the files written.
///
/// # Errors
/// An I/O error naming the file.
///
/// # Example
/// ```
/// let dir = tempfile::tempdir()?;
/// let files = mixlab_ingest::demo::write_demo_corpus(dir.path(), 7)?;
/// assert_eq!(files.len(), 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_demo_corpus(dir: &Path, seed: u64) -> Result<Vec<PathBuf>> {
    fs_err::create_dir_all(dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut files = Vec::new();

    let arithmetic: Vec<String> = (0..DOCS_PER_DOMAIN)
        .map(|i| {
            let (text, difficulty) = arithmetic_doc(&mut rng);
            json_line(
                &[("id", format!("arithmetic-{i}")), ("text", text)],
                Some(("difficulty", difficulty)),
            )
        })
        .collect();
    files.push(write_atomic(
        &dir.join("arithmetic.jsonl"),
        arithmetic.concat().as_bytes(),
    )?);

    let code: Vec<String> = (0..DOCS_PER_DOMAIN)
        .map(|i| {
            json_line(
                &[("id", format!("code-{i}")), ("text", code_doc(&mut rng))],
                None,
            )
        })
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(code.concat().as_bytes())?;
    files.push(write_atomic(&dir.join("code.jsonl.gz"), &gz.finish()?)?);

    let mut prose = String::from("id,title,text\n");
    for i in 0..DOCS_PER_DOMAIN {
        let sentences = 4 + rng.random_range(0..5);
        let text = prose_doc(&mut rng, sentences);
        prose.push_str(&format!(
            "prose-{i},Story {i},\"{}\"\n",
            text.replace('"', "\"\"")
        ));
    }
    files.push(write_atomic(&dir.join("prose.csv"), prose.as_bytes())?);

    let noise: Vec<String> = (0..DOCS_PER_DOMAIN)
        .map(|i| {
            json_line(
                &[("id", format!("noise-{i}")), ("text", noise_doc(&mut rng))],
                None,
            )
        })
        .collect();
    files.push(write_atomic(
        &dir.join("noise.jsonl"),
        noise.concat().as_bytes(),
    )?);

    files.push(write_atomic(
        &dir.join("duplicated.jsonl"),
        duplicated_docs(&mut rng).concat().as_bytes(),
    )?);
    Ok(files)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    mixlab_artefacts::atomic::write_atomic(path, bytes)?;
    Ok(path.to_owned())
}

fn json_line(fields: &[(&str, String)], number: Option<(&str, u32)>) -> String {
    let mut object = serde_json::Map::new();
    for (k, v) in fields {
        object.insert((*k).to_owned(), serde_json::Value::String(v.clone()));
    }
    if let Some((k, v)) = number {
        object.insert(k.to_owned(), serde_json::Value::from(v));
    }
    serde_json::Value::Object(object).to_string() + "\n"
}

const NAMES: [&str; 12] = [
    "Ava", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jun", "Kofi", "Lena",
];
const ITEMS: [&str; 10] = [
    "apples", "books", "coins", "marbles", "pencils", "stamps", "shells", "cards", "beads",
    "tickets",
];

/// Two to five word problems with worked answers; difficulty 1-5 grows with operand size and steps.
fn arithmetic_doc(rng: &mut ChaCha8Rng) -> (String, u32) {
    let difficulty = rng.random_range(1..=5u32);
    let max = 10u64.pow(difficulty.min(4)) + 10;
    let mut parts = Vec::new();
    for _ in 0..rng.random_range(2..=5) {
        let name = NAMES.choose(rng).copied().unwrap_or("Ava");
        let item = ITEMS.choose(rng).copied().unwrap_or("apples");
        let a = rng.random_range(2..max);
        let b = rng.random_range(1..a);
        let c = rng.random_range(1..=9u64);
        let text = match rng.random_range(0..4) {
            0 => format!(
                "{name} has {a} {item}. {name} buys {b} more. How many {item} does {name} have now? Answer: {a} + {b} = {}.",
                a + b
            ),
            1 => format!(
                "{name} has {a} {item} and gives {b} to a friend. How many {item} are left? Answer: {a} - {b} = {}.",
                a - b
            ),
            2 => format!(
                "Each box holds {c} {item}. {name} fills {b} boxes. How many {item} is that in total? Answer: {c} * {b} = {}.",
                c * b
            ),
            _ => format!(
                "{name} shares {} {item} equally among {c} friends. How many does each friend get? Answer: {} / {c} = {b}.",
                b * c,
                b * c
            ),
        };
        parts.push(text);
    }
    (parts.join("\n"), difficulty)
}

const VARS: [&str; 8] = ["x", "y", "total", "count", "value", "item", "acc", "n"];
const FUNCS: [&str; 8] = [
    "scale",
    "clip",
    "accumulate",
    "count_even",
    "square_sum",
    "shift",
    "mix",
    "step",
];

/// A small Python module: two to four functions built from a grammar of statements.
fn code_doc(rng: &mut ChaCha8Rng) -> String {
    let mut out = String::new();
    for f in 0..rng.random_range(2..=4) {
        let name = FUNCS.choose(rng).copied().unwrap_or("step");
        let arg = VARS.choose(rng).copied().unwrap_or("x");
        out.push_str(&format!(
            "def {name}_{f}({arg}, limit={}):\n",
            rng.random_range(1..100)
        ));
        out.push_str("    result = 0\n");
        for _ in 0..rng.random_range(1..=4) {
            let k = rng.random_range(1..20);
            let line = match rng.random_range(0..4) {
                0 => format!("    for i in range({arg}):\n        result += i * {k}\n"),
                1 => format!(
                    "    if {arg} > limit:\n        {arg} = {arg} - {k}\n    else:\n        result += {k}\n"
                ),
                2 => format!("    while result < limit:\n        result = result + {k}\n"),
                _ => format!("    result = (result + {arg}) % {}\n", k + 1),
            };
            out.push_str(&line);
        }
        out.push_str("    return result\n\n");
    }
    out
}

const ADJECTIVES: [&str; 20] = [
    "old", "young", "quiet", "tired", "honest", "clever", "careful", "cheerful", "lonely", "proud",
    "small", "broken", "empty", "distant", "golden", "narrow", "ancient", "muddy", "crowded",
    "silent",
];
const PEOPLE: [&str; 15] = [
    "miller",
    "teacher",
    "doctor",
    "farmer",
    "student",
    "captain",
    "baker",
    "merchant",
    "guard",
    "weaver",
    "fisherman",
    "widow",
    "priest",
    "soldier",
    "gardener",
];
const VERBS: [&str; 12] = [
    "walked to",
    "looked at",
    "talked about",
    "worried about",
    "returned to",
    "wrote about",
    "waited by",
    "cleaned",
    "painted",
    "remembered",
    "sold",
    "repaired",
];
const THINGS: [&str; 15] = [
    "river", "market", "wheel", "winter", "garden", "bridge", "letter", "harbour", "school",
    "train", "chapel", "orchard", "lantern", "fence", "boat",
];
const REASONS: [&str; 10] = [
    "because the rain had stopped",
    "while the children were asleep",
    "and that was the end of the day",
    "with a heavy heart",
    "before the sun went down",
    "as the bells began to ring",
    "to have some peace",
    "since nobody else would",
    "after the long harvest",
    "for the sake of the village",
];
const TIMES: [&str; 8] = [
    "In the morning",
    "Later that week",
    "On a cold evening",
    "Long ago",
    "At noon",
    "Every spring",
    "That summer",
    "Before dawn",
];

/// A paragraph of `sentences` grammatical English sentences.
fn prose_doc(rng: &mut ChaCha8Rng, sentences: usize) -> String {
    let pick =
        |rng: &mut ChaCha8Rng, words: &[&'static str]| words.choose(rng).copied().unwrap_or("old");
    (0..sentences)
        .map(|_| {
            let subject = format!("the {} {}", pick(rng, &ADJECTIVES), pick(rng, &PEOPLE));
            let object = format!("the {} {}", pick(rng, &ADJECTIVES), pick(rng, &THINGS));
            let mut clause = format!("{subject} {} {object}", pick(rng, &VERBS));
            if rng.random_bool(0.4) {
                clause = format!("{clause} {}", pick(rng, &REASONS));
            }
            let mut sentence = if rng.random_bool(0.3) {
                format!("{}, {clause}.", pick(rng, &TIMES))
            } else {
                format!("{clause}.")
            };
            sentence[..1].make_ascii_uppercase();
            sentence
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Random "words" of random printable characters.
fn noise_doc(rng: &mut ChaCha8Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!@#$%^&*()-_=+[]{};:,.<>/?|~";
    let words = rng.random_range(40..120);
    (0..words)
        .map(|_| {
            let len = rng.random_range(2..9);
            (0..len)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Base texts each written once, three times exactly (case and spacing varied) and three times with
/// one word changed: 3/7 exact and about 3/7 near duplicates.
fn duplicated_docs(rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut lines = Vec::new();
    for base in 0..DOCS_PER_DOMAIN / 7 {
        let text = format!("Notice {base}. {}", prose_doc(rng, 12));
        let mut copies = vec![text.clone()];
        copies.push(text.to_uppercase());
        copies.push(text.replace(". ", ".  "));
        copies.push(format!("  {text}\n"));
        for _ in 0..3 {
            let mut words: Vec<String> = text.split(' ').map(str::to_owned).collect();
            let at = rng.random_range(2..words.len());
            words[at] = ADJECTIVES.choose(rng).copied().unwrap_or("old").to_owned();
            copies.push(words.join(" "));
        }
        for (k, copy) in copies.into_iter().enumerate() {
            lines.push(json_line(
                &[("id", format!("dup-{base}-{k}")), ("text", copy)],
                None,
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_corpus_is_deterministic_and_small() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let fa = write_demo_corpus(a.path(), 1).unwrap();
        let fb = write_demo_corpus(b.path(), 1).unwrap();
        let mut total = 0;
        for (x, y) in fa.iter().zip(&fb) {
            let (bx, by) = (std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
            assert_eq!(bx, by, "{} differs between runs", x.display());
            total += bx.len();
        }
        assert!(total < 5_000_000, "demo corpus is {total} bytes");
    }

    #[test]
    fn arithmetic_answers_are_correct() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let (doc, _) = arithmetic_doc(&mut rng);
            for line in doc.lines() {
                let answer = line.split("Answer: ").nth(1).unwrap().trim_end_matches('.');
                let (expr, result) = answer.split_once(" = ").unwrap();
                let t: Vec<&str> = expr.split(' ').collect();
                let (x, y): (u64, u64) = (t[0].parse().unwrap(), t[2].parse().unwrap());
                let expected = match t[1] {
                    "+" => x + y,
                    "-" => x - y,
                    "*" => x * y,
                    _ => x / y,
                };
                assert_eq!(result.parse::<u64>().unwrap(), expected, "{line}");
            }
        }
    }
}
