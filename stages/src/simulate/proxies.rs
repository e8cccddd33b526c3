//! The proxy runs of a simulation, each in its own directory keyed by its configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mixlab_ingest::checksum::sha256_hex;
use mixlab_ingest::manifest::ShardSet;
use mixlab_mixer::schedule::{MixtureSchedule, Provenance};
use mixlab_simulator::config::{DoremiConfig, SimulateConfig};
use mixlab_trainer::config::KeepCheckpoints;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::engine::objective::Objective;

use crate::config::LoadedConfig;
use crate::run_dir::{ResolvedRun, RunDir};
use crate::training::run_training;

/// The proxy runs of a simulation: the uniform one, and (for leave-one-out) one without each
/// domain; all with the `[simulate]` model, steps and seed.
pub(super) struct Proxies<'a> {
    pub loaded: &'a LoadedConfig,
    pub shards: &'a ShardSet,
    pub corpus: &'a Corpus,
    /// `<out>/simulate`.
    pub root: PathBuf,
    pub quiet: bool,
}

impl Proxies<'_> {
    pub fn sim(&self) -> &SimulateConfig {
        &self.loaded.config.simulate
    }

    /// Trains (or finds trained, or resumes) `proxy` with `objective`, keeping its K checkpoints,
    /// in `proxy/<hash>`, `loo/<domain>/<hash>` or `doremi/<hash>`.
    pub fn train(
        &self,
        proxy: Proxy<'_>,
        objective: &dyn Objective,
    ) -> anyhow::Result<(RunDir, ResolvedRun)> {
        let (dir, resolved) = self.resolve(proxy)?;
        run_training(&dir, &resolved, self.corpus, objective, self.quiet)?;
        Ok((dir, resolved))
    }

    /// The directory and resolved configuration of `proxy`, untouched.
    pub fn resolve(&self, proxy: Proxy<'_>) -> anyhow::Result<(RunDir, ResolvedRun)> {
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
pub(super) enum Proxy<'a> {
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

pub(super) fn doremi_settings(doremi: &DoremiConfig) -> BTreeMap<String, String> {
    [
        ("step_size".to_owned(), doremi.step_size.to_string()),
        ("smoothing".to_owned(), doremi.smoothing.to_string()),
    ]
    .into()
}
