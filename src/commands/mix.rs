//! `mixlab mix`: turn a run table into a mixture (RegMix) or write a baseline mixture.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use mixlab_ingest::checksum::sha256_file;
use mixlab_mixer::bounds::Bounds;
use mixlab_mixer::regress::{cross_validate, fit};
use mixlab_mixer::schedule::{MixtureSchedule, Provenance};
use mixlab_mixer::search::{SearchParams, search};

use crate::cli::{GlobalArgs, MixArgs, MixMethod};
use crate::commands::regress::{CV_FOLDS, load_run_table};
use crate::commands::train::write_mixture;
use crate::config::LoadedConfig;
use crate::exit::UsageError;
use crate::mix_config::MixConfig;
use crate::table::Table;
use crate::tables::NumericTable;

/// Computes the mixture and writes `mixture.toml`.
pub fn run(global: &GlobalArgs, args: &MixArgs) -> anyhow::Result<()> {
    let loaded = match &args.config {
        Some(path) => Some(LoadedConfig::load(path)?),
        None => None,
    };
    let mix = loaded
        .as_ref()
        .map(|l| l.config.mix.clone())
        .unwrap_or_default();
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| global.out_root().join("mixture.toml"));
    let shard_tokens = shard_train_tokens(&global.out_root().join("shards"));
    let schedule = match args.method {
        MixMethod::Regmix => regmix(args, &mix, loaded.as_ref(), shard_tokens.as_ref())?,
        MixMethod::Uniform | MixMethod::Natural => {
            let tokens = shard_tokens.ok_or_else(|| {
                anyhow::anyhow!("no shards under --out: run `mixlab ingest` first")
            })?;
            let names: Vec<&str> = tokens.keys().map(String::as_str).collect();
            if args.method == MixMethod::Uniform {
                MixtureSchedule::uniform(&names)
            } else {
                let total: f64 = tokens.values().map(|&t| t as f64).sum();
                let weights = tokens
                    .iter()
                    .map(|(d, &t)| (d.clone(), t as f64 / total))
                    .collect();
                MixtureSchedule::single(
                    weights,
                    Provenance {
                        method: "natural".into(),
                        ..Provenance::default()
                    },
                )
            }
        }
    };
    write_mixture(&output, &schedule)?;
    let mut t = Table::new(&["domain", "weight"]);
    for (d, w) in &schedule.stage[0].weights {
        t.row(vec![d.clone(), format!("{w:.4}")]);
    }
    print!("{}", t.render());
    if let Some(loss) = schedule.provenance.predicted_objective {
        println!("predicted loss: {loss:.4}");
    }
    println!("wrote {}", output.display());
    Ok(())
}

