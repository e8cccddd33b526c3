//! The stages `mixlab run` runs after ingest, in order, each keyed by a hash of its inputs.
//!
//! A stage is a typed [`StageSpec`] (shown as the subcommand a user would type, so any one can be
//! run or debugged by hand) and a key: the SHA-256 of its arguments, the configuration sections it
//! reads and the keys of the stages it reads from (module `keys`). Changing one section changes the
//! keys of the stages that read it and of every stage after them, and of nothing before.
//! [`StageSpec::run`] runs a stage by calling the library.

mod keys;
mod run;
mod spec;

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use mixlab_ingest::checksum::sha256_hex;
use serde::{Deserialize, Serialize};

use crate::arms::{Arm, DistillStage, MixChoice, QuantizeStage};
use crate::config::LoadedConfig;
use crate::merge::MergeWeights;
use crate::run_dir::suffixed;
use crate::run_names::{merge_runs, quantize_runs};
use crate::simulate::SimulateMethod;
use keys::{NO_SECTIONS, Sections, stage_key};
pub use run::StageOutcome;
pub use spec::{CONFIG, ModelRun, OUT, StageSpec};

/// Where `mixlab run` writes its plan, relative to the output directory (the report reads it).
pub const PLAN_FILE: &str = "pipeline/plan.json";

/// The kinds of stage, in pipeline order (`--from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    /// Sources → shards.
    Ingest,
    /// The SDM simulation run (and DoReMi's proxy, for arms that use it).
    Simulate,
    /// Each arm's mixture.
    Mix,
    /// Each arm's training run per seed.
    Train,
    /// A student distilled from each trained run.
    Distill,
    /// Specialists annealed from the newest model, merged.
    Merge,
    /// int4 weights of the newest model.
    Quantize,
    /// The report over every arm.
    Report,
}

impl StageKind {
    /// Its name, as `--from` takes it and reports show it.
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Ingest => "ingest",
            StageKind::Simulate => "simulate",
            StageKind::Mix => "mix",
            StageKind::Train => "train",
            StageKind::Distill => "distill",
            StageKind::Merge => "merge",
            StageKind::Quantize => "quantize",
            StageKind::Report => "report",
        }
    }
}

/// One stage: what it does, its key and the run directories it writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// A name unique in the plan, such as `train/sdm-s1`.
    pub id: String,
    /// What it does.
    pub spec: StageSpec,
    /// The subcommand and arguments that run it by hand ([`StageSpec::args`]), for display and
    /// replay.
    pub args: Vec<String>,
    /// SHA-256 of everything that decides its result.
    pub key: String,
    /// Run directories it writes, relative to `--out`: removed before it runs with another key.
    pub runs: Vec<PathBuf>,
}

impl Stage {
    /// A stage reading the stages keyed `upstream` and the configuration `sections`.
    fn new(
        id: String,
        spec: StageSpec,
        upstream: &[&str],
        sections: &impl Serialize,
        runs: Vec<PathBuf>,
    ) -> Self {
        let args = spec.args();
        let key = stage_key(&args, upstream, sections);
        Self {
            id,
            spec,
            args,
            key,
            runs,
        }
    }

    /// Its kind.
    pub fn kind(&self) -> StageKind {
        self.spec.kind()
    }
}

/// What each arm's runs are, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmRuns {
    /// The arm.
    pub arm: Arm,
    /// Its mixture file, relative to `--out`.
    pub mixture: PathBuf,
    /// Per seed: the run of every model stage, in order (`train`, then `distill`, `merge`,
    /// `quantize` when configured), relative to `--out`.
    pub seeds: Vec<SeedRuns>,
}

/// The runs of one seed of an arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedRuns {
    /// The seed.
    pub seed: u64,
    /// `(stage, run)` in order; the last is the arm's final model.
    pub runs: Vec<(StageKind, PathBuf)>,
}

/// The stages after ingest, and each arm's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// In the order they run.
    pub stages: Vec<Stage>,
    /// Each arm's runs.
    pub arms: Vec<ArmRuns>,
    /// The `[simulate]` targets that are domains' probe splits, with their weights.
    #[serde(default)]
    pub targets: Vec<(String, f64)>,
}

