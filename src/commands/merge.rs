//! `mixlab merge`: specialists annealed from one run on domain-skewed mixtures, merged into one
//! model by a weighted average of their parameters.

use mixlab_stages::merge::{MergeSpec, merge};

use crate::cli::{GlobalArgs, MergeArgs};
use crate::print::merged;

/// Trains the specialists of `--specialists` from `--base`, merges them and evaluates the merge;
/// prints each run's losses and the weights.
pub fn run(global: &GlobalArgs, args: &MergeArgs) -> anyhow::Result<()> {
    let spec = MergeSpec {
        base: args.base.clone(),
        specialists: args.specialists.clone(),
        weights: args.weights.clone(),
        search_iters: args.search_iters,
        run: args.run.clone(),
    };
    merged(&merge(&global.workspace(), &spec)?)
}
