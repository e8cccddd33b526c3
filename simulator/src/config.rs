//! `[simulate]` in datasets.toml: the proxy run and the utility estimation.

use mixlab_trainer::config::Preset;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `[simulate]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulateConfig {
    /// The proxy model's preset (the `[model]` overrides apply on top).
    pub preset: Preset,
    /// Training steps of the proxy run (its token budget is steps × `[train]` batch × sequence).
    pub steps: u64,
    /// Evenly spaced checkpoints K at which utilities are estimated.
    pub checkpoints: u64,
    /// Where the training documents' gradients come from.
    pub gradients: GradientSource,
    /// With `gradients = "training"`: the steps before each checkpoint whose batches are captured.
    pub capture_steps: u64,
    /// With `gradients = "sample"`: training documents sampled per domain.
    pub docs_per_domain: usize,
    /// With `gradients = "domain"`: packed training sequences of each domain whose gradients are
    /// scored at every checkpoint (drawn afresh at each, one row of the bootstrap each).
    pub domain_sequences: usize,
    /// With `gradients = "domain"`: packed sequences of each target (like its evaluation, all of
    /// it when it holds fewer tokens) whose mean-loss gradient is the target's.
    pub target_sequences: usize,
    /// With `gradients = "domain"`: how a training gradient is scaled before it meets a target's.
    pub precondition: Precondition,
    /// Tokens scored per document (its first ones): of sampled training documents and of targets,
    /// and of each piece of a captured document (its run of positions in one sequence).
    pub max_doc_tokens: usize,
    /// Documents of each target whose mean gradient is the target's (drawn once, seeded; all when
    /// it has fewer): their forward passes at every checkpoint are most of the scoring's cost.
    pub target_docs: usize,
    /// Side of the gradient projection: gradients become `projection²` numbers.
    pub projection: usize,
    /// How a training document's gradient is compared with a target's.
    pub similarity: Similarity,
    /// The inverse Hessian between a training document's gradient and a target's.
    pub curvature: Curvature,
    /// Bootstrap resamples for the standard errors.
    pub bootstrap: usize,
    /// Seed of the proxy run, the document sample and the projection.
    pub seed: u64,
    /// `[[simulate.target]]`: what the utilities are measured against.
    pub target: Vec<TargetConfig>,
    /// `[simulate.doremi]`: the DoReMi baseline's domain-weight updates (`simulate --method doremi`).
    pub doremi: DoremiConfig,
}

/// `[simulate].gradients`: where the per-document gradients of the training data come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GradientSource {
    /// Per-domain gradients of every parameter: `domain_sequences` packed sequences of each domain
    /// (every training sequence comes from one domain), each a backward pass of its own at every
    /// checkpoint of a finished proxy, preconditioned as `precondition` says and compared with
    /// each target's gradient over `target_sequences` sequences. Captures what training on a
    /// domain does to the target through every weight, not only the output layer.
    #[default]
    Domain,
    /// The documents the proxy trains on in the last `capture_steps` steps before each checkpoint,
    /// from the activations of its own forward passes (no pass of their own), scored at that
    /// checkpoint. Output-layer gradients only (see [`crate::projection`]).
    Training,
    /// `docs_per_domain` documents drawn per domain, each scored at every checkpoint with forward
    /// passes of their own (their first `max_doc_tokens` tokens). Output-layer gradients only.
    Sample,
}

/// `[simulate].precondition`: the per-coordinate scale between a training gradient and a target's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precondition {
    /// AdamW's `1/(√v̂ + ε)` from the proxy's optimizer state at the checkpoint: the step training on
    /// the data would take, so the utility is the target loss's first-order change under it.
    #[default]
    Adam,
    /// None: plain inner products of the gradients.
    None,
}

/// `[simulate].similarity`: how a training document's gradient is compared with a target's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    /// DataInf's influence on the gradients as they are.
    #[default]
    Inner,
    /// DataInf's influence on gradients scaled to unit length, the target's too: LESS's cosine
    /// similarity (Xia et al. 2024), which keeps the large mean-loss gradients of short or
    /// surprising documents from outweighing the direction they point in.
    Cosine,
}

/// `[simulate].curvature`: the inverse Hessian `H⁻¹` in a utility `(H⁻¹v)·g`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Curvature {
    /// DataInf's closed-form approximation from the training gradients themselves (Kwon et al.
    /// 2024), which discounts the directions most training documents share. With
    /// `gradients = "training"` or `"sample"` only.
    DataInf,
    /// None (`H = I`): plain inner products of the gradients, TracIn's (Pruthi et al. 2020).
    #[default]
    Identity,
}

/// How a training document's gradient is compared with a target's: `[simulate].similarity` and
/// `[simulate].curvature`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Gradients as they are, or as directions.
    pub similarity: Similarity,
    /// The inverse Hessian between them.
    pub curvature: Curvature,
}

/// `[simulate.doremi]`: DoReMi's exponentiated-gradient updates of the domain weights (Xie et al.
/// 2023, Algorithm 1; defaults as in the paper).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DoremiConfig {
    /// Step size η of the update `α ← α·exp(η·λ)`, λ the per-domain excess loss.
    pub step_size: f64,
    /// Smoothing c towards uniform: `α ← (1 − c)·α + c/k` after each update.
    pub smoothing: f64,
}

impl Default for DoremiConfig {
    fn default() -> Self {
        Self {
            step_size: 1.0,
            smoothing: 1e-3,
        }
    }
}

impl Default for SimulateConfig {
    fn default() -> Self {
        Self {
            preset: Preset::Tiny,
            steps: 300,
            checkpoints: 10,
            gradients: GradientSource::Domain,
            capture_steps: 8,
            docs_per_domain: 64,
            // The cheapest setting measured that keeps the agreement with leave-one-out on the real
            // corpus (bench/RESULTS.md, 2026-12-06: 9 % of the proxy's training in FLOPs; 8:16 cost
            // 28 % and agreed no better).
            domain_sequences: 2,
            target_sequences: 6,
            precondition: Precondition::Adam,
            max_doc_tokens: 128,
            target_docs: 16,
            projection: 32,
            similarity: Similarity::Inner,
            curvature: Curvature::Identity,
            bootstrap: 200,
            seed: 0,
            target: Vec::new(),
            doremi: DoremiConfig::default(),
        }
    }
}

/// `[[simulate.target]]`: a domain's probe split (`probe = "<domain>"`), or a JSONL file of probe
/// texts (`path = "<file>"`), and its weight in the joint utility; a table with both or neither is
/// refused when the configuration loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TargetTable", into = "TargetTable")]
pub struct TargetConfig {
    /// Name in tables and files.
    pub name: String,
    /// What the target's texts are.
    pub source: TargetSource,
    /// Weight in the joint utility.
    pub weight: f64,
    /// The training domain the target belongs to, for the own-domain control (`mix --method
    /// own`); default: the probe's domain.
    pub domain: Option<String>,
}

