//! One proxy's training documents (or domains) scored by influence at its checkpoints.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mixlab_artefacts::utilities::{DocumentUtility, write_document_utilities, write_utilities};
use mixlab_ingest::checksum::sha256_hex;
use mixlab_simulator::capture::{CaptureWindow, Captured};
use mixlab_simulator::config::{GradientSource, SimulateConfig};
use mixlab_simulator::domain::DomainScoring;
use mixlab_simulator::estimate::{TargetSet, sample_documents};
use mixlab_simulator::projection::GradientProjection;
use mixlab_simulator::score::{InRunScoring, Scoring, read_parts, score_checkpoints, summarize};
use mixlab_trainer::engine::checkpoint::CheckpointFiles;
use mixlab_trainer::engine::objective::CrossEntropy;

use super::proxies::{Proxies, Proxy};
use super::{SimulateOutcome, UTILITIES_FILE};
use crate::run_dir::RunDir;
use crate::training::run_training_with;

/// One proxy run, its training documents scored by influence: `utilities.parquet`.
pub(super) fn influence(
    proxies: &Proxies,
    targets: &[TargetSet],
) -> anyhow::Result<SimulateOutcome> {
    let (sim, corpus) = (proxies.sim(), proxies.corpus);
    let rows = match sim.gradients {
        GradientSource::Training => scores_from_training(proxies, targets)?,
        GradientSource::Sample => scores_of_sample(proxies, targets)?,
        GradientSource::Domain => scores_of_domains(proxies, targets)?,
    };
    let summary = summarize(&rows, targets, &corpus.domains, sim.bootstrap, sim.seed)?;
    write_document_utilities(&proxies.root.join("document_utilities.parquet"), &rows)?;
    let path = proxies.root.join(UTILITIES_FILE);
    write_utilities(&path, &summary)?;
    Ok(SimulateOutcome::Utilities {
        path,
        rows: summary,
        domains: corpus.domains.clone(),
        targets: targets.iter().map(|t| t.name.clone()).collect(),
        influence_agreement: None,
    })
}

/// The projection of the `[simulate]` configuration, for the proxy's model width.
fn projection(sim: &SimulateConfig, vocab: usize, d_model: usize) -> GradientProjection {
    GradientProjection::new(vocab, d_model, sim.projection, sim.projection, sim.seed)
}

/// Scores from the proxy's own batches, made while it trains (`gradients = "training"`).
fn scores_from_training(
    proxies: &Proxies,
    targets: &[TargetSet],
) -> anyhow::Result<Vec<DocumentUtility>> {
    let (sim, corpus) = (proxies.sim(), proxies.corpus);
    let (dir, resolved) = proxies.resolve(Proxy::Capturing)?;
    let projection = projection(sim, corpus.vocab_size, resolved.model.d_model);
    let parts = dir.root.join("scores");
    let mut scoring = InRunScoring {
        window: CaptureWindow {
            every: resolved.train.checkpoint_every,
            steps: sim.capture_steps,
        },
        captured: Captured::new(corpus.eos, sim.max_doc_tokens),
        domains: &corpus.domains,
        sources: HashMap::new(),
        targets,
        projection: &projection,
        comparison: sim.comparison(),
        parts: parts.clone(),
        seconds: 0.0,
    };
    let trained = run_training_with(
        &dir,
        &resolved,
        corpus,
        &CrossEntropy,
        &mut [&mut scoring],
        proxies.quiet,
    )?;
    let rows = read_parts(&dir.paths().checkpoints, &parts)?;
    if let Some(outcome) = trained {
        let capture = scoring.captured.seconds();
        tracing::info!(
            documents = rows.len() / targets.len().max(1),
            targets = targets.len(),
            seconds = capture + scoring.seconds,
            capture_seconds = capture,
            checkpoint_seconds = scoring.seconds,
            train_seconds = outcome.train_seconds - capture,
            "scored"
        );
    }
    Ok(rows)
}

