//! `mixlab generate`: continue a prompt with a trained run's model.

use mixlab_ingest::tokenize::TextTokenizer;
use mixlab_stages::run_dir::RunDir;
use mixlab_trainer::inference::Inference;
use mixlab_trainer::inference::generate::{Sampling, generate};

use crate::cli::{GenerateArgs, GlobalArgs};

/// Prints the prompt followed by the model's continuation.
pub fn run(global: &GlobalArgs, args: &GenerateArgs) -> anyhow::Result<()> {
    let run_dir = RunDir::new(global.out_root().join(&args.run));
    let resolved = run_dir.read_config()?;
    let shards = resolved.open_shards(global.verification())?;
    let tokenizer = TextTokenizer::load(&shards.tokenizer_path())?;
    let (_, model_path) = run_dir.latest_model()?;
    let inference = Inference::load(&resolved.model, &model_path)?;
    let prompt = tokenizer.encode(&args.prompt)?;
    let sampling = Sampling {
        max_new_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
    };
    let new = generate(&inference, &prompt, &sampling, tokenizer.eos_id());
    println!("{}{}", args.prompt, tokenizer.decode(&new)?);
    Ok(())
}
