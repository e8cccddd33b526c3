//! `mixlab train`: train a model on the shards with a mixture schedule, resumably.

use mixlab_stages::train::train;

use crate::cli::{GlobalArgs, TrainArgs};
use crate::print::evaluated;

/// Trains (or resumes, or skips a finished) run and prints its final evaluation.
pub fn run(global: &GlobalArgs, args: &TrainArgs) -> anyhow::Result<()> {
    evaluated(train(&global.workspace(), &args.spec())?.as_deref());
    Ok(())
}
