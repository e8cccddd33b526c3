//! Edits of a valid TOML file that keep most of its syntax, so that inputs reach the validation
//! behind the parser: values swapped for extreme ones, keys moved between tables, lines dropped
//! or copied, bytes spliced in, the file cut short.

use proptest::collection::vec;
use proptest::prelude::*;

/// Values that have broken configuration readers: non-finite, negative, zero, huge, empty, wrong type.
const VALUES: &[&str] = &[
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1",
    "-0.0",
    "0.5",
    "1e308",
    "-1e308",
    "1e-320",
    "9223372036854775807",
    "-9223372036854775808",
    "4611686018427387904",
    "4294967296",
    "65536",
    "\"\"",
    "\"x\"",
    "\"../../..\"",
    "\"*\"",
    "\"[\"",
    "\"a\\u0000b\"",
    "[]",
    "[nan]",
    "[1.0, nan]",
    "[0.0, 1.0]",
    "[1.0, 0.0]",
    "[[1, 2], [3]]",
    "{}",
    "{ a = 1 }",
    "true",
    "1979-05-27T07:32:00Z",
];

/// One edit; indices are taken modulo the file's line count or length.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Replace the value of line `line` (if it is `key = value`) with [`VALUES`]`[value]`.
    SetValue { line: usize, value: usize },
    /// Replace the key of line `line` with the key of line `from`.
    MoveKey { line: usize, from: usize },
    /// Delete a line.
    DeleteLine(usize),
    /// Insert a copy of line `from` before line `to`.
    CopyLine { from: usize, to: usize },
    /// Insert bytes at a byte offset.
    Splice { at: usize, bytes: Vec<u8> },
    /// Cut the file at a byte offset.
    Truncate(usize),
}

/// A few edits of one of `seeds` seeds: `(seed index, edits)`.
pub fn edited(seeds: usize) -> impl Strategy<Value = (usize, Vec<Edit>)> {
    let edit = prop_oneof![
        6 => (any::<usize>(), 0..VALUES.len()).prop_map(|(line, value)| Edit::SetValue { line, value }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(line, from)| Edit::MoveKey { line, from }),
        1 => any::<usize>().prop_map(Edit::DeleteLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(from, to)| Edit::CopyLine { from, to }),
        1 => (any::<usize>(), vec(any::<u8>(), 1..6)).prop_map(|(at, bytes)| Edit::Splice { at, bytes }),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ];
    (0..seeds, vec(edit, 1..5))
}

/// `seed` with `edits` applied in order.
pub fn apply(seed: &str, edits: &[Edit]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = seed.lines().map(|l| l.as_bytes().to_vec()).collect();
    let mut tail: Option<usize> = None;
    for edit in edits {
        let n = lines.len().max(1);
        match edit {
            Edit::SetValue { line, value } => {
                if let Some(l) = lines.get_mut(line % n)
                    && let Some(eq) = l.iter().position(|&b| b == b'=')
                {
                    l.truncate(eq + 1);
                    l.extend_from_slice(b" ");
                    l.extend_from_slice(VALUES[*value].as_bytes());
                }
            }
            Edit::MoveKey { line, from } => {
                let key = lines
                    .get(from % n)
                    .and_then(|l| key_of(l))
                    .map(<[u8]>::to_vec);
                if let (Some(key), Some(l)) = (key, lines.get_mut(line % n))
                    && let Some(eq) = l.iter().position(|&b| b == b'=')
                {
                    let value = l[eq..].to_vec();
                    *l = [key, b" ".to_vec(), value].concat();
                }
            }
            Edit::DeleteLine(line) if !lines.is_empty() => {
                lines.remove(line % n);
            }
            Edit::CopyLine { from, to } if !lines.is_empty() => {
                let copy = lines[from % n].clone();
                lines.insert(to % n, copy);
            }
            Edit::Splice { at, bytes } if !lines.is_empty() => {
                let l = &mut lines[at % n];
                let pos = at / n % (l.len() + 1);
                l.splice(pos..pos, bytes.iter().copied());
            }
            Edit::Truncate(at) => tail = Some(*at),
            _ => {}
        }
    }
    let mut text = lines.join(&b'\n');
    if let Some(at) = tail {
        text.truncate(at % (text.len() + 1));
    }
    text
}

/// The key of a `key = value` line.
fn key_of(line: &[u8]) -> Option<&[u8]> {
    let eq = line.iter().position(|&b| b == b'=')?;
    Some(line[..eq].trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_change_values_and_keys_and_keep_other_lines() {
        let seed = "[a]\nx = 1\ny = \"s\"\n";
        let edits = [
            Edit::SetValue { line: 1, value: 0 },
            Edit::MoveKey { line: 2, from: 1 },
        ];
        assert_eq!(apply(seed, &edits), b"[a]\nx = nan\nx = \"s\"");
        assert_eq!(apply(seed, &[Edit::Truncate(5)]), b"[a]\nx");
        assert_eq!(apply(seed, &[Edit::DeleteLine(4)]), b"[a]\ny = \"s\"");
    }
}
