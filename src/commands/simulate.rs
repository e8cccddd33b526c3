//! `mixlab simulate`: the Scalable Data Mixer's simulation run and utility estimation.

use mixlab_stages::simulate::{SimulateSpec, simulate};

use crate::cli::{GlobalArgs, SimulateArgs};
use crate::print::simulated;

/// Estimates every domain's utility for each target with the chosen method; prints the table.
pub fn run(global: &GlobalArgs, args: &SimulateArgs) -> anyhow::Result<()> {
    let spec = SimulateSpec {
        config: args.config.clone(),
        method: args.method,
    };
    simulated(&simulate(&global.workspace(), &spec)?);
    Ok(())
}
