//! The training stages: `train` (a run on the shards with a mixture schedule) and `distill` (a
//! student trained towards a finished teacher run), each a typed spec and one call.

use std::path::{Path, PathBuf};

use anyhow::Context;
use mixlab_artefacts::eval::DomainLoss;
use mixlab_artefacts::mixture::read_mixture;
use mixlab_mixer::schedule::MixtureSchedule;
use mixlab_trainer::config::{ModelConfig, Preset};
use mixlab_trainer::data::Corpus;
use mixlab_trainer::downstream::distill::{DistillSettings, Distillation};
use mixlab_trainer::engine::objective::CrossEntropy;
use mixlab_trainer::inference::Inference;

use crate::Usage;
use crate::config::LoadedConfig;
use crate::corpus::open_corpus;
use crate::run_dir::{DistillSource, InitWeights, ResolvedRun, RunDir};
use crate::training::run_training;
use crate::workspace::Workspace;

/// A training run: the configuration file with its overrides, the mixture and where it goes.
#[derive(Debug, Clone)]
pub struct TrainSpec {
    /// `datasets.toml` (its `[model]` and `[train]`).
    pub config: PathBuf,
    /// A mixture schedule; `None`: uniform over the shards' domains.
    pub mixture: Option<PathBuf>,
    /// The run directory, relative to the workspace.
    pub run: PathBuf,
    /// Overrides `[model].preset`.
    pub preset: Option<Preset>,
    /// Overrides `[train].steps`.
    pub steps: Option<u64>,
    /// Overrides `[train].seed`.
    pub seed: Option<u64>,
    /// A finished run (relative to the workspace) whose newest weights start this one.
    pub init_from: Option<PathBuf>,
}

/// A student trained towards a finished teacher run.
#[derive(Debug, Clone)]
pub struct DistillSpec {
    /// The teacher's run directory, relative to the workspace.
    pub teacher: PathBuf,
    /// The KL term's weight and temperature.
    pub settings: DistillSettings,
    /// The student's run.
    pub student: TrainSpec,
}

/// Trains (or resumes) the run `spec` describes; its final evaluation, or `None` when it had
/// already finished with the same inputs.
///
/// # Errors
/// A bad configuration, mixture or `init_from` run ([`Usage`]), unreadable shards, a run
/// directory holding another run, and training failures.
pub fn train(workspace: &Workspace, spec: &TrainSpec) -> anyhow::Result<Option<Vec<DomainLoss>>> {
    let (resolved, corpus) = resolve(workspace, spec)?;
    let run_dir = RunDir::new(workspace.path(&spec.run));
    run_training(&run_dir, &resolved, &corpus, &CrossEntropy, workspace.quiet)
}

/// Distils (or resumes) the student run `spec` describes, as [`train`] does.
///
/// # Errors
/// As [`train`], and a teacher that is unfinished or trained with another tokenizer.
pub fn distill(
    workspace: &Workspace,
    spec: &DistillSpec,
) -> anyhow::Result<Option<Vec<DomainLoss>>> {
    spec.settings
        .validate()
        .context(Usage("distillation settings".into()))?;
    let (resolved, corpus) = resolve(workspace, &spec.student)?;
    let teacher_dir = RunDir::new(workspace.path(&spec.teacher));
    let teacher_run =
        teacher_dir.read_finished(&format!("--teacher {}", spec.teacher.display()))?;
    if teacher_run.tokenizer_sha256 != resolved.tokenizer_sha256 {
        anyhow::bail!(Usage(format!(
            "--teacher {}: trained with another tokenizer (sha256 {}) than the shards' (sha256 {}); teacher and student must share one",
            teacher_dir.root.display(),
            teacher_run.tokenizer_sha256,
            resolved.tokenizer_sha256
        )));
    }
    let (teacher_step, weights) = teacher_dir.latest_model()?;
    let teacher = Inference::load(&teacher_run.model, &weights)?;
    let objective = Distillation::new(teacher, spec.settings, resolved.train.document_mask)?;
    let resolved = resolved.distilled(DistillSource {
        teacher: teacher_dir.root.clone(),
        teacher_run_hash: teacher_run.run_hash,
        teacher_step,
        settings: spec.settings,
    });
    let run_dir = RunDir::new(workspace.path(&spec.student.run));
    run_training(&run_dir, &resolved, &corpus, &objective, workspace.quiet)
}

/// The run `spec` describes on the workspace's shards (configuration, overrides, mixture), and
/// the corpus.
///
/// # Errors
/// As [`train`], before any training.
pub fn resolve(workspace: &Workspace, spec: &TrainSpec) -> anyhow::Result<(ResolvedRun, Corpus)> {
    let loaded = LoadedConfig::load(&spec.config)?;
    let shards = workspace.shards().open()?;
    let corpus = open_corpus(&shards, workspace.quiet)?;
    let mixture = match &spec.mixture {
        Some(path) => read_mixture(path).context(Usage(format!("--mixture {}", path.display())))?,
        None => {
            let names: Vec<&str> = corpus.domains.iter().map(String::as_str).collect();
            MixtureSchedule::uniform(&names)
        }
    };
    let mut train_config = loaded.config.train.clone();
    train_config.steps = spec.steps.unwrap_or(train_config.steps);
    train_config.seed = spec.seed.unwrap_or(train_config.seed);
    let model_config =
        loaded
            .config
            .model
            .resolve(spec.preset, corpus.vocab_size, train_config.seq_len)?;
    let resolved = ResolvedRun::new(&shards, model_config, train_config, mixture);
    let resolved = match &spec.init_from {
        Some(from) => {
            let weights = init_weights(workspace, from, &resolved)?;
            resolved.started_from(weights)
        }
        None => resolved,
    };
    Ok((resolved, corpus))
}

/// The newest checkpoint of the finished run `from`, checked to fit the run `resolved` describes:
/// the same tokenizer and the same parameter shapes.
fn init_weights(
    workspace: &Workspace,
    from: &Path,
    resolved: &ResolvedRun,
) -> anyhow::Result<InitWeights> {
    let what = format!("--init-from {}", from.display());
    let dir = RunDir::new(workspace.path(from));
    let source = dir.read_finished(&what)?;
    if source.tokenizer_sha256 != resolved.tokenizer_sha256 {
        anyhow::bail!(Usage(format!(
            "{what}: trained with another tokenizer (sha256 {}) than the shards' (sha256 {})",
            source.tokenizer_sha256, resolved.tokenizer_sha256
        )));
    }
    if let Some(field) = shape_difference(&source.model, &resolved.model) {
        anyhow::bail!(Usage(format!(
            "{what}: its model has another {field}; [model] and --preset must give the same parameter shapes"
        )));
    }
    let (step, path) = dir.latest_model()?;
    Ok(InitWeights {
        path,
        run_hash: source.run_hash,
        step,
    })
}

/// The first field that gives two models different parameter shapes, as `name = a (here b)`.
fn shape_difference(from: &ModelConfig, to: &ModelConfig) -> Option<String> {
    [
        ("vocab_size", from.vocab_size, to.vocab_size),
        ("d_model", from.d_model, to.d_model),
        ("n_layers", from.n_layers, to.n_layers),
        ("n_heads", from.n_heads, to.n_heads),
        ("n_kv_heads", from.n_kv_heads, to.n_kv_heads),
        ("ffn_hidden", from.ffn_hidden, to.ffn_hidden),
    ]
    .into_iter()
    .find(|(_, a, b)| a != b)
    .map(|(name, a, b)| format!("{name} = {a} (here {b})"))
}
