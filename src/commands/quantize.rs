//! `mixlab quantize`: int4 quantization of a finished run into a new run directory, after
//! post-training rounding alone or after quantization-aware training.

use mixlab_stages::quantize::{QuantizeSpec, quantize};
use mixlab_trainer::downstream::distill::DistillSettings;

use crate::cli::{GlobalArgs, QuantizeArgs};
use crate::print::evaluated;

/// Quantizes the newest checkpoint of `--run` (after `--qat-steps` of quantization-aware
/// training, when given), evaluates the int4 model as the run `--out-run` and prints its losses.
pub fn run(global: &GlobalArgs, args: &QuantizeArgs) -> anyhow::Result<()> {
    let spec = QuantizeSpec {
        run: args.run.clone(),
        out_run: args.out_run.clone(),
        group_size: args.group_size,
        qat_steps: args.qat_steps,
        qat_lr: args.qat_lr,
        settings: DistillSettings {
            alpha: args.alpha,
            temperature: args.temperature,
        },
        int8_activations: args.int8_activations,
    };
    evaluated(quantize(&global.workspace(), &spec)?.as_deref());
    Ok(())
}
