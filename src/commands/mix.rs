//! `mixlab mix`: turn a run table into a mixture (RegMix) or write a baseline mixture.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use clap::ValueEnum;
use mixlab_artefacts::mixture::{read_mixture, write_mixture};
use mixlab_artefacts::run_table::{NumericTable, RunTableFiles};
use mixlab_artefacts::utilities::{joint_utilities, read_utilities};
use mixlab_ingest::checksum::sha256_file;
use mixlab_ingest::shard::Split;
use mixlab_mixer::baselines::{epoch_caps, natural, uniform, unimax};
use mixlab_mixer::bounds::Bounds;
use mixlab_mixer::config::{MixConfig, stage_windows};
use mixlab_mixer::regmix::recommend;
use mixlab_mixer::runs::RunTable;
use mixlab_mixer::schedule::{MixtureSchedule, Provenance, Stage};
use mixlab_mixer::search::{SearchParams, prior_from_masses};
use mixlab_mixer::staged::{JointUtilities, expected_utility, staged_weights};
use mixlab_mixer::utility::{proportional, utilimax};
use mixlab_stages::Usage;
use mixlab_stages::arms::SdmObjective;
use mixlab_stages::config::LoadedConfig;
use mixlab_stages::workspace::ShardsDir;

use crate::cli::{GlobalArgs, MixArgs, MixMethod, PriorArg};
use crate::table::Table;

/// Computes the mixture and writes `mixture.toml`.
pub fn run(global: &GlobalArgs, args: &MixArgs) -> anyhow::Result<()> {
    let loaded = args.config.as_deref().map(LoadedConfig::load).transpose()?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| global.out_root().join("mixture.toml"));
    let shards = global.shards();
    let schedule = match args.method {
        MixMethod::Regmix => regmix(args, loaded.as_ref(), &shards)?,
        MixMethod::Sdm | MixMethod::Own => sdm(args, loaded.as_ref(), global)?,
        MixMethod::Doremi => doremi(args, global, &shards)?,
        method => baseline(method, loaded.as_ref(), &shards)?,
    };
    write_mixture(&output, &schedule)?;
    let mut header = vec!["domain"];
    match schedule.stage.as_slice() {
        [_] => header.push("weight"),
        stages => header.extend(stages.iter().map(|s| s.name.as_str())),
    }
    let mut t = Table::new(&header);
    for d in schedule.stage[0].weights.keys() {
        let mut row = vec![d.clone()];
        row.extend(
            schedule
                .stage
                .iter()
                .map(|s| format!("{:.4}", s.weights[d])),
        );
        t.row(row);
    }
    print!("{}", t.render());
    match (args.method, schedule.provenance.predicted_objective) {
        (MixMethod::Sdm | MixMethod::Own, Some(u)) => {
            println!("joint utility of the mixture: {u:+.4e}")
        }
        (_, Some(loss)) => println!("predicted loss: {loss:.4}"),
        (_, None) => {}
    }
    println!("wrote {}", output.display());
    Ok(())
}

/// Training tokens per domain of the verified shards, in manifest order.
fn shard_tokens(shards: &ShardsDir) -> anyhow::Result<Vec<(String, u64)>> {
    let shards = shards
        .open()
        .context("the mixture needs the shards' token counts")?;
    Ok(shards.manifest().split_tokens(Split::Train))
}

/// The token budget of `[train]`: steps × tokens per step, refusing a product that overflows.
fn train_budget(loaded: &LoadedConfig) -> anyhow::Result<u64> {
    let train = &loaded.config.train;
    train
        .steps
        .checked_mul(train.tokens_per_step())
        .ok_or_else(|| {
            anyhow::anyhow!(Usage(format!(
                "{}: [train] steps × tokens per step overflows",
                loaded.path.display()
            )))
        })
}

