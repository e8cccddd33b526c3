//! What the tasks on an executor share with each other and with the client: a per-process memo of
//! values built once (a UDF's parsed spec, a checked tokenizer), and the JSON files (receipts,
//! scan counters) a task leaves for the client.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

use mixlab_artefacts::atomic::write_atomic;

use crate::error::{Error, Result};

/// Values built once per process and shared by every task that needs them. A job needs a
/// handful, so a full memo is cleared rather than evicted.
pub(super) struct Memo<K, V> {
    map: Mutex<BTreeMap<K, Arc<V>>>,
    capacity: usize,
}

impl<K: Ord, V> Memo<K, V> {
    /// An empty memo of at most `capacity` values (usable in a `static`).
    pub(super) const fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(BTreeMap::new()),
            capacity,
        }
    }

    /// The value of `key`, built by `build` the first time (under the memo's lock, so it is
    /// built once even when tasks ask at the same time).
    pub(super) fn get_or_try_insert<Q, E>(
        &self,
        key: &Q,
        build: impl FnOnce() -> std::result::Result<V, E>,
    ) -> std::result::Result<Arc<V>, E>
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(value) = map.get(key) {
            return Ok(Arc::clone(value));
        }
        let value = Arc::new(build()?);
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key.to_owned(), Arc::clone(&value));
        Ok(value)
    }
}

/// Writes `value` as JSON to `path` atomically (a task's receipt, read by the client).
///
/// # Errors
/// I/O errors naming the file.
pub(super) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let json = serde_json::to_vec(value)
        .map_err(|e| Error::Internal(format!("{}: serializing: {e}", path.display())))?;
    write_atomic(path, &json)?;
    Ok(())
}

/// Reads the JSON a task wrote to `path`; `what` names it in errors ("write receipt").
///
/// # Errors
/// I/O errors naming the file; [`Error::Internal`] naming the file for JSON of another shape.
pub(super) fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = fs_err::read_to_string(path)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Internal(format!("{}: bad {what}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memo_builds_each_value_once_and_clears_when_full() {
        let memo: Memo<String, usize> = Memo::new(2);
        let mut builds = 0;
        let mut get = |key: &str| {
            memo.get_or_try_insert(key, || {
                builds += 1;
                Ok::<_, ()>(key.len())
            })
            .unwrap()
        };
        assert_eq!((*get("ab"), *get("ab"), *get("abc")), (2, 2, 3));
        get("abcd"); // full: cleared, then holds "abcd" only
        get("ab");
        assert_eq!(builds, 4);
        let failed = memo.get_or_try_insert("x", || Err::<usize, _>("no"));
        assert_eq!(failed.unwrap_err(), "no");
    }

    #[test]
    fn json_files_round_trip_and_name_the_file_when_bad() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staged-3.json");
        write_json(&path, &vec![1u64, 2]).unwrap();
        assert_eq!(
            read_json::<Vec<u64>>(&path, "stage receipt").unwrap(),
            [1, 2]
        );
        let err = read_json::<String>(&path, "stage receipt")
            .unwrap_err()
            .to_string();
        assert!(err.contains("staged-3.json: bad stage receipt"), "{err}");
    }
}
