//! Scoring a proxy run's checkpoints, resumably, and summarizing the scores per domain.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use mixlab_artefacts::utilities::{
    DocumentUtility, DomainUtility, JOINT_TARGET, read_document_utilities, write_document_utilities,
};
use mixlab_trainer::config::ModelConfig;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::engine::checkpoint::{CheckpointFiles, complete_steps};
use mixlab_trainer::engine::hooks::{Activations, DueCheckpoint, Hook, HookError};
use mixlab_trainer::inference::Inference;
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use crate::aggregate::{Scored, checkpoint_weights, domain_estimate};
use crate::capture::{CaptureWindow, Captured, CapturedDoc};
use crate::config::{Comparison, GradientSource, SimulateConfig, TargetSource};
use crate::error::{Error, Result};
use crate::estimate::{Influence, SampledDoc, TargetSet, checkpoint_utilities, target_utilities};
use crate::projection::GradientProjection;

/// The targets of `config`, each a domain's probe documents or the given file's documents
/// (`files`: token ids per target with a `path`, in target order): all of them, whole, for
/// `gradients = "domain"`; otherwise up to `target_docs` of them (drawn with the seed), cut to
/// the scored length.
///
/// # Errors
/// [`Error::Config`] for a probe naming no domain (with a suggestion), a domain without probe
/// documents or a file without documents.
pub fn resolve_targets(
    config: &SimulateConfig,
    corpus: &Corpus,
    mut files: impl FnMut(&std::path::Path) -> Result<Vec<Vec<u32>>>,
) -> Result<Vec<TargetSet>> {
    let known: Vec<&str> = corpus.domains.iter().map(String::as_str).collect();
    let cut = |tokens: &[u32]| tokens[..tokens.len().min(config.max_doc_tokens + 1)].to_vec();
    config
        .target
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (docs, origin): (Vec<Vec<u32>>, String) = match &t.source {
                TargetSource::Texts(path) => (files(path)?, path.display().to_string()),
                TargetSource::Probe(probe) => {
                    let what = format!("[simulate].target[{i}].probe");
                    let d = mixlab_mixer::names::position(probe, &known, &what)
                        .map_err(|e| Error::Config(e.to_string()))?;
                    let docs = corpus.probe[d]
                        .to_memory()?
                        .docs
                        .into_iter()
                        .map(|doc| doc.tokens)
                        .collect();
                    (
                        docs,
                        format!(
                            "the probe split of domain {probe:?} (raise [ingest].probe_fraction)"
                        ),
                    )
                }
            };
            let usable: Vec<&Vec<u32>> = docs.iter().filter(|d| d.len() >= 2).collect();
            // Per-domain gradients meet the target's over its packed sequences, all of it.
            let docs: Vec<Vec<u32>> = if config.gradients == GradientSource::Domain {
                usable.into_iter().cloned().collect()
            } else {
                let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ i as u64);
                let amount = config.target_docs.min(usable.len());
                let mut picked = sample(&mut rng, usable.len(), amount).into_vec();
                picked.sort_unstable();
                picked.into_iter().map(|k| cut(usable[k])).collect()
            };
            if docs.is_empty() {
                return Err(Error::Config(format!(
                    "[simulate].target[{i}]: no document of two tokens or more in {origin}"
                )));
            }
            Ok(TargetSet {
                name: t.name.clone(),
                weight: t.weight,
                docs,
            })
        })
        .collect()
}

/// What scoring a proxy run's checkpoints needs.
#[derive(Debug)]
pub struct Scoring<'a> {
    /// The proxy model's shape.
    pub model: &'a ModelConfig,
    /// Domain names, in the order of [`SampledDoc::domain`].
    pub domains: &'a [String],
    /// The sampled training documents.
    pub sample: &'a [SampledDoc],
    /// The targets.
    pub targets: &'a [TargetSet],
    /// The gradient projection (fixed for the whole run).
    pub projection: &'a GradientProjection,
    /// How training and target gradients are compared.
    pub comparison: Comparison,
}

