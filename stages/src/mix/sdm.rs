//! The SDM's mixture: joint utilities (or the own-domain control's) turned into weights by the
//! chosen objective, within the `[mix]` bounds and epoch caps, one stage per `[[mix.stage]]`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use mixlab_artefacts::utilities::{joint_utilities, read_utilities};
use mixlab_ingest::checksum::sha256_file;
use mixlab_mixer::config::{MixConfig, stage_windows};
use mixlab_mixer::schedule::{MixtureSchedule, Provenance, Stage};
use mixlab_mixer::staged::{JointUtilities, expected_utility, staged_weights};
use mixlab_mixer::utility::{proportional, utilimax};

use super::{SdmSettings, bounds, shard_tokens, tokens_of, train_budget};
use crate::Usage;
use crate::arms::SdmObjective;
use crate::config::LoadedConfig;
use crate::workspace::ShardsDir;

/// `--method sdm`: the joint utilities of `mixlab simulate` turned into weights by the chosen
/// objective, within the `[mix]` bounds and epoch caps of `--config`. With `[[mix.stage]]`, one
/// stage per entry, each from the utilities of the proxy's checkpoints in the same part of its run.
///
/// `file`: the utilities of `mixlab simulate`; `None`: the own-domain control, which has no
/// utilities file (one utility per domain, no checkpoints).
pub(super) fn sdm(
    file: Option<&Path>,
    settings: SdmSettings,
    loaded: Option<&LoadedConfig>,
    shards: &ShardsDir,
) -> anyhow::Result<MixtureSchedule> {
    let (joint, method, inputs) = match file {
        None => {
            let joint = own_domain_utilities(loaded, shards)?;
            (joint, "own", BTreeMap::new())
        }
        Some(path) => {
            let rows = read_utilities(path).context(Usage(format!(
                "--utilities {} (run `mixlab simulate` first)",
                path.display()
            )))?;
            let joint = joint_utilities(&rows);
            if joint.domains.is_empty() {
                anyhow::bail!(Usage(format!("{}: no joint utilities", path.display())));
            }
            let inputs = [("utilities".to_owned(), sha256_file(path)?)].into();
            (joint, "sdm", inputs)
        }
    };
    let mix = loaded.map(|l| l.config.mix.clone()).unwrap_or_default();
    let tokens = match (loaded, mix.max_epochs) {
        (Some(_), Some(_)) => Some(tokens_of(&joint.domains, shards)?),
        _ => None,
    };
    let bounds = bounds(&joint.domains, &mix, loaded, tokens.as_deref())?;
    let optimize = |utilities: &[f64]| {
        let weights = match settings.objective {
            SdmObjective::Utilimax => utilimax(utilities, settings.temperature, &bounds),
            SdmObjective::Proportional => proportional(utilities, settings.floor, &bounds),
        };
        weights.context(Usage(match file {
            None => "--method own".to_owned(),
            Some(path) => format!("--method sdm on {}", path.display()),
        }))
    };
    let (stages, objective) = match loaded.filter(|_| !mix.stage.is_empty()) {
        None => {
            let weights = optimize(&joint.overall)?;
            let objective = expected_utility(&weights, &joint.overall);
            let stage = Stage {
                name: "main".into(),
                tokens: None,
                lr: None,
                weights: joint.domains.iter().cloned().zip(weights).collect(),
            };
            (vec![stage], objective)
        }
        Some(loaded) => staged(&mix, train_budget(loaded)?, &joint, file, optimize)?,
    };
    let setting = match settings.objective {
        SdmObjective::Utilimax => ("temperature", settings.temperature),
        SdmObjective::Proportional => ("floor", settings.floor),
    };
    Ok(MixtureSchedule {
        stage: stages,
        provenance: Provenance {
            method: format!("{method}-{}", settings.objective.name()),
            inputs,
            settings: [(setting.0.to_owned(), setting.1.to_string())].into(),
            predicted_objective: Some(objective),
            ..Provenance::default()
        },
    })
}

/// The own-domain control's utilities: each target's weight on its own domain (`domain`, else
/// `probe`), summed per domain; the same at every checkpoint (there are none).
fn own_domain_utilities(
    loaded: Option<&LoadedConfig>,
    shards: &ShardsDir,
) -> anyhow::Result<JointUtilities> {
    let loaded = loaded
        .ok_or_else(|| Usage("--method own needs --config (its [[simulate.target]])".into()))?;
    let domains: Vec<String> = shard_tokens(shards)?.into_iter().map(|(d, _)| d).collect();
    let mut overall = vec![0.0; domains.len()];
    for (i, target) in loaded.config.simulate.target.iter().enumerate() {
        let own = target.own_domain().ok_or_else(|| {
            Usage(format!(
                "{}: [simulate].target[{i}] ({:?}) names no own domain: set domain = \"<domain>\"",
                loaded.path.display(),
                target.name
            ))
        })?;
        let d = domains.iter().position(|d| d == own).ok_or_else(|| {
            Usage(format!(
                "{}: [simulate].target[{i}].domain {own:?} is not a domain of the shards",
                loaded.path.display()
            ))
        })?;
        overall[d] += target.weight;
    }
    Ok(JointUtilities {
        domains,
        overall,
        steps: Vec::new(),
        by_step: Vec::new(),
    })
}

/// One stage per `[[mix.stage]]`, each optimized on the utilities of the proxy checkpoints in its
/// part of the run; the objective reported is the token-weighted mean over stages.
fn staged(
    mix: &MixConfig,
    budget: u64,
    joint: &JointUtilities,
    path: Option<&Path>,
    optimize: impl Fn(&[f64]) -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<(Vec<Stage>, f64)> {
    let budgets: Vec<Option<u64>> = mix.stage.iter().map(|s| s.tokens).collect();
    let windows = stage_windows(&budgets, budget).context(Usage("--method sdm".into()))?;
    if !joint.has_every_checkpoint() {
        let file = path.map_or_else(|| "--method own".to_owned(), |p| p.display().to_string());
        anyhow::bail!(Usage(format!(
            "{file}: no per-checkpoint joint utilities for [[mix.stage]]; run `mixlab simulate` again with this mixlab"
        )));
    }
    let (weights, objective) = staged_weights(joint, &windows, |i, utilities| {
        optimize(utilities).with_context(|| format!("[[mix.stage]] {:?}", mix.stage[i].name))
    })?;
    let stages = mix
        .stage
        .iter()
        .zip(weights)
        .map(|(config, weights)| Stage {
            name: config.name.clone(),
            tokens: config.tokens,
            lr: config.lr,
            weights: joint.domains.iter().cloned().zip(weights).collect(),
        })
        .collect();
    Ok((stages, objective))
}
