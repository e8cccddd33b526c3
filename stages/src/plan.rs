//! The stages `mixlab run` runs after ingest, in order, each keyed by a hash of its inputs.
//!
//! A stage is a subcommand with its arguments (so a user can run or debug any one by hand) and a
//! key: the SHA-256 of its arguments, the configuration sections it reads, and the keys of the
//! stages it reads from. Changing one section changes the keys of the stages that read it and of
//! every stage after them, and of nothing before.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use mixlab_ingest::checksum::sha256_hex;
use serde::{Deserialize, Serialize};

use crate::arms::{Arm, DistillStage, MixChoice, QuantizeStage};
use crate::config::LoadedConfig;
use crate::merge::MergeWeights;
use crate::run_dir::{BOOKKEEPING, suffixed};
use crate::run_names::{merge_runs, quantize_runs};

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

/// One stage: a subcommand, its key and the run directories it writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// Its kind.
    pub kind: StageKind,
    /// A name unique in the plan, such as `train/sdm-s1`.
    pub id: String,
    /// The subcommand and its arguments (without the global flags).
    pub args: Vec<String>,
    /// SHA-256 of everything that decides its result.
    pub key: String,
    /// Run directories it writes, relative to `--out`: removed before it runs with another key.
    pub runs: Vec<PathBuf>,
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
        let report = self.stages.iter().find(|s| s.kind == StageKind::Report)?;
        let at = report.args.iter().position(|a| a == "--name")?;
        Some(PathBuf::from("reports").join(report.args.get(at + 1)?))
    }
}