impl Scoring<'_> {
    /// The utility of every sampled document for every target at one checkpoint.
    ///
    /// # Errors
    /// A checkpoint that cannot be loaded.
    pub fn score_checkpoint(&self, step: u64, weights: &Path) -> Result<Vec<DocumentUtility>> {
        let inference = Inference::load(self.model, weights)?;
        let utilities = checkpoint_utilities(
            &inference,
            self.projection,
            self.comparison,
            self.sample,
            self.targets,
        );
        let mut rows = Vec::with_capacity(self.sample.len() * self.targets.len());
        for (target, per_doc) in self.targets.iter().zip(utilities) {
            rows.extend(
                self.sample
                    .iter()
                    .zip(per_doc)
                    .map(|(doc, utility)| DocumentUtility {
                        domain: self.domains[doc.domain].clone(),
                        doc_id: doc.doc_id,
                        source: doc.source.to_string(),
                        tokens: doc.scored_tokens(),
                        target: target.name.clone(),
                        checkpoint_step: step,
                        utility,
                    }),
            );
        }
        Ok(rows)
    }

    /// Scores every complete checkpoint in `checkpoints` that has no part file in `parts` yet
    /// (`step-N.parquet`, written atomically, so a killed run resumes after its last finished
    /// checkpoint) and returns all rows, in step order. `progress` hears of each checkpoint.
    ///
    /// # Errors
    /// As [`Scoring::score_checkpoint`], and part files that cannot be read or written.
    pub fn score_all(
        &self,
        checkpoints: &Path,
        parts: &Path,
        progress: &mut dyn FnMut(u64, usize, usize),
    ) -> Result<Vec<DocumentUtility>> {
        let mut score = |step, files: &CheckpointFiles| self.score_checkpoint(step, &files.model);
        score_checkpoints(checkpoints, parts, &mut score, progress)
    }
}

/// Scores every complete checkpoint in `checkpoints` that has no part file in `parts` yet
/// (`step-N.parquet`, written atomically, so a killed run resumes after its last finished
/// checkpoint) with `score`, and returns all rows, in step order. `progress` hears of each
/// checkpoint.
///
/// # Errors
/// [`Error::MissingCheckpoint`] when there is none, what `score` returns, and part files that
/// cannot be read or written.
pub fn score_checkpoints(
    checkpoints: &Path,
    parts: &Path,
    score: &mut dyn FnMut(u64, &CheckpointFiles) -> Result<Vec<DocumentUtility>>,
    progress: &mut dyn FnMut(u64, usize, usize),
) -> Result<Vec<DocumentUtility>> {
    let steps = complete_steps(checkpoints);
    if steps.is_empty() {
        return Err(Error::MissingCheckpoint(checkpoints.to_owned()));
    }
    std::fs::create_dir_all(parts).map_err(mixlab_artefacts::Error::from)?;
    let mut rows = Vec::new();
    for (i, &step) in steps.iter().enumerate() {
        let part = parts.join(format!("step-{step}.parquet"));
        let scored = if part.exists() {
            read_document_utilities(&part)?
        } else {
            let scored = score(step, &CheckpointFiles::at(checkpoints, step))?;
            write_document_utilities(&part, &scored)?;
            scored
        };
        rows.extend(scored);
        progress(step, i + 1, steps.len());
    }
    Ok(rows)
}

/// Captures the documents of the simulation run's own batches from the activations the training
/// loop hands it ([`crate::capture`]), and scores them at each checkpoint, before the checkpoint is written: the part file
/// `step-N.parquet` in `parts` is on disk whenever checkpoint N is, so a killed run resumes (and
/// captures again) from its last checkpoint without losing scores.
#[derive(Debug)]
pub struct InRunScoring<'a> {
    /// The steps whose batches are captured.
    pub window: CaptureWindow,
    /// The documents captured since the last checkpoint.
    pub captured: Captured,
    /// Domain names, in the order of [`CapturedDoc::domain`].
    pub domains: &'a [String],
    /// The source label of every document captured since the last checkpoint, by (domain, doc
    /// id), as the batches name them.
    pub sources: HashMap<(usize, u64), Arc<str>>,
    /// The targets.
    pub targets: &'a [TargetSet],
    /// The projection the objective captures with.
    pub projection: &'a GradientProjection,
    /// How training and target gradients are compared.
    pub comparison: Comparison,
    /// Where part files go.
    pub parts: PathBuf,
    /// Wall time spent scoring at checkpoints so far, in seconds.
    pub seconds: f64,
}

