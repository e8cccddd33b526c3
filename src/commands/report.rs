//! `mixlab report`: the ablation report over the arms of a `mixlab run`, or over run directories.

use anyhow::Context;
use mixlab_reports::build;
use mixlab_stages::report::{ReportSource, report_input, write_report};

use crate::cli::{GlobalArgs, ReportArgs, ReportFormat};
use crate::print::reported;

/// Builds the report and writes it under `<out>/reports/<name>`, or prints its tables as JSON.
pub fn run(global: &GlobalArgs, args: &ReportArgs) -> anyhow::Result<()> {
    let source = if args.plan.is_empty() {
        ReportSource::Runs(args.runs.clone())
    } else {
        ReportSource::Plans(args.plan.clone())
    };
    let workspace = global.workspace();
    match args.format {
        ReportFormat::Json => {
            let report = build(&report_input(&workspace, &source, &args.name)?)
                .context("building the report")?;
            println!("{}", serde_json::to_string_pretty(&report.json())?);
        }
        ReportFormat::Files => reported(&write_report(&workspace, &source, &args.name)?),
    }
    Ok(())
}
