//! Exact and near-duplicate detection across all domains.
//!
//! Exact: a 128-bit hash of the normalized text (lower case, whitespace collapsed). Near: MinHash
//! signatures over word n-grams, indexed by LSH bands; a band collision makes a candidate, which is
//! confirmed only if the signatures agree on at least `threshold` of their slots (the Jaccard
//! estimate). Signatures are computed in parallel; [`DedupIndex::insert`] runs sequentially in
//! document order so the first occurrence is the one kept, on every run.
//!
//! MinHash is written by hand: the Rust crates for it either hash shingles through `std`'s
//! randomized `HashMap` (not reproducible across runs) or pull in a different hash family per
//! permutation; one xxh3 hash per shingle plus a multiply-shift permutation is simpler and faster.

use std::collections::{BTreeMap, HashMap, HashSet};

use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::config::MinHashConfig;

/// Text with case folded and runs of whitespace collapsed to one space.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// Hash of the normalized text used for exact dedup.
pub fn exact_hash(normalized: &str) -> u128 {
    xxh3_128(normalized.as_bytes())
}

/// Computes MinHash signatures with fixed, seeded permutations.
///
/// Permutation `i` maps a 64-bit shingle hash `h` to the high 32 bits of `a_i·h + b_i` (mod 2^64)
/// with odd `a_i`: Dietzfelbinger's multiply-shift family, which needs no modular reduction, so the
/// inner loop over permutations vectorizes.
#[derive(Debug, Clone)]
pub struct MinHasher {
    ngram: usize,
    multipliers: Vec<u64>,
    offsets: Vec<u64>,
}

impl MinHasher {
    /// A hasher for `config.num_perm` permutations over `config.ngram`-word shingles.
    pub fn new(config: &MinHashConfig) -> Self {
        // A splitmix64 stream gives the same coefficients on every platform and crate version.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let multipliers = (0..config.num_perm).map(|_| next() | 1).collect();
        let offsets = (0..config.num_perm).map(|_| next()).collect();
        Self {
            ngram: config.ngram,
            multipliers,
            offsets,
        }
    }

    /// The signature of a normalized text; texts shorter than one shingle use the whole text.
    pub fn signature(&self, normalized: &str) -> Vec<u32> {
        let words: Vec<&str> = normalized.split(' ').collect();
        let mut shingles: Vec<u64> = if words.len() <= self.ngram {
            vec![xxh3_64(normalized.as_bytes())]
        } else {
            words
                .windows(self.ngram)
                .map(|w| {
                    let start = w[0].as_ptr() as usize - normalized.as_ptr() as usize;
                    let last = w[self.ngram - 1];
                    let end = last.as_ptr() as usize - normalized.as_ptr() as usize + last.len();
                    xxh3_64(&normalized.as_bytes()[start..end])
                })
                .collect()
        };
        shingles.sort_unstable();
        shingles.dedup();
        let mut mins = vec![u32::MAX; self.multipliers.len()];
        for &h in &shingles {
            for ((m, a), b) in mins.iter_mut().zip(&self.multipliers).zip(&self.offsets) {
                *m = (*m).min((a.wrapping_mul(h).wrapping_add(*b) >> 32) as u32);
            }
        }
        mins
    }
}

/// The LSH bucket keys of a signature: one hash per band of `signature.len() / bands` slots, the
/// band's number included so equal slots in different bands do not collide.
///
/// # Example
/// ```
/// use mixlab_ingest::dedup::band_keys;
/// let keys = band_keys(&[1, 2, 3, 4], 2);
/// assert_eq!(keys.len(), 2);
/// assert_eq!(keys, band_keys(&[1, 2, 3, 4], 2));
/// assert_ne!(band_keys(&[1, 2, 1, 2], 2)[0], band_keys(&[1, 2, 1, 2], 2)[1]);
/// ```
pub fn band_keys(signature: &[u32], bands: usize) -> Vec<u64> {
    let rows = signature.len() / bands.max(1);
    signature
        .chunks(rows.max(1))
        .take(bands)
        .enumerate()
        .map(|(band, chunk)| {
            let mut bytes = Vec::with_capacity(4 * rows + 8);
            bytes.extend_from_slice(&(band as u64).to_le_bytes());
            chunk
                .iter()
                .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
            xxh3_64(&bytes)
        })
        .collect()
}

/// Why [`DedupIndex::insert`] rejected a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// Same normalized text as an earlier document.
    Exact,
    /// Estimated Jaccard similarity with an earlier document at or above the threshold.
    Near,
}

/// Everything seen so far: exact hashes, and LSH buckets pointing at kept signatures.
///
/// Memory: 16 bytes per kept document for exact dedup, plus `4 · num_perm` bytes of signature and
/// about `24 · bands` bytes of bucket entries for near dedup (about 0.9 KB a document at defaults).
#[derive(Debug, Default)]
pub struct DedupIndex {
    exact: HashSet<u128>,
    near: Option<NearIndex>,
}

