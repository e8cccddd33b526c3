//! `mixlab report`: the ablation report over the arms of a `mixlab run`, or over run directories.

use anyhow::Context;
use mixlab_reports::build;
use mixlab_stages::report::{ReportSource, report_input};

use crate::cli::{GlobalArgs, ReportArgs, ReportFormat};

/// Builds the report and writes it under `<out>/reports/<name>`, or prints its tables as JSON.
pub fn run(global: &GlobalArgs, args: &ReportArgs) -> anyhow::Result<()> {
    let source = if args.plan.is_empty() {
        ReportSource::Runs(args.runs.clone())
    } else {
        ReportSource::Plans(args.plan.clone())
    };
    let input = report_input(&global.workspace(), &source, &args.name)?;
    let report = build(&input).context("building the report")?;
    match args.format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report.json())?),
        ReportFormat::Files => {
            let dir = global.out_root().join("reports").join(&args.name);
            report.write(&dir)?;
            println!("wrote {}", dir.join("report.html").display());
            println!("wrote {}", dir.join("report.md").display());
        }
    }
    Ok(())
}
