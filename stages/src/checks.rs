//! What `mixlab run` checks before any work: every section a stage of the job will read, so that
//! a value that would stop a stage after ingest and the simulation stops the job at once.

use mixlab_trainer::config::{ModelConfig, Preset};
use mixlab_trainer::downstream::quant::QuantConfig;

use crate::Usage;
use crate::arms::{Arm, MixChoice};
use crate::config::LoadedConfig;

/// The vocabulary the shapes are checked with before the tokenizer exists (no shape rule
/// depends on it).
const ANY_VOCABULARY: usize = 256;

/// Checks `[model]` (with each preset the job trains: the arms', the proxy's, the students'),
/// `[simulate]` when an arm needs it, and each arm's quantization group size against the model it
/// rounds.
///
/// # Errors
/// A [`Usage`] error naming the file, the section or arm and the key.
pub fn before_work(loaded: &LoadedConfig, arms: &[Arm]) -> anyhow::Result<()> {
    let config = &loaded.config;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        anyhow::Error::new(Usage(format!("{}: {what}: {e}", loaded.path.display())))
    };
    let shape = |preset: Option<Preset>, what: &str| -> anyhow::Result<ModelConfig> {
        config
            .model
            .resolve(preset, ANY_VOCABULARY, config.train.seq_len)
            .map_err(|e| fail(what, &e))
    };
    let model = shape(None, "[model]")?;
    let simulates =
        |mix: MixChoice| matches!(mix, MixChoice::Sdm | MixChoice::Own | MixChoice::Doremi);
    if arms.iter().any(|arm| simulates(arm.mix)) {
        config
            .simulate
            .validate()
            .map_err(|e| fail("[simulate]", &e))?;
        shape(
            Some(config.simulate.preset),
            "[model] with [simulate].preset",
        )?;
    }
    for arm in arms {
        let newest = match &arm.distill {
            Some(d) => shape(
                Some(d.preset),
                &format!("arm {:?}: distill.preset", arm.name),
            )?,
            None => model.clone(),
        };
        if let Some(q) = &arm.quantize {
            QuantConfig {
                group_size: q.group_size,
            }
            .validate(&newest)
            .map_err(|e| fail(&format!("arm {:?}: quantize.group_size", arm.name), &e))?;
        }
    }
    Ok(())
}