impl InRunScoring<'_> {
    /// The rows of one checkpoint: every captured document's utility for every target.
    fn score(
        &self,
        step: u64,
        inference: &Inference,
        docs: &[CapturedDoc],
    ) -> Vec<DocumentUtility> {
        if docs.is_empty() {
            return Vec::new();
        }
        let width = docs[0].gradient.len();
        let flat: Vec<f32> = docs
            .iter()
            .flat_map(|d| d.gradient.iter().copied())
            .collect();
        let g = Array2::from_shape_vec((docs.len(), width), flat).expect("one row per document");
        // Each document's curvature counts with its trained tokens: every domain has the same
        // share of the uniform proxy's tokens, whatever the length of its documents.
        let tokens = Array1::from_iter(docs.iter().map(|d| d.tokens as f64));
        let train = Influence::new(g.view(), tokens.view(), self.comparison);
        let utilities = target_utilities(inference, self.projection, &train, self.targets);
        let mut rows = Vec::with_capacity(docs.len() * self.targets.len());
        for (target, per_doc) in self.targets.iter().zip(utilities) {
            rows.extend(docs.iter().zip(per_doc).map(|(doc, utility)| {
                DocumentUtility {
                    domain: self.domains[doc.domain].clone(),
                    doc_id: doc.doc_id,
                    source: self
                        .sources
                        .get(&(doc.domain, doc.doc_id))
                        .map_or_else(String::new, |s| s.to_string()),
                    tokens: doc.tokens,
                    target: target.name.clone(),
                    checkpoint_step: step,
                    utility,
                }
            }));
        }
        rows
    }
}

impl Hook for InRunScoring<'_> {
    fn started(&mut self, _start_step: u64, _total_steps: u64) {
        // A resumed run captures again from its checkpoint: nothing of before it is kept.
        self.captured.take();
        self.sources.clear();
    }

    fn wants_activations(&self, step: u64) -> bool {
        self.window.contains(step)
    }

    fn activations(&mut self, activations: Activations<'_>) -> std::result::Result<(), HookError> {
        let Activations {
            batch,
            model,
            hidden,
            ..
        } = activations;
        self.captured
            .add_batch(self.projection, batch, model, hidden);
        self.sources.extend(
            batch
                .sources
                .iter()
                .map(|s| ((s.domain, s.doc_id), Arc::clone(&s.source))),
        );
        Ok(())
    }

    fn can_stop_at(&self, _step: u64) -> bool {
        // Documents captured for the next checkpoint would be lost to a resumed run.
        self.captured.is_empty()
    }

    fn before_checkpoint(&mut self, due: &DueCheckpoint<'_>) -> std::result::Result<(), HookError> {
        let started = Instant::now();
        let docs = self.captured.take();
        let inference = Inference::of_trained(due.model, due.config);
        let rows = self.score(due.step, &inference, &docs);
        self.sources.clear();
        std::fs::create_dir_all(&self.parts)?;
        write_document_utilities(
            &self.parts.join(format!("step-{}.parquet", due.step)),
            &rows,
        )?;
        self.seconds += started.elapsed().as_secs_f64();
        Ok(())
    }
}

/// The part files of every complete checkpoint in `checkpoints`, in step order.
///
/// # Errors
/// [`Error::MissingCheckpoint`] when there is none, and a part that is missing or unreadable.
pub fn read_parts(checkpoints: &Path, parts: &Path) -> Result<Vec<DocumentUtility>> {
    let steps = complete_steps(checkpoints);
    if steps.is_empty() {
        return Err(Error::MissingCheckpoint(checkpoints.to_owned()));
    }
    let mut rows = Vec::new();
    for step in steps {
        let part = parts.join(format!("step-{step}.parquet"));
        if !part.exists() {
            return Err(Error::MissingScores {
                part,
                run: checkpoints.parent().unwrap_or(checkpoints).to_owned(),
            });
        }
        rows.extend(read_document_utilities(&part)?);
    }
    Ok(rows)
}

