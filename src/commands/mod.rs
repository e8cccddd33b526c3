//! One module per subcommand; each turns parsed arguments into a stage call and prints results.

mod demo;
mod distill;
mod eval;
mod export;
mod generate;
mod ingest;
mod inspect;
pub mod merge;
mod mix;
mod passkey;
pub mod quantize;
mod regress;
mod report;
mod simulate;
mod sweep;
mod train;

use mixlab_stages::Usage;
use mixlab_trainer::kernels::MatmulIsa;

use crate::cli::{Cli, Command};

/// Runs the chosen subcommand.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    // A bad kernel override is refused before any work, not silently ignored mid-run.
    MatmulIsa::from_env().map_err(|err| Usage(err.to_string()))?;
    match &cli.command {
        Command::Ingest(args) => ingest::run(&cli.global, args),
        Command::Inspect(args) => inspect::run(&cli.global, args),
        Command::DemoData(args) => demo::run(&cli.global, args),
        Command::Train(args) => train::run(&cli.global, args),
        Command::Distill(args) => distill::run(&cli.global, args),
        Command::Quantize(args) => quantize::run(&cli.global, args),
        Command::Merge(args) => merge::run(&cli.global, args),
        Command::Eval(args) => eval::run(&cli.global, args),
        Command::Export(args) => export::run(&cli.global, args),
        Command::Generate(args) => generate::run(&cli.global, args),
        Command::Passkey(command) => passkey::run(&cli.global, command),
        Command::Regress(args) => regress::run(&cli.global, args),
        Command::Mix(args) => mix::run(&cli.global, args),
        Command::Sweep(args) => sweep::run(&cli.global, args),
        Command::Simulate(args) => simulate::run(&cli.global, args),
        Command::Run(args) => crate::pipeline::run(&cli.global, args),
        Command::Report(args) => report::run(&cli.global, args),
    }
}
