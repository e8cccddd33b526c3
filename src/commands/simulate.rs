//! `mixlab simulate`: the Scalable Data Mixer's simulation run and utility estimation.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mixlab_artefacts::eval::read_eval;
use mixlab_artefacts::mixture::write_mixture;
use mixlab_artefacts::utilities::{
    DocumentUtility, DomainUtility, JOINT_TARGET, overall, read_utilities,
    write_document_utilities, write_utilities,
};
use mixlab_ingest::checksum::sha256_hex;
use mixlab_ingest::manifest::ShardSet;
use mixlab_ingest::tokenize::TextTokenizer;
use mixlab_mixer::metrics::spearman;
use mixlab_mixer::schedule::{MixtureSchedule, Provenance};
use mixlab_simulator::capture::{CaptureWindow, Captured, CapturingCrossEntropy};
use mixlab_simulator::config::{DoremiConfig, GradientSource, SimulateConfig};
use mixlab_simulator::domain::DomainScoring;
use mixlab_simulator::doremi::ExcessLoss;
use mixlab_simulator::estimate::{TargetSet, sample_documents};
use mixlab_simulator::loo::{ensure_probe_targets, loo_utilities};
use mixlab_simulator::projection::GradientProjection;
use mixlab_simulator::score::{
    InRunScoring, Scoring, read_parts, resolve_targets, score_checkpoints, summarize,
};
use mixlab_stages::config::LoadedConfig;
use mixlab_stages::locks::lock_dir;
use mixlab_stages::run_dir::{ResolvedRun, RunDir};
use mixlab_stages::training::{run_training, run_training_with};
use mixlab_trainer::checkpoint::{CheckpointFiles, read_state};
use mixlab_trainer::config::KeepCheckpoints;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::inference::Inference;
use mixlab_trainer::objective::{CrossEntropy, Objective};

use crate::cli::{GlobalArgs, SimulateArgs, SimulateMethod};
use crate::table::Table;
use crate::texts::read_texts;

/// Estimates every domain's utility for each target with the chosen method.
pub fn run(global: &GlobalArgs, args: &SimulateArgs) -> anyhow::Result<()> {
    let loaded = LoadedConfig::load(&args.config)?;
    let config_file = || args.config.display().to_string();
    loaded
        .config
        .simulate
        .validate()
        .with_context(config_file)?;
    let shards = global.shards().open()?;
    let corpus = Corpus::load(&shards).context("reading the shards")?;
    let tokenizer = TextTokenizer::load(&shards.tokenizer_path())?;
    let base = loaded
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let targets = resolve_targets(&loaded.config.simulate, &corpus, |path| {
        read_texts(&base.join(path), &tokenizer)
    })
    .with_context(config_file)?;
    let root = global.out_root().join("simulate");
    let _lock = lock_dir(&root, "simulate")?;
    let proxies = Proxies {
        loaded: &loaded,
        shards: &shards,
        corpus: &corpus,
        root,
        quiet: global.quiet,
    };
    match args.method {
        SimulateMethod::Influence => influence(&proxies, &targets),
        SimulateMethod::Loo => leave_one_out(&proxies, &targets),
        SimulateMethod::Doremi => doremi(&proxies),
    }
}

/// The proxy runs of a simulation: the uniform one, and (for leave-one-out) one without each
/// domain; all with the `[simulate]` model, steps and seed.
struct Proxies<'a> {
    loaded: &'a LoadedConfig,
    shards: &'a ShardSet,
    corpus: &'a Corpus,
    root: PathBuf,
    quiet: bool,
}