fn baseline(
    method: MixMethod,
    loaded: Option<&LoadedConfig>,
    shards: &ShardsDir,
) -> anyhow::Result<MixtureSchedule> {
    let (domains, tokens): (Vec<String>, Vec<u64>) = shard_tokens(shards)?.into_iter().unzip();
    let (weights, name) = match method {
        MixMethod::Uniform => (uniform(domains.len()), "uniform"),
        MixMethod::Natural => (natural(&tokens)?, "natural"),
        MixMethod::Regmix | MixMethod::Sdm | MixMethod::Doremi | MixMethod::Own => {
            unreachable!("regmix, sdm, own and doremi are not baselines; `run` dispatches them")
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

fn regmix(
    args: &MixArgs,
    loaded: Option<&LoadedConfig>,
    shards: &ShardsDir,
) -> anyhow::Result<MixtureSchedule> {
    let (Some(runs), Some(losses), Some(target)) = (&args.runs, &args.losses, &args.target) else {
        anyhow::bail!(Usage(
            "--method regmix needs --runs, --losses and --target".into()
        ));
    };
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
    let prior_needs_tokens = args.prior_file.is_none() && args.prior == PriorArg::Tokens;
    let tokens = (caps_apply || prior_needs_tokens)
        .then(|| tokens_of(&table.domains, shards))
        .transpose()?;
    let prior = prior(args, &table, tokens.as_deref())?;
    let bounds = bounds(&table.domains, &mix, loaded, tokens.as_deref())?;
    let started = Instant::now();
    let kind = args.model.kind();
    let found = recommend(&table, kind, &prior, &bounds, &params)?;
    tracing::info!(
        samples = params.samples,
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "searched the simplex"
    );
    let mut inputs = BTreeMap::new();
    inputs.insert("runs".to_owned(), sha256_file(runs)?);
    inputs.insert("losses".to_owned(), sha256_file(losses)?);
    let prior_name = match &args.prior_file {
        Some(path) => path.display().to_string(),
        None => args
            .prior
            .to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_owned()),
    };
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
fn prior(args: &MixArgs, table: &RunTable, tokens: Option<&[u64]>) -> anyhow::Result<Vec<f64>> {
    let masses: Vec<f64> = if let Some(path) = &args.prior_file {
        let file = NumericTable::read(path, "domain")?;
        let weight = file.column("weight", path)?;
        let rows = file.align_to(&table.domains, path)?;
        rows.iter().map(|&i| weight[i]).collect()
    } else {
        match args.prior {
            PriorArg::Uniform => vec![1.0; table.domains.len()],
            PriorArg::Runs => table
                .weights
                .mean_axis(ndarray::Axis(0))
                .map(|m| m.to_vec())
                .unwrap_or_default(),
            PriorArg::Tokens => tokens
                .expect("token counts are read for --prior tokens")
                .iter()
                .map(|&t| t as f64)
                .collect(),
        }
    };
    prior_from_masses(&masses).context(Usage("the search prior".into()))
}

/// Training tokens of `domains` in the shards; every domain must be there.
fn tokens_of(domains: &[String], shards: &ShardsDir) -> anyhow::Result<Vec<u64>> {
    let tokens: BTreeMap<String, u64> = shard_tokens(shards)?.into_iter().collect();
    domains
        .iter()
        .map(|d| {
            tokens.get(d).copied().ok_or_else(|| {
                anyhow::anyhow!(Usage(format!(
                    "domain {d:?} of the run table is not in the shards under {} (needed for --prior tokens and [mix].max_epochs)",
                    shards.path.display()
                )))
            })
        })
        .collect()
}

/// `[mix]` bounds plus, with `--config`, epoch caps from the shards' token counts and `[train]`'s
/// budget (`tokens` are then always given: caps are never dropped silently).
fn bounds(
    domains: &[String],
    mix: &MixConfig,
    loaded: Option<&LoadedConfig>,
    tokens: Option<&[u64]>,
) -> anyhow::Result<Bounds> {
    let caps = match (loaded, mix.max_epochs) {
        (Some(loaded), Some(max_epochs)) => {
            let tokens = tokens.expect("token counts are read when epoch caps apply");
            Some(epoch_caps(tokens, train_budget(loaded)?, max_epochs))
        }
        _ => None,
    };
    Bounds::from_config(domains, mix, caps.as_deref()).context(Usage("[mix]".into()))
}

/// DoReMi's averaged weights from `simulate --method doremi`, over exactly the shards' domains.
fn doremi(
    args: &MixArgs,
    global: &GlobalArgs,
    shards: &ShardsDir,
) -> anyhow::Result<MixtureSchedule> {
    let path = args
        .doremi
        .clone()
        .unwrap_or_else(|| global.out_root().join("simulate").join("doremi.toml"));
    let mut schedule = read_mixture(&path).context(Usage(format!(
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
        .insert("doremi_weights".into(), sha256_file(&path)?);
    Ok(schedule)
}

/// `--method sdm`: the joint utilities of `mixlab simulate` turned into weights by the chosen
/// objective, within the `[mix]` bounds and epoch caps of `--config`. With `[[mix.stage]]`, one
/// stage per entry, each from the utilities of the proxy's checkpoints in the same part of its run.
fn sdm(
    args: &MixArgs,
    loaded: Option<&LoadedConfig>,
    global: &GlobalArgs,
) -> anyhow::Result<MixtureSchedule> {
    let path = args
        .utilities
        .clone()
        .unwrap_or_else(|| global.out_root().join("simulate").join("utilities.parquet"));
    // The own-domain control has no utilities file: one utility per domain, no checkpoints.
    let (joint, method, inputs) = match args.method {
        MixMethod::Own => {
            let joint = own_domain_utilities(loaded, &global.shards())?;
            (joint, "own", BTreeMap::new())
        }
        _ => {
            let rows = read_utilities(&path).context(Usage(format!(
                "--utilities {} (run `mixlab simulate` first)",
                path.display()
            )))?;
            let joint = joint_utilities(&rows);
            if joint.domains.is_empty() {
                anyhow::bail!(Usage(format!("{}: no joint utilities", path.display())));
            }
            let inputs = [("utilities".to_owned(), sha256_file(&path)?)].into();
            (joint, "sdm", inputs)
        }
    };
    let mix = loaded.map(|l| l.config.mix.clone()).unwrap_or_default();
    let tokens = match (loaded, mix.max_epochs) {
        (Some(_), Some(_)) => Some(tokens_of(&joint.domains, &global.shards())?),
        _ => None,
    };
    let bounds = bounds(&joint.domains, &mix, loaded, tokens.as_deref())?;
    let optimize = |utilities: &[f64]| {
        let weights = match args.objective {
            SdmObjective::Utilimax => utilimax(utilities, args.temperature, &bounds),
            SdmObjective::Proportional => proportional(utilities, args.floor, &bounds),
        };
        weights.context(Usage(match args.method {
            MixMethod::Own => "--method own".to_owned(),
            _ => format!("--method sdm on {}", path.display()),
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
        Some(loaded) => staged(&mix, train_budget(loaded)?, &joint, &path, optimize)?,
    };
    let setting = match args.objective {
        SdmObjective::Utilimax => ("temperature", args.temperature),
        SdmObjective::Proportional => ("floor", args.floor),
    };
    Ok(MixtureSchedule {
        stage: stages,
        provenance: Provenance {
            method: format!("{method}-{}", args.objective.name()),
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
    path: &Path,
    optimize: impl Fn(&[f64]) -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<(Vec<Stage>, f64)> {
    let budgets: Vec<Option<u64>> = mix.stage.iter().map(|s| s.tokens).collect();
    let windows = stage_windows(&budgets, budget).context(Usage("--method sdm".into()))?;
    if !joint.has_every_checkpoint() {
        anyhow::bail!(Usage(format!(
            "{}: no per-checkpoint joint utilities for [[mix.stage]]; run `mixlab simulate` again with this mixlab",
            path.display()
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
