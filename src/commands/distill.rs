//! `mixlab distill`: train a student on the shards towards a finished teacher run's logits.

use mixlab_trainer::distill::{DistillSettings, Distillation};
use mixlab_trainer::inference::Inference;

use crate::cli::{DistillArgs, GlobalArgs};
use crate::commands::train::resolve;
use crate::table::eval_table;
use mixlab_stages::Usage;
use mixlab_stages::run_dir::{DistillSource, RunDir};
use mixlab_stages::training::run_training;

/// Distils (or resumes, or skips a finished) student run and prints its final evaluation.
pub fn run(global: &GlobalArgs, args: &DistillArgs) -> anyhow::Result<()> {
    let settings = DistillSettings {
        alpha: args.alpha,
        temperature: args.temperature,
    };
    settings.validate().map_err(|e| Usage(e.to_string()))?;
    let (resolved, corpus) = resolve(global, &args.train)?;
    let teacher_dir = RunDir::new(global.out_root().join(&args.teacher));
    let teacher_run =
        teacher_dir.read_finished(&format!("--teacher {}", args.teacher.display()))?;
    if teacher_run.tokenizer_sha256 != resolved.tokenizer_sha256 {
        anyhow::bail!(Usage(format!(
            "--teacher {}: trained with another tokenizer (sha256 {}) than the shards' (sha256 {}); teacher and student must share one",
            teacher_dir.root.display(),
            teacher_run.tokenizer_sha256,
            resolved.tokenizer_sha256
        )));
    }
    let (teacher_step, weights) = teacher_dir.latest_model()?;
    let teacher = Inference::load(&teacher_run.model, &weights)?;
    let objective = Distillation::new(teacher, settings, resolved.train.document_mask)?;
    let resolved = resolved.distilled(DistillSource {
        teacher: teacher_dir.root.clone(),
        teacher_run_hash: teacher_run.run_hash,
        teacher_step,
        settings,
    });
    let run_dir = RunDir::new(global.out_root().join(&args.train.run));
    if let Some(losses) = run_training(&run_dir, &resolved, &corpus, &objective, global.quiet)? {
        print!("{}", eval_table(&losses));
    }
    Ok(())
}
