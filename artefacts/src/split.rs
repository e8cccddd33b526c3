//! The splits of a domain's documents: `train`, `valid` and `probe`, as the shards store them and as
//! evaluation files and metrics name the held-out ones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which split a document belongs to, decided by its `doc_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training data.
    Train,
    /// Held-out validation data (per-domain validation loss).
    Valid,
    /// Held-out probe data (utility estimation targets).
    Probe,
}

impl Split {
    /// All splits in a fixed order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Probe];

    /// The name stored in the `split` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Probe => "probe",
        }
    }

    /// The split of a document: a deterministic function of its id, so re-ingesting never moves a
    /// document between splits.
    ///
    /// # Example
    /// ```
    /// use mixlab_artefacts::split::Split;
    /// let n_valid = (0..10_000u64).filter(|id| Split::of(*id, 0.1, 0.0) == Split::Valid).count();
    /// assert!((900..1100).contains(&n_valid));
    /// ```
    pub fn of(doc_id: u64, valid_fraction: f64, probe_fraction: f64) -> Split {
        // splitmix64 finaliser: doc ids are already hashes, but a mixed value keeps splits
        // independent of whatever structure the id has.
        let mut z = doc_id.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        if u < valid_fraction {
            Split::Valid
        } else if u < valid_fraction + probe_fraction {
            Split::Probe
        } else {
            Split::Train
        }
    }
}

/// A `split` value that names no split; its message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("split {0:?}: expected train, valid or probe")]
pub struct UnknownSplit(pub String);

/// Parses a `split` column value.
///
/// # Example
/// ```
/// use mixlab_artefacts::split::Split;
/// assert_eq!("probe".parse(), Ok(Split::Probe));
/// assert_eq!(Split::Probe.to_string(), "probe");
/// let err = "test".parse::<Split>().unwrap_err();
/// assert_eq!(err.to_string(), "split \"test\": expected train, valid or probe");
/// ```
impl FromStr for Split {
    type Err = UnknownSplit;

    fn from_str(text: &str) -> Result<Self, UnknownSplit> {
        (Split::ALL.into_iter())
            .find(|split| split.as_str() == text)
            .ok_or_else(|| UnknownSplit(text.to_owned()))
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
