//! The shards' token cache: every domain's documents as a flat token file and a fixed-width
//! document index per split, read with positioned reads, so training touches only the documents
//! it draws and keeps in memory only what it is reading.
//!
//! Parquet shards are compressed in row groups: reading one document means decoding its whole
//! group, so a shuffled document order over Parquet directly would decode each group once per
//! document in it (or shuffle only within groups, as Mosaic's block shuffle does). The cache is
//! Megatron's layout instead — tokens end to end, an index of offsets — built once from the shards
//! in one sequential pass, one shard file at a time:
//!
//! ```text
//! <shards>/cache/cache.json            what it was built from (the manifest's SHA-256), counts, sources
//! <shards>/cache/NNN/<split>.tokens    domain NNN's tokens, little-endian u16 (vocabulary ≤ 65,536) or u32
//! <shards>/cache/NNN/<split>.index     24 bytes a document: token offset u64, doc_id u64, tokens u32, source u32
//! ```
//!
//! It is built in `cache.partial` and swapped in whole ([`replace_dir`]), under the shard
//! directory's `cache` lock, so a killed build leaves no cache (and the next open builds again),
//! never half of one. A cache whose manifest hash differs from the shards' is stale and rebuilt;
//! one whose files do not have the sizes its counts imply is damaged, and opening it fails naming
//! the file and the way to rebuild it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mixlab_artefacts::atomic::{replace_dir, write_atomic};
use mixlab_artefacts::lock::{DirLock, LockError};
use mixlab_artefacts::split::Split;
use mixlab_ingest::checksum::sha256_hex;
use mixlab_ingest::manifest::{MANIFEST_FILE, ShardSet};
use serde::{Deserialize, Serialize};

use crate::data::store::{DocumentEntry, DocumentStore};
use crate::error::{Error, Result};

/// The cache's directory inside a shard directory.
pub const CACHE_DIR: &str = "cache";
/// Version of the cache's layout; a cache of another version is rebuilt.
const VERSION: u32 = 1;
/// The description of the cache inside its directory.
const META_FILE: &str = "cache.json";
/// Bytes of one document's index entry.
const ENTRY_BYTES: u64 = 24;

