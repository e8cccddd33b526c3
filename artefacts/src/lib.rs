//! `mixlab-artefacts`: the files stages hand to each other, one owner module per format, and the one
//! way they are written.
//!
//! - [`atomic`]: durable atomic writes (temporary file, `fsync`, rename, directory `fsync`), used for
//!   every artefact mixlab writes, and the removal of a killed writer's temporary files.
//! - [`lock`]: one writer per output directory (a lock a killed holder releases).
//! - [`metrics`]: `metrics.parquet` (training and evaluation losses per step).
//! - [`eval`]: `eval.parquet` (final per-domain losses) and its row type [`eval::DomainLoss`].
//! - [`mixture`]: `mixture.toml` (the schedule types live in `mixlab-mixer`).
//! - [`run_table`]: run tables (`runs.csv`, `losses.csv`, RegMix's published tables).
//! - [`specialists`]: the specialists file of `mixlab merge` and `[run.merge]`.
//! - [`split`]: the splits of a domain's documents, as shards, evaluations and metrics name them.
//! - [`utilities`]: `utilities.parquet` and `document_utilities.parquet` (the Scalable Data Mixer's
//!   domain and document utilities).
//!
//! Owners elsewhere: token shards and `manifest.json` in `mixlab-ingest` (`shard`, `manifest`),
//! checkpoints and their JSON state in `mixlab-trainer` (`checkpoint`, which needs burn).
//!
//! Design decisions: the crate depends on `arrow`, `parquet` and `mixlab-mixer` only, so the reports
//! read run directories without compiling burn or DataFusion; every versioned format refuses a file
//! of another version with a message naming both versions and how to regenerate the file.
//!
//! # Example
//! ```
//! use mixlab_artefacts::eval::{read_eval, write_eval, DomainLoss};
//! use mixlab_artefacts::split::Split;
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("eval.parquet");
//! let losses = vec![DomainLoss { domain: "math".into(), split: Split::Valid, loss: 1.5, tokens: 100 }];
//! write_eval(&path, 10, &losses)?;
//! assert_eq!(read_eval(&path)?, losses);
//! # Ok::<(), mixlab_artefacts::Error>(())
//! ```
#![deny(missing_docs)]

pub mod atomic;
pub mod error;
pub mod eval;
pub mod lock;
pub mod metrics;
pub mod mixture;
mod parquet_file;
pub mod run_table;
pub mod specialists;
pub mod split;
pub mod utilities;

pub use error::{Error, Result};
