//! `mixlab merge`: specialists annealed from one run on domain-skewed mixtures, merged into one
//! model by a weighted average of their parameters.

use std::path::{Path, PathBuf};

use anyhow::Context;
use mixlab_artefacts::eval::{DomainLoss, read_eval};
use mixlab_artefacts::specialists::{Specialist as SpecialistSpec, Specialists, read_specialists};
use mixlab_ingest::manifest::ShardSet;
use mixlab_mixer::simplex::minimize_on_simplex;
use mixlab_stages::Usage;
use mixlab_stages::run_dir::{
    InitWeights, MergeSource, MergedSpecialist, ResolvedRun, RunDir, suffixed,
};
use mixlab_stages::training::{run_of_weights, run_training};
use mixlab_trainer::checkpoint::save_weights;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::eval::evaluate;
use mixlab_trainer::inference::Inference;
use mixlab_trainer::merge::Ingredients;
use mixlab_trainer::objective::CrossEntropy;

use crate::cli::{GlobalArgs, MergeArgs};
use crate::table::Table;

/// How the specialists are weighted.
#[derive(Debug, Clone, PartialEq)]
enum WeightChoice {
    Uniform,
    Search,
    Given(Vec<f64>),
}

/// A trained specialist.
struct Specialist {
    name: String,
    dir: RunDir,
    run_hash: String,
    step: u64,
    weights: PathBuf,
}

/// Trains the specialists of `--specialists` from `--base`, merges them and evaluates the merge.
pub fn run(global: &GlobalArgs, args: &MergeArgs) -> anyhow::Result<()> {
    let base_dir = RunDir::new(global.out_root().join(&args.base));
    let base = base_dir.read_finished(&format!("--base {}", args.base.display()))?;
    let spec = read_specialists(&args.specialists).context(Usage(format!(
        "--specialists {}",
        args.specialists.display()
    )))?;
    let choice = parse_weights(&args.weights, spec.specialist.len())?;
    let shards = base.open_shards(global.verification())?;
    let corpus = Corpus::load(&shards).context("reading the shards")?;
    let (step, path) = base_dir.latest_model()?;
    let from = InitWeights {
        path,
        run_hash: base.run_hash.clone(),
        step,
    };
    let trainer = SpecialistTrainer {
        global,
        args,
        base: &base,
        shards: &shards,
        corpus: &corpus,
        from,
    };
    let specialists = (spec.specialist.iter())
        .map(|s| trainer.train(&spec, s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let out = args.run.as_ref().map_or_else(
        || sibling(global, &args.base, "-merged"),
        |r| global.out_root().join(r),
    );
    let merged = Merged {
        dir: RunDir::new(out),
        base: &base,
        shards: &shards,
        base_step: step,
    };
    let shown = merged.write(
        global.quiet,
        args.search_iters,
        choice,
        &specialists,
        &corpus,
    )?;
    let mut columns = vec![("base".to_owned(), base_dir)];
    columns.extend(specialists.into_iter().map(|s| (s.name, s.dir)));
    columns.push(("merged".to_owned(), merged.dir));
    print!("{}", comparison_table(&columns)?);
    println!("merged ({}): {}", shown.method, shown.weights);
    Ok(())
}

/// Trains specialists from the base run's newest weights.
struct SpecialistTrainer<'a> {
    global: &'a GlobalArgs,
    args: &'a MergeArgs,
    base: &'a ResolvedRun,
    shards: &'a ShardSet,
    corpus: &'a Corpus,
    /// The base's newest weights.
    from: InitWeights,
}

impl SpecialistTrainer<'_> {
    /// Anneals one specialist on its mixture (resuming its run when one is there).
    fn train(&self, spec: &Specialists, s: &SpecialistSpec) -> anyhow::Result<Specialist> {
        let (base, args) = (self.base, self.args);
        let mixture = spec.mixture_of(s, &self.corpus.domains)?;
        let mut train = base.train.clone();
        (train.steps, train.warmup_steps, train.min_lr_ratio) = (spec.steps, 0, 0.0);
        train.lr = spec.lr.unwrap_or(base.train.lr / 10.0);
        train
            .validate()
            .map_err(|e| Usage(format!("{}: {e}", args.specialists.display())))?;
        let resolved = ResolvedRun::new(self.shards, base.model.clone(), train, mixture)
            .started_from(self.from.clone());
        let dir = RunDir::new(sibling(self.global, &args.base, &format!("-{}", s.name)));
        run_training(
            &dir,
            &resolved,
            self.corpus,
            &CrossEntropy,
            self.global.quiet,
        )?;
        let (step, weights) = dir.latest_model()?;
        Ok(Specialist {
            name: s.name.clone(),
            dir,
            run_hash: resolved.run_hash,
            step,
            weights,
        })
    }
}

