//! End-to-end tests of the `mixlab` binary, one module per stage.

mod util;

mod cluster;
mod disk;
mod distill;
mod errors;
mod export;
mod help;
mod ingest;
mod merge;
mod mix;
mod passkey;
mod quantize;
mod regress;
mod reliability;
mod run;
mod simulate;
mod train;