/// Domain utilities from document utilities: per checkpoint and target, per target over all
/// checkpoints (`Σ_t α_t u`, `α_t ∝ t`), and joint (`Σ_c w_c Σ_t α_t u`); each the token-weighted
/// mean over the domain's documents with a bootstrap standard error. Domains in `domains` order.
///
/// # Errors
/// [`Error::Config`] for a row scored against a target that `targets` does not list (scores of
/// another configuration): it would otherwise count with weight 0 in the joint utility.
pub fn summarize(
    rows: &[DocumentUtility],
    targets: &[TargetSet],
    domains: &[String],
    resamples: usize,
    seed: u64,
) -> Result<Vec<DomainUtility>> {
    let weight: BTreeMap<&str, f64> = targets
        .iter()
        .map(|t| (t.name.as_str(), t.weight))
        .collect();
    if let Some(r) = rows
        .iter()
        .find(|r| !weight.contains_key(r.target.as_str()))
    {
        return Err(Error::Config(format!(
            "document utilities scored against target {:?}, which [[simulate.target]] does not list \
             (it lists {:?}): they come from another configuration; score the proxy again",
            r.target,
            weight.keys().collect::<Vec<_>>()
        )));
    }
    let groups = group_scores(rows, &weight);
    let order = |name: &str| domains.iter().position(|d| d == name).unwrap_or(usize::MAX);
    let mut out: Vec<DomainUtility> = groups
        .into_iter()
        .map(|((domain, target, step), docs)| {
            let scored: Vec<Scored> = docs.into_values().collect();
            let e = domain_estimate(&scored, resamples, seed);
            DomainUtility {
                domain: domain.to_owned(),
                target: target.to_owned(),
                checkpoint_step: step,
                utility: e.mean,
                stderr: e.stderr,
                n_samples: scored.len() as u64,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (order(&a.domain), &a.target, a.checkpoint_step).cmp(&(
            order(&b.domain),
            &b.target,
            b.checkpoint_step,
        ))
    });
    Ok(out)
}

/// `(domain, target, step)` (step `None`: over all checkpoints) → document → its tokens and summed
/// utility; the joint target's rows weigh each target by `weight`.
type Groups<'a> = BTreeMap<(&'a str, &'a str, Option<u64>), BTreeMap<u64, Scored>>;

/// Groups the rows per checkpoint and over checkpoints (`α_t ∝ t`), per target and joint.
fn group_scores<'a>(rows: &'a [DocumentUtility], weight: &BTreeMap<&str, f64>) -> Groups<'a> {
    let mut steps: Vec<u64> = rows.iter().map(|r| r.checkpoint_step).collect();
    steps.sort_unstable();
    steps.dedup();
    let alpha: BTreeMap<u64, f64> = steps
        .iter()
        .copied()
        .zip(checkpoint_weights(&steps))
        .collect();
    let mut groups = Groups::new();
    let mut add = |key, r: &DocumentUtility, utility: f64| {
        let entry = groups
            .entry(key)
            .or_default()
            .entry(r.doc_id)
            .or_insert(Scored {
                tokens: r.tokens,
                utility: 0.0,
            });
        entry.utility += utility;
    };
    for r in rows {
        let (d, t, step) = (r.domain.as_str(), r.target.as_str(), r.checkpoint_step);
        let (a, weighted) = (alpha[&step], weight[t] * r.utility);
        add((d, t, Some(step)), r, r.utility);
        add((d, t, None), r, a * r.utility);
        add((d, JOINT_TARGET, Some(step)), r, weighted);
        add((d, JOINT_TARGET, None), r, a * weighted);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, doc_id: u64, utility: f64) -> DocumentUtility {
        DocumentUtility {
            domain: "code".into(),
            doc_id,
            source: "s".into(),
            tokens: 10,
            target: target.into(),
            checkpoint_step: 100,
            utility,
        }
    }

    fn target(name: &str, weight: f64) -> TargetSet {
        TargetSet {
            name: name.into(),
            weight,
            docs: Vec::new(),
        }
    }

    #[test]
    fn the_joint_utility_weighs_each_target() {
        let rows = [row("a", 0, 1.0), row("a", 1, 3.0), row("b", 0, 10.0)];
        let targets = [target("a", 0.75), target("b", 0.25)];
        let summary = summarize(&rows, &targets, &["code".into()], 10, 0).unwrap();
        let joint = summary
            .iter()
            .find(|u| u.target == JOINT_TARGET && u.checkpoint_step.is_none())
            .unwrap();
        // Document 0: 0.75·1 + 0.25·10; document 1: 0.75·3; mean of the two, α = 1.
        assert!(
            (joint.utility - (3.25 + 2.25) / 2.0).abs() < 1e-12,
            "{joint:?}"
        );
    }

    #[test]
    fn scores_of_an_unlisted_target_are_refused() {
        let rows = [row("a", 0, 1.0), row("gone", 0, 5.0)];
        let err = summarize(&rows, &[target("a", 1.0)], &["code".into()], 10, 0).unwrap_err();
        assert!(err.is_config());
        let message = err.to_string();
        assert!(
            message.contains("\"gone\"") && message.contains("[[simulate.target]]"),
            "{message}"
        );
    }
}
