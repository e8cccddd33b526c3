//! RegMix: a mixture from a table of runs, by regression and a search on the simplex.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use mixlab_artefacts::run_table::{NumericTable, RunTableFiles};
use mixlab_ingest::checksum::sha256_file;
use mixlab_mixer::regmix::recommend;
use mixlab_mixer::runs::RunTable;
use mixlab_mixer::schedule::{MixtureSchedule, Provenance};
use mixlab_mixer::search::{SearchParams, prior_from_masses};

use super::{Prior, RegmixSpec, bounds, tokens_of};
use crate::Usage;
use crate::config::LoadedConfig;
use crate::workspace::ShardsDir;

/// RegMix: a regression over the run table, searched on the simplex within the `[mix]` bounds.
pub(super) fn regmix(
    args: &RegmixSpec,
    loaded: Option<&LoadedConfig>,
    shards: &ShardsDir,
) -> anyhow::Result<MixtureSchedule> {
    let (runs, losses, target) = (&args.runs, &args.losses, &args.target);
    let files = RunTableFiles {
        runs,
        losses,
        index: &args.index,
        target,
        normalize: args.normalize,
    };
    let table = files.load()?;
    let mix = loaded.map(|l| l.config.mix.clone()).unwrap_or_default();
    let params = SearchParams {
        samples: args.samples.unwrap_or(mix.samples),
        top_k: args.top_k.unwrap_or(mix.top_k),
        strength: mix.strength,
        seed: args.seed.unwrap_or(mix.seed),
    };
    // The shards are opened (and their checksums verified) once, and only when a token count is
    // needed: for `--prior tokens` or for epoch caps.
    let caps_apply = loaded.is_some() && mix.max_epochs.is_some();
    let prior_needs_tokens = args.prior == Prior::Tokens;
    let tokens = (caps_apply || prior_needs_tokens)
        .then(|| tokens_of(&table.domains, shards))
        .transpose()?;
    let prior = prior(args, &table, tokens.as_deref())?;
    let bounds = bounds(&table.domains, &mix, loaded, tokens.as_deref())?;
    let started = Instant::now();
    let kind = args.model;
    let found = recommend(&table, kind, &prior, &bounds, &params)?;
    tracing::info!(
        samples = params.samples,
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "searched the simplex"
    );
    let mut inputs = BTreeMap::new();
    inputs.insert("runs".to_owned(), sha256_file(runs)?);
    inputs.insert("losses".to_owned(), sha256_file(losses)?);
    let prior_name = args.prior.name();
    let settings = [
        ("model", kind.name().to_owned()),
        ("target", target.clone()),
        ("prior", prior_name),
        ("samples", params.samples.to_string()),
        ("top_k", params.top_k.to_string()),
        ("strength", params.strength.to_string()),
        ("seed", params.seed.to_string()),
    ];
    let fit = [
        ("cv_spearman", found.cv.spearman),
        ("cv_pearson", found.cv.pearson),
        ("cv_mse", found.cv.mse),
    ];
    let provenance = Provenance {
        method: "regmix".into(),
        inputs,
        settings: settings
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        predicted_objective: Some(found.predicted_loss),
        fit: fit.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    };
    let weights = table.domains.iter().cloned().zip(found.weights).collect();
    Ok(MixtureSchedule::single(weights, provenance))
}

/// The Dirichlet centre, in the run table's domain order.
fn prior(args: &RegmixSpec, table: &RunTable, tokens: Option<&[u64]>) -> anyhow::Result<Vec<f64>> {
    let masses: Vec<f64> = match &args.prior {
        Prior::File(path) => {
            let file = NumericTable::read(path, "domain")?;
            let weight = file.column("weight", path)?;
            let rows = file.align_to(&table.domains, path)?;
            rows.iter().map(|&i| weight[i]).collect()
        }
        Prior::Uniform => vec![1.0; table.domains.len()],
        Prior::Runs => table
            .weights
            .mean_axis(ndarray::Axis(0))
            .map(|m| m.to_vec())
            .unwrap_or_default(),
        Prior::Tokens => tokens
            .expect("token counts are read for --prior tokens")
            .iter()
            .map(|&t| t as f64)
            .collect(),
    };
    prior_from_masses(&masses).context(Usage("the search prior".into()))
}
