//! Ingest on Apache DataFusion Ballista: the pieces the client, scheduler and executors share
//! ([`codec`], [`judge`], [`scan`], [`sink`] with its tasks [`stage`] and [`write`], the dedup
//! queries of [`groups`]), the client that runs a source as jobs ([`client`]), and the executor's
//! limits on the paths a plan may use ([`allowed`], enforced by [`guard`]).
//!
//! Each part of a source (a file, or the whole source when its SQL needs all rows at once) is two
//! jobs. The first reads the part on an executor (line formats through [`scan::LineScanExec`],
//! Parquet through DataFusion's listing scan), runs the source's SQL, judges every record
//! ([`judge`]) and stages the candidates' ordinals, hashes, document ids, signatures and band keys
//! as Parquet ([`stage`]); only counts come back. Dedup then runs as two distributed queries over
//! every staged part ([`groups`]): exact duplicates grouped by hash, near-duplicate candidates by
//! band key; the client receives the duplicates and colliding records only and replays the
//! MinHash index over those in ingest order, which decides exactly what the local engine decides.
//! The second job reads the part again and writes the rows dedup kept as shard files on the
//! executor ([`write`]). What stays in the client: the tokenizer (copied or trained), resolving
//! the colliding records, and the manifest, assembled from the write jobs' receipts and published
//! only after every job succeeded. Executors must see the client's paths (sources and the staging
//! directory) on a shared file system.

pub mod allowed;
pub mod client;
pub mod codec;
pub mod groups;
pub mod guard;
pub mod judge;
pub mod scan;
mod shared;
pub mod sink;
pub mod stage;
pub mod write;
