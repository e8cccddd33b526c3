//! `shards/manifest.json`: what a shard directory holds and how it was made (DESIGN.md, "Formats").
//!
//! The manifest is written last, after every shard file is complete, so its presence marks a finished
//! ingest. [`ShardSet::open`] is how downstream stages read shards: it refuses a directory whose files,
//! checksums or tokenizer do not match the manifest, and says how to regenerate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use mixlab_artefacts::atomic::write_atomic;
use mixlab_artefacts::split::Split;

use crate::checksum::sha256_file;
use crate::error::{Error, Result};
use crate::shard::{ShardDocument, ShardFile, read_shard_file};
use crate::verified::{Snapshot, Verification};

/// Version of the shard and manifest format; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// File name of the manifest inside a shard directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// File name of the tokenizer copied next to the shards.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The contents of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Writer name and version.
    pub created_by: String,
    /// Hex SHA-256 of the resolved ingest configuration.
    pub config_hash: String,
    /// Hex SHA-256 over the configuration and every source file's contents: equal hashes mean a
    /// re-run would produce the same shards.
    pub inputs_hash: String,
    /// The tokenizer the token ids come from.
    pub tokenizer: TokenizerInfo,
    /// Per domain, in configuration order.
    pub domains: Vec<DomainManifest>,
}

/// The tokenizer entry of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerInfo {
    /// File name inside the shard directory ([`TOKENIZER_FILE`]).
    pub file: String,
    /// Hex SHA-256 of that file.
    pub sha256: String,
    /// Vocabulary size, special tokens included.
    pub vocab_size: u32,
    /// Id of the end-of-text token that separates packed documents.
    pub eos_id: u32,
    /// Where it came from: `trained` or the path it was loaded from.
    pub origin: String,
}

/// One domain's files and statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainManifest {
    /// Domain name (also its directory).
    pub name: String,
    /// Shard files in order.
    pub files: Vec<ShardFile>,
    /// Documents and tokens per split name.
    pub splits: BTreeMap<Split, SplitCounts>,
    /// What happened to the domain's records on the way in.
    pub stats: DomainStats,
}

/// Documents and tokens in one split of a domain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitCounts {
    /// Documents.
    pub documents: u64,
    /// Tokens.
    pub tokens: u64,
}

/// Per-domain counters of the ingest pipeline: in, out and dropped by reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainStats {
    /// Records read from the sources (after the optional SQL).
    pub records_read: u64,
    /// Malformed records skipped under `on_error = "skip"`.
    pub skipped_records: u64,
    /// Bytes of UTF-8 text read (before cleaning and filtering).
    pub bytes_read: u64,
    /// Documents dropped per filter reason.
    pub filtered: BTreeMap<String, u64>,
    /// Documents dropped as exact duplicates of an earlier document (any domain).
    pub exact_duplicates: u64,
    /// Documents dropped as near duplicates (MinHash) of an earlier document (any domain).
    pub near_duplicates: u64,
    /// Documents written.
    pub documents: u64,
    /// Tokens written.
    pub tokens: u64,
}

impl DomainStats {
    /// Documents dropped by any filter.
    pub fn filtered_total(&self) -> u64 {
        self.filtered.values().sum()
    }
}

impl Manifest {
    /// Reads and version-checks `dir/manifest.json`.
    ///
    /// # Errors
    /// [`Error::Manifest`] when the file is missing, malformed or of another format version.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        if !path.exists() {
            return Err(Error::Manifest {
                path,
                message: "not found: this is not a finished shard directory (run `mixlab ingest`)"
                    .into(),
            });
        }
        let text = fs_err::read_to_string(&path)?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| Error::Manifest {
            path: path.clone(),
            message: format!("malformed manifest ({e}); re-run `mixlab ingest` to regenerate it"),
        })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(Error::Manifest {
                path,
                message: format!(
                    "format version {} but this mixlab reads version {FORMAT_VERSION}; re-run `mixlab ingest`",
                    manifest.format_version
                ),
            });
        }
        Ok(manifest)
    }

    /// Writes `dir/manifest.json` atomically.
    ///
    /// # Errors
    /// An I/O error naming the file.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json =
            serde_json::to_string_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&dir.join(MANIFEST_FILE), (json + "\n").as_bytes())?;
        Ok(())
    }

    /// Tokens of one split per domain, in manifest order.
    pub fn split_tokens(&self, split: Split) -> Vec<(String, u64)> {
        self.domains
            .iter()
            .map(|d| (d.name.clone(), d.splits.get(&split).map_or(0, |c| c.tokens)))
            .collect()
    }

    /// The entry of a domain, if present.
    pub fn domain(&self, name: &str) -> Option<&DomainManifest> {
        self.domains.iter().find(|d| d.name == name)
    }
}

/// Checks the tokenizer's and every shard file's SHA-256 against the manifest.
fn verify_checksums(dir: &Path, manifest: &Manifest) -> Result<()> {
    let mismatch = |path: PathBuf, what: String| Error::Manifest {
        path,
        message: format!("{what}; the shards changed after ingest (re-run `mixlab ingest`)"),
    };
    let tokenizer = dir.join(&manifest.tokenizer.file);
    if !tokenizer.exists() {
        return Err(mismatch(tokenizer, "tokenizer file is missing".into()));
    }
    let hash = sha256_file(&tokenizer)?;
    if hash != manifest.tokenizer.sha256 {
        return Err(mismatch(
            tokenizer,
            format!(
                "tokenizer hash {hash} differs from the manifest's {}",
                manifest.tokenizer.sha256
            ),
        ));
    }
    for file in manifest.domains.iter().flat_map(|d| &d.files) {
        let path = dir.join(&file.path);
        if !path.exists() {
            return Err(mismatch(
                path,
                "shard file listed in the manifest is missing".into(),
            ));
        }
        let hash = sha256_file(&path)?;
        if hash != file.sha256 {
            return Err(mismatch(
                path,
                format!(
                    "checksum {hash} differs from the manifest's {}",
                    file.sha256
                ),
            ));
        }
    }
    Ok(())
}