/// The merged run: where it goes and the base it descends from.
struct Merged<'a> {
    dir: RunDir,
    base: &'a ResolvedRun,
    shards: &'a ShardSet,
    /// The base's step the specialists started from.
    base_step: u64,
}

/// How a merge was weighted, for printing.
struct MergeSummary {
    method: &'static str,
    /// `name weight` per specialist.
    weights: String,
}

impl Merged<'_> {
    /// Weighs the specialists (by `choice`), averages them and evaluates the average as a run.
    fn write(
        &self,
        quiet: bool,
        search_iters: u64,
        choice: WeightChoice,
        specialists: &[Specialist],
        corpus: &Corpus,
    ) -> anyhow::Result<MergeSummary> {
        let paths: Vec<PathBuf> = specialists.iter().map(|s| s.weights.clone()).collect();
        let models = Ingredients::load(&self.base.model, &paths)?;
        let (method, weights) = match choice {
            WeightChoice::Uniform => ("uniform", vec![1.0 / models.len() as f64; models.len()]),
            WeightChoice::Given(w) => ("given", scaled(&w)),
            WeightChoice::Search => {
                let found = earlier_search(&self.dir, specialists).map_or_else(
                    || search_weights(&models, self.base, corpus, search_iters),
                    Ok,
                )?;
                ("search", found)
            }
        };
        let merge = MergeSource {
            method: method.to_owned(),
            specialists: (specialists.iter().zip(&weights))
                .map(|(s, &weight)| MergedSpecialist {
                    name: s.name.clone(),
                    run_hash: s.run_hash.clone(),
                    step: s.step,
                    weight,
                })
                .collect(),
        };
        let init = InitWeights {
            path: self.dir.root.join("init.bpk"),
            run_hash: self.base.run_hash.clone(),
            step: self.base_step,
        };
        let mut train = self.base.train.clone();
        train.steps = 0;
        let resolved = ResolvedRun::new(
            self.shards,
            self.base.model.clone(),
            train,
            self.base.mixture.clone(),
        )
        .merged(init.clone(), merge);
        run_of_weights(&self.dir, &resolved, corpus, &init.path, quiet, || {
            save_weights(models.merged(&weights)?, &init.path)?;
            Ok(())
        })?;
        let shown: Vec<String> = (resolved.merge.iter())
            .flat_map(|m| &m.specialists)
            .map(|s| format!("{} {:.3}", s.name, s.weight))
            .collect();
        Ok(MergeSummary {
            method,
            weights: shown.join(", "),
        })
    }
}

/// `<out>/<base><suffix>`: a run beside the base run.
fn sibling(global: &GlobalArgs, base: &Path, suffix: &str) -> PathBuf {
    global.out_root().join(suffixed(base, suffix))
}

