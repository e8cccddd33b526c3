//! Ingest on Apache DataFusion Ballista: the pieces the client, scheduler and executors share
//! ([`codec`], [`judge`], [`scan`]), the client that runs a source as jobs ([`client`]), and the
//! executor's limits on the paths a plan may use ([`allowed`], enforced by [`guard`]).
//!
//! What runs on the executors: reading the sources (line formats through [`scan::LineScanExec`],
//! Parquet through DataFusion's listing scan), each source's SQL, and the per-record work of
//! [`crate::record`] with tokenization ([`judge`]). What stays in the client: the tokenizer
//! (copied or trained), dedup in record order, split assignment and shard writing, so both
//! engines write the same shards. Executors must see the client's paths (sources and the staging
//! directory) on a shared file system.

pub mod allowed;
pub mod client;
pub mod codec;
pub mod guard;
pub mod judge;
pub mod scan;
