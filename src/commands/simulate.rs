//! `mixlab simulate`: the Scalable Data Mixer's simulation run and utility estimation.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mixlab_artefacts::eval::read_eval;
use mixlab_artefacts::utilities::{
    DomainUtility, JOINT_TARGET, overall, read_utilities, write_document_utilities, write_utilities,
};
use mixlab_ingest::manifest::ShardSet;
use mixlab_ingest::tokenize::TextTokenizer;
use mixlab_mixer::metrics::spearman;
use mixlab_mixer::schedule::{MixtureSchedule, Provenance};
use mixlab_simulator::config::SimulateConfig;
use mixlab_simulator::estimate::{TargetSet, sample_documents};
use mixlab_simulator::loo::{ensure_probe_targets, loo_utilities};
use mixlab_simulator::projection::GradientProjection;
use mixlab_simulator::score::{Scoring, resolve_targets, summarize};
use mixlab_trainer::config::KeepCheckpoints;
use mixlab_trainer::data::Corpus;

use crate::cli::{GlobalArgs, SimulateArgs, SimulateMethod};
use crate::config::LoadedConfig;
use crate::run_dir::{ResolvedRun, RunDir};
use crate::table::Table;
use crate::training::run_training;

/// Estimates every domain's utility for each target with the chosen method.
pub fn run(global: &GlobalArgs, args: &SimulateArgs) -> anyhow::Result<()> {
    let loaded = LoadedConfig::load(&args.config)?;
    let config_file = || args.config.display().to_string();
    loaded
        .config
        .simulate
        .validate()
        .with_context(config_file)?;
    let shards = ShardSet::open(&global.out_root().join("shards"))?;
    let corpus = Corpus::load(&shards).context("reading the shards")?;
    let tokenizer = TextTokenizer::load(&shards.tokenizer_path())?;
    let base = loaded
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let targets = resolve_targets(&loaded.config.simulate, &corpus, |path| {
        probe_file(&base.join(path), &tokenizer)
    })
    .with_context(config_file)?;
    let proxies = Proxies {
        loaded: &loaded,
        shards: &shards,
        corpus: &corpus,
        root: global.out_root().join("simulate"),
        quiet: global.quiet,
    };
    match args.method {
        SimulateMethod::Influence => influence(&proxies, &targets),
        SimulateMethod::Loo => leave_one_out(&proxies, &targets),
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

    /// Trains (or finds trained, or resumes) the proxy on a uniform mixture over every domain but
    /// `left_out`, keeping its K checkpoints, in `proxy/<hash>` or `loo/<domain>/<hash>`.
    fn train(&self, left_out: Option<&str>) -> anyhow::Result<(RunDir, ResolvedRun)> {
        let sim = self.sim();
        let domains: Vec<&str> = self.corpus.domains.iter().map(String::as_str).collect();
        let mixture = match left_out {
            None => MixtureSchedule::uniform(&domains),
            Some(out) => {
                let kept: Vec<&str> = domains.iter().copied().filter(|d| *d != out).collect();
                let weights = kept
                    .iter()
                    .map(|d| ((*d).to_owned(), 1.0 / kept.len() as f64));
                let provenance = Provenance {
                    method: format!("uniform without {out}"),
                    ..Provenance::default()
                };
                MixtureSchedule::single(weights.collect(), provenance)
            }
        };
        let mut train = self.loaded.config.train.clone();
        (train.steps, train.seed) = (sim.steps, sim.seed);
        train.checkpoint_every = sim.checkpoint_every();
        train.keep_checkpoints = KeepCheckpoints::All;
        let model = self.loaded.config.model.resolve(
            Some(sim.preset),
            self.corpus.vocab_size,
            train.seq_len,
        )?;
        let resolved = ResolvedRun::new(self.shards, model, train, mixture);
        // One directory per configuration: changing [simulate] trains a new proxy instead of
        // refusing the old one's directory.
        let dir = match left_out {
            None => self.root.join("proxy"),
            Some(out) => self.root.join("loo").join(out),
        };
        let dir = RunDir::new(dir.join(&resolved.run_hash[..12]));
        run_training(&dir, &resolved, self.corpus, self.quiet)?;
        Ok((dir, resolved))
    }
}

/// One proxy run, its checkpoints scored by influence: `utilities.parquet`.
fn influence(proxies: &Proxies, targets: &[TargetSet]) -> anyhow::Result<()> {
    let (sim, corpus) = (proxies.sim(), proxies.corpus);
    let (proxy, resolved) = proxies.train(None)?;
    let sample = sample_documents(
        &corpus.train,
        sim.docs_per_domain,
        sim.max_doc_tokens,
        sim.seed,
    );
    let projection = GradientProjection::new(
        corpus.vocab_size,
        resolved.model.d_model,
        sim.projection,
        sim.projection,
        sim.seed,
    );
    let scoring = Scoring {
        model: &resolved.model,
        domains: &corpus.domains,
        sample: &sample,
        targets,
        projection: &projection,
    };
    // Scores of another sample, projection or proxy are never mixed in: their directory is keyed
    // by everything that determines them.
    let key = serde_json::json!({ "run": resolved.run_hash, "simulate": sim }).to_string();
    let parts = proxies
        .root
        .join("scores")
        .join(&mixlab_ingest::checksum::sha256_hex(key.as_bytes())[..16]);
    let bar = checkpoint_bar(sim.checkpoints, proxies.quiet);
    let started = Instant::now();
    let rows = scoring
        .score_all(&proxy.paths().checkpoints, &parts, &mut |step, done, _| {
            bar.set_position(done as u64);
            bar.set_message(format!("step {step}"));
        })
        .context("scoring the proxy's checkpoints")?;
    bar.finish_and_clear();
    tracing::info!(
        documents = sample.len(),
        targets = targets.len(),
        seconds = started.elapsed().as_secs_f64(),
        "scored"
    );
    let summary = summarize(&rows, targets, &corpus.domains, sim.bootstrap, sim.seed);
    write_document_utilities(&proxies.root.join("document_utilities.parquet"), &rows)?;
    let path = proxies.root.join("utilities.parquet");
    write_utilities(&path, &summary)?;
    print!("{}", utility_table(&summary, &corpus.domains, targets));
    println!("wrote {}", path.display());
    Ok(())
}

/// The proxy once more without each domain: `loo_utilities.parquet`, and the rank agreement with
/// the influence estimates when they exist.
fn leave_one_out(proxies: &Proxies, targets: &[TargetSet]) -> anyhow::Result<()> {
    ensure_probe_targets(&proxies.sim().target)?;
    let final_losses = |dir: &RunDir| read_eval(&dir.paths().eval);
    let (full, _) = proxies.train(None)?;
    let full = final_losses(&full)?;
    let mut without = Vec::new();
    for domain in &proxies.corpus.domains {
        let (dir, _) = proxies.train(Some(domain))?;
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

/// The `text` field of every line of a JSONL file (`.gz` decompressed), tokenized.
fn probe_file(path: &Path, tokenizer: &TextTokenizer) -> mixlab_simulator::Result<Vec<Vec<u32>>> {
    let fail =
        |what: String| mixlab_simulator::Error::Config(format!("{}: {what}", path.display()));
    let file = fs_err::File::open(path).map_err(|e| fail(e.to_string()))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut docs = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|e| fail(format!("line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| fail(format!("line {}: not JSON: {e}", i + 1)))?;
        let text = record["text"]
            .as_str()
            .ok_or_else(|| fail(format!("line {}: expected a string field \"text\"", i + 1)))?;
        docs.push(
            tokenizer
                .encode(text)
                .map_err(|e| fail(format!("line {}: {e}", i + 1)))?,
        );
    }
    Ok(docs)
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