#[derive(Debug)]
struct NearIndex {
    threshold: f64,
    bands: usize,
    signatures: Vec<u32>,
    num_perm: usize,
    buckets: HashMap<u64, Vec<u32>>,
}

impl DedupIndex {
    /// An empty index; near dedup is on when `minhash` is given.
    pub fn new(minhash: Option<&MinHashConfig>) -> Self {
        Self {
            exact: HashSet::new(),
            near: minhash.map(|m| NearIndex {
                threshold: m.threshold,
                bands: m.bands,
                signatures: Vec::new(),
                num_perm: m.num_perm,
                buckets: HashMap::new(),
            }),
        }
    }

    /// Records a document unless it duplicates an earlier one.
    ///
    /// `hash` is checked when given (exact dedup on); `signature` when near dedup is on.
    pub fn insert(
        &mut self,
        hash: Option<u128>,
        signature: Option<&[u32]>,
    ) -> Result<(), Duplicate> {
        if let Some(h) = hash
            && self.exact.contains(&h)
        {
            return Err(Duplicate::Exact);
        }
        if let (Some(near), Some(sig)) = (&mut self.near, signature) {
            near.insert(sig)?;
        }
        if let Some(h) = hash {
            self.exact.insert(h);
        }
        Ok(())
    }
}

impl NearIndex {
    fn insert(&mut self, sig: &[u32]) -> Result<(), Duplicate> {
        let keys = band_keys(sig, self.bands);
        let mut checked = HashSet::new();
        for key in &keys {
            for &candidate in self.buckets.get(key).into_iter().flatten() {
                if checked.insert(candidate) && self.similarity(candidate, sig) >= self.threshold {
                    return Err(Duplicate::Near);
                }
            }
        }
        let id = (self.signatures.len() / self.num_perm) as u32;
        self.signatures.extend_from_slice(sig);
        for key in keys {
            self.buckets.entry(key).or_default().push(id);
        }
        Ok(())
    }

    fn similarity(&self, id: u32, sig: &[u32]) -> f64 {
        let start = id as usize * self.num_perm;
        let other = &self.signatures[start..start + self.num_perm];
        let equal = other.iter().zip(sig).filter(|(a, b)| a == b).count();
        equal as f64 / self.num_perm as f64
    }
}

/// A record's place in ingest order across every domain (earlier records win duplicates); on a
/// cluster, the part of the source in the high bits and the row in the part in the low ones.
pub type Ordinal = u64;

/// What grouping records by their dedup keys found, for [`resolve`]: no record outside these
/// lists can be a duplicate, or be one that another record duplicates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Groups {
    /// Each record whose exact hash an earlier record has, with the first record of that hash.
    pub exact: Vec<(Ordinal, Ordinal)>,
    /// Each record not in `exact` that shares an LSH band key with another such record, with
    /// its signature.
    pub colliding: Vec<(Ordinal, Vec<u32>)>,
}

