//! `mixlab simulate`: the Scalable Data Mixer's simulation run and utility estimation.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mixlab_artefacts::utilities::{
    DomainUtility, JOINT_TARGET, write_document_utilities, write_utilities,
};
use mixlab_ingest::manifest::ShardSet;
use mixlab_mixer::schedule::MixtureSchedule;
use mixlab_simulator::estimate::sample_documents;
use mixlab_simulator::projection::GradientProjection;
use mixlab_simulator::score::{Scoring, summarize, targets_from_probes};
use mixlab_trainer::config::KeepCheckpoints;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::schedule::StagePlan;

use crate::cli::{ConfigArgs, GlobalArgs};
use crate::config::LoadedConfig;
use crate::run_dir::{ResolvedRun, RunDir};
use crate::table::Table;
use crate::training::run_training;

/// Trains the proxy on a uniform mixture (or finds it trained), scores its checkpoints and writes
/// `<out>/simulate/utilities.parquet` and `document_utilities.parquet`.
pub fn run(global: &GlobalArgs, args: &ConfigArgs) -> anyhow::Result<()> {
    let loaded = LoadedConfig::load(&args.config)?;
    let sim = &loaded.config.simulate;
    let config_file = || args.config.display().to_string();
    sim.validate().with_context(config_file)?;
    let shards = ShardSet::open(&global.out_root().join("shards"))?;
    let corpus = Corpus::load(&shards).context("reading the shards")?;
    let targets = targets_from_probes(sim, &corpus).with_context(config_file)?;

    let names: Vec<&str> = corpus.domains.iter().map(String::as_str).collect();
    let uniform = MixtureSchedule::uniform(&names);
    let mut train = loaded.config.train.clone();
    (train.steps, train.seed) = (sim.steps, sim.seed);
    train.checkpoint_every = sim.checkpoint_every();
    train.keep_checkpoints = KeepCheckpoints::All;
    let model = loaded
        .config
        .model
        .resolve(Some(sim.preset), corpus.vocab_size, train.seq_len)?;
    let plan = StagePlan::new(&uniform, &corpus.domains, &train)?;
    let resolved = ResolvedRun::new(&shards, model, train, uniform);
    let root = global.out_root().join("simulate");
    let proxy = RunDir::new(root.join("proxy"));
    run_training(&proxy, &resolved, plan, &corpus, global.quiet)?;

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
        targets: &targets,
        projection: &projection,
    };
    // Scores of another sample, projection or proxy are never mixed in: their directory is keyed
    // by everything that determines them.
    let key = serde_json::json!({ "run": resolved.run_hash, "simulate": sim }).to_string();
    let parts = root
        .join("scores")
        .join(&mixlab_ingest::checksum::sha256_hex(key.as_bytes())[..16]);
    let bar = checkpoint_bar(sim.checkpoints, global.quiet);
    let rows = scoring
        .score_all(&proxy.paths().checkpoints, &parts, &mut |step, done, _| {
            bar.set_position(done as u64);
            bar.set_message(format!("step {step}"));
        })
        .context("scoring the proxy's checkpoints")?;
    bar.finish_and_clear();
    let summary = summarize(&rows, &targets, &corpus.domains, sim.bootstrap, sim.seed);
    write_document_utilities(&root.join("document_utilities.parquet"), &rows)?;
    write_utilities(&root.join("utilities.parquet"), &summary)?;
    let target_names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    print!(
        "{}",
        utility_table(&summary, &corpus.domains, &target_names)
    );
    println!("wrote {}", root.join("utilities.parquet").display());
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
fn utility_table(summary: &[DomainUtility], domains: &[String], targets: &[&str]) -> String {
    let mut header = vec!["domain"];
    header.extend(targets);
    header.push(JOINT_TARGET);
    let mut table = Table::new(&header);
    for domain in domains {
        let mut row = vec![domain.clone()];
        for target in targets.iter().chain([&JOINT_TARGET]) {
            let cell = summary
                .iter()
                .find(|u| &u.domain == domain && u.target == *target && u.checkpoint_step.is_none())
                .map_or("-".to_owned(), |u| {
                    format!("{:+.3e} ± {:.1e}", u.utility, u.stderr)
                });
            row.push(cell);
        }
        table.row(row);
    }
    table.render()
}