/// `--weights`: `uniform`, `search` or one number per specialist.
fn parse_weights(text: &str, specialists: usize) -> anyhow::Result<WeightChoice> {
    match text {
        "uniform" => return Ok(WeightChoice::Uniform),
        "search" => return Ok(WeightChoice::Search),
        _ => {}
    }
    let bad = || {
        Usage(format!(
            "--weights {text}: expected uniform, search, or {specialists} numbers ≥ 0 separated by commas (one per specialist)"
        ))
    };
    let weights: Vec<f64> = text
        .split(',')
        .map(|w| w.trim().parse::<f64>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let valid =
        weights.iter().all(|w| w.is_finite() && *w >= 0.0) && weights.iter().sum::<f64>() > 0.0;
    if weights.len() != specialists || !valid {
        return Err(bad().into());
    }
    Ok(WeightChoice::Given(weights))
}

fn scaled(weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

/// The weights an earlier `--weights search` found for the same specialists, when the merged
/// run finished (so a rerun does not search again).
fn earlier_search(run_dir: &RunDir, specialists: &[Specialist]) -> Option<Vec<f64>> {
    run_dir.finished_hash()?;
    let merge = run_dir.read_config().ok()?.merge?;
    let same = merge.method == "search"
        && merge.specialists.len() == specialists.len()
        && merge
            .specialists
            .iter()
            .zip(specialists)
            .all(|(m, s)| (&m.run_hash, m.step) == (&s.run_hash, s.step));
    same.then(|| merge.specialists.iter().map(|m| m.weight).collect())
}

/// The simplex weights minimising the merged model's mean validation loss over the domains.
fn search_weights(
    models: &Ingredients,
    base: &ResolvedRun,
    corpus: &Corpus,
    iters: u64,
) -> anyhow::Result<Vec<f64>> {
    // The search needs a number for every point; a merge that fails is kept and reported after it.
    let failure = std::cell::RefCell::new(None);
    let mean_valid_loss = |weights: &[f64]| -> f64 {
        let merged = match models.merged(weights) {
            Ok(merged) => merged,
            Err(e) => {
                failure.borrow_mut().get_or_insert((weights.to_vec(), e));
                return f64::INFINITY;
            }
        };
        let inference = Inference::of_trained(&merged, &base.model);
        let losses = evaluate(&inference, &base.train, "valid", &corpus.valid, corpus.eos);
        let loss = losses.iter().map(|l| l.loss).sum::<f64>() / losses.len().max(1) as f64;
        tracing::info!(?weights, loss, "merge weights tried");
        loss
    };
    let best = minimize_on_simplex(models.len(), mean_valid_loss, iters)
        .map_err(|e| anyhow::anyhow!("searching the merge weights: {e}"))?;
    if let Some((weights, e)) = failure.into_inner() {
        return Err(anyhow::Error::new(e).context(format!("merging with weights {weights:?}")));
    }
    tracing::info!(
        weights = ?best.weights,
        loss = best.cost,
        evaluations = best.evaluations,
        "merge weights found"
    );
    Ok(best.weights)
}

/// Each run's final loss per domain (valid split) and the means of both splits, one column per run.
fn comparison_table(columns: &[(String, RunDir)]) -> anyhow::Result<String> {
    let evals: Vec<Vec<DomainLoss>> = columns
        .iter()
        .map(|(_, dir)| read_eval(&dir.paths().eval))
        .collect::<Result<_, _>>()?;
    let mut header = vec!["valid loss"];
    header.extend(columns.iter().map(|(name, _)| name.as_str()));
    let mut table = Table::new(&header);
    let domains: Vec<&str> = evals[0]
        .iter()
        .filter(|l| l.split == "valid")
        .map(|l| l.domain.as_str())
        .collect();
    let cell = |eval: &[DomainLoss], split: &str, domain: &str| {
        eval.iter()
            .find(|l| l.split == split && l.domain == domain)
            .map_or("-".to_owned(), |l| format!("{:.4}", l.loss))
    };
    for domain in &domains {
        let mut row = vec![(*domain).to_owned()];
        row.extend(evals.iter().map(|e| cell(e, "valid", domain)));
        table.row(row);
    }
    for split in ["valid", "probe"] {
        let mut row = vec![format!("mean ({split})")];
        row.extend(evals.iter().map(|e| {
            let losses: Vec<f64> = e
                .iter()
                .filter(|l| l.split == split)
                .map(|l| l.loss)
                .collect();
            format!(
                "{:.4}",
                losses.iter().sum::<f64>() / losses.len().max(1) as f64
            )
        }));
        table.row(row);
    }
    Ok(table.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_as_a_method_or_one_number_per_specialist() {
        assert_eq!(parse_weights("uniform", 3).unwrap(), WeightChoice::Uniform);
        assert_eq!(parse_weights("search", 3).unwrap(), WeightChoice::Search);
        assert_eq!(
            parse_weights("1, 2,1", 3).unwrap(),
            WeightChoice::Given(vec![1.0, 2.0, 1.0])
        );
        for bad in ["1,2", "1,x,2", "-1,1,1", "0,0,0", "nan,1,1"] {
            let err = parse_weights(bad, 3).unwrap_err().to_string();
            assert!(
                err.contains("--weights") && err.contains("3 numbers"),
                "{err}"
            );
        }
    }
}
