//! Matching user-written domain names against known ones, with a "did you mean" suggestion.

use crate::error::{Error, Result};

/// The index of `name` in `known`.
///
/// # Errors
/// [`Error::Invalid`] naming `what`, the unknown name, a suggestion within edit distance 2, and
/// the known names.
///
/// # Example
/// ```
/// use mixlab_mixer::names::position;
/// let known = ["code", "math"];
/// assert_eq!(position("math", &known, "[mix].bounds")?, 1);
/// let err = position("mathh", &known, "[mix].bounds").unwrap_err().to_string();
/// assert!(err.contains("(did you mean \"math\"?)"));
/// # Ok::<(), mixlab_mixer::Error>(())
/// ```
pub fn position(name: &str, known: &[&str], what: &str) -> Result<usize> {
    known.iter().position(|k| *k == name).ok_or_else(|| {
        let hint = closest(name, known)
            .map(|c| format!(" (did you mean {c:?}?)"))
            .unwrap_or_default();
        Error::Invalid(format!(
            "{what}: unknown domain {name:?}{hint}; known: {}",
            known.join(", ")
        ))
    })
}

/// The known name within edit distance 2 of `name`, if any.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != b[j]))
                .min(row[j] + 1)
                .min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("math", "math"), 0);
        assert_eq!(edit_distance("mth", "math"), 1);
        assert_eq!(edit_distance("maht", "math"), 2);
        assert!(closest("prose", &["code", "math"]).is_none());
    }
}