/// Plans every stage after ingest for `arms` on shards whose inputs hash is `shards_key`.
///
/// # Errors
/// An unreadable specialists file of a `merge` stage.
pub fn plan(loaded: &LoadedConfig, arms: &[Arm], shards_key: &str) -> anyhow::Result<Plan> {
    let config = "{config}".to_owned();
    let sections = Sections::of(loaded);
    let mut stages = Vec::new();
    let simulate = |method: &str, stages: &mut Vec<Stage>| {
        let args = vec![
            "simulate".into(),
            "--config".into(),
            config.clone(),
            "--method".into(),
            method.into(),
        ];
        let key = stage_key(&args, &[shards_key], &sections.simulate);
        stages.push(stage(
            StageKind::Simulate,
            format!("simulate/{method}"),
            args,
            key,
            vec![],
        ));
        stages.last().map(|s| s.key.clone()).unwrap_or_default()
    };
    let sdm_key = arms
        .iter()
        .any(|a| a.mix == MixChoice::Sdm)
        .then(|| simulate("influence", &mut stages));
    let doremi_key = arms
        .iter()
        .any(|a| a.mix == MixChoice::Doremi)
        .then(|| simulate("doremi", &mut stages));
    let mut arm_runs = Vec::new();
    for arm in arms {
        let upstream = match arm.mix {
            MixChoice::Sdm => sdm_key.clone(),
            MixChoice::Doremi => doremi_key.clone(),
            _ => None,
        }
        .unwrap_or_else(|| shards_key.to_owned());
        let mixture = PathBuf::from("mixtures").join(format!("{}.toml", arm.name));
        let mix = mix_stage(arm, &config, &mixture, &upstream, &sections);
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
    let targets = loaded
        .config
        .simulate
        .target
        .iter()
        .filter(|t| !t.probe.is_empty())
        .map(|t| (t.probe.clone(), t.weight))
        .collect();
    Ok(Plan {
        stages,
        arms: arm_runs,
        targets,
    })
}

/// The report over every arm, named after the configuration file; it reruns when any stage did.
fn report_stage(loaded: &LoadedConfig, stages: &[Stage]) -> Stage {
    let name = loaded
        .path
        .file_stem()
        .map_or_else(|| "report".to_owned(), |s| s.to_string_lossy().into_owned());
    let args: Vec<String> = [
        "report",
        "--plan",
        "{out}/pipeline/plan.json",
        "--name",
        &name,
    ]
    .map(String::from)
    .into();
    let keys: Vec<&str> = stages.iter().map(|s| s.key.as_str()).collect();
    let key = stage_key(&args, &keys, &serde_json::Value::Null);
    let dir = PathBuf::from("reports").join(&name);
    stage(StageKind::Report, "report".into(), args, key, vec![dir])
}

/// The configuration sections each stage reads, as JSON.
struct Sections {
    /// `[simulate]`, and the `[model]` and `[train]` settings the proxy inherits.
    simulate: serde_json::Value,
    /// `[mix]` and the training budget its epoch caps use.
    mix: serde_json::Value,
    /// `[model]` and `[train]` without bookkeeping keys.
    train: serde_json::Value,
}

impl Sections {
    fn of(loaded: &LoadedConfig) -> Self {
        let c = &loaded.config;
        let mut train = serde_json::to_value(&c.train).unwrap_or_default();
        if let Some(map) = train.as_object_mut() {
            BOOKKEEPING.iter().for_each(|k| {
                map.remove(*k);
            });
        }
        let mut proxy_train = train.clone();
        if let Some(map) = proxy_train.as_object_mut() {
            // The proxy takes its steps and seed from [simulate].
            map.remove("steps");
            map.remove("seed");
        }
        let budget = c.train.steps * c.train.tokens_per_step();
        Self {
            simulate: serde_json::json!({ "simulate": c.simulate, "model": c.model, "train": proxy_train }),
            // The own-domain control reads the targets.
            mix: serde_json::json!({ "mix": c.mix, "train_tokens": budget, "targets": c.simulate.target }),
            train: serde_json::json!({ "model": c.model, "train": train }),
        }
    }
}

fn mix_stage(
    arm: &Arm,
    config: &str,
    mixture: &Path,
    upstream: &str,
    sections: &Sections,
) -> Stage {
    let mut args: Vec<String> = ["mix", "--method", arm.mix.name(), "--config", config]
        .map(String::from)
        .into();
    if matches!(arm.mix, MixChoice::Sdm | MixChoice::Own) {
        args.extend(["--objective".into(), arm.objective.name().into()]);
    }
    args.extend(["--output".into(), format!("{{out}}/{}", mixture.display())]);
    let key = stage_key(&args, &[upstream], &sections.mix);
    stage(
        StageKind::Mix,
        format!("mix/{}", arm.name),
        args,
        key,
        vec![],
    )
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
        mixture: format!("{{out}}/{}", mixture.display()),
        seed,
        stages: Vec::new(),
        runs: Vec::new(),
    };
    chain.train(&name, mix_key, sections);
    if let Some(d) = &arm.distill {
        chain.distill(&name, d, sections);
    }
    if let Some(m) = &arm.merge {
        chain.merge(&name, &loaded.base_dir.join(&m.specialists), &m.weights)?;
    }
    if let Some(q) = &arm.quantize {
        chain.quantize(&name, q);
    }
    let runs = SeedRuns {
        seed,
        runs: chain.runs,
    };
    Ok((chain.stages, runs))
}

/// The model stages of one arm and seed, built in order: each reads the newest run before it.
struct ModelChain {
    /// The arm's mixture file, with the `{out}` placeholder.
    mixture: String,
    seed: u64,
    stages: Vec<Stage>,
    /// `(stage, run)` in order; the last is the newest model.
    runs: Vec<(StageKind, PathBuf)>,
}

impl ModelChain {
    fn newest(&self) -> PathBuf {
        self.runs.last().map(|r| r.1.clone()).unwrap_or_default()
    }

    /// The arguments a training stage writing `run` shares with `train` (distill takes them too).
    fn train_args(&self, run: &Path) -> Vec<String> {
        vec![
            "--config".into(),
            "{config}".into(),
            "--mixture".into(),
            self.mixture.clone(),
            "--run".into(),
            run.display().to_string(),
            "--seed".into(),
            self.seed.to_string(),
        ]
    }