impl Plan {
    /// The report's directory, relative to `--out`, when the plan has a report stage.
    pub fn report_dir(&self) -> Option<PathBuf> {
        self.stages.iter().find_map(|s| match &s.spec {
            StageSpec::Report { name } => Some(PathBuf::from("reports").join(name)),
            _ => None,
        })
    }
}

/// Plans every stage after ingest for `arms` on shards whose inputs hash is `shards_key`.
///
/// # Errors
/// An unreadable specialists file of a `merge` stage.
pub fn plan(loaded: &LoadedConfig, arms: &[Arm], shards_key: &str) -> anyhow::Result<Plan> {
    let sections = Sections::of(loaded);
    let mut stages = Vec::new();
    let mut simulate = |method: SimulateMethod| {
        let id = format!("simulate/{}", method.name());
        let spec = StageSpec::Simulate { method };
        let stage = Stage::new(id, spec, &[shards_key], &sections.simulate, vec![]);
        let key = stage.key.clone();
        stages.push(stage);
        key
    };
    let uses = |choice: MixChoice| arms.iter().any(|a| a.mix == choice);
    let sdm_key = uses(MixChoice::Sdm).then(|| simulate(SimulateMethod::Influence));
    let doremi_key = uses(MixChoice::Doremi).then(|| simulate(SimulateMethod::Doremi));
    let mut arm_runs = Vec::new();
    for arm in arms {
        let upstream = match arm.mix {
            MixChoice::Sdm => sdm_key.as_deref(),
            MixChoice::Doremi => doremi_key.as_deref(),
            _ => None,
        }
        .unwrap_or(shards_key);
        let mixture = PathBuf::from("mixtures").join(format!("{}.toml", arm.name));
        let mix = mix_stage(arm, &mixture, upstream, &sections);
        let mix_key = mix.key.clone();
        stages.push(mix);
        let mut seeds = Vec::new();
        for &seed in &arm.seeds {
            let (seed_stages, runs) =
                model_stages(loaded, arm, seed, &mixture, &mix_key, &sections)?;
            stages.extend(seed_stages);
            seeds.push(runs);
        }
        arm_runs.push(ArmRuns {
            arm: arm.clone(),
            mixture,
            seeds,
        });
    }
    stages.push(report_stage(loaded, &stages));
    let targets = (loaded.config.simulate.target.iter())
        .filter_map(|t| Some((t.probe()?.to_owned(), t.weight)))
        .collect();
    Ok(Plan {
        stages,
        arms: arm_runs,
        targets,
    })
}

/// The report over every arm, named after the configuration file; it reruns when any stage did.
fn report_stage(loaded: &LoadedConfig, stages: &[Stage]) -> Stage {
    let name = (loaded.path.file_stem())
        .map_or_else(|| "report".to_owned(), |s| s.to_string_lossy().into_owned());
    let keys: Vec<&str> = stages.iter().map(|s| s.key.as_str()).collect();
    let dir = PathBuf::from("reports").join(&name);
    let spec = StageSpec::Report { name };
    Stage::new("report".into(), spec, &keys, &NO_SECTIONS, vec![dir])
}

fn mix_stage(arm: &Arm, mixture: &Path, upstream: &str, sections: &Sections) -> Stage {
    let spec = StageSpec::Mix {
        method: arm.mix,
        objective: arm.objective,
        mixture: mixture.to_owned(),
    };
    let id = format!("mix/{}", arm.name);
    Stage::new(id, spec, &[upstream], &sections.mix, vec![])
}

/// The training run of `arm` at `seed`, then its optional distill, merge and quantize stages.
fn model_stages(
    loaded: &LoadedConfig,
    arm: &Arm,
    seed: u64,
    mixture: &Path,
    mix_key: &str,
    sections: &Sections,
) -> anyhow::Result<(Vec<Stage>, SeedRuns)> {
    let name = if arm.seeds.len() > 1 {
        format!("{}-s{seed}", arm.name)
    } else {
        arm.name.clone()
    };
    let mut chain = ModelChain {
        name,
        mixture: mixture.to_owned(),
        seed,
        stages: Vec::new(),
        runs: Vec::new(),
    };
    chain.train(mix_key, sections);
    if let Some(d) = &arm.distill {
        chain.distill(d, sections);
    }
    if let Some(m) = &arm.merge {
        chain.merge(&loaded.base_dir.join(&m.specialists), &m.weights)?;
    }
    if let Some(q) = &arm.quantize {
        chain.quantize(q);
    }
    let runs = SeedRuns {
        seed,
        runs: chain.runs,
    };
    Ok((chain.stages, runs))
}