fn regmix(
    args: &MixArgs,
    mix: &MixConfig,
    loaded: Option<&LoadedConfig>,
    shard_tokens: Option<&BTreeMap<String, u64>>,
) -> anyhow::Result<MixtureSchedule> {
    let t = args
        .table
        .as_ref()
        .ok_or_else(|| UsageError("--method regmix needs --runs, --losses and --target".into()))?;
    let table = load_run_table(t, &t.runs, &t.losses)?;
    let kind = args.model.kind();
    let cv = cross_validate(kind, &table, CV_FOLDS, mix.seed)?;
    let model = fit(kind, &table)?;
    let prior = prior(&args.prior, &table, shard_tokens)?;
    let bounds = bounds(&table.domains, mix, loaded, shard_tokens)?;
    let params = SearchParams {
        samples: args.samples.unwrap_or(mix.samples),
        top_k: args.top_k.unwrap_or(mix.top_k),
        strength: mix.strength,
        seed: args.seed.unwrap_or(mix.seed),
    };
    let started = Instant::now();
    let result = search(&prior, &bounds, &params, |w| model.predict_rows(w))?;
    tracing::info!(
        samples = params.samples,
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "searched the simplex"
    );
    let weights: BTreeMap<String, f64> = table
        .domains
        .iter()
        .cloned()
        .zip(result.weights.iter().copied())
        .collect();
    let mut inputs = BTreeMap::new();
    inputs.insert("runs".to_owned(), sha256_file(&t.runs)?);
    inputs.insert("losses".to_owned(), sha256_file(&t.losses)?);
    let settings = [
        ("model", kind.name().to_owned()),
        ("target", t.target.clone()),
        ("prior", args.prior.clone()),
        ("samples", params.samples.to_string()),
        ("top_k", params.top_k.to_string()),
        ("strength", params.strength.to_string()),
        ("seed", params.seed.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let fit_metrics = [
        ("cv_spearman", cv.spearman),
        ("cv_pearson", cv.pearson),
        ("cv_mse", cv.mse),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let provenance = Provenance {
        method: "regmix".into(),
        inputs,
        settings,
        predicted_objective: Some(model.predict(&result.weights)),
        fit: fit_metrics,
    };
    Ok(MixtureSchedule::single(weights, provenance))
}

/// Training tokens per domain from `<out>/shards/manifest.json`, if present.
fn shard_train_tokens(dir: &Path) -> Option<BTreeMap<String, u64>> {
    let manifest = mixlab_ingest::manifest::Manifest::read(dir).ok()?;
    Some(
        manifest
            .domains
            .iter()
            .map(|d| {
                let train = d
                    .splits
                    .get(&mixlab_ingest::shard::Split::Train)
                    .map_or(0, |c| c.tokens);
                (d.name.clone(), train)
            })
            .collect(),
    )
}

/// The Dirichlet centre: `tokens` (shard token shares), `runs` (mean of the run table), `uniform`,
/// or a CSV file of `domain,weight`.
fn prior(
    spec: &str,
    table: &mixlab_mixer::runs::RunTable,
    tokens: Option<&BTreeMap<String, u64>>,
) -> anyhow::Result<Vec<f64>> {
    let raw: Vec<f64> = match spec {
        "uniform" => vec![1.0; table.domains.len()],
        "runs" => table
            .weights
            .mean_axis(ndarray::Axis(0))
            .map(|m| m.to_vec())
            .unwrap_or_default(),
        "tokens" => {
            let tokens = tokens
                .ok_or_else(|| UsageError("--prior tokens needs shards under --out".into()))?;
            table
                .domains
                .iter()
                .map(|d| {
                    tokens.get(d).map(|&t| t as f64).ok_or_else(|| {
                        UsageError(format!(
                            "--prior tokens: domain {d:?} of the run table is not in the shards"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?
        }
        path => {
            let file = NumericTable::read(Path::new(path), "domain")?;
            let weight = file.column("weight")?;
            let at = file.align_to(&table.domains)?;
            at.iter().map(|&i| weight[i]).collect()
        }
    };
    // Domains absent from the prior still get a little mass so the Dirichlet is defined.
    let total: f64 = raw.iter().sum();
    if total <= 0.0 || raw.len() != table.domains.len() {
        anyhow::bail!(UsageError(format!(
            "prior {spec:?} gives no positive weight"
        )));
    }
    let floor = 1e-6;
    let floored: Vec<f64> = raw.iter().map(|w| (w / total).max(floor)).collect();
    let s: f64 = floored.iter().sum();
    Ok(floored.into_iter().map(|w| w / s).collect())
}

/// `[mix]` bounds plus epoch caps from the shards' token counts and `[train]`'s token budget.
fn bounds(
    domains: &[String],
    mix: &MixConfig,
    loaded: Option<&LoadedConfig>,
    tokens: Option<&BTreeMap<String, u64>>,
) -> anyhow::Result<Bounds> {
    let mut lower = vec![0.0; domains.len()];
    let mut upper = vec![1.0; domains.len()];
    for (name, (lo, hi)) in &mix.bounds {
        let i = domains.iter().position(|d| d == name).ok_or_else(|| {
            UsageError(format!(
                "[mix].bounds: unknown domain {name:?}; the run table has: {}",
                domains.join(", ")
            ))
        })?;
        (lower[i], upper[i]) = (*lo, *hi);
    }
    if let (Some(max_epochs), Some(loaded), Some(tokens)) = (mix.max_epochs, loaded, tokens) {
        let budget = (loaded.config.train.steps * loaded.config.train.tokens_per_step()) as f64;
        for (i, d) in domains.iter().enumerate() {
            if let Some(&t) = tokens.get(d)
                && budget > 0.0
            {
                upper[i] = upper[i].min(max_epochs * t as f64 / budget).max(lower[i]);
            }
        }
    }
    Bounds::new(lower, upper).map_err(|e| UsageError(format!("[mix]: {e}")).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_caps_bound_small_domains() {
        let text = "[tokenizer]\ntrain = { vocab_size = 300 }\n[[domain]]\nname = \"a\"\n[[domain.source]]\npath = \"x\"\nformat = \"jsonl\"\n[train]\nsteps = 10\nbatch_size = 1\nseq_len = 100\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let loaded = LoadedConfig::load(&path).unwrap();
        let tokens: BTreeMap<String, u64> =
            [("a".to_owned(), 100), ("b".to_owned(), 100_000)].into();
        let b = bounds(
            &["a".into(), "b".into()],
            &MixConfig::default(),
            Some(&loaded),
            Some(&tokens),
        )
        .unwrap();
        // Budget 1,000 tokens, 4 epochs of 100 tokens: domain a is capped at 0.4.
        let w = b.project(&[0.9, 0.1]);
        assert!((w[0] - 0.4).abs() < 1e-9, "{w:?}");
    }
}
