//! Leave-one-out: the proxy trained once more without each domain.

use mixlab_artefacts::eval::read_eval;
use mixlab_artefacts::utilities::{
    DomainUtility, JOINT_TARGET, overall, read_utilities, write_utilities,
};
use mixlab_mixer::metrics::spearman;
use mixlab_simulator::estimate::TargetSet;
use mixlab_simulator::loo::{ensure_probe_targets, loo_utilities};
use mixlab_trainer::engine::objective::CrossEntropy;

use super::proxies::{Proxies, Proxy};
use super::{SimulateOutcome, UTILITIES_FILE};
use crate::run_dir::RunDir;

/// The proxy once more without each domain: `loo_utilities.parquet`, and the rank agreement with
/// the influence estimates when they exist.
pub(super) fn leave_one_out(
    proxies: &Proxies,
    targets: &[TargetSet],
) -> anyhow::Result<SimulateOutcome> {
    ensure_probe_targets(&proxies.sim().target)?;
    let final_losses = |dir: &RunDir| read_eval(&dir.paths().eval);
    let (full, _) = proxies.train(Proxy::Uniform, &CrossEntropy)?;
    let full = final_losses(&full)?;
    let mut without = Vec::new();
    for domain in &proxies.corpus.domains {
        let (dir, _) = proxies.train(Proxy::Without(domain), &CrossEntropy)?;
        without.push((domain.clone(), final_losses(&dir)?));
    }
    let rows = loo_utilities(&full, &without, &proxies.sim().target)?;
    let path = proxies.root.join("loo_utilities.parquet");
    write_utilities(&path, &rows)?;
    let influence_path = proxies.root.join(UTILITIES_FILE);
    let joint = |rows: &[DomainUtility]| -> Vec<f64> {
        let domains = proxies.corpus.domains.iter();
        domains
            .map(|d| overall(rows, d, JOINT_TARGET).map_or(f64::NAN, |u| u.utility))
            .collect()
    };
    let influence_agreement = if influence_path.exists() {
        Some(spearman(
            &joint(&read_utilities(&influence_path)?),
            &joint(&rows),
        ))
    } else {
        None
    };
    Ok(SimulateOutcome::Utilities {
        path,
        rows,
        domains: proxies.corpus.domains.clone(),
        targets: targets.iter().map(|t| t.name.clone()).collect(),
        influence_agreement,
    })
}
