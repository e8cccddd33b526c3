//! Quality filters: one function per rule, each returning `Some(reason)` to drop a document.
//!
//! Reasons are stable snake_case strings counted per domain in `manifest.json`, so a report can say
//! which rule dropped what. The rules and their default thresholds follow Gopher (Rae et al. 2021,
//! appendix A.1.1); code and math domains switch the prose rules off through per-domain overrides.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::config::FilterConfig;

/// Every reason a filter can give, in the order the rules run.
pub const REASONS: [&str; 10] = [
    "nul_bytes",
    "too_short",
    "too_long",
    "too_few_words",
    "low_alpha_chars",
    "low_alpha_words",
    "few_stop_words",
    "word_length",
    "repeated_lines",
    "repeated_ngrams",
];

/// Gopher's stop-word list: a document of English prose contains at least two of these.
const STOP_WORDS: [&str; 8] = ["the", "be", "to", "of", "and", "that", "have", "with"];

/// A document's length limits plus the Gopher rules, resolved for one domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityFilter {
    /// Minimum length in characters (`too_short`).
    pub min_chars: usize,
    /// Maximum length in characters (`too_long`).
    pub max_chars: usize,
    /// The Gopher rules' thresholds.
    pub rules: FilterConfig,
}

impl QualityFilter {
    /// Runs every rule in [`REASONS`] order; returns the first that drops `text`, or `None` to keep it.
    ///
    /// # Example
    /// ```
    /// use mixlab_ingest::config::FilterConfig;
    /// use mixlab_ingest::filter::QualityFilter;
    /// let f = QualityFilter { min_chars: 10, max_chars: 1000, rules: FilterConfig::default() };
    /// assert_eq!(f.check("tiny"), Some("too_short"));
    /// let prose = "The river ran past the old mill, and the miller said that he would have to mend the wheel.";
    /// assert_eq!(f.check(prose), None);
    /// ```
    pub fn check(&self, text: &str) -> Option<&'static str> {
        // NUL is never text: a binary file read as text, or a broken export.
        if text.contains('\0') {
            return Some("nul_bytes");
        }
        let n_chars = text.chars().count();
        if n_chars < self.min_chars {
            return Some("too_short");
        }
        if n_chars > self.max_chars {
            return Some("too_long");
        }
        let r = &self.rules;
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.len() < r.min_words {
            return Some("too_few_words");
        }
        if alpha_char_fraction(text) < r.min_alpha_char_fraction {
            return Some("low_alpha_chars");
        }
        if words.is_empty() {
            return None;
        }
        let alpha_words = words
            .iter()
            .filter(|w| w.chars().any(char::is_alphabetic))
            .count();
        if (alpha_words as f64) < r.min_alpha_word_fraction * words.len() as f64 {
            return Some("low_alpha_words");
        }
        if r.min_stop_words > 0 && count_stop_words(&words, r.min_stop_words) < r.min_stop_words {
            return Some("few_stop_words");
        }
        let mean_len =
            words.iter().map(|w| w.chars().count()).sum::<usize>() as f64 / words.len() as f64;
        let (lo, hi) = r.mean_word_length;
        if mean_len < lo || mean_len > hi {
            return Some("word_length");
        }
        if duplicate_line_fraction(text) > r.max_duplicate_line_fraction {
            return Some("repeated_lines");
        }
        if repeated_ngrams(
            &words,
            &r.max_top_ngram_fraction,
            &r.max_duplicate_ngram_fraction,
        ) {
            return Some("repeated_ngrams");
        }
        None
    }
}

/// Share of non-whitespace characters that are alphabetic; 1.0 for a blank text.
fn alpha_char_fraction(text: &str) -> f64 {
    let (mut alpha, mut total) = (0usize, 0usize);
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        total += 1;
        alpha += usize::from(c.is_alphabetic());
    }
    if total == 0 {
        1.0
    } else {
        alpha as f64 / total as f64
    }
}

/// Counts stop-word occurrences, stopping early once `enough` are found.
fn count_stop_words(words: &[&str], enough: usize) -> usize {
    let mut n = 0;
    for w in words {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric());
        if STOP_WORDS.iter().any(|s| s.eq_ignore_ascii_case(w)) {
            n += 1;
            if n >= enough {
                break;
            }
        }
    }
    n
}

/// Share of non-empty lines that repeat an earlier line.
fn duplicate_line_fraction(text: &str) -> f64 {
    let mut seen = HashSet::new();
    let (mut dup, mut total) = (0usize, 0usize);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        total += 1;
        dup += usize::from(!seen.insert(line));
    }
    if total == 0 {
        0.0
    } else {
        dup as f64 / total as f64
    }
}