impl Proxies<'_> {
    fn sim(&self) -> &SimulateConfig {
        &self.loaded.config.simulate
    }

    /// Trains (or finds trained, or resumes) `proxy` with `objective`, keeping its K checkpoints,
    /// in `proxy/<hash>`, `loo/<domain>/<hash>` or `doremi/<hash>`.
    fn train(
        &self,
        proxy: Proxy<'_>,
        objective: &dyn Objective,
    ) -> anyhow::Result<(RunDir, ResolvedRun)> {
        let (dir, resolved) = self.resolve(proxy)?;
        run_training(&dir, &resolved, self.corpus, objective, self.quiet)?;
        Ok((dir, resolved))
    }

    /// The directory and resolved configuration of `proxy`, untouched.
    fn resolve(&self, proxy: Proxy<'_>) -> anyhow::Result<(RunDir, ResolvedRun)> {
        let sim = self.sim();
        let mut train = self.loaded.config.train.clone();
        (train.steps, train.seed) = (sim.steps, sim.seed);
        train.checkpoint_every = sim.checkpoint_every();
        train.keep_checkpoints = KeepCheckpoints::All;
        let model = self.loaded.config.model.resolve(
            Some(sim.preset),
            self.corpus.vocab_size,
            train.seq_len,
        )?;
        let mixture = proxy.mixture(&self.corpus.domains, sim);
        let resolved = ResolvedRun::new(self.shards, model, train, mixture);
        // One directory per configuration: changing [simulate] trains a new proxy instead of
        // refusing the old one's directory. The checkpoint spacing is left out of the run hash
        // (it does not change the weights) but decides which checkpoints are scored, so it names
        // the directory too. A run that scores its own batches as it trains (its scores are
        // made then or never) is keyed by all of [simulate] as well.
        let every = resolved.train.checkpoint_every;
        let mut key = format!("{} {every}", resolved.run_hash);
        if let Proxy::Capturing = proxy {
            key = format!("{key} {}", serde_json::to_string(sim)?);
        }
        let key = sha256_hex(key.as_bytes());
        let dir = match proxy {
            Proxy::Uniform | Proxy::Capturing => self.root.join("proxy"),
            Proxy::Without(out) => self.root.join("loo").join(out),
            Proxy::Doremi { .. } => self.root.join("doremi"),
        };
        Ok((RunDir::new(dir.join(&key[..12])), resolved))
    }
}

/// The proxy runs of `simulate`.
#[derive(Debug, Clone, Copy)]
enum Proxy<'a> {
    /// The uniform simulation run (also DoReMi's reference).
    Uniform,
    /// The uniform simulation run scoring the documents of its own batches as it trains.
    Capturing,
    /// Uniform over every domain but this one (leave-one-out).
    Without(&'a str),
    /// DoReMi's group-DRO run against the uniform run with this hash.
    Doremi { reference: &'a str },
}

impl Proxy<'_> {
    /// The mixture the proxy samples; its provenance names the run's kind, so each kind has its
    /// own run hash.
    fn mixture(self, domains: &[String], sim: &SimulateConfig) -> MixtureSchedule {
        let all: Vec<&str> = domains.iter().map(String::as_str).collect();
        let (kept, provenance) = match self {
            Proxy::Uniform | Proxy::Capturing => return MixtureSchedule::uniform(&all),
            Proxy::Without(out) => {
                let kept = all.iter().copied().filter(|d| *d != out).collect();
                let provenance = Provenance {
                    method: format!("uniform without {out}"),
                    ..Provenance::default()
                };
                (kept, provenance)
            }
            Proxy::Doremi { reference } => {
                let provenance = Provenance {
                    method: "uniform, DoReMi proxy".into(),
                    inputs: [("reference_run".to_owned(), reference.to_owned())].into(),
                    settings: doremi_settings(&sim.doremi),
                    ..Provenance::default()
                };
                (all, provenance)
            }
        };
        let weights = kept
            .iter()
            .map(|d| ((*d).to_owned(), 1.0 / kept.len() as f64));
        MixtureSchedule::single(weights.collect(), provenance)
    }
}

fn doremi_settings(doremi: &DoremiConfig) -> BTreeMap<String, String> {
    [
        ("step_size".to_owned(), doremi.step_size.to_string()),
        ("smoothing".to_owned(), doremi.smoothing.to_string()),
    ]
    .into()
}

