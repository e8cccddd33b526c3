//! `mixlab`: data pipeline and data-mixture optimization for language-model pre-training.
//!
//! | crate | owns |
//! |---|---|
//! | `mixlab` (this binary) | CLI: arguments → stage specs, what each stage prints, progress bars, `mixlab run`'s loop over its plan |
//! | `mixlab-stages` | one typed call per stage, `datasets.toml`, `mixlab run`'s typed plan and stage keys, run directories, locks |
//! | `mixlab-ingest` | sources → cleaned, filtered, deduplicated token shards + manifest |
//! | `mixlab-artefacts` | the artefact formats between stages (metrics, eval, mixture, run tables), atomic writes |
//! | `mixlab-simulator` | the SDM's utility estimation: influence, leave-one-out and DoReMi scoring |
//! | `mixlab-mixer` | pure math: run tables → mixture weights; regression mixers; baselines; `[mix]` |
//! | `mixlab-trainer` | Llama-style model in burn, mixture sampler, the training loop with objectives and hooks |
//! | `mixlab-reports` | the ablation report: tables, verdicts, figures |
//!
//! ```text
//! datasets.toml ─► ingest ─► shards/ ─► trainer ◄── mixture.toml ◄── mixer ◄── runs table (regress / sweep)
//! ```

mod cli;
mod commands;
mod exit;
#[cfg(test)]
mod fuzz;
mod logging;
mod pipeline;
mod print;
mod progress;
mod table;

use clap::Parser;
use mixlab_stages::Usage;
use mixlab_trainer::kernels::MatmulIsa;

use crate::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    mixlab_trainer::allocator::tune();
    mixlab_stages::signals::set_dispositions();
    let cli = Cli::parse();
    logging::init(cli.global.log_format, cli.global.quiet);
    match dispatch(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            let code = exit::ExitClass::of(&err).code();
            if cli.global.log_format == cli::LogFormat::Json {
                let causes: Vec<String> = err.chain().skip(1).map(ToString::to_string).collect();
                tracing::error!(exit_code = code, causes = ?causes, "{err}");
            } else {
                // The one line a batch scheduler shows: the whole cause chain.
                tracing::error!("{err:#}");
            }
            if cli.global.log_format == cli::LogFormat::Json || cli.global.quiet {
                eprintln_reason(&err);
            }
            std::process::ExitCode::from(code)
        }
    }
}

/// Runs the chosen subcommand.
fn dispatch(cli: &Cli) -> anyhow::Result<()> {
    // A bad kernel override is refused before any work, not silently ignored mid-run.
    MatmulIsa::from_env().map_err(|err| Usage(err.to_string()))?;
    let global = &cli.global;
    match &cli.command {
        Command::Ingest(args) => commands::ingest::run(global, args),
        Command::Inspect(args) => commands::inspect::run(global, args),
        Command::DemoData(args) => commands::demo::run(global, args),
        Command::Train(args) => commands::train::run(global, args),
        Command::Distill(args) => commands::distill::run(global, args),
        Command::Quantize(args) => commands::quantize::run(global, args),
        Command::Merge(args) => commands::merge::run(global, args),
        Command::Eval(args) => commands::eval::run(global, args),
        Command::Export(args) => commands::export::run(global, args),
        Command::Score(args) => commands::score::run(global, args),
        Command::Generate(args) => commands::generate::run(global, args),
        Command::Passkey(command) => commands::passkey::run(global, command),
        Command::Cluster(command) => commands::cluster::run(global, command),
        Command::Regress(args) => commands::regress::run(global, args),
        Command::Mix(args) => commands::mix::run(global, args),
        Command::Sweep(args) => commands::sweep::run(global, args),
        Command::Simulate(args) => commands::simulate::run(global, args),
        Command::Run(args) => pipeline::run(global, args),
        Command::Report(args) => commands::report::run(global, args),
    }
}

/// `--quiet` and JSON logs still end with a plain one-line reason on stderr.
#[allow(clippy::print_stderr)] // the final reason is the CLI's contract on failure, not a diagnostic
fn eprintln_reason(err: &anyhow::Error) {
    eprintln!("error: {err:#}");
}
