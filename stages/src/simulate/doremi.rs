//! DoReMi: a group-DRO proxy against the uniform proxy as reference, and its domain weights.

use mixlab_artefacts::mixture::write_mixture;
use mixlab_mixer::schedule::{MixtureSchedule, Provenance};
use mixlab_simulator::doremi::ExcessLoss;
use mixlab_trainer::engine::checkpoint::read_state;
use mixlab_trainer::engine::objective::{CrossEntropy, Objective};
use mixlab_trainer::inference::Inference;

use super::proxies::{Proxies, Proxy, doremi_settings};
use super::{DOREMI_FILE, SimulateOutcome};

/// A DoReMi proxy against the uniform proxy as reference; its averaged domain weights become
/// `doremi.toml` (a mixture file, read by `mix --method doremi`).
pub(super) fn doremi(proxies: &Proxies) -> anyhow::Result<SimulateOutcome> {
    let (sim, corpus) = (proxies.sim(), proxies.corpus);
    let (reference_dir, reference) = proxies.train(Proxy::Uniform, &CrossEntropy)?;
    let (_, reference_weights) = reference_dir.latest_model()?;
    let objective = ExcessLoss::new(
        Inference::load(&reference.model, &reference_weights)?,
        corpus.domains.len(),
        reference.train.document_mask,
        sim.doremi,
    );
    let proxy = Proxy::Doremi {
        reference: &reference.run_hash,
    };
    let (dir, resolved) = proxies.train(proxy, &objective)?;
    // The weights come from the final checkpoint, also when the run had finished before.
    let checkpoints = dir.paths().checkpoints;
    let (last, _) = dir.latest_model()?;
    let state = read_state(&checkpoints, last)?;
    objective
        .restore(state.objective)
        .map_err(|e| anyhow::anyhow!("{}: {e}", checkpoints.display()))?;
    let weights = objective.weights();
    let mut settings = doremi_settings(&sim.doremi);
    settings.insert("updates".into(), weights.updates.to_string());
    let provenance = Provenance {
        method: "doremi".into(),
        inputs: [
            ("reference_run".to_owned(), reference.run_hash.clone()),
            ("doremi_run".to_owned(), resolved.run_hash.clone()),
        ]
        .into(),
        settings,
        ..Provenance::default()
    };
    let schedule = MixtureSchedule::single(
        corpus
            .domains
            .iter()
            .cloned()
            .zip(weights.average())
            .collect(),
        provenance,
    );
    let path = proxies.root.join(DOREMI_FILE);
    write_mixture(&path, &schedule)?;
    let weights = (corpus.domains.iter().cloned())
        .zip(weights.weights.iter().copied())
        .zip(weights.average())
        .map(|((domain, last), average)| (domain, last, average))
        .collect();
    Ok(SimulateOutcome::Doremi { path, weights })
}