/// What a cache holds and what it was built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheMeta {
    version: u32,
    /// Hex SHA-256 of the `manifest.json` it was built from (which lists every shard's hash).
    manifest_sha256: String,
    /// Bytes per token in the token files: 2 or 4.
    token_bytes: u8,
    domains: Vec<DomainMeta>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainMeta {
    name: String,
    /// Source labels, indexed by the index entries' source field.
    sources: Vec<String>,
    splits: BTreeMap<Split, SplitMeta>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitMeta {
    documents: u64,
    tokens: u64,
}

/// What [`TokenCache::state`] finds in a shard directory.
#[derive(Debug)]
pub enum CacheState {
    /// No cache yet: the first stage that reads training data builds it.
    Missing,
    /// A cache of other shards (or of another layout version): the next open rebuilds it.
    Stale,
    /// A cache whose files do not match its description.
    Damaged(Error),
    /// A usable cache.
    Ready(TokenCache),
}

/// An open, checked token cache.
#[derive(Debug, Clone)]
pub struct TokenCache {
    dir: PathBuf,
    meta: CacheMeta,
}

impl TokenCache {
    /// Where the cache of a shard directory lives.
    pub fn dir_of(shards: &ShardSet) -> PathBuf {
        shards.root().join(CACHE_DIR)
    }

    /// The state of a shard directory's cache, reading only its description and file sizes.
    ///
    /// # Errors
    /// An I/O error reading the shards' manifest.
    pub fn state(shards: &ShardSet) -> Result<CacheState> {
        let dir = Self::dir_of(shards);
        let meta_path = dir.join(META_FILE);
        if !meta_path.exists() {
            return Ok(CacheState::Missing);
        }
        let meta: CacheMeta = match fs_err::read(&meta_path)
            .map_err(Error::from)
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| damaged(&meta_path, e)))
        {
            Ok(meta) => meta,
            Err(e) => return Ok(CacheState::Damaged(e)),
        };
        if meta.version != VERSION || meta.manifest_sha256 != manifest_sha256(shards)? {
            return Ok(CacheState::Stale);
        }
        if ![2, 4].contains(&meta.token_bytes) {
            let found = format!("{} bytes a token, expected 2 or 4", meta.token_bytes);
            return Ok(CacheState::Damaged(damaged(&meta_path, found)));
        }
        let cache = TokenCache { dir, meta };
        Ok(match cache.check_sizes() {
            Ok(()) => CacheState::Ready(cache),
            Err(e) => CacheState::Damaged(e),
        })
    }

    /// The shards' cache, built first when there is none or it is stale (`progress` gets the
    /// tokens written so far and the total). Waits while another process builds it.
    ///
    /// # Errors
    /// [`Error::Cache`] for a damaged cache; shard read errors naming the file; I/O errors.
    pub fn open_or_build(shards: &ShardSet, progress: &mut dyn FnMut(u64, u64)) -> Result<Self> {
        if let CacheState::Ready(cache) = Self::state(shards)? {
            return Ok(cache);
        }
        let _lock = lock(shards.root())?;
        match Self::state(shards)? {
            CacheState::Ready(cache) => Ok(cache),
            CacheState::Damaged(e) => Err(e),
            CacheState::Missing | CacheState::Stale => Self::build_locked(shards, progress),
        }
    }

    /// Builds the cache again, whatever state it is in.
    ///
    /// # Errors
    /// Shard read errors naming the file; I/O errors.
    pub fn rebuild(shards: &ShardSet, progress: &mut dyn FnMut(u64, u64)) -> Result<Self> {
        let _lock = lock(shards.root())?;
        Self::build_locked(shards, progress)
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of all its files.
    pub fn bytes(&self) -> u64 {
        let width = u64::from(self.meta.token_bytes);
        self.meta
            .domains
            .iter()
            .flat_map(|d| d.splits.values())
            .map(|s| s.tokens * width + s.documents * ENTRY_BYTES)
            .sum()
    }

    /// The store of one domain's split (`domain` in manifest order).
    ///
    /// # Errors
    /// An I/O error naming a file that cannot be opened.
    pub fn store(&self, domain: usize, split: Split) -> Result<CachedStore> {
        let meta = &self.meta.domains[domain];
        let counts = meta.splits.get(&split).copied().unwrap_or_default();
        let (tokens_path, index_path) = self.files(domain, split);
        Ok(CachedStore {
            name: meta.name.clone(),
            tokens: fs_err::File::open(&tokens_path)?.into_parts().0,
            index: fs_err::File::open(&index_path)?.into_parts().0,
            tokens_path,
            index_path,
            counts,
            token_bytes: self.meta.token_bytes,
            sources: meta.sources.iter().map(|s| Arc::from(s.as_str())).collect(),
        })
    }

    fn files(&self, domain: usize, split: Split) -> (PathBuf, PathBuf) {
        let dir = self.dir.join(format!("{domain:03}"));
        (
            dir.join(format!("{split}.tokens")),
            dir.join(format!("{split}.index")),
        )
    }

    /// Every file has the size its counts imply.
    fn check_sizes(&self) -> Result<()> {
        for (d, domain) in self.meta.domains.iter().enumerate() {
            for split in Split::ALL {
                let counts = domain.splits.get(&split).copied().unwrap_or_default();
                let (tokens, index) = self.files(d, split);
                let expected = [
                    (tokens, counts.tokens * u64::from(self.meta.token_bytes)),
                    (index, counts.documents * ENTRY_BYTES),
                ];
                for (path, bytes) in expected {
                    let found = std::fs::metadata(&path).map(|m| m.len()).ok();
                    if found != Some(bytes) {
                        let found = found.map_or("missing".to_owned(), |b| format!("{b} bytes"));
                        return Err(damaged(&path, format!("{found}, expected {bytes} bytes")));
                    }
                }
            }
        }
        Ok(())
    }

    fn build_locked(shards: &ShardSet, progress: &mut dyn FnMut(u64, u64)) -> Result<Self> {
        let target = Self::dir_of(shards);
        let staging = shards.root().join(format!("{CACHE_DIR}.partial"));
        if staging.exists() {
            fs_err::remove_dir_all(&staging)?;
        }
        fs_err::create_dir_all(&staging)?;
        let manifest = shards.manifest();
        let token_bytes = if manifest.tokenizer.vocab_size <= 1 << 16 {
            2
        } else {
            4
        };
        let total: u64 = manifest.domains.iter().map(|d| d.stats.tokens).sum();
        let mut done = 0;
        let mut domains = Vec::new();
        for (d, domain) in manifest.domains.iter().enumerate() {
            let dir = staging.join(format!("{d:03}"));
            fs_err::create_dir_all(&dir)?;
            let mut writer = DomainWriter::create(&dir, token_bytes)?;
            for file in &domain.files {
                for doc in shards.read_file(file, None)? {
                    done += doc.tokens.len() as u64;
                    writer.push(doc.split, doc.doc_id, &doc.source, &doc.tokens)?;
                }
                progress(done, total);
            }
            domains.push(writer.finish(&domain.name)?);
        }
        let meta = CacheMeta {
            version: VERSION,
            manifest_sha256: manifest_sha256(shards)?,
            token_bytes,
            domains,
        };
        let json = serde_json::to_vec_pretty(&meta).expect("the cache description serializes");
        write_atomic(&staging.join(META_FILE), &json)?;
        replace_dir(&staging, &target)?;
        tracing::info!(cache = %target.display(), tokens = done, "built the token cache");
        Ok(TokenCache { dir: target, meta })
    }
}

