//! What a simulation prints: the utilities per domain and target, or DoReMi's weights.

use mixlab_artefacts::utilities::{DomainUtility, JOINT_TARGET, overall};
use mixlab_stages::simulate::SimulateOutcome;

use crate::table::Table;

/// Prints the utility table (or DoReMi's weights) and the file written.
pub fn simulated(outcome: &SimulateOutcome) {
    match outcome {
        SimulateOutcome::Utilities {
            path,
            rows,
            domains,
            targets,
            influence_agreement,
        } => {
            print!("{}", utility_table(rows, domains, targets));
            println!("wrote {}", path.display());
            if let Some(rho) = influence_agreement {
                println!("Spearman ρ of the joint utilities, influence vs leave-one-out: {rho:.3}");
            }
        }
        SimulateOutcome::Doremi { path, weights } => {
            let mut table = Table::new(&["domain", "final weight", "average weight"]);
            for (domain, last, average) in weights {
                table.row(vec![
                    domain.clone(),
                    format!("{last:.4}"),
                    format!("{average:.4}"),
                ]);
            }
            print!("{}", table.render());
            println!("wrote {}", path.display());
        }
    }
}

/// Domain × target utilities over all checkpoints, `utility ± stderr`, joint last.
fn utility_table(summary: &[DomainUtility], domains: &[String], targets: &[String]) -> String {
    let mut header = vec!["domain"];
    header.extend(targets.iter().map(String::as_str));
    header.push(JOINT_TARGET);
    let mut table = Table::new(&header);
    for domain in domains {
        let mut row = vec![domain.clone()];
        for target in header.iter().skip(1) {
            let cell = overall(summary, domain, target).map_or("-".to_owned(), |u| {
                format!("{:+.3e} ± {:.1e}", u.utility, u.stderr)
            });
            row.push(cell);
        }
        table.row(row);
    }
    table.render()
}