/// Scores of documents drawn per domain, at every checkpoint of a finished proxy
/// (`gradients = "sample"`).
fn scores_of_sample(
    proxies: &Proxies,
    targets: &[TargetSet],
) -> anyhow::Result<Vec<DocumentUtility>> {
    let (sim, corpus) = (proxies.sim(), proxies.corpus);
    let (proxy, resolved) = proxies.train(Proxy::Uniform, &CrossEntropy)?;
    let sample = sample_documents(
        &corpus.train,
        sim.docs_per_domain,
        sim.max_doc_tokens,
        sim.seed,
    )?;
    let projection = projection(sim, corpus.vocab_size, resolved.model.d_model);
    let scoring = Scoring {
        model: &resolved.model,
        domains: &corpus.domains,
        sample: &sample,
        targets,
        projection: &projection,
        comparison: sim.comparison(),
    };
    let started = Instant::now();
    let rows = score_proxy(proxies, &proxy, &resolved.run_hash, &mut |step, files| {
        scoring.score_checkpoint(step, &files.model)
    })?;
    tracing::info!(
        documents = sample.len(),
        targets = targets.len(),
        seconds = started.elapsed().as_secs_f64(),
        "scored"
    );
    Ok(rows)
}

/// Scores of every domain's packed sequences through every parameter, at every checkpoint of a
/// finished proxy (`gradients = "domain"`).
fn scores_of_domains(
    proxies: &Proxies,
    targets: &[TargetSet],
) -> anyhow::Result<Vec<DocumentUtility>> {
    let (sim, corpus) = (proxies.sim(), proxies.corpus);
    let (proxy, resolved) = proxies.train(Proxy::Uniform, &CrossEntropy)?;
    let scoring = DomainScoring {
        model: &resolved.model,
        train: &resolved.train,
        eos: corpus.eos,
        domains: &corpus.train,
        targets,
        sequences: sim.domain_sequences,
        target_sequences: sim.target_sequences,
        precondition: sim.precondition,
        seed: sim.seed,
    };
    let started = Instant::now();
    let rows = score_proxy(proxies, &proxy, &resolved.run_hash, &mut |step, files| {
        scoring.score_checkpoint(step, files)
    })?;
    tracing::info!(
        sequences = rows.len() / targets.len().max(1),
        targets = targets.len(),
        seconds = started.elapsed().as_secs_f64(),
        "scored"
    );
    Ok(rows)
}

/// Every checkpoint of the finished `proxy` (whose run hash is `run_hash`) scored with `score`,
/// with a progress bar, resumably: part files go to a directory keyed by the run and every
/// `[simulate]` setting, so scores of another sample, estimator or proxy are never mixed in.
fn score_proxy(
    proxies: &Proxies,
    proxy: &RunDir,
    run_hash: &str,
    score: &mut dyn FnMut(u64, &CheckpointFiles) -> mixlab_simulator::Result<Vec<DocumentUtility>>,
) -> anyhow::Result<Vec<DocumentUtility>> {
    let key = serde_json::json!({ "run": run_hash, "simulate": proxies.sim() }).to_string();
    let parts = proxies
        .root
        .join("scores")
        .join(&sha256_hex(key.as_bytes())[..16]);
    let bar = checkpoint_bar(proxies.sim().checkpoints, proxies.quiet);
    let rows = score_checkpoints(
        &proxy.paths().checkpoints,
        &parts,
        score,
        &mut |step, done, _| {
            bar.set_position(done as u64);
            bar.set_message(format!("step {step}"));
        },
    )
    .context("scoring the proxy's checkpoints")?;
    bar.finish_and_clear();
    Ok(rows)
}

fn checkpoint_bar(checkpoints: u64, quiet: bool) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(checkpoints)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{bar:30}] {pos}/{len} checkpoints ({eta}) {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_prefix("score");
    bar
}
