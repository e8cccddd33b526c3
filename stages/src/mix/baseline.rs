//! Mixtures that need no utilities: uniform, natural, UniMax, and DoReMi's weights from a file.

use std::path::Path;

use anyhow::Context;
use mixlab_artefacts::mixture::read_mixture;
use mixlab_ingest::checksum::sha256_file;
use mixlab_mixer::baselines::{natural, uniform, unimax};
use mixlab_mixer::schedule::{MixtureSchedule, Provenance};

use super::{MixMethod, shard_tokens, train_budget};
use crate::Usage;
use crate::config::LoadedConfig;
use crate::workspace::ShardsDir;

/// Uniform, natural or UniMax weights over the shards' domains.
pub(super) fn baseline(
    method: &MixMethod,
    loaded: Option<&LoadedConfig>,
    shards: &ShardsDir,
) -> anyhow::Result<MixtureSchedule> {
    let (domains, tokens): (Vec<String>, Vec<u64>) = shard_tokens(shards)?.into_iter().unzip();
    let (weights, name) = match method {
        MixMethod::Uniform => (uniform(domains.len()), "uniform"),
        MixMethod::Natural => (natural(&tokens)?, "natural"),
        MixMethod::Regmix(_) | MixMethod::Sdm { .. } | MixMethod::Doremi(_) | MixMethod::Own(_) => {
            unreachable!("regmix, sdm, own and doremi are not baselines; `mix` dispatches them")
        }
        MixMethod::Unimax => {
            let loaded = loaded.ok_or_else(|| {
                Usage(
                    "--method unimax needs --config (its [train] budget and [mix].max_epochs)"
                        .into(),
                )
            })?;
            let max_epochs = loaded
                .config
                .mix
                .max_epochs
                .ok_or_else(|| Usage("--method unimax needs [mix].max_epochs".into()))?;
            let budget = train_budget(loaded)?;
            let weights =
                unimax(&tokens, budget, max_epochs).context(Usage("--method unimax".into()))?;
            (weights, "unimax")
        }
    };
    let provenance = Provenance {
        method: name.into(),
        ..Provenance::default()
    };
    Ok(MixtureSchedule::single(
        domains.into_iter().zip(weights).collect(),
        provenance,
    ))
}

/// DoReMi's averaged weights from `simulate --method doremi`, over exactly the shards' domains.
pub(super) fn doremi(path: &Path, shards: &ShardsDir) -> anyhow::Result<MixtureSchedule> {
    let mut schedule = read_mixture(path).context(Usage(format!(
        "--doremi {} (run `mixlab simulate --method doremi` first)",
        path.display()
    )))?;
    if schedule.provenance.method != "doremi" {
        anyhow::bail!(Usage(format!(
            "{}: expected DoReMi weights from `mixlab simulate --method doremi`, found a mixture of method {:?}",
            path.display(),
            schedule.provenance.method
        )));
    }
    let shard_domains: Vec<String> = shard_tokens(shards)?.into_iter().map(|(d, _)| d).collect();
    let weighted: Vec<&String> = schedule.stage[0].weights.keys().collect();
    if weighted.len() != shard_domains.len() || shard_domains.iter().any(|d| !weighted.contains(&d))
    {
        anyhow::bail!(Usage(format!(
            "{}: weights for domains {weighted:?}, but the shards have {shard_domains:?}; run `mixlab simulate --method doremi` again",
            path.display()
        )));
    }
    schedule
        .provenance
        .inputs
        .insert("doremi_weights".into(), sha256_file(path)?);
    Ok(schedule)
}
