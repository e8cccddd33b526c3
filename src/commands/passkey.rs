//! `mixlab passkey`: passkey-retrieval training documents and evaluation.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use mixlab_artefacts::atomic::write_atomic;
use mixlab_ingest::tokenize::TextTokenizer;
use mixlab_stages::Usage;
use mixlab_stages::run_dir::RunDir;
use mixlab_trainer::inference::Inference;
use mixlab_trainer::inference::passkey::{DepthScore, documents, evaluate, prompts};

use crate::cli::{GlobalArgs, PasskeyCommand, PasskeyEvalArgs, PasskeyMakeArgs};

/// Prompts scored in one forward pass.
const EVAL_BATCH: usize = 8;

/// Runs `passkey make` or `passkey eval`.
pub fn run(global: &GlobalArgs, command: &PasskeyCommand) -> anyhow::Result<()> {
    match command {
        PasskeyCommand::Make(args) => make(args),
        PasskeyCommand::Eval(args) => eval(global, args),
    }
}

/// Writes `--docs` tasks with uniformly drawn filler counts and depths.
fn make(args: &PasskeyMakeArgs) -> anyhow::Result<()> {
    if args.docs == 0 || args.min_filler > args.max_filler {
        anyhow::bail!(Usage(format!(
            "passkey make: expected --docs ≥ 1 and --min-filler ≤ --max-filler (got {}, {} and {})",
            args.docs, args.min_filler, args.max_filler
        )));
    }
    let mut lines = Vec::new();
    for text in documents(args.docs, args.min_filler..=args.max_filler, args.seed) {
        serde_json::to_writer(&mut lines, &serde_json::json!({ "text": text }))?;
        lines.push(b'\n');
    }
    let bytes = if args.output.extension().is_some_and(|e| e == "gz") {
        // Header without a timestamp: the same arguments give the same bytes.
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&lines)?;
        gz.finish()?
    } else {
        lines
    };
    write_atomic(&args.output, &bytes)?;
    println!(
        "wrote {} passkey tasks to {}",
        args.docs,
        args.output.display()
    );
    Ok(())
}

/// Scores the run's newest checkpoint and prints accuracy per depth.
fn eval(global: &GlobalArgs, args: &PasskeyEvalArgs) -> anyhow::Result<()> {
    if args.trials == 0 || args.depths.iter().any(|d| !(0.0..=1.0).contains(d)) {
        anyhow::bail!(Usage(format!(
            "passkey eval: expected --trials ≥ 1 and --depths from 0 to 1 (got {} and {:?})",
            args.trials, args.depths
        )));
    }
    let run_dir = RunDir::new(global.out_root().join(&args.run));
    let mut resolved = run_dir.read_config()?;
    let context = args.context.unwrap_or(resolved.train.seq_len);
    // Positions beyond the trained context are what this test probes; the RoPE tables follow.
    resolved.model.max_seq_len = resolved.model.max_seq_len.max(context);
    let shards = resolved.open_shards(global.verification())?;
    let tokenizer = TextTokenizer::load(&shards.tokenizer_path())?;
    let tokenize = |text: &str| tokenizer.encode(text).map_err(|e| e.to_string());
    let prompts = prompts(
        context,
        &args.depths,
        args.trials,
        args.seed,
        tokenizer.eos_id(),
        tokenize,
    )
    .map_err(Usage)?;
    let (step, model_path) = run_dir.latest_model()?;
    let inference = Inference::load(&resolved.model, &model_path)?;
    let scores = evaluate(&inference, &prompts, EVAL_BATCH);
    let retrieved: usize = scores.iter().map(|s| s.retrieved).sum();
    let accuracy = retrieved as f64 / prompts.len() as f64;
    let answer_loss = scores
        .iter()
        .map(|s| s.answer_loss * s.trials as f64)
        .sum::<f64>()
        / prompts.len() as f64;
    if args.json {
        let depths: Vec<_> = scores
            .iter()
            .map(|s| {
                serde_json::json!({
                    "depth": s.depth, "trials": s.trials, "retrieved": s.retrieved,
                    "answer_loss": s.answer_loss,
                })
            })
            .collect();
        let json = serde_json::json!({
            "step": step, "context": context, "accuracy": accuracy,
            "answer_loss": answer_loss, "depths": depths,
        });
        println!("{json}");
    } else {
        print!("{}", table(&scores, context, accuracy, answer_loss));
    }
    Ok(())
}

/// The accuracy table: one row per depth and the total.
fn table(scores: &[DepthScore], context: usize, accuracy: f64, answer_loss: f64) -> String {
    let mut out = format!(
        "passkey retrieval at {context} tokens\n depth  retrieved  accuracy  answer nats/token\n"
    );
    for s in scores {
        out += &format!(
            "{:>6.2}  {:>4} / {:<3}  {:>7.1}%  {:>8.3}\n",
            s.depth,
            s.retrieved,
            s.trials,
            100.0 * s.retrieved as f64 / s.trials as f64,
            s.answer_loss
        );
    }
    out += &format!(
        "   all              {:>7.1}%  {:>8.3}\n",
        100.0 * accuracy,
        answer_loss
    );
    out
}
