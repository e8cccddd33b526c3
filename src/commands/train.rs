//! `mixlab train`: train a model on the shards with a mixture schedule, resumably.

use mixlab_stages::train::train;

use crate::cli::{GlobalArgs, TrainArgs};
use crate::table::eval_table;

/// Trains (or resumes, or skips a finished) run and prints its final evaluation.
pub fn run(global: &GlobalArgs, args: &TrainArgs) -> anyhow::Result<()> {
    if let Some(losses) = train(&global.workspace(), &args.spec())? {
        print!("{}", eval_table(&losses));
    }
    Ok(())
}
