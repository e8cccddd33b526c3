//! `<out>/pipeline/stages/`: one small JSON file per stage of `mixlab run`, saying which key it
//! last started or finished with. A stage whose file says `done` with its current key is skipped;
//! one that `started` with its current key was killed and resumes; any other key reruns it from
//! scratch.

use std::path::{Path, PathBuf};

use mixlab_artefacts::atomic::write_atomic;
use serde::{Deserialize, Serialize};

/// How far a stage got with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Progress {
    /// Started, not (yet) finished.
    Started,
    /// Finished.
    Done,
}

/// A stage's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The stage's key.
    pub key: String,
    /// How far it got.
    pub progress: Progress,
}

/// The records of one output directory's pipeline.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    /// The ledger under `out`.
    pub fn new(out: &Path) -> Self {
        Self {
            dir: out.join("pipeline").join("stages"),
        }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{}.json", id.replace('/', ".")))
    }

    /// The record of stage `id`; `None` when it never ran or its file is unreadable (it reruns).
    pub fn read(&self, id: &str) -> Option<Record> {
        let text = std::fs::read_to_string(self.path(id)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Records that stage `id` got to `progress` with `key`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, id: &str, key: &str, progress: Progress) -> anyhow::Result<()> {
        fs_err::create_dir_all(&self.dir)?;
        let record = Record {
            key: key.to_owned(),
            progress,
        };
        write_atomic(&self.path(id), serde_json::to_string(&record)?.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_damaged_file_reads_as_never_run() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path());
        assert_eq!(ledger.read("train/a"), None);
        ledger.write("train/a", "k1", Progress::Started).unwrap();
        ledger.write("train/a", "k1", Progress::Done).unwrap();
        let expected = Record {
            key: "k1".into(),
            progress: Progress::Done,
        };
        assert_eq!(ledger.read("train/a"), Some(expected));
        std::fs::write(dir.path().join("pipeline/stages/train.a.json"), "{").unwrap();
        assert_eq!(ledger.read("train/a"), None);
    }
}