/// One proxy run, its training documents scored by influence: `utilities.parquet`.
fn influence(proxies: &Proxies, targets: &[TargetSet]) -> anyhow::Result<()> {
    let (sim, corpus) = (proxies.sim(), proxies.corpus);
    let rows = match sim.gradients {
        GradientSource::Training => scores_from_training(proxies, targets)?,
        GradientSource::Sample => scores_of_sample(proxies, targets)?,
        GradientSource::Domain => scores_of_domains(proxies, targets)?,
    };
    let summary = summarize(&rows, targets, &corpus.domains, sim.bootstrap, sim.seed)?;
    write_document_utilities(&proxies.root.join("document_utilities.parquet"), &rows)?;
    let path = proxies.root.join("utilities.parquet");
    write_utilities(&path, &summary)?;
    print!("{}", utility_table(&summary, &corpus.domains, targets));
    println!("wrote {}", path.display());
    Ok(())
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
    let captured = Rc::new(RefCell::new(Captured::new(corpus.eos, sim.max_doc_tokens)));
    let objective = CapturingCrossEntropy::new(projection.clone(), Rc::clone(&captured));
    let parts = dir.root.join("scores");
    let mut scoring = InRunScoring {
        window: CaptureWindow {
            every: resolved.train.checkpoint_every,
            steps: sim.capture_steps,
        },
        captured: Rc::clone(&captured),
        domains: &corpus.domains,
        sources: corpus
            .train
            .iter()
            .enumerate()
            .flat_map(|(d, docs)| {
                docs.docs
                    .iter()
                    .map(move |doc| ((d, doc.doc_id), Arc::clone(&doc.source)))
            })
            .collect(),
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
        &objective,
        &mut [&mut scoring],
        proxies.quiet,
    )?;
    let rows = read_parts(&dir.paths().checkpoints, &parts)?;
    if let Some(outcome) = trained {
        let capture = captured.borrow().seconds();
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
    );
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

/// The proxy once more without each domain: `loo_utilities.parquet`, and the rank agreement with
/// the influence estimates when they exist.
fn leave_one_out(proxies: &Proxies, targets: &[TargetSet]) -> anyhow::Result<()> {
    ensure_probe_targets(&proxies.sim().target)?;
    let final_losses = |dir: &RunDir| read_eval(&dir.paths().eval);
    let (full, _) = proxies.train(Proxy::Uniform, &CrossEntropy)?;
    let full = final_losses(&full)?;
    let mut without = Vec::new();
    for domain in &proxies.corpus.domains {
        let (dir, _) = proxies.train(Proxy::Without(domain), &CrossEntropy)?;
        without.push((domain.clone(), final_losses(&dir)?));
    }
    let rows = loo_utilities(&full, &without, &proxies.sim().target)?;
    let path = proxies.root.join("loo_utilities.parquet");
    write_utilities(&path, &rows)?;
    print!("{}", utility_table(&rows, &proxies.corpus.domains, targets));
    println!("wrote {}", path.display());
    let influence_path = proxies.root.join("utilities.parquet");
    if influence_path.exists() {
        let joint = |rows: &[DomainUtility]| -> Vec<f64> {
            let domains = proxies.corpus.domains.iter();
            domains
                .map(|d| overall(rows, d, JOINT_TARGET).map_or(f64::NAN, |u| u.utility))
                .collect()
        };
        let rho = spearman(&joint(&read_utilities(&influence_path)?), &joint(&rows));
        println!("Spearman ρ of the joint utilities, influence vs leave-one-out: {rho:.3}");
    }
    Ok(())
}

/// A DoReMi proxy against the uniform proxy as reference; its averaged domain weights become
/// `doremi.toml` (a mixture file, read by `mix --method doremi`).
fn doremi(proxies: &Proxies) -> anyhow::Result<()> {
    let (sim, corpus) = (proxies.sim(), proxies.corpus);
    let (reference_dir, reference) = proxies.train(Proxy::Uniform, &CrossEntropy)?;
    let (_, reference_weights) = reference_dir.latest_model()?;
    let objective = ExcessLoss::new(
        Inference::load(&reference.model, &reference_weights)?,
        corpus.domains.len(),
        reference.train.document_mask,
        sim.doremi,
    );
    let proxy = Proxy::Doremi {
        reference: &reference.run_hash,
    };
    let (dir, resolved) = proxies.train(proxy, &objective)?;
    // The weights come from the final checkpoint, also when the run had finished before.
    let checkpoints = dir.paths().checkpoints;
    let (last, _) = dir.latest_model()?;
    let state = read_state(&checkpoints, last)?;
    objective
        .restore(state.objective)
        .map_err(|e| anyhow::anyhow!("{}: {e}", checkpoints.display()))?;
    let weights = objective.weights();
    let mut settings = doremi_settings(&sim.doremi);
    settings.insert("updates".into(), weights.updates.to_string());
    let provenance = Provenance {
        method: "doremi".into(),
        inputs: [
            ("reference_run".to_owned(), reference.run_hash.clone()),
            ("doremi_run".to_owned(), resolved.run_hash.clone()),
        ]
        .into(),
        settings,
        ..Provenance::default()
    };
    let schedule = MixtureSchedule::single(
        corpus
            .domains
            .iter()
            .cloned()
            .zip(weights.average())
            .collect(),
        provenance,
    );
    let path = proxies.root.join("doremi.toml");
    write_mixture(&path, &schedule)?;
    let mut table = Table::new(&["domain", "final weight", "average weight"]);
    for ((domain, last), average) in corpus
        .domains
        .iter()
        .zip(&weights.weights)
        .zip(weights.average())
    {
        table.row(vec![
            domain.clone(),
            format!("{last:.4}"),
            format!("{average:.4}"),
        ]);
    }
    print!("{}", table.render());
    println!("wrote {}", path.display());
    Ok(())
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

/// Domain × target utilities over all checkpoints, `utility ± stderr`, joint last.
fn utility_table(summary: &[DomainUtility], domains: &[String], targets: &[TargetSet]) -> String {
    let mut header = vec!["domain"];
    header.extend(targets.iter().map(|t| t.name.as_str()));
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