/// Where a target's texts come from.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSource {
    /// The probe split of this domain in the shards.
    Probe(String),
    /// A JSONL file (optionally `.gz`) whose `text` fields are the target, tokenized with the
    /// shards' tokenizer; relative to the configuration file.
    Texts(std::path::PathBuf),
}

/// `[[simulate.target]]` as written (and hashed: stage keys read this shape).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetTable {
    name: String,
    #[serde(default)]
    probe: String,
    #[serde(default)]
    path: Option<std::path::PathBuf>,
    #[serde(default = "one")]
    weight: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
}

impl TryFrom<TargetTable> for TargetConfig {
    type Error = String;

    fn try_from(t: TargetTable) -> std::result::Result<Self, String> {
        let source = match (t.probe.is_empty(), t.path) {
            (false, None) => TargetSource::Probe(t.probe),
            (true, Some(path)) => TargetSource::Texts(path),
            _ => {
                return Err(format!(
                    "[[simulate.target]] {:?}: set exactly one of probe = \"<domain>\" and path = \"<file.jsonl>\"",
                    t.name
                ));
            }
        };
        Ok(Self {
            name: t.name,
            source,
            weight: t.weight,
            domain: t.domain,
        })
    }
}

impl From<TargetConfig> for TargetTable {
    fn from(t: TargetConfig) -> Self {
        let (probe, path) = match t.source {
            TargetSource::Probe(domain) => (domain, None),
            TargetSource::Texts(path) => (String::new(), Some(path)),
        };
        Self {
            name: t.name,
            probe,
            path,
            weight: t.weight,
            domain: t.domain,
        }
    }
}

impl TargetConfig {
    /// The training domain this target belongs to: `domain`, else the probe's domain.
    ///
    /// # Example
    /// ```
    /// use mixlab_simulator::config::{TargetConfig, TargetSource};
    /// let texts = TargetSource::Texts("he.jsonl".into());
    /// let t = TargetConfig { name: "he".into(), source: texts, weight: 1.0, domain: Some("code".into()) };
    /// assert_eq!(t.own_domain(), Some("code"));
    /// ```
    pub fn own_domain(&self) -> Option<&str> {
        match (&self.domain, &self.source) {
            (Some(d), _) => Some(d),
            (None, TargetSource::Probe(domain)) => Some(domain),
            (None, TargetSource::Texts(_)) => None,
        }
    }

    /// The domain whose probe split this target is, if it is one.
    pub fn probe(&self) -> Option<&str> {
        match &self.source {
            TargetSource::Probe(domain) => Some(domain),
            TargetSource::Texts(_) => None,
        }
    }
}