/// The model stages of one arm and seed, built in order: each reads the newest run before it.
struct ModelChain {
    /// The arm's name, with the seed when it has several.
    name: String,
    /// The arm's mixture file.
    mixture: PathBuf,
    seed: u64,
    stages: Vec<Stage>,
    /// `(stage, run)` in order; the last is the newest model.
    runs: Vec<(StageKind, PathBuf)>,
}

impl ModelChain {
    fn newest(&self) -> PathBuf {
        self.runs.last().map(|r| r.1.clone()).unwrap_or_default()
    }

    fn newest_key(&self) -> String {
        self.stages
            .last()
            .map(|s| s.key.clone())
            .unwrap_or_default()
    }

    fn model_run(&self, run: PathBuf) -> ModelRun {
        ModelRun {
            mixture: self.mixture.clone(),
            run,
            seed: self.seed,
        }
    }

    /// Adds the stage `spec` reading `upstream` and `sections`, writing `runs` (the last the newest
    /// model).
    fn push(
        &mut self,
        spec: StageSpec,
        upstream: &[&str],
        sections: &impl Serialize,
        runs: Vec<PathBuf>,
    ) {
        let kind = spec.kind();
        let newest = runs.last().cloned().unwrap_or_default();
        let id = format!("{}/{}", kind.name(), self.name);
        self.stages
            .push(Stage::new(id, spec, upstream, sections, runs));
        self.runs.push((kind, newest));
    }

    fn train(&mut self, mix_key: &str, sections: &Sections) {
        let run = PathBuf::from("runs").join(&self.name);
        let spec = StageSpec::Train(self.model_run(run.clone()));
        self.push(spec, &[mix_key], &sections.train, vec![run]);
    }

    fn distill(&mut self, settings: &DistillStage, sections: &Sections) {
        let student = suffixed(&self.newest(), "-distilled");
        let spec = StageSpec::Distill {
            teacher: self.newest(),
            settings: settings.clone(),
            student: self.model_run(student.clone()),
        };
        let upstream = self.newest_key();
        self.push(spec, &[&upstream], &sections.train, vec![student]);
    }

    fn merge(&mut self, specialists: &Path, weights: &MergeWeights) -> anyhow::Result<()> {
        let written = merge_runs(&self.newest(), specialists)?;
        let text = fs_err::read_to_string(specialists)?;
        let spec = StageSpec::Merge {
            base: self.newest(),
            specialists: specialists.to_owned(),
            weights: weights.clone(),
        };
        let upstream = [self.newest_key(), sha256_hex(text.as_bytes())];
        let upstream: Vec<&str> = upstream.iter().map(String::as_str).collect();
        self.push(spec, &upstream, &NO_SECTIONS, written);
        Ok(())
    }

