//! What a merge prints: each run's losses side by side, then the weights.

use mixlab_artefacts::eval::{DomainLoss, read_eval};
use mixlab_artefacts::split::Split;
use mixlab_stages::merge::MergeOutcome;
use mixlab_stages::run_dir::RunDir;

use crate::table::Table;

/// Prints the base, each specialist and the merge by loss per domain, and the merge's weights.
///
/// # Errors
/// A run's unreadable evaluation file.
pub fn merged(outcome: &MergeOutcome) -> anyhow::Result<()> {
    print!("{}", comparison_table(&outcome.runs)?);
    let shown: Vec<String> = (outcome.weights.iter())
        .map(|(name, weight)| format!("{name} {weight:.3}"))
        .collect();
    println!("merged ({}): {}", outcome.method, shown.join(", "));
    Ok(())
}

/// Each run's final loss per domain (valid split) and the means of both splits, one column per run.
fn comparison_table(columns: &[(String, RunDir)]) -> anyhow::Result<String> {
    let evals: Vec<Vec<DomainLoss>> = columns
        .iter()
        .map(|(_, dir)| read_eval(&dir.paths().eval))
        .collect::<Result<_, _>>()?;
    let mut header = vec!["valid loss"];
    header.extend(columns.iter().map(|(name, _)| name.as_str()));
    let mut table = Table::new(&header);
    let domains: Vec<&str> = evals[0]
        .iter()
        .filter(|l| l.split == Split::Valid)
        .map(|l| l.domain.as_str())
        .collect();
    let cell = |eval: &[DomainLoss], split: Split, domain: &str| {
        eval.iter()
            .find(|l| l.split == split && l.domain == domain)
            .map_or("-".to_owned(), |l| format!("{:.4}", l.loss))
    };
    for domain in &domains {
        let mut row = vec![(*domain).to_owned()];
        row.extend(evals.iter().map(|e| cell(e, Split::Valid, domain)));
        table.row(row);
    }
    for split in [Split::Valid, Split::Probe] {
        let mut row = vec![format!("mean ({split})")];
        row.extend(evals.iter().map(|e| {
            let losses: Vec<f64> = e
                .iter()
                .filter(|l| l.split == split)
                .map(|l| l.loss)
                .collect();
            format!(
                "{:.4}",
                losses.iter().sum::<f64>() / losses.len().max(1) as f64
            )
        }));
        table.row(row);
    }
    Ok(table.render())
}