    fn push(
        &mut self,
        kind: StageKind,
        name: &str,
        args: Vec<String>,
        key: String,
        runs: Vec<PathBuf>,
    ) {
        let newest = runs.last().cloned().unwrap_or_default();
        self.stages.push(stage(
            kind,
            format!("{}/{name}", kind.name()),
            args,
            key,
            runs,
        ));
        self.runs.push((kind, newest));
    }

    fn train(&mut self, name: &str, mix_key: &str, sections: &Sections) {
        let run = PathBuf::from("runs").join(name);
        let mut args = vec!["train".to_owned()];
        args.extend(self.train_args(&run));
        let key = stage_key(&args, &[mix_key], &sections.train);
        self.push(StageKind::Train, name, args, key, vec![run]);
    }

    fn distill(&mut self, name: &str, d: &DistillStage, sections: &Sections) {
        let student = suffixed(&self.newest(), "-distilled");
        let mut args: Vec<String> = vec![
            "distill".into(),
            "--teacher".into(),
            self.newest().display().to_string(),
            "--alpha".into(),
            d.alpha.to_string(),
            "--temperature".into(),
            d.temperature.to_string(),
        ];
        args.extend(self.train_args(&student));
        args.extend(["--preset".into(), d.preset.name().into()]);
        if let Some(steps) = d.steps {
            args.extend(["--steps".into(), steps.to_string()]);
        }
        let key = stage_key(&args, &[&last_key(&self.stages)], &sections.train);
        self.push(StageKind::Distill, name, args, key, vec![student]);
    }

    fn merge(
        &mut self,
        name: &str,
        specialists: &Path,
        weights: &MergeWeights,
    ) -> anyhow::Result<()> {
        let written = merge_runs(&self.newest(), specialists)?;
        let text = fs_err::read_to_string(specialists)?;
        let args: Vec<String> = vec![
            "merge".into(),
            "--base".into(),
            self.newest().display().to_string(),
            "--specialists".into(),
            specialists.display().to_string(),
            "--weights".into(),
            weights.to_string(),
        ];
        let upstream = [last_key(&self.stages), sha256_hex(text.as_bytes())];
        let upstream: Vec<&str> = upstream.iter().map(String::as_str).collect();
        let key = stage_key(&args, &upstream, &serde_json::Value::Null);
        self.push(StageKind::Merge, name, args, key, written);
        Ok(())
    }

    fn quantize(&mut self, name: &str, q: &QuantizeStage) {
        let written = quantize_runs(&self.newest(), q.qat_steps, false);
        let args: Vec<String> = vec![
            "quantize".into(),
            "--run".into(),
            self.newest().display().to_string(),
            "--group-size".into(),
            q.group_size.to_string(),
            "--qat-steps".into(),
            q.qat_steps.to_string(),
        ];
        let key = stage_key(&args, &[&last_key(&self.stages)], &serde_json::Value::Null);
        self.push(StageKind::Quantize, name, args, key, written);
    }
}

fn last_key(stages: &[Stage]) -> String {
    stages.last().map(|s| s.key.clone()).unwrap_or_default()
}

fn stage(kind: StageKind, id: String, args: Vec<String>, key: String, runs: Vec<PathBuf>) -> Stage {
    Stage {
        kind,
        id,
        args,
        key,
        runs,
    }
}

/// SHA-256 of a stage's arguments, the keys it reads from and its configuration sections.
fn stage_key(args: &[String], upstream: &[&str], sections: &serde_json::Value) -> String {
    let json = serde_json::json!({ "args": args, "upstream": upstream, "config": sections });
    sha256_hex(json.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(dir: &Path, edit: (&str, &str)) -> LoadedConfig {
        let config = include_str!("../../datasets.toml").replace(edit.0, edit.1);
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
            .filter(|s| s.kind < StageKind::Merge)
            .map(|s| s.key.as_str())
            .collect();
        let digest = sha256_hex(keys.join(",").as_bytes());
        assert_eq!(
            digest,
            "31f4cb69bd4be4de2d2facdacfb4b61527096026acac49f01cfe7b1504a45528"
        );
    }
}
