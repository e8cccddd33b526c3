//! mixlab's stages as a library: what a stage needs besides its own crate's algorithm.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | `datasets.toml`: the sections composed, read, relative paths resolved |
//! | [`arms`] | `[run]` and `[[ablation]]`: the arms `mixlab run` trains |
//! | [`checks`] | what `mixlab run` checks before any work |
//! | [`plan`] | `mixlab run`'s stages after ingest: typed specs, keys, and one call to run each |
//! | [`ledger`] | which stages finished with which key |
//! | [`report`] | the `report` stage's input: the runs of plans or run directories |
//! | [`run_names`] | the runs a stage writes beside the run it reads |
//! | [`run_dir`] | the run directory (`runs/<name>/`): resolved configuration, hashes, `done` marker |
//! | [`workspace`] | where a job's stages read and write: `--out`, its shards, verification |
//! | [`train`] | the `train` and `distill` stages: typed specs, one call each |
//! | [`ingest`] | the `ingest` stage: sources → shards, the demo corpus first when configured |
//! | [`mix`] | the `mix` stage: RegMix, the SDM's mixture, DoReMi's weights, baselines |
//! | [`merge`] | the `merge` stage: specialists annealed from one run, merged, evaluated |
//! | [`quantize`] | the `quantize` stage: int4 weights, with or without quantization-aware training |
//! | [`export`] | a run's weights for llama.cpp and transformers, with its tokenizer and provenance |
//! | [`simulate`] | the `simulate` stage: proxy runs, influence, leave-one-out and DoReMi |
//! | [`corpus`] | a stage's data: the shards through their token cache, built with a progress bar |
//! | [`texts`] | probe texts outside the shards (JSONL), tokenized |
//! | [`training`] | the training stage: a run directory trained or resumed, with a progress bar |
//! | [`locks`] | the directory locks writing stages hold |
//! | [`signals`] | signal dispositions and clean stops of training on `SIGINT`/`SIGTERM` |
//! | [`Usage`] | the marker of usage and configuration errors |
//!
//! Only this crate touches the layout of a run directory (DESIGN.md).

pub mod arms;
pub mod checks;
pub mod config;
pub mod corpus;
pub mod export;
pub mod ingest;
pub mod ledger;
pub mod locks;
pub mod merge;
pub mod mix;
pub mod plan;
pub mod quantize;
pub mod report;
pub mod run_dir;
pub mod run_names;
pub mod signals;
pub mod simulate;
pub mod texts;
pub mod train;
pub mod training;
mod usage;
pub mod workspace;

pub use usage::Usage;