fn one() -> f64 {
    1.0
}

impl SimulateConfig {
    /// Checks every value's range.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key and what was expected.
    ///
    /// # Example
    /// ```
    /// use mixlab_simulator::config::{SimulateConfig, TargetConfig, TargetSource};
    /// let mut config = SimulateConfig::default();
    /// assert!(config.validate().is_err()); // no target
    /// config.target.push(TargetConfig { name: "code".into(), source: TargetSource::Probe("code".into()), weight: 1.0, domain: None });
    /// config.validate()?;
    /// # Ok::<(), mixlab_simulator::Error>(())
    /// ```
    pub fn validate(&self) -> Result<()> {
        (self.check_sampling())
            .and_then(|()| self.check_estimator())
            .and_then(|()| self.check_targets())
            .map_err(|Invalid { key, expected }| {
                Error::Config(format!("[simulate].{key}: expected {expected}"))
            })
    }

    /// Checkpoints, captured steps and the documents and sequences sampled from each domain.
    fn check_sampling(&self) -> std::result::Result<(), Invalid> {
        if self.checkpoints == 0 || self.steps < self.checkpoints {
            return invalid("checkpoints", "between 1 and [simulate].steps");
        }
        if !(1..=self.checkpoint_every()).contains(&self.capture_steps) {
            return invalid(
                "capture_steps",
                format!(
                    "between 1 and the steps between checkpoints ({})",
                    self.checkpoint_every()
                ),
            );
        }
        if self.docs_per_domain < 2 {
            return invalid("docs_per_domain", "at least 2 (for a standard error)");
        }
        if self.target_docs == 0 {
            return invalid("target_docs", "at least 1");
        }
        if self.max_doc_tokens < 2 {
            return invalid("max_doc_tokens", "at least 2");
        }
        if self.gradients != GradientSource::Domain {
            return Ok(());
        }
        if self.domain_sequences < 2 {
            return invalid("domain_sequences", "at least 2 (for a standard error)");
        }
        if self.target_sequences == 0 {
            return invalid("target_sequences", "at least 1");
        }
        Ok(())
    }

    /// The estimator's settings and DoReMi's.
    fn check_estimator(&self) -> std::result::Result<(), Invalid> {
        if self.gradients == GradientSource::Domain {
            let other_estimators =
                "(DataInf and cosine need gradients = \"training\" or \"sample\")";
            if self.curvature != Curvature::Identity {
                return invalid(
                    "curvature",
                    format!("\"identity\" with gradients = \"domain\" {other_estimators}"),
                );
            }
            if self.similarity != Similarity::Inner {
                return invalid(
                    "similarity",
                    format!("\"inner\" with gradients = \"domain\" {other_estimators}"),
                );
            }
        }
        if !(1..=256).contains(&self.projection) {
            return invalid("projection", "between 1 and 256");
        }
        if !(self.doremi.step_size.is_finite() && self.doremi.step_size > 0.0) {
            return invalid("doremi.step_size", "a finite number above 0");
        }
        if !(0.0..=1.0).contains(&self.doremi.smoothing) {
            return invalid("doremi.smoothing", "a number between 0 and 1");
        }
        Ok(())
    }

    /// At least one target; each with a positive weight, a unique name and one source.
    fn check_targets(&self) -> std::result::Result<(), Invalid> {
        if self.target.is_empty() {
            return invalid(
                "target",
                "at least one [[simulate.target]] with a name and a probe domain",
            );
        }
        for (i, t) in self.target.iter().enumerate() {
            if !(t.weight.is_finite() && t.weight > 0.0) {
                return invalid(format!("target[{i}].weight"), "a finite number above 0");
            }
            if t.name.is_empty() || t.name == mixlab_artefacts::utilities::JOINT_TARGET {
                return invalid(
                    format!("target[{i}].name"),
                    "a non-empty name other than \"joint\"",
                );
            }
            if self.target[..i].iter().any(|o| o.name == t.name) {
                return invalid(
                    format!("target[{i}].name"),
                    format!("a name used once, {:?} repeats", t.name),
                );
            }
        }
        Ok(())
    }

    /// How training and target gradients are compared.
    pub fn comparison(&self) -> Comparison {
        Comparison {
            similarity: self.similarity,
            curvature: self.curvature,
        }
    }

    /// The proxy run's checkpoint interval: K evenly spaced checkpoints, the last at the end.
    ///
    /// # Example
    /// ```
    /// use mixlab_simulator::config::SimulateConfig;
    /// let config = SimulateConfig { steps: 300, checkpoints: 10, ..SimulateConfig::default() };
    /// assert_eq!(config.checkpoint_every(), 30);
    /// ```
    pub fn checkpoint_every(&self) -> u64 {
        self.steps / self.checkpoints.max(1)
    }
}

