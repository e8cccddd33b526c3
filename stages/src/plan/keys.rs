//! Stage keys: what decides a stage's result, hashed.
//!
//! A key is the SHA-256 of the stage's arguments ([`StageSpec::args`](super::StageSpec::args)),
//! the keys of the stages it reads from and the configuration it reads, each section as its typed
//! value. `[train]` counts as [`TrainConfig::result_settings`], so bookkeeping (how often a run
//! evaluates and saves) changes no key.

use mixlab_ingest::checksum::sha256_hex;
use mixlab_mixer::config::MixConfig;
use mixlab_simulator::config::{SimulateConfig, TargetConfig};
use mixlab_trainer::config::{ModelSection, Recipe, ResultSettings};
use serde::Serialize;

use crate::config::LoadedConfig;

/// The configuration each kind of stage reads.
pub(super) struct Sections<'a> {
    /// The simulation's: `[simulate]`, and the `[model]` and `[train]` recipe its proxy takes.
    pub simulate: SimulateSections<'a>,
    /// A mixture's: `[mix]`, the training budget its epoch caps use and the targets the own-domain
    /// control reads.
    pub mix: MixSections<'a>,
    /// A training run's: `[model]` and `[train]`.
    pub train: TrainSections<'a>,
}

/// See [`Sections::simulate`].
#[derive(Serialize)]
pub(super) struct SimulateSections<'a> {
    simulate: &'a SimulateConfig,
    model: &'a ModelSection,
    /// The proxy takes its steps and seed from `[simulate]`.
    train: Recipe,
}

/// See [`Sections::mix`].
#[derive(Serialize)]
pub(super) struct MixSections<'a> {
    mix: &'a MixConfig,
    train_tokens: u64,
    targets: &'a [TargetConfig],
}

/// See [`Sections::train`].
#[derive(Serialize)]
pub(super) struct TrainSections<'a> {
    model: &'a ModelSection,
    train: ResultSettings,
}

impl<'a> Sections<'a> {
    pub fn of(loaded: &'a LoadedConfig) -> Self {
        let c = &loaded.config;
        let result = c.train.result_settings();
        Self {
            simulate: SimulateSections {
                simulate: &c.simulate,
                model: &c.model,
                train: result.recipe,
            },
            mix: MixSections {
                mix: &c.mix,
                train_tokens: c.train.steps * c.train.tokens_per_step(),
                targets: &c.simulate.target,
            },
            train: TrainSections {
                model: &c.model,
                train: result,
            },
        }
    }
}

/// Stages that read no configuration section (theirs is in their arguments and upstream keys).
pub(super) const NO_SECTIONS: () = ();

/// SHA-256 of a stage's arguments, the keys it reads from and its configuration sections.
pub(super) fn stage_key(args: &[String], upstream: &[&str], sections: &impl Serialize) -> String {
    let json = serde_json::json!({ "args": args, "upstream": upstream, "config": sections });
    sha256_hex(json.to_string().as_bytes())
}