    fn quantize(&mut self, settings: &QuantizeStage) {
        let written = quantize_runs(&self.newest(), settings.qat_steps, false);
        let spec = StageSpec::Quantize {
            run: self.newest(),
            settings: settings.clone(),
        };
        let upstream = self.newest_key();
        self.push(spec, &[&upstream], &NO_SECTIONS, written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(dir: &Path, edit: (&str, &str)) -> LoadedConfig {
        let config = include_str!("../../../datasets.toml").replace(edit.0, edit.1);
        let path = dir.join("datasets.toml");
        std::fs::write(&path, config).unwrap();
        LoadedConfig::load(&path).unwrap()
    }

    fn keys(edit: (&str, &str)) -> Vec<(String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(dir.path(), edit);
        let plan = plan(&loaded, &loaded.arms().unwrap(), "shards").unwrap();
        plan.stages.into_iter().map(|s| (s.id, s.key)).collect()
    }

    /// The ids of the stages whose key differs after `edit`.
    fn changed(edit: (&str, &str)) -> Vec<String> {
        let (before, after) = (keys(("", "")), keys(edit));
        assert_eq!(before.len(), after.len());
        before
            .into_iter()
            .zip(after)
            .filter(|(b, a)| b.1 != a.1)
            .map(|(b, _)| b.0)
            .collect()
    }

    #[test]
    fn the_default_plan_runs_every_arm_and_seed_then_the_report() {
        let ids: Vec<String> = keys(("", "")).into_iter().map(|k| k.0).collect();
        let expected = [
            "simulate/influence",
            "mix/sdm",
            "train/sdm-s0",
            "quantize/sdm-s0",
            "train/sdm-s1",
            "quantize/sdm-s1",
            "mix/uniform",
            "train/uniform-s0",
            "quantize/uniform-s0",
            "train/uniform-s1",
            "quantize/uniform-s1",
            "report",
        ];
        assert_eq!(ids, expected);
    }

    #[test]
    fn a_change_touches_the_stages_that_read_it_and_those_after_them() {
        let all: Vec<String> = keys(("", "")).into_iter().map(|k| k.0).collect();
        // [mix]: both mixtures and everything after them, not the simulation.
        assert_eq!(changed(("max_epochs = 4.0", "max_epochs = 3.0")), all[1..]);
        // [simulate]: the simulation, the SDM arm and the report; the uniform arm stays.
        let sdm: Vec<&str> = vec![
            "simulate/influence",
            "mix/sdm",
            "train/sdm-s0",
            "quantize/sdm-s0",
            "train/sdm-s1",
            "quantize/sdm-s1",
            "report",
        ];
        assert_eq!(changed(("target_docs = 16", "target_docs = 8")), sdm);
        // Bookkeeping of [train] changes nothing.
        assert!(changed(("eval_every = 100", "eval_every = 50")).is_empty());
        // [train].steps: the mixtures (their epoch caps use the budget) and after, not the proxy.
        assert_eq!(
            changed(("steps = 300\nbatch_size", "steps = 200\nbatch_size")),
            all[1..]
        );
    }

    /// plan.json holds each stage's typed spec: it reads back as the same plan, and every stage's
    /// arguments are its spec's.
    #[test]
    fn a_plan_reads_back_from_its_json() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(dir.path(), ("", ""));
        let plan = plan(&loaded, &loaded.arms().unwrap(), "shards").unwrap();
        let json = serde_json::to_string_pretty(&plan).unwrap();
        assert!(json.contains("\"stage\": \"quantize\""), "{json}");
        let back: Plan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
        assert!(plan.stages.iter().all(|s| s.args == s.spec.args()));
        assert_eq!(plan.report_dir(), Some(PathBuf::from("reports/datasets")));
    }

    /// The keys of a plan with every model stage, pinned: a refactoring that changes a run's key
    /// (and so reruns finished work after an upgrade) fails here and has to say so. The merge
    /// stage's arguments hold the specialists file's absolute path (here a temporary directory),
    /// so merge and the stages after it are left out.
    #[test]
    fn stage_keys_are_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let specialists = "steps = 5\n\n[[specialist]]\nname = \"a\"\nweights = { prose = 1.0 }\n";
        std::fs::write(dir.path().join("specialists.toml"), specialists).unwrap();
        let run = "[run]\nseeds = [0, 1]\ndistill = { preset = \"tiny\", steps = 7 }\n\
                   merge = { specialists = \"specialists.toml\" }\nquantize = { group_size = 32, qat_steps = 3 }\n";
        let loaded = loaded(
            dir.path(),
            (
                "[run]\nseeds = [0, 1]\nquantize = { group_size = 32 }\n",
                run,
            ),
        );
        let plan = plan(&loaded, &loaded.arms().unwrap(), "shards").unwrap();
        let ids: Vec<&str> = plan.stages.iter().map(|s| s.id.as_str()).collect();
        assert!(
            ids.contains(&"merge/sdm-s1") && ids.contains(&"distill/uniform-s0"),
            "{ids:?}"
        );
        let keys: Vec<&str> = (plan.stages.iter())
            .filter(|s| s.kind() < StageKind::Merge)
            .map(|s| s.key.as_str())
            .collect();
        let digest = sha256_hex(keys.join(",").as_bytes());
        assert_eq!(
            digest,
            "31f4cb69bd4be4de2d2facdacfb4b61527096026acac49f01cfe7b1504a45528"
        );
    }
}
