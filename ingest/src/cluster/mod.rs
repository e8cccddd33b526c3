//! Ingest on Apache DataFusion Ballista: the pieces the client, scheduler and executors share
//! ([`codec`], [`judge`], [`scan`], [`write`]), the client that runs a source as jobs
//! ([`client`]), and the executor's limits on the paths a plan may use ([`allowed`], enforced by
//! [`guard`]).
//!
//! Each part of a source (a file, or the whole source when its SQL needs all rows at once) is two
//! jobs. The first reads the part on an executor (line formats through [`scan::LineScanExec`],
//! Parquet through DataFusion's listing scan), runs the source's SQL and judges every record
//! ([`judge`]); only verdicts, hashes and document ids come back. The client deduplicates them in
//! record order, as the local engine does, and lists the rows that survived. The second job reads
//! the part again and writes those rows as shard files on the executor ([`write`]). What stays in
//! the client: the tokenizer (copied or trained), dedup, and the manifest, assembled from the
//! write jobs' receipts and published only after every job succeeded. Executors must see the
//! client's paths (sources and the staging directory) on a shared file system.

pub mod allowed;
pub mod client;
pub mod codec;
pub mod guard;
pub mod judge;
pub mod scan;
pub mod write;