/// A verified shard directory: the manifest plus the guarantee that every file matches it.
#[derive(Debug, Clone)]
pub struct ShardSet {
    root: PathBuf,
    manifest: Manifest,
}

impl ShardSet {
    /// Opens `dir` and verifies it against its manifest: with [`Verification::Recorded`], files
    /// unchanged since the last full pass (same manifest, sizes and modification times,
    /// [`crate::verified`]) are taken without reading them; otherwise every shard's and the
    /// tokenizer's SHA-256 is checked and the new state recorded.
    ///
    /// # Errors
    /// [`Error::Manifest`] naming the first file that is missing or differs from the manifest.
    ///
    /// # Example
    /// ```no_run
    /// use mixlab_ingest::manifest::ShardSet;
    /// use mixlab_ingest::verified::Verification;
    /// let shards = ShardSet::open("out/shards".as_ref(), Verification::Recorded)?;
    /// println!("{} domains", shards.manifest().domains.len());
    /// # Ok::<(), mixlab_ingest::error::Error>(())
    /// ```
    pub fn open(dir: &Path, verification: Verification) -> Result<ShardSet> {
        let manifest = Manifest::read(dir)?;
        let snapshot = Snapshot::of(dir, &manifest);
        let recorded = snapshot.as_ref().is_some_and(|s| s.is_recorded(dir));
        if verification == Verification::Full || !recorded {
            verify_checksums(dir, &manifest)?;
            if let Some(snapshot) = snapshot {
                snapshot.record(dir);
            }
        } else {
            tracing::debug!(shards = %dir.display(), "unchanged since their last full verification");
        }
        Ok(ShardSet {
            root: dir.to_owned(),
            manifest,
        })
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The shard directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the tokenizer file.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.root.join(&self.manifest.tokenizer.file)
    }

    /// Checks that these are the shards a run was made from: the same inputs hash (sources and
    /// ingest settings) and the same tokenizer.
    ///
    /// # Errors
    /// [`Error::Manifest`] naming the expected and found hashes and the fix.
    pub fn expect_identity(&self, inputs_hash: &str, tokenizer_sha256: &str) -> Result<()> {
        let found = &self.manifest;
        if found.inputs_hash != inputs_hash {
            return Err(Error::Manifest {
                path: self.root.join(MANIFEST_FILE),
                message: format!(
                    "the shards changed since the run was made: inputs hash {} but the run expects {inputs_hash}; re-ingest the run's inputs, or start a new run",
                    found.inputs_hash
                ),
            });
        }
        self.expect_tokenizer(tokenizer_sha256)
    }

    /// Checks that the shards were tokenized with the tokenizer of the given hash.
    ///
    /// # Errors
    /// [`Error::Manifest`] when the hashes differ.
    pub fn expect_tokenizer(&self, sha256: &str) -> Result<()> {
        if self.manifest.tokenizer.sha256 == sha256 {
            return Ok(());
        }
        Err(Error::Manifest {
            path: self.root.join(MANIFEST_FILE),
            message: format!(
                "the shards were tokenized with tokenizer {} but the run expects {sha256}; re-ingest with the run's tokenizer, or start a new run",
                self.manifest.tokenizer.sha256
            ),
        })
    }

    /// Reads a domain's documents of one split (or all splits), in shard order.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown domain; Parquet errors naming the file.
    pub fn read_domain(&self, domain: &str, split: Option<Split>) -> Result<Vec<ShardDocument>> {
        let entry = self.manifest.domain(domain).ok_or_else(|| {
            let known: Vec<&str> = self
                .manifest
                .domains
                .iter()
                .map(|d| d.name.as_str())
                .collect();
            Error::Config(format!(
                "unknown domain {domain:?}; the shards hold: {}",
                known.join(", ")
            ))
        })?;
        let mut docs = Vec::new();
        for file in &entry.files {
            docs.extend(self.read_file(file, split)?);
        }
        Ok(docs)
    }

    /// Reads one shard file's documents of one split (or all splits), checking that every token
    /// id is inside the tokenizer's vocabulary; one file at a time keeps memory to a file's rows.
    ///
    /// # Errors
    /// Parquet errors naming the file; [`Error::Manifest`] for a token outside the vocabulary.
    pub fn read_file(&self, file: &ShardFile, split: Option<Split>) -> Result<Vec<ShardDocument>> {
        let vocab_size = self.manifest.tokenizer.vocab_size;
        let path = self.root.join(&file.path);
        let read = read_shard_file(&path, split)?;
        if let Some((doc, token)) = read.iter().find_map(|d| {
            let outside = d.tokens.iter().find(|&&t| t >= vocab_size)?;
            Some((d.doc_id, *outside))
        }) {
            return Err(Error::Manifest {
                path,
                message: format!(
                    "document {doc} has token id {token}, outside the tokenizer's {vocab_size} ids; the shard was not made with this tokenizer: re-ingest"
                ),
            });
        }
        Ok(read)
    }
}
