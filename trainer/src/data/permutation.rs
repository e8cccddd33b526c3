//! A seeded permutation of `0..n` computed one position at a time, in constant memory.
//!
//! The sampler visits a domain's documents in a new random order every epoch. Storing that order
//! costs memory in proportion to the number of documents (a 100-billion-token corpus has on the
//! order of 10⁸), so the order is a keyed bijection instead: a balanced Feistel network over the
//! smallest even number of bits that holds `n`, with cycle walking (apply it again while the
//! result is `≥ n`; each application is a bijection of `0..2^bits`, so the walk ends inside
//! `0..n` and the whole is a bijection of `0..n`). Six rounds of a keyed 64-bit mixer give orders
//! that no test of ours tells from a uniform shuffle. Written by hand: the crates that offer this
//! (`permutation_iterator`, `feistel-permutation`) are unmaintained and fix their own round
//! function, and the whole is twenty lines.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Feistel rounds.
const ROUNDS: usize = 6;

/// A bijection of `0..n` chosen by a seed.
///
/// # Example
/// ```
/// use mixlab_trainer::data::permutation::Permutation;
/// let p = Permutation::new(10, [7, 0, 0]);
/// let mut order: Vec<u64> = (0..10).map(|i| p.at(i)).collect();
/// assert_ne!(order, (0..10).collect::<Vec<_>>());
/// order.sort_unstable();
/// assert_eq!(order, (0..10).collect::<Vec<_>>());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    keys: [u64; ROUNDS],
}

impl Permutation {
    /// The permutation of `0..n` keyed by `key` (for the sampler: seed, domain and epoch).
    pub fn new(n: u64, key: [u64; 3]) -> Self {
        let mut seed = [0u8; 32];
        for (chunk, word) in seed.chunks_exact_mut(8).zip(key) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        let mut rng = ChaCha8Rng::from_seed(seed);
        let bits = u64::BITS - n.saturating_sub(1).leading_zeros();
        Self {
            n,
            half_bits: bits.div_ceil(2).max(1),
            keys: std::array::from_fn(|_| rng.random()),
        }
    }

    /// How many positions the permutation has.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether it permutes nothing.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The element at position `i` (`i < n`).
    pub fn at(&self, i: u64) -> u64 {
        debug_assert!(i < self.n, "position {i} of a permutation of {}", self.n);
        let mut v = self.encrypt(i);
        while v >= self.n {
            v = self.encrypt(v);
        }
        v
    }

    /// One pass of the Feistel network over `0..2^(2·half_bits)`.
    fn encrypt(&self, v: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (v >> self.half_bits, v & mask);
        for key in self.keys {
            (left, right) = (right, left ^ (mix(right ^ key) & mask));
        }
        (left << self.half_bits) | right
    }
}

/// SplitMix64's finalizer: a bijective 64-bit mixer with full avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_is_a_bijection() {
        for n in 0..300u64 {
            for key in [[0, 0, 0], [1, 2, 3], [n, 9, 1]] {
                let p = Permutation::new(n, key);
                let mut seen = vec![false; n as usize];
                for i in 0..n {
                    let v = p.at(i) as usize;
                    assert!(!seen[v], "n {n}: {v} twice");
                    seen[v] = true;
                }
            }
        }
    }

    #[test]
    fn orders_differ_by_key_and_positions_spread_evenly() {
        let order = |key| {
            (0..50)
                .map(|i| Permutation::new(50, key).at(i))
                .collect::<Vec<_>>()
        };
        assert_ne!(order([1, 0, 0]), order([1, 0, 1]), "another epoch");
        assert_ne!(order([1, 0, 0]), order([1, 1, 0]), "another domain");
        assert_eq!(order([4, 2, 7]), order([4, 2, 7]));
        // Where position 0 lands over 4,000 keys: each of 10 slots about 400 times.
        let mut counts = [0u32; 10];
        for k in 0..4000 {
            counts[Permutation::new(10, [k, 3, 0]).at(0) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (320..480).contains(&c)),
            "{counts:?}"
        );
        // And two positions are not tied: the pair (π(0), π(1)) covers all 90 pairs of 10.
        let mut pairs = std::collections::HashSet::new();
        for k in 0..4000 {
            let p = Permutation::new(10, [k, 5, 0]);
            pairs.insert((p.at(0), p.at(1)));
        }
        assert_eq!(pairs.len(), 90);
    }
}
