//! `mixlab-ingest`: domain corpora into Arrow/Parquet token shards.
//!
//! ```text
//! sources ─► DataFusion table `source` (+ optional SQL) ─► record batches
//!        ─► clean ─► quality filters ─► exact + MinHash dedup ─► tokenize ─► shards/<domain>/part-*.parquet
//!                                                                          └► shards/manifest.json
//! ```
//!
//! The crate has two layers. The *format* ([`shard`], [`manifest`], [`checksum`]) is always built: it
//! is the contract downstream stages read, and it needs only `arrow` and `parquet`. The *pipeline*
//! ([`pipeline`], [`source`], [`lines`], [`filter`], [`dedup`], [`tokenize`], [`demo`]) is behind the
//! default `pipeline` feature, so the trainer reads shards without compiling DataFusion.
//!
//! Design decisions:
//! - Sources are read through DataFusion so a user's SQL filter runs on any format, and so the plan can
//!   move to DataFusion Ballista; line-oriented formats use our own streaming readers inside it to report
//!   malformed records by file and line.
//! - Parallel work (filters, signatures, tokenization) runs per batch with rayon; dedup is sequential in
//!   record order, so output is byte-identical across runs and thread counts.
//! - Memory is bounded by `batch_rows` records in flight, `shard_rows` documents pending per shard, and
//!   the dedup index (about 0.9 KB per kept document at default MinHash settings).
//!
//! # Example
//! ```
//! use mixlab_artefacts::split::Split;
//! use mixlab_ingest::shard::{ShardDocument, ShardWriter};
//! let dir = tempfile::tempdir()?;
//! let mut writer = ShardWriter::new(dir.path(), "prose", 2);
//! for id in 0..3 {
//!     writer.push(ShardDocument { doc_id: id, source: "a".into(), split: Split::Train, tokens: vec![1, 2] })?;
//! }
//! let files = writer.finish()?;
//! assert_eq!(files.iter().map(|f| f.rows).collect::<Vec<_>>(), [2, 1]);
//! assert_eq!(files[0].path, "prose/part-00000.parquet");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod checksum;
pub mod error;
pub mod manifest;
pub mod shard;
pub mod verified;

#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(feature = "pipeline")]
pub mod config;
#[cfg(feature = "pipeline")]
pub mod dedup;
#[cfg(feature = "pipeline")]
pub mod demo;
#[cfg(feature = "pipeline")]
pub mod engine;
#[cfg(feature = "pipeline")]
pub mod filter;
#[cfg(feature = "pipeline")]
pub mod lines;
#[cfg(feature = "pipeline")]
pub mod pipeline;
#[cfg(feature = "pipeline")]
pub mod record;
#[cfg(feature = "pipeline")]
pub mod source;
#[cfg(feature = "pipeline")]
pub mod tokenize;

pub use error::{Error, Result};
