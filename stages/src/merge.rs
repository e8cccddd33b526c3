//! The `merge` stage: specialists annealed from one run on domain-skewed mixtures, merged into one
//! model by a weighted average of their parameters, and evaluated as a run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use mixlab_artefacts::specialists::{Specialist as SpecialistSpec, Specialists, read_specialists};
use mixlab_artefacts::split::Split;
use mixlab_ingest::manifest::ShardSet;
use mixlab_mixer::simplex::minimize_on_simplex;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::downstream::merge::Ingredients;
use mixlab_trainer::engine::checkpoint::save_weights;
use mixlab_trainer::engine::objective::CrossEntropy;
use mixlab_trainer::inference::Inference;
use mixlab_trainer::inference::eval::evaluate;
use serde::{Deserialize, Serialize};

use crate::Usage;
use crate::corpus::open_corpus;
use crate::run_dir::{InitWeights, MergeSource, MergedSpecialist, ResolvedRun, RunDir, suffixed};
use crate::training::{run_of_weights, run_training};
use crate::workspace::Workspace;

/// How the specialists are weighted: `uniform`, `search` (the weights that minimise the merged
/// model's mean validation loss) or given, one per specialist in file order (scaled to sum to 1).
///
/// # Example
/// ```
/// use mixlab_stages::merge::MergeWeights;
///
/// assert_eq!("search".parse::<MergeWeights>()?, MergeWeights::Search);
/// assert_eq!("1, 3".parse::<MergeWeights>()?, MergeWeights::Given(vec![1.0, 3.0]));
/// assert!("-1,1".parse::<MergeWeights>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MergeWeights {
    /// Equal weights.
    Uniform,
    /// Searched on the simplex.
    Search,
    /// Given, one per specialist.
    Given(Vec<f64>),
}

impl FromStr for MergeWeights {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "uniform" => return Ok(Self::Uniform),
            "search" => return Ok(Self::Search),
            _ => {}
        }
        let bad = || {
            format!(
                "{text:?}: expected uniform, search, or numbers ≥ 0 separated by commas (one per specialist)"
            )
        };
        let weights: Vec<f64> = (text.split(','))
            .map(|w| w.trim().parse::<f64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let valid =
            weights.iter().all(|w| w.is_finite() && *w >= 0.0) && weights.iter().sum::<f64>() > 0.0;
        if !valid {
            return Err(bad());
        }
        Ok(Self::Given(weights))
    }
}

impl TryFrom<String> for MergeWeights {
    type Error = String;

    /// As [`FromStr`], naming the configuration key (`[run.merge].weights`) in the error.
    fn try_from(text: String) -> Result<Self, String> {
        text.parse().map_err(|e| format!("merge.weights = {e}"))
    }
}

impl fmt::Display for MergeWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uniform => f.write_str("uniform"),
            Self::Search => f.write_str("search"),
            Self::Given(w) => {
                let shown: Vec<String> = w.iter().map(f64::to_string).collect();
                f.write_str(&shown.join(","))
            }
        }
    }
}

impl From<MergeWeights> for String {
    fn from(weights: MergeWeights) -> Self {
        weights.to_string()
    }
}

/// Nelder-Mead iterations of [`MergeWeights::Search`] unless told otherwise.
pub const DEFAULT_SEARCH_ITERS: u64 = 30;

/// Specialists trained from a finished run and merged.
#[derive(Debug, Clone)]
pub struct MergeSpec {
    /// The finished run the specialists start from, relative to the workspace.
    pub base: PathBuf,
    /// The specialists file.
    pub specialists: PathBuf,
    /// How they are weighted.
    pub weights: MergeWeights,
    /// Nelder-Mead iterations of [`MergeWeights::Search`].
    pub search_iters: u64,
    /// The merged run, relative to the workspace; `None`: `<base>-merged`.
    pub run: Option<PathBuf>,
}

/// What a merge wrote.
#[derive(Debug)]
pub struct MergeOutcome {
    /// `base`, each specialist by name, then `merged`, with its run directory.
    pub runs: Vec<(String, RunDir)>,
    /// `uniform`, `given` or `search`.
    pub method: &'static str,
    /// Each specialist's weight in the merge.
    pub weights: Vec<(String, f64)>,
}

