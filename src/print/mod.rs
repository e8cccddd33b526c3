//! What the stage commands and `mixlab run` print of a stage's outcome, the same for both.

mod ingest;
mod merge;
mod simulate;

use std::path::Path;

use mixlab_artefacts::eval::DomainLoss;
use mixlab_mixer::schedule::MixtureSchedule;
use mixlab_stages::plan::StageOutcome;

use crate::table::{Table, eval_table};
pub use ingest::ingested;
pub use merge::merged;
pub use simulate::simulated;

/// Prints what a stage of `mixlab run` wrote.
///
/// # Errors
/// A merged run's unreadable evaluation file.
pub fn outcome(outcome: &StageOutcome) -> anyhow::Result<()> {
    match outcome {
        StageOutcome::Simulated(simulation) => simulated(simulation),
        StageOutcome::Mixed {
            method,
            schedule,
            path,
        } => mixed(schedule, path, method.takes_objective()),
        StageOutcome::Evaluated(losses) => evaluated(losses.as_deref()),
        StageOutcome::Merged(merge) => merged(merge)?,
        StageOutcome::Reported(dir) => reported(dir),
    }
    Ok(())
}

/// Prints a mixture's weights per domain (a column per stage), what its method predicts of it
/// (`utility`: a joint utility; else a loss) and where it went.
pub fn mixed(schedule: &MixtureSchedule, path: &Path, utility: bool) {
    let mut header = vec!["domain"];
    match schedule.stage.as_slice() {
        [_] => header.push("weight"),
        stages => header.extend(stages.iter().map(|s| s.name.as_str())),
    }
    let mut t = Table::new(&header);
    for d in schedule.stage[0].weights.keys() {
        let mut row = vec![d.clone()];
        row.extend(
            schedule
                .stage
                .iter()
                .map(|s| format!("{:.4}", s.weights[d])),
        );
        t.row(row);
    }
    print!("{}", t.render());
    match schedule.provenance.predicted_objective {
        Some(u) if utility => println!("joint utility of the mixture: {u:+.4e}"),
        Some(loss) => println!("predicted loss: {loss:.4}"),
        None => {}
    }
    println!("wrote {}", path.display());
}

/// Prints a run's final evaluation, when it ran now (`None`: it had finished before).
pub fn evaluated(losses: Option<&[DomainLoss]>) {
    if let Some(losses) = losses {
        print!("{}", eval_table(losses, &[]));
    }
}

/// Prints where a report's files went.
pub fn reported(dir: &Path) {
    println!("wrote {}", dir.join("report.html").display());
    println!("wrote {}", dir.join("report.md").display());
}