/// A `[simulate]` key whose value is out of range, and what it expects.
struct Invalid {
    key: String,
    expected: String,
}

fn invalid(
    key: impl Into<String>,
    expected: impl Into<String>,
) -> std::result::Result<(), Invalid> {
    Err(Invalid {
        key: key.into(),
        expected: expected.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_target() -> SimulateConfig {
        SimulateConfig {
            target: vec![TargetConfig {
                name: "t".into(),
                source: TargetSource::Probe("code".into()),
                weight: 1.0,
                domain: None,
            }],
            ..SimulateConfig::default()
        }
    }

    #[test]
    fn impossible_values_name_their_key() {
        type Break = fn(&mut SimulateConfig);
        let cases: [(Break, &str); 14] = [
            (|c| c.domain_sequences = 1, "[simulate].domain_sequences"),
            (|c| c.target_sequences = 0, "[simulate].target_sequences"),
            (
                |c| c.curvature = Curvature::DataInf,
                "DataInf and cosine need gradients",
            ),
            (
                |c| c.similarity = Similarity::Cosine,
                "[simulate].similarity: expected \"inner\" with gradients = \"domain\"",
            ),
            (|c| c.target_docs = 0, "[simulate].target_docs"),
            (|c| c.capture_steps = 0, "[simulate].capture_steps"),
            (
                |c| c.capture_steps = 31,
                "between 1 and the steps between checkpoints (30)",
            ),
            (
                |c| c.doremi.step_size = f64::INFINITY,
                "[simulate].doremi.step_size",
            ),
            (
                |c| c.doremi.smoothing = f64::NAN,
                "[simulate].doremi.smoothing",
            ),
            (|c| c.checkpoints = 0, "[simulate].checkpoints"),
            (|c| c.steps = 5, "[simulate].checkpoints"),
            (|c| c.projection = 0, "[simulate].projection"),
            (
                |c| c.target[0].weight = f64::NAN,
                "[simulate].target[0].weight",
            ),
            (
                |c| c.target.push(c.target[0].clone()),
                "[simulate].target[1].name",
            ),
        ];
        for (break_it, key) in cases {
            let mut c = with_target();
            break_it(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        with_target().validate().unwrap();
    }

    #[test]
    fn a_target_is_a_probe_split_or_a_file_and_keeps_its_table() {
        let parse = |text: &str| toml::from_str::<SimulateConfig>(text);
        let both = "[[target]]\nname = \"a\"\nprobe = \"code\"\npath = \"a.jsonl\"";
        let neither = "[[target]]\nname = \"a\"";
        for bad in [both, neither] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("exactly one of probe"), "{err}");
        }
        let file = parse("[[target]]\nname = \"he\"\npath = \"he.jsonl\"").unwrap();
        assert_eq!(
            file.target[0].source,
            TargetSource::Texts("he.jsonl".into())
        );
        assert_eq!(file.target[0].probe(), None);
        // Written as the table it was read from: stage keys that hash [simulate] do not move.
        assert_eq!(
            serde_json::to_string(&with_target().target[0]).unwrap(),
            r#"{"name":"t","probe":"code","path":null,"weight":1.0}"#
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<SimulateConfig>("stepz = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("stepz"), "{err}");
    }

    #[test]
    fn curvature_is_datainf_or_identity() {
        let parse = |text| toml::from_str::<SimulateConfig>(text);
        assert_eq!(parse("").unwrap().curvature, Curvature::Identity);
        let datainf = parse("curvature = \"datainf\"\ngradients = \"sample\"").unwrap();
        assert_eq!(datainf.comparison().curvature, Curvature::DataInf);
        let err = parse("curvature = \"fisher\"").unwrap_err().to_string();
        assert!(
            err.contains("curvature") && err.contains("identity"),
            "{err}"
        );
        let err = parse("precondition = \"lion\"").unwrap_err().to_string();
        assert!(err.contains("adam"), "{err}");
    }

    #[test]
    fn domain_gradients_are_the_default() {
        let parse = |text| toml::from_str::<SimulateConfig>(text).unwrap();
        let config = parse("");
        assert_eq!(config.gradients, GradientSource::Domain);
        assert_eq!(config.precondition, Precondition::Adam);
        assert_eq!(
            parse("precondition = \"none\"").precondition,
            Precondition::None
        );
    }

    #[test]
    fn similarity_is_inner_or_cosine() {
        let parse = |text| toml::from_str::<SimulateConfig>(text);
        assert_eq!(parse("").unwrap().similarity, Similarity::Inner);
        let cosine = parse("similarity = \"cosine\"").unwrap();
        assert_eq!(cosine.similarity, Similarity::Cosine);
        let err = parse("similarity = \"dot\"").unwrap_err().to_string();
        assert!(
            err.contains("similarity") && err.contains("cosine"),
            "{err}"
        );
    }
}