/// The shard directory's `cache` lock, waited for while another process builds.
fn lock(root: &Path) -> Result<DirLock> {
    let mut said = false;
    loop {
        match DirLock::acquire(root, "cache") {
            Ok(lock) => return Ok(lock),
            Err(LockError::Held { holder, .. }) => {
                if !said {
                    tracing::info!(%holder, "waiting for another process to build the token cache");
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(LockError::File(e)) => return Err(e.into()),
        }
    }
}

fn manifest_sha256(shards: &ShardSet) -> Result<String> {
    Ok(sha256_hex(&fs_err::read(
        shards.root().join(MANIFEST_FILE),
    )?))
}

fn damaged(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Cache {
        path: path.to_owned(),
        message: what.to_string(),
    }
}

/// Writes one domain's three splits.
struct DomainWriter {
    splits: Vec<(Split, SplitWriter)>,
    token_bytes: u8,
    sources: Vec<String>,
    source_ids: HashMap<String, u32>,
    encoded: Vec<u8>,
}

struct SplitWriter {
    tokens: BufWriter<fs_err::File>,
    index: BufWriter<fs_err::File>,
    counts: SplitMeta,
}

impl DomainWriter {
    fn create(dir: &Path, token_bytes: u8) -> Result<Self> {
        let splits = Split::ALL
            .into_iter()
            .map(|split| {
                let create = |ext| {
                    let file = fs_err::File::create(dir.join(format!("{split}.{ext}")))?;
                    Ok::<_, Error>(BufWriter::with_capacity(1 << 20, file))
                };
                let writer = SplitWriter {
                    tokens: create("tokens")?,
                    index: create("index")?,
                    counts: SplitMeta::default(),
                };
                Ok((split, writer))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            splits,
            token_bytes,
            sources: Vec::new(),
            source_ids: HashMap::new(),
            encoded: Vec::new(),
        })
    }

    fn push(&mut self, split: Split, doc_id: u64, source: &str, tokens: &[u32]) -> Result<()> {
        let next = self.sources.len() as u32;
        let source_id = *self.source_ids.entry(source.to_owned()).or_insert(next);
        if source_id == next {
            self.sources.push(source.to_owned());
        }
        let (_, w) = self
            .splits
            .iter_mut()
            .find(|(s, _)| *s == split)
            .expect("a writer for every split");
        let mut entry = [0u8; ENTRY_BYTES as usize];
        entry[..8].copy_from_slice(&w.counts.tokens.to_le_bytes());
        entry[8..16].copy_from_slice(&doc_id.to_le_bytes());
        entry[16..20].copy_from_slice(&(tokens.len() as u32).to_le_bytes());
        entry[20..].copy_from_slice(&source_id.to_le_bytes());
        w.index.write_all(&entry)?;
        // One write a document: the tokens encoded into a buffer kept across documents.
        self.encoded.clear();
        if self.token_bytes == 2 {
            self.encoded
                .extend(tokens.iter().flat_map(|&t| (t as u16).to_le_bytes()));
        } else {
            self.encoded
                .extend(tokens.iter().flat_map(|&t| t.to_le_bytes()));
        }
        w.tokens.write_all(&self.encoded)?;
        w.counts.documents += 1;
        w.counts.tokens += tokens.len() as u64;
        Ok(())
    }

    fn finish(self, name: &str) -> Result<DomainMeta> {
        let mut splits = BTreeMap::new();
        for (split, w) in self.splits {
            for writer in [w.tokens, w.index] {
                let file = writer.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
            }
            splits.insert(split, w.counts);
        }
        Ok(DomainMeta {
            name: name.to_owned(),
            sources: self.sources,
            splits,
        })
    }
}

/// One domain's split in the cache, read with positioned reads (`pread`): nothing of it is held in
/// memory but its source labels.
#[derive(Debug)]
pub struct CachedStore {
    name: String,
    tokens: File,
    index: File,
    tokens_path: PathBuf,
    index_path: PathBuf,
    counts: SplitMeta,
    token_bytes: u8,
    sources: Vec<Arc<str>>,
}

impl CachedStore {
    fn read_at(file: &File, path: &Path, buf: &mut [u8], at: u64) -> Result<()> {
        file.read_exact_at(buf, at)
            .map_err(|e| damaged(path, format!("reading {} bytes at {at}: {e}", buf.len())))
    }
}

impl DocumentStore for CachedStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn documents(&self) -> u64 {
        self.counts.documents
    }

    fn token_count(&self) -> u64 {
        self.counts.tokens
    }

    fn entry(&self, index: u64) -> Result<DocumentEntry> {
        let mut raw = [0u8; ENTRY_BYTES as usize];
        Self::read_at(&self.index, &self.index_path, &mut raw, index * ENTRY_BYTES)?;
        let word = |range: std::ops::Range<usize>| {
            let mut bytes = [0u8; 8];
            bytes[..range.len()].copy_from_slice(&raw[range]);
            u64::from_le_bytes(bytes)
        };
        let (offset, doc_id, tokens, source) =
            (word(0..8), word(8..16), word(16..20), word(20..24));
        let source = self.sources.get(source as usize).ok_or_else(|| {
            damaged(
                &self.index_path,
                format!(
                    "document {index} has source {source}, not one of {}",
                    self.sources.len()
                ),
            )
        })?;
        if offset + tokens > self.counts.tokens {
            return Err(damaged(
                &self.index_path,
                format!(
                    "document {index} ends past the {} tokens",
                    self.counts.tokens
                ),
            ));
        }
        Ok(DocumentEntry {
            doc_id,
            source: Arc::clone(source),
            tokens: tokens as usize,
            location: offset,
        })
    }

    fn read(&self, entry: &DocumentEntry, start: usize, out: &mut [u32]) -> Result<()> {
        let width = usize::from(self.token_bytes);
        let mut bytes = vec![0u8; out.len() * width];
        let at = (entry.location + start as u64) * width as u64;
        Self::read_at(&self.tokens, &self.tokens_path, &mut bytes, at)?;
        let chunks = bytes.chunks_exact(width);
        if width == 2 {
            for (t, b) in out.iter_mut().zip(chunks) {
                *t = u32::from(u16::from_le_bytes([b[0], b[1]]));
            }
        } else {
            for (t, b) in out.iter_mut().zip(chunks) {
                *t = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Ok(())
    }

    /// A binary search over the index: document `i` starts at `offset_i + i` in the stream with
    /// end-of-text tokens.
    fn locate(&self, at: u64) -> Result<(DocumentEntry, usize)> {
        if self.counts.documents == 0 {
            return Err(Error::Config(format!(
                "domain {:?} has no documents",
                self.name
            )));
        }
        let (mut lo, mut hi) = (0, self.counts.documents);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid)?.location + mid <= at {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let entry = self.entry(lo)?;
        let offset = at - (entry.location + lo);
        if offset > entry.tokens as u64 {
            return Err(Error::Config(format!(
                "position {at} is beyond domain {:?}'s stream",
                self.name
            )));
        }
        Ok((entry, offset as usize))
    }
}
