//! `mixlab`: data pipeline and data-mixture optimization for language-model pre-training.
//!
//! | crate | owns |
//! |---|---|
//! | `mixlab` (this binary) | CLI, `datasets.toml`, stage orchestration, progress bars |
//! | `mixlab-stages` | run directories, resolved runs and their hashes, locks, the training stage |
//! | `mixlab-ingest` | sources → cleaned, filtered, deduplicated token shards + manifest |
//! | `mixlab-artefacts` | the artefact formats between stages (metrics, eval, mixture, run tables), atomic writes |
//! | `mixlab-mixer` | pure math: run tables → mixture weights; regression mixers; baselines; `[mix]` |
//! | `mixlab-trainer` | Llama-style model in burn, mixture sampler, the training loop with objectives and hooks |
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
mod progress;
mod table;

use clap::Parser;

fn main() -> std::process::ExitCode {
    mixlab_trainer::allocator::tune();
    mixlab_stages::signals::set_dispositions();
    let cli = cli::Cli::parse();
    logging::init(cli.global.log_format, cli.global.quiet);
    match commands::run(&cli) {
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

/// `--quiet` and JSON logs still end with a plain one-line reason on stderr.
#[allow(clippy::print_stderr)] // the final reason is the CLI's contract on failure, not a diagnostic
fn eprintln_reason(err: &anyhow::Error) {
    eprintln!("error: {err:#}");
}
