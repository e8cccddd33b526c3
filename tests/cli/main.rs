//! End-to-end tests of the `mixlab` binary, one module per stage.

mod util;

mod help;
mod ingest;
mod regress;
mod train;
