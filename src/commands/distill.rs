//! `mixlab distill`: train a student on the shards towards a finished teacher run's logits.

use mixlab_stages::train::{DistillSpec, distill};
use mixlab_trainer::downstream::distill::DistillSettings;

use crate::cli::{DistillArgs, GlobalArgs};
use crate::print::evaluated;

/// Distils (or resumes, or skips a finished) student run and prints its final evaluation.
pub fn run(global: &GlobalArgs, args: &DistillArgs) -> anyhow::Result<()> {
    let spec = DistillSpec {
        teacher: args.teacher.clone(),
        settings: DistillSettings {
            alpha: args.alpha,
            temperature: args.temperature,
        },
        student: args.train.spec(),
    };
    evaluated(distill(&global.workspace(), &spec)?.as_deref());
    Ok(())
}