/// Trains the specialists of `spec` from its base run (resuming any that were), merges them and
/// evaluates the merge as a run.
///
/// # Errors
/// An unfinished base run, a bad specialists file or weights ([`Usage`]), and training failures.
pub fn merge(workspace: &Workspace, spec: &MergeSpec) -> anyhow::Result<MergeOutcome> {
    let base_dir = RunDir::new(workspace.path(&spec.base));
    let base = base_dir.read_finished(&format!("--base {}", spec.base.display()))?;
    let file = read_specialists(&spec.specialists).context(Usage(format!(
        "--specialists {}",
        spec.specialists.display()
    )))?;
    if let MergeWeights::Given(w) = &spec.weights
        && w.len() != file.specialist.len()
    {
        anyhow::bail!(Usage(format!(
            "--weights {}: expected {} numbers (one per specialist), got {}",
            spec.weights,
            file.specialist.len(),
            w.len()
        )));
    }
    let shards = base.open_shards(workspace.verification)?;
    let corpus = open_corpus(&shards, workspace.quiet)?;
    let (step, path) = base_dir.latest_model()?;
    let trainer = SpecialistTrainer {
        workspace,
        spec,
        base: &base,
        shards: &shards,
        corpus: &corpus,
        from: InitWeights {
            path,
            run_hash: base.run_hash.clone(),
            step,
        },
    };
    let specialists = (file.specialist.iter())
        .map(|s| trainer.train(&file, s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let out = spec.run.as_ref().map_or_else(
        || workspace.path(&suffixed(&spec.base, "-merged")),
        |r| workspace.path(r),
    );
    let merged = Merged {
        dir: RunDir::new(out),
        base: &base,
        shards: &shards,
        base_step: step,
    };
    let (method, weights) = merged.write(workspace.quiet, spec, &specialists, &corpus)?;
    let mut runs = vec![("base".to_owned(), base_dir)];
    let names: Vec<String> = specialists.iter().map(|s| s.name.clone()).collect();
    runs.extend(specialists.into_iter().map(|s| (s.name, s.dir)));
    runs.push(("merged".to_owned(), merged.dir));
    Ok(MergeOutcome {
        runs,
        method,
        weights: names.into_iter().zip(weights).collect(),
    })
}

/// A trained specialist.
struct Specialist {
    name: String,
    dir: RunDir,
    run_hash: String,
    step: u64,
    weights: PathBuf,
}

/// Trains specialists from the base run's newest weights.
struct SpecialistTrainer<'a> {
    workspace: &'a Workspace,
    spec: &'a MergeSpec,
    base: &'a ResolvedRun,
    shards: &'a ShardSet,
    corpus: &'a Corpus,
    /// The base's newest weights.
    from: InitWeights,
}

impl SpecialistTrainer<'_> {
    /// Anneals one specialist on its mixture (resuming its run when one is there).
    fn train(&self, file: &Specialists, s: &SpecialistSpec) -> anyhow::Result<Specialist> {
        let (base, spec) = (self.base, self.spec);
        let mixture = file.mixture_of(s, &self.corpus.domains)?;
        let mut train = base.train.clone();
        (train.steps, train.warmup_steps, train.min_lr_ratio) = (file.steps, 0, 0.0);
        train.lr = file.lr.unwrap_or(base.train.lr / 10.0);
        train
            .validate()
            .context(Usage(spec.specialists.display().to_string()))?;
        let resolved = ResolvedRun::new(self.shards, base.model.clone(), train, mixture)
            .started_from(self.from.clone());
        let dir = RunDir::new(sibling(self.workspace, &spec.base, &format!("-{}", s.name)));
        run_training(
            &dir,
            &resolved,
            self.corpus,
            &CrossEntropy,
            self.workspace.quiet,
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

impl Merged<'_> {
    /// Weighs the specialists (as `spec` says), averages them and evaluates the average as a
    /// run; the method and the weights, in the specialists' order.
    fn write(
        &self,
        quiet: bool,
        spec: &MergeSpec,
        specialists: &[Specialist],
        corpus: &Corpus,
    ) -> anyhow::Result<(&'static str, Vec<f64>)> {
        let paths: Vec<PathBuf> = specialists.iter().map(|s| s.weights.clone()).collect();
        let models = Ingredients::load(&self.base.model, &paths)?;
        let (method, weights) = match &spec.weights {
            MergeWeights::Uniform => ("uniform", vec![1.0 / models.len() as f64; models.len()]),
            MergeWeights::Given(w) => ("given", scaled(w)),
            MergeWeights::Search => {
                let found = earlier_search(&self.dir, specialists).map_or_else(
                    || search_weights(&models, self.base, corpus, spec.search_iters),
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
        Ok((method, weights))
    }
}

/// `<out>/<base><suffix>`: a run beside the base run.
fn sibling(workspace: &Workspace, base: &Path, suffix: &str) -> PathBuf {
    workspace.path(&suffixed(base, suffix))
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
        let evaluated = evaluate(
            &inference,
            &base.train,
            Split::Valid,
            &corpus.valid,
            corpus.eos,
        );
        let losses = match evaluated {
            Ok(losses) => losses,
            Err(e) => {
                failure.borrow_mut().get_or_insert((weights.to_vec(), e));
                return f64::INFINITY;
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_as_a_method_or_numbers_and_print_back() {
        for text in ["uniform", "search", "1,2,1", "0.5,0,0.25"] {
            let weights: MergeWeights = text.parse().unwrap();
            assert_eq!(weights.to_string(), text);
        }
        assert_eq!(
            "1, 2,1".parse::<MergeWeights>().unwrap(),
            MergeWeights::Given(vec![1.0, 2.0, 1.0])
        );
        for bad in ["", "1,x,2", "-1,1,1", "0,0,0", "nan,1,1", "Search"] {
            let err = bad.parse::<MergeWeights>().unwrap_err();
            assert!(err.contains("expected uniform, search"), "{bad}: {err}");
        }
    }
}
