//! mixlab's ablation reports: what each arm of a pipeline produced, who wins each target, by how
//! much, and whether that is more than run-to-run noise.
//!
//! [`tables::tables`] aggregates the runs' Parquet artefacts with polars (lazy scans, group-bys, a
//! join); [`verdict::verdicts`] calls the winners; [`figures`] draws SVG with plotters; [`build`]
//! lays it all out as [`document::Block`]s, written by [`Report::write`] as `report.md`,
//! `report.html` (self-contained: figures inline, no scripts) and the SVG files.
//!
//! ```no_run
//! use mixlab_reports::{build, input::ReportInput};
//!
//! fn write_report(input: &ReportInput) -> Result<(), Box<dyn std::error::Error>> {
//!     let report = build(input)?;
//!     report.write(std::path::Path::new("reports/demo"))?;
//!     println!("{}", serde_json::to_string_pretty(&report.json())?);
//!     Ok(())
//! }
//! ```

pub mod compute;
pub mod document;
pub mod figures;
pub mod input;
mod layout;
pub mod paired;
pub mod tables;
pub mod verdict;

use std::path::Path;

use mixlab_artefacts::atomic::write_atomic;
use serde::Serialize;

use compute::EffectiveCompute;
use document::{Block, Figure, html, markdown};
use input::ReportInput;
use paired::PairedDifference;
use tables::Tables;
use verdict::Verdict;

/// Errors while building or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An artefact is missing, of another version, or lacks a column.
    #[error(transparent)]
    Artefact(#[from] mixlab_artefacts::Error),
    /// A polars query failed.
    #[error("aggregating the runs: {0}")]
    Polars(#[from] polars::error::PolarsError),
    /// A figure could not be drawn.
    #[error("drawing a figure: {0}")]
    Plot(String),
    /// Writing the report failed.
    #[error(transparent)]
    File(#[from] std::io::Error),
    /// No run to report on.
    #[error("no runs to report on")]
    Empty,
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// A built report: its tables and verdicts (the JSON form) and its blocks and figures.
#[derive(Debug, Clone)]
pub struct Report {
    /// Title.
    pub title: String,
    /// The input's arms and runs.
    pub input: ReportInput,
    /// The aggregated tables.
    pub tables: Tables,
    /// Winners per target.
    pub verdicts: Vec<Verdict>,
    /// Every pair of arms, paired by seed.
    pub paired: Vec<PairedDifference>,
    /// Each arm's final target loss in the baseline arm's training compute.
    pub effective_compute: Vec<EffectiveCompute>,
    /// The laid-out document.
    pub blocks: Vec<Block>,
}

/// What `mixlab report --format json` prints.
#[derive(Debug, Serialize)]
pub struct ReportJson<'a> {
    /// Title.
    pub title: &'a str,
    /// Arms, seeds and runs.
    pub input: &'a ReportInput,
    /// Winners per target.
    pub verdicts: &'a [Verdict],
    /// Every pair of arms, paired by seed.
    pub paired: &'a [PairedDifference],
    /// Each arm's final target loss in the baseline arm's training compute.
    pub effective_compute: &'a [EffectiveCompute],
    /// The tables.
    pub tables: &'a Tables,
}

/// Aggregates `input` and lays out the report.
///
/// # Errors
/// A missing or malformed artefact (named), a polars or plotting failure.
pub fn build(input: &ReportInput) -> Result<Report> {
    let tables = tables::tables(input)?;
    let verdicts = verdict::verdicts(&tables.final_losses);
    let arms: Vec<&str> = input.arms.iter().map(|a| a.name.as_str()).collect();
    let paired = paired::paired_differences(&tables.seed_losses, &arms);
    // The baseline is the arm called `uniform` when there is one, else the first arm.
    let baseline = input
        .arms
        .iter()
        .find(|a| a.name == "uniform")
        .or(input.arms.first())
        .map_or("", |a| a.name.as_str());
    let effective_compute = compute::effective_compute(&tables.target_curves, baseline);
    let blocks = layout::blocks(input, &tables, &verdicts, &paired, &effective_compute)?;
    Ok(Report {
        title: input.title.clone(),
        input: input.clone(),
        tables,
        verdicts,
        paired,
        effective_compute,
        blocks,
    })
}

impl Report {
    /// The tables and verdicts, for `--format json`.
    pub fn json(&self) -> ReportJson<'_> {
        ReportJson {
            title: &self.title,
            input: &self.input,
            verdicts: &self.verdicts,
            paired: &self.paired,
            effective_compute: &self.effective_compute,
            tables: &self.tables,
        }
    }

    /// Writes `report.md`, `report.html` and every figure's SVG into `dir`, each atomically.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn write(&self, dir: &Path) -> Result<()> {
        fs_err::create_dir_all(dir)?;
        for figure in self.figures() {
            write_atomic(&dir.join(&figure.file), figure.svg.as_bytes())?;
        }
        write_atomic(&dir.join("report.md"), markdown(&self.blocks).as_bytes())?;
        write_atomic(
            &dir.join("report.html"),
            html(&self.title, &self.blocks).as_bytes(),
        )?;
        Ok(())
    }

    /// The figures, in order.
    pub fn figures(&self) -> impl Iterator<Item = &Figure> {
        self.blocks.iter().filter_map(|b| match b {
            Block::Figure(f) => Some(f),
            _ => None,
        })
    }
}
