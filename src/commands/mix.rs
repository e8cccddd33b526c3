//! `mixlab mix`: turn a run table into a mixture (RegMix), utilities into the SDM's, or write a
//! baseline mixture.

use mixlab_stages::Usage;
use mixlab_stages::config::LoadedConfig;
use mixlab_stages::mix::{MixMethod as Method, MixSpec, Prior, RegmixSpec, SdmSettings, mix};

use crate::cli::{GlobalArgs, MixArgs, MixMethod, PriorArg};
use crate::print::mixed;

/// Computes the mixture, writes `mixture.toml` and prints its weights.
pub fn run(global: &GlobalArgs, args: &MixArgs) -> anyhow::Result<()> {
    // The configuration first: its errors come before those of the method's arguments.
    let config = args.config.as_deref().map(LoadedConfig::load).transpose()?;
    let spec = MixSpec {
        method: method(args)?,
        config,
        output: args.output.clone(),
    };
    let (schedule, output) = mix(&global.workspace(), &spec)?;
    let utility = matches!(args.method, MixMethod::Sdm | MixMethod::Own);
    mixed(&schedule, &output, utility);
    Ok(())
}

/// The method `--method` names, with the inputs it takes from the other arguments.
fn method(args: &MixArgs) -> anyhow::Result<Method> {
    let sdm = SdmSettings {
        objective: args.objective,
        temperature: args.temperature,
        floor: args.floor,
    };
    Ok(match args.method {
        MixMethod::Regmix => Method::Regmix(regmix(args)?),
        MixMethod::Sdm => Method::Sdm {
            utilities: args.utilities.clone(),
            objective: sdm,
        },
        MixMethod::Own => Method::Own(sdm),
        MixMethod::Doremi => Method::Doremi(args.doremi.clone()),
        MixMethod::Uniform => Method::Uniform,
        MixMethod::Natural => Method::Natural,
        MixMethod::Unimax => Method::Unimax,
    })
}

fn regmix(args: &MixArgs) -> anyhow::Result<RegmixSpec> {
    let (Some(runs), Some(losses), Some(target)) = (&args.runs, &args.losses, &args.target) else {
        anyhow::bail!(Usage(
            "--method regmix needs --runs, --losses and --target".into()
        ));
    };
    let prior = match (&args.prior_file, args.prior) {
        (Some(path), _) => Prior::File(path.clone()),
        (None, PriorArg::Runs) => Prior::Runs,
        (None, PriorArg::Tokens) => Prior::Tokens,
        (None, PriorArg::Uniform) => Prior::Uniform,
    };
    Ok(RegmixSpec {
        runs: runs.clone(),
        losses: losses.clone(),
        target: target.clone(),
        index: args.index.clone(),
        normalize: args.normalize,
        model: args.model.kind(),
        prior,
        samples: args.samples,
        top_k: args.top_k,
        seed: args.seed,
    })
}