/// Gopher's n-gram repetition rules, measured in characters of the words involved.
///
/// For n = 2..=4 the most frequent n-gram may cover at most `top[n-2]` of all word characters; for
/// n = 5..=10 the characters inside n-grams seen more than once may be at most `dup[n-5]`.
/// N-grams are keyed by a 64-bit hash combined from per-word hashes, so each word is hashed once.
fn repeated_ngrams(words: &[&str], top: &[f64; 3], dup: &[f64; 6]) -> bool {
    let lens: Vec<usize> = words.iter().map(|w| w.chars().count()).collect();
    let total_chars: usize = lens.iter().sum();
    if total_chars == 0 {
        return false;
    }
    let word_hashes: Vec<u64> = words.iter().map(|w| xxh3_64(w.as_bytes())).collect();
    let gram_hash = |start: usize, n: usize| {
        word_hashes[start..start + n].iter().fold(0u64, |h, w| {
            h.rotate_left(23).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ w
        })
    };
    for (i, &limit) in top.iter().enumerate() {
        let n = i + 2;
        if limit >= 1.0 || words.len() < n {
            continue;
        }
        // Per n-gram: occurrences and the first start (to measure its characters).
        let mut counts: HashMap<u64, (usize, usize), BuildPassThrough> = HashMap::default();
        for start in 0..=words.len() - n {
            counts.entry(gram_hash(start, n)).or_insert((0, start)).0 += 1;
        }
        let top_gram = counts
            .values()
            .max_by_key(|(count, start)| (*count, std::cmp::Reverse(*start)));
        if let Some(&(count, start)) = top_gram {
            let gram_chars: usize = lens[start..start + n].iter().sum();
            if count > 1 && (gram_chars * count) as f64 > limit * total_chars as f64 {
                return true;
            }
        }
    }
    for (i, &limit) in dup.iter().enumerate() {
        let n = i + 5;
        if limit >= 1.0 || words.len() < n {
            continue;
        }
        let mut first_seen: HashSet<u64, BuildPassThrough> = HashSet::default();
        let mut covered = vec![false; words.len()];
        for start in 0..=words.len() - n {
            if !first_seen.insert(gram_hash(start, n)) {
                covered[start..start + n].iter_mut().for_each(|c| *c = true);
            }
        }
        let dup_chars: usize = covered
            .iter()
            .zip(&lens)
            .filter(|(c, _)| **c)
            .map(|(_, l)| l)
            .sum();
        if dup_chars as f64 > limit * total_chars as f64 {
            return true;
        }
    }
    false
}

/// Keys here are already xxh3 hashes: hashing them again (SipHash) would only cost time.
#[derive(Default, Clone, Copy)]
struct BuildPassThrough;

impl std::hash::BuildHasher for BuildPassThrough {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

/// A hasher that returns the `u64` it is given.
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the maps above; fold anything else for completeness.
        self.0 = bytes
            .iter()
            .fold(self.0, |h, b| h.rotate_left(8) ^ u64::from(*b));
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> QualityFilter {
        QualityFilter {
            min_chars: 20,
            max_chars: 2_000,
            rules: FilterConfig::default(),
        }
    }

    const GOOD: &str = "The river ran past the old mill, and the miller said that he would have \
                        to mend the wheel with new wood before the winter came to the valley.";

    #[test]
    fn good_prose_passes_every_rule() {
        assert_eq!(filter().check(GOOD), None);
    }

    #[test]
    fn each_reason_has_a_crafted_input() {
        let f = filter();
        assert_eq!(f.check("short text"), Some("too_short"));
        let prose =
            "The river ran past the old mill, and the miller said that he would have to mend it.";
        assert_eq!(f.check(prose), None);
        assert_eq!(f.check(&prose.replace("mill", "mi\0ll")), Some("nul_bytes"));
        assert_eq!(f.check(&"word ".repeat(500)), Some("too_long"));
        let mut few = filter();
        few.rules.min_words = 100;
        assert_eq!(few.check(GOOD), Some("too_few_words"));
        assert_eq!(
            f.check("#$%^&*()_+ 12345 67890 !@#$ the and of"),
            Some("low_alpha_chars")
        );
        assert_eq!(
            f.check("the cat and the dog sat with the big red fox 1 2 3 4 5 6 7"),
            Some("low_alpha_words")
        );
        assert_eq!(
            f.check("Lorem ipsum dolor sit amet consectetur adipiscing elit sed do"),
            Some("few_stop_words")
        );
        assert_eq!(
            f.check("the of and to a b c d e f g h i j k l m n o p q r s t u v w x y z"),
            Some("word_length")
        );
        let lines = "the cat and the dog\n".repeat(5) + "a different line with the words of that";
        assert_eq!(f.check(&lines), Some("repeated_lines"));
        let grams = "buy the best pills now ".repeat(8) + "and that is all we have to say with you";
        assert_eq!(f.check(&grams), Some("repeated_ngrams"));
    }

    #[test]
    fn permissive_overrides_switch_prose_rules_off_for_code() {
        let code = "fn main() {\n    let x = vec![1, 2, 3];\n    println!(\"{:?}\", x.iter().sum::<i32>());\n}";
        assert!(
            filter().check(code).is_some(),
            "default prose rules drop code"
        );
        let mut for_code = filter();
        for_code.rules.min_alpha_word_fraction = 0.0;
        for_code.rules.min_stop_words = 0;
        for_code.rules.min_alpha_char_fraction = 0.0;
        for_code.rules.mean_word_length = (0.0, 100.0);
        assert_eq!(for_code.check(code), None);
    }
}
