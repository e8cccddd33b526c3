//! `[run]` and `[[ablation]]` in `datasets.toml`: what `mixlab run` does after ingest.
//!
//! `[run]` describes one arm: how its mixture is made, the seeds it trains with, and the optional
//! downstream stages. Each `[[ablation]]` table is another arm: its keys replace those of `[run]`
//! (a table such as `quantize` as a whole), so arms differ only where they say so and share the
//! same budget. Without `[[ablation]]`, `[run]` is the only arm.

use std::path::PathBuf;

use clap::ValueEnum;
use mixlab_trainer::config::Preset;
use mixlab_trainer::downstream::distill::DistillSettings;
use serde::{Deserialize, Serialize};

use crate::Usage;
use crate::merge::MergeWeights;

/// How `--method sdm` turns utilities into weights (also `[run].objective`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdmObjective {
    /// Maximize Σ w·utility + temperature · entropy(w) within the bounds and epoch caps.
    Utilimax,
    /// Weights proportional to the positive utilities, plus a floor share for every domain.
    Proportional,
}

impl SdmObjective {
    /// The name in provenance.
    pub fn name(self) -> &'static str {
        match self {
            SdmObjective::Utilimax => "utilimax",
            SdmObjective::Proportional => "proportional",
        }
    }
}

/// How an arm's mixture is made (`mixlab mix --method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixChoice {
    /// The Scalable Data Mixer on the `[simulate]` utilities.
    Sdm,
    /// Equal weights.
    Uniform,
    /// Proportional to the domains' tokens.
    Natural,
    /// UniMax within `[mix].max_epochs`.
    Unimax,
    /// DoReMi's weights from a proxy trained against the uniform simulation run.
    Doremi,
    /// The own-domain control: utility 1 on each target's own domain, through `objective`.
    Own,
}

impl MixChoice {
    /// The `--method` value.
    pub fn name(self) -> &'static str {
        match self {
            MixChoice::Sdm => "sdm",
            MixChoice::Uniform => "uniform",
            MixChoice::Natural => "natural",
            MixChoice::Unimax => "unimax",
            MixChoice::Doremi => "doremi",
            MixChoice::Own => "own",
        }
    }

    /// Whether the method turns utilities into weights through an [`SdmObjective`].
    pub fn takes_objective(self) -> bool {
        matches!(self, MixChoice::Sdm | MixChoice::Own)
    }
}

/// One arm of the pipeline, resolved: `[run]` with an `[[ablation]]` table's keys over it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    /// Names the arm's runs (`runs/<name>`, `runs/<name>-s<seed>` with several seeds) and the
    /// report. Default: `default`.
    #[serde(default = "default_name")]
    pub name: String,
    /// The mixture method. Default: `sdm`.
    #[serde(default = "default_mix")]
    pub mix: MixChoice,
    /// The SDM objective (`utilimax` or `proportional`; serde refuses others). Default: `utilimax`.
    #[serde(default = "default_objective")]
    pub objective: SdmObjective,
    /// Training seeds; one run each. Default: `[train].seed`.
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// Distil a student from the trained run (which becomes its teacher).
    #[serde(default)]
    pub distill: Option<DistillStage>,
    /// Anneal specialists from the newest model and merge them.
    #[serde(default)]
    pub merge: Option<MergeStage>,
    /// Quantize the newest model to int4.
    #[serde(default)]
    pub quantize: Option<QuantizeStage>,
}

/// `[run.distill]`: a student trained towards the arm's trained run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillStage {
    /// The student's preset (`tiny`, `small`, `base`, `mobilellm_pro`).
    pub preset: Preset,
    /// The student's steps. Default: `[train].steps`.
    #[serde(default)]
    pub steps: Option<u64>,
    /// Weight of the KL term. Default: 0.5.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Softmax temperature. Default: 2.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
}

impl DistillStage {
    /// The distillation loss's settings.
    pub fn loss(&self) -> DistillSettings {
        DistillSettings {
            alpha: self.alpha,
            temperature: self.temperature,
        }
    }
}

/// `[run.merge]`: specialists annealed from the newest model, merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeStage {
    /// The specialists file (as `mixlab merge --specialists`), relative to the config file.
    pub specialists: PathBuf,
    /// `uniform`, `search` or comma-separated weights. Default: `search`.
    #[serde(default = "search")]
    pub weights: MergeWeights,
}

/// `[run.quantize]`: int4 weights of the newest model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizeStage {
    /// Weights per scale. Default: 32.
    #[serde(default = "thirty_two")]
    pub group_size: usize,
    /// Quantization-aware training steps (0: rounding only). Default: 0.
    #[serde(default)]
    pub qat_steps: u64,
}