/// The records that [`DedupIndex`], inserting every record in ordinal order, would reject, from
/// the groups alone.
///
/// A record outside every group is kept by the index: its hash is new and no bucket it lands in
/// holds another record. So replaying the index over the colliding records (in order) decides
/// near duplicates exactly, and an exact duplicate of a record that was itself a near duplicate
/// is a near duplicate too (the index finds the same kept record through the same signature).
pub fn resolve(groups: Groups, minhash: Option<&MinHashConfig>) -> BTreeMap<Ordinal, Duplicate> {
    let exact: HashMap<Ordinal, Ordinal> = groups.exact.into_iter().collect();
    let mut colliding = groups.colliding;
    colliding.sort_unstable_by_key(|(ord, _)| *ord);
    let mut index = DedupIndex::new(minhash);
    let mut dropped = BTreeMap::new();
    for (ord, signature) in colliding {
        if !exact.contains_key(&ord) && index.insert(None, Some(&signature)).is_err() {
            dropped.insert(ord, Duplicate::Near);
        }
    }
    for (ord, first) in exact {
        let near = dropped.get(&first) == Some(&Duplicate::Near);
        dropped.insert(
            ord,
            if near {
                Duplicate::Near
            } else {
                Duplicate::Exact
            },
        );
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(words: usize, seed: usize) -> String {
        (0..words)
            .map(|i| format!("w{}", (i * 7 + seed * 13) % 997))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn resolving_groups_drops_what_the_index_drops_in_order() {
        let config = MinHashConfig::default();
        let hasher = MinHasher::new(&config);
        let (a, b) = (text(300, 1), text(300, 2).replace('w', "v"));
        let near_a = a.replacen("w7 ", "changed ", 1);
        let texts = [
            a.clone(),
            near_a.to_uppercase(), // near duplicate of a
            b.clone(),
            near_a.clone(),       // exact duplicate of a near duplicate: near
            a.replace(' ', "  "), // exact duplicate of a kept record: exact
            text(300, 3).replace('w', "u"),
            b,
        ];
        for (exact, near) in [(true, true), (true, false), (false, true)] {
            let minhash = near.then_some(&config);
            let records = testing::records(&texts, exact, minhash.map(|_| &hasher));
            let mut index = DedupIndex::new(minhash);
            let expected: BTreeMap<Ordinal, Duplicate> = records
                .iter()
                .enumerate()
                .filter_map(|(i, (hash, sig))| {
                    let verdict = index.insert(*hash, sig.as_deref());
                    verdict.err().map(|d| (i as Ordinal, d))
                })
                .collect();
            let groups = testing::groups(&records, config.bands);
            assert_eq!(
                resolve(groups, minhash),
                expected,
                "exact {exact}, near {near}"
            );
            assert!(expected.len() >= 2, "{expected:?}");
        }
    }

    #[test]
    fn normalize_folds_case_and_whitespace() {
        assert_eq!(normalize("  Hello\t\tWORLD \n again "), "hello world again");
    }

    #[test]
    fn exact_duplicates_differ_only_in_case_and_spacing() {
        let mut index = DedupIndex::new(None);
        let a = exact_hash(&normalize("The  same text"));
        let b = exact_hash(&normalize("the same\ntext"));
        assert_eq!(index.insert(Some(a), None), Ok(()));
        assert_eq!(index.insert(Some(b), None), Err(Duplicate::Exact));
    }

    #[test]
    fn minhash_estimate_tracks_true_jaccard() {
        let config = MinHashConfig {
            num_perm: 256,
            ..MinHashConfig::default()
        };
        let hasher = MinHasher::new(&config);
        let a = text(400, 1);
        // Replace every 10th word: about 0.6 Jaccard over 5-gram shingles.
        let b: Vec<String> = a
            .split(' ')
            .enumerate()
            .map(|(i, w)| {
                if i % 10 == 0 {
                    format!("x{i}")
                } else {
                    w.to_owned()
                }
            })
            .collect();
        let b = b.join(" ");
        let shingles = |t: &str| -> HashSet<String> {
            let w: Vec<&str> = t.split(' ').collect();
            w.windows(5).map(|g| g.join(" ")).collect()
        };
        let (sa, sb) = (shingles(&a), shingles(&b));
        let truth = sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64;
        let (ga, gb) = (hasher.signature(&a), hasher.signature(&b));
        let estimate = ga.iter().zip(&gb).filter(|(x, y)| x == y).count() as f64 / 256.0;
        assert!(
            (estimate - truth).abs() < 0.1,
            "estimate {estimate} vs true Jaccard {truth}"
        );
    }

    #[test]
    fn near_duplicates_are_caught_and_distinct_texts_kept() {
        let config = MinHashConfig::default();
        let hasher = MinHasher::new(&config);
        let mut index = DedupIndex::new(Some(&config));
        let a = text(300, 1);
        let near = a.replacen("w7 ", "changed ", 1);
        let other = text(300, 2).replace('w', "v");
        assert_eq!(index.insert(None, Some(&hasher.signature(&a))), Ok(()));
        assert_eq!(
            index.insert(None, Some(&hasher.signature(&near))),
            Err(Duplicate::Near)
        );
        assert_eq!(index.insert(None, Some(&hasher.signature(&other))), Ok(()));
    }
}

/// Dedup keys of texts and their [`Groups`] found in memory, to check the cluster's queries and
/// [`resolve`] against [`DedupIndex`].
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Each text's exact hash and signature, as the judge computes them.
    pub(crate) fn records(
        texts: &[String],
        exact: bool,
        hasher: Option<&MinHasher>,
    ) -> Vec<(Option<u128>, Option<Vec<u32>>)> {
        texts
            .iter()
            .map(|t| {
                let normalized = normalize(t);
                let hash = exact.then(|| exact_hash(&normalized));
                (hash, hasher.map(|h| h.signature(&normalized)))
            })
            .collect()
    }

    /// The groups of `records` (ordinal = position), found by brute force.
    pub(crate) fn groups(records: &[(Option<u128>, Option<Vec<u32>>)], bands: usize) -> Groups {
        let mut first: HashMap<u128, Ordinal> = HashMap::new();
        let mut exact = Vec::new();
        for (i, (hash, _)) in records.iter().enumerate() {
            let Some(hash) = hash else { continue };
            match first.get(hash) {
                Some(&f) => exact.push((i as Ordinal, f)),
                None => {
                    first.insert(*hash, i as Ordinal);
                }
            }
        }
        let losers: HashSet<Ordinal> = exact.iter().map(|(o, _)| *o).collect();
        let mut buckets: HashMap<u64, Vec<Ordinal>> = HashMap::new();
        for (i, (_, sig)) in records.iter().enumerate() {
            if let Some(sig) = sig.as_ref().filter(|_| !losers.contains(&(i as Ordinal))) {
                for key in band_keys(sig, bands) {
                    buckets.entry(key).or_default().push(i as Ordinal);
                }
            }
        }
        let hit: std::collections::BTreeSet<Ordinal> = buckets
            .into_values()
            .filter(|b| b.len() > 1)
            .flatten()
            .collect();
        let colliding = hit
            .into_iter()
            .map(|o| (o, records[o as usize].1.clone().unwrap_or_default()))
            .collect();
        Groups { exact, colliding }
    }
}
