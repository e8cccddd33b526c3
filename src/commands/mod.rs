//! One module per subcommand but `run` (the pipeline); each turns parsed arguments into a stage
//! call and prints results.

pub mod cluster;
pub mod demo;
pub mod distill;
pub mod eval;
pub mod export;
pub mod generate;
pub mod ingest;
pub mod inspect;
pub mod merge;
pub mod mix;
pub mod passkey;
pub mod quantize;
pub mod regress;
pub mod report;
pub mod score;
pub mod simulate;
pub mod sweep;
pub mod train;