fn default_name() -> String {
    "default".into()
}
fn default_mix() -> MixChoice {
    MixChoice::Sdm
}
fn default_objective() -> SdmObjective {
    SdmObjective::Utilimax
}
fn default_alpha() -> f64 {
    DistillSettings::default().alpha
}
fn default_temperature() -> f64 {
    DistillSettings::default().temperature
}
fn search() -> MergeWeights {
    MergeWeights::Search
}
fn thirty_two() -> usize {
    32
}

/// The arms of a configuration: `[run]` alone, or each `[[ablation]]` over it; `default_seed`
/// fills empty `seeds`.
///
/// # Errors
/// A [`Usage`] error naming the table and key: unknown keys, bad values, an arm without a name or
/// with a name used twice, a seed listed twice, an unknown preset.
pub fn arms(
    run: &toml::Table,
    ablation: &[toml::Table],
    default_seed: u64,
) -> anyhow::Result<Vec<Arm>> {
    let tables: Vec<(String, toml::Table)> = if ablation.is_empty() {
        vec![("[run]".into(), run.clone())]
    } else {
        ablation
            .iter()
            .enumerate()
            .map(|(i, arm)| {
                if !arm.contains_key("name") {
                    anyhow::bail!(Usage(format!(
                        "[[ablation]] {}: every arm needs a `name`",
                        i + 1
                    )));
                }
                let mut merged = run.clone();
                merged.extend(arm.clone());
                Ok((format!("[[ablation]] {}", i + 1), merged))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let mut arms: Vec<Arm> = Vec::with_capacity(tables.len());
    for (place, table) in tables {
        let mut arm: Arm = table
            .try_into()
            .map_err(|e| Usage(format!("{place}: {}", e.to_string().trim_end())))?;
        check(&arm, &place)?;
        if arms.iter().any(|a| a.name == arm.name) {
            anyhow::bail!(Usage(format!(
                "{place}: arm name `{}` is used twice",
                arm.name
            )));
        }
        if arm.seeds.is_empty() {
            arm.seeds.push(default_seed);
        }
        arms.push(arm);
    }
    Ok(arms)
}

fn check(arm: &Arm, place: &str) -> anyhow::Result<()> {
    let bad = |what: String| anyhow::bail!(Usage(format!("{place}: {what}")));
    if arm.name.is_empty()
        || !arm
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        return bad(format!(
            "name `{}`: use letters, digits, `-` and `_`",
            arm.name
        ));
    }
    let mut seeds = arm.seeds.clone();
    seeds.sort_unstable();
    seeds.dedup();
    if seeds.len() != arm.seeds.len() {
        return bad("seeds: a seed is listed twice".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn ablation_arms_replace_the_keys_of_run_and_keep_the_rest() {
        let run = table("mix = \"sdm\"\nseeds = [3]\nquantize = { qat_steps = 10 }\n");
        let ablation = [
            table("name = \"uniform\"\nmix = \"uniform\""),
            table("name = \"ptq\"\nquantize = { group_size = 64 }"),
        ];
        let arms = arms(&run, &ablation, 0).unwrap();
        assert_eq!(arms[0].mix, MixChoice::Uniform);
        assert_eq!(arms[0].seeds, [3]);
        assert_eq!(arms[0].quantize.as_ref().unwrap().qat_steps, 10);
        // A table is replaced as a whole: its unset keys take their defaults.
        let ptq = arms[1].quantize.as_ref().unwrap();
        assert_eq!(
            (ptq.group_size, ptq.qat_steps, arms[1].mix),
            (64, 0, MixChoice::Sdm)
        );
    }

    #[test]
    fn run_alone_is_one_arm_with_the_default_seed() {
        let arms = arms(&toml::Table::new(), &[], 7).unwrap();
        assert_eq!(
            (arms.len(), arms[0].name.as_str(), arms[0].seeds.as_slice()),
            (1, "default", &[7][..])
        );
    }

    #[test]
    fn bad_arms_are_refused_with_their_place() {
        let run = toml::Table::new();
        let cases = [
            (
                vec![table("mix = \"sdm\"")],
                "[[ablation]] 1: every arm needs a `name`",
            ),
            (
                vec![table("name = \"a\""), table("name = \"a\"")],
                "[[ablation]] 2: arm name `a` is used twice",
            ),
            (
                vec![table("name = \"a\"\nmix = \"regmix\"")],
                "[[ablation]] 1: unknown variant `regmix`",
            ),
            (
                vec![table("name = \"a\"\nseed = 1")],
                "[[ablation]] 1: unknown field `seed`",
            ),
            (vec![table("name = \"a b\"")], "name `a b`"),
            (
                vec![table("name = \"a\"\nseeds = [1, 1]")],
                "a seed is listed twice",
            ),
            (
                vec![table(
                    "name = \"a\"\nmerge = { specialists = \"s.toml\", weights = \"1,x\" }",
                )],
                "[[ablation]] 1: merge.weights = \"1,x\": expected uniform, search",
            ),
        ];
        for (ablation, expected) in cases {
            let err = arms(&run, &ablation, 0).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }
}
