//! `mixlab-reports`: run artefacts to Markdown and HTML ablation reports (planned; see
//! `../shared/DESIGN.md`, "Data flow").
//!
//! It will read `metrics.parquet`, `eval.parquet` and `mixture.toml` of run directories and render
//! tables and loss curves with `polars` and `plotters`.
#![deny(missing_docs)]
