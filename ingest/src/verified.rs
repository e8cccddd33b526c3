//! `shards/verified.json`: what a shard directory looked like when every checksum last matched.
//!
//! Hashing every shard on every open does not scale: a stage over a corpus of terabytes would start
//! by reading all of it. So the full pass runs once (at publish, on `mixlab inspect`, with
//! `--verify`, or when anything changed), and records the manifest's hash and each file's size and
//! modification time; later opens compare those and read no shard bytes. Anything that differs —
//! a file rewritten, touched, copied without its times, or a new manifest — falls back to the full
//! pass, which refuses changed contents and renews the record. The record is a cache of a check,
//! not a source of truth: deleting it costs one full pass.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::UNIX_EPOCH;

use mixlab_artefacts::atomic::write_atomic;
use serde::{Deserialize, Serialize};

use crate::checksum::sha256_hex;
use crate::manifest::{MANIFEST_FILE, Manifest};

/// File name of the verification record inside a shard directory.
pub const VERIFIED_FILE: &str = "verified.json";

/// How thoroughly [`crate::manifest::ShardSet::open`] checks the files against the manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verification {
    /// Sizes and modification times against the record of the last full pass; the full pass
    /// when there is no record or anything differs.
    #[default]
    Recorded,
    /// Every file's SHA-256, whatever the record says (the record is then renewed).
    Full,
}

/// The state of every file a manifest lists (and of the manifest itself), as recorded after a
/// full verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Hex SHA-256 of `manifest.json`'s bytes.
    manifest_sha256: String,
    /// Per file (relative path): size and modification time.
    files: BTreeMap<String, FileState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileState {
    bytes: u64,
    modified_ns: u64,
}

impl Snapshot {
    /// The current state of `dir`'s manifest and the files it lists (the tokenizer and every
    /// shard), from metadata only; `None` when a file is missing or its time unreadable (the full
    /// pass then names it).
    pub fn of(dir: &Path, manifest: &Manifest) -> Option<Snapshot> {
        let manifest_bytes = std::fs::read(dir.join(MANIFEST_FILE)).ok()?;
        let listed = std::iter::once(manifest.tokenizer.file.as_str()).chain(
            manifest
                .domains
                .iter()
                .flat_map(|d| &d.files)
                .map(|f| f.path.as_str()),
        );
        let files = listed
            .map(|name| Some((name.to_owned(), file_state(&dir.join(name))?)))
            .collect::<Option<_>>()?;
        Some(Snapshot {
            manifest_sha256: sha256_hex(&manifest_bytes),
            files,
        })
    }

    /// Whether `dir`'s record says the full pass last saw exactly this state.
    pub fn is_recorded(&self, dir: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(dir.join(VERIFIED_FILE)) else {
            return false;
        };
        serde_json::from_str::<Snapshot>(&text).is_ok_and(|recorded| recorded == *self)
    }

    /// Records this state as verified, atomically. A directory that cannot be written (read-only
    /// shards) keeps no record, with a warning: every open then runs the full pass.
    pub fn record(&self, dir: &Path) {
        let path = dir.join(VERIFIED_FILE);
        let json = serde_json::to_string_pretty(self).expect("a snapshot serializes");
        if let Err(e) = write_atomic(&path, (json + "\n").as_bytes()) {
            tracing::warn!(
                "{}: cannot record the verification ({e}); every open will hash the shards again",
                path.display()
            );
        }
    }
}

fn file_state(path: &Path) -> Option<FileState> {
    let meta = std::fs::metadata(path).ok()?;
    let since_epoch = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(FileState {
        bytes: meta.len(),
        modified_ns: u64::try_from(since_epoch.as_nanos()).ok()?,
    })
}
